/* tlsio.c - a TLS session between a socket and an owner that thinks in
 * recv/sendmsg operations (see tlsio.h).
 *
 * Data flow:
 *   socket --ring recv--> cin --put_ciphertext--> session --read--> owner's buffer
 *   owner's iovecs --write--> session ring --ring send (from the ring)--> socket
 * One pump() runs after every event and moves whatever can move; it only
 * ever runs from the loop (a ring completion or a deferred call), and the
 * owner's operations complete through rv_loop_defer, so the owner is never
 * re-entered and may call back into tlsio from its completion. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "repvol/log.h"
#include "repvol/tlsio.h"
#include "repvol/util.h"

/* Ciphertext received per recv; the session holds at most RV_TLS_IN_MAX
 * more, so a connection never buffers more than about 128 KiB of input. */
#define CIN_SIZE (64u * 1024)
/* One TLS record of plaintext (see pump_send). */
#define STAGE_SIZE (16u * 1024)

struct rv_tlsio {
    struct rv_loop *loop;
    int fd;                     /* our dup() of the owner's socket */
    struct rv_tls *tls;
    char who[96];
    bool established;
    bool failed;                /* the session or the socket failed: err says how */
    int err;
    bool peer_closed;           /* close_notify received */
    bool sock_eof;              /* the ciphertext stream ended (res 0 or error) */
    int sock_err;
    bool closing;

    uint8_t *cin;
    uint32_t cin_pos, cin_len;
    struct rv_op crecv_op;
    bool crecv_pending;

    struct rv_op csend_op;
    bool csend_pending;
    size_t csend_len;

    struct rv_op *urecv;
    uint8_t *ubuf;
    size_t ulen, uhave;
    bool uwaitall;
    struct rv_op *usend;
    const struct msghdr *umsg;
    uint8_t *stage;             /* plaintext taken from the owner, not yet encrypted */
    uint32_t stage_off, stage_len;

    struct rv_op pump_op;
    bool pump_scheduled;
};

static void pump(struct rv_tlsio *t);

static void maybe_free(struct rv_tlsio *t)
{
    if (!t->closing || t->crecv_pending || t->csend_pending || t->pump_scheduled)
        return;
    if (t->fd >= 0)
        close(t->fd);
    rv_tls_free(t->tls);
    free(t->cin);
    free(t->stage);
    free(t);
}

static void pump_cb(struct rv_op *op, int res)
{
    (void)res;
    struct rv_tlsio *t = RV_CONTAINER_OF(op, struct rv_tlsio, pump_op);
    t->pump_scheduled = false;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    pump(t);
}

static void schedule_pump(struct rv_tlsio *t)
{
    if (t->pump_scheduled)
        return;
    t->pump_scheduled = true;
    t->pump_op.fn = pump_cb;
    rv_loop_defer(t->loop, &t->pump_op, 0);
}

static void complete_recv(struct rv_tlsio *t, int res)
{
    struct rv_op *op = t->urecv;
    t->urecv = NULL;
    rv_loop_defer(t->loop, op, res);
}

static void complete_send(struct rv_tlsio *t, int res)
{
    struct rv_op *op = t->usend;
    t->usend = NULL;
    rv_loop_defer(t->loop, op, res);
}

/* The session is unusable: say why once, fail what the owner waits for. */
static void fail(struct rv_tlsio *t, int err)
{
    if (!t->failed) {
        t->failed = true;
        t->err = err < 0 ? err : -EPROTO;
        const char *why = rv_tls_error(t->tls);
        if (t->sock_err && !why[0])
            rv_warn("%s: TLS connection failed: %s", t->who, strerror(-t->sock_err));
        else
            rv_warn("%s: TLS %s failed: %s", t->who, t->established ? "session" : "handshake",
                    why[0] ? why : strerror(-t->err));
    }
}

/* Ring completions: record what happened, then let pump() move things on
 * (-EINTR/-EAGAIN just retry). */
static void on_crecv(struct rv_op *op, int res)
{
    struct rv_tlsio *t = RV_CONTAINER_OF(op, struct rv_tlsio, crecv_op);
    t->crecv_pending = false;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (res > 0) {
        RV_MARK_DEFINED(t->cin + t->cin_len, (size_t)res);
        t->cin_len += (uint32_t)res;
    } else if (res != -EINTR && res != -EAGAIN) {
        t->sock_eof = true;
        t->sock_err = res;
    }
    pump(t);
}

static void on_csend(struct rv_op *op, int res)
{
    struct rv_tlsio *t = RV_CONTAINER_OF(op, struct rv_tlsio, csend_op);
    t->csend_pending = false;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (res > 0) {
        rv_tls_ciphertext_consumed(t->tls, (size_t)res);
    } else if (res != -EINTR && res != -EAGAIN) {
        t->sock_err = res < 0 ? res : -EPIPE;
        fail(t, t->sock_err);
    }
    pump(t);
}

