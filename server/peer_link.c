/* peer_link.c - the replication link (see include/repvol/peer_link.h).
 *
 * One struct peer_conn per TCP connection, on top of sockconn (framing-free
 * socket plumbing).  The connection's life:
 *   dial or accept -> HELLO exchange (compatibility and data generations;
 *   a refusal is logged on both sides) -> CONNECTED: the primary sends
 *   WRITE/TRIM/ZERO/FLUSH frames and completes each request's peer leg on
 *   the peer's ACK; the secondary applies frames through the volume engine
 *   and answers ACK/NACK -> closed: every leg the connection still held is
 *   handed back as "not on the peer" once no socket operation refers to
 *   its buffer.
 * A 1-second-ish tick sends keepalive PINGs, declares a silent peer dead
 * after --peer-timeout, and redials with backoff. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include "repvol/log.h"
#include "repvol/netaddr.h"
#include "repvol/peer_link.h"
#include "repvol/repl_proto.h"
#include "repvol/resync.h"
#include "repvol/sync_decide.h"
#include "repvol/tlsio.h"
#include "repvol/util.h"
#include "repvol/verify.h"
#include "repvol/volume.h"

#define PEER_RBUF_SIZE   (256u * 1024)
#define HELLO_FRAME_MAX  (RV_REPL_HDR_SIZE + RV_REPL_HELLO_SIZE)
#define BACKOFF_MIN_MS   500u
#define BACKOFF_MAX_MS   10000u
#define PEER_KO_COUNT    4u            /* a write unanswered for 4 x --peer-timeout drops the peer */
#define ASYNC_RING       (32u << 20)   /* mode A: bytes sent or queued, not yet acknowledged */
#define ASYNC_FRAMES     8192u         /* ... and frames (32 MiB of 4 KiB writes) */

struct peer_conn;

/* A request the primary sent us (secondary side). */
struct remote_req {
    struct rv_req req;
    struct peer_conn *pc;
    uint64_t seq;
    uint64_t gen;               /* SYNC_DONE: the source's data generation */
    uint16_t type;
    bool early_acked;           /* mode B: the RECEIVED ack is queued, not yet sent */
    bool answer_deferred;       /* finished while that ack was still queued */
    bool busy;
    struct remote_req *nack_next;       /* failed, waiting for Outdated to be durable */
    struct rv_sendq_item ack;
    struct remote_req *next_free;
};

/* Mode A: a frame with its own copy of the data, so the client's request
 * can complete before the frame is sent.  It lives until the peer has
 * acknowledged it: a frame the link drops (unsent, or sent but unanswered)
 * marks its range dirty, so a resync delivers it later. */
struct async_frame {
    struct rv_sendq_item item;
    struct rv_peer *p;
    uint8_t *buf;               /* in the send ring, or NULL (no data) */
    uint64_t seq, off;
    uint32_t len;
    uint8_t io_type;
    bool sent, acked;
    bool al;                    /* holds its activity-log extents (rv_bitmap_al_hold) */
    struct async_frame *next;           /* free list, or the outstanding list */
    struct async_frame *prev;
};

enum pc_state { PC_CONNECTING, PC_HELLO, PC_CONNECTED, PC_CLOSING };

struct peer_conn {
    struct rv_sockconn sc;
    struct rv_peer *p;
    enum pc_state state;
    bool outgoing;
    char addr[96];
    struct rv_repl_hello remote;
    struct rv_repl_hello sent;          /* our HELLO on this connection */
    uint8_t hello_buf[HELLO_FRAME_MAX + RV_REPL_REFUSE_MSG_MAX];
    struct rv_sendq_item hello_item;
    bool hello_queued;
    struct rv_sendq_item ping_item;
    bool ping_queued;
    struct rv_sendq_item pong_item;
    bool pong_queued;
    bool close_after_send;
    /* Clean stop (see say_goodbye): */
    struct rv_sendq_item bye_item;
    bool bye_queued;            /* our GOODBYE is on its way */
    bool input_stopped;         /* secondary stopping: no new requests taken */
    bool outdating;             /* secondary stopping: Outdated being committed */
    bool peer_goodbye;          /* the peer said GOODBYE: its close is planned */
    /* primary: legs sent and awaiting the peer's answer */
    struct rv_peer_leg *legs_head, *legs_tail;
    unsigned legs;
    /* secondary: requests being applied */
    struct remote_req *rreqs;
    struct remote_req *free_rreqs;
    unsigned busy;
    struct remote_req *payload;         /* WRITE whose data is arriving */
    uint32_t payload_have;
    bool paused;
    struct rv_bufpool_waiter buf_wait;
    struct rv_op resume_op;
    bool resume_pending;
    bool in_on_closed;          /* pc_on_closed is running: it frees at its end */
    /* connect */
    struct rv_op connect_op;
    struct sockaddr_storage sa;
    socklen_t salen;
    uint64_t last_rx_ns, last_tx_ns;
    uint64_t ping_seq;
    bool sc_closed;
    enum { SYNC_NONE, SYNC_SOURCE, SYNC_TARGET } sync;
    bool sync_full;
    bool target_confirmed;              /* source: the target answered a resync frame (it is durably
                                         * Inconsistent: target_committed ran before it read it) */
    bool split_brain;
    bool await_bitmap;                  /* source: the target's bitmap is on its way */
    uint64_t bitmap_cursor;             /* target: next byte of our bitmap to send */
    struct rv_sendq_item bitmap_item;
    bool bitmap_busy;
    struct remote_req *sync_done_rr;    /* target: answered once the new generation is durable */
    struct remote_req *nack_wait;       /* failed writes: NACKed once Outdated is durable */
    bool nack_outdating;
    uint64_t target_ticket, sync_done_ticket;   /* their metadata commits (rv_volume_meta_commit) */
};

struct rv_peer {
    struct rv_volume *v;
    struct rv_loop *loop;
    struct rv_peer_opts o;
    char peer_addr[256];
    char listen_addr[256];
    enum rv_peer_state state;
    struct peer_conn *conn;             /* the live connection, or NULL */
    int lfd;
    struct rv_op accept_op;
    bool accept_pending;
    struct rv_op tick_op;
    struct __kernel_timespec tick_ts;
    bool tick_pending;
    uint64_t next_dial_ns;
    unsigned backoff_ms;
    uint64_t seq;
    bool shutting_down;
    void (*shutdown_done)(void *);
    void *shutdown_arg;
    unsigned conns_alive;
    /* Connections accepted while busy, being told so: bounded in number and
     * in time, since a caller that never reads (or never finishes a TLS
     * handshake, before which the refusal cannot go out) must not pin a
     * descriptor and a connection's memory for ever. */
#define MAX_REFUSING 8
    struct peer_conn *refusing[MAX_REFUSING];
    uint64_t refusing_deadline[MAX_REFUSING];
    char last_refusal[RV_REPL_REFUSE_MSG_MAX + RV_REPL_MSG_LEN + 128];
    char last_error[320];               /* why the link last went down */
    struct rv_op drop_op;               /* rv_peer_drop(), on the next loop turn */
    bool drop_pending;
    char drop_why[160];
    struct rv_resync *rs;
    struct rv_verify *vf;
    bool planned_close;                 /* role change: not a loss */
    pid_t fence_pid;                    /* fence-peer handler running, or 0 */
    int fence_fd;                       /* its pidfd, polled on the ring */
    struct rv_op fence_op;
    char fence_handler[256];
    bool peer_fenced;                   /* handler succeeded / resume-io since the last connection */
    bool held_for_target;               /* frozen until the resync target confirms (model finding 13) */
    bool discard_my_data;               /* one-shot, from `repvol connect --discard-my-data` */
    uint32_t remote_role;
    /* mode A */
    /* The bounded send buffer: a byte ring, filled at head, freed from the
     * oldest outstanding frame, so it holds ASYNC_RING bytes whatever the
     * write sizes. */
    uint8_t *ring;
    size_t ring_head;
    bool draining;                      /* clean stop: waiting for mode-A frames to land
                                         * and for our GOODBYE to go out */
    bool goodbye_pending;
    /* Mode B: writes the peer has RECEIVED (their clients may be answered)
     * but not yet completed, by seq modulo MB_PEND.  Until the completion
     * ACK the peer may lose them (a crash before it applies them), so a
     * link loss marks their ranges (model finding 11); each also holds its
     * activity-log extents so a crash of ours keeps that record. */
#define MB_PEND 1024
    struct mb_pend {
        uint64_t seq, off;
        uint32_t len;
        bool used, al;
    } *mb;
    struct peer_conn *nack_pc;          /* its failed writes wait for nack_outdated */
    uint64_t drain_deadline_ns;
    struct async_frame *async_frames, *async_free;
    struct async_frame *async_head, *async_tail;    /* outstanding, oldest first */
    unsigned async_outstanding;
    /* counters */
    uint64_t frames_sent, bytes_replicated, acks, nacks, connects, disconnects;
    uint64_t rtt_ns_last;
};

static void pc_close(struct peer_conn *pc, const char *why);
static void pc_maybe_free(struct peer_conn *pc);
static void fence_peer(struct rv_peer *p);
static void peer_shutdown_finish(struct rv_peer *p);
static void say_goodbye(struct rv_peer *p);
static void peer_maybe_shutdown_done(struct rv_peer *p);
static void pc_process(struct peer_conn *pc);

const char *rv_peer_state_name(enum rv_peer_state s)
{
    switch (s) {
    case RV_PEER_NONE: return "standalone";
    case RV_PEER_DISCONNECTED: return "disconnected";
    case RV_PEER_CONNECTING: return "connecting";
    case RV_PEER_HANDSHAKE: return "handshake";
    case RV_PEER_CONNECTED: return "connected";
    case RV_PEER_REFUSED: return "refused";
    case RV_PEER_SPLIT_BRAIN: return "split-brain";
    }
    return "unknown";
}

enum rv_peer_state rv_peer_state(const struct rv_peer *p) { return p->state; }
bool rv_peer_connected(const struct rv_peer *p) { return p->state == RV_PEER_CONNECTED; }

static void set_state(struct rv_peer *p, enum rv_peer_state s)
{
    if (p->state == s)
        return;
    rv_debug("volume %s: peer link %s -> %s", p->v->meta.name, rv_peer_state_name(p->state),
             rv_peer_state_name(s));
    p->state = s;
}

/* ------------------------------------------------------------ addresses */

static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------------ hello */

static void fill_hello(const struct rv_peer *p, struct rv_repl_hello *h)
{
    const struct rv_meta *m = &p->v->meta;
    memset(h, 0, sizeof *h);
    h->proto_min = h->proto_max = RV_REPL_PROTO_VERSION;
    memcpy(h->uuid, m->uuid, sizeof h->uuid);
    h->data_size = m->data_size;
    h->block_size = m->block_size;
    h->node_id = p->o.node_id;
    h->role = p->v->role;
    h->disk_state = m->disk_state;
    h->current_gen = m->current_gen;
    h->bitmap_gen = m->bitmap_gen;
    memcpy(h->history_gen, m->history_gen, sizeof h->history_gen);
    h->mode = p->o.mode;
    h->flags = p->discard_my_data ? RV_REPL_HELLO_F_DISCARD_MY_DATA : 0;
    h->dirty_bytes = p->v->bm.set_bits << p->v->bm.gran_shift;
    snprintf(h->name, sizeof h->name, "%s", m->name);
}

static void hello_sent(struct rv_sendq_item *it, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(it, struct peer_conn, hello_item);
    pc->hello_queued = false;
    if (pc->close_after_send)
        pc_close(pc, NULL);
}

static void send_hello(struct peer_conn *pc)
{
    struct rv_repl_hello h;
    fill_hello(pc->p, &h);
    pc->sent = h;
    struct rv_repl_hdr hdr = { .type = RV_REPL_T_HELLO, .payload_len = RV_REPL_HELLO_SIZE };
    rv_repl_encode_hdr(pc->hello_buf, &hdr);
    rv_repl_encode_hello(pc->hello_buf + RV_REPL_HDR_SIZE, RV_REPL_HELLO_SIZE, &h);
    pc->hello_item.hdr_len = 0;
    pc->hello_item.data = pc->hello_buf;
    pc->hello_item.data_len = HELLO_FRAME_MAX;
    pc->hello_item.done = hello_sent;
    pc->hello_queued = true;
    rv_sockconn_send(&pc->sc, &pc->hello_item);
}

