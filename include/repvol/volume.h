/* volume.h - the volume engine: the one request type every frontend speaks.
 *
 * A frontend (NBD connection, ublk queue) decodes its wire request into a
 * struct rv_req and calls rv_volume_submit().  The engine checks bounds and
 * role, orders the request against overlapping writes in flight, fans it out
 * to the local backend and to the peer link, joins the completions and calls
 * req->done exactly once, from the event loop, with req->result = 0 or
 * -errno.  The replication link submits the peer's writes on a secondary the
 * same way (origin RV_ORIGIN_PEER).
 *
 * What is durable when req->done reports success:
 *   request       this node                      peer (mode C / B / A)
 *   WRITE         completed (page cache/device)  completed / received / queued
 *   WRITE + FUA   on stable storage (RWF_DSYNC)  stable / received / queued
 *   FLUSH         all writes completed before    same on the peer / received
 *                 it are stable (fdatasync)      / queued
 *   TRIM / ZERO   completed                      completed / received / queued
 * A write the peer did not get (no peer, link lost) is acknowledged only
 * once the metadata durably records that this node is ahead of its peer
 * (a new data generation), so a crash cannot make two different copies look
 * "in sync" afterwards.
 */
#ifndef REPVOL_VOLUME_H
#define REPVOL_VOLUME_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/backend.h"
#include "repvol/bitmap.h"
#include "repvol/bufpool.h"
#include "repvol/loop.h"
#include "repvol/meta_format.h"
#include "repvol/peer_link.h"

struct rv_volume;

enum rv_req_origin {
    RV_ORIGIN_CLIENT = 0,       /* a frontend (NBD, ublk) */
    RV_ORIGIN_PEER,             /* the primary, through the replication link */
    RV_ORIGIN_RESYNC,           /* a resync source reading a dirty range: a READ
                                 * ordered like a write, so client writes to the
                                 * range wait until its data is on the wire */
};

struct rv_req {
    /* Filled by the frontend. */
    uint8_t type;               /* enum rv_io_type */
    uint8_t flags;              /* RV_IO_* */
    uint64_t off;
    uint32_t len;
    void *buf;                  /* READ/WRITE data, len bytes, from the volume's buffer pool */
    void (*done)(struct rv_req *req);
    int result;                 /* set before done() is called */
    uint8_t origin;             /* enum rv_req_origin */

    /* Engine-private. */
    struct rv_volume *vol;
    struct rv_bio local;
    struct rv_peer_leg peer;
    unsigned pending;           /* legs (local, peer) still running */
    int peer_result;            /* 0: the peer has it (per mode); <0: it does not */
    bool ordered;               /* in the volume's ordering list */
    bool started;               /* legs issued */
    bool al;                    /* holds activity-log extents */
    bool parked;                /* waiting for a metadata flush */
    struct rv_req *ord_prev, *ord_next;
    struct rv_req *park_next;
};

struct rv_volume_opts {
    enum rv_cache_mode cache;
    bool readonly;
    uint32_t role;              /* RV_ROLE_*, or 0: keep what the metadata says */
    size_t max_request;         /* largest READ/WRITE accepted, bytes */
    size_t buffer_mem;          /* bytes preallocated for request buffers */
};

struct rv_volume_stats {
    uint64_t reads, writes, flushes, trims, zeroes;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;
    uint64_t inflight;
    uint64_t ordered_waits;     /* writes that waited for an overlapping one */
    uint64_t local_only_writes; /* writes acknowledged without the peer */
    uint64_t meta_flushes;      /* superblock/bitmap flushes (activity log, generations) */
    uint64_t al_waits;          /* writes that waited for an activity-log flush */
};

struct rv_volume {
    char path[4096];
    struct rv_meta meta;        /* decoded superblock */
    char uuid_str[40];          /* for log lines */
    uint64_t size;              /* bytes clients see */
    bool readonly;
    size_t max_request;
    struct rv_loop *loop;
    struct rv_backend *be;
    struct rv_bufpool pool;
    struct rv_volume_stats stats;
    char last_error[160];       /* the most recent failed request, for status */
    int meta_fd;                /* superblock I/O */
    uint64_t sb_offset;         /* where the superblock lives in the file */
    struct rv_peer *peer;       /* NULL: standalone */
    uint32_t role;              /* RV_ROLE_PRIMARY serves clients */