/* Hand received ciphertext to the session.  Returns bytes taken or -errno. */
static ssize_t feed(struct rv_tlsio *t)
{
    ssize_t total = 0;
    while (t->cin_pos < t->cin_len) {
        ssize_t n = rv_tls_put_ciphertext(t->tls, t->cin + t->cin_pos, t->cin_len - t->cin_pos);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        t->cin_pos += (uint32_t)n;
        total += n;
    }
    if (t->cin_pos == t->cin_len)
        t->cin_pos = t->cin_len = 0;
    return total;
}

static void issue_csend(struct rv_tlsio *t)
{
    const void *p;
    size_t n = rv_tls_get_ciphertext(t->tls, &p);
    if (n == 0 || t->csend_pending)
        return;
    t->csend_op.fn = on_csend;
    struct io_uring_sqe *sqe = rv_loop_sqe(t->loop, &t->csend_op);
    io_uring_prep_send(sqe, t->fd, p, n, MSG_NOSIGNAL);
    t->csend_pending = true;
    t->csend_len = n;
}

/* Last words (an alert after a failure, close_notify on a clean close):
 * one non-blocking send(2) now rather than a ring send, because the owner
 * is about to close, and a peer that does not read must not hold us.
 * Only when no ring send is in flight, so the stream stays in order. */
static void flush_now(struct rv_tlsio *t)
{
    const void *p;
    size_t n;
    for (int tries = 0; tries < 4 && !t->csend_pending && (n = rv_tls_get_ciphertext(t->tls, &p)); tries++) {
        ssize_t w = send(t->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w <= 0)
            break;
        rv_tls_ciphertext_consumed(t->tls, (size_t)w);
    }
}

static void issue_crecv(struct rv_tlsio *t)
{
    if (t->crecv_pending || t->sock_eof)
        return;
    if (t->cin_pos > 0) {
        memmove(t->cin, t->cin + t->cin_pos, t->cin_len - t->cin_pos);
        t->cin_len -= t->cin_pos;
        t->cin_pos = 0;
    }
    if (t->cin_len == CIN_SIZE)
        return;                 /* the session must take some first */
    t->crecv_op.fn = on_crecv;
    struct io_uring_sqe *sqe = rv_loop_sqe(t->loop, &t->crecv_op);
    io_uring_prep_recv(sqe, t->fd, t->cin + t->cin_len, CIN_SIZE - t->cin_len, 0);
    t->crecv_pending = true;
}

/* Decrypt into the owner's pending recv.  Returns true when more
 * ciphertext is needed to make progress on it. */
static bool pump_recv(struct rv_tlsio *t)
{
    for (;;) {
        if (t->uhave == t->ulen)
            break;
        ssize_t r = rv_tls_read(t->tls, t->ubuf + t->uhave, t->ulen - t->uhave);
        if (r > 0) {
            t->uhave += (size_t)r;
            continue;
        }
        if (r == 0) {
            ssize_t f = feed(t);
            if (f < 0) {
                fail(t, (int)f);
                break;
            }
            if (f > 0)
                continue;
            break;
        }
        if (r == -ESHUTDOWN) {
            t->peer_closed = true;
            break;
        }
        fail(t, (int)r);
        break;
    }
    if (t->uhave > 0 && (t->uhave == t->ulen || !t->uwaitall || t->peer_closed || t->failed ||
                         t->sock_eof)) {
        complete_recv(t, (int)t->uhave);
        return false;
    }
    if (t->failed) {
        complete_recv(t, t->err);
        return false;
    }
    if (t->peer_closed) {
        complete_recv(t, 0);
        return false;
    }
    if (t->sock_eof) {
        /* Nothing more will come: a clean end only after close_notify. */
        feed(t);
        int e = rv_tls_eof(t->tls);
        if (e < 0)
            fail(t, e);
        complete_recv(t, e < 0 ? e : 0);
        return false;
    }
    return true;
}

/* Plaintext is coalesced into full records: a replication frame is a
 * 40-byte header and its payload, an NBD reply a 16-byte header and data,
 * and encrypting each iovec as a record of its own would cost a record
 * (22 bytes, one AEAD call) per header.  Small pieces are staged up to one
 * record; a large piece meeting an empty stage goes straight from the
 * owner's buffer. */
static int flush_stage(struct rv_tlsio *t)
{
    while (t->stage_len > 0) {
        ssize_t w = rv_tls_write(t->tls, t->stage + t->stage_off, t->stage_len);
        if (w < 0)
            return (int)w;
        if (w == 0)
            return 0;               /* queue full: more after the next send */
        t->stage_off += (uint32_t)w;
        t->stage_len -= (uint32_t)w;
    }
    t->stage_off = 0;
    return 0;
}

