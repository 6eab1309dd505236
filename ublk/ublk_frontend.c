/* ublk_frontend.c - the volume as /dev/ublkbN (see include/repvol/ublk.h).
 *
 * Threads and rings
 *   - the daemon's event loop (loop.c): one thread, one ring, runs the volume
 *     engine.  Every request of every frontend is submitted and completed
 *     there.
 *   - one queue thread per ublk hardware queue, each with its own ring: the
 *     kernel requires the FETCH_REQ / COMMIT_AND_FETCH_REQ commands of a
 *     queue to come from one task, and it copies request data to and from the
 *     tag buffers in that task's context.
 *   - a short-lived control thread for the two blocking control steps:
 *     START_DEV (or END_USER_RECOVERY), which waits for every queue to fetch
 *     and then scans partitions - I/O that needs the event loop running - and
 *     STOP_DEV + DEL_DEV, which wait for requests in flight.  The event loop
 *     itself never blocks on the control device.
 *
 * Handing requests across: IORING_OP_MSG_RING.
 *   A queue thread that gets a request decodes it into the tag's rv_req and
 *   posts a completion carrying &tag->submit_op into the event loop's ring
 *   (MSG_RING with user_data = that rv_op).  The loop dispatches it like any
 *   completion: the callback calls rv_volume_submit().  When the engine is
 *   done, the loop posts a completion into the queue's ring the same way
 *   (user_data = tag | MSG_COMMIT, res = the result), and the queue thread
 *   issues COMMIT_AND_FETCH_REQ.
 *   Why MSG_RING rather than an eventfd and a shared ring buffer: nothing is
 *   allocated or locked in user space, no wake-up protocol to get right (the
 *   kernel wakes the target ring's waiter, including a DEFER_TASKRUN loop),
 *   ordering comes with the completion queue's release/acquire, and every
 *   hand-off is one SQE in a submission that was happening anyway.  Each tag
 *   is owned by exactly one side at a time (queue thread until the MSG_RING
 *   to the loop, loop until the MSG_RING back), so the tag state needs no
 *   lock.  Failure of a MSG_RING (the only CQE it produces: the SQEs carry
 *   IOSQE_CQE_SKIP_SUCCESS) fails that request with -EIO.
 *
 * Memory: per-tag buffers (queue_depth x max_io per queue) and all tag
 * state are allocated at creation; the I/O path allocates nothing.
 *
 * Durability when a WRITE is committed (the kernel completes the bio): the
 * engine has finished it - written into the image file (page cache or
 * device) and, in replication mode C, on the peer as well.  It is stable
 * only after a FLUSH, which the kernel sends because the device advertises
 * a volatile write cache (UBLK_ATTR_VOLATILE_CACHE): REQ_OP_FLUSH maps to
 * the engine's FLUSH (fdatasync, on the peer too), REQ_FUA to RV_IO_FUA
 * (RWF_DSYNC).  See volume.h for the full table.
 *
 * Crash recovery (UBLK_F_USER_RECOVERY | _REISSUE): if the daemon dies the
 * kernel keeps /dev/ublkbN, quiesces it and requeues requests in flight.
 * A new daemon for the same volume finds the device by the mark it left in
 * ublksrv_flags (the volume UUID), and runs START_USER_RECOVERY, fetches
 * on every queue, END_USER_RECOVERY: the requeued requests are reissued to
 * it and the file system on the device sees a pause.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "repvol/frontend.h"
#include "repvol/log.h"
#include "repvol/ublk.h"
#include "repvol/util.h"

/* Queue-ring user_data: kind in the top byte, tag in the low 16 bits. */
#define UD_KIND_SHIFT   56
#define UD_FETCH        (1ULL << UD_KIND_SHIFT)   /* FETCH / COMMIT_AND_FETCH completion */
#define UD_COMMIT       (2ULL << UD_KIND_SHIFT)   /* from the loop: commit res for tag */
#define UD_FWD_FAILED   (3ULL << UD_KIND_SHIFT)   /* our MSG_RING to the loop failed */
#define UD_STOP         (4ULL << UD_KIND_SHIFT)   /* from the control thread: exit */
#define UD_KIND(ud)     ((ud) & (0xffULL << UD_KIND_SHIFT))
#define UD_TAG(ud)      ((unsigned)((ud) & 0xffff))

#define STOP_JOIN_SECS  10       /* queues must exit this long after STOP_DEV */
#define START_WAIT_SECS 60       /* START_DEV / END_USER_RECOVERY wait for every queue's fetches */
/* A dead daemon's device must be quiesced by then: normally at once; if a
 * queue had every tag in the dead daemon's hands (see keep_a_tag_free), only
 * when the kernel's 30 s request timeout fires. */
#define RECOVER_WAIT_MS 45000

struct ublk_frontend;
struct ublk_queue;

struct ublk_tag {
    struct rv_req req;          /* loop side, while the engine has it */
    struct ublk_queue *q;
    uint16_t tag;
    struct rv_ublk_io io;       /* decoded by the queue thread */
    void *buf;                  /* max_io bytes, page aligned */
    struct rv_op submit_op;     /* MSG_RING target on the loop */
    struct rv_op msg_err_op;    /* loop: our MSG_RING to the queue failed */
    int32_t commit;             /* result to commit (queue thread) */
};

struct ublk_queue {
    struct ublk_frontend *uf;
    unsigned id;
    struct io_uring ring;
    bool ring_ok;
    bool ring_disabled;         /* created R_DISABLED: the queue thread enables it */
    pthread_t thread;
    bool thread_ok;
    const struct rv_ublksrv_io_desc *descs;
    size_t descs_len;
    struct ublk_tag *tags;
    uint8_t *bufs;
    size_t bufs_len;
    unsigned fetching;          /* tags with a command in the kernel (queue thread) */
    unsigned busy;              /* tags being served (queue thread) */
    uint64_t requests;          /* served (queue thread; read after join) */
};

