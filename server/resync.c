/* resync.c - the sync source (see include/repvol/resync.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "repvol/log.h"
#include "repvol/repl_proto.h"
#include "repvol/resync.h"
#include "repvol/util.h"
#include "repvol/volume.h"

struct chunk {
    struct rv_req req;          /* the local read, ordered like a write */
    struct rv_sendq_item item;  /* the RESYNC_WRITE frame */
    struct rv_resync *rs;
    uint64_t seq;
    bool busy, sent, answered;
    int answer;
};

enum rs_state { RS_IDLE, RS_SOURCE, RS_DONE_SENT, RS_TARGET };

struct rv_resync {
    struct rv_volume *v;
    struct rv_resync_link link;
    uint64_t rate;              /* bytes/s, 0 = unlimited */
    enum rs_state state;
    bool full;
    bool aborting;
    uint64_t cursor;            /* next bit to look at */
    unsigned inflight;
    struct chunk chunks[RV_RESYNC_INFLIGHT];
    struct rv_sendq_item done_item;
    bool done_busy, done_sent;
    uint64_t done_seq;
    uint64_t done_ticket;       /* metadata commit SYNC_DONE waits for (0: none) */
    unsigned done_polls;
    /* progress */
    uint64_t total_bytes, sent_bytes, start_ns, end_ns;
    uint64_t rate_t0_ns, rate_bytes0, rate_now;    /* recent rate */
    /* pacing */
    struct rv_op timer_op;
    struct __kernel_timespec ts;
    bool timer_pending;
    uint64_t runs;
};

static void rs_pump(struct rv_resync *rs);
static void notify_idle(struct rv_resync *rs);
static void chunk_maybe_finish(struct chunk *c);

int rv_resync_create(struct rv_resync **out, struct rv_volume *v, const struct rv_resync_link *link,
                     uint64_t rate_limit)
{
    struct rv_resync *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    rs->v = v;
    rs->link = *link;
    rs->rate = rate_limit;
    for (unsigned i = 0; i < RV_RESYNC_INFLIGHT; i++)
        rs->chunks[i].rs = rs;
    *out = rs;
    return 0;
}

void rv_resync_destroy(struct rv_resync *rs)
{
    free(rs);
}

bool rv_resync_active(const struct rv_resync *rs)
{
    return rs && (rs->state == RS_SOURCE || rs->state == RS_DONE_SENT || rs->state == RS_TARGET);
}

bool rv_resync_idle(const struct rv_resync *rs)
{
    return !rs || (rs->inflight == 0 && !rs->done_busy && !rs->timer_pending);
}

static uint64_t left_bytes(const struct rv_resync *rs)
{
    return rs->v->bm.set_bits << rs->v->bm.gran_shift;
}

void rv_resync_start(struct rv_resync *rs, bool full)
{
    struct rv_volume *v = rs->v;
    if (full) {
        /* Everything allocated here; holes read as zeroes on a fresh
         * mirror already, so they need not travel. */
        struct rv_extent ext[64];
        for (uint64_t off = 0; off < v->size;) {
            int n = rv_volume_extents(v, off, v->size - off, ext, 64);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++) {
                if (!(ext[i].flags & RV_EXTENT_HOLE))
                    rv_bitmap_mark(&v->bm, ext[i].off, ext[i].len);
                off = ext[i].off + ext[i].len;
            }
        }
    }
    rs->state = RS_SOURCE;
    rs->done_ticket = 0;
    rs->full = full;
    rs->aborting = false;
    rs->cursor = 0;
    rs->total_bytes = left_bytes(rs);
    rs->sent_bytes = 0;
    rs->start_ns = rs->rate_t0_ns = rv_now_ns();
    rs->end_ns = 0;
    rs->rate_bytes0 = 0;
    rs->rate_now = 0;
    rs->runs++;
    char sz[32];
    rv_info("volume %s: resync started as source (%s): %s to send", v->meta.name,
            full ? "full sync" : "dirty bitmap", rv_format_size(rs->total_bytes, sz, sizeof sz));
    rs_pump(rs);
}

