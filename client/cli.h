/* cli.h - shared declarations of the repvol command-line tool.
 *
 * repvol.c holds main() and the table of subcommands.  Each subcommand lives
 * in a client/cmd_*.c file and is one handler:
 *
 *     int cmd_NAME(int argc, char **argv);
 *
 * called with argv[0] = "repvol NAME" (so getopt_long's own messages read
 * "repvol NAME: unrecognized option ...") and argv[1..] = the command's
 * arguments.  It returns the process exit status (RV_EXIT_*).  `repvol NAME
 * --help` must print the command's usage to stdout and return RV_EXIT_OK.
 *
 * To add a command: write client/cmd_foo.c, declare cmd_foo() below, add a
 * line to the table in repvol.c (and the file to repvol_SOURCES). */
#ifndef REPVOL_CLI_H
#define REPVOL_CLI_H

#include <stdbool.h>
#include <stddef.h>

enum rv_exit {
    RV_EXIT_OK = 0,
    RV_EXIT_FAIL = 1,       /* the operation failed or a value was rejected */
    RV_EXIT_USAGE = 2,      /* the command line could not be parsed */
};

/* Print "PROG: message\n" to stderr; prog is the handler's argv[0]. */
void cli_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For getopt failures: prints "Try 'PROG --help'." and returns RV_EXIT_USAGE.
 * (getopt_long has already printed what was wrong.) */
int cli_usage_hint(const char *prog);

/* "0.1.0" or the configured PACKAGE_VERSION. */
const char *cli_version(void);

/* Subcommands (client/cmd_volume.c). */
int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);

/* client/cmd_role.c */
int cmd_primary(int argc, char **argv);
int cmd_secondary(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_resume_io(int argc, char **argv);
int cmd_outdate(int argc, char **argv);

/* client/cmd_ublk.c */
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);

/* client/cmd_verify.c */
int cmd_verify(int argc, char **argv);
/* Redraw status every interval_ms (until no sync/verify runs, if asked). */
int cli_watch(const char *prog, const char *path, unsigned interval_ms, bool until_idle);

/* client/cmd_status.c */
int cmd_status(int argc, char **argv);
/* The control socket of VOLUME (a name or an image path), or `control` if
 * given.  Prints an error and returns -errno on failure. */
int cli_control_path(const char *prog, const char *volume, const char *control, char *out, size_t cap);

#endif