/* Log a refusal once; the same one again (the peer retries) only at debug
 * level, so a refused pair doesn't flood the log. */
static void log_refusal(struct rv_peer *p, const char *fmt_who, const char *addr, uint32_t reason,
                        const char *msg)
{
    char line[sizeof p->last_refusal];
    snprintf(line, sizeof line, "%s: %s", rv_repl_refuse_name(reason), msg);
    enum rv_log_level lvl = strcmp(line, p->last_refusal) ? RV_LOG_ERROR : RV_LOG_DEBUG;
    rv_log(lvl, "volume %s: %s %s: %s%s", p->v->meta.name, fmt_who, addr, line,
           lvl == RV_LOG_ERROR ? " (repeats are logged at debug level)" : "");
    memcpy(p->last_refusal, line, sizeof line);
}

/* Refuse the peer: tell it why, log it here, close once sent. */
static void send_refuse(struct peer_conn *pc, uint32_t reason, const char *msg)
{
    log_refusal(pc->p, "refusing peer", pc->addr, reason, msg);
    size_t n = rv_repl_encode_refuse(pc->hello_buf, sizeof pc->hello_buf, reason, msg);
    pc->hello_item.hdr_len = 0;
    pc->hello_item.data = pc->hello_buf;
    pc->hello_item.data_len = (uint32_t)n;
    pc->hello_item.done = hello_sent;
    pc->hello_queued = true;
    pc->close_after_send = true;
    pc->state = PC_CLOSING;
    rv_sockconn_pause(&pc->sc);
    rv_sockconn_send(&pc->sc, &pc->hello_item);
}

/* The handshake decision lives in sync_decide.c (pure, unit-tested);
 * here it gets this node's and the peer's views. */
static struct rv_gen_view hello_view(const struct rv_repl_hello *r)
{
    struct rv_gen_view v = {
        .current_gen = r->current_gen, .bitmap_gen = r->bitmap_gen,
        .history_gen = { r->history_gen[0], r->history_gen[1] }, .disk_state = r->disk_state,
        .primary = r->role == RV_ROLE_PRIMARY, .dirty_bytes = r->dirty_bytes,
        .discard_my_data = (r->flags & RV_REPL_HELLO_F_DISCARD_MY_DATA) != 0,
    };
    return v;
}

/* The dialer decides when the acceptor's HELLO arrives, on its state as it
 * is then; the acceptor decided on the dialer's HELLO.  If the dialer's
 * state changed in between (a local-only write started a new generation)
 * the two decisions can differ: a "source" talking to a peer that thinks
 * it is in sync (model finding 3).  True if the decision on the HELLO we
 * sent is not the one we reached. */
static bool decided_on_stale_hello(struct peer_conn *pc)
{
    struct rv_gen_view sent = hello_view(&pc->sent), remote = hello_view(&pc->remote);
    struct rv_sync_decision d;
    rv_sync_decide(&sent, &remote, pc->p->o.sb_policy, &d);
    enum rv_sync_dir dir = pc->sync == SYNC_SOURCE ? RV_SYNC_SOURCE
                         : pc->sync == SYNC_TARGET ? RV_SYNC_TARGET : RV_SYNC_NONE;
    return d.refuse != 0 || d.dir != dir || d.full != pc->sync_full;
}

static uint32_t decide(struct peer_conn *pc, const struct rv_repl_hello *r, char *msg, size_t len)
{
    struct rv_peer *p = pc->p;
    const struct rv_meta *m = &p->v->meta;
    struct rv_gen_view local = {
        .current_gen = m->current_gen, .bitmap_gen = m->bitmap_gen,
        .history_gen = { m->history_gen[0], m->history_gen[1] }, .disk_state = m->disk_state,
        .primary = p->v->role == RV_ROLE_PRIMARY,
        .dirty_bytes = p->v->bm.set_bits << p->v->bm.gran_shift, .discard_my_data = p->discard_my_data,
    };
    struct rv_gen_view remote = hello_view(r);
    struct rv_sync_decision d;
    rv_sync_decide(&local, &remote, p->o.sb_policy, &d);
    pc->sync = d.dir == RV_SYNC_SOURCE ? SYNC_SOURCE : d.dir == RV_SYNC_TARGET ? SYNC_TARGET : SYNC_NONE;
    pc->sync_full = d.full;
    pc->split_brain = d.split_brain;
    snprintf(msg, len, "%s", d.msg);
    return d.refuse;
}

static void target_committed(struct rv_volume *v, int err)
{
    struct rv_peer *p = v->peer;
    struct peer_conn *pc = p->conn;
    if (!pc || pc->state != PC_CONNECTED)
        return;
    if (!err && v->meta_seq_done < pc->target_ticket)
        return;                 /* an older connection's commit: ours is still on its way */
    if (err) {
        pc_close(pc, "cannot record the resync target state");
        return;
    }
    pc->paused = false;
    rv_sockconn_read(&pc->sc);
    pc_process(pc);
}

static void checksum_then(void *ctx, bool marked)
{
    struct rv_peer *p = ctx;
    /* Even with nothing to send, the resync ends with SYNC_DONE. */
    if (p->state == RV_PEER_CONNECTED)
        rv_resync_start(p->rs, false);
}

/* Target: send our dirty bitmap, 64 KiB at a time, skipping zero chunks;
 * an empty BITMAP frame ends it.  The bitmap doesn't change meanwhile (a
 * secondary marks nothing). */
#define BITMAP_CHUNK (64u * 1024)

static void send_bitmap_chunk(struct peer_conn *pc);

static void bitmap_sent(struct rv_sendq_item *it, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(it, struct peer_conn, bitmap_item);
    pc->bitmap_busy = false;
    if (!err && pc->state == PC_CONNECTED)
        send_bitmap_chunk(pc);
}

static void send_bitmap_chunk(struct peer_conn *pc)
{
    const struct rv_bitmap *bm = &pc->p->v->bm;
    uint64_t used = (bm->nbits + 7) / 8;
    if (pc->bitmap_cursor > used)
        return;                 /* end marker already sent */
    while (pc->bitmap_cursor < used) {
        uint64_t n = RV_MIN((uint64_t)BITMAP_CHUNK, used - pc->bitmap_cursor);
        bool zero = true;
        for (uint64_t i = 0; i < n && zero; i++)
            zero = bm->mem[pc->bitmap_cursor + i] == 0;
        if (!zero)
            break;
        pc->bitmap_cursor += n;
    }
    uint32_t n = (uint32_t)RV_MIN((uint64_t)BITMAP_CHUNK, used - RV_MIN(pc->bitmap_cursor, used));
    struct rv_repl_hdr h = { .type = RV_REPL_T_BITMAP, .offset = pc->bitmap_cursor, .payload_len = n };
    rv_repl_encode_hdr(pc->bitmap_item.hdr, &h);
    pc->bitmap_item.hdr_len = RV_REPL_HDR_SIZE;
    pc->bitmap_item.data = n ? bm->mem + pc->bitmap_cursor : NULL;
    pc->bitmap_item.data_len = n;
    pc->bitmap_item.done = bitmap_sent;
    pc->bitmap_busy = true;
    pc->bitmap_cursor += n ? n : 1;     /* past the end after the marker */
    rv_sockconn_send(&pc->sc, &pc->bitmap_item);
}

/* Source: a piece of the target's bitmap, or its end. */
static void handle_bitmap(struct peer_conn *pc, const struct rv_repl_hdr *h, const uint8_t *data)
{
    struct rv_peer *p = pc->p;
    struct rv_bitmap *bm = &p->v->bm;
    if (!pc->await_bitmap) {
        pc_close(pc, "unexpected BITMAP frame");
        return;
    }
    if (h->payload_len == 0) {
        pc->await_bitmap = false;
        rv_info("volume %s: peer's bitmap merged: %" PRIu64 " bytes to resync in all", p->v->meta.name,
                bm->set_bits << bm->gran_shift);
        rv_resync_start(p->rs, false);
        return;
    }
    if (h->offset > bm->nbytes || h->payload_len > bm->nbytes - h->offset) {
        pc_close(pc, "BITMAP frame past the end of the bitmap");
        return;
    }
    for (uint32_t i = 0; i < h->payload_len; i++) {
        uint8_t b = data[i];
        for (unsigned k = 0; b && k < 8; k++, b >>= 1) {
            uint64_t bit = (h->offset + i) * 8 + k;
            if ((b & 1) && bit < bm->nbits)
                rv_bitmap_mark(bm, bit << bm->gran_shift, 1);
        }
    }
}

static void pc_connected(struct peer_conn *pc, const char *msg)
{
    struct rv_peer *p = pc->p;
    pc->state = PC_CONNECTED;
    set_state(p, RV_PEER_CONNECTED);
    p->connects++;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->last_refusal[0] = '\0';
    rv_info("volume %s: connected to peer node %u (%s, %s) at %s, mode %s: %s", p->v->meta.name,
            pc->remote.node_id, pc->remote.name, rv_role_name(pc->remote.role), pc->addr,
            rv_repl_mode_name(p->o.mode), msg);
    p->discard_my_data = false;
    p->peer_fenced = false;             /* the next separation needs fencing again */
    if (pc->sync == SYNC_SOURCE && !pc->sync_full && pc->remote.dirty_bytes > 0) {
        /* The target changed blocks too (a discarded split-brain side, an
         * activity log left by a crash): wait for its bitmap, and resync
         * the union. */
        pc->await_bitmap = true;
        rv_info("volume %s: waiting for the peer's dirty bitmap (%" PRIu64 " bytes marked)", p->v->meta.name,
                pc->remote.dirty_bytes);
    } else if (pc->sync == SYNC_NONE) {
        rv_volume_peer_in_sync(p->v);
    } else if (pc->sync == SYNC_SOURCE && pc->sync_full && p->o.checksum_resync) {
        /* Both copies may hold most of the data already (an unclean split):
         * compare digests over everything and send only what differs. */
        rv_info("volume %s: checksum-based full sync: comparing digests first", p->v->meta.name);
        rv_verify_start(p->vf, true, checksum_then, p);
    } else if (pc->sync == SYNC_SOURCE) {
        rv_resync_start(p->rs, pc->sync_full);
    } else {
        /* Until SYNC_DONE this copy is partly old, partly new: never a
         * valid copy.  Durably so, before the first resync write lands. */
        struct rv_volume *v = p->v;
        v->meta.disk_state = RV_DISK_INCONSISTENT;
        if (pc->sync_full)
            rv_bitmap_clear_all(&v->bm);
        rv_resync_target_begin(p->rs);
        rv_info("volume %s: resync target (%s): disk Inconsistent until it completes", v->meta.name,
                pc->sync_full ? "full sync" : "from the peer's bitmap");
        pc->paused = true;
        rv_sockconn_pause(&pc->sc);
        pc->target_ticket = rv_volume_meta_commit(v, target_committed);
        if (!pc->sync_full && v->bm.set_bits > 0) {
            pc->bitmap_cursor = 0;
            send_bitmap_chunk(pc);
        }
    }
}

