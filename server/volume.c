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
    v->meta_wait_tail = &v->meta_wait_head;
    v->frozen_tail = &v->frozen_head;
    r = rv_bitmap_load(&v->bm, v->meta_fd, v->meta.bm_offset, v->meta.bm_length, v->meta.data_size,
                       v->meta.bm_granularity);
    if (r < 0) {
        rv_err("volume %s: cannot read the dirty bitmap: %s", path, strerror(-r));
        goto fail;
    }
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
        /* The bitmap area of a sparse image may be a hole: allocate it now,
         * or the first bitmap write on a full file system fails (ENOSPC)
         * and every write that needs the bitmap fails with it. */
        if (fallocate(v->meta_fd, 0, (off_t)v->meta.bm_offset,
                      (off_t)(v->sb_offset + RV_META_SB_SIZE - v->meta.bm_offset)) < 0 &&
            errno != EOPNOTSUPP)
            rv_warn("volume %s: cannot allocate the metadata area (%s): bitmap updates may fail "
                    "when the file system is full", path, strerror(errno));
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
    rv_bitmap_free(&v->bm);
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
        if (!e->started && !e->parked && may_start(e))
            req_start(v, e);
    }
}

/* ------------------------------------------------------------ completion */

static void req_complete(struct rv_req *req, int result)
{
    struct rv_volume *v = req->vol;
    req->result = result;
    v->stats.inflight--;
    if (result < 0) {
        v->stats.errors++;
        /* Bounds and role refusals are the client's business; failures of
         * the image (ENOSPC, EIO) are the operator's: status shows them. */
        if (req->local.result < 0 || (result == -EIO && !v->last_error[0]))
            snprintf(v->last_error, sizeof v->last_error, "%s off=%" PRIu64 " len=%" PRIu32 ": %s",
                     rv_io_type_name(req->type), req->off, req->len, strerror(-result));
        /* else (EIO though the image took the data): the metadata could
         * not be made durable, and meta_flush_done already said so. */
    }
    req->done(req);
}

static void meta_park(struct rv_volume *v, struct rv_req *req);

