/* backend_file.c - the image-file backend ("loop-file"): every data I/O goes
 * through the caller's io_uring.
 *
 * Two descriptors on the same file: one opened with O_DIRECT for I/O whose
 * offset and length meet the file system's direct-I/O alignment (the common
 * case: 4 KiB-aligned requests into page-aligned pool buffers), and one
 * through the page cache for everything else.  Linux keeps the two coherent:
 * a direct I/O first writes back and invalidates cached pages in its range.
 * fdatasync on either descriptor covers the whole inode, so FLUSH needs only
 * one.
 *
 * Durability: a WRITE completes when the kernel has taken the data (device
 * for O_DIRECT, page cache otherwise).  A FUA write is issued with RWF_DSYNC,
 * so it completes only once it and the metadata needed to read it back are on
 * stable storage.  FLUSH is fdatasync. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include "repvol/backend.h"
#include "repvol/log.h"
#include "repvol/util.h"

#define ZERO_BUF_SIZE (1u << 20)

struct file_backend {
    struct rv_backend be;
    char path[4096];
    int fd;                     /* page-cache descriptor (always open) */
    int fd_direct;              /* O_DIRECT descriptor, or -1 */
    uint32_t dio_align;         /* offset/length alignment for fd_direct */
    void *zero_buf;             /* ZERO_BUF_SIZE zeroes, for WRITE_ZEROES without fallocate */
    bool punch_ok;              /* FALLOC_FL_PUNCH_HOLE works here (cleared on EOPNOTSUPP) */
    bool zero_range_ok;         /* FALLOC_FL_ZERO_RANGE works here (cleared on EOPNOTSUPP) */
    bool warned_direct;
};

static const char *const io_names[] = { "read", "write", "flush", "trim", "write-zeroes" };

const char *rv_io_type_name(unsigned type)
{
    return type < RV_ARRAY_SIZE(io_names) ? io_names[type] : "unknown";
}

const char *rv_cache_mode_name(enum rv_cache_mode m)
{
    return m == RV_CACHE_DIRECT ? "direct" : "buffered";
}

int rv_cache_mode_parse(const char *s, enum rv_cache_mode *out)
{
    if (!strcmp(s, "direct") || !strcmp(s, "none"))
        *out = RV_CACHE_DIRECT;
    else if (!strcmp(s, "buffered") || !strcmp(s, "writeback"))
        *out = RV_CACHE_BUFFERED;
    else
        return -EINVAL;
    return 0;
}

static void file_issue(struct file_backend *fb, struct rv_bio *bio);
static void bio_finish(struct rv_bio *bio, int result);

static void bio_finish(struct rv_bio *bio, int result)
{
    bio->result = result;
    bio->be->inflight--;
    bio->end_io(bio);
}

static void log_io_error(struct file_backend *fb, struct rv_bio *bio, int err)
{
    rv_err("volume %s: %s off=%" PRIu64 " len=%" PRIu32 " failed: %s",
           fb->path, rv_io_type_name(bio->type), bio->off, bio->len, strerror(-err));
}

/* Stages of TRIM/ZERO: fallocate (or zero-writing), then fdatasync if FUA. */
enum { STAGE_MAIN = 0, STAGE_WRITE_ZEROES, STAGE_SYNC };