struct ublk_frontend {
    struct rv_frontend fe;
    struct rv_ublk_opts opts;
    int ctrl_fd;
    struct io_uring ctrl_ring;  /* SQE128; used by one thread at a time (create, then control thread) */
    bool ctrl_ring_ok;
    uint64_t kfeatures;         /* GET_FEATURES, 0 if unsupported */
    uint64_t feat_ops;          /* features that select the opcode encoding */
    struct rv_ublksrv_ctrl_dev_info info;
    bool added;                 /* the device exists (we added or adopted it) */
    bool recovering;            /* adopted a crashed daemon's device */
    int cdev_fd;
    char bdev_path[32], cdev_path[32];
    struct ublk_queue *queues;
    unsigned nq, depth;
    uint32_t max_io;
    int main_ring_fd;
    size_t page;

    /* Event-loop side. */
    unsigned inflight;          /* requests in the engine */
    struct rv_ublk_stats stats;
    bool started, start_failed, shutting_down, stop_pending, drained_called;
    struct rv_op started_op, stopped_op;
    void (*on_started)(struct rv_frontend *fe, int err);

    /* Control thread (one at a time). */
    pthread_t ctl_thread;
    bool ctl_running;
    int ctl_result;
    /* Set by a queue thread that gave up before serving (its ring failed):
     * the control thread then cancels the START_DEV that waits for it. */
    atomic_int queue_failed;
};

/* ------------------------------------------------------------ control commands */

static int ctrl_cmd(struct ublk_frontend *uf, unsigned nr, uint32_t dev_id, void *buf, uint16_t len,
                    uint64_t data0)
{
    struct io_uring *ring = &uf->ctrl_ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    struct io_uring_cqe *cqe;
    if (!sqe)
        return -EBUSY;
    memset(sqe, 0, 128);        /* SQE128 */
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = uf->ctrl_fd;
    sqe->cmd_op = rv_ublk_ctrl_op(uf->feat_ops, nr);
    struct rv_ublksrv_ctrl_cmd *c = (struct rv_ublksrv_ctrl_cmd *)sqe->cmd;
    c->dev_id = dev_id;
    c->queue_id = (uint16_t)-1;
    c->addr = (uint64_t)(uintptr_t)buf;
    c->len = len;
    c->data[0] = data0;
    int r = io_uring_submit(ring);
    if (r < 0)
        return r;
    do
        r = io_uring_wait_cqe(ring, &cqe);
    while (r == -EINTR);
    if (r < 0)
        return r;
    r = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    if (buf && len && r >= 0)
        RV_MARK_DEFINED(buf, len);
    return r;
}

/* START_DEV and END_USER_RECOVERY wait (in an io-wq worker: the driver
 * refuses to block in the submitter) until every queue has fetched every
 * tag.  If a queue thread failed, or the wait outlasts START_WAIT_SECS, the
 * command is cancelled: the worker is interrupted and the command fails
 * with -EINTR instead of hanging the daemon's start. */
static int ctrl_cmd_start(struct ublk_frontend *uf, unsigned nr)
{
    struct io_uring *ring = &uf->ctrl_ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe)
        return -EBUSY;
    memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = uf->ctrl_fd;
    sqe->cmd_op = rv_ublk_ctrl_op(uf->feat_ops, nr);
    sqe->user_data = 1;
    struct rv_ublksrv_ctrl_cmd *c = (struct rv_ublksrv_ctrl_cmd *)sqe->cmd;
    c->dev_id = uf->info.dev_id;
    c->queue_id = (uint16_t)-1;
    c->data[0] = (uint64_t)getpid();
    int r = io_uring_submit(ring);
    if (r < 0)
        return r;
    bool cancelled = false;
    for (unsigned waited = 0;; waited++) {
        struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        struct io_uring_cqe *cqe;
        r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
        if (r == 0) {
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            if (ud == 1)
                return res;
            continue;               /* the cancel's own completion */
        }
        if (r != -ETIME && r != -EINTR)
            return r;
        bool failed = atomic_load(&uf->queue_failed) != 0;
        if (!cancelled && (failed || waited >= START_WAIT_SECS)) {
            rv_err("ublk dev %u: %s; cancelling the start", uf->info.dev_id,
                   failed ? "a queue thread failed before fetching" : "queues not ready in time");
            sqe = io_uring_get_sqe(ring);
            if (sqe) {
                memset(sqe, 0, 128);
                io_uring_prep_cancel64(sqe, 1, 0);
                sqe->user_data = 2;
                io_uring_submit(ring);
            }
            cancelled = true;
        }
        if (waited >= START_WAIT_SECS + 30)
            return -ETIMEDOUT;      /* even the cancel did not help: give up (the worker stays) */
    }
}

static int ctrl_open(struct ublk_frontend *uf)
{
    uf->ctrl_fd = open(RV_UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
    if (uf->ctrl_fd < 0)
        return -errno;
    int r = io_uring_queue_init(4, &uf->ctrl_ring, IORING_SETUP_SQE128);
    if (r < 0) {
        close(uf->ctrl_fd);
        uf->ctrl_fd = -1;
        return r;
    }
    uf->ctrl_ring_ok = true;
    uint64_t f = 0;
    r = ctrl_cmd(uf, RV_UBLK_CMD_GET_FEATURES, (uint32_t)-1, &f, sizeof f, 0);
    uf->kfeatures = r < 0 ? 0 : f;
    uf->feat_ops = uf->kfeatures & RV_UBLK_F_CMD_IOCTL_ENCODE;
    return 0;
}

static void ctrl_close(struct ublk_frontend *uf)
{
    if (uf->ctrl_ring_ok)
        io_uring_queue_exit(&uf->ctrl_ring);
    uf->ctrl_ring_ok = false;
    if (uf->ctrl_fd >= 0)
        close(uf->ctrl_fd);
    uf->ctrl_fd = -1;
}

int rv_ublk_available(void)
{
    if (access(RV_UBLK_CONTROL_PATH, F_OK) < 0)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------ queue threads */

static void queue_cmd(struct ublk_queue *q, unsigned nr, unsigned tag, int32_t result)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
    }
    if (!sqe) {                 /* cannot happen: the ring has room for every tag twice */
        rv_err("ublk dev %u queue %u tag %u: submission queue full", q->uf->info.dev_id, q->id, tag);
        return;
    }
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->uf->cdev_fd;
    sqe->cmd_op = rv_ublk_io_op(q->uf->feat_ops, nr);
    sqe->user_data = UD_FETCH | tag;
    struct rv_ublksrv_io_cmd *c = (struct rv_ublksrv_io_cmd *)sqe->cmd;
    c->q_id = (uint16_t)q->id;
    c->tag = (uint16_t)tag;
    c->result = result;
    c->addr = (q->uf->info.flags & RV_UBLK_F_USER_COPY) ? 0 : (uint64_t)(uintptr_t)q->tags[tag].buf;
    q->fetching++;
}

