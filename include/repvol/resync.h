/* resync.h - bringing the peer's copy up to date while the volume is in use.
 *
 * The sync source walks its dirty bitmap (bitmap.h) and, for each dirty
 * run (up to RV_RESYNC_CHUNK bytes), reads the data through the volume
 * engine as an RV_ORIGIN_RESYNC request - ordered like a write, so a client
 * write to that range waits until the chunk is on the wire and reaches the
 * peer after it (one TCP stream, applied in order) - and sends it as a
 * RESYNC_WRITE frame.  The target applies it with FUA and acknowledges; only
 * then does the source clear those bits (durably on the target first, as the
 * issue asks).  When no bit is left the source sends SYNC_DONE carrying its
 * data generation; the target adopts it, becomes UpToDate and answers; the
 * source then records that it is no longer ahead.  A link lost midway
 * leaves the remaining bits set (and the target Inconsistent): the next
 * connection resumes from there.
 *
 * A bytes-per-second limit keeps application I/O first; 0 means no limit
 * (still at most RV_RESYNC_INFLIGHT chunks at a time). */
#ifndef REPVOL_RESYNC_H
#define REPVOL_RESYNC_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/sockconn.h"
#include "repvol/strbuf.h"

#define RV_RESYNC_CHUNK    (256u * 1024)
#define RV_RESYNC_INFLIGHT 8

struct rv_volume;
struct rv_peer;
struct rv_resync;

/* Sending a frame and numbering it belong to the link. */
struct rv_resync_link {
    void *ctx;
    uint64_t (*next_seq)(void *ctx);
    /* false: the link is gone (the item's done() is not called) */
    bool (*send)(void *ctx, struct rv_sendq_item *it);
    /* Nothing of the resync is in flight any more (for a clean stop). */
    void (*idle)(void *ctx);
};

int rv_resync_create(struct rv_resync **out, struct rv_volume *v, const struct rv_resync_link *link,
                     uint64_t rate_limit);
void rv_resync_destroy(struct rv_resync *rs);

/* Become the sync source (full: everything allocated, else the bitmap). */
void rv_resync_start(struct rv_resync *rs, bool full);
/* The link is gone: stop starting chunks; those in flight end through
 * their callbacks.  `idle` tells when none is left. */
void rv_resync_abort(struct rv_resync *rs);
bool rv_resync_idle(const struct rv_resync *rs);
/* An ACK/NACK for seq: returns true if it was ours. */
bool rv_resync_answer(struct rv_resync *rs, uint64_t seq, int err);
bool rv_resync_active(const struct rv_resync *rs);

/* The target's side of progress, for status. */
void rv_resync_target_begin(struct rv_resync *rs);
void rv_resync_target_progress(struct rv_resync *rs, uint64_t bytes);
void rv_resync_target_end(struct rv_resync *rs);

void rv_resync_status(const struct rv_resync *rs, bool json, struct rv_strbuf *out);
/* "sync STATE PERCENT LEFT TOTAL RATE ETA\n" */
void rv_resync_progress(const struct rv_resync *rs, struct rv_strbuf *out);

#endif
