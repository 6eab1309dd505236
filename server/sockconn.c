/* sockconn.c - stream socket plumbing on the event loop (see sockconn.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repvol/log.h"
#include "repvol/sockconn.h"
#include "repvol/tlsio.h"
#include "repvol/util.h"

static void sc_kick_send(struct rv_sockconn *sc);
static void sc_issue_recv(struct rv_sockconn *sc);

static void sc_fail_queue(struct rv_sockconn *sc)
{
    int err = sc->close_err ? sc->close_err : -ECONNRESET;
    while (sc->sq_head) {
        struct rv_sendq_item *it = sc->sq_head;
        sc->sq_head = it->next;
        if (!sc->sq_head)
            sc->sq_tail = &sc->sq_head;
        it->next = NULL;
        it->done(it, err);
    }
}

static void sc_final(struct rv_op *op, int res)
{
    struct rv_sockconn *sc = RV_CONTAINER_OF(op, struct rv_sockconn, cancel_op);
    /* Nothing in the kernel refers to our buffers any more. */
    sc_fail_queue(sc);
    close(sc->fd);
    sc->fd = -1;
    sc->ops->on_closed(sc);
}

/* The last step runs from the loop, never inside the owner's own call to
 * rv_sockconn_close(), so the owner may free itself in on_closed(). */
static void sc_maybe_closed(struct rv_sockconn *sc)
{
    if (!sc->closing || sc->ops_pending > 0 || sc->fd < 0 || sc->final_scheduled)
        return;
    sc->final_scheduled = true;
    sc->cancel_op.fn = sc_final;
    rv_loop_defer(sc->loop, &sc->cancel_op, 0);
}

int rv_sockconn_init(struct rv_sockconn *sc, struct rv_loop *loop, int fd, uint32_t rcap,
                     const struct rv_sockconn_ops *ops)
{
    memset(sc, 0, sizeof *sc);
    sc->rbuf = malloc(rcap);
    if (!sc->rbuf)
        return -ENOMEM;
    sc->rcap = rcap;
    sc->loop = loop;
    sc->fd = fd;
    sc->ops = ops;
    sc->sq_tail = &sc->sq_head;
    return 0;
}

void rv_sockconn_fini(struct rv_sockconn *sc)
{
    free(sc->rbuf);
    sc->rbuf = NULL;
    if (sc->tio) {              /* never started, or closed already */
        rv_tlsio_close(sc->tio, false);
        sc->tio = NULL;
    }
    if (sc->fd >= 0)
        close(sc->fd);
    sc->fd = -1;
}

int rv_sockconn_start_tls(struct rv_sockconn *sc, struct rv_tls_ctx *ctx, const char *who)
{
    sc->tio = rv_tlsio_new(sc->loop, sc->fd, ctx, who);
    return sc->tio ? 0 : -ENOMEM;
}

static void sc_on_recv(struct rv_op *op, int res)
{
    struct rv_sockconn *sc = RV_CONTAINER_OF(op, struct rv_sockconn, recv_op);
    sc->recv_pending = false;
    sc->ops_pending--;
    if (sc->closing) {
        sc->direct = NULL;
        sc_maybe_closed(sc);
        return;
    }
    if (res == -EINTR || res == -EAGAIN) {
        sc_issue_recv(sc);
        return;
    }
    if (res <= 0) {
        sc->ops->on_eof(sc, res);
        return;
    }
    sc->bytes_in += (uint64_t)res;
    if (sc->direct) {
        RV_MARK_DEFINED((uint8_t *)sc->direct + sc->direct_have, (size_t)res);
        sc->direct_have += (uint32_t)res;
        if (sc->direct_have < sc->direct_len) {
            sc_issue_recv(sc);
            return;
        }
        sc->direct = NULL;
    } else {
        RV_MARK_DEFINED(sc->rbuf + sc->rlen, (size_t)res);
        sc->rlen += (uint32_t)res;
    }
    sc->ops->on_input(sc);
    if (sc->reading && !sc->closing)
        rv_sockconn_read(sc);
}

static void sc_issue_recv(struct rv_sockconn *sc)
{
    if (sc->recv_pending || sc->closing)
        return;
    sc->recv_op.fn = sc_on_recv;
    if (sc->tio) {
        if (sc->direct)
            rv_tlsio_recv(sc->tio, &sc->recv_op, (uint8_t *)sc->direct + sc->direct_have,
                          sc->direct_len - sc->direct_have, true);
        else
            rv_tlsio_recv(sc->tio, &sc->recv_op, sc->rbuf + sc->rlen, sc->rcap - sc->rlen, false);
    } else {
        struct io_uring_sqe *sqe = rv_loop_sqe(sc->loop, &sc->recv_op);
        if (sc->direct)
            io_uring_prep_recv(sqe, sc->fd, (uint8_t *)sc->direct + sc->direct_have,
                               sc->direct_len - sc->direct_have, MSG_WAITALL);
        else
            io_uring_prep_recv(sqe, sc->fd, sc->rbuf + sc->rlen, sc->rcap - sc->rlen, 0);
    }
    sc->recv_pending = true;
    sc->ops_pending++;
}