/* Commit tag's result and fetch its next request. */
static void queue_commit(struct ublk_queue *q, struct ublk_tag *t, int32_t result)
{
    struct ublk_frontend *uf = q->uf;
    q->busy--;
    q->requests++;
    if ((uf->info.flags & RV_UBLK_F_USER_COPY) && t->io.type == RV_IO_READ && result > 0) {
        /* USER_COPY: the data goes into the request with pwrite. */
        ssize_t n = pwrite(uf->cdev_fd, t->buf, (size_t)result, (off_t)rv_ublk_user_copy_offset(q->id, t->tag));
        if (n != result) {
            rv_err("ublk dev %u queue %u tag %u: copy of READ off=%" PRIu64 " to the request: %s",
                   uf->info.dev_id, q->id, t->tag, t->io.off, n < 0 ? strerror(errno) : "short");
            result = -EIO;
        }
    }
    queue_cmd(q, RV_UBLK_IO_COMMIT_AND_FETCH_REQ, t->tag, result);
}

/* A request arrived on tag: decode, hand to the loop. */
static void queue_request(struct ublk_queue *q, struct ublk_tag *t)
{
    struct ublk_frontend *uf = q->uf;
    const struct rv_ublksrv_io_desc *iod = &q->descs[t->tag];
    struct rv_ublksrv_io_desc d = *iod;     /* one read of the shared descriptor */
    q->busy++;
    int r = rv_ublk_decode(&d, uf->max_io, uf->fe.vol->size, &t->io);
    if (r < 0) {
        rv_warn("ublk dev %u queue %u tag %u: refusing op %u sector %" PRIu64 " count %" PRIu32 ": %s",
                uf->info.dev_id, q->id, t->tag, d.op_flags & 0xff, (uint64_t)d.start_sector, d.nr_sectors,
                strerror(-r));
        queue_commit(q, t, r);
        return;
    }
    if ((uf->info.flags & RV_UBLK_F_USER_COPY) && t->io.type == RV_IO_WRITE && t->io.len) {
        ssize_t n = pread(uf->cdev_fd, t->buf, t->io.len, (off_t)rv_ublk_user_copy_offset(q->id, t->tag));
        if (n != (ssize_t)t->io.len) {
            rv_err("ublk dev %u queue %u tag %u: copy of WRITE off=%" PRIu64 " from the request: %s",
                   uf->info.dev_id, q->id, t->tag, t->io.off, n < 0 ? strerror(errno) : "short");
            queue_commit(q, t, -EIO);
            return;
        }
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
    }
    if (!sqe) {
        queue_commit(q, t, -EIO);
        return;
    }
    io_uring_prep_msg_ring(sqe, uf->main_ring_fd, 0, (uint64_t)(uintptr_t)&t->submit_op, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    sqe->user_data = UD_FWD_FAILED | t->tag;
}

static void *queue_main(void *arg)
{
    struct ublk_queue *q = arg;
    struct ublk_frontend *uf = q->uf;
    bool stop = false;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);     /* signals belong to the loop's signalfd */
    if (q->ring_disabled) {
        /* SINGLE_ISSUER: the task that enables the ring is its submitter. */
        /* (Not through liburing: 2.3 declares io_uring_enable_rings but
         * does not export it.) */
        int r = (int)syscall(__NR_io_uring_register, q->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (r < 0)
            r = -errno;
        if (r < 0) {
            rv_err("ublk dev %u queue %u: enabling the ring: %s", uf->info.dev_id, q->id, strerror(-r));
            atomic_store(&uf->queue_failed, 1);
            return NULL;
        }
    }
    /* Test hook (tests/vm/010): a queue that dies before serving. */
    const char *fault = getenv("REPVOL_UBLK_FAULT");
    if (fault && !strcmp(fault, "queue-exit") && q->id == uf->nq - 1) {
        rv_err("ublk dev %u queue %u: REPVOL_UBLK_FAULT=queue-exit: exiting before fetching", uf->info.dev_id,
               q->id);
        atomic_store(&uf->queue_failed, 1);
        return NULL;
    }

    for (unsigned t = 0; t < uf->depth; t++)
        queue_cmd(q, RV_UBLK_IO_FETCH_REQ, t, -1);
    /* Until every tag's command has been aborted (the device stopped) and
     * nothing is being served, or told to stop. */
    while (!stop && (q->fetching > 0 || q->busy > 0)) {
        int r = io_uring_submit_and_wait(&q->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            rv_err("ublk dev %u queue %u: io_uring: %s", uf->info.dev_id, q->id, strerror(-r));
            atomic_store(&uf->queue_failed, 1);
            break;
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&q->ring, head, cqe) {
            n++;
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            unsigned tag = UD_TAG(ud);
            if (UD_KIND(ud) == UD_STOP) {
                stop = true;
                continue;
            }
            if (tag >= uf->depth) {
                rv_err("ublk dev %u queue %u: completion for tag %u of %u", uf->info.dev_id, q->id, tag,
                       uf->depth);
                continue;
            }
            struct ublk_tag *t = &q->tags[tag];
            switch (UD_KIND(ud)) {
            case UD_FETCH:
                q->fetching--;
                if (res == RV_UBLK_IO_RES_OK)
                    queue_request(q, t);
                else if (res != RV_UBLK_IO_RES_ABORT)
                    rv_err("ublk dev %u queue %u tag %u: fetch failed: %s", uf->info.dev_id, q->id, tag,
                           strerror(-res));
                break;
            case UD_COMMIT:
                queue_commit(q, t, res);
                break;
            case UD_FWD_FAILED:
                rv_err("ublk dev %u queue %u tag %u: handing the request to the event loop failed: %s",
                       uf->info.dev_id, q->id, tag, strerror(-res));
                queue_commit(q, t, -EIO);
                break;
            default:
                break;
            }
        }
        io_uring_cq_advance(&q->ring, n);
    }
    io_uring_submit(&q->ring);
    rv_debug("ublk dev %u queue %u: thread done after %" PRIu64 " requests", uf->info.dev_id, q->id, q->requests);
    return NULL;
}

/* ------------------------------------------------------------ loop side */

static void tag_done(struct rv_req *req);
static void maybe_drained(struct ublk_frontend *uf);

/* Loop: a request from a queue thread. */
static void tag_submit(struct rv_op *op, int res)
{
    struct ublk_tag *t = RV_CONTAINER_OF(op, struct ublk_tag, submit_op);
    struct ublk_frontend *uf = t->q->uf;
    struct rv_req *req = &t->req;
    memset(req, 0, sizeof *req);
    req->type = t->io.type;
    req->flags = t->io.flags;
    req->off = t->io.off;
    req->len = t->io.len;
    req->buf = (t->io.type == RV_IO_READ || t->io.type == RV_IO_WRITE) ? t->buf : NULL;
    req->done = tag_done;
    req->origin = RV_ORIGIN_CLIENT;
    uf->inflight++;
    uf->stats.requests++;
    if (req->type == RV_IO_WRITE && (req->flags & RV_IO_FUA))
        uf->stats.fua_writes++;
    else if (req->type == RV_IO_FLUSH)
        uf->stats.flushes++;
    else if (req->type == RV_IO_TRIM)
        uf->stats.discards++;
    else if (req->type == RV_IO_ZERO)
        uf->stats.write_zeroes++;
    rv_volume_submit(uf->fe.vol, req);
}

static void msg_err(struct rv_op *op, int res)
{
    struct ublk_tag *t = RV_CONTAINER_OF(op, struct ublk_tag, msg_err_op);
    /* The queue ring is gone (it lives until destroy), so nobody waits. */
    rv_err("ublk dev %u queue %u tag %u: handing the result back to the queue failed: %s",
           t->q->uf->info.dev_id, t->q->id, t->tag, strerror(-res));
}

/* Loop: the engine finished a request; send the result to its queue. */
static void tag_done(struct rv_req *req)
{
    struct ublk_tag *t = RV_CONTAINER_OF(req, struct ublk_tag, req);
    struct ublk_queue *q = t->q;
    struct ublk_frontend *uf = q->uf;
    uf->inflight--;
    if (req->result < 0)
        uf->stats.errors++;
    if (req->result < 0)
        rv_warn("ublk dev %u queue %u tag %u: %s off=%" PRIu64 " len=%" PRIu32 " failed: %s", uf->info.dev_id,
                q->id, t->tag, rv_io_type_name(req->type), req->off, req->len, strerror(-req->result));
    int32_t res = rv_ublk_commit_result(&t->io, req->result);
    t->msg_err_op.fn = msg_err;
    struct io_uring_sqe *sqe = rv_loop_sqe(uf->fe.loop, &t->msg_err_op);
    io_uring_prep_msg_ring(sqe, q->ring.ring_fd, (unsigned)res, UD_COMMIT | t->tag, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    /* (Normally STOP_DEV waits for every request; this covers a queue
     * thread that had to be told to exit with requests still here.) */
    if (uf->shutting_down && uf->inflight == 0)
        maybe_drained(uf);
}

/* ------------------------------------------------------------ control thread */

static void ctl_post(struct ublk_frontend *uf, struct rv_op *op, int res)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&uf->ctrl_ring);
    if (!sqe) {
        rv_err("ublk dev %u: control ring full; cannot report to the event loop", uf->info.dev_id);
        return;
    }
    memset(sqe, 0, 128);
    io_uring_prep_msg_ring(sqe, uf->main_ring_fd, (unsigned)res, (uint64_t)(uintptr_t)op, 0);
    sqe->user_data = 0;
    io_uring_submit(&uf->ctrl_ring);
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(&uf->ctrl_ring, &cqe) == 0) {
        if (cqe->res < 0)
            rv_err("ublk dev %u: reporting to the event loop: %s", uf->info.dev_id, strerror(-cqe->res));
        io_uring_cqe_seen(&uf->ctrl_ring, cqe);
    }
}

