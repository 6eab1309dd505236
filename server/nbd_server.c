/* nbd_server.c - the NBD frontend: listeners and connections driven by the
 * daemon's io_uring loop (accept, recv, sendmsg are ring operations).
 *
 * Protocol logic lives elsewhere, as pure code: nbd_handshake.c runs the
 * option phase, nbd_proto.c decodes and checks requests and encodes replies.
 * This file only moves bytes and turns requests into struct rv_req.
 *
 * A connection in the transmission phase:
 *   recv into rbuf (many requests per recv) -> decode header -> take a slot
 *   and a pool buffer -> WRITE payload: copy what rbuf holds, recv the rest
 *   straight into the buffer -> rv_volume_submit() -> ... -> done callback
 *   -> encode the reply header -> send queue -> one sendmsg gathers the
 *   headers and data of every queued reply.
 * Out of slots or buffers, the connection stops reading until one is freed
 * (back-pressure; nothing is allocated per request).
 *
 * Lifetime: a connection is freed only when no ring operation and no engine
 * request refers to it any more (c->ops == 0 and c->busy == 0).
 *
 * Resource bounds.  Memory per connection is fixed at accept time: rbuf
 * (RBUF_SIZE), max_inflight slots and, in the option phase, the handshake
 * state; at most max_connections of them.  Data buffers come from the
 * volume's preallocated pool only.  A WRITE's buffer goes back to the pool
 * as soon as the write is done (its reply carries no data), so a client
 * that never reads its replies pins only its slots; a READ's buffer is held
 * until the reply is sent.  A once-a-second tick closes connections that
 * hold a place or buffers without progress: still in the option phase after
 * the handshake timeout, or a reply send stalled for the send timeout. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "repvol/frontend.h"
#include "repvol/log.h"
#include "repvol/netaddr.h"
#include "repvol/nbd_handshake.h"
#include "repvol/nbd_proto.h"
#include "repvol/tlsio.h"
#include "repvol/strbuf.h"
#include "repvol/util.h"

#define RBUF_SIZE        (128u * 1024)
#define MAX_LISTENERS    8
#define SEND_IOV_MAX     64
#define REPLY_HDR_MAX    32       /* structured chunk header + offset */
#define BS_MAX_EXTENTS   256      /* descriptors per BLOCK_STATUS reply */
#define BS_BUF_SIZE      4096u    /* holds a BLOCK_STATUS chunk of BS_MAX_EXTENTS */
#define HS_TIMEOUT_MS    10000u   /* default --handshake-timeout */
#define SEND_TIMEOUT_MS  30000u   /* default --send-timeout */
#define TICK_MS          1000u

struct nbd_frontend;
struct nbd_conn;

enum slot_state { SLOT_FREE, SLOT_PAYLOAD, SLOT_ENGINE, SLOT_QUEUED };

struct nbd_slot {
    struct rv_req req;
    struct nbd_conn *conn;
    enum slot_state state;
    uint64_t cookie;
    uint16_t cmd;
    uint16_t nbd_flags;
    uint32_t nbd_err;           /* error to report (already NBD-encoded) */
    void *buf;                  /* pool buffer (READ/WRITE data, BLOCK_STATUS descriptors) */
    uint32_t buf_len;           /* its size (class), counted in conn->buf_held */
    uint8_t hdr[REPLY_HDR_MAX];
    uint32_t hdr_len;
    const uint8_t *data;        /* reply payload after hdr */
    uint32_t data_len;
    uint32_t sent;              /* bytes of hdr+data already sent */
    struct nbd_slot *next;      /* free list / send queue */
};

enum conn_state { CONN_HANDSHAKE, CONN_TRANSMISSION, CONN_CLOSING };

struct nbd_conn {
    struct nbd_frontend *nf;
    struct nbd_conn *prev, *next;
    int fd;
    uint64_t id;
    char peer[80];
    enum conn_state state;
    struct nbd_hs *hs;          /* option phase only */
    struct rv_tlsio *tio;       /* after NBD_OPT_STARTTLS: all I/O goes through TLS */
    enum nbd_hs_status hs_status;
    bool structured;
    bool base_alloc;
    uint32_t base_alloc_id;
    struct nbd_limits lim;

    uint8_t *rbuf;
    uint32_t rpos, rlen;
    struct rv_op recv_op;
    bool recv_pending;
    bool rx_done;               /* no more requests will be read (EOF, DISC, shutdown, error) */
    bool paused;                /* waiting for a slot or a buffer */
    struct nbd_slot *payload;   /* WRITE whose payload is being received */
    uint32_t payload_have;
    bool payload_direct;        /* recv in flight straight into payload->buf */
    uint32_t discard_left;      /* bytes of a rejected WRITE payload still to drop */

    struct rv_op send_op;
    bool send_pending;
    uint64_t send_start_ns;     /* when the pending send was issued */
    uint64_t hs_deadline_ns;    /* option phase must end by then */
    struct msghdr msg;
    struct iovec iov[SEND_IOV_MAX];
    struct nbd_slot *sq_head, **sq_tail;   /* replies waiting to be sent */
    uint32_t hs_sending;        /* handshake bytes in the current send */

    struct rv_op cancel_op;
    struct rv_op resume_op;
    bool resume_pending;
    struct rv_bufpool_waiter buf_wait;

    struct nbd_slot *slots;
    struct nbd_slot *free_slots;
    unsigned busy;              /* slots not free */
    size_t buf_held;            /* pool bytes held by this connection's slots */
    unsigned ops;               /* ring operations and deferred calls outstanding */
    uint64_t requests;
};