/* A HELLO (or REFUSE) arrived during the handshake. */
static void handle_hello(struct peer_conn *pc, const struct rv_repl_hdr *h, const uint8_t *body)
{
    struct rv_peer *p = pc->p;
    char msg[RV_REPL_MSG_LEN + 64];
    if (h->type == RV_REPL_T_REFUSE) {
        char why[RV_REPL_REFUSE_MSG_MAX + 1];
        rv_repl_decode_refuse_msg(body, h->payload_len, why, sizeof why);
        log_refusal(p, "refused by peer", pc->addr, h->status, why);
        set_state(p, strstr(why, "SPLIT BRAIN") ? RV_PEER_SPLIT_BRAIN : RV_PEER_REFUSED);
        pc_close(pc, NULL);
        return;
    }
    if (h->type != RV_REPL_T_HELLO) {
        snprintf(msg, sizeof msg, "expected HELLO, got %s", rv_repl_type_name(h->type));
        send_refuse(pc, RV_REPL_REFUSE_PROTOCOL, msg);
        return;
    }
    char why[RV_REPL_MSG_LEN];
    int r = rv_repl_decode_hello_ex(body, h->payload_len, &pc->remote, why, sizeof why);
    struct rv_repl_hello local;
    fill_hello(p, &local);
    if (r < 0 && rv_repl_common_version(&local, &pc->remote) != 0) {
        snprintf(msg, sizeof msg, "malformed HELLO: %s", why);
        send_refuse(pc, RV_REPL_REFUSE_PROTOCOL, msg);
        return;
    }
    uint32_t reason = rv_repl_check_compat(&local, &pc->remote, msg, sizeof msg);
    if (!reason && pc->remote.role == RV_ROLE_SECONDARY && local.role == RV_ROLE_SECONDARY) {
        /* Two secondaries have nothing to replicate; wait for a primary. */
        reason = RV_REPL_REFUSE_NO_PRIMARY;
        snprintf(msg, sizeof msg, "both nodes are secondary");
    }
    if (!reason) {
        reason = decide(pc, &pc->remote, msg, sizeof msg);
    } else if (reason == RV_REPL_REFUSE_BOTH_PRIMARY) {
        /* Two primaries that both wrote: say split brain, it's the news. */
        char sb[sizeof msg];
        if (decide(pc, &pc->remote, sb, sizeof sb) && pc->split_brain) {
            memcpy(msg, sb, sizeof msg);
            reason = RV_REPL_REFUSE_GENERATION;
        }
    }
    p->remote_role = pc->remote.role;
    if (reason) {
        set_state(p, pc->split_brain ? RV_PEER_SPLIT_BRAIN : RV_PEER_REFUSED);
        send_refuse(pc, reason, msg);
        return;
    }
    if (pc->outgoing && decided_on_stale_hello(pc)) {
        rv_info("volume %s: this node's state changed during the handshake: connecting again",
                p->v->meta.name);
        pc_close(pc, NULL);     /* not connected yet: no loss; the tick redials */
        return;
    }
    if (!pc->outgoing)
        send_hello(pc);         /* the acceptor answers with its own */
    pc_connected(pc, msg);
}

/* ------------------------------------------------------------ primary side */

static void leg_unlink(struct peer_conn *pc, struct rv_peer_leg *leg)
{
    if (leg->prev)
        leg->prev->next = leg->next;
    else
        pc->legs_head = leg->next;
    if (leg->next)
        leg->next->prev = leg->prev;
    else
        pc->legs_tail = leg->prev;
    leg->prev = leg->next = NULL;
    pc->legs--;
}

static void leg_finish(struct peer_conn *pc, struct rv_peer_leg *leg, int result)
{
    leg_unlink(pc, leg);
    leg->active = 0;
    struct rv_req *req = RV_CONTAINER_OF(leg, struct rv_req, peer);
    rv_volume_peer_done(req, result);
}

static void leg_sent(struct rv_sendq_item *it, int err)
{
    struct rv_peer_leg *leg = RV_CONTAINER_OF(it, struct rv_peer_leg, item);
    leg->sent = 1;
    struct rv_req *req = RV_CONTAINER_OF(leg, struct rv_req, peer);
    struct rv_peer *p = req->vol->peer;
    struct peer_conn *pc = p->conn;
    if (err)
        return;                 /* the closing connection finishes it */
    leg->sent_ns = rv_now_ns();
    if (leg->acked && pc)
        leg_finish(pc, leg, 0);
}

/* Ring space for len bytes after the newest outstanding frame, or NULL.
 * The oldest outstanding frame's buffer is where the used part begins. */
static uint8_t *ring_alloc(struct rv_peer *p, uint32_t len)
{
    const struct async_frame *oldest = NULL;
    for (const struct async_frame *f = p->async_head; f; f = f->next)
        if (f->buf) {
            oldest = f;
            break;
        }
    if (!oldest)
        p->ring_head = 0;
    size_t tail = oldest ? (size_t)(oldest->buf - p->ring) : 0;
    size_t head = p->ring_head;
    if (!oldest) {
        if (len > ASYNC_RING)
            return NULL;
        p->ring_head = len;
        return p->ring;
    }
    if (head > tail) {
        if (ASYNC_RING - head >= len) {
            p->ring_head = head + len;
            return p->ring + head;
        }
        if (tail > len) {                   /* wrap; the end stays unused this round */
            p->ring_head = len;
            return p->ring;
        }
        return NULL;
    }
    if (head < tail && tail - head > len) {
        p->ring_head = head + len;
        return p->ring + head;
    }
    return NULL;                            /* full */
}

static void async_release(struct rv_peer *p, struct async_frame *f, bool delivered)
{
    if (!delivered && f->io_type != RV_IO_FLUSH)
        rv_bitmap_mark(&p->v->bm, f->off, f->len);     /* the peer may lack it */
    if (f->al) {
        /* The extent may go cold now: its on-disk bits then come from the
         * in-memory bitmap, which has the mark if the peer may lack it. */
        rv_bitmap_al_end(&p->v->bm, f->off, f->len);
        f->al = false;
    }
    if (f->prev)
        f->prev->next = f->next;
    else
        p->async_head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        p->async_tail = f->prev;
    p->async_outstanding--;
    f->buf = NULL;
    f->prev = NULL;
    f->next = p->async_free;
    p->async_free = f;
}

static void async_sent(struct rv_sendq_item *it, int err)
{
    struct async_frame *f = RV_CONTAINER_OF(it, struct async_frame, item);
    f->sent = true;
    if (!err && f->acked)
        async_release(f->p, f, true);
    /* err: the closing connection releases it as undelivered. */
}

/* The link is gone: every outstanding frame is "maybe not on the peer". */
/* Mode B: the peer received the write behind leg; track it until the
 * peer completes it.  False when its slot is taken (then the leg waits for
 * the completion ACK itself, as in mode C). */
static bool mb_track(struct rv_peer *p, const struct rv_req *req, uint64_t seq)
{
    struct mb_pend *e = &p->mb[seq % MB_PEND];
    if (e->used)
        return false;
    e->used = true;
    e->seq = seq;
    e->off = req->off;
    e->len = req->len;
    e->al = req->al;
    if (e->al)
        rv_bitmap_al_hold(&p->v->bm, req->off, req->len);
    return true;
}

static void mb_release(struct rv_peer *p, struct mb_pend *e, bool completed)
{
    if (!completed)
        rv_bitmap_mark(&p->v->bm, e->off, e->len);     /* the peer may lack it */
    if (e->al)
        rv_bitmap_al_end(&p->v->bm, e->off, e->len);
    e->used = false;
}

static bool mb_answer(struct rv_peer *p, uint64_t seq)
{
    struct mb_pend *e = p->mb ? &p->mb[seq % MB_PEND] : NULL;
    if (!e || !e->used || e->seq != seq)
        return false;
    mb_release(p, e, true);
    return true;
}

/* The link is gone: what the peer received but never completed is marked,
 * and the marks are made durable at once (not left to the next flush). */
static void mb_drop_all(struct rv_peer *p)
{
    unsigned n = 0;
    for (unsigned i = 0; p->mb && i < MB_PEND; i++)
        if (p->mb[i].used) {
            mb_release(p, &p->mb[i], false);
            n++;
        }
    if (n)
        rv_volume_meta_commit(p->v, NULL);
}

static void async_drop_all(struct rv_peer *p)
{
    while (p->async_head)
        async_release(p, p->async_head, false);
}

static bool async_answer(struct rv_peer *p, uint64_t seq)
{
    for (struct async_frame *f = p->async_head; f; f = f->next) {
        if (f->seq == seq) {
            f->acked = true;
            if (f->sent)
                async_release(p, f, true);
            return true;
        }
    }
    return false;
}

static uint16_t frame_type(uint8_t io_type)
{
    switch (io_type) {
    case RV_IO_WRITE: return RV_REPL_T_WRITE;
    case RV_IO_TRIM: return RV_REPL_T_TRIM;
    case RV_IO_ZERO: return RV_REPL_T_ZERO;
    default: return RV_REPL_T_FLUSH;
    }
}

static void encode_req_hdr(struct rv_peer *p, const struct rv_req *req, uint64_t seq, uint8_t *out)
{
    struct rv_repl_hdr h = { .type = frame_type(req->type), .seq = seq };
    if (req->type != RV_IO_FLUSH) {
        h.offset = req->off;
        h.length = req->len;
    }
    if (req->type == RV_IO_WRITE)
        h.payload_len = req->len;
    if (req->flags & RV_IO_FUA)
        h.flags |= RV_REPL_F_FUA;
    if (req->type == RV_IO_ZERO && (req->flags & RV_IO_NO_HOLE))
        h.flags |= RV_REPL_F_NO_HOLE;
    if (p->o.mode == RV_MODE_B)
        h.flags |= RV_REPL_F_ACK_ON_RECEIVE;
    rv_repl_encode_hdr(out, &h);
}

bool rv_peer_submit(struct rv_peer *p, struct rv_req *req)
{
    struct peer_conn *pc = p->conn;
    if (p->state != RV_PEER_CONNECTED || !pc || pc->state != PC_CONNECTED)
        return false;
    uint64_t seq = ++p->seq;
    p->frames_sent++;
    if (req->type == RV_IO_WRITE)
        p->bytes_replicated += req->len;
    pc->last_tx_ns = rv_now_ns();

    if (p->o.mode == RV_MODE_A) {
        /* Queued is enough: copy into a frame of our own.  Out of frames or
         * buffer space means the link is behind: say no, and the write is
         * treated like one made without the peer (back-pressure by losing
         * the peer would be worse; a bounded queue is the promise). */
        struct async_frame *f = p->async_free;
        uint8_t *buf = NULL;
        if (f && req->type == RV_IO_WRITE)
            buf = ring_alloc(p, req->len);
        if (!f || (req->type == RV_IO_WRITE && !buf)) {
            rv_warn("volume %s: mode A send buffer full: disconnecting the lagging peer",
                    p->v->meta.name);
            pc_close(pc, "send buffer full");
            return false;
        }
        p->async_free = f->next;
        f->next = NULL;
        f->prev = p->async_tail;
        if (p->async_tail)
            p->async_tail->next = f;
        else
            p->async_head = f;
        p->async_tail = f;
        p->async_outstanding++;
        f->seq = seq;
        f->off = req->off;
        f->len = req->len;
        f->io_type = req->type;
        /* Model finding 10: the request's activity-log reference ends at
         * req_join, right after this; until the peer acknowledges the frame
         * the extent must stay hot, or a crash loses the record that the
         * peer may lack the block. */
        f->al = req->al;
        if (f->al)
            rv_bitmap_al_hold(&p->v->bm, req->off, req->len);
        f->sent = f->acked = false;
        f->buf = buf;
        if (buf)
            memcpy(buf, req->buf, req->len);
        encode_req_hdr(p, req, seq, f->item.hdr);
        f->item.hdr_len = RV_REPL_HDR_SIZE;
        f->item.data = buf;
        f->item.data_len = buf ? req->len : 0;
        f->item.done = async_sent;
        rv_sockconn_send(&pc->sc, &f->item);
        /* The peer leg is done: "queued for sending".  (The local leg is
         * not submitted yet, so this cannot complete the request inline.) */
        req->peer.seq = seq;
        rv_volume_peer_done(req, 0);
        return true;
    }

    struct rv_peer_leg *leg = &req->peer;
    leg->seq = seq;
    leg->active = 1;
    leg->acked = leg->sent = 0;
    leg->sent_ns = rv_now_ns();         /* queued; leg_sent() moves it to the send */
    encode_req_hdr(p, req, seq, leg->item.hdr);
    leg->item.hdr_len = RV_REPL_HDR_SIZE;
    leg->item.data = req->type == RV_IO_WRITE ? req->buf : NULL;
    leg->item.data_len = req->type == RV_IO_WRITE ? req->len : 0;
    leg->item.done = leg_sent;
    leg->prev = pc->legs_tail;
    leg->next = NULL;
    if (pc->legs_tail)
        pc->legs_tail->next = leg;
    else
        pc->legs_head = leg;
    pc->legs_tail = leg;
    pc->legs++;
    rv_sockconn_send(&pc->sc, &leg->item);
    return true;
}