void rv_sockconn_read(struct rv_sockconn *sc)
{
    sc->reading = true;
    if (sc->recv_pending || sc->closing || sc->direct)
        return;
    if (sc->rpos > 0) {
        memmove(sc->rbuf, sc->rbuf + sc->rpos, sc->rlen - sc->rpos);
        sc->rlen -= sc->rpos;
        sc->rpos = 0;
    }
    if (sc->rlen == sc->rcap)
        return;                 /* the owner must consume first (a frame never exceeds rcap) */
    sc_issue_recv(sc);
}

void rv_sockconn_pause(struct rv_sockconn *sc)
{
    sc->reading = false;
}

void rv_sockconn_recv_into(struct rv_sockconn *sc, void *buf, uint32_t len)
{
    if (sc->closing)
        return;
    /* Only called with the buffered input consumed and no recv pending. */
    sc->rpos = sc->rlen = 0;
    sc->direct = buf;
    sc->direct_len = len;
    sc->direct_have = 0;
    if (len == 0) {
        sc->direct = NULL;
        return;
    }
    sc_issue_recv(sc);
}

static void sc_on_send(struct rv_op *op, int res)
{
    struct rv_sockconn *sc = RV_CONTAINER_OF(op, struct rv_sockconn, send_op);
    sc->send_pending = false;
    sc->ops_pending--;
    if (sc->closing) {
        sc_maybe_closed(sc);
        return;
    }
    if (res == -EINTR || res == -EAGAIN) {
        sc_kick_send(sc);
        return;
    }
    if (res <= 0) {
        sc->ops->on_eof(sc, res < 0 ? res : -EPIPE);
        return;
    }
    sc->bytes_out += (uint64_t)res;
    uint32_t left = (uint32_t)res;
    while (left > 0 && sc->sq_head) {
        struct rv_sendq_item *it = sc->sq_head;
        uint32_t total = it->hdr_len + it->data_len;
        uint32_t take = RV_MIN(left, total - it->sent);
        it->sent += take;
        left -= take;
        if (it->sent < total)
            break;
        sc->sq_head = it->next;
        if (!sc->sq_head)
            sc->sq_tail = &sc->sq_head;
        it->next = NULL;
        it->done(it, 0);
        if (sc->closing)            /* done() may have closed us */
            break;
    }
    if (sc->closing) {
        sc_maybe_closed(sc);
        return;
    }
    sc_kick_send(sc);
}

static void sc_kick_send(struct rv_sockconn *sc)
{
    if (sc->send_pending || sc->closing || !sc->sq_head)
        return;
    unsigned n = 0;
    for (struct rv_sendq_item *it = sc->sq_head; it && n + 2 <= RV_SOCKCONN_IOV_MAX; it = it->next) {
        uint32_t skip = it->sent;
        if (skip < it->hdr_len) {
            sc->iov[n].iov_base = it->hdr + skip;
            sc->iov[n].iov_len = it->hdr_len - skip;
            n++;
            skip = 0;
        } else {
            skip -= it->hdr_len;
        }
        if (it->data_len > skip) {
            sc->iov[n].iov_base = (uint8_t *)it->data + skip;
            sc->iov[n].iov_len = it->data_len - skip;
            n++;
        }
    }
    memset(&sc->msg, 0, sizeof sc->msg);
    sc->msg.msg_iov = sc->iov;
    sc->msg.msg_iovlen = n;
    sc->send_op.fn = sc_on_send;
    if (sc->tio) {
        rv_tlsio_sendmsg(sc->tio, &sc->send_op, &sc->msg);
    } else {
        struct io_uring_sqe *sqe = rv_loop_sqe(sc->loop, &sc->send_op);
        io_uring_prep_sendmsg(sqe, sc->fd, &sc->msg, MSG_NOSIGNAL);
    }
    sc->send_pending = true;
    sc->ops_pending++;
}

void rv_sockconn_send(struct rv_sockconn *sc, struct rv_sendq_item *it)
{
    it->sent = 0;
    it->next = NULL;
    if (sc->closing) {
        it->done(it, sc->close_err ? sc->close_err : -ECONNRESET);
        return;
    }
    *sc->sq_tail = it;
    sc->sq_tail = &it->next;
    sc_kick_send(sc);
}

void rv_sockconn_close(struct rv_sockconn *sc, int err)
{
    if (sc->closing || sc->fd < 0)
        return;
    sc->closing = true;
    sc->reading = false;
    sc->close_err = err ? err : -ECONNRESET;
    if (sc->tio) {
        /* Completes our pending recv/send with -ECANCELED; it frees itself.
         * close_notify (best effort): what we sent is complete, so the
         * peer may tell our deliberate close from a cut connection. */
        rv_tlsio_close(sc->tio, true);
        sc->tio = NULL;
        if (!sc->send_pending)
            sc_fail_queue(sc);
        sc_maybe_closed(sc);
        return;
    }
    /* Wake whatever the kernel is doing on this socket. */
    shutdown(sc->fd, SHUT_RDWR);
    if (sc->recv_pending) {
        struct io_uring_sqe *sqe = rv_loop_sqe(sc->loop, NULL);
        io_uring_prep_cancel(sqe, &sc->recv_op, 0);
    }
    if (sc->send_pending) {
        struct io_uring_sqe *sqe = rv_loop_sqe(sc->loop, NULL);
        io_uring_prep_cancel(sqe, &sc->send_op, 0);
    }
    if (!sc->send_pending)
        sc_fail_queue(sc);
    sc_maybe_closed(sc);
}