struct listener {
    int fd;
    char addr[256];
    char unix_path[108];
    struct rv_op accept_op;
    bool accept_pending;
    struct rv_op cancel_op;
    struct nbd_frontend *nf;
};

struct nbd_frontend {
    struct rv_frontend fe;
    struct rv_nbd_opts opts;
    struct nbd_hs_export exp;
    char export_name[256];
    struct listener listeners[MAX_LISTENERS];
    unsigned nlisteners;
    unsigned listeners_open;
    struct nbd_conn *conns;
    unsigned nconns;
    uint64_t next_id;
    bool shutting_down;
    bool drained_called;
    struct rv_op tick_op;
    struct __kernel_timespec tick_ts;
    bool tick_pending;
    uint64_t refused;           /* connections over --max-connections */
    uint64_t hs_timeouts;       /* closed by the tick: --handshake-timeout */
    uint64_t send_timeouts;     /* closed by the tick: --send-timeout */
    size_t buf_share;           /* most pool bytes one connection may hold */
};

static void conn_process(struct nbd_conn *c);
static void conn_kick_send(struct nbd_conn *c);
static void conn_close(struct nbd_conn *c, const char *why);
static void conn_maybe_free(struct nbd_conn *c);
static void conn_release_io(struct nbd_conn *c);
static void frontend_maybe_drained(struct nbd_frontend *nf);
static void listener_arm(struct listener *l);

/* ------------------------------------------------------------------ slots */

static struct nbd_slot *slot_get(struct nbd_conn *c)
{
    struct nbd_slot *s = c->free_slots;
    if (!s)
        return NULL;
    c->free_slots = s->next;
    s->next = NULL;
    s->buf = NULL;
    s->data = NULL;
    s->data_len = s->sent = s->hdr_len = 0;
    s->nbd_err = 0;
    c->busy++;
    return s;
}

static void conn_wake(struct nbd_conn *c);

static void slot_buf_put(struct nbd_conn *c, struct nbd_slot *s)
{
    if (!s->buf)
        return;
    rv_bufpool_put(&c->nf->fe.vol->pool, s->buf);
    c->buf_held -= s->buf_len;
    s->buf = NULL;
    s->buf_len = 0;
}

static void slot_put(struct nbd_conn *c, struct nbd_slot *s)
{
    slot_buf_put(c, s);
    s->state = SLOT_FREE;
    s->next = c->free_slots;
    c->free_slots = s;
    c->busy--;
    conn_wake(c);
}

/* ------------------------------------------------------------------ replies */

/* Queue a slot's reply (header already encoded) for sending. */
static void reply_queue(struct nbd_conn *c, struct nbd_slot *s)
{
    if (c->state == CONN_CLOSING) {     /* nobody to tell any more */
        slot_put(c, s);
        conn_maybe_free(c);
        return;
    }
    s->state = SLOT_QUEUED;
    s->next = NULL;
    *c->sq_tail = s;
    c->sq_tail = &s->next;
    conn_kick_send(c);
}

static void reply_error(struct nbd_conn *c, struct nbd_slot *s, uint32_t nbd_err)
{
    s->nbd_err = nbd_err;
    s->data = NULL;
    s->data_len = 0;
    if (s->state != SLOT_PAYLOAD) {
        /* No data in an error reply (see req_done). */
        slot_buf_put(c, s);
        conn_wake(c);
    }
    if (c->structured && (s->cmd == NBD_CMD_READ || s->cmd == NBD_CMD_BLOCK_STATUS))
        s->hdr_len = (uint32_t)nbd_encode_error_chunk(s->hdr, sizeof s->hdr, NBD_REPLY_FLAG_DONE,
                                                      s->cookie, nbd_err, NULL);
    else
        s->hdr_len = (uint32_t)nbd_encode_simple_reply(s->hdr, nbd_err, s->cookie);
    reply_queue(c, s);
}

static void req_done(struct rv_req *req)
{
    struct nbd_slot *s = RV_CONTAINER_OF(req, struct nbd_slot, req);
    struct nbd_conn *c = s->conn;
    c->requests++;
    if (req->result < 0) {
        rv_debug("nbd conn %" PRIu64 ": %s off=%" PRIu64 " len=%" PRIu32 ": %s", c->id,
                 nbd_cmd_name(s->cmd), req->off, req->len, strerror(-req->result));
        reply_error(c, s, nbd_errno_to_nbd(req->result));
        return;
    }
    if (s->cmd == NBD_CMD_READ) {
        if (c->structured)
            s->hdr_len = (uint32_t)nbd_encode_offset_data(s->hdr, NBD_REPLY_FLAG_DONE, s->cookie,
                                                          req->off, req->len);
        else
            s->hdr_len = (uint32_t)nbd_encode_simple_reply(s->hdr, 0, s->cookie);
        s->data = s->buf;
        s->data_len = req->len;
    } else {
        s->hdr_len = (uint32_t)nbd_encode_simple_reply(s->hdr, 0, s->cookie);
    }
    if (s->buf && s->cmd != NBD_CMD_READ) {
        /* The reply carries no data: don't let a client that is slow to
         * read its replies (or never does) keep the buffer. */
        slot_buf_put(c, s);
        conn_wake(c);
    }
    reply_queue(c, s);
}

static void on_send(struct rv_op *op, int res);