static struct rv_peer_leg *find_leg(struct peer_conn *pc, uint64_t seq)
{
    /* Answers come mostly in order: search from the oldest. */
    for (struct rv_peer_leg *l = pc->legs_head; l; l = l->next)
        if (l->seq == seq)
            return l;
    return NULL;
}

static void handle_answer(struct peer_conn *pc, const struct rv_repl_hdr *h)
{
    struct rv_peer *p = pc->p;
    if (h->type == RV_REPL_T_PONG)
        return;
    struct rv_peer_leg *leg = find_leg(pc, h->seq);
    if (!leg && h->type == RV_REPL_T_NACK &&
        rv_verify_answer(p->vf, h->seq, -(int)h->status, NULL, 0))
        return;
    if (!leg && rv_resync_answer(p->rs, h->seq, h->type == RV_REPL_T_NACK ? -(int)h->status : 0)) {
        if (h->type == RV_REPL_T_NACK) {
            pc_close(pc, "peer failed to store resync data");
            return;
        }
        if (!pc->target_confirmed) {
            pc->target_confirmed = true;
            if (p->held_for_target) {
                p->held_for_target = false;
                rv_volume_thaw(p->v);
            }
        }
        return;
    }
    if (h->type == RV_REPL_T_NACK) {
        p->nacks++;
        /* The peer could not store a write we sent (disk full, I/O error):
         * its copy is now missing data.  Don't count it as replicated; drop
         * the link so the copies are resynced before it is trusted again. */
        rv_err("volume %s: peer %s failed to apply request %" PRIu64 ": %s; disconnecting",
               p->v->meta.name, pc->addr, h->seq, strerror((int)h->status));
        snprintf(p->last_error, sizeof p->last_error, "peer failed to store a write: %s; its copy is "
                 "behind (the dirty bitmap records what it misses)", strerror((int)h->status));
        pc_close(pc, "peer failed a write");
        return;
    }
    p->acks++;
    if (!leg) {
        if (!async_answer(p, h->seq) && !mb_answer(p, h->seq))
            rv_debug("volume %s: ACK for unknown request %" PRIu64, p->v->meta.name, h->seq);
        return;
    }
    if ((h->flags & RV_REPL_F_RECEIVED) && p->mb) {
        /* Mode B: received.  A write is tracked until the peer completes
         * it; if it cannot be, the leg itself waits for the completion. */
        struct rv_req *req = RV_CONTAINER_OF(leg, struct rv_req, peer);
        if (req->type != RV_IO_FLUSH && !mb_track(p, req, h->seq))
            return;
    }
    leg->acked = 1;
    if (leg->sent_ns)
        p->rtt_ns_last = rv_now_ns() - leg->sent_ns;
    /* Mode C: the peer completed it (durably if FUA, or a FLUSH).
     * Mode B: the peer has received it.  Either way the promise of the
     * mode holds now; the leg ends once our own send has completed too. */
    if (leg->sent)
        leg_finish(pc, leg, 0);
}

/* ------------------------------------------------------------ secondary side */

static void rreq_answer(struct peer_conn *pc, struct remote_req *rr);

static void rreq_ack_sent(struct rv_sendq_item *it, int err)
{
    struct remote_req *rr = RV_CONTAINER_OF(it, struct remote_req, ack);
    struct peer_conn *pc = rr->pc;
    if (rr->early_acked) {
        /* The early RECEIVED ack went out (or the link died).  The item is
         * free again: a request that finished meanwhile is answered now. */
        rr->early_acked = false;
        if (rr->busy)
            return;
        if (rr->answer_deferred && err == 0) {
            rr->answer_deferred = false;
            rreq_answer(pc, rr);
            return;
        }
    }
    if (rr->req.buf) {                  /* a DIGEST answer was sent from it */
        rv_bufpool_put(&pc->p->v->pool, rr->req.buf);
        rr->req.buf = NULL;
    }
    rr->next_free = pc->free_rreqs;
    pc->free_rreqs = rr;
    pc->busy--;
    if (pc->paused && !pc->resume_pending && pc->state != PC_CLOSING) {
        pc->paused = false;
        pc->resume_pending = true;
        rv_loop_defer(pc->p->loop, &pc->resume_op, 0);
    }
    pc_maybe_free(pc);
}

static void send_answer(struct peer_conn *pc, struct remote_req *rr, uint16_t type, uint32_t status,
                        uint32_t flags)
{
    struct rv_repl_hdr h = { .type = type, .seq = rr->seq, .status = status, .flags = flags };
    rv_repl_encode_hdr(rr->ack.hdr, &h);
    rr->ack.hdr_len = RV_REPL_HDR_SIZE;
    rr->ack.data = NULL;
    rr->ack.data_len = 0;
    rr->ack.done = rreq_ack_sent;
    rv_sockconn_send(&pc->sc, &rr->ack);
}

static void send_answer(struct peer_conn *pc, struct remote_req *rr, uint16_t type, uint32_t status,
                        uint32_t flags);

/* A write of the primary failed here: this copy now lacks data its
 * primary has, so it is not UpToDate any more.  That is made durable before
 * the NACK goes out: once the primary reads the NACK it answers its client
 * from its own copy, and this copy must never again be promoted as current
 * without --force (the primary keeps the range for a resync). */
static void nack_outdated(struct rv_volume *v, int err)
{
    struct rv_peer *p = v->peer;
    struct peer_conn *pc = p ? p->nack_pc : NULL;
    if (!pc)
        return;
    p->nack_pc = NULL;
    pc->nack_outdating = false;
    if (err < 0)
        rv_err("volume %s: recording the copy as Outdated failed: %s", v->meta.name, strerror(-err));
    while (pc->nack_wait) {
        struct remote_req *rr = pc->nack_wait;
        pc->nack_wait = rr->nack_next;
        if (pc->state == PC_CLOSING)
            rreq_ack_sent(&rr->ack, -ECONNRESET);
        else
            send_answer(pc, rr, RV_REPL_T_NACK, (uint32_t)-rr->req.result, 0);
    }
}

static void sync_done_committed(struct rv_volume *v, int err)
{
    struct peer_conn *pc = v->peer ? v->peer->conn : NULL;
    if (!pc || !pc->sync_done_rr)
        return;
    if (!err && v->meta_seq_done < pc->sync_done_ticket)
        return;                 /* not this SYNC_DONE's commit yet */
    struct remote_req *rr = pc->sync_done_rr;
    pc->sync_done_rr = NULL;
    if (pc->state == PC_CLOSING) {
        rreq_ack_sent(&rr->ack, -ECONNRESET);
        return;
    }
    send_answer(pc, rr, err ? RV_REPL_T_NACK : RV_REPL_T_ACK, err ? (uint32_t)-err : 0, 0);
}

static void rreq_done(struct rv_req *req)
{
    struct remote_req *rr = RV_CONTAINER_OF(req, struct remote_req, req);
    struct peer_conn *pc = rr->pc;
    struct rv_volume *v = pc->p->v;
    if (rr->type == RV_REPL_T_DIGEST_REQ && req->result == 0 && pc->state != PC_CLOSING) {
        /* Digests in place, sent straight from the buffer. */
        uint32_t gran = 1u << v->bm.gran_shift;
        rv_verify_digest(req->buf, req->len, gran, req->buf);
        rr->busy = false;
        struct rv_repl_hdr h = { .type = RV_REPL_T_DIGEST, .seq = rr->seq,
                                 .payload_len = (req->len + gran - 1) / gran * RV_VERIFY_DIGEST };
        rv_repl_encode_hdr(rr->ack.hdr, &h);
        rr->ack.hdr_len = RV_REPL_HDR_SIZE;
        rr->ack.data = req->buf;
        rr->ack.data_len = h.payload_len;
        rr->ack.done = rreq_ack_sent;
        rv_sockconn_send(&pc->sc, &rr->ack);
        return;
    }
    if (req->buf) {
        rv_bufpool_put(&v->pool, req->buf);
        req->buf = NULL;
    }
    rr->busy = false;
    if (req->result < 0)
        rv_err("volume %s: applying %s off=%" PRIu64 " len=%" PRIu32 " from the primary failed: %s",
               v->meta.name, rv_repl_type_name(rr->type), req->off, req->len, strerror(-req->result));
    if (rr->early_acked) {
        /* Mode B: the RECEIVED ack is still queued and its item is the one
         * the answer needs; answer once it is sent (rreq_ack_sent). */
        rr->answer_deferred = true;
        return;
    }
    rreq_answer(pc, rr);
}

/* The answer to a finished request.  In mode B too: the primary tracks a
 * write it was told we RECEIVED until this completion ACK (model finding
 * 11), and a NACK makes it drop the link and mark what we may lack. */
static void rreq_answer(struct peer_conn *pc, struct remote_req *rr)
{
    struct rv_req *req = &rr->req;
    struct rv_volume *v = pc->p->v;
    if (pc->state == PC_CLOSING) {
        rreq_ack_sent(&rr->ack, -ECONNRESET);
        return;
    }
    if (req->result == 0 && rr->type == RV_REPL_T_RESYNC_WRITE)
        rv_resync_target_progress(pc->p->rs, req->len);
    if (req->result == 0 && rr->type == RV_REPL_T_SYNC_DONE) {
        /* Every resync write before it is applied (the FLUSH waited for
         * them, durably).  Adopt the source's generation: this copy is now
         * the same data. */
        if (rr->gen != v->meta.current_gen) {   /* (same generation: history unchanged) */
            v->meta.history_gen[1] = v->meta.history_gen[0];
            v->meta.history_gen[0] = v->meta.current_gen;
        }
        v->meta.current_gen = rr->gen;
        v->meta.bitmap_gen = 0;
        v->meta.disk_state = RV_DISK_UPTODATE;
        rv_bitmap_clear_all(&v->bm);
        rv_resync_target_end(pc->p->rs);
        rv_info("volume %s: resync complete: UpToDate at generation %016" PRIx64, v->meta.name, rr->gen);
        pc->sync_done_rr = rr;
        pc->sync_done_ticket = rv_volume_meta_commit(v, sync_done_committed);
        return;
    }
    if (req->result < 0 && rr->type != RV_REPL_T_DIGEST_REQ &&
        (v->meta.disk_state == RV_DISK_UPTODATE || pc->nack_outdating)) {
        rr->nack_next = pc->nack_wait;
        pc->nack_wait = rr;
        if (!pc->nack_outdating) {
            pc->nack_outdating = true;
            pc->p->nack_pc = pc;
            v->meta.disk_state = RV_DISK_OUTDATED;
            rv_err("volume %s: this copy missed a write of its primary: marking it Outdated "
                   "(the primary keeps the range for a resync)", v->meta.name);
            rv_volume_meta_commit(v, nack_outdated);
        }
        return;
    }
    if (req->result < 0)
        send_answer(pc, rr, RV_REPL_T_NACK, (uint32_t)-req->result, 0);
    else
        send_answer(pc, rr, RV_REPL_T_ACK, 0, 0);
}

static void rreq_submit(struct peer_conn *pc, struct remote_req *rr)
{
    if (rr->early_acked)
        send_answer(pc, rr, RV_REPL_T_ACK, 0, RV_REPL_F_RECEIVED);
    rv_volume_submit(pc->p->v, &rr->req);
}

static void buf_wake(struct rv_bufpool_waiter *w)
{
    struct peer_conn *pc = RV_CONTAINER_OF(w, struct peer_conn, buf_wait);
    if (pc->paused && !pc->resume_pending && pc->state != PC_CLOSING) {
        pc->paused = false;
        pc->resume_pending = true;
        rv_loop_defer(pc->p->loop, &pc->resume_op, 0);
    }
}

