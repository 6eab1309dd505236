/* backend.h - where a volume's bytes live: the table of operations a backend
 * provides.  The one backend today is the image file driven through io_uring
 * (server/backend_file.c).
 *
 * A backend I/O is a struct rv_bio.  The caller fills type, flags, off, len,
 * buf and end_io, then calls ops->submit.  end_io is called exactly once, from
 * the event loop (never inline from submit), with bio->result set to 0 or a
 * negative errno.  Short reads and writes are finished by the backend, not
 * reported: a bio either did all of its bytes or failed. */
#ifndef REPVOL_BACKEND_H
#define REPVOL_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/loop.h"

enum rv_io_type {
    RV_IO_READ = 0,
    RV_IO_WRITE,
    RV_IO_FLUSH,        /* make every completed write durable */
    RV_IO_TRIM,         /* discard: the range may read back as anything (we punch a hole: zeroes) */
    RV_IO_ZERO,         /* the range must read back as zeroes */
};

/* bio / request flags */
#define RV_IO_FUA        0x01   /* write/zero/trim: durable on stable storage before completion */
#define RV_IO_NO_HOLE    0x02   /* zero: keep the range allocated (don't punch) */
#define RV_IO_FAST_ZERO  0x04   /* zero: fail with -ENOTSUP rather than write zeroes slowly */

const char *rv_io_type_name(unsigned type);

struct rv_backend;

struct rv_bio {
    struct rv_op op;            /* backend-private: the ring operation */
    uint8_t type;               /* enum rv_io_type */
    uint8_t flags;              /* RV_IO_* */
    uint64_t off;
    uint32_t len;
    void *buf;                  /* READ/WRITE: len bytes, from the buffer pool (page aligned) */
    void (*end_io)(struct rv_bio *bio);
    int result;                 /* 0 or -errno once complete */
    /* backend-private progress state */
    uint32_t done;              /* bytes finished so far (short I/O is resubmitted) */
    uint8_t direct;             /* issued on the O_DIRECT descriptor */
    uint8_t stage;              /* multi-step operations (fallocate, then fdatasync for FUA) */
    struct rv_backend *be;
    struct rv_loop *loop;
};

/* One extent of the allocation map. */
struct rv_extent {
    uint64_t off;
    uint64_t len;
    uint32_t flags;             /* RV_EXTENT_* */
};
#define RV_EXTENT_HOLE 0x1      /* not allocated */
#define RV_EXTENT_ZERO 0x2      /* reads as zeroes */

enum rv_cache_mode {
    RV_CACHE_DIRECT = 0,        /* O_DIRECT for aligned I/O, page cache for the rest (default) */
    RV_CACHE_BUFFERED,          /* everything through the page cache */
};
const char *rv_cache_mode_name(enum rv_cache_mode m);
int rv_cache_mode_parse(const char *s, enum rv_cache_mode *out);

struct rv_backend_ops {
    const char *name;
    /* Required.  Start one I/O on `loop`'s ring; completion via bio->end_io. */
    void (*submit)(struct rv_backend *be, struct rv_loop *loop, struct rv_bio *bio);
    /* Required.  Allocation map of [off, off+len) in at most max extents
     * (the last one may be cut short).  Synchronous and cheap (lseek).  Returns
     * the number of extents or -errno. */
    int (*extents)(struct rv_backend *be, uint64_t off, uint64_t len,
                   struct rv_extent *ext, unsigned max);
    /* Required.  Close descriptors; no I/O may be in flight. */
    void (*close)(struct rv_backend *be);
};

struct rv_backend {
    const struct rv_backend_ops *ops;
    uint64_t size;              /* bytes in the data region: valid offsets are [0, size) */
    enum rv_cache_mode cache;   /* the mode actually in use (direct may fall back) */
    uint64_t inflight;
};

/* Open the data region [0, data_size) of the image file at path.  With
 * RV_CACHE_DIRECT, falls back to buffered (and logs why) where the file
 * system refuses O_DIRECT. */
int rv_backend_file_open(struct rv_backend **out, const char *path, uint64_t data_size,
                         enum rv_cache_mode cache, bool readonly);

static inline void rv_backend_submit(struct rv_backend *be, struct rv_loop *loop, struct rv_bio *bio)
{
    be->ops->submit(be, loop, bio);
}

#endif
