/* volume.c - the volume engine (see include/repvol/volume.h).
 *
 * Today a request has one leg, the local backend; the replication issue adds
 * one leg per peer link.  The shape stays: check, fan out, join, reply. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "repvol/log.h"
#include "repvol/util.h"
#include "repvol/volume.h"

int rv_volume_open(struct rv_volume *v, struct rv_loop *loop, const char *path,
                   const struct rv_volume_opts *opts)
{
    memset(v, 0, sizeof *v);
    v->meta_fd = -1;
    snprintf(v->path, sizeof v->path, "%s", path);
    v->loop = loop;
    v->readonly = opts->readonly;
    v->max_request = opts->max_request;

    v->meta_fd = open(path, (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (v->meta_fd < 0) {
        int e = -errno;
        rv_err("volume %s: cannot open: %s", path, strerror(errno));
        return e;
    }
    /* One daemon per image: two writers would corrupt it silently. */
    if (flock(v->meta_fd, (opts->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        int e = -errno;
        rv_err("volume %s: image is in use by another process (%s)", path,
               errno == EWOULDBLOCK ? "locked" : strerror(errno));
        close(v->meta_fd);
        v->meta_fd = -1;
        return e;
    }
    char why[RV_META_WHY_LEN] = "";
    int r = rv_meta_read_fd_ex(v->meta_fd, &v->meta, why, sizeof why);
    if (r < 0) {
        rv_err("volume %s: not a usable repvol image: %s%s%s", path, rv_meta_strerror(r),
               why[0] ? ": " : "", why);
        goto fail;
    }
    rv_uuid_format(v->meta.uuid, v->uuid_str);
    v->size = v->meta.data_size;

    if (!(v->meta.flags & RV_META_F_CLEAN))
        rv_warn("volume %s (%s): was not shut down cleanly", v->meta.name, v->uuid_str);
    if (!opts->readonly) {
        /* Mark the image in use, durably, before serving anything: a crash
         * from here on leaves it marked unclean. */
        v->meta.flags &= ~RV_META_F_CLEAN;
        v->meta.open_count++;
        r = rv_meta_write_fd(v->meta_fd, &v->meta);
        if (r < 0) {
            rv_err("volume %s: cannot update metadata: %s", path, rv_meta_strerror(r));
            goto fail;
        }
    }

    r = rv_backend_file_open(&v->be, path, v->size, opts->cache, opts->readonly);
    if (r < 0)
        goto fail;
    r = rv_bufpool_init(&v->pool, opts->max_request, opts->buffer_mem);
    if (r < 0)
        goto fail;
    char sz[32], pool[32];
    rv_info("volume %s (%s): %s, cache=%s, %s of request buffers%s", v->meta.name, v->uuid_str,
            rv_format_size(v->size, sz, sizeof sz), rv_cache_mode_name(v->be->cache),
            rv_format_size(v->pool.total_bytes, pool, sizeof pool),
            v->readonly ? ", read-only" : "");
    return 0;

fail:
    if (v->be)
        v->be->ops->close(v->be);
    v->be = NULL;
    close(v->meta_fd);
    v->meta_fd = -1;
    return r < 0 ? r : -EIO;
}

static void req_complete(struct rv_req *req, int result)
{
    struct rv_volume *v = req->vol;
    req->result = result;
    v->stats.inflight--;
    if (result < 0)
        v->stats.errors++;
    req->done(req);
}

static void local_end_io(struct rv_bio *bio)
{
    struct rv_req *req = RV_CONTAINER_OF(bio, struct rv_req, local);
    struct rv_volume *v = req->vol;
    if (bio->result == 0) {
        if (req->type == RV_IO_READ)
            v->stats.bytes_read += req->len;
        else if (req->type == RV_IO_WRITE)
            v->stats.bytes_written += req->len;
    }
    /* Single node: the local leg is the only one.  What is durable at this
     * point is stated in volume.h (WRITE: completed to the image file; FUA:
     * on stable storage via RWF_DSYNC; FLUSH: fdatasync done). */
    if (--req->pending == 0)
        req_complete(req, bio->result);
}

static void req_fail_deferred(struct rv_op *op, int res)
{
    struct rv_req *req = RV_CONTAINER_OF(op, struct rv_req, local.op);
    req_complete(req, res);
}

/* Finish a request without touching the backend, from the loop. */
static void req_finish_later(struct rv_req *req, int result)
{
    req->local.op.fn = req_fail_deferred;
    rv_loop_defer(req->vol->loop, &req->local.op, result);
}

static int req_check(const struct rv_volume *v, const struct rv_req *req)
{
    switch (req->type) {
    case RV_IO_READ:
    case RV_IO_WRITE:
        if (req->len > v->max_request)
            return -EOVERFLOW;
        break;
    case RV_IO_TRIM:
    case RV_IO_ZERO:
    case RV_IO_FLUSH:
        break;
    default:
        return -EINVAL;
    }
    if (req->type != RV_IO_READ && v->readonly)
        return -EPERM;
    if (req->type != RV_IO_FLUSH &&
        (req->off > v->size || req->len > v->size - req->off))
        return -EINVAL;
    return 0;
}

void rv_volume_submit(struct rv_volume *v, struct rv_req *req)
{
    req->vol = v;
    req->result = 0;
    req->start_ns = 0;
    v->stats.inflight++;
    switch (req->type) {
    case RV_IO_READ: v->stats.reads++; break;
    case RV_IO_WRITE: v->stats.writes++; break;
    case RV_IO_FLUSH: v->stats.flushes++; break;
    case RV_IO_TRIM: v->stats.trims++; break;
    case RV_IO_ZERO: v->stats.zeroes++; break;
    }
    int r = req_check(v, req);
    if (r < 0) {
        req_finish_later(req, r);
        return;
    }
    if (req->len == 0 && req->type != RV_IO_FLUSH) {
        req_finish_later(req, 0);
        return;
    }
    req->pending = 1;
    struct rv_bio *bio = &req->local;
    bio->type = req->type;
    bio->flags = req->flags;
    bio->off = req->off;
    bio->len = req->len;
    bio->buf = req->buf;
    bio->end_io = local_end_io;
    rv_backend_submit(v->be, v->loop, bio);
}

int rv_volume_extents(struct rv_volume *v, uint64_t off, uint64_t len,
                      struct rv_extent *ext, unsigned max)
{
    return v->be->ops->extents(v->be, off, len, ext, max);
}

int rv_volume_close(struct rv_volume *v)
{
    int r = 0;
    if (v->meta_fd < 0)
        return 0;
    if (!v->readonly) {
        /* Everything the clients wrote, then the clean mark: in that order,
         * so "clean" always means "the data region is complete". */
        if (fdatasync(v->meta_fd) < 0) {
            r = -errno;
            rv_err("volume %s: final flush failed: %s", v->path, strerror(errno));
        } else {
            v->meta.flags |= RV_META_F_CLEAN;
            r = rv_meta_write_fd(v->meta_fd, &v->meta);
            if (r < 0)
                rv_err("volume %s: cannot record clean shutdown: %s", v->path, rv_meta_strerror(r));
        }
    }
    if (v->be)
        v->be->ops->close(v->be);
    v->be = NULL;
    rv_bufpool_fini(&v->pool);
    close(v->meta_fd);
    v->meta_fd = -1;
    return r;
}