static void resume_cb(struct rv_op *op, int res)
{
    struct peer_conn *pc = RV_CONTAINER_OF(op, struct peer_conn, resume_op);
    pc->resume_pending = false;
    if (pc->state == PC_CLOSING) {
        pc_maybe_free(pc);
        return;
    }
    pc_process(pc);
    if (!pc->paused && !pc->input_stopped && pc->state != PC_CLOSING)
        rv_sockconn_read(&pc->sc);
}

/* Start applying a request frame.  Returns false to pause (no slot or
 * buffer); the header is then left unconsumed. */
static bool start_remote(struct peer_conn *pc, const struct rv_repl_hdr *h)
{
    struct rv_volume *v = pc->p->v;
    struct remote_req *rr = pc->free_rreqs;
    if (!rr)
        return false;
    void *buf = NULL;
    if (h->type == RV_REPL_T_WRITE || h->type == RV_REPL_T_RESYNC_WRITE || h->type == RV_REPL_T_DIGEST_REQ) {
        if (h->length > v->max_request) {
            /* No buffer will ever fit it: waiting would stall the link. */
            char why[128];
            snprintf(why, sizeof why, "%s of %" PRIu32 " bytes is larger than this node's --max-request (%zu)",
                     rv_repl_type_name(h->type), h->length, v->max_request);
            pc_close(pc, why);
            return true;        /* consumed: the connection is gone */
        }
        buf = rv_bufpool_get(&v->pool, h->length);
        if (!buf) {
            rv_bufpool_wait(&v->pool, &pc->buf_wait);
            return false;
        }
    }
    pc->free_rreqs = rr->next_free;
    pc->busy++;
    rr->busy = true;
    rr->seq = h->seq;
    rr->type = h->type;
    rr->early_acked = (h->flags & RV_REPL_F_ACK_ON_RECEIVE) != 0;
    rr->answer_deferred = false;
    memset(&rr->req, 0, sizeof rr->req);
    rr->req.origin = RV_ORIGIN_PEER;
    rr->req.off = h->offset;
    rr->req.len = h->length;
    rr->req.buf = buf;
    rr->req.done = rreq_done;
    rr->req.flags = (h->flags & RV_REPL_F_FUA) ? RV_IO_FUA : 0;
    rr->gen = h->offset;
    switch (h->type) {
    case RV_REPL_T_WRITE: rr->req.type = RV_IO_WRITE; break;
    case RV_REPL_T_RESYNC_WRITE:
        rr->req.type = RV_IO_WRITE;
        rr->req.flags |= RV_IO_FUA;     /* durable before the source clears its bits */
        break;
    case RV_REPL_T_TRIM: rr->req.type = RV_IO_TRIM; break;
    case RV_REPL_T_DIGEST_REQ: rr->req.type = RV_IO_READ; break;
    case RV_REPL_T_ZERO:
        rr->req.type = RV_IO_ZERO;
        if (h->flags & RV_REPL_F_NO_HOLE)
            rr->req.flags |= RV_IO_NO_HOLE;
        break;
    default:
        rr->req.type = RV_IO_FLUSH;
        rr->req.off = 0;
        rr->req.len = 0;
        break;
    }
    if (h->type == RV_REPL_T_WRITE || h->type == RV_REPL_T_RESYNC_WRITE) {
        pc->payload = rr;
        pc->payload_have = 0;
    } else {
        rreq_submit(pc, rr);
    }
    return true;
}

static void pong_sent(struct rv_sendq_item *it, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(it, struct peer_conn, pong_item);
    pc->pong_queued = false;
}

static void ping_sent(struct rv_sendq_item *it, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(it, struct peer_conn, ping_item);
    pc->ping_queued = false;
}

static void send_ping(struct peer_conn *pc, uint16_t type, uint64_t seq)
{
    struct rv_sendq_item *it = type == RV_REPL_T_PING ? &pc->ping_item : &pc->pong_item;
    bool *queued = type == RV_REPL_T_PING ? &pc->ping_queued : &pc->pong_queued;
    if (*queued)
        return;
    struct rv_repl_hdr h = { .type = type, .seq = seq };
    rv_repl_encode_hdr(it->hdr, &h);
    it->hdr_len = RV_REPL_HDR_SIZE;
    it->data = NULL;
    it->data_len = 0;
    it->done = type == RV_REPL_T_PING ? ping_sent : pong_sent;
    *queued = true;
    pc->last_tx_ns = rv_now_ns();
    rv_sockconn_send(&pc->sc, it);
}

/* ------------------------------------------------------------ input */

static void pc_process(struct peer_conn *pc)
{
    struct rv_sockconn *sc = &pc->sc;
    struct rv_peer *p = pc->p;
    while (pc->state != PC_CLOSING && !pc->paused) {
        uint32_t avail = sc->rlen - sc->rpos;
        if (pc->payload) {
            struct remote_req *rr = pc->payload;
            uint32_t take = RV_MIN(avail, rr->req.len - pc->payload_have);
            memcpy((uint8_t *)rr->req.buf + pc->payload_have, sc->rbuf + sc->rpos, take);
            sc->rpos += take;
            pc->payload_have += take;
            if (pc->payload_have < rr->req.len) {
                /* The rest straight into the request's buffer. */
                rv_sockconn_recv_into(sc, (uint8_t *)rr->req.buf + pc->payload_have,
                                      rr->req.len - pc->payload_have);
                pc->payload_have = rr->req.len;     /* complete when on_input runs again */
                return;
            }
            pc->payload = NULL;
            rreq_submit(pc, rr);
            continue;
        }
        if (pc->input_stopped)
            return;             /* stopping: the primary resends what we leave */
        struct rv_repl_hdr h;
        int n = rv_repl_decode_hdr(sc->rbuf + sc->rpos, avail, &h);
        if (n == 0)
            return;             /* need more bytes */
        if (n < 0) {
            char why[160];
            if (n == RV_REPL_ERR_VERSION)
                snprintf(why, sizeof why, "peer speaks replication frame version %u, this node %u",
                         h.version, RV_REPL_VERSION);
            else
                snprintf(why, sizeof why, "malformed frame: %s", rv_repl_strerror(n));
            if (pc->state == PC_HELLO)
                send_refuse(pc, n == RV_REPL_ERR_VERSION ? RV_REPL_REFUSE_VERSION : RV_REPL_REFUSE_PROTOCOL, why);
            else
                pc_close(pc, why);
            return;
        }
        bool carries_body = h.type == RV_REPL_T_HELLO || h.type == RV_REPL_T_REFUSE ||
                            h.type == RV_REPL_T_DIGEST || h.type == RV_REPL_T_BITMAP;
        if (carries_body && avail < RV_REPL_HDR_SIZE + h.payload_len) {
            if (RV_REPL_HDR_SIZE + h.payload_len > sc->rcap) {
                pc_close(pc, "handshake frame larger than the receive buffer");
                return;
            }
            return;             /* wait for the whole body */
        }
        pc->last_rx_ns = rv_now_ns();
        if (pc->state == PC_HELLO) {
            if (!carries_body) {
                send_refuse(pc, RV_REPL_REFUSE_PROTOCOL, "expected HELLO first");
                return;
            }
            sc->rpos += RV_REPL_HDR_SIZE + h.payload_len;
            handle_hello(pc, &h, sc->rbuf + sc->rpos - h.payload_len);
            continue;
        }
        switch (h.type) {
        case RV_REPL_T_WRITE:
        case RV_REPL_T_TRIM:
        case RV_REPL_T_ZERO:
        case RV_REPL_T_FLUSH:
        case RV_REPL_T_RESYNC_WRITE:
        case RV_REPL_T_SYNC_DONE:
        case RV_REPL_T_DIGEST_REQ:
            if (pc->remote.role != RV_ROLE_PRIMARY || p->v->role == RV_ROLE_PRIMARY) {
                pc_close(pc, "write from a node that is not primary");
                return;
            }
            if (!start_remote(pc, &h)) {
                pc->paused = true;
                rv_sockconn_pause(sc);
                return;
            }
            if (pc->state == PC_CLOSING)
                return;
            sc->rpos += RV_REPL_HDR_SIZE;
            continue;
        case RV_REPL_T_ACK:
        case RV_REPL_T_NACK:
        case RV_REPL_T_PONG:
            sc->rpos += RV_REPL_HDR_SIZE;
            handle_answer(pc, &h);
            continue;
        case RV_REPL_T_PING:
            sc->rpos += RV_REPL_HDR_SIZE;
            send_ping(pc, RV_REPL_T_PONG, h.seq);
            continue;
        case RV_REPL_T_GOODBYE:
            sc->rpos += RV_REPL_HDR_SIZE;
            pc->peer_goodbye = true;
            rv_info("volume %s: peer %s is stopping cleanly%s", p->v->meta.name, pc->addr,
                    pc->remote.role == RV_ROLE_PRIMARY ? "" : " (its copy is now marked Outdated)");
            continue;
        case RV_REPL_T_BITMAP:
            sc->rpos += RV_REPL_HDR_SIZE + h.payload_len;
            handle_bitmap(pc, &h, sc->rbuf + sc->rpos - h.payload_len);
            if (pc->state == PC_CLOSING)
                return;
            continue;
        case RV_REPL_T_DIGEST:
            sc->rpos += RV_REPL_HDR_SIZE + h.payload_len;
            if (!rv_verify_answer(p->vf, h.seq, 0, sc->rbuf + sc->rpos - h.payload_len, h.payload_len)) {
                pc_close(pc, "unexpected DIGEST frame");
                return;
            }
            continue;
        default: {
            char why[96];
            snprintf(why, sizeof why, "unexpected %s frame", rv_repl_type_name(h.type));
            pc_close(pc, why);
            return;
        }
        }
    }
}

static void pc_on_input(struct rv_sockconn *sc)
{
    struct peer_conn *pc = RV_CONTAINER_OF(sc, struct peer_conn, sc);
    pc->last_rx_ns = rv_now_ns();
    pc_process(pc);
}

static void pc_on_eof(struct rv_sockconn *sc, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(sc, struct peer_conn, sc);
    char why[RV_TLS_ERR_MAX + 16];
    const char *tls_err = sc->tio ? rv_tlsio_error(sc->tio) : "";
    if (tls_err[0])
        snprintf(why, sizeof why, "TLS: %s", tls_err);
    else
        snprintf(why, sizeof why, "%s", err == 0 ? "peer closed the connection" : strerror(-err));
    pc_close(pc, why);
}

/* TLS, when configured, runs before the HELLO: nothing of ours, not even
 * the volume's identity, goes out to an unauthenticated peer. */
static int pc_start_tls(struct peer_conn *pc, struct rv_tls_ctx *ctx)
{
    if (!ctx)
        return 0;
    char who[256];
    snprintf(who, sizeof who, "volume %s: peer link %s %s", pc->p->v->meta.name,
             pc->outgoing ? "to" : "from", pc->addr);
    int r = rv_sockconn_start_tls(&pc->sc, ctx, who);
    if (r < 0)
        rv_err("%s: cannot start TLS: %s", who, strerror(-r));
    return r;
}

/* ------------------------------------------------------------ lifetime */

static void pc_free(struct peer_conn *pc)
{
    struct rv_peer *p = pc->p;
    for (unsigned i = 0; i < MAX_REFUSING; i++)
        if (p->refusing[i] == pc)
            p->refusing[i] = NULL;
    rv_bufpool_cancel_wait(&p->v->pool, &pc->buf_wait);
    rv_sockconn_fini(&pc->sc);
    free(pc->rreqs);
    free(pc);
    p->conns_alive--;
    peer_maybe_shutdown_done(p);
}

/* Free the connection once nothing refers to it: the socket is closed, no
 * peer request is being applied, no resume is queued.  One place decides,
 * so nested completions can't free it twice. */
static void pc_maybe_free(struct peer_conn *pc)
{
    if (pc->sc_closed && pc->busy == 0 && !pc->resume_pending && !pc->in_on_closed)
        pc_free(pc);
}