static int write_sysfs(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, val, strlen(val));
    int e = n < 0 ? -errno : 0;
    close(fd);
    return e;
}

/* Crash detection in 6.12 works by cancelling the queue's outstanding
 * FETCH commands when the dead daemon's rings go away.  A queue whose every
 * tag was being served at that moment has no command to cancel, and the
 * kernel only notices when a request times out (30 s).  So the block layer
 * may use at most depth - 1 tags per queue (no I/O scheduler, nr_requests
 * = depth - 1): one FETCH is always outstanding and a crash is seen at
 * once. */
static void keep_a_tag_free(struct ublk_frontend *uf)
{
    if (uf->depth < 5)          /* nr_requests cannot go below 4 */
        return;
    char path[96], val[16];
    snprintf(path, sizeof path, "/sys/block/ublkb%u/queue/scheduler", uf->info.dev_id);
    int r = write_sysfs(path, "none");
    snprintf(path, sizeof path, "/sys/block/ublkb%u/queue/nr_requests", uf->info.dev_id);
    snprintf(val, sizeof val, "%u", uf->depth - 1);
    if (r == 0)
        r = write_sysfs(path, val);
    if (r < 0)
        rv_warn("ublk dev %u: cannot limit the queue to %u requests (%s): after a crash the device may "
                "pause up to 30 s before a new daemon can take it over", uf->info.dev_id, uf->depth - 1,
                strerror(-r));
}

