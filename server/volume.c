/* volume.c - the volume engine (see include/repvol/volume.h).
 *
 * A request's life: check -> order (write-ish requests wait for earlier
 * overlapping ones) -> start: local leg to the backend, peer leg to the
 * replication link -> join -> (a write the peer lacks waits for the
 * metadata to say so) -> reply -> start whatever was waiting behind it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "repvol/log.h"
#include "repvol/util.h"
#include "repvol/volume.h"

static bool is_write_ish(uint8_t type)
{
    return type == RV_IO_WRITE || type == RV_IO_TRIM || type == RV_IO_ZERO;
}

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
    struct rv_meta_layout lay;
    r = rv_meta_layout(v->meta.data_size, v->meta.bm_granularity, &lay);
    if (r < 0)
        goto fail;
    v->sb_offset = lay.sb_offset;
    if (posix_memalign((void **)&v->sb_buf, 4096, RV_META_SB_SIZE) != 0) {
        r = -ENOMEM;
        goto fail;
    }
    if (opts->role)
        v->meta.role = opts->role;
    v->role = v->meta.role;
    /* A nonzero bitmap generation means the metadata already records
     * writes the peer lacks. */
    v->ahead_durable = v->meta.bitmap_gen != 0;

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
    rv_info("volume %s (%s): %s, %s, disk %s, cache=%s, %s of request buffers%s", v->meta.name,
            v->uuid_str, rv_format_size(v->size, sz, sizeof sz), rv_role_name(v->role),
            rv_disk_state_name(v->meta.disk_state), rv_cache_mode_name(v->be->cache),
            rv_format_size(v->pool.total_bytes, pool, sizeof pool), v->readonly ? ", read-only" : "");
    return 0;

fail:
    if (v->be)
        v->be->ops->close(v->be);
    v->be = NULL;
    free(v->sb_buf);
    v->sb_buf = NULL;
    close(v->meta_fd);
    v->meta_fd = -1;
    return r < 0 ? r : -EIO;
}

/* ------------------------------------------------------------ ordering */

static bool overlaps(const struct rv_req *a, const struct rv_req *b)
{
    return a->off < b->off + b->len && b->off < a->off + a->len;
}

/* May `req` start?  Not while an earlier write-ish request overlaps it; a
 * FLUSH not while anything earlier is still running. */
static bool may_start(const struct rv_req *req)
{
    for (const struct rv_req *e = req->ord_prev; e; e = e->ord_prev) {
        if (req->type == RV_IO_FLUSH) {
            if (e->type != RV_IO_FLUSH)
                return false;
        } else if (e->type != RV_IO_FLUSH && overlaps(e, req)) {
            return false;
        }
    }
    return true;
}

static void ord_remove(struct rv_volume *v, struct rv_req *req)
{
    if (req->ord_prev)
        req->ord_prev->ord_next = req->ord_next;
    else
        v->ord_head = req->ord_next;
    if (req->ord_next)
        req->ord_next->ord_prev = req->ord_prev;
    else
        v->ord_tail = req->ord_prev;
    req->ord_prev = req->ord_next = NULL;
    req->ordered = false;
}

static void req_start(struct rv_volume *v, struct rv_req *req);

static void ord_kick(struct rv_volume *v)
{
    for (struct rv_req *e = v->ord_head, *next; e; e = next) {
        next = e->ord_next;
        if (!e->started && may_start(e))
            req_start(v, e);
    }
}

/* ------------------------------------------------------------ completion */

static void req_complete(struct rv_req *req, int result)
{
    struct rv_volume *v = req->vol;
    req->result = result;
    v->stats.inflight--;
    if (result < 0)
        v->stats.errors++;
    req->done(req);
}

static void meta_update(struct rv_volume *v);

/* Both legs are done. */
static void req_join(struct rv_req *req)
{
    struct rv_volume *v = req->vol;
    int result = req->local.result;
    bool was_ordered = req->ordered;
    if (was_ordered)
        ord_remove(v, req);

    if (result == 0 && req->origin == RV_ORIGIN_CLIENT && is_write_ish(req->type) &&
        req->peer_result != 0) {
        /* Written here, not on the peer. */
        v->stats.local_only_writes++;
        if (!v->ahead_durable) {
            req->parked = true;
            req->ord_next = v->parked_head;
            v->parked_head = req;
            meta_update(v);
            if (was_ordered)
                ord_kick(v);
            return;
        }
    }
    req_complete(req, result);
    if (was_ordered)
        ord_kick(v);
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
    if (--req->pending == 0)
        req_join(req);
}

void rv_volume_peer_done(struct rv_req *req, int peer_result)
{
    req->peer_result = peer_result;
    if (--req->pending == 0)
        req_join(req);
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

/* ------------------------------------------------------------ submission */

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
    if (req->type != RV_IO_READ) {
        if (v->readonly)
            return -EPERM;
        /* Only the primary takes writes from clients; a secondary takes
         * them from its primary only. */
        if (req->origin == RV_ORIGIN_CLIENT && v->role != RV_ROLE_PRIMARY)
            return -EPERM;
        if (req->origin == RV_ORIGIN_PEER && v->role == RV_ROLE_PRIMARY)
            return -EPERM;
    }
    if (req->type != RV_IO_FLUSH &&
        (req->off > v->size || req->len > v->size - req->off))
        return -EINVAL;
    return 0;
}