static void pc_on_closed(struct rv_sockconn *sc)
{
    struct peer_conn *pc = RV_CONTAINER_OF(sc, struct peer_conn, sc);
    pc->sc_closed = true;
    pc->in_on_closed = true;
    /* No socket operation refers to a leg's buffer any more: every leg the
     * connection still holds is "not on the peer". */
    while (pc->legs_head)
        leg_finish(pc, pc->legs_head, -ENOTCONN);
    if (pc->p->conn == NULL || pc->p->conn == pc) {
        async_drop_all(pc->p);
        mb_drop_all(pc->p);
    }
    if (pc->payload) {
        /* A WRITE whose data never fully arrived: never applied, never
         * acknowledged. */
        struct remote_req *rr = pc->payload;
        pc->payload = NULL;
        rr->busy = false;
        rr->early_acked = false;
        rreq_ack_sent(&rr->ack, -ECONNRESET);
    }
    pc->in_on_closed = false;
    pc_maybe_free(pc);
}

static void pc_close(struct peer_conn *pc, const char *why)
{
    struct rv_peer *p = pc->p;
    if (pc->sc_closed) {
        pc_maybe_free(pc);
        return;
    }
    if (pc->state == PC_CLOSING && pc->sc.closing)
        return;
    bool was_connected = pc->state == PC_CONNECTED;
    bool held = p->held_for_target && p->conn == pc;
    pc->state = PC_CLOSING;
    if (p->conn == pc) {
        p->conn = NULL;
        if (p->state != RV_PEER_REFUSED && p->state != RV_PEER_SPLIT_BRAIN)
            set_state(p, p->o.peer || p->o.listen ? RV_PEER_DISCONNECTED : RV_PEER_NONE);
        p->next_dial_ns = rv_now_ns() + (uint64_t)p->backoff_ms * 1000000u;
        p->backoff_ms = RV_MIN(p->backoff_ms * 2, BACKOFF_MAX_MS);
    }
    if (was_connected) {
        rv_resync_abort(p->rs);
        rv_verify_abort(p->vf);
    }
    if (was_connected && (p->shutting_down || p->planned_close) && p->async_outstanding == 0) {
        /* Our own clean stop: every client request was answered with the
         * peer's acknowledgement, so the copies are still the same. */
        p->disconnects++;
    } else if (was_connected && pc->peer_goodbye) {
        /* The peer stopped cleanly.  A secondary outdated its copy first,
         * so it cannot be promoted behind our back: no fencing needed.
         * Writes from now on are recorded for its return as after a loss. */
        p->disconnects++;
        snprintf(p->last_error, sizeof p->last_error, "peer %s stopped cleanly%s", pc->addr,
                 pc->remote.role == RV_ROLE_PRIMARY ? "" : " (its copy is marked Outdated)");
        rv_info("volume %s: %s%s", p->v->meta.name, p->last_error,
                p->v->role == RV_ROLE_PRIMARY ? "; continuing without it, recording what it misses" : "");
        if (pc->remote.role != RV_ROLE_PRIMARY)
            p->peer_fenced = true;      /* it outdated itself: as good as fenced */
        rv_volume_peer_lost(p->v);
    } else if (was_connected) {
        p->disconnects++;
        if (why && !strstr(why, "peer failed"))
            snprintf(p->last_error, sizeof p->last_error, "link lost: %s", why);
        rv_warn("volume %s: lost peer %s: %s%s", p->v->meta.name, pc->addr, why ? why : "closed",
                p->v->role == RV_ROLE_PRIMARY ? "; continuing without it, recording what it misses" : "");
        if (p->v->role == RV_ROLE_PRIMARY && p->o.mode == RV_MODE_C && p->fence_handler[0])
            fence_peer(p);
        rv_volume_peer_lost(p->v);
    } else if (why) {
        rv_warn("volume %s: peer connection %s closed: %s", p->v->meta.name, pc->addr, why);
        snprintf(p->last_error, sizeof p->last_error, "connection %s %s closed before replicating: %s",
                 pc->outgoing ? "to" : "from", pc->addr, why);
    }
    if (held) {
        /* Writes held for the target's confirmation (finding 13): the link
         * went first.  Fenced (or the peer outdated itself): release them;
         * otherwise the fence-peer handler decides, as after any loss. */
        p->held_for_target = false;
        if (p->peer_fenced)
            rv_volume_thaw(p->v);
        else if (!p->fence_pid)
            fence_peer(p);
    }
    rv_sockconn_close(&pc->sc, -ENOTCONN);
}

static const struct rv_sockconn_ops pc_ops = {
    .on_input = pc_on_input,
    .on_eof = pc_on_eof,
    .on_closed = pc_on_closed,
};

static struct peer_conn *pc_new(struct rv_peer *p, int fd, bool outgoing, const char *addr)
{
    struct peer_conn *pc = calloc(1, sizeof *pc);
    if (!pc)
        return NULL;
    pc->rreqs = calloc(p->o.max_inflight, sizeof *pc->rreqs);
    if (!pc->rreqs || rv_sockconn_init(&pc->sc, p->loop, fd, PEER_RBUF_SIZE, &pc_ops) < 0) {
        free(pc->rreqs);
        free(pc);
        return NULL;
    }
    for (unsigned i = 0; i < p->o.max_inflight; i++) {
        pc->rreqs[i].pc = pc;
        pc->rreqs[i].next_free = pc->free_rreqs;
        pc->free_rreqs = &pc->rreqs[i];
    }
    pc->p = p;
    pc->outgoing = outgoing;
    pc->state = PC_HELLO;
    pc->buf_wait.wake = buf_wake;
    pc->resume_op.fn = resume_cb;
    pc->last_rx_ns = pc->last_tx_ns = rv_now_ns();
    snprintf(pc->addr, sizeof pc->addr, "%s", addr);
    p->conns_alive++;
    return pc;
}

/* ------------------------------------------------------------ dial / accept */

static void on_connect(struct rv_op *op, int res)
{
    struct peer_conn *pc = RV_CONTAINER_OF(op, struct peer_conn, connect_op);
    struct rv_peer *p = pc->p;
    if (res < 0 || p->shutting_down || p->conn != pc) {
        if (res < 0 && p->state == RV_PEER_CONNECTING)
            rv_debug("volume %s: connecting to peer %s: %s", p->v->meta.name, pc->addr, strerror(-res));
        if (p->conn == pc) {
            p->conn = NULL;
            if (p->state != RV_PEER_SPLIT_BRAIN)
                set_state(p, RV_PEER_DISCONNECTED);
        }
        p->next_dial_ns = rv_now_ns() + (uint64_t)p->backoff_ms * 1000000u;
        p->backoff_ms = RV_MIN(p->backoff_ms * 2, BACKOFF_MAX_MS);
        pc->state = PC_CLOSING;
        pc->sc_closed = true;
        pc_free(pc);
        return;
    }
    tune_socket(pc->sc.fd);
    pc->state = PC_HELLO;
    set_state(p, RV_PEER_HANDSHAKE);
    pc->last_rx_ns = rv_now_ns();       /* the handshake timeout runs from here */
    if (pc_start_tls(pc, p->o.tls_client) < 0) {
        pc_close(pc, "cannot start TLS");
        return;
    }
    send_hello(pc);
    rv_sockconn_read(&pc->sc);
}

static void peer_dial(struct rv_peer *p)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (rv_parse_hostport(p->peer_addr, &ss, &len, false) < 0) {
        rv_err("volume %s: bad peer address %s", p->v->meta.name, p->peer_addr);
        set_state(p, RV_PEER_REFUSED);
        return;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct peer_conn *pc = pc_new(p, fd, true, p->peer_addr);
    if (!pc) {
        close(fd);
        return;
    }
    pc->sa = ss;
    pc->salen = len;
    pc->state = PC_CONNECTING;  /* until on_connect: only cancelling may stop it */
    p->conn = pc;
    set_state(p, RV_PEER_CONNECTING);
    pc->connect_op.fn = on_connect;
    struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, &pc->connect_op);
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&pc->sa, pc->salen);
    /* A connect to a silent address must not hang forever. */
    sqe->flags |= IOSQE_IO_LINK;
    static struct __kernel_timespec connect_timeout = { .tv_sec = 5 };  /* read-only after init */
    sqe = rv_loop_sqe(p->loop, NULL);
    io_uring_prep_link_timeout(sqe, &connect_timeout, 0);
}

static void peer_arm_accept(struct rv_peer *p);

static void on_accept(struct rv_op *op, int res)
{
    struct rv_peer *p = RV_CONTAINER_OF(op, struct rv_peer, accept_op);
    p->accept_pending = false;
    if (p->shutting_down) {
        if (res >= 0)
            close(res);
        peer_maybe_shutdown_done(p);
        return;
    }
    if (res >= 0) {
        char addr[96];
        rv_peer_name(res, addr, sizeof addr);
        tune_socket(res);
        struct peer_conn *pc = pc_new(p, res, false, addr);
        if (!pc) {
            close(res);
        } else if (pc_start_tls(pc, p->o.tls_server) < 0) {
            pc->state = PC_HELLO;
            pc_close(pc, "cannot start TLS");
        } else if (p->conn) {
            /* One peer connection at a time. */
            pc->state = PC_HELLO;
            unsigned i = 0;
            while (i < MAX_REFUSING && p->refusing[i])
                i++;
            if (i == MAX_REFUSING) {
                pc_close(pc, "busy, and already refusing several connections");
            } else {
                p->refusing[i] = pc;
                p->refusing_deadline[i] = rv_now_ns() + (uint64_t)p->o.timeout_ms * 1000000u;
                send_refuse(pc, RV_REPL_REFUSE_BUSY, "already connected to a peer");
            }
        } else {
            p->conn = pc;
            set_state(p, RV_PEER_HANDSHAKE);
            rv_sockconn_read(&pc->sc);
        }
    } else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
        rv_warn("volume %s: replication listener: accept: %s", p->v->meta.name, strerror(-res));
    }
    peer_arm_accept(p);
}

static void peer_arm_accept(struct rv_peer *p)
{
    p->accept_op.fn = on_accept;
    struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, &p->accept_op);
    io_uring_prep_accept(sqe, p->lfd, NULL, NULL, SOCK_CLOEXEC);
    p->accept_pending = true;
}

/* ------------------------------------------------------------ tick */

static void peer_tick(struct rv_op *op, int res);

static void arm_tick(struct rv_peer *p)
{
    unsigned ms = RV_MIN(p->o.ping_ms, 250u);
    p->tick_ts.tv_sec = ms / 1000;
    p->tick_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    p->tick_op.fn = peer_tick;
    struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, &p->tick_op);
    io_uring_prep_timeout(sqe, &p->tick_ts, 0, 0);
    p->tick_pending = true;
}

static void peer_tick(struct rv_op *op, int res)
{
    struct rv_peer *p = RV_CONTAINER_OF(op, struct rv_peer, tick_op);
    p->tick_pending = false;
    if (p->draining) {
        if (p->goodbye_pending)
            say_goodbye(p);
        if ((p->async_outstanding == 0 && !p->goodbye_pending) || !p->conn ||
            rv_now_ns() > p->drain_deadline_ns) {
            peer_shutdown_finish(p);
            peer_maybe_shutdown_done(p);
            return;
        }
        arm_tick(p);
        return;
    }
    if (p->shutting_down) {
        peer_maybe_shutdown_done(p);
        return;
    }
    uint64_t now = rv_now_ns();
    uint64_t timeout = (uint64_t)p->o.timeout_ms * 1000000u;
    struct peer_conn *pc = p->conn;
    if (pc && pc->state == PC_CONNECTED) {
        if (now - pc->last_rx_ns > timeout) {
            char why[96];
            snprintf(why, sizeof why, "no answer for %u ms", p->o.timeout_ms);
            pc_close(pc, why);
        } else if (pc->legs_head && now - pc->legs_head->sent_ns > PEER_KO_COUNT * timeout) {
            /* The peer is alive (keepalives flow) but has not completed
             * the oldest write sent to it: its disk hangs.  In mode C the
             * clients wait for it; let the peer go (DRBD's ko-count). */
            char why[128];
            snprintf(why, sizeof why, "the peer completed no write for %u ms (its disk hangs?)",
                     PEER_KO_COUNT * p->o.timeout_ms);
            pc_close(pc, why);
        } else if (now - pc->last_tx_ns > (uint64_t)p->o.ping_ms * 1000000u ||
                   now - pc->last_rx_ns > (uint64_t)p->o.ping_ms * 1000000u) {
            send_ping(pc, RV_REPL_T_PING, ++pc->ping_seq);
        }
    } else if (pc && pc->state == PC_HELLO && now - pc->last_rx_ns > timeout) {
        pc_close(pc, "handshake timed out");
    }
    for (unsigned i = 0; i < MAX_REFUSING; i++)
        if (p->refusing[i] && now > p->refusing_deadline[i]) {
            struct peer_conn *r = p->refusing[i];
            p->refusing[i] = NULL;
            pc_close(r, "the refusal was not taken in time");
        }
    /* After a split brain only `repvol connect` dials again: the status
     * keeps saying so instead of flickering through retries. */
    bool want = (p->v->role == RV_ROLE_PRIMARY && p->state != RV_PEER_SPLIT_BRAIN) ||
                p->discard_my_data;     /* the side giving up its data asks itself */
    if (!p->conn && p->peer_addr[0] && want && now >= p->next_dial_ns)
        peer_dial(p);
    arm_tick(p);
}