static void conn_kick_send(struct nbd_conn *c)
{
    if (c->send_pending || c->state == CONN_CLOSING)
        return;
    unsigned n = 0;
    if (c->state == CONN_HANDSHAKE) {
        size_t len;
        const uint8_t *out = nbd_hs_output(c->hs, &len);
        if (len == 0)
            return;
        c->iov[0].iov_base = (void *)out;
        c->iov[0].iov_len = len;
        c->hs_sending = (uint32_t)len;
        n = 1;
    } else {
        for (struct nbd_slot *s = c->sq_head; s && n + 2 <= SEND_IOV_MAX; s = s->next) {
            uint32_t skip = s->sent;
            if (skip < s->hdr_len) {
                c->iov[n].iov_base = s->hdr + skip;
                c->iov[n].iov_len = s->hdr_len - skip;
                n++;
                skip = 0;
            } else {
                skip -= s->hdr_len;
            }
            if (s->data_len > skip) {
                c->iov[n].iov_base = (void *)(s->data + skip);
                c->iov[n].iov_len = s->data_len - skip;
                n++;
            }
        }
        if (n == 0)
            return;
    }
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = n;
    c->send_op.fn = on_send;
    if (c->tio) {
        rv_tlsio_sendmsg(c->tio, &c->send_op, &c->msg);
    } else {
        struct io_uring_sqe *sqe = rv_loop_sqe(c->nf->fe.loop, &c->send_op);
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    }
    c->send_pending = true;
    c->send_start_ns = rv_now_ns();
    c->ops++;
}

static void on_send(struct rv_op *op, int res)
{
    struct nbd_conn *c = RV_CONTAINER_OF(op, struct nbd_conn, send_op);
    c->send_pending = false;
    c->ops--;
    if (res == -EINTR || res == -EAGAIN) {
        conn_kick_send(c);
        return;
    }
    if (c->state == CONN_CLOSING) {
        conn_release_io(c);
        conn_maybe_free(c);
        return;
    }
    if (res <= 0) {
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", res < 0 ? strerror(-res) : "closed");
        conn_close(c, why);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        nbd_hs_output_consumed(c->hs, (size_t)res);
        conn_process(c);
        return;
    }
    /* Retire fully sent replies; remember progress in a partly sent one. */
    uint32_t left = (uint32_t)res;
    while (left > 0 && c->sq_head) {
        struct nbd_slot *s = c->sq_head;
        uint32_t total = s->hdr_len + s->data_len;
        uint32_t take = RV_MIN(left, total - s->sent);
        s->sent += take;
        left -= take;
        if (s->sent < total)
            break;
        c->sq_head = s->next;
        if (!c->sq_head)
            c->sq_tail = &c->sq_head;
        slot_put(c, s);
    }
    conn_kick_send(c);
    /* A graceful end (DISC/EOF/shutdown) closes once everything is answered. */
    if (c->rx_done && c->busy == 0 && !c->send_pending)
        conn_close(c, NULL);
}

/* ------------------------------------------------------------------ receive */

static void on_recv(struct rv_op *op, int res);

static void conn_recv(struct nbd_conn *c, void *buf, uint32_t len, bool waitall)
{
    c->recv_op.fn = on_recv;
    if (c->tio) {
        rv_tlsio_recv(c->tio, &c->recv_op, buf, len, waitall);
    } else {
        struct io_uring_sqe *sqe = rv_loop_sqe(c->nf->fe.loop, &c->recv_op);
        io_uring_prep_recv(sqe, c->fd, buf, len, waitall ? MSG_WAITALL : 0);
    }
    c->recv_pending = true;
    c->ops++;
}

