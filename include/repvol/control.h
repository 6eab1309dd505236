/* control.h - the daemon's control socket, used by the repvol CLI.
 *
 * Protocol (a Unix stream socket, one request per connection):
 *   client -> daemon   one line: "COMMAND [ARG...]\n", at most
 *                      RV_CONTROL_MAX_REQUEST bytes, words separated by
 *                      single spaces
 *   daemon -> client   "ok\n" followed by the command's output, or
 *                      "error ERRNO MESSAGE\n"; then the daemon closes.
 * Commands are registered by the daemon (status, and later primary,
 * secondary, connect, verify...).  The socket is created mode 0600: the
 * control socket can change roles, so only root talks to it. */
#ifndef REPVOL_CONTROL_H
#define REPVOL_CONTROL_H

#include <stddef.h>
#include "repvol/loop.h"
#include "repvol/strbuf.h"

#define RV_CONTROL_MAX_REQUEST 1024
#define RV_CONTROL_MAX_REPLY   (256 * 1024)
#define RV_CONTROL_MAX_ARGS    16
#define RV_CONTROL_DIR         "/run/repvol"

/* A command handler writes its output into out and returns 0 or -errno
 * (then out holds the error message). */
struct rv_control_cmd {
    const char *name;
    int (*run)(void *ctx, int argc, char **argv, struct rv_strbuf *out);
};

struct rv_control;

/* Listen on path; cmds is a table ending with a NULL name. */
int rv_control_start(struct rv_control **out, struct rv_loop *loop, const char *path,
                     const struct rv_control_cmd *cmds, void *ctx);
void rv_control_stop(struct rv_control *c);   /* stop accepting; frees once idle */

/* Client side (the CLI): send one request, return the reply body in buf
 * (NUL-terminated).  Returns 0 on "ok", -errno from an "error" reply or a
 * failure to talk to the daemon (message in buf). */
int rv_control_call(const char *path, const char *request, char *buf, size_t cap);

/* The default control socket path of a volume name: /run/repvol/NAME.ctl */
void rv_control_default_path(const char *volume_name, char *out, size_t cap);

#endif