static void file_complete(struct rv_op *op, int res)
{
    struct rv_bio *bio = RV_CONTAINER_OF(op, struct rv_bio, op);
    struct file_backend *fb = (struct file_backend *)bio->be;

    if (res == -EINTR || res == -EAGAIN) {          /* transient: try again */
        file_issue(fb, bio);
        return;
    }

    switch (bio->type) {
    case RV_IO_READ:
    case RV_IO_WRITE:
        if (res == -EINVAL && bio->direct) {
            /* The file system refused this O_DIRECT request (alignment it
             * did not report): do it, and the rest, through the cache. */
            if (!fb->warned_direct) {
                rv_warn("volume %s: O_DIRECT %s off=%" PRIu64 " len=%" PRIu32
                        " refused (EINVAL); using the page cache for such requests",
                        fb->path, rv_io_type_name(bio->type), bio->off, bio->len);
                fb->warned_direct = true;
            }
            fb->dio_align = UINT32_MAX;   /* never direct again */
            file_issue(fb, bio);
            return;
        }
        if (res < 0) {
            log_io_error(fb, bio, res);
            bio_finish(bio, res);
            return;
        }
        if (res == 0) {
            /* Nothing transferred although the range lies inside the file:
             * the image was truncated under us. */
            rv_err("volume %s: %s off=%" PRIu64 " hit end of file: image truncated?",
                   fb->path, rv_io_type_name(bio->type), bio->off + bio->done);
            bio_finish(bio, -EIO);
            return;
        }
        if (bio->type == RV_IO_READ)
            RV_MARK_DEFINED((uint8_t *)bio->buf + bio->done, (size_t)res);
        bio->done += (uint32_t)res;
        if (bio->done < bio->len) {                 /* short I/O: do the rest */
            file_issue(fb, bio);
            return;
        }
        bio_finish(bio, 0);
        return;

    case RV_IO_FLUSH:
        if (res < 0)
            log_io_error(fb, bio, res);
        bio_finish(bio, res < 0 ? res : 0);
        return;

    case RV_IO_TRIM:
    case RV_IO_ZERO:
        if (bio->stage == STAGE_MAIN) {
            if (res == -EOPNOTSUPP || res == -ENOTSUP) {
                /* Remember, and take the fallback path (file_issue decides). */
                if (bio->type == RV_IO_ZERO && (bio->flags & RV_IO_NO_HOLE))
                    fb->zero_range_ok = false;
                else
                    fb->punch_ok = false;
                file_issue(fb, bio);
                return;
            }
        } else if (bio->stage == STAGE_WRITE_ZEROES) {
            if (res > 0) {
                bio->done += (uint32_t)res;
                if (bio->done < bio->len) {
                    file_issue(fb, bio);
                    return;
                }
                res = 0;
            } else if (res == 0) {
                res = -EIO;
            }
        }
        if (res < 0) {
            log_io_error(fb, bio, res);
            bio_finish(bio, res);
            return;
        }
        if (bio->stage != STAGE_SYNC && (bio->flags & RV_IO_FUA)) {
            bio->stage = STAGE_SYNC;
            file_issue(fb, bio);
            return;
        }
        bio_finish(bio, 0);
        return;
    }
    bio_finish(bio, -EINVAL);
}

static bool can_direct(const struct file_backend *fb, const struct rv_bio *bio)
{
    if (fb->fd_direct < 0 || fb->dio_align == UINT32_MAX)
        return false;
    uint64_t a = fb->dio_align;
    return (bio->off + bio->done) % a == 0 && (bio->len - bio->done) % a == 0 &&
           ((uintptr_t)bio->buf + bio->done) % a == 0;
}

static void file_finish_deferred(struct rv_op *op, int res)
{
    bio_finish(RV_CONTAINER_OF(op, struct rv_bio, op), res);
}

/* Complete without a ring operation, on the loop's next turn. */
static void finish_later(struct rv_bio *bio, int res)
{
    bio->op.fn = file_finish_deferred;
    rv_loop_defer(bio->loop, &bio->op, res);
}

