/* peer_link.h - the replication link to the peer node (one TCP connection).
 *
 * On the primary the volume engine hands every WRITE, TRIM, WRITE_ZEROES
 * and FLUSH to rv_peer_submit(); the link frames it (repl_proto.h), queues
 * it on the socket with the request's own buffer as payload (no copy in
 * modes B and C) and, when the peer's ACK arrives, calls
 * rv_volume_peer_done(req, 0).  If the link fails, every request it still
 * holds gets rv_volume_peer_done(req, -ENOTCONN) once no socket operation
 * refers to its buffer any more.
 *
 * On the secondary the link receives those frames and applies them through
 * the same engine (origin RV_ORIGIN_PEER), answering each with ACK or NACK.
 *
 * Who connects: the primary dials --peer; every node listens on
 * --repl-listen.  One connection at a time. */
#ifndef REPVOL_PEER_LINK_H
#define REPVOL_PEER_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/sockconn.h"
#include "repvol/strbuf.h"
#include "repvol/sync_decide.h"

struct rv_tls_ctx;

struct rv_volume;
struct rv_req;
struct rv_loop;
struct rv_peer;

/* Replication modes (same numbers as on the wire, repl_proto.h). */
#define RV_MODE_A 1   /* ack when queued for sending to the peer */
#define RV_MODE_B 2   /* ack when the peer has received the data */
#define RV_MODE_C 3   /* ack when the peer has completed the write (default) */

enum rv_peer_state {
    RV_PEER_NONE = 0,           /* no peer configured */
    RV_PEER_DISCONNECTED,       /* configured, no connection (retrying on the primary) */
    RV_PEER_CONNECTING,         /* TCP connect in flight */
    RV_PEER_HANDSHAKE,          /* HELLOs being exchanged */
    RV_PEER_CONNECTED,          /* replicating */
    RV_PEER_REFUSED,            /* handshake refused: needs an operator */
    RV_PEER_SPLIT_BRAIN,        /* both copies changed since they parted: never merged
                                 * automatically unless a policy says how */
};


const char *rv_peer_state_name(enum rv_peer_state s);

/* The per-request part of the link, embedded in struct rv_req. */
struct rv_peer_leg {
    struct rv_sendq_item item;  /* the frame on the socket */
    uint64_t seq;
    uint64_t sent_ns;
    uint8_t active;             /* the link holds this request */
    uint8_t acked;
    uint8_t sent;
    struct rv_peer_leg *prev, *next;   /* requests awaiting the peer's answer */
};

struct rv_peer_opts {
    const char *peer;           /* HOST:PORT to dial (primary), or NULL */
    const char *listen;         /* HOST:PORT to accept on, or NULL */
    uint32_t node_id;
    uint32_t mode;              /* RV_MODE_* */
    unsigned timeout_ms;        /* no answer for this long: the peer is dead */
    unsigned ping_ms;           /* keepalive interval when idle */
    unsigned max_inflight;      /* peer requests applied at once (secondary) */
    uint64_t resync_rate;       /* bytes/s for resync, 0 = no limit */
    bool checksum_resync;       /* full syncs compare digests, send only what differs */
    enum rv_sb_policy sb_policy;
    const char *fence_handler;  /* run when a mode-C primary loses its peer */
    /* TLS on the link (tls.h), or NULL for plain TCP: the dialer is the TLS
     * client, the acceptor the server; both authenticate each other. */
    struct rv_tls_ctx *tls_client, *tls_server;
    const char *tls_desc;       /* for status: "PSK", "X.509", NULL = off */
};

int rv_peer_create(struct rv_peer **out, struct rv_volume *v, struct rv_loop *loop,
                   const struct rv_peer_opts *opts);
int rv_peer_start(struct rv_peer *p);
/* Stop: close the connection and the listener; `done` runs once every
 * request the link held has been handed back. */
void rv_peer_shutdown(struct rv_peer *p, void (*done)(void *arg), void *arg);
void rv_peer_destroy(struct rv_peer *p);

enum rv_peer_state rv_peer_state(const struct rv_peer *p);
bool rv_peer_connected(const struct rv_peer *p);

/* Primary: replicate req.  Returns false (and does nothing) when the peer
 * is not connected. */
bool rv_peer_submit(struct rv_peer *p, struct rv_req *req);

/* Change this node's role (the volume's role is set by the caller): the
 * link is dropped without counting it as a loss and re-established with
 * the new roles. */
void rv_peer_role_changed(struct rv_peer *p);

/* Try to connect again now; discard: this node's changes since the split
 * are thrown away and replaced by the peer's (split-brain recovery). */
int rv_peer_connect(struct rv_peer *p, bool discard, char *msg, size_t len);

/* Release writes held for the fence-peer handler (operator override). */
void rv_peer_resume_io(struct rv_peer *p);

/* Drop a connected link as a loss of the peer (on the next loop turn; why
 * becomes the status's peer error): a primary then records what the peer
 * misses and resyncs it when the link is back. */
void rv_peer_drop(struct rv_peer *p, const char *why);

/* A mode-C primary with a fence-peer handler is about to acknowledge a
 * write the peer lacks: unless the peer was fenced (or the operator
 * resumed I/O) since the last connection, run the handler now; the volume
 * is then frozen.  Returns true if the volume is frozen. */
bool rv_peer_fence_local_write(struct rv_peer *p);

/* The peer as last seen in a handshake (role), or 0. */
uint32_t rv_peer_remote_role(const struct rv_peer *p);

/* Start an online verify (verify.h); mark: resync what differs.  0 or
 * -errno with a message for the operator. */
int rv_peer_verify(struct rv_peer *p, bool mark, char *msg, size_t len);

void rv_peer_status(const struct rv_peer *p, bool json, struct rv_strbuf *out);

/* Lines "peer STATE", "sync STATE PERCENT BYTES_LEFT BYTES_TOTAL RATE ETA",
 * "verify STATE PERCENT MISMATCHED_BYTES", "range OFFSET LENGTH"... */
void rv_peer_progress(const struct rv_peer *p, struct rv_strbuf *out);

#endif
