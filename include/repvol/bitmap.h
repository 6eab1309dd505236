/* bitmap.h - the dirty bitmap and the activity log: what the peer may lack.
 *
 * One bit per granule (meta.bm_granularity bytes of data, 4 KiB by
 * default) in the bitmap area of the image (meta_format.h).  On disk the
 * bitmap is a plain byte array: granule i is bit (i & 7) of byte (i >> 3),
 * least significant bit first, so it has no endianness.
 *
 * Two views are kept:
 *   mem   exact: granules written here that the peer does not have (a write
 *         made while disconnected, or whose replication failed).  This is
 *         what a resync moves.
 *   disk  what the image says: mem as of the last flush, plus every granule
 *         of every "hot" activity-log extent.
 * Why an activity log (DRBD's idea) rather than a durable bit per write: a
 * write that reached this disk but not the peer's when this node crashes
 * must be found again after the crash, so its region has to be recorded
 * durably BEFORE the write is issued.  Doing that per write would put a
 * metadata flush in front of every first write to each 4 KiB granule.  The
 * activity log records whole extents (4 MiB) instead, keeps up to
 * RV_AL_EXTENTS of them "hot", and only a write to a cold extent waits for
 * one bitmap page write + fdatasync (shared by every write waiting at that
 * moment).  After a crash the disk view (mem + hot extents) is taken as
 * dirty: a little more is resynced than strictly needed, nothing is missed.
 * After a clean shutdown the exact mem view is on disk.
 */
#ifndef REPVOL_BITMAP_H
#define REPVOL_BITMAP_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/loop.h"

#define RV_AL_EXTENT_SHIFT 22           /* 4 MiB activity-log extents */
#define RV_AL_EXTENTS      1237         /* hot extents kept (~4.8 GiB), as DRBD's default */

struct rv_bitmap {
    uint64_t nbits;
    uint32_t gran_shift;                /* log2(granularity) */
    uint64_t nbytes;                    /* bytes of the on-disk area */
    uint8_t *mem;                       /* exact view */
    uint8_t *disk;                      /* what the image should say (page aligned) */
    uint8_t *page_dirty;                /* per 4 KiB page of `disk`: needs writing */
    uint64_t dirty_pages;
    uint64_t set_bits;                  /* bits set in mem */
    /* activity log */
    uint64_t nextents;
    uint32_t *ext_inflight;             /* writes in flight per extent */
    uint32_t *ext_lru;                  /* hot extents, ring in use order; UINT32_MAX = free */
    uint8_t *ext_hot;
    uint32_t hot_count;
    uint64_t al_transactions;           /* extents made hot (statistics) */
};

/* Load the bitmap area of the image (fd, offset, length) for data_size
 * bytes at granularity.  clean: the last shutdown was clean (mem = disk);
 * otherwise hot extents are gone but were recorded in `disk`, which is what
 * mem starts from.  0 or -errno. */
int rv_bitmap_load(struct rv_bitmap *bm, int fd, uint64_t area_off, uint64_t area_len,
                   uint64_t data_size, uint32_t granularity);
void rv_bitmap_free(struct rv_bitmap *bm);

/* Granules [first, last] covering the byte range. */
static inline uint64_t rv_bitmap_first(const struct rv_bitmap *bm, uint64_t off)
{
    return off >> bm->gran_shift;
}
static inline uint64_t rv_bitmap_last(const struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    return (off + len - 1) >> bm->gran_shift;
}
static inline bool rv_bitmap_test(const struct rv_bitmap *bm, uint64_t bit)
{
    return (bm->mem[bit >> 3] >> (bit & 7)) & 1;
}

/* Exact view: the peer lacks [off, off+len). */
void rv_bitmap_mark(struct rv_bitmap *bm, uint64_t off, uint64_t len);
/* The peer has [off, off+len) now (durably): clear, except where a hot
 * extent keeps the disk view set. */
void rv_bitmap_clear(struct rv_bitmap *bm, uint64_t off, uint64_t len);
/* Everything the peer may lack: every allocated region (full sync). */
void rv_bitmap_mark_all(struct rv_bitmap *bm);
void rv_bitmap_clear_all(struct rv_bitmap *bm);

/* Activity log: a write to [off, off+len) is about to be issued.  Returns
 * true when the covering extents were already hot (nothing to wait for),
 * false when they were made hot now and a flush must complete first. */
bool rv_bitmap_al_begin(struct rv_bitmap *bm, uint64_t off, uint64_t len);
void rv_bitmap_al_end(struct rv_bitmap *bm, uint64_t off, uint64_t len);
/* One more reference on the (hot) extents of [off, off+len), released by
 * rv_bitmap_al_end: mode A keeps a write's extents hot until the peer
 * acknowledges its frame. */
void rv_bitmap_al_hold(struct rv_bitmap *bm, uint64_t off, uint64_t len);

/* First set bit at or after `from` (nbits if none), and the end of its run. */
uint64_t rv_bitmap_next_set(const struct rv_bitmap *bm, uint64_t from);
uint64_t rv_bitmap_run_end(const struct rv_bitmap *bm, uint64_t from, uint64_t max_bits);

/* Make the disk view exact (drop hot extents): for a clean shutdown. */
void rv_bitmap_settle(struct rv_bitmap *bm);

/* Queue a write of every dirty page of the disk view on the ring, each
 * linked (IOSQE_IO_LINK) to the next SQE: the caller queues the final
 * fdatasync right after, and its completion reports the whole chain.
 * Returns the number of SQEs queued. */
unsigned rv_bitmap_queue_writes(struct rv_bitmap *bm, struct rv_loop *loop, int fd,
                                uint64_t area_off);
/* Synchronous variant for start-up and shutdown.  0 or -errno. */
int rv_bitmap_write_sync(struct rv_bitmap *bm, int fd, uint64_t area_off);

#endif