static void req_start(struct rv_volume *v, struct rv_req *req)
{
    req->started = true;
    req->pending = 1;
    req->peer_result = -ENOTCONN;
    if (req->origin == RV_ORIGIN_CLIENT && req->type != RV_IO_READ && v->peer &&
        v->role == RV_ROLE_PRIMARY) {
        req->pending++;
        if (!rv_peer_submit(v->peer, req))
            req->pending--;
    }
    struct rv_bio *bio = &req->local;
    bio->type = req->type;
    bio->flags = req->flags;
    bio->off = req->off;
    bio->len = req->len;
    bio->buf = req->buf;
    bio->end_io = local_end_io;
    rv_backend_submit(v->be, v->loop, bio);
}

void rv_volume_submit(struct rv_volume *v, struct rv_req *req)
{
    req->vol = v;
    req->result = 0;
    req->started = req->parked = req->ordered = false;
    req->ord_prev = req->ord_next = NULL;
    memset(&req->peer, 0, sizeof req->peer);
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
    if (req->type == RV_IO_READ) {
        req_start(v, req);
        return;
    }
    req->ordered = true;
    req->ord_prev = v->ord_tail;
    if (v->ord_tail)
        v->ord_tail->ord_next = req;
    else
        v->ord_head = req;
    v->ord_tail = req;
    if (may_start(req))
        req_start(v, req);
    else
        v->stats.ordered_waits++;
}

/* ------------------------------------------------------------ metadata */

static void meta_done(struct rv_op *op, int res);

static void meta_write_done(struct rv_op *op, int res)
{
    struct rv_volume *v = RV_CONTAINER_OF(op, struct rv_volume, meta_op);
    if (res != RV_META_SB_SIZE)
        rv_err("volume %s: superblock write failed: %s", v->meta.name,
               res < 0 ? strerror(-res) : "short write");
}

/* Start writing the superblock (write + fdatasync through the ring).
 * Called when this node must durably record that it is ahead of its peer. */
static void meta_update(struct rv_volume *v)
{
    if (v->meta_busy) {
        v->meta_again = true;
        return;
    }
    if (!v->ahead_durable && v->meta.bitmap_gen == 0) {
        /* New data generation: the peer's copy (current_gen) becomes the
         * base our changes are relative to. */
        uint64_t g = 0;
        while (g == 0 || g == v->meta.current_gen)
            if (RAND_bytes((unsigned char *)&g, sizeof g) != 1)
                g = rv_now_ns();
        v->meta.history_gen[1] = v->meta.history_gen[0];
        v->meta.history_gen[0] = v->meta.current_gen;
        v->meta.bitmap_gen = v->meta.current_gen;
        v->meta.current_gen = g;
        rv_info("volume %s: writing without the peer: new data generation %016" PRIx64
                " (peer has %016" PRIx64 ")", v->meta.name, g, v->meta.bitmap_gen);
    }
    if (rv_meta_encode(&v->meta, v->sb_buf) < 0) {
        rv_err("volume %s: cannot encode metadata", v->meta.name);
        return;
    }
    v->meta_busy = true;
    v->meta_op.fn = meta_write_done;
    struct io_uring_sqe *sqe = rv_loop_sqe(v->loop, &v->meta_op);
    io_uring_prep_write(sqe, v->meta_fd, v->sb_buf, RV_META_SB_SIZE, v->sb_offset);
    sqe->flags |= IOSQE_IO_LINK;
    v->meta_sync_op.fn = meta_done;
    sqe = rv_loop_sqe(v->loop, &v->meta_sync_op);
    io_uring_prep_fsync(sqe, v->meta_fd, IORING_FSYNC_DATASYNC);
}

static void meta_done(struct rv_op *op, int res)
{
    struct rv_volume *v = RV_CONTAINER_OF(op, struct rv_volume, meta_sync_op);
    v->meta_busy = false;
    int err = res < 0 ? res : 0;
    if (err)
        rv_err("volume %s: metadata not durable (%s): failing the writes that depend on it",
               v->meta.name, strerror(-err));
    else
        v->ahead_durable = v->meta.bitmap_gen != 0;
    /* Release the writes that waited for this record. */
    struct rv_req *list = v->parked_head;
    v->parked_head = NULL;
    while (list) {
        struct rv_req *req = list;
        list = req->ord_next;
        req->ord_next = NULL;
        req->parked = false;
        req_complete(req, err ? -EIO : 0);
    }
    if (v->meta_again) {
        v->meta_again = false;
        meta_update(v);
    }
}

void rv_volume_peer_lost(struct rv_volume *v)
{
    /* Record it now rather than on the first local-only write: that write
     * then doesn't wait. */
    if (v->role == RV_ROLE_PRIMARY && !v->ahead_durable && !v->readonly)
        meta_update(v);
}

void rv_volume_peer_in_sync(struct rv_volume *v)
{
    v->ahead_durable = v->meta.bitmap_gen != 0;
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
    free(v->sb_buf);
    v->sb_buf = NULL;
    close(v->meta_fd);
    v->meta_fd = -1;
    return r;
}