static void resume_cb(struct rv_op *op, int res)
{
    struct nbd_conn *c = RV_CONTAINER_OF(op, struct nbd_conn, resume_op);
    c->resume_pending = false;
    c->ops--;
    if (c->state == CONN_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    conn_process(c);
}

/* A slot or buffer came free: resume reading on the next turn of the loop. */
static void conn_wake(struct nbd_conn *c)
{
    if (!c->paused || c->resume_pending || c->state == CONN_CLOSING)
        return;
    c->paused = false;
    c->resume_pending = true;
    c->ops++;
    c->resume_op.fn = resume_cb;
    rv_loop_defer(c->nf->fe.loop, &c->resume_op, 0);
}

static void buf_wake(struct rv_bufpool_waiter *w)
{
    struct nbd_conn *c = RV_CONTAINER_OF(w, struct nbd_conn, buf_wait);
    conn_wake(c);
}

static void submit_slot(struct nbd_conn *c, struct nbd_slot *s)
{
    s->state = SLOT_ENGINE;
    rv_volume_submit(c->nf->fe.vol, &s->req);
}

static void block_status(struct nbd_conn *c, struct nbd_slot *s, uint64_t off, uint32_t count)
{
    struct rv_extent ext[BS_MAX_EXTENTS];
    unsigned max = (s->nbd_flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : BS_MAX_EXTENTS;
    int n = rv_volume_extents(c->nf->fe.vol, off, count, ext, max);
    if (n <= 0) {
        reply_error(c, s, nbd_errno_to_nbd(n < 0 ? n : -EIO));
        return;
    }
    struct nbd_block_desc d[BS_MAX_EXTENTS];
    for (int i = 0; i < n; i++) {
        d[i].length = (uint32_t)ext[i].len;
        d[i].status = ((ext[i].flags & RV_EXTENT_HOLE) ? NBD_STATE_HOLE : 0) |
                      ((ext[i].flags & RV_EXTENT_ZERO) ? NBD_STATE_ZERO : 0);
    }
    /* The whole chunk (header, context id, descriptors) goes in the slot's
     * pool buffer and is sent as the reply's data. */
    size_t len = nbd_encode_block_status(s->buf, BS_BUF_SIZE, NBD_REPLY_FLAG_DONE, s->cookie,
                                         c->base_alloc_id, d, (size_t)n);
    if (len == 0) {
        reply_error(c, s, NBD_EIO);
        return;
    }
    s->hdr_len = 0;
    s->data = s->buf;
    s->data_len = (uint32_t)len;
    c->requests++;
    reply_queue(c, s);
}

/* Start one decoded request.  Returns false when the connection must pause
 * (no buffer); the header is then left unconsumed. */
static bool start_request(struct nbd_conn *c, const struct nbd_request *r)
{
    struct nbd_slot *s = slot_get(c);
    s->conn = c;
    s->cookie = r->cookie;
    s->cmd = r->type;
    s->nbd_flags = r->flags;

    uint32_t err = nbd_check_request(r, &c->lim);
    if (err) {
        rv_debug("nbd conn %" PRIu64 ": rejecting %s off=%" PRIu64 " len=%" PRIu32 ": %s", c->id,
                 nbd_cmd_name(r->type), r->offset, r->count, nbd_err_name(err));
        switch (nbd_rejected_payload_action(r, &c->lim)) {
        case NBD_PAYLOAD_DISCONNECT:
            slot_put(c, s);
            conn_close(c, "WRITE payload too large to drain");
            return true;
        case NBD_PAYLOAD_DISCARD:
            c->discard_left = nbd_request_payload_len(r);
            break;
        case NBD_PAYLOAD_NONE:
            break;
        }
        reply_error(c, s, err);
        return true;
    }

    size_t need = 0;
    if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)
        need = r->count;
    else if (r->type == NBD_CMD_BLOCK_STATUS)
        need = BS_BUF_SIZE;
    if (need) {
        /* One connection holds at most buf_share bytes of the pool, counted
         * by buffer (class) size; with none held it may take any buffer.
         * A client that stops reading its READ replies can't starve the
         * others.  Over its share it waits for the pool (or for one of its
         * own buffers, which wakes it too). */
        size_t room = SIZE_MAX;
        if (c->buf_held > 0)
            room = c->buf_held < c->nf->buf_share ? c->nf->buf_share - c->buf_held : 0;
        s->buf = room >= need ? rv_bufpool_get_max(&c->nf->fe.vol->pool, need, room) : NULL;
        if (s->buf) {
            s->buf_len = (uint32_t)rv_bufpool_size(&c->nf->fe.vol->pool, s->buf);
            c->buf_held += s->buf_len;
        }
        if (!s->buf) {
            s->state = SLOT_FREE;
            s->next = c->free_slots;
            c->free_slots = s;
            c->busy--;
            rv_bufpool_wait(&c->nf->fe.vol->pool, &c->buf_wait);
            return false;
        }
    }

    struct rv_req *q = &s->req;
    memset(q, 0, sizeof *q);
    q->off = r->offset;
    q->len = r->count;
    q->buf = s->buf;
    q->done = req_done;
    q->flags = (r->flags & NBD_CMD_FLAG_FUA) ? RV_IO_FUA : 0;
    switch (r->type) {
    case NBD_CMD_READ:
        q->type = RV_IO_READ;
        break;
    case NBD_CMD_WRITE:
        q->type = RV_IO_WRITE;
        s->state = SLOT_PAYLOAD;
        c->payload = s;
        c->payload_have = 0;
        return true;            /* submitted once the payload is in */
    case NBD_CMD_FLUSH:
        q->type = RV_IO_FLUSH;
        q->flags = 0;
        break;
    case NBD_CMD_TRIM:
        q->type = RV_IO_TRIM;
        break;
    case NBD_CMD_WRITE_ZEROES:
        q->type = RV_IO_ZERO;
        if (r->flags & NBD_CMD_FLAG_NO_HOLE)
            q->flags |= RV_IO_NO_HOLE;
        if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
            q->flags |= RV_IO_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        block_status(c, s, r->offset, r->count);
        return true;
    default:
        reply_error(c, s, NBD_EINVAL);
        return true;
    }
    submit_slot(c, s);
    return true;
}

/* Consume buffered input: handshake bytes or requests and payloads. */
static void conn_process(struct nbd_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;

    if (c->state == CONN_HANDSHAKE) {
        for (;;) {
            if (c->send_pending)
                return;                 /* continue when the reply is out */
            size_t pending;
            nbd_hs_output(c->hs, &pending);
            if (pending) {
                conn_kick_send(c);
                return;
            }
            if (c->hs_status == NBD_HS_CLOSE) {
                rv_info("nbd conn %" PRIu64 " (%s): handshake ended: %s", c->id, c->peer,
                        c->hs->close_reason ? c->hs->close_reason : "refused");
                conn_close(c, NULL);
                return;
            }
            if (c->hs_status == NBD_HS_STARTTLS) {
                /* The ACK is out.  Anything already received arrived in
                 * plaintext after STARTTLS: the client must wait for the
                 * ACK, so it is a confused client or an injection. */
                if (c->rpos != c->rlen) {
                    conn_close(c, "plaintext data after NBD_OPT_STARTTLS");
                    return;
                }
                char who[128];
                snprintf(who, sizeof who, "nbd conn %" PRIu64 " (%s)", c->id, c->peer);
                c->tio = rv_tlsio_new(c->nf->fe.loop, c->fd, c->nf->opts.tls, who);
                if (!c->tio) {
                    conn_close(c, "out of memory for a TLS session");
                    return;
                }
                nbd_hs_tls_started(c->hs);
                c->hs_status = NBD_HS_CONTINUE;
                continue;
            }
            if (c->hs_status == NBD_HS_DONE) {
                const struct nbd_hs_result *res = &c->hs->result;
                c->structured = res->structured;
                c->base_alloc = res->base_allocation;
                c->base_alloc_id = res->base_allocation_id;
                nbd_hs_limits(c->hs, &c->lim);
                free(c->hs);
                c->hs = NULL;
                c->state = CONN_TRANSMISSION;
                rv_info("nbd conn %" PRIu64 " (%s): transmission phase%s%s%s%s%s", c->id, c->peer,
                        c->structured ? ", structured replies" : "",
                        c->base_alloc ? ", base:allocation" : "",
                        c->tio ? ", TLS, client '" : "", c->tio ? rv_tlsio_peer(c->tio) : "",
                        c->tio ? "'" : "");
                break;
            }
            if (c->rpos == c->rlen) {
                c->rpos = c->rlen = 0;
                if (!c->recv_pending)
                    conn_recv(c, c->rbuf, RBUF_SIZE, false);
                return;
            }
            size_t used = 0;
            c->hs_status = nbd_hs_feed(c->hs, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
            c->rpos += (uint32_t)used;
        }
    }

    /* Transmission phase. */
    while (!c->rx_done) {
        uint32_t avail = c->rlen - c->rpos;
        if (c->discard_left) {
            uint32_t take = RV_MIN(avail, c->discard_left);
            c->rpos += take;
            c->discard_left -= take;
            if (c->discard_left)
                break;                  /* need more input */
            continue;
        }
        if (c->payload) {
            struct nbd_slot *s = c->payload;
            uint32_t take = RV_MIN(avail, s->req.len - c->payload_have);
            memcpy((uint8_t *)s->buf + c->payload_have, c->rbuf + c->rpos, take);
            c->rpos += take;
            c->payload_have += take;
            if (c->payload_have < s->req.len) {
                /* The rest goes straight into the request buffer. */
                c->rpos = c->rlen = 0;
                c->payload_direct = true;
                if (!c->recv_pending)
                    conn_recv(c, (uint8_t *)s->buf + c->payload_have, s->req.len - c->payload_have, true);
                return;
            }
            c->payload = NULL;
            submit_slot(c, s);
            continue;
        }
        if (avail < NBD_REQUEST_SIZE)
            break;
        if (!c->free_slots) {
            c->paused = true;           /* resumed by slot_put() */
            return;
        }
        struct nbd_request r;
        int n = nbd_decode_request(c->rbuf + c->rpos, avail, &r);
        if (n < 0) {
            conn_close(c, "bad request magic");
            return;
        }
        if (r.type == NBD_CMD_DISC) {
            c->rpos += (uint32_t)n;
            c->rx_done = true;
            rv_debug("nbd conn %" PRIu64 ": client sent NBD_CMD_DISC", c->id);
            break;
        }
        if (!start_request(c, &r)) {
            c->paused = true;           /* resumed by the buffer pool */
            return;
        }
        if (c->state == CONN_CLOSING)
            return;
        c->rpos += (uint32_t)n;
    }

    if (c->rx_done) {
        if (c->busy == 0 && !c->send_pending)
            conn_close(c, NULL);
        return;
    }
    /* Need more input: compact and read. */
    if (!c->recv_pending) {
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        conn_recv(c, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, false);
    }
}

static void on_recv(struct rv_op *op, int res)
{
    struct nbd_conn *c = RV_CONTAINER_OF(op, struct nbd_conn, recv_op);
    c->recv_pending = false;
    c->ops--;
    if (c->state == CONN_CLOSING) {
        c->payload_direct = false;
        conn_release_io(c);
        conn_maybe_free(c);
        return;
    }
    if (res == -EINTR || res == -EAGAIN) {
        res = 0;
        if (c->payload_direct) {
            c->payload_direct = false;  /* re-issued by conn_process */
        }
        conn_process(c);
        return;
    }
    if (res == -ECANCELED || c->rx_done) {
        /* Shutdown stopped reading: answer what is in flight, then close. */
        c->rx_done = true;
        if (c->payload_direct) {
            c->payload_direct = false;
        }
        if (c->payload) {               /* half-received WRITE: never acknowledged, drop it */
            slot_put(c, c->payload);
            c->payload = NULL;
        }
        if (c->busy == 0 && !c->send_pending)
            conn_close(c, NULL);
        return;
    }
    if (res <= 0) {
        if (res == 0 && c->state == CONN_TRANSMISSION && !c->payload && c->discard_left == 0 &&
            c->rpos == c->rlen) {
            /* EOF between requests: the client is gone; finish and close. */
            c->rx_done = true;
            if (c->busy == 0 && !c->send_pending)
                conn_close(c, NULL);
            return;
        }
        char why[RV_TLS_ERR_MAX + 16];
        const char *tls_err = c->tio ? rv_tlsio_error(c->tio) : "";
        if (tls_err[0])
            snprintf(why, sizeof why, "TLS: %s", tls_err);
        else
            snprintf(why, sizeof why, "%s", res == 0 ? "client closed the connection mid-message"
                                                     : strerror(-res));
        conn_close(c, why);
        return;
    }
    if (c->payload_direct) {
        c->payload_direct = false;
        RV_MARK_DEFINED((uint8_t *)c->payload->buf + c->payload_have, (size_t)res);
        c->payload_have += (uint32_t)res;
        /* conn_process copies nothing (rbuf empty) and either submits the
         * write or asks for the rest. */
    } else {
        RV_MARK_DEFINED(c->rbuf + c->rlen, (size_t)res);
        c->rlen += (uint32_t)res;
    }
    conn_process(c);
}

/* ------------------------------------------------------------------ lifetime */

static void conn_cancel_cb(struct rv_op *op, int res)
{
    struct nbd_conn *c = RV_CONTAINER_OF(op, struct nbd_conn, cancel_op);
    c->ops--;
    conn_maybe_free(c);
}

static void conn_release_io(struct nbd_conn *c)
{
    if (!c->send_pending) {
        while (c->sq_head) {
            struct nbd_slot *s = c->sq_head;
            c->sq_head = s->next;
            slot_put(c, s);
        }
        c->sq_tail = &c->sq_head;
    }
    if (c->payload && !c->recv_pending) {
        slot_put(c, c->payload);
        c->payload = NULL;
    }
}

/* Stop the connection.  why == NULL: a normal end. */
static void conn_close(struct nbd_conn *c, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    if (why)
        rv_warn("nbd conn %" PRIu64 " (%s): closing: %s", c->id, c->peer, why);
    else
        rv_info("nbd conn %" PRIu64 " (%s): closed after %" PRIu64 " requests", c->id, c->peer, c->requests);
    c->state = CONN_CLOSING;
    rv_bufpool_cancel_wait(&c->nf->fe.vol->pool, &c->buf_wait);
    bool had_tls = c->tio != NULL;
    if (c->tio) {
        /* Completes our pending recv/send with -ECANCELED; frees itself.
         * A normal end says close_notify first. */
        rv_tlsio_close(c->tio, why == NULL);
        c->tio = NULL;
    } else {
        /* Wake any recv/send still in the kernel; their completions free us. */
        shutdown(c->fd, SHUT_RDWR);
    }
    if (!had_tls && (c->recv_pending || c->send_pending)) {
        c->cancel_op.fn = conn_cancel_cb;
        struct io_uring_sqe *sqe = rv_loop_sqe(c->nf->fe.loop, &c->cancel_op);
        io_uring_prep_cancel(sqe, c->recv_pending ? (void *)&c->recv_op : (void *)&c->send_op, 0);
        c->ops++;
    }
    /* Replies that will never be sent, and a WRITE never acknowledged.
     * Buffers the kernel may still be reading or filling (a send or a
     * payload recv in flight) are returned only after that operation
     * completes: a pool buffer reused by another connection while this
     * socket still sends from it would leak that connection's data. */
    conn_release_io(c);
    conn_maybe_free(c);
}

static void conn_maybe_free(struct nbd_conn *c)
{
    if (c->state != CONN_CLOSING || c->ops > 0 || c->busy > 0)
        return;
    /* A send may have been in flight when we started closing; its slots were
     * returned then.  Nothing refers to c now. */
    struct nbd_frontend *nf = c->nf;
    if (c->prev)
        c->prev->next = c->next;
    else
        nf->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nf->nconns--;
    close(c->fd);
    free(c->hs);
    free(c->rbuf);
    free(c->slots);
    free(c);
    frontend_maybe_drained(nf);
}

static struct nbd_conn *conn_new(struct nbd_frontend *nf, int fd, const char *peer)
{
    struct nbd_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rbuf = malloc(RBUF_SIZE);
    c->slots = calloc(nf->opts.max_inflight, sizeof *c->slots);
    c->hs = malloc(sizeof *c->hs);
    if (!c->rbuf || !c->slots || !c->hs) {
        free(c->rbuf);
        free(c->slots);
        free(c->hs);
        free(c);
        return NULL;
    }
    for (unsigned i = 0; i < nf->opts.max_inflight; i++) {
        c->slots[i].next = c->free_slots;
        c->free_slots = &c->slots[i];
    }
    c->nf = nf;
    c->fd = fd;
    c->id = ++nf->next_id;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->sq_tail = &c->sq_head;
    c->buf_wait.wake = buf_wake;
    c->state = CONN_HANDSHAKE;
    c->hs_deadline_ns = rv_now_ns() + (uint64_t)nf->opts.handshake_timeout_ms * 1000000u;
    nbd_hs_init(c->hs, &nf->exp);
    c->next = nf->conns;
    if (nf->conns)
        nf->conns->prev = c;
    nf->conns = c;
    nf->nconns++;
    return c;
}

/* ------------------------------------------------------------------ listeners */

static void on_accept(struct rv_op *op, int res)
{
    struct listener *l = RV_CONTAINER_OF(op, struct listener, accept_op);
    struct nbd_frontend *nf = l->nf;
    l->accept_pending = false;
    if (nf->shutting_down) {
        if (res >= 0)
            close(res);
        frontend_maybe_drained(nf);
        return;
    }
    if (res < 0) {
        if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED)
            rv_warn("nbd listener %s: accept: %s", l->addr, strerror(-res));
        if (res == -EMFILE || res == -ENFILE)
            rv_err("nbd listener %s: out of file descriptors", l->addr);
        listener_arm(l);
        return;
    }
    int fd = res;
    char peer[80];
    rv_peer_name(fd, peer, sizeof peer);
    if (!l->unix_path[0]) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (nf->nconns >= nf->opts.max_connections) {
        rv_warn("nbd listener %s: refusing %s: already %u connections (--max-connections)",
                l->addr, peer, nf->nconns);
        nf->refused++;
        close(fd);
        listener_arm(l);
        return;
    }
    /* Only a primary serves its volume; a secondary's copy is being
     * written by its primary and must not be used or changed here. */
    nf->exp.unavailable = nf->fe.vol->role == RV_ROLE_PRIMARY ? NULL
        : "the volume is a replication secondary here; connect to the primary";
    struct nbd_conn *c = conn_new(nf, fd, peer);
    if (!c) {
        rv_err("nbd listener %s: out of memory for a new connection", l->addr);
        close(fd);
    } else {
        rv_info("nbd conn %" PRIu64 ": new connection from %s on %s", c->id, peer, l->addr);
        conn_process(c);        /* sends the greeting */
    }
    listener_arm(l);
}

static void listener_arm(struct listener *l)
{
    l->accept_op.fn = on_accept;
    struct io_uring_sqe *sqe = rv_loop_sqe(l->nf->fe.loop, &l->accept_op);
    io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    l->accept_pending = true;
}

static int listener_open(struct listener *l, const char *addr)
{
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    if (!strncmp(addr, "unix:", 5)) {
        l->fd = rv_listen_unix(addr + 5, 128, false, "listen");
        if (l->fd >= 0)
            snprintf(l->unix_path, sizeof l->unix_path, "%s", addr + 5);
    } else if (!strncmp(addr, "tcp:", 4)) {
        l->fd = rv_listen_tcp(addr + 4, 128, "listen");
    } else {
        rv_err("listen %s: expected unix:PATH or tcp:HOST:PORT", addr);
        l->fd = -EINVAL;
    }
    if (l->fd < 0) {
        int e = l->fd;
        l->fd = -1;
        return e;
    }
    return 0;
}

static void listener_close(struct listener *l)
{
    if (l->fd < 0)
        return;
    if (l->unix_path[0])
        unlink(l->unix_path);
    /* shutdown() wakes a pending accept with an error; its completion sees
     * shutting_down and does not re-arm. */
    shutdown(l->fd, SHUT_RDWR);
    if (l->accept_pending) {
        struct io_uring_sqe *sqe = rv_loop_sqe(l->nf->fe.loop, NULL);
        io_uring_prep_cancel(sqe, &l->accept_op, 0);
    }
    close(l->fd);
    l->fd = -1;
}

/* ------------------------------------------------------------------ tick */

static void tick_arm(struct nbd_frontend *nf);

/* Close connections that hold a place or pool buffers without progress. */
static void on_tick(struct rv_op *op, int res)
{
    struct nbd_frontend *nf = RV_CONTAINER_OF(op, struct nbd_frontend, tick_op);
    (void)res;
    nf->tick_pending = false;
    if (nf->shutting_down) {
        frontend_maybe_drained(nf);
        return;
    }
    uint64_t now = rv_now_ns();
    uint64_t send_tmo = (uint64_t)nf->opts.send_timeout_ms * 1000000u;
    for (struct nbd_conn *c = nf->conns, *next; c; c = next) {
        next = c->next;
        char why[128];
        if (c->state == CONN_HANDSHAKE && now > c->hs_deadline_ns) {
            snprintf(why, sizeof why, "option phase not finished within %u ms (--handshake-timeout)",
                     nf->opts.handshake_timeout_ms);
            nf->hs_timeouts++;
        } else if (c->state != CONN_CLOSING && c->send_pending && now - c->send_start_ns > send_tmo) {
            snprintf(why, sizeof why, "client read none of its replies for %u ms (--send-timeout); "
                     "%u request(s) unanswered", nf->opts.send_timeout_ms, c->busy);
            nf->send_timeouts++;
        } else {
            continue;
        }
        conn_close(c, why);
    }
    tick_arm(nf);
}

static void tick_arm(struct nbd_frontend *nf)
{
    nf->tick_ts.tv_sec = TICK_MS / 1000;
    nf->tick_ts.tv_nsec = (long long)(TICK_MS % 1000) * 1000000;
    nf->tick_op.fn = on_tick;
    struct io_uring_sqe *sqe = rv_loop_sqe(nf->fe.loop, &nf->tick_op);
    io_uring_prep_timeout(sqe, &nf->tick_ts, 0, 0);
    nf->tick_pending = true;
}

/* ------------------------------------------------------------------ frontend ops */

static int nbd_start(struct rv_frontend *fe)
{
    struct nbd_frontend *nf = (struct nbd_frontend *)fe;
    for (unsigned i = 0; i < nf->nlisteners; i++) {
        int r = listener_open(&nf->listeners[i], nf->opts.listen[i]);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < nf->nlisteners; i++) {
        listener_arm(&nf->listeners[i]);
        rv_info("volume %s: serving NBD on %s (export '%s')", fe->vol->meta.name,
                nf->listeners[i].addr, nf->export_name);
    }
    tick_arm(nf);
    return 0;
}

static void frontend_maybe_drained(struct nbd_frontend *nf)
{
    if (!nf->shutting_down || nf->drained_called || nf->conns || nf->tick_pending)
        return;
    for (unsigned i = 0; i < nf->nlisteners; i++)
        if (nf->listeners[i].accept_pending)
            return;
    nf->drained_called = true;
    if (nf->fe.drained)
        nf->fe.drained(&nf->fe);
}

/* Read no more requests on any connection; what was received is done and
 * answered, then each connection closes.  A recv in the kernel is
 * cancelled (its completion sees rx_done). */
static void stop_all_connections(struct nbd_frontend *nf, const char *why)
{
    for (struct nbd_conn *c = nf->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_HANDSHAKE) {
            conn_close(c, why);
            continue;
        }
        c->rx_done = true;
        if (c->recv_pending && c->tio) {
            rv_tlsio_cancel(c->tio, &c->recv_op);
        } else if (c->recv_pending) {
            struct io_uring_sqe *sqe = rv_loop_sqe(nf->fe.loop, NULL);
            io_uring_prep_cancel(sqe, &c->recv_op, 0);
        } else if (c->busy == 0 && !c->send_pending) {
            conn_close(c, why);
        }
    }
}

