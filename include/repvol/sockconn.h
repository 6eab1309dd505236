/* sockconn.h - a stream socket driven by the event loop: the plumbing that
 * a framed protocol connection needs, without the protocol.
 *
 *  - input: recv into a buffer of its own; the owner's on_input() consumes
 *    whole frames from [rpos, rlen) and, for a large payload, may ask for the
 *    rest to be received straight into a buffer of its choice
 *    (rv_sockconn_recv_into);
 *  - output: a queue of items (a small header plus an optional data
 *    pointer); one sendmsg at a time gathers as many queued items as fit;
 *    each item's done() runs once it is fully sent, or with an error once
 *    the connection is gone;
 *  - closing: rv_sockconn_close() wakes the kernel's pending operations;
 *    the owner's on_closed() runs once no ring operation refers to the
 *    connection or to any queued buffer, so only then may buffers be reused
 *    and the owner freed.
 * One owner callback is ever running at a time (single-threaded loop). */
#ifndef REPVOL_SOCKCONN_H
#define REPVOL_SOCKCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include "repvol/loop.h"

struct rv_tls_ctx;
struct rv_tlsio;

#define RV_SOCKCONN_IOV_MAX 64
#define RV_SENDQ_HDR_MAX    64

struct rv_sendq_item {
    uint8_t hdr[RV_SENDQ_HDR_MAX];
    uint32_t hdr_len;
    const void *data;           /* optional, sent after hdr; must stay valid until done() */
    uint32_t data_len;
    uint32_t sent;
    /* err 0: fully sent; -errno: the connection died first. */
    void (*done)(struct rv_sendq_item *it, int err);
    struct rv_sendq_item *next;
};

struct rv_sockconn;

struct rv_sockconn_ops {
    /* New input is in [rpos, rlen), or a recv_into() finished.  Consume
     * what you can (advance sc->rpos); return to wait for more. */
    void (*on_input)(struct rv_sockconn *sc);
    /* The peer closed its side (res 0) or receiving failed (-errno). */
    void (*on_eof)(struct rv_sockconn *sc, int err);
    /* After rv_sockconn_close(): nothing refers to sc any more. */
    void (*on_closed)(struct rv_sockconn *sc);
};

struct rv_sockconn {
    const struct rv_sockconn_ops *ops;
    struct rv_loop *loop;
    int fd;
    bool closing;
    bool reading;               /* the owner wants input (cleared by pause) */
    /* input */
    uint8_t *rbuf;
    uint32_t rcap, rpos, rlen;
    void *direct;               /* recv_into target, or NULL */
    uint32_t direct_len, direct_have;
    struct rv_op recv_op;
    bool recv_pending;
    /* output */
    struct rv_sendq_item *sq_head, **sq_tail;
    struct msghdr msg;
    struct iovec iov[RV_SOCKCONN_IOV_MAX];
    struct rv_op send_op;
    bool send_pending;
    struct rv_op cancel_op;     /* the deferred final step of a close */
    bool final_scheduled;
    unsigned ops_pending;
    int close_err;
    uint64_t bytes_in, bytes_out;   /* plaintext when TLS is on */
    struct rv_tlsio *tio;       /* TLS session, or NULL for a plain socket */
};

/* Set up on an open, connected socket (takes ownership of fd) with an input
 * buffer of rcap bytes.  Does not start reading: call rv_sockconn_read(). */
int rv_sockconn_init(struct rv_sockconn *sc, struct rv_loop *loop, int fd, uint32_t rcap,
                     const struct rv_sockconn_ops *ops);
/* Free the input buffer (only after on_closed, or if never started). */
void rv_sockconn_fini(struct rv_sockconn *sc);

/* Run the connection over TLS (tlsio.h) in the context's role: call
 * before the first read or send; the handshake runs underneath the first
 * operations.  who names the connection in logs.  0 or -ENOMEM. */
int rv_sockconn_start_tls(struct rv_sockconn *sc, struct rv_tls_ctx *ctx, const char *who);

/* Want input: makes sure a recv is in flight (compacting the buffer). */
void rv_sockconn_read(struct rv_sockconn *sc);
/* Stop asking for input until rv_sockconn_read() (back-pressure). */
void rv_sockconn_pause(struct rv_sockconn *sc);
/* Receive exactly len bytes into buf (after what rbuf holds was consumed:
 * requires rpos == rlen); on_input runs when they are all in. */
void rv_sockconn_recv_into(struct rv_sockconn *sc, void *buf, uint32_t len);
static inline bool rv_sockconn_direct_busy(const struct rv_sockconn *sc) { return sc->direct != NULL; }

/* Queue an item for sending. */
void rv_sockconn_send(struct rv_sockconn *sc, struct rv_sendq_item *it);
static inline bool rv_sockconn_send_idle(const struct rv_sockconn *sc)
{
    return !sc->send_pending && !sc->sq_head;
}

/* Close (err is what queued items' done() get; 0 means -ECONNRESET). */
void rv_sockconn_close(struct rv_sockconn *sc, int err);

#endif
