/* repvol.c - the repvol command-line tool: main() and the subcommand table. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "repvol/util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;           /* one line for `repvol --help` */
};

static const struct cli_cmd commands[] = {
    { "create", cmd_create, "create a new volume image file" },
    { "info",   cmd_info,   "show the metadata of a volume image" },
    { "status", cmd_status, "show the state of a running daemon's volume" },
    { "verify", cmd_verify, "compare the two copies of a volume online" },
    { "primary", cmd_primary, "promote this node (serve the volume, replicate to the peer)" },
    { "secondary", cmd_secondary, "demote this node (mirror the primary, serve nobody)" },
    { "connect", cmd_connect, "reconnect to the peer; --discard-my-data after a split brain" },
    { "resume-io", cmd_resume_io, "release writes held for a failed fence-peer handler" },
    { "outdate", cmd_outdate, "mark a disconnected secondary's copy Outdated (fencing)" },
    { "attach", cmd_attach, "make the volume a local block device: attach --ublk VOLUME" },
    { "detach", cmd_detach, "remove the volume's ublk block device" },
};

void cli_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_hint(const char *prog)
{
    fprintf(stderr, "Try '%s --help'.\n", prog);
    return RV_EXIT_USAGE;
}

const char *cli_version(void) { return PACKAGE_VERSION; }

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: repvol COMMAND [OPTIONS] [ARGS]\n"
            "       repvol help [COMMAND]\n"
            "       repvol --version\n"
            "\n"
            "Manage repvol replicated block volumes.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < RV_ARRAY_SIZE(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-10s %s\n", "help", "show this help, or a command's help");
    fprintf(f,
            "\n"
            "Run 'repvol COMMAND --help' for a command's options.\n"
            "Exit status: 0 success, 1 failure, 2 command-line error.\n");
}

static const struct cli_cmd *find_command(const char *name)
{
    for (size_t i = 0; i < RV_ARRAY_SIZE(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Call cmd with argv[0] replaced by "repvol NAME". */
static int run_command(const struct cli_cmd *cmd, int argc, char **argv)
{
    char prog[64];
    snprintf(prog, sizeof prog, "repvol %s", cmd->name);
    argv[0] = prog;
    return cmd->run(argc, argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "repvol: missing COMMAND\n\n");
        usage(stderr);
        return RV_EXIT_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        usage(stdout);
        return RV_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
        printf("repvol %s\n", cli_version());
        return RV_EXIT_OK;
    }
    if (strcmp(arg, "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return RV_EXIT_OK;
        }
        const struct cli_cmd *cmd = find_command(argv[2]);
        if (!cmd) {
            fprintf(stderr, "repvol: unknown command '%s'\n\n", argv[2]);
            usage(stderr);
            return RV_EXIT_USAGE;
        }
        char help_opt[] = "--help";
        char *hargv[] = { NULL, help_opt, NULL };
        return run_command(cmd, 2, hargv);
    }
    const struct cli_cmd *cmd = find_command(arg);
    if (!cmd) {
        if (arg[0] == '-')
            fprintf(stderr, "repvol: unknown option '%s'\n\n", arg);
        else
            fprintf(stderr, "repvol: unknown command '%s'\n\n", arg);
        usage(stderr);
        return RV_EXIT_USAGE;
    }
    return run_command(cmd, argc - 1, argv + 1);
}