static void nbd_shutdown(struct rv_frontend *fe)
{
    struct nbd_frontend *nf = (struct nbd_frontend *)fe;
    if (nf->shutting_down)
        return;
    nf->shutting_down = true;
    for (unsigned i = 0; i < nf->nlisteners; i++)
        listener_close(&nf->listeners[i]);
    if (nf->tick_pending) {     /* its completion (-ECANCELED) sees shutting_down */
        struct io_uring_sqe *sqe = rv_loop_sqe(nf->fe.loop, NULL);
        io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&nf->tick_op, 0);
    }
    stop_all_connections(nf, NULL);
    frontend_maybe_drained(nf);
}

static unsigned nbd_inflight(struct rv_frontend *fe)
{
    struct nbd_frontend *nf = (struct nbd_frontend *)fe;
    unsigned n = 0;
    for (struct nbd_conn *c = nf->conns; c; c = c->next)
        n += c->busy;
    return n;
}

static unsigned nbd_clients(struct rv_frontend *fe)
{
    return ((struct nbd_frontend *)fe)->nconns;
}

static void nbd_disconnect_clients(struct rv_frontend *fe)
{
    stop_all_connections((struct nbd_frontend *)fe, "disconnected by the operator");
}

static void nbd_destroy(struct rv_frontend *fe)
{
    struct nbd_frontend *nf = (struct nbd_frontend *)fe;
    for (unsigned i = 0; i < nf->nlisteners; i++)
        if (nf->listeners[i].fd >= 0) {
            if (nf->listeners[i].unix_path[0])
                unlink(nf->listeners[i].unix_path);
            close(nf->listeners[i].fd);
        }
    /* Connections are gone once drained; after a failed start there are none. */
    while (nf->conns) {
        struct nbd_conn *c = nf->conns;
        nf->conns = c->next;
        if (c->tio)
            rv_tlsio_close(c->tio, false);
        close(c->fd);
        free(c->hs);
        free(c->rbuf);
        free(c->slots);
        free(c);
    }
    free(nf);
}