static void *start_main(void *arg)
{
    struct ublk_frontend *uf = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int r;
    if (uf->recovering) {
        /* Waits until every queue has fetched, then unquiesces: the
         * requests the dead daemon left are reissued to us. */
        r = ctrl_cmd_start(uf, RV_UBLK_CMD_END_USER_RECOVERY);
        if (r < 0)
            rv_err("ublk dev %u: END_USER_RECOVERY: %s", uf->info.dev_id, strerror(-r));
    } else {
        r = ctrl_cmd_start(uf, RV_UBLK_CMD_START_DEV);
        if (r < 0)
            rv_err("ublk dev %u: START_DEV: %s", uf->info.dev_id, strerror(-r));
    }
    if (r >= 0)
        keep_a_tag_free(uf);
    uf->ctl_result = r;
    ctl_post(uf, &uf->started_op, r < 0 ? r : 0);
    return NULL;
}

static void unmap_and_close(struct ublk_frontend *uf)
{
    for (unsigned i = 0; i < uf->nq; i++) {
        struct ublk_queue *q = &uf->queues[i];
        if (q->descs) {
            munmap((void *)q->descs, q->descs_len);
            q->descs = NULL;
        }
    }
    if (uf->cdev_fd >= 0)
        close(uf->cdev_fd);
    uf->cdev_fd = -1;
}

static void join_queues(struct ublk_frontend *uf)
{
    for (unsigned i = 0; i < uf->nq; i++) {
        struct ublk_queue *q = &uf->queues[i];
        if (!q->thread_ok)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += STOP_JOIN_SECS;
        if (pthread_timedjoin_np(q->thread, NULL, &ts) != 0) {
            rv_warn("ublk dev %u queue %u: still running %d s after STOP_DEV; telling it to exit",
                    uf->info.dev_id, q->id, STOP_JOIN_SECS);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&uf->ctrl_ring);
            if (sqe) {
                memset(sqe, 0, 128);
                io_uring_prep_msg_ring(sqe, q->ring.ring_fd, 0, UD_STOP, 0);
                io_uring_submit(&uf->ctrl_ring);
                struct io_uring_cqe *cqe;
                if (io_uring_wait_cqe(&uf->ctrl_ring, &cqe) == 0)
                    io_uring_cqe_seen(&uf->ctrl_ring, cqe);
            }
            pthread_join(q->thread, NULL);
        }
        q->thread_ok = false;
    }
}

static void *stop_main(void *arg)
{
    struct ublk_frontend *uf = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    /* STOP_DEV removes the disk: requests in flight complete first (the
     * queues and the loop keep serving them), then every fetch is aborted
     * and the queue threads end. */
    int r = ctrl_cmd(uf, RV_UBLK_CMD_STOP_DEV, uf->info.dev_id, NULL, 0, 0);
    if (r < 0)
        rv_err("ublk dev %u: STOP_DEV: %s", uf->info.dev_id, strerror(-r));
    join_queues(uf);
    /* DEL_DEV waits until the last reference to /dev/ublkcN is gone: the
     * descriptor mappings hold one, not just the open descriptor. */
    unmap_and_close(uf);
    int d = ctrl_cmd(uf, RV_UBLK_CMD_DEL_DEV, uf->info.dev_id, NULL, 0, 0);
    if (d < 0)
        rv_err("ublk dev %u: DEL_DEV: %s", uf->info.dev_id, strerror(-d));
    else
        uf->added = false;
    uf->ctl_result = r < 0 ? r : d;
    ctl_post(uf, &uf->stopped_op, uf->ctl_result);
    return NULL;
}

static int ctl_spawn(struct ublk_frontend *uf, void *(*fn)(void *))
{
    int r = pthread_create(&uf->ctl_thread, NULL, fn, uf);
    if (r != 0)
        return -r;
    uf->ctl_running = true;
    return 0;
}

static void ctl_reap(struct ublk_frontend *uf)
{
    if (uf->ctl_running) {
        pthread_join(uf->ctl_thread, NULL);
        uf->ctl_running = false;
    }
}

static void maybe_drained(struct ublk_frontend *uf)
{
    if (!uf->shutting_down || uf->drained_called || uf->ctl_running || uf->stop_pending || uf->inflight)
        return;
    uf->drained_called = true;
    if (uf->fe.drained)
        uf->fe.drained(&uf->fe);
}

static void begin_stop(struct ublk_frontend *uf)
{
    int r = ctl_spawn(uf, stop_main);
    if (r < 0) {
        rv_err("ublk dev %u: cannot start the control thread: %s", uf->info.dev_id, strerror(-r));
        maybe_drained(uf);
    }
}

/* Loop: the device is live (or failed to start). */
static void on_started(struct rv_op *op, int res)
{
    struct ublk_frontend *uf = RV_CONTAINER_OF(op, struct ublk_frontend, started_op);
    ctl_reap(uf);
    if (res < 0) {
        uf->start_failed = true;
        rv_err("ublk dev %u: the device did not start: %s", uf->info.dev_id, strerror(-res));
    } else {
        uf->started = true;
        char fl[128];
        rv_ublk_flags_str(uf->info.flags, fl, sizeof fl);
        rv_info("volume %s: %s %s (%u queue(s) x %u tags, max I/O %" PRIu32 " KiB, flags %s)",
                uf->fe.vol->meta.name, uf->recovering ? "recovered" : "serving", uf->bdev_path, uf->nq,
                uf->depth, uf->max_io >> 10, fl);
    }
    if (uf->on_started)
        uf->on_started(&uf->fe, res);
    if (uf->stop_pending) {
        uf->stop_pending = false;
        begin_stop(uf);
    }
}