void rv_resync_abort(struct rv_resync *rs)
{
    if (!rs)
        return;
    /* Chunks already on the wire will never be answered now: retire them
     * (their bits stay set).  Unsent ones come back through their send
     * callbacks with an error. */
    for (unsigned i = 0; i < RV_RESYNC_INFLIGHT; i++) {
        struct chunk *c = &rs->chunks[i];
        if (c->busy && c->sent && !c->answered) {
            c->answered = true;
            c->answer = -ENOTCONN;
            rs->aborting = true;
            chunk_maybe_finish(c);
        }
    }
    if (rs->state == RS_DONE_SENT && rs->done_busy) {
        /* SYNC_DONE sent (or queued) and not answered: the peer may have
         * adopted our generation and may go on to write to it. */
        rv_warn("volume %s: link closed before the peer confirmed the end of the resync: "
                "a new data generation starts with the next write", rs->v->meta.name);
        rv_volume_peer_maybe_adopted(rs->v);
    }
    if (rs->done_busy && rs->done_sent) {
        rs->done_busy = false;
        notify_idle(rs);
    }
    if (rs->state == RS_IDLE)
        return;
    if (rs->state != RS_TARGET) {
        char sz[32];
        rv_warn("volume %s: resync interrupted with %s left; it resumes on the next connection",
                rs->v->meta.name, rv_format_size(left_bytes(rs), sz, sizeof sz));
    }
    rs->aborting = true;
    rs->state = RS_IDLE;
}

static void timer_cb(struct rv_op *op, int res)
{
    struct rv_resync *rs = RV_CONTAINER_OF(op, struct rv_resync, timer_op);
    rs->timer_pending = false;
    rs_pump(rs);
    notify_idle(rs);
}

static void arm_timer(struct rv_resync *rs, uint64_t ns)
{
    if (rs->timer_pending)
        return;
    rs->ts.tv_sec = (long long)(ns / 1000000000u);
    rs->ts.tv_nsec = (long long)(ns % 1000000000u);
    rs->timer_op.fn = timer_cb;
    struct io_uring_sqe *sqe = rv_loop_sqe(rs->v->loop, &rs->timer_op);
    io_uring_prep_timeout(sqe, &rs->ts, 0, 0);
    rs->timer_pending = true;
}

static void notify_idle(struct rv_resync *rs)
{
    if (rv_resync_idle(rs) && rs->link.idle)
        rs->link.idle(rs->link.ctx);
}

static void chunk_free(struct chunk *c)
{
    struct rv_resync *rs = c->rs;
    if (c->req.buf)
        rv_bufpool_put(&rs->v->pool, c->req.buf);
    c->req.buf = NULL;
    c->busy = false;
    rs->inflight--;
    notify_idle(rs);
}

/* Sent and answered: the target has the data durably; clear the bits. */
static void chunk_maybe_finish(struct chunk *c)
{
    struct rv_resync *rs = c->rs;
    if (!c->sent || !c->answered)
        return;
    if (c->answer == 0 && !rs->aborting) {
        rv_bitmap_clear(&rs->v->bm, c->req.off, c->req.len);
        rs->sent_bytes += c->req.len;
    } else if (c->answer != 0 && c->answer != -ENOTCONN && c->answer != -ECONNRESET) {
        rv_err("volume %s: peer failed to store resync data at %" PRIu64 ": %s", rs->v->meta.name,
               c->req.off, strerror(-c->answer));
    }
    chunk_free(c);
    rs_pump(rs);
}

static void chunk_sent(struct rv_sendq_item *it, int err)
{
    struct chunk *c = RV_CONTAINER_OF(it, struct chunk, item);
    c->sent = true;
    if (err) {
        c->answered = true;     /* no answer will come */
        c->answer = err;
    }
    chunk_maybe_finish(c);
}

static void chunk_read_done(struct rv_req *req)
{
    struct chunk *c = RV_CONTAINER_OF(req, struct chunk, req);
    struct rv_resync *rs = c->rs;
    if (req->result < 0 || rs->aborting) {
        if (req->result < 0)
            rv_err("volume %s: resync read at %" PRIu64 " failed: %s", rs->v->meta.name, req->off,
                   strerror(-req->result));
        chunk_free(c);
        rs_pump(rs);
        return;
    }
    /* Still inside the ordering list's protection: queue the frame now, so
     * a client write to this range (released right after) goes out after
     * it on the same stream. */
    c->seq = rs->link.next_seq(rs->link.ctx);
    struct rv_repl_hdr h = { .type = RV_REPL_T_RESYNC_WRITE, .flags = RV_REPL_F_FUA, .seq = c->seq,
                             .offset = req->off, .length = req->len, .payload_len = req->len };
    rv_repl_encode_hdr(c->item.hdr, &h);
    c->item.hdr_len = RV_REPL_HDR_SIZE;
    c->item.data = req->buf;
    c->item.data_len = req->len;
    c->item.done = chunk_sent;
    c->sent = c->answered = false;
    if (!rs->link.send(rs->link.ctx, &c->item)) {
        chunk_free(c);
        return;
    }
}