static void nbd_describe(struct rv_frontend *fe, struct rv_strbuf *out)
{
    struct nbd_frontend *nf = (struct nbd_frontend *)fe;
    unsigned tls = 0;
    for (struct nbd_conn *c = nf->conns; c; c = c->next)
        tls += c->tio != NULL;
    static const char *const mode[] = { "off", "on (optional)", "required" };
    rv_sb_printf(out, "%u client(s), %u over TLS; TLS %s", nf->nconns, tls, mode[nf->exp.tls]);
    if (nf->refused || nf->hs_timeouts || nf->send_timeouts)
        rv_sb_printf(out, "; %" PRIu64 " refused (--max-connections %u), %" PRIu64 " closed by "
                     "--handshake-timeout, %" PRIu64 " by --send-timeout", nf->refused,
                     nf->opts.max_connections, nf->hs_timeouts, nf->send_timeouts);
    rv_sb_printf(out, "\n");
}

static const struct rv_frontend_ops nbd_ops = {
    .name = "nbd",
    .start = nbd_start,
    .shutdown = nbd_shutdown,
    .inflight = nbd_inflight,
    .clients = nbd_clients,
    .disconnect_clients = nbd_disconnect_clients,
    .destroy = nbd_destroy,
    .describe = nbd_describe,
};