/* ------------------------------------------------------------ API */

static uint64_t link_next_seq(void *ctx)
{
    struct rv_peer *p = ctx;
    return ++p->seq;
}

static bool link_send(void *ctx, struct rv_sendq_item *it)
{
    struct rv_peer *p = ctx;
    struct peer_conn *pc = p->conn;
    if (!pc || pc->state != PC_CONNECTED)
        return false;
    pc->last_tx_ns = rv_now_ns();
    rv_sockconn_send(&pc->sc, it);
    return true;
}

static void link_idle(void *ctx)
{
    peer_maybe_shutdown_done(ctx);
}

int rv_peer_create(struct rv_peer **out, struct rv_volume *v, struct rv_loop *loop,
                   const struct rv_peer_opts *opts)
{
    struct rv_peer *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->v = v;
    p->loop = loop;
    p->o = *opts;
    p->lfd = -1;
    if (opts->peer)
        snprintf(p->peer_addr, sizeof p->peer_addr, "%s", opts->peer);
    if (opts->listen)
        snprintf(p->listen_addr, sizeof p->listen_addr, "%s", opts->listen);
    if (opts->fence_handler)
        snprintf(p->fence_handler, sizeof p->fence_handler, "%s", opts->fence_handler);
    p->o.fence_handler = p->fence_handler[0] ? p->fence_handler : NULL;
    p->fence_fd = -1;
    p->o.peer = p->peer_addr[0] ? p->peer_addr : NULL;
    p->o.listen = p->listen_addr[0] ? p->listen_addr : NULL;
    if (!p->o.mode)
        p->o.mode = RV_MODE_C;
    if (!p->o.timeout_ms)
        p->o.timeout_ms = 6000;
    if (!p->o.ping_ms)
        p->o.ping_ms = 1000;
    if (!p->o.max_inflight)
        p->o.max_inflight = 256;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->state = RV_PEER_DISCONNECTED;
    struct rv_resync_link link = { .ctx = p, .next_seq = link_next_seq, .send = link_send,
                                   .idle = link_idle };
    if (rv_resync_create(&p->rs, v, &link, opts->resync_rate) < 0 ||
        rv_verify_create(&p->vf, v, &link) < 0) {
        rv_resync_destroy(p->rs);
        free(p);
        return -ENOMEM;
    }
    if (p->o.mode == RV_MODE_B && !(p->mb = calloc(MB_PEND, sizeof *p->mb))) {
        rv_resync_destroy(p->rs);
        rv_verify_destroy(p->vf);
        free(p);
        return -ENOMEM;
    }
    if (p->o.mode == RV_MODE_A) {
        /* The bounded send buffer mode A promises. */
        /* The pool splits its budget across size classes (4K, 16K, ...,
         * max request): 64M gives every class 8M or more, so 8M of writes
         * of any one size can be outstanding before the peer counts as
         * lagging. */
        p->ring = malloc(ASYNC_RING);
        p->async_frames = calloc(ASYNC_FRAMES, sizeof *p->async_frames);
        if (!p->ring || !p->async_frames) {
            free(p->ring);
            free(p->async_frames);
            free(p);
            return -ENOMEM;
        }
        for (unsigned i = 0; i < ASYNC_FRAMES; i++) {
            p->async_frames[i].p = p;
            p->async_frames[i].next = p->async_free;
            p->async_free = &p->async_frames[i];
        }
    }
    *out = p;
    return 0;
}

int rv_peer_start(struct rv_peer *p)
{
    if (p->o.listen) {
        int fd = rv_listen_tcp(p->o.listen, 8, "replication listener");
        if (fd < 0)
            return fd;
        p->lfd = fd;
        peer_arm_accept(p);
        rv_info("volume %s: replication listening on %s", p->v->meta.name, p->o.listen);
    }
    if (p->o.peer)
        rv_info("volume %s: peer %s, mode %s", p->v->meta.name, p->o.peer, rv_repl_mode_name(p->o.mode));
    p->next_dial_ns = 0;
    arm_tick(p);
    return 0;
}

static void peer_maybe_shutdown_done(struct rv_peer *p)
{
    if (!p->shutting_down || p->accept_pending || p->tick_pending || p->conns_alive > 0 || p->fence_pid ||
        p->drop_pending || !rv_resync_idle(p->rs) || !rv_verify_idle(p->vf))
        return;
    if (p->shutdown_done) {
        void (*done)(void *) = p->shutdown_done;
        p->shutdown_done = NULL;
        done(p->shutdown_arg);
    }
}

static void peer_shutdown_finish(struct rv_peer *p);

/* ------------------------------------------------------------ clean stop
 *
 * A node that stops cleanly sends GOODBYE before closing, so the peer can
 * tell maintenance from a failure.  A secondary first stops taking
 * requests, lets those it has finish (their ACKs go out first), and marks
 * its copy Outdated durably: the primary keeps writing without it, so it
 * must not be promoted without --force, which is what fencing would have
 * ensured; with that done the primary skips the fence-peer handler.  A
 * primary's GOODBYE comes after every client write was answered, so its
 * secondary stays UpToDate.  Without GOODBYE (crash, cut link) nothing
 * changes: the close is a loss. */
static void bye_sent(struct rv_sendq_item *it, int err)
{
    struct peer_conn *pc = RV_CONTAINER_OF(it, struct peer_conn, bye_item);
    (void)err;
    pc->p->goodbye_pending = false;     /* the drain in peer_tick ends the stop */
}

static void send_goodbye(struct peer_conn *pc)
{
    struct rv_repl_hdr h = { .type = RV_REPL_T_GOODBYE };
    rv_repl_encode_hdr(pc->bye_item.hdr, &h);
    pc->bye_item.hdr_len = RV_REPL_HDR_SIZE;
    pc->bye_item.data = NULL;
    pc->bye_item.data_len = 0;
    pc->bye_item.done = bye_sent;
    pc->bye_queued = true;
    rv_sockconn_send(&pc->sc, &pc->bye_item);
}

static void goodbye_outdated(struct rv_volume *v, int err)
{
    struct rv_peer *p = v->peer;
    struct peer_conn *pc = p ? p->conn : NULL;
    if (pc)
        pc->outdating = false;
    if (err < 0) {
        /* Not durably Outdated: no GOODBYE, so the primary treats the
         * close as a loss (and fences, if it was told to). */
        rv_err("volume %s: marking the copy Outdated before stopping failed: %s", v->meta.name,
               strerror(-err));
        if (p)
            p->goodbye_pending = false;
        return;
    }
    rv_info("volume %s: copy marked Outdated (stopping while the primary runs on)", v->meta.name);
    if (pc && pc->state == PC_CONNECTED && p->goodbye_pending)
        send_goodbye(pc);
}

static void say_goodbye(struct rv_peer *p)
{
    struct peer_conn *pc = p->conn;
    if (!pc || pc->state != PC_CONNECTED) {
        p->goodbye_pending = false;
        return;
    }
    if (pc->bye_queued || pc->outdating)
        return;
    if (p->v->role != RV_ROLE_PRIMARY) {
        if (pc->busy > 0 || pc->payload)
            return;             /* peer_tick asks again */
        if (p->v->meta.disk_state == RV_DISK_UPTODATE) {
            p->v->meta.disk_state = RV_DISK_OUTDATED;
            pc->outdating = true;
            rv_volume_meta_commit(p->v, goodbye_outdated);
            return;
        }
    }
    send_goodbye(pc);
}

void rv_peer_shutdown(struct rv_peer *p, void (*done)(void *arg), void *arg)
{
    p->shutting_down = true;
    p->shutdown_done = done;
    p->shutdown_arg = arg;
    if (p->conn && p->conn->state == PC_CONNECTED && p->tick_pending) {
        /* Tell the peer this is a planned stop (say_goodbye).  Mode A also
         * acknowledged writes to clients already: give them a chance to
         * land; what doesn't is recorded as dirty when the link closes.
         * Both bounded by the peer timeout (peer_tick ends the drain). */
        if (p->async_outstanding > 0)
            rv_info("volume %s: waiting up to %u ms for %u queued write(s) to reach the peer", p->v->meta.name,
                    p->o.timeout_ms, p->async_outstanding);
        p->goodbye_pending = true;
        if (p->v->role != RV_ROLE_PRIMARY) {
            p->conn->input_stopped = true;
            rv_sockconn_pause(&p->conn->sc);
        }
        say_goodbye(p);
        p->draining = true;
        p->drain_deadline_ns = rv_now_ns() + (uint64_t)p->o.timeout_ms * 1000000u;
        return;
    }
    peer_shutdown_finish(p);
}

static void peer_shutdown_finish(struct rv_peer *p)
{
    p->draining = false;
    if (p->lfd >= 0) {
        shutdown(p->lfd, SHUT_RDWR);
        if (p->accept_pending) {
            struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, NULL);
            io_uring_prep_cancel(sqe, &p->accept_op, 0);
        }
        close(p->lfd);
        p->lfd = -1;
    }
    if (p->tick_pending) {
        struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, NULL);
        io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&p->tick_op, 0);
    }
    if (p->conn) {
        struct peer_conn *pc = p->conn;
        if (pc->state == PC_CONNECTING) {
            struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, NULL);
            io_uring_prep_cancel(sqe, &pc->connect_op, 0);
            p->conn = NULL;
        } else {
            rv_info("volume %s: closing the replication link (shutdown)", p->v->meta.name);
            pc_close(pc, NULL);
        }
    }
    peer_maybe_shutdown_done(p);
}

void rv_peer_destroy(struct rv_peer *p)
{
    if (!p)
        return;
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->o.mode == RV_MODE_A) {
        free(p->ring);
        free(p->async_frames);
    }
    free(p->mb);
    rv_resync_destroy(p->rs);
    rv_verify_destroy(p->vf);
    free(p);
}

static void verify_then(void *ctx, bool marked)
{
    struct rv_peer *p = ctx;
    if (marked && p->state == RV_PEER_CONNECTED && !rv_resync_active(p->rs))
        rv_resync_start(p->rs, false);
}

int rv_peer_verify(struct rv_peer *p, bool mark, char *msg, size_t len)
{
    if (p->state != RV_PEER_CONNECTED) {
        snprintf(msg, len, "the peer is %s: verify needs a connected peer", rv_peer_state_name(p->state));
        return -ENOTCONN;
    }
    if (p->v->role != RV_ROLE_PRIMARY) {
        snprintf(msg, len, "run verify on the primary");
        return -EPERM;
    }
    if (rv_resync_active(p->rs)) {
        snprintf(msg, len, "a resync is running; verify after it completes");
        return -EBUSY;
    }
    int r = rv_verify_start(p->vf, mark, verify_then, p);
    if (r < 0)
        snprintf(msg, len, "a verify is already running");
    else
        snprintf(msg, len, "verify started");
    return r;
}

/* ------------------------------------------------------------ fencing */

/* DRBD's fence-peer idea: a mode-C primary that loses its peer cannot tell
 * a dead peer from a cut link behind which the peer is about to be
 * promoted.  Until the handler (a cluster's script) has fenced or outdated
 * the peer, writes the peer lacks are held, not acknowledged.  Exit 0:
 * acknowledged from then on.  Anything else: held until the operator runs
 * `repvol resume-io`. */