static void file_issue(struct file_backend *fb, struct rv_bio *bio)
{
    uint64_t off = bio->off + bio->done;
    uint32_t left = bio->len - bio->done;
    struct io_uring_sqe *sqe;

    switch (bio->type) {
    case RV_IO_READ:
    case RV_IO_WRITE: {
        bio->direct = can_direct(fb, bio);
        int fd = bio->direct ? fb->fd_direct : fb->fd;
        sqe = rv_loop_sqe(bio->loop, &bio->op);
        if (bio->type == RV_IO_READ) {
            io_uring_prep_read(sqe, fd, (uint8_t *)bio->buf + bio->done, left, off);
        } else {
            io_uring_prep_write(sqe, fd, (uint8_t *)bio->buf + bio->done, left, off);
            if (bio->flags & RV_IO_FUA)
                sqe->rw_flags = RWF_DSYNC;
        }
        return;
    }
    case RV_IO_FLUSH:
        sqe = rv_loop_sqe(bio->loop, &bio->op);
        io_uring_prep_fsync(sqe, fb->fd, IORING_FSYNC_DATASYNC);
        return;
    case RV_IO_TRIM:
    case RV_IO_ZERO: {
        bool no_hole = bio->type == RV_IO_ZERO && (bio->flags & RV_IO_NO_HOLE);
        if (bio->stage == STAGE_MAIN && !(no_hole ? fb->zero_range_ok : fb->punch_ok)) {
            /* The file system can't do it with fallocate. */
            if (bio->type == RV_IO_TRIM) {
                finish_later(bio, 0);               /* trim is only a hint */
                return;
            }
            if (bio->flags & RV_IO_FAST_ZERO) {
                finish_later(bio, -ENOTSUP);        /* the client asked us not to be slow */
                return;
            }
            bio->stage = STAGE_WRITE_ZEROES;
        }
        sqe = rv_loop_sqe(bio->loop, &bio->op);
        if (bio->stage == STAGE_SYNC) {
            io_uring_prep_fsync(sqe, fb->fd, IORING_FSYNC_DATASYNC);
        } else if (bio->stage == STAGE_WRITE_ZEROES) {
            io_uring_prep_write(sqe, fb->fd, fb->zero_buf, RV_MIN(left, ZERO_BUF_SIZE), off);
        } else {
            /* Punching reads back as zeroes and frees space; ZERO_RANGE
             * keeps the range allocated, as NBD_CMD_FLAG_NO_HOLE asks. */
            int mode = FALLOC_FL_KEEP_SIZE | (no_hole ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
            io_uring_prep_fallocate(sqe, fb->fd, mode, bio->off, bio->len);
        }
        return;
    }
    }
    finish_later(bio, -EINVAL);
}

static void file_submit(struct rv_backend *be, struct rv_loop *loop, struct rv_bio *bio)
{
    struct file_backend *fb = (struct file_backend *)be;
    bio->be = be;
    bio->loop = loop;
    bio->op.fn = file_complete;
    bio->done = 0;
    bio->stage = STAGE_MAIN;
    bio->result = 0;
    be->inflight++;
    file_issue(fb, bio);
}

static int file_extents(struct rv_backend *be, uint64_t off, uint64_t len,
                        struct rv_extent *ext, unsigned max)
{
    struct file_backend *fb = (struct file_backend *)be;
    uint64_t end = off + len > be->size ? be->size : off + len;
    unsigned n = 0;
    while (off < end && n < max) {
        off_t data = lseek(fb->fd, (off_t)off, SEEK_DATA);
        if (data < 0 && errno != ENXIO)
            return -errno;
        if (data < 0 || (uint64_t)data >= end)
            data = (off_t)end;                      /* hole up to the end */
        if ((uint64_t)data > off) {
            ext[n].off = off;
            ext[n].len = (uint64_t)data - off;
            ext[n].flags = RV_EXTENT_HOLE | RV_EXTENT_ZERO;
            n++;
            off = (uint64_t)data;
            continue;
        }
        off_t hole = lseek(fb->fd, (off_t)off, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        if ((uint64_t)hole > end)
            hole = (off_t)end;
        if ((uint64_t)hole <= off)
            hole = (off_t)end;                      /* shouldn't happen; avoid looping */
        ext[n].off = off;
        ext[n].len = (uint64_t)hole - off;
        ext[n].flags = 0;
        n++;
        off = (uint64_t)hole;
    }
    return (int)n;
}

static void file_close(struct rv_backend *be)
{
    struct file_backend *fb = (struct file_backend *)be;
    if (fb->fd_direct >= 0)
        close(fb->fd_direct);
    if (fb->fd >= 0)
        close(fb->fd);
    if (fb->zero_buf)
        munmap(fb->zero_buf, ZERO_BUF_SIZE);
    free(fb);
}

static const struct rv_backend_ops file_ops = {
    .name = "file",
    .submit = file_submit,
    .extents = file_extents,
    .close = file_close,
};

/* The direct-I/O alignment the file system asks for, or 4096 when it
 * doesn't say (every Linux file system accepts 4 KiB-aligned direct I/O). */
static uint32_t direct_alignment(int fd)
{
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        uint32_t a = RV_MAX(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
        return a ? a : 4096;
    }
#endif
    (void)fd;
    return 4096;
}

int rv_backend_file_open(struct rv_backend **out, const char *path, uint64_t data_size,
                         enum rv_cache_mode cache, bool readonly)
{
    struct file_backend *fb = calloc(1, sizeof *fb);
    if (!fb)
        return -ENOMEM;
    snprintf(fb->path, sizeof fb->path, "%s", path);
    fb->fd = fb->fd_direct = -1;
    fb->punch_ok = fb->zero_range_ok = true;
    fb->be.ops = &file_ops;
    fb->be.size = data_size;
    int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    fb->fd = open(path, flags);
    if (fb->fd < 0) {
        int e = -errno;
        rv_err("volume %s: open: %s", path, strerror(errno));
        free(fb);
        return e;
    }
    fb->zero_buf = mmap(NULL, ZERO_BUF_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (fb->zero_buf == MAP_FAILED) {
        fb->zero_buf = NULL;
        file_close(&fb->be);
        return -ENOMEM;
    }
    fb->be.cache = RV_CACHE_BUFFERED;
    if (cache == RV_CACHE_DIRECT) {
        fb->fd_direct = open(path, flags | O_DIRECT);
        if (fb->fd_direct < 0) {
            rv_warn("volume %s: O_DIRECT not available here (%s); using the page cache",
                    path, strerror(errno));
        } else {
            fb->dio_align = direct_alignment(fb->fd_direct);
            fb->be.cache = RV_CACHE_DIRECT;
        }
    }
    *out = &fb->be;
    return 0;
}