int rv_nbd_frontend_create(struct rv_frontend **out, struct rv_volume *vol,
                           struct rv_loop *loop, const struct rv_nbd_opts *opts)
{
    struct nbd_frontend *nf = calloc(1, sizeof *nf);
    if (!nf)
        return -ENOMEM;
    nf->fe.ops = &nbd_ops;
    nf->fe.vol = vol;
    nf->fe.loop = loop;
    nf->opts = *opts;
    if (!nf->opts.handshake_timeout_ms)
        nf->opts.handshake_timeout_ms = HS_TIMEOUT_MS;
    if (!nf->opts.send_timeout_ms)
        nf->opts.send_timeout_ms = SEND_TIMEOUT_MS;
    nf->buf_share = vol->pool.total_bytes / 4;
    for (unsigned i = 0; opts->listen[i]; i++) {
        if (i == MAX_LISTENERS) {
            free(nf);
            rv_err("at most %d listeners", MAX_LISTENERS);
            return -EINVAL;
        }
        nf->listeners[i].fd = -1;
        nf->listeners[i].nf = nf;
        nf->nlisteners++;
    }
    snprintf(nf->export_name, sizeof nf->export_name, "%s",
             opts->export_name ? opts->export_name : vol->meta.name);
    nf->exp.name = nf->export_name;
    nf->exp.description = "repvol volume";
    nf->exp.size = vol->size;
    nf->exp.min_block = 1;
    nf->exp.pref_block = 4096;
    nf->exp.max_block = (uint32_t)vol->max_request;
    nf->exp.tls = opts->tls ? opts->tls_mode : NBD_HS_TLS_OFF;
    /* Multi-conn is safe: FLUSH is fdatasync of the whole image, so it
     * covers writes completed on every connection. */
    nf->exp.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                     NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN;
    if (vol->readonly)
        nf->exp.tflags |= NBD_FLAG_READ_ONLY;
    else
        nf->exp.tflags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    *out = &nf->fe;
    return 0;
}