static void on_stopped(struct rv_op *op, int res)
{
    struct ublk_frontend *uf = RV_CONTAINER_OF(op, struct ublk_frontend, stopped_op);
    ctl_reap(uf);
    if (res == 0)
        rv_info("volume %s: removed %s", uf->fe.vol->meta.name, uf->bdev_path);
    maybe_drained(uf);
}

/* ------------------------------------------------------------ device setup */

/* The id of the device a previous daemon of this volume left, or -1. */
static int find_ours(struct ublk_frontend *uf, uint64_t tag)
{
    DIR *d = opendir("/dev");
    if (!d)
        return -1;
    int found = -1;
    struct dirent *e;
    unsigned scanned = 0;
    while ((e = readdir(d)) && found < 0 && scanned < 4096) {
        unsigned id;
        char extra;
        if (sscanf(e->d_name, "ublkc%u%c", &id, &extra) != 1)
            continue;
        scanned++;
        struct rv_ublksrv_ctrl_dev_info info;
        memset(&info, 0, sizeof info);
        if (ctrl_cmd(uf, RV_UBLK_CMD_GET_DEV_INFO, id, &info, sizeof info, 0) < 0)
            continue;
        if (info.ublksrv_flags == tag)
            found = (int)id;
    }
    closedir(d);
    return found;
}

