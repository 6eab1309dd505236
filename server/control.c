/* control.c - the daemon side of the control socket (see control.h).
 *
 * Requests are rare and tiny, so each gets a small heap buffer; none of this
 * is on the data path.  Accept, recv and send still go through the event
 * loop so the daemon never blocks on a slow CLI. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "repvol/control.h"
#include "repvol/log.h"
#include "repvol/netaddr.h"
#include "repvol/util.h"

struct control_client {
    struct rv_control *ctl;
    int fd;
    struct rv_op op;
    char req[RV_CONTROL_MAX_REQUEST + 1];
    size_t req_len;
    char *reply;
    size_t reply_len, reply_sent;
};

struct rv_control {
    struct rv_loop *loop;
    int fd;
    char path[108];
    const struct rv_control_cmd *cmds;
    void *ctx;
    struct rv_op accept_op;
    bool accept_pending;
    bool stopping;
    unsigned clients;
};

static void control_arm(struct rv_control *c);

static void control_maybe_free(struct rv_control *c)
{
    if (c->stopping && !c->accept_pending && c->clients == 0)
        free(c);
}

static void client_free(struct control_client *cl)
{
    struct rv_control *c = cl->ctl;
    close(cl->fd);
    free(cl->reply);
    free(cl);
    c->clients--;
    control_maybe_free(c);
}

static void client_sent(struct rv_op *op, int res)
{
    struct control_client *cl = RV_CONTAINER_OF(op, struct control_client, op);
    if (res <= 0) {
        client_free(cl);
        return;
    }
    cl->reply_sent += (size_t)res;
    if (cl->reply_sent >= cl->reply_len) {
        client_free(cl);
        return;
    }
    struct io_uring_sqe *sqe = rv_loop_sqe(cl->ctl->loop, &cl->op);
    io_uring_prep_send(sqe, cl->fd, cl->reply + cl->reply_sent, cl->reply_len - cl->reply_sent, MSG_NOSIGNAL);
}

static void client_run(struct control_client *cl)
{
    struct rv_control *c = cl->ctl;
    char *argv[RV_CONTROL_MAX_ARGS];
    int argc = 0;
    for (char *save = NULL, *tok = strtok_r(cl->req, " \t\r\n", &save); tok && argc < RV_CONTROL_MAX_ARGS;
         tok = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = tok;

    cl->reply = malloc(RV_CONTROL_MAX_REPLY);
    if (!cl->reply) {
        client_free(cl);
        return;
    }
    /* Leave room for the status line in front of the output. */
    enum { HEAD = 128 };
    struct rv_strbuf out;
    rv_sb_init(&out, cl->reply + HEAD, RV_CONTROL_MAX_REPLY - HEAD);
    int r = -ENOSYS;
    if (argc == 0) {
        r = -EINVAL;
        rv_sb_printf(&out, "empty request");
    } else {
        const struct rv_control_cmd *cmd = c->cmds;
        while (cmd->name && strcmp(cmd->name, argv[0]))
            cmd++;
        if (cmd->name) {
            r = cmd->run(c->ctx, argc, argv, &out);
        } else {
            rv_sb_printf(&out, "unknown command '%s'", argv[0]);
        }
    }
    char head[HEAD];
    int hl;
    if (r == 0) {
        hl = snprintf(head, sizeof head, "ok\n");
    } else {
        /* Error message on the status line, without newlines. */
        for (size_t i = 0; i < out.len; i++)
            if (out.buf[i] == '\n')
                out.buf[i] = ' ';
        hl = snprintf(head, sizeof head, "error %d ", -r);
        rv_sb_printf(&out, "\n");
    }
    memcpy(cl->reply + HEAD - hl, head, (size_t)hl);
    memmove(cl->reply, cl->reply + HEAD - hl, (size_t)hl + out.len);
    cl->reply_len = (size_t)hl + out.len;
    cl->reply_sent = 0;
    cl->op.fn = client_sent;
    struct io_uring_sqe *sqe = rv_loop_sqe(c->loop, &cl->op);
    io_uring_prep_send(sqe, cl->fd, cl->reply, cl->reply_len, MSG_NOSIGNAL);
}

static void client_recv(struct rv_op *op, int res)
{
    struct control_client *cl = RV_CONTAINER_OF(op, struct control_client, op);
    if (res <= 0) {
        client_free(cl);
        return;
    }
    RV_MARK_DEFINED(cl->req + cl->req_len, (size_t)res);
    cl->req_len += (size_t)res;
    cl->req[cl->req_len] = '\0';
    if (memchr(cl->req, '\n', cl->req_len) || cl->req_len == RV_CONTROL_MAX_REQUEST) {
        client_run(cl);
        return;
    }
    struct io_uring_sqe *sqe = rv_loop_sqe(cl->ctl->loop, &cl->op);
    io_uring_prep_recv(sqe, cl->fd, cl->req + cl->req_len, RV_CONTROL_MAX_REQUEST - cl->req_len, 0);
}

static void control_accepted(struct rv_op *op, int res)
{
    struct rv_control *c = RV_CONTAINER_OF(op, struct rv_control, accept_op);
    c->accept_pending = false;
    if (c->stopping) {
        if (res >= 0)
            close(res);
        control_maybe_free(c);
        return;
    }
    if (res >= 0) {
        struct control_client *cl = calloc(1, sizeof *cl);
        if (!cl) {
            close(res);
        } else {
            cl->ctl = c;
            cl->fd = res;
            cl->op.fn = client_recv;
            c->clients++;
            struct io_uring_sqe *sqe = rv_loop_sqe(c->loop, &cl->op);
            io_uring_prep_recv(sqe, cl->fd, cl->req, RV_CONTROL_MAX_REQUEST, 0);
        }
    } else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
        rv_warn("control socket %s: accept: %s", c->path, strerror(-res));
    }
    control_arm(c);
}

static void control_arm(struct rv_control *c)
{
    c->accept_op.fn = control_accepted;
    struct io_uring_sqe *sqe = rv_loop_sqe(c->loop, &c->accept_op);
    io_uring_prep_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
    c->accept_pending = true;
}

int rv_control_start(struct rv_control **out, struct rv_loop *loop, const char *path,
                     const struct rv_control_cmd *cmds, void *ctx)
{
    /* The default lives in /run/repvol, which may not exist yet. */
    char dir[108];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            rv_warn("control socket: mkdir %s: %s", dir, strerror(errno));
    }
    /* Private: the control socket changes roles. */
    int fd = rv_listen_unix(path, 16, true, "control socket");
    if (fd < 0)
        return fd;
    struct rv_control *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->loop = loop;
    c->fd = fd;
    snprintf(c->path, sizeof c->path, "%s", path);
    c->cmds = cmds;
    c->ctx = ctx;
    control_arm(c);
    *out = c;
    return 0;
}

void rv_control_stop(struct rv_control *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = true;
    unlink(c->path);
    shutdown(c->fd, SHUT_RDWR);
    if (c->accept_pending) {
        struct io_uring_sqe *sqe = rv_loop_sqe(c->loop, NULL);
        io_uring_prep_cancel(sqe, &c->accept_op, 0);
    }
    close(c->fd);
    control_maybe_free(c);
}