static void fence_done(struct rv_op *op, int res)
{
    struct rv_peer *p = RV_CONTAINER_OF(op, struct rv_peer, fence_op);
    int status = 0;
    pid_t pid = p->fence_pid;
    if (waitpid(pid, &status, 0) < 0)
        status = -1;
    close(p->fence_fd);
    p->fence_fd = -1;
    p->fence_pid = 0;
    if (status == 0) {
        rv_info("volume %s: fence-peer handler succeeded: continuing without the peer", p->v->meta.name);
        /* A success that comes after a new connection was made is about the
         * old separation: the next one is fenced again. */
        p->peer_fenced = p->state != RV_PEER_CONNECTED;
        rv_volume_thaw(p->v);
    } else {
        rv_err("volume %s: fence-peer handler %s failed (%s %d): writes stay frozen; "
               "run 'repvol resume-io' to continue without fencing",
               p->v->meta.name, p->fence_handler, WIFEXITED(status) ? "exit" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    peer_maybe_shutdown_done(p);
}

static void fence_peer(struct rv_peer *p)
{
    if (p->fence_pid)
        return;                 /* already fencing */
    rv_volume_freeze(p->v);
    char e_vol[128], e_peer[300], e_node[64], e_uuid[64];
    snprintf(e_vol, sizeof e_vol, "REPVOL_VOLUME=%s", p->v->meta.name);
    snprintf(e_peer, sizeof e_peer, "REPVOL_PEER=%s", p->peer_addr);
    snprintf(e_node, sizeof e_node, "REPVOL_NODE_ID=%u", p->o.node_id);
    snprintf(e_uuid, sizeof e_uuid, "REPVOL_UUID=%s", p->v->uuid_str);
    char *envp[] = { e_vol, e_peer, e_node, e_uuid, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     NULL };
    char *argv[] = { p->fence_handler, NULL };
    pid_t pid;
    int r = posix_spawn(&pid, p->fence_handler, NULL, NULL, argv, envp);
    if (r != 0) {
        rv_err("volume %s: cannot run fence-peer handler %s: %s; writes stay frozen ('repvol resume-io')",
               p->v->meta.name, p->fence_handler, strerror(r));
        return;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        int status;
        waitpid(pid, &status, 0);       /* no pidfd (old kernel): wait here, rare and short */
        p->fence_pid = pid;
        p->fence_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        p->fence_op.fn = fence_done;
        rv_loop_defer(p->loop, &p->fence_op, 0);
        return;
    }
    rv_info("volume %s: peer lost in mode C: running fence-peer handler %s (pid %d); writes the peer "
            "lacks are held until it succeeds", p->v->meta.name, p->fence_handler, (int)pid);
    p->fence_pid = pid;
    p->fence_fd = fd;
    p->fence_op.fn = fence_done;
    struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, &p->fence_op);
    io_uring_prep_poll_add(sqe, fd, POLLIN);
}

bool rv_peer_fence_local_write(struct rv_peer *p)
{
    /* Model finding 1: fencing only on the loss of a live link left a
     * primary that restarted (or was promoted) without ever reaching its
     * peer acknowledging writes the still-UpToDate peer lacks. */
    if (p->o.mode != RV_MODE_C || !p->fence_handler[0] || p->peer_fenced || p->fence_pid || p->v->frozen ||
        p->shutting_down)
        return p->v->frozen;
    if (p->state != RV_PEER_CONNECTED) {
        rv_warn("volume %s: a write the peer lacks and the peer not fenced since the last connection: "
                "running the fence-peer handler", p->v->meta.name);
        fence_peer(p);
    } else if (p->conn && p->conn->sync == SYNC_SOURCE && !p->conn->target_confirmed) {
        /* Model finding 13: a write issued before the link came up (so not
         * sent) completes just after it: the peer may not have read our
         * HELLO yet, so it is still UpToDate and promotable without it.
         * Hold it until the peer answers a resync frame, which it reads only
         * once its Inconsistent state is durable; a loss first fences. */
        p->held_for_target = true;
        rv_volume_freeze(p->v);
    }
    return p->v->frozen;
}

void rv_peer_resume_io(struct rv_peer *p)
{
    p->peer_fenced = true;              /* the operator's call: no fencing until the next connection */
    if (p->v->frozen) {
        rv_warn("volume %s: I/O resumed by the operator without fencing the peer", p->v->meta.name);
        rv_volume_thaw(p->v);
    }
}

void rv_peer_role_changed(struct rv_peer *p)
{
    p->backoff_ms = BACKOFF_MIN_MS;
    p->next_dial_ns = 0;
    if (p->state == RV_PEER_REFUSED)
        set_state(p, RV_PEER_DISCONNECTED);
    if (p->conn && p->conn->state == PC_CONNECTING) {
        /* A dial in flight: drop it (on_connect frees it), dial anew. */
        struct io_uring_sqe *sqe = rv_loop_sqe(p->loop, NULL);
        io_uring_prep_cancel(sqe, &p->conn->connect_op, 0);
        p->conn = NULL;
        if (p->state == RV_PEER_CONNECTING)
            set_state(p, RV_PEER_DISCONNECTED);
    } else if (p->conn) {
        /* The peer knows us by our old role: shake hands again. */
        p->planned_close = true;
        pc_close(p->conn, "role changed; reconnecting");
        p->planned_close = false;
    }
}

int rv_peer_connect(struct rv_peer *p, bool discard, char *msg, size_t len)
{
    if (p->state == RV_PEER_CONNECTED) {
        snprintf(msg, len, "already connected");
        return discard ? -EISCONN : 0;
    }
    if (discard && p->v->role == RV_ROLE_PRIMARY) {
        snprintf(msg, len, "this node is primary: demote it ('repvol secondary') before discarding its data");
        return -EPERM;
    }
    p->discard_my_data = discard;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->next_dial_ns = 0;
    p->last_refusal[0] = '\0';
    if (p->state == RV_PEER_REFUSED || p->state == RV_PEER_SPLIT_BRAIN)
        set_state(p, RV_PEER_DISCONNECTED);
    snprintf(msg, len, "%s", discard ? "connecting; this node's changes will be replaced by the peer's data"
                                      : "connecting");
    return 0;
}

static void drop_cb(struct rv_op *op, int res)
{
    struct rv_peer *p = RV_CONTAINER_OF(op, struct rv_peer, drop_op);
    (void)res;
    p->drop_pending = false;
    if (p->conn && p->conn->state == PC_CONNECTED && !p->shutting_down) {
        pc_close(p->conn, p->drop_why);
        snprintf(p->last_error, sizeof p->last_error, "%s", p->drop_why);
    }
    peer_maybe_shutdown_done(p);
}

void rv_peer_drop(struct rv_peer *p, const char *why)
{
    if (p->drop_pending || !p->conn || p->conn->state != PC_CONNECTED || p->shutting_down)
        return;
    /* Deferred: the caller may be inside this link's own completion path. */
    snprintf(p->drop_why, sizeof p->drop_why, "%s", why);
    p->drop_pending = true;
    p->drop_op.fn = drop_cb;
    rv_loop_defer(p->loop, &p->drop_op, 0);
}

uint32_t rv_peer_remote_role(const struct rv_peer *p)
{
    return p->remote_role;
}

void rv_peer_progress(const struct rv_peer *p, struct rv_strbuf *out)
{
    rv_sb_printf(out, "peer %s\n", rv_peer_state_name(p->state));
    rv_resync_progress(p->rs, out);
    rv_verify_progress(p->vf, out);
}

void rv_peer_status(const struct rv_peer *p, bool json, struct rv_strbuf *out)
{
    const struct peer_conn *pc = p->conn;
    unsigned inflight = pc ? pc->legs + pc->busy : 0;
    if (json) {
        rv_sb_printf(out, "{\"state\":\"%s\",\"mode\":\"%s\",\"address\":", rv_peer_state_name(p->state),
                     rv_repl_mode_name(p->o.mode));
        rv_sb_json_str(out, p->peer_addr[0] ? p->peer_addr : (pc ? pc->addr : ""));
        rv_sb_printf(out, ",\"listen\":");
        rv_sb_json_str(out, p->listen_addr);
        rv_sb_printf(out, ",\"peer_node\":%d,\"peer_role\":\"%s\",\"inflight\":%u,\"frames_sent\":%" PRIu64
                     ",\"bytes_replicated\":%" PRIu64 ",\"acks\":%" PRIu64 ",\"nacks\":%" PRIu64
                     ",\"connects\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"rtt_us\":%" PRIu64
                     ",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64 ",\"last_refusal\":",
                     pc && pc->state == PC_CONNECTED ? (int)pc->remote.node_id : -1,
                     pc && pc->state == PC_CONNECTED ? rv_role_name(pc->remote.role) : "unknown", inflight,
                     p->frames_sent, p->bytes_replicated, p->acks, p->nacks, p->connects, p->disconnects,
                     p->rtt_ns_last / 1000, pc ? pc->sc.bytes_out : 0, pc ? pc->sc.bytes_in : 0);
        rv_sb_json_str(out, p->last_refusal);
        rv_sb_printf(out, ",\"last_error\":");
        rv_sb_json_str(out, p->last_error);
        rv_sb_printf(out, ",\"tls\":");
        rv_sb_json_str(out, p->o.tls_desc ? p->o.tls_desc : "off");
        rv_sb_printf(out, ",\"tls_peer\":");
        rv_sb_json_str(out, pc && pc->sc.tio && pc->state == PC_CONNECTED ? rv_tlsio_peer(pc->sc.tio) : "");
        rv_sb_printf(out, ",\"sync\":");
        rv_resync_status(p->rs, true, out);
        rv_sb_printf(out, ",\"verify\":");
        rv_verify_status(p->vf, true, out);
        rv_sb_printf(out, "}");
        return;
    }
    char rep[32];
    if (p->state == RV_PEER_SPLIT_BRAIN)
        rv_sb_printf(out, "SPLIT BRAIN: the two copies diverged; nothing is merged or resynced until one side's "
                          "changes are discarded ('repvol connect --discard-my-data' on that side)\n");
    rv_sb_printf(out, "peer:        %s", rv_peer_state_name(p->state));
    if (pc && pc->state == PC_CONNECTED)
        rv_sb_printf(out, " to node %u (%s, %s) at %s", pc->remote.node_id, pc->remote.name,
                     rv_role_name(pc->remote.role), pc->addr);
    else if (p->peer_addr[0])
        rv_sb_printf(out, " (peer %s)", p->peer_addr);
    rv_sb_printf(out, "\nreplication: mode %s, %u in flight, %s replicated in %" PRIu64 " frames, %" PRIu64
                 " acks, %" PRIu64 " nacks, %" PRIu64 " connects, %" PRIu64 " disconnects\n",
                 rv_repl_mode_name(p->o.mode), inflight, rv_format_size(p->bytes_replicated, rep, sizeof rep),
                 p->frames_sent, p->acks, p->nacks, p->connects, p->disconnects);
    if (p->o.tls_desc)
        rv_sb_printf(out, "link:        TLS 1.3 (%s)%s%s%s\n", p->o.tls_desc,
                     pc && pc->sc.tio && pc->state == PC_CONNECTED ? ", peer authenticated as '" : "",
                     pc && pc->sc.tio && pc->state == PC_CONNECTED ? rv_tlsio_peer(pc->sc.tio) : "",
                     pc && pc->sc.tio && pc->state == PC_CONNECTED ? "'" : "");
    else
        rv_sb_printf(out, "link:        plain TCP (no TLS)\n");
    rv_resync_status(p->rs, false, out);
    rv_verify_status(p->vf, false, out);
    if (p->last_refusal[0])
        rv_sb_printf(out, "refused:     %s\n", p->last_refusal);
    if (p->last_error[0] && p->state != RV_PEER_CONNECTED)
        rv_sb_printf(out, "peer error:  %s\n", p->last_error);
    if (p->listen_addr[0])
        rv_sb_printf(out, "listening:   %s\n", p->listen_addr);
}