/* Both legs are done. */
static void req_join(struct rv_req *req)
{
    struct rv_volume *v = req->vol;
    int result = req->local.result;
    bool was_ordered = req->ordered;
    if (req->al) {
        rv_bitmap_al_end(&v->bm, req->off, req->len);
        req->al = false;
    }
    if (was_ordered)
        ord_remove(v, req);

    if (req->origin == RV_ORIGIN_CLIENT && is_write_ish(req->type) && req->peer_result == 0 && result < 0 &&
        v->role == RV_ROLE_PRIMARY && v->track && v->peer && rv_peer_connected(v->peer)) {
        /* This node failed the write (disk full, I/O error) after the peer
         * stored it: the copies now differ in this range, and both would
         * still call themselves in sync.  Record the range and drop the
         * link: the new data generation makes this node the resync source
         * when the link is back, and the peer gets this node's version. */
        rv_bitmap_mark(&v->bm, req->off, req->len);
        char why[160];
        snprintf(why, sizeof why, "this node failed a write the peer stored (%s): resyncing that range from here",
                 strerror(-result));
        rv_peer_drop(v->peer, why);
    }
    if (req->origin == RV_ORIGIN_CLIENT && is_write_ish(req->type) && req->peer_result != 0 &&
        v->role == RV_ROLE_PRIMARY) {
        /* Written here (or maybe: a failed write may have changed some
         * blocks), not on the peer: the peer lacks this range. */
        if (v->track)
            rv_bitmap_mark(&v->bm, req->off, req->len);
        if (result == 0)
            v->stats.local_only_writes++;
        if (!v->frozen && v->peer)
            rv_peer_fence_local_write(v->peer);
        if (v->frozen) {
            /* The fence-peer handler hasn't said the peer is out of the
             * way: acknowledging now could lose this write in a failover. */
            req->parked = true;
            req->park_next = NULL;
            *v->frozen_tail = req;
            v->frozen_tail = &req->park_next;
            if (was_ordered)
                ord_kick(v);
            return;
        }
        if (!v->ahead_durable) {
            meta_park(v, req);
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

/* A client write the peer will not get (no link, or the link failed its
 * leg): record that at once, not when the local leg completes.  A handshake
 * or a resync's SYNC_DONE in between must see the bit, or it declares the
 * copies equal while this write lands only here (model finding 4). */
static void mark_peer_lacks(struct rv_volume *v, struct rv_req *req)
{
    if (v->track && req->origin == RV_ORIGIN_CLIENT && is_write_ish(req->type) &&
        v->role == RV_ROLE_PRIMARY)
        rv_bitmap_mark(&v->bm, req->off, req->len);
}

void rv_volume_peer_done(struct rv_req *req, int peer_result)
{
    req->peer_result = peer_result;
    if (peer_result != 0 && req->pending > 1)
        mark_peer_lacks(req->vol, req);
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

/* Issue the legs: the peer's (a primary replicating a client write) and
 * the local one. */
static void req_issue(struct rv_volume *v, struct rv_req *req)
{
    req->started = true;
    req->pending = 1;
    req->peer_result = -ENOTCONN;
    if (req->origin == RV_ORIGIN_CLIENT && req->type != RV_IO_READ && v->peer &&
        v->role == RV_ROLE_PRIMARY) {
        req->pending++;
        if (!rv_peer_submit(v->peer, req)) {
            req->pending--;
            mark_peer_lacks(v, req);
        }
    } else if (req->origin == RV_ORIGIN_CLIENT && req->type != RV_IO_READ) {
        mark_peer_lacks(v, req);
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

/* The ordering list lets req go.  A primary's write first needs its
 * activity-log extents on disk (bitmap.h explains why). */
static void req_start(struct rv_volume *v, struct rv_req *req)
{
    req->started = true;    /* no longer waiting for the ordering list */
    if (v->track && req->origin == RV_ORIGIN_CLIENT && is_write_ish(req->type) &&
        v->role == RV_ROLE_PRIMARY) {
        req->al = true;
        if (!rv_bitmap_al_begin(&v->bm, req->off, req->len)) {
            v->stats.al_waits++;
            req->started = false;
            meta_park(v, req);
            return;
        }
    }
    req_issue(v, req);
}

void rv_volume_submit(struct rv_volume *v, struct rv_req *req)
{
    req->vol = v;
    req->result = 0;
    req->local.result = 0;
    req->started = req->parked = req->ordered = req->al = false;
    req->ord_prev = req->ord_next = req->park_next = NULL;
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
    /* A client's read needs no ordering; a read for resync or verify (here,
     * or the peer's DIGEST_REQ) must see the range as it is between writes. */
    if (req->type == RV_IO_READ && req->origin == RV_ORIGIN_CLIENT) {
        req_issue(v, req);
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

static void meta_flush_start(struct rv_volume *v);

/* Wait for a metadata flush that starts after now. */
static void meta_park(struct rv_volume *v, struct rv_req *req)
{
    req->parked = true;
    req->park_next = NULL;
    *v->meta_wait_tail = req;
    v->meta_wait_tail = &req->park_next;
    if (!v->meta_busy)
        meta_flush_start(v);
}

/* A parked request goes on: an activity-log wait is issued, a finished
 * write is answered. */
static void meta_resume(struct rv_volume *v, struct rv_req *req, int err)
{
    req->parked = false;
    if (req->started) {
        req_complete(req, err ? -EIO : req->local.result);
        return;
    }
    if (err) {
        if (req->al) {
            rv_bitmap_al_end(&v->bm, req->off, req->len);
            req->al = false;
        }
        if (req->ordered)
            ord_remove(v, req);
        req_complete(req, -EIO);
        ord_kick(v);
        return;
    }
    req_issue(v, req);
}

static void meta_flush_done(struct rv_op *op, int res);

/* Write the dirty bitmap pages and the superblock, then fdatasync, as one
 * linked chain on the ring. */
static void meta_flush_start(struct rv_volume *v)
{
    if (v->role == RV_ROLE_PRIMARY && !(v->peer && rv_peer_connected(v->peer)) && !v->ahead_durable &&
        v->meta.bitmap_gen == 0 && !v->gen_bumped && !v->readonly) {
        /* Writing without the peer: a new data generation, with the peer's
         * copy (our current one) as the base our changes are relative to. */
        uint64_t g = 0;
        while (g == 0 || g == v->meta.current_gen)
            if (RAND_bytes((unsigned char *)&g, sizeof g) != 1)
                g = rv_now_ns();
        v->meta.history_gen[1] = v->meta.history_gen[0];
        v->meta.history_gen[0] = v->meta.current_gen;
        v->meta.bitmap_gen = v->meta.current_gen;
        v->meta.current_gen = g;
        v->gen_bumped = true;
        rv_info("volume %s: writing without the peer: new data generation %016" PRIx64
                " (peer has %016" PRIx64 ")", v->meta.name, g, v->meta.bitmap_gen);
    }
    if (rv_meta_encode(&v->meta, v->sb_buf) < 0) {
        rv_err("volume %s: cannot encode metadata", v->meta.name);
        return;
    }
    v->meta_busy = true;
    v->stats.meta_flushes++;
    v->meta_seq_started++;
    /* The callbacks of the commits this flush carries. */
    memcpy(v->meta_cb_flight, v->meta_cb_next, sizeof v->meta_cb_flight);
    v->meta_cb_nflight = v->meta_cb_nnext;
    v->meta_cb_nnext = 0;
    v->meta_flight = v->meta_wait_head;
    v->meta_wait_head = NULL;
    v->meta_wait_tail = &v->meta_wait_head;
    rv_bitmap_queue_writes(&v->bm, v->loop, v->meta_fd, v->meta.bm_offset);
    struct io_uring_sqe *sqe = rv_loop_sqe(v->loop, NULL);
    io_uring_prep_write(sqe, v->meta_fd, v->sb_buf, RV_META_SB_SIZE, v->sb_offset);
    sqe->flags |= IOSQE_IO_LINK;
    v->meta_sync_op.fn = meta_flush_done;
    sqe = rv_loop_sqe(v->loop, &v->meta_sync_op);
    io_uring_prep_fsync(sqe, v->meta_fd, IORING_FSYNC_DATASYNC);
}

static void meta_flush_done(struct rv_op *op, int res)
{
    struct rv_volume *v = RV_CONTAINER_OF(op, struct rv_volume, meta_sync_op);
    v->meta_busy = false;
    /* A failed link in the chain cancels the rest: the fsync reports it. */
    int err = res < 0 ? res : 0;
    if (err) {
        rv_err("volume %s: metadata not durable (%s): failing the requests that depend on it",
               v->meta.name, strerror(-err));
        snprintf(v->last_error, sizeof v->last_error, "metadata (bitmap, superblock) not durable: %s",
                 strerror(-err));
    }
    else
        /* (An empty mirror's base generation is 0: the bump itself counts.) */
        v->ahead_durable = v->meta.bitmap_gen != 0 || v->gen_bumped;
    if (!err)
        v->meta_seq_done = v->meta_seq_started;
    struct rv_req *list = v->meta_flight;
    v->meta_flight = NULL;
    void (*cbs[RV_META_CBS])(struct rv_volume *, int);
    unsigned ncb = v->meta_cb_nflight;
    memcpy(cbs, v->meta_cb_flight, sizeof cbs);
    v->meta_cb_nflight = 0;
    while (list) {
        struct rv_req *req = list;
        list = req->park_next;
        req->park_next = NULL;
        meta_resume(v, req, err);
    }
    for (unsigned i = 0; i < ncb; i++)
        cbs[i](v, err);
    if (v->meta_wait_head || v->meta_again) {
        v->meta_again = false;
        meta_flush_start(v);
    }
}

uint64_t rv_volume_meta_commit(struct rv_volume *v, void (*cb)(struct rv_volume *v, int err))
{
    /* Model finding 6: the callback used to replace any pending one and
     * ran after the flush in flight, which does not carry this change. */
    if (cb) {
        bool have = false;
        for (unsigned i = 0; i < v->meta_cb_nnext; i++)
            have |= v->meta_cb_next[i] == cb;
        if (!have) {
            if (v->meta_cb_nnext == RV_META_CBS) {
                rv_err("volume %s: too many metadata callbacks pending", v->meta.name);
                abort();        /* a fixed set of callers: cannot happen */
            }
            v->meta_cb_next[v->meta_cb_nnext++] = cb;
        }
    }
    if (v->meta_busy) {
        v->meta_again = true;
        return v->meta_seq_started + 1;
    }
    meta_flush_start(v);
    return v->meta_seq_started;
}

int rv_volume_meta_write_now(struct rv_volume *v)
{
    if (v->meta_busy)
        return -EAGAIN;
    if (v->readonly)
        return -EROFS;
    _Alignas(4096) static uint8_t buf[RV_META_SB_SIZE];    /* the loop thread only */
    int r = rv_meta_encode(&v->meta, buf);
    if (r < 0)
        return -EINVAL;
    for (size_t done = 0; done < sizeof buf;) {
        ssize_t n = pwrite(v->meta_fd, buf + done, sizeof buf - done, (off_t)(v->sb_offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return fdatasync(v->meta_fd) < 0 ? -errno : 0;
}

void rv_volume_peer_lost(struct rv_volume *v)
{
    /* Record it now rather than on the first local-only write: that write
     * then doesn't wait. */
    if (v->role == RV_ROLE_PRIMARY && !v->ahead_durable && !v->readonly) {
        if (v->meta_busy)
            v->meta_again = true;
        else
            meta_flush_start(v);
    }
}

void rv_volume_peer_in_sync(struct rv_volume *v)
{
    v->gen_bumped = false;
    v->ahead_durable = v->meta.bitmap_gen != 0;
}

void rv_volume_peer_maybe_adopted(struct rv_volume *v)
{
    /* bitmap_gen 0 and nothing bumped: the next flush of a primary without
     * its peer starts a new generation based on the current one, which is
     * what the peer has if it did adopt it (model finding 9).  The bits
     * stay: relative to the new base they are a superset. */
    v->meta.bitmap_gen = 0;
    v->gen_bumped = false;
    v->ahead_durable = false;
    if (!v->readonly)
        rv_volume_meta_commit(v, NULL);
}

void rv_volume_freeze(struct rv_volume *v)
{
    if (!v->frozen_tail)
        v->frozen_tail = &v->frozen_head;
    v->frozen = true;
}

void rv_volume_thaw(struct rv_volume *v)
{
    v->frozen = false;
    struct rv_req *list = v->frozen_head;
    v->frozen_head = NULL;
    v->frozen_tail = &v->frozen_head;
    while (list) {
        struct rv_req *req = list;
        list = req->park_next;
        /* On to the "ahead of the peer" record, then the answer. */
        if (v->ahead_durable)
            req_complete(req, req->local.result);
        else
            meta_park(v, req);
    }
}

void rv_volume_track(struct rv_volume *v)
{
    v->track = true;
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
            /* The exact dirty bitmap replaces the activity-log view. */
            rv_bitmap_settle(&v->bm);
            r = rv_bitmap_write_sync(&v->bm, v->meta_fd, v->meta.bm_offset);
            if (r < 0)
                rv_err("volume %s: cannot write the dirty bitmap: %s", v->path, strerror(-r));
            v->meta.flags |= RV_META_F_CLEAN;
            if (r == 0)
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
    rv_bitmap_free(&v->bm);
    close(v->meta_fd);
    v->meta_fd = -1;
    return r;
}