/* Take as much of the owner's pending sendmsg as fits. */
static void pump_send(struct rv_tlsio *t)
{
    size_t taken = 0;
    int err = flush_stage(t);
    const struct msghdr *m = t->umsg;
    for (size_t i = 0; i < m->msg_iovlen && !err; i++) {
        const uint8_t *base = m->msg_iov[i].iov_base;
        size_t len = m->msg_iov[i].iov_len, off = 0;
        while (off < len) {
            if (t->stage_len == 0 && len - off >= STAGE_SIZE) {
                ssize_t w = rv_tls_write(t->tls, base + off, len - off);
                if (w < 0) {
                    err = (int)w;
                    break;
                }
                if (w == 0)
                    goto full;
                off += (size_t)w;
                taken += (size_t)w;
                continue;
            }
            if (t->stage_off + t->stage_len == STAGE_SIZE) {
                if ((err = flush_stage(t)) < 0)
                    break;
                if (t->stage_len > 0)
                    goto full;
            }
            size_t k = RV_MIN(len - off, (size_t)(STAGE_SIZE - t->stage_off - t->stage_len));
            memcpy(t->stage + t->stage_off + t->stage_len, base + off, k);
            t->stage_len += (uint32_t)k;
            off += k;
            taken += k;
        }
    }
    if (!err)
        err = flush_stage(t);
full:
    if (err < 0) {
        fail(t, err);
        complete_send(t, taken ? (int)RV_MIN(taken, (size_t)INT32_MAX) : t->err);
        return;
    }
    if (taken > 0)
        complete_send(t, (int)RV_MIN(taken, (size_t)INT32_MAX));
}

static void pump(struct rv_tlsio *t)
{
    bool want_input = false;

    if (t->closing)
        return;
    if (!t->failed) {
        ssize_t f = feed(t);
        if (f < 0)
            fail(t, (int)f);
    }
    if (!t->failed && !t->established) {
        for (;;) {
            enum rv_tls_status st = rv_tls_handshake(t->tls);
            if (st == RV_TLS_DONE) {
                t->established = true;
                rv_info("%s: TLS established, peer '%s'", t->who, rv_tls_peer(t->tls));
                break;
            }
            if (st == RV_TLS_ERROR) {
                fail(t, -EPROTO);
                break;
            }
            /* AGAIN: more input may already be waiting in cin. */
            ssize_t f = feed(t);
            if (f < 0) {
                fail(t, (int)f);
                break;
            }
            if (f == 0) {
                want_input = true;
                if (t->sock_eof) {
                    rv_tls_eof(t->tls);
                    fail(t, -ECONNRESET);
                }
                break;
            }
        }
    }
    if (t->failed) {
        if (t->urecv)
            complete_recv(t, t->err);
        if (t->usend)
            complete_send(t, t->err);
    } else if (t->established) {
        if (t->urecv && pump_recv(t))
            want_input = true;
        if (t->usend && !t->failed) {
            pump_send(t);
        } else if (t->stage_len > 0 && !t->failed) {
            int e = flush_stage(t);
            if (e < 0)
                fail(t, e);
        }
    }
    if (t->failed) {
        flush_now(t);           /* the alert, so the peer learns why */
        return;
    }
    issue_csend(t);
    if (want_input)
        issue_crecv(t);
}

struct rv_tlsio *rv_tlsio_new(struct rv_loop *loop, int fd, struct rv_tls_ctx *ctx, const char *who)
{
    struct rv_tlsio *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cin = malloc(CIN_SIZE);
    t->stage = malloc(STAGE_SIZE);
    t->tls = rv_tls_new(ctx);
    t->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (!t->cin || !t->stage || !t->tls || t->fd < 0) {
        if (t->fd >= 0)
            close(t->fd);
        rv_tls_free(t->tls);
        free(t->cin);
        free(t->stage);
        free(t);
        return NULL;
    }
    t->loop = loop;
    snprintf(t->who, sizeof t->who, "%s", who);
    schedule_pump(t);           /* a client speaks first */
    return t;
}

void rv_tlsio_recv(struct rv_tlsio *t, struct rv_op *op, void *buf, size_t len, bool waitall)
{
    t->urecv = op;
    t->ubuf = buf;
    t->ulen = len;
    t->uhave = 0;
    t->uwaitall = waitall;
    schedule_pump(t);
}

void rv_tlsio_sendmsg(struct rv_tlsio *t, struct rv_op *op, const struct msghdr *msg)
{
    t->usend = op;
    t->umsg = msg;
    schedule_pump(t);
}

void rv_tlsio_cancel(struct rv_tlsio *t, struct rv_op *op)
{
    if (op && t->urecv == op)
        complete_recv(t, -ECANCELED);
    else if (op && t->usend == op)
        complete_send(t, -ECANCELED);
}

void rv_tlsio_close(struct rv_tlsio *t, bool graceful)
{
    if (t->closing)
        return;
    if (t->urecv)
        complete_recv(t, -ECANCELED);
    if (t->usend)
        complete_send(t, -ECANCELED);
    t->closing = true;
    if (graceful && t->established && !t->failed && flush_stage(t) == 0 && t->stage_len == 0 &&
        rv_tls_shutdown(t->tls) == 0)
        flush_now(t);
    shutdown(t->fd, SHUT_RDWR);         /* wakes our pending recv/send */
    maybe_free(t);
}

bool rv_tlsio_established(const struct rv_tlsio *t)
{
    return t->established && !t->failed;
}

const char *rv_tlsio_peer(const struct rv_tlsio *t)
{
    return rv_tls_peer(t->tls);
}

const char *rv_tlsio_error(const struct rv_tlsio *t)
{
    return rv_tls_error(t->tls);
}