    /* Write-ish requests in flight or waiting, in arrival order: a request
     * starts only when no earlier one overlaps it (FLUSH: when every
     * earlier one is done), so both nodes apply overlapping writes in the
     * same order. */
    struct rv_req *ord_head, *ord_tail;

    /* What the peer may lack (bitmap.h); tracked while a peer is configured. */
    struct rv_bitmap bm;
    bool track;

    /* Metadata flushes (dirty bitmap pages, superblock): requests that need
     * one wait in `meta_wait` for a flush that starts after they parked;
     * `meta_flight` holds those the flush in flight will release. */
    bool ahead_durable;         /* metadata says we have writes the peer lacks */
    bool gen_bumped;            /* a new generation was started since the last in-sync point */
    bool meta_busy;
    bool meta_again;            /* flush again after this one, even with no waiter */
    struct rv_req *meta_wait_head, **meta_wait_tail;
    struct rv_req *meta_flight;
    uint8_t *sb_buf;            /* 4 KiB, aligned: the superblock being written */
    struct rv_op meta_sync_op;
    /* Callbacks of rv_volume_meta_commit: `next` run after the next flush
     * that starts, `flight` after the one in flight.  meta_seq_*: flushes
     * started / completed (tickets, see rv_volume_meta_commit). */
#define RV_META_CBS 8
    void (*meta_cb_next[RV_META_CBS])(struct rv_volume *v, int err);
    void (*meta_cb_flight[RV_META_CBS])(struct rv_volume *v, int err);
    unsigned meta_cb_nnext, meta_cb_nflight;
    uint64_t meta_seq_started, meta_seq_done;

    /* Fencing (peer_link.c runs the handler): while frozen, writes the peer
     * did not get are held, not acknowledged. */
    bool frozen;
    struct rv_req *frozen_head, **frozen_tail;
};

/* Open the image at path: read and check the metadata, open the backend,
 * preallocate buffers.  Logs the reason on failure.  Returns 0 or -errno. */
int rv_volume_open(struct rv_volume *v, struct rv_loop *loop, const char *path,
                   const struct rv_volume_opts *opts);

/* Start a request; req->done is always called later from the loop. */
void rv_volume_submit(struct rv_volume *v, struct rv_req *req);

/* The replication link finished with req: peer_result 0 means the peer has
 * it (as the mode promises), <0 that it does not (link lost, peer failed). */
void rv_volume_peer_done(struct rv_req *req, int peer_result);

/* The link is gone (or never was): from now on writes are local only. */
void rv_volume_peer_lost(struct rv_volume *v);

/* Hold / release acknowledgements of writes the peer did not get. */
void rv_volume_freeze(struct rv_volume *v);
void rv_volume_thaw(struct rv_volume *v);

/* Start tracking what the peer lacks (a peer is configured). */
void rv_volume_track(struct rv_volume *v);

/* Write the superblock (after changing v->meta) and dirty bitmap pages
 * through the ring; cb runs once they are durable (err 0) or failed: after
 * a flush that started after this call, never after one already in flight
 * (that one was encoded before the change).  Callbacks accumulate (each
 * function once per flush).  Returns the commit's ticket: the change is
 * durable once v->meta_seq_done >= ticket, which a callback shared by
 * several commits (an old connection's and a new one's) can check. */
uint64_t rv_volume_meta_commit(struct rv_volume *v, void (*cb)(struct rv_volume *v, int err));

/* Write the superblock now, synchronously, if no flush is in flight
 * (-EAGAIN otherwise: a flush in flight could land after it).  For the
 * rare command that must answer only once its change is durable. */
int rv_volume_meta_write_now(struct rv_volume *v);

/* The link came up with the two copies in sync. */
void rv_volume_peer_in_sync(struct rv_volume *v);

/* The peer may have adopted our current generation (a SYNC_DONE went out
 * and its answer did not come back): what we write from now on must be a
 * new generation, not more of the one the peer may also write to. */
void rv_volume_peer_maybe_adopted(struct rv_volume *v);

/* Allocation map (see rv_backend_ops.extents). */
int rv_volume_extents(struct rv_volume *v, uint64_t off, uint64_t len,
                      struct rv_extent *ext, unsigned max);

/* Flush the image and record a clean shutdown.  No request may be in
 * flight.  Returns 0 or -errno. */
int rv_volume_close(struct rv_volume *v);

#endif