bool rv_resync_answer(struct rv_resync *rs, uint64_t seq, int err)
{
    if (!rs)
        return false;
    if (rs->done_busy && seq == rs->done_seq) {
        rs->done_busy = false;
        if (err) {
            rv_err("volume %s: peer failed to complete the resync: %s", rs->v->meta.name, strerror(-err));
            rs->state = RS_IDLE;
            return true;
        }
        struct rv_volume *v = rs->v;
        rs->state = RS_IDLE;
        rs->end_ns = rv_now_ns();
        char sz[32];
        double secs = (double)(rs->end_ns - rs->start_ns) / 1e9;
        rv_info("volume %s: resync complete: %s in %.1f s; the peer is up to date", v->meta.name,
                rv_format_size(rs->sent_bytes, sz, sizeof sz), secs);
        /* Not ahead of the peer any more. */
        v->meta.bitmap_gen = 0;
        rv_volume_peer_in_sync(v);
        rv_volume_meta_commit(v, NULL);
        return true;
    }
    for (unsigned i = 0; i < RV_RESYNC_INFLIGHT; i++) {
        struct chunk *c = &rs->chunks[i];
        if (c->busy && c->req.buf && c->seq == seq && !c->answered) {
            c->answered = true;
            c->answer = err;
            chunk_maybe_finish(c);
            return true;
        }
    }
    return false;
}

static void done_sent(struct rv_sendq_item *it, int err)
{
    struct rv_resync *rs = RV_CONTAINER_OF(it, struct rv_resync, done_item);
    rs->done_sent = true;
    if (err) {
        rs->done_busy = false;
        notify_idle(rs);
    }
}

static void rs_pump(struct rv_resync *rs)
{
    struct rv_volume *v = rs->v;
    if (rs->state != RS_SOURCE || rs->aborting)
        return;
    uint64_t now = rv_now_ns();
    if (now - rs->rate_t0_ns >= 1000000000u) {
        rs->rate_now = (rs->sent_bytes - rs->rate_bytes0) * 1000000000u / (now - rs->rate_t0_ns);
        rs->rate_t0_ns = now;
        rs->rate_bytes0 = rs->sent_bytes;
    }
    while (rs->inflight < RV_RESYNC_INFLIGHT) {
        if (rs->rate) {
            /* Bytes allowed so far at the configured rate. */
            uint64_t allowed = (uint64_t)((double)rs->rate * (double)(now - rs->start_ns) / 1e9) + RV_RESYNC_CHUNK;
            uint64_t issued = rs->sent_bytes + (uint64_t)rs->inflight * RV_RESYNC_CHUNK;
            if (issued >= allowed) {
                arm_timer(rs, 20000000u);
                return;
            }
        }
        uint64_t bit = rv_bitmap_next_set(&v->bm, rs->cursor);
        if (bit >= v->bm.nbits) {
            if (rs->inflight > 0)
                return;         /* the last chunks are still out */
            if (v->bm.set_bits > 0) {
                rs->cursor = 0; /* bits set behind the cursor: go round again */
                continue;
            }
            /* Everything is on the peer.  First make "not ahead of the
             * peer" durable (model finding 14): once the peer adopts our
             * generation it may write to it, and if we crashed before
             * recording that, we would restart still claiming the old
             * bitmap base and write to the same generation too (two data
             * sets, one generation).  Without the record a restart full-
             * syncs instead.  The commit is awaited by polling its ticket
             * (a callback cannot find this resync from the volume). */
            if (!rs->done_ticket) {
                v->meta.bitmap_gen = 0;
                rs->done_ticket = rv_volume_meta_commit(v, NULL);
                rs->done_polls = 0;
            }
            if (v->meta_seq_done < rs->done_ticket) {
                if (++rs->done_polls % 2000 == 0)
                    rs->done_ticket = rv_volume_meta_commit(v, NULL);   /* a failed flush: again */
                arm_timer(rs, 1000000u);
                return;
            }
            rs->done_ticket = 0;
            rs->state = RS_DONE_SENT;
            rs->done_seq = rs->link.next_seq(rs->link.ctx);
            struct rv_repl_hdr h = { .type = RV_REPL_T_SYNC_DONE, .seq = rs->done_seq,
                                     .offset = v->meta.current_gen };
            rv_repl_encode_hdr(rs->done_item.hdr, &h);
            rs->done_item.hdr_len = RV_REPL_HDR_SIZE;
            rs->done_item.data = NULL;
            rs->done_item.data_len = 0;
            rs->done_item.done = done_sent;
            rs->done_busy = true;
            rs->done_sent = false;
            if (!rs->link.send(rs->link.ctx, &rs->done_item))
                rs->done_busy = false;
            return;
        }
        uint64_t max_bits = RV_RESYNC_CHUNK >> v->bm.gran_shift;
        uint64_t end = rv_bitmap_run_end(&v->bm, bit, max_bits);
        uint64_t off = bit << v->bm.gran_shift;
        uint64_t len = (end - bit) << v->bm.gran_shift;
        if (off + len > v->size)
            len = v->size - off;
        void *buf = rv_bufpool_get(&v->pool, len);
        if (!buf) {
            arm_timer(rs, 5000000u);   /* buffers busy with client I/O: retry shortly */
            return;
        }
        struct chunk *c = NULL;
        for (unsigned i = 0; i < RV_RESYNC_INFLIGHT; i++)
            if (!rs->chunks[i].busy) {
                c = &rs->chunks[i];
                break;
            }
        c->busy = true;
        c->seq = 0;
        rs->inflight++;
        rs->cursor = end;
        memset(&c->req, 0, sizeof c->req);
        c->req.origin = RV_ORIGIN_RESYNC;
        c->req.type = RV_IO_READ;
        c->req.off = off;
        c->req.len = (uint32_t)len;
        c->req.buf = buf;
        c->req.done = chunk_read_done;
        rv_volume_submit(v, &c->req);
    }
}