static bool pid_alive(int32_t pid)
{
    return pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Adopt device id after a crash.  0: adopted; -ENODEV: no such device
 * (add a new one); other -errno: refuse. */
static int try_recover(struct ublk_frontend *uf, int id, uint64_t tag)
{
    struct rv_ublksrv_ctrl_dev_info info;
    int r = 0;
    for (unsigned waited = 0;; waited += 50) {
        memset(&info, 0, sizeof info);
        r = ctrl_cmd(uf, RV_UBLK_CMD_GET_DEV_INFO, (uint32_t)id, &info, sizeof info, 0);
        if (r < 0)
            return r == -ENOENT ? -ENODEV : r;
        if (info.ublksrv_flags != tag) {
            rv_err("ublk dev %d belongs to another volume (mark %016" PRIx64 ", ours %016" PRIx64 ")", id,
                   info.ublksrv_flags, tag);
            return -EEXIST;
        }
        if (!(info.flags & RV_UBLK_F_USER_RECOVERY)) {
            rv_err("ublk dev %d was created without recovery; remove it with 'repvol detach --id %d'", id, id);
            return -EEXIST;
        }
        if (info.state == RV_UBLK_S_DEV_QUIESCED)
            break;
        if (info.state == RV_UBLK_S_DEV_LIVE && pid_alive(info.ublksrv_pid)) {
            rv_err("ublk dev %d is served by a running daemon (pid %d)", id, info.ublksrv_pid);
            return -EBUSY;
        }
        if (waited >= RECOVER_WAIT_MS) {
            rv_err("ublk dev %d: state %s, not quiesced after %u ms; cannot recover it", id,
                   rv_ublk_state_name(info.state), waited);
            return -EBUSY;
        }
        usleep(50 * 1000);
    }
    struct rv_ublk_params p;
    memset(&p, 0, sizeof p);
    p.len = sizeof p;
    r = ctrl_cmd(uf, RV_UBLK_CMD_GET_PARAMS, (uint32_t)id, &p, sizeof p, 0);
    if (r >= 0 && p.basic.dev_sectors != uf->fe.vol->size >> 9) {
        rv_err("ublk dev %d has %" PRIu64 " sectors, the volume %" PRIu64 ": not recovering it", id,
               (uint64_t)p.basic.dev_sectors, uf->fe.vol->size >> 9);
        return -EINVAL;
    }
    for (unsigned waited = 0;; waited += 50) {
        r = ctrl_cmd(uf, RV_UBLK_CMD_START_USER_RECOVERY, (uint32_t)id, NULL, 0, 0);
        if (r != -EBUSY || waited >= RECOVER_WAIT_MS)
            break;
        usleep(50 * 1000);      /* the dead daemon's /dev/ublkcN is still being released */
    }
    if (r < 0) {
        rv_err("ublk dev %d: START_USER_RECOVERY: %s", id, strerror(-r));
        return r;
    }
    uf->info = info;
    uf->recovering = true;
    uf->added = true;
    rv_info("ublk dev %d: recovering the device of a previous daemon (pid %d)", id, info.ublksrv_pid);
    return 0;
}

static int add_device(struct ublk_frontend *uf, uint64_t tag)
{
    uint64_t flags;
    char why[256];
    rv_ublk_negotiate(uf->kfeatures, &uf->opts, &flags, why, sizeof why);
    if (why[0])
        rv_warn("ublk: %s", why);
    struct rv_ublksrv_ctrl_dev_info info;
    memset(&info, 0, sizeof info);
    info.nr_hw_queues = (uint16_t)uf->opts.nr_queues;
    info.queue_depth = (uint16_t)uf->opts.queue_depth;
    info.max_io_buf_bytes = uf->opts.max_io;
    info.dev_id = uf->opts.dev_id < 0 ? (uint32_t)-1 : (uint32_t)uf->opts.dev_id;
    info.ublksrv_pid = getpid();
    info.flags = flags;
    info.ublksrv_flags = tag;
    int r = ctrl_cmd(uf, RV_UBLK_CMD_ADD_DEV, info.dev_id, &info, sizeof info, 0);
    if (r < 0) {
        rv_err("ublk: ADD_DEV (id %d, %u queues x %u, max I/O %" PRIu32 "): %s", uf->opts.dev_id,
               uf->opts.nr_queues, uf->opts.queue_depth, uf->opts.max_io, strerror(-r));
        return r;
    }
    uf->info = info;
    uf->added = true;
    struct rv_ublk_params p;
    r = rv_ublk_build_params(&p, uf->fe.vol->size, RV_MIN(info.max_io_buf_bytes, uf->opts.max_io),
                             uf->opts.readonly);
    if (r == 0)
        r = rv_ublk_check_params(&p, info.max_io_buf_bytes, why, sizeof why);
    else
        snprintf(why, sizeof why, "volume size or max I/O not usable");
    if (r < 0) {
        rv_err("ublk dev %u: parameters: %s", info.dev_id, why);
        return r;
    }
    r = ctrl_cmd(uf, RV_UBLK_CMD_SET_PARAMS, info.dev_id, &p, sizeof p, 0);
    if (r < 0) {
        rv_err("ublk dev %u: SET_PARAMS: %s", info.dev_id, strerror(-r));
        return r;
    }
    return 0;
}

static int setup_queues(struct ublk_frontend *uf)
{
    uf->nq = uf->info.nr_hw_queues;
    uf->depth = uf->info.queue_depth;
    uf->max_io = RV_MIN(uf->info.max_io_buf_bytes, (uint32_t)uf->fe.vol->max_request);
    if (uf->nq == 0 || uf->depth == 0 || uf->max_io < 4096) {
        rv_err("ublk dev %u: unusable geometry %u queues x %u tags, max I/O %" PRIu32, uf->info.dev_id, uf->nq,
               uf->depth, uf->max_io);
        return -EINVAL;
    }
    snprintf(uf->cdev_path, sizeof uf->cdev_path, "/dev/ublkc%u", uf->info.dev_id);
    snprintf(uf->bdev_path, sizeof uf->bdev_path, "/dev/ublkb%u", uf->info.dev_id);
    /* devtmpfs creates the node at ADD_DEV; udev may still be fixing it up. */
    for (int i = 0; i < 200 && uf->cdev_fd < 0; i++) {
        uf->cdev_fd = open(uf->cdev_path, O_RDWR | O_CLOEXEC);
        if (uf->cdev_fd < 0 && errno != ENOENT && errno != EBUSY)
            break;
        if (uf->cdev_fd < 0)
            usleep(10 * 1000);
    }
    if (uf->cdev_fd < 0) {
        int e = -errno;
        rv_err("ublk dev %u: open %s: %s", uf->info.dev_id, uf->cdev_path, strerror(errno));
        return e;
    }
    uf->queues = calloc(uf->nq, sizeof *uf->queues);
    if (!uf->queues)
        return -ENOMEM;
    for (unsigned i = 0; i < uf->nq; i++) {
        struct ublk_queue *q = &uf->queues[i];
        q->uf = uf;
        q->id = i;
        q->descs_len = rv_ublk_desc_size(uf->depth, uf->page);
        void *m = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE, uf->cdev_fd,
                       (off_t)rv_ublk_desc_offset(i, uf->page));
        if (m == MAP_FAILED) {
            int e = -errno;
            rv_err("ublk dev %u queue %u: mmap of the descriptors: %s", uf->info.dev_id, i, strerror(errno));
            return e;
        }
        q->descs = m;
        q->tags = calloc(uf->depth, sizeof *q->tags);
        q->bufs_len = (size_t)uf->depth * uf->max_io;
        q->bufs = mmap(NULL, q->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (!q->tags || q->bufs == MAP_FAILED) {
            q->bufs = NULL;
            rv_err("ublk dev %u queue %u: cannot allocate %u x %" PRIu32 " bytes of buffers", uf->info.dev_id, i,
                   uf->depth, uf->max_io);
            return -ENOMEM;
        }
        for (unsigned t = 0; t < uf->depth; t++) {
            q->tags[t].q = q;
            q->tags[t].tag = (uint16_t)t;
            q->tags[t].buf = q->bufs + (size_t)t * uf->max_io;
            q->tags[t].submit_op.fn = tag_submit;
        }
        /* Only this queue's thread submits, and it only needs completions
         * when it waits for them: SINGLE_ISSUER | DEFER_TASKRUN, as the event
         * loop does (no difference measurable under TCG; created
         * disabled here, enabled by the thread), falling back to a plain
         * ring on kernels without them. */
        int r = -EINVAL;
        static const unsigned tries[] = {
#if defined(IORING_SETUP_SINGLE_ISSUER) && defined(IORING_SETUP_DEFER_TASKRUN) && defined(IORING_SETUP_R_DISABLED)
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
#endif
            0,
        };
        for (unsigned k = 0; k < sizeof tries / sizeof tries[0] && r == -EINVAL; k++) {
            struct io_uring_params p;
            memset(&p, 0, sizeof p);
            p.flags = IORING_SETUP_CQSIZE | tries[k];
            p.cq_entries = uf->depth * 4;
            r = io_uring_queue_init_params(uf->depth * 2, &q->ring, &p);
            q->ring_disabled = r == 0 && tries[k] != 0;
        }
        if (r < 0) {
            rv_err("ublk dev %u queue %u: io_uring: %s", uf->info.dev_id, i, strerror(-r));
            return r;
        }
        q->ring_ok = true;
    }
    return 0;
}

/* ------------------------------------------------------------ frontend ops */

static int ublk_start(struct rv_frontend *fe)
{
    struct ublk_frontend *uf = (struct ublk_frontend *)fe;
    for (unsigned i = 0; i < uf->nq; i++) {
        struct ublk_queue *q = &uf->queues[i];
        int r = pthread_create(&q->thread, NULL, queue_main, q);
        if (r != 0) {
            rv_err("ublk dev %u queue %u: cannot start its thread: %s", uf->info.dev_id, i, strerror(r));
            return -r;
        }
        q->thread_ok = true;
    }
    int r = ctl_spawn(uf, start_main);
    if (r < 0)
        rv_err("ublk dev %u: cannot start the control thread: %s", uf->info.dev_id, strerror(-r));
    return r;
}

static void ublk_shutdown(struct rv_frontend *fe)
{
    struct ublk_frontend *uf = (struct ublk_frontend *)fe;
    if (uf->shutting_down)
        return;
    uf->shutting_down = true;
    if (uf->ctl_running && !uf->started && !uf->start_failed) {
        uf->stop_pending = true;        /* after START_DEV returns */
        return;
    }
    if (uf->added)
        begin_stop(uf);
    else
        maybe_drained(uf);
}

static unsigned ublk_inflight(struct rv_frontend *fe)
{
    return ((struct ublk_frontend *)fe)->inflight;
}

static unsigned ublk_clients(struct rv_frontend *fe)
{
    struct ublk_frontend *uf = (struct ublk_frontend *)fe;
    return uf->started && !uf->drained_called ? 1 : 0;
}

static void ublk_disconnect_clients(struct rv_frontend *fe)
{
    ublk_shutdown(fe);
}

static void ublk_free(struct ublk_frontend *uf)
{
    ctl_reap(uf);
    bool threads = false;
    for (unsigned i = 0; i < uf->nq; i++)
        threads |= uf->queues[i].thread_ok;
    if (uf->added && uf->ctrl_ring_ok && !uf->recovering) {
        /* Created here but never started (a failed start): STOP_DEV
         * aborts the queues' fetches, DEL_DEV (after the unmap) removes
         * the device again. */
        ctrl_cmd(uf, RV_UBLK_CMD_STOP_DEV, uf->info.dev_id, NULL, 0, 0);
        if (threads)
            join_queues(uf);
        unmap_and_close(uf);
        ctrl_cmd(uf, RV_UBLK_CMD_DEL_DEV, uf->info.dev_id, NULL, 0, 0);
    } else if (threads) {
        join_queues(uf);
    }
    unmap_and_close(uf);
    for (unsigned i = 0; i < uf->nq; i++) {
        struct ublk_queue *q = &uf->queues[i];
        if (q->ring_ok)
            io_uring_queue_exit(&q->ring);
        if (q->bufs)
            munmap(q->bufs, q->bufs_len);
        free(q->tags);
    }
    free(uf->queues);
    ctrl_close(uf);
    free(uf);
}

static void ublk_destroy(struct rv_frontend *fe)
{
    ublk_free((struct ublk_frontend *)fe);
}

static const struct rv_frontend_ops ublk_ops = {
    .name = "ublk",
    .start = ublk_start,
    .shutdown = ublk_shutdown,
    .inflight = ublk_inflight,
    .clients = ublk_clients,
    .disconnect_clients = ublk_disconnect_clients,
    .destroy = ublk_destroy,
};

int rv_ublk_frontend_create(struct rv_frontend **out, struct rv_volume *vol, struct rv_loop *loop,
                            const struct rv_ublk_opts *opts)
{
    struct ublk_frontend *uf = calloc(1, sizeof *uf);
    if (!uf)
        return -ENOMEM;
    uf->fe.ops = &ublk_ops;
    uf->fe.vol = vol;
    uf->fe.loop = loop;
    uf->opts = *opts;
    uf->ctrl_fd = -1;
    uf->cdev_fd = -1;
    uf->main_ring_fd = loop->ring.ring_fd;
    uf->page = (size_t)sysconf(_SC_PAGESIZE);
    uf->started_op.fn = on_started;
    uf->stopped_op.fn = on_stopped;
    int r = ctrl_open(uf);
    if (r < 0) {
        if (r == -ENOENT)
            rv_err("%s", RV_UBLK_NO_DRIVER_MSG);
        else
            rv_err("ublk: %s: %s", RV_UBLK_CONTROL_PATH, strerror(-r));
        ublk_free(uf);
        return r;
    }
    char fl[160];
    rv_ublk_flags_str(uf->kfeatures, fl, sizeof fl);
    rv_debug("ublk: kernel features %016" PRIx64 " (%s)", uf->kfeatures, fl);
    uint64_t tag = rv_ublk_volume_tag(vol->meta.uuid);
    r = -ENODEV;
    if (opts->recovery) {
        int id = opts->dev_id >= 0 ? opts->dev_id : find_ours(uf, tag);
        if (id >= 0)
            r = try_recover(uf, id, tag);
        if (r < 0 && r != -ENODEV) {
            ublk_free(uf);
            return r;
        }
    }
    if (r == -ENODEV)
        r = add_device(uf, tag);
    if (r == 0)
        r = setup_queues(uf);
    if (r < 0) {
        ublk_free(uf);
        return r;
    }
    *out = &uf->fe;
    return 0;
}

const char *rv_ublk_device_path(struct rv_frontend *fe)
{
    return ((struct ublk_frontend *)fe)->bdev_path;
}

void rv_ublk_get_stats(struct rv_frontend *fe, struct rv_ublk_stats *st)
{
    *st = ((struct ublk_frontend *)fe)->stats;
}

void rv_ublk_on_started(struct rv_frontend *fe, void (*cb)(struct rv_frontend *fe, int err))
{
    ((struct ublk_frontend *)fe)->on_started = cb;
}

int rv_ublk_delete_device(int dev_id)
{
    struct ublk_frontend uf;
    memset(&uf, 0, sizeof uf);
    uf.ctrl_fd = -1;
    uf.cdev_fd = -1;
    int r = ctrl_open(&uf);
    if (r < 0)
        return r;
    struct rv_ublksrv_ctrl_dev_info info;
    memset(&info, 0, sizeof info);
    r = ctrl_cmd(&uf, RV_UBLK_CMD_GET_DEV_INFO, (uint32_t)dev_id, &info, sizeof info, 0);
    if (r >= 0 && info.state == RV_UBLK_S_DEV_LIVE && pid_alive(info.ublksrv_pid))
        r = -EBUSY;             /* a live daemon serves it: ask that one */
    if (r >= 0) {
        ctrl_cmd(&uf, RV_UBLK_CMD_STOP_DEV, (uint32_t)dev_id, NULL, 0, 0);
        r = ctrl_cmd(&uf, RV_UBLK_CMD_DEL_DEV, (uint32_t)dev_id, NULL, 0, 0);
    }
    ctrl_close(&uf);
    return r;
}