void rv_resync_target_begin(struct rv_resync *rs)
{
    rs->state = RS_TARGET;
    rs->sent_bytes = 0;
    rs->total_bytes = 0;
    rs->start_ns = rs->rate_t0_ns = rv_now_ns();
    rs->rate_bytes0 = 0;
}

void rv_resync_target_progress(struct rv_resync *rs, uint64_t bytes)
{
    rs->sent_bytes += bytes;
    uint64_t now = rv_now_ns();
    if (now - rs->rate_t0_ns >= 1000000000u) {
        rs->rate_now = (rs->sent_bytes - rs->rate_bytes0) * 1000000000u / (now - rs->rate_t0_ns);
        rs->rate_t0_ns = now;
        rs->rate_bytes0 = rs->sent_bytes;
    }
}

void rv_resync_target_end(struct rv_resync *rs)
{
    rs->state = RS_IDLE;
    rs->end_ns = rv_now_ns();
}

struct rs_view {
    const char *state;
    uint64_t left, total, done, rate;
    double pct;
    long eta;
};

static struct rs_view rs_view(const struct rv_resync *rs)
{
    struct rs_view w = { .state = "none", .eta = -1 };
    if (rs && (rs->state == RS_SOURCE || rs->state == RS_DONE_SENT))
        w.state = "source";
    else if (rs && rs->state == RS_TARGET)
        w.state = "target";
    w.left = rs && rs->state != RS_TARGET ? left_bytes(rs) : 0;
    w.total = rs ? rs->total_bytes : 0;
    w.done = rs ? rs->sent_bytes : 0;
    w.pct = w.total ? 100.0 * (double)(w.total - RV_MIN(w.left, w.total)) / (double)w.total : 100.0;
    w.rate = rs ? rs->rate_now : 0;
    if (rs && w.rate == 0 && rs->start_ns && w.done) {
        uint64_t t = (rs->end_ns ? rs->end_ns : rv_now_ns()) - rs->start_ns;
        if (t)
            w.rate = w.done * 1000000000u / t;
    }
    if (strcmp(w.state, "source") == 0 && w.rate)
        w.eta = (long)(w.left / w.rate);
    return w;
}

void rv_resync_status(const struct rv_resync *rs, bool json, struct rv_strbuf *out)
{
    struct rs_view w = rs_view(rs);
    if (json) {
        rv_sb_printf(out, "{\"state\":\"%s\",\"percent\":%.1f,\"bytes_total\":%" PRIu64 ",\"bytes_left\":%" PRIu64
                     ",\"bytes_done\":%" PRIu64 ",\"rate_bytes_per_sec\":%" PRIu64 ",\"eta_seconds\":%ld"
                     ",\"rate_limit\":%" PRIu64 ",\"runs\":%" PRIu64 "}",
                     w.state, w.pct, w.total, w.left, w.done, w.rate, w.eta, rs ? rs->rate : 0, rs ? rs->runs : 0);
        return;
    }
    char a[32], b[32], c[32];
    if (!strcmp(w.state, "none")) {
        rv_sb_printf(out, "sync:        idle (%s dirty)\n", rv_format_size(w.left, a, sizeof a));
        return;
    }
    rv_sb_printf(out, "sync:        %s, %.1f%% (%s left of %s), %s/s", w.state, w.pct,
                 rv_format_size(w.left, a, sizeof a), rv_format_size(w.total, b, sizeof b),
                 rv_format_size(w.rate, c, sizeof c));
    if (w.eta >= 0)
        rv_sb_printf(out, ", ETA %ld s", w.eta);
    rv_sb_printf(out, "\n");
}

void rv_resync_progress(const struct rv_resync *rs, struct rv_strbuf *out)
{
    struct rs_view w = rs_view(rs);
    rv_sb_printf(out, "sync %s %.1f %" PRIu64 " %" PRIu64 " %" PRIu64 " %ld\n", w.state, w.pct, w.left, w.total,
                 w.rate, w.eta);
}
