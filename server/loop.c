/* loop.c - the io_uring event loop (see include/repvol/loop.h).
 *
 * One ring per thread carries every kind of operation: socket accept, recv
 * and send, file reads and writes, fsync, fallocate, timeouts, signals.  The
 * loop reaps completions in batches and dispatches each to the rv_op it was
 * submitted with. */
#include <errno.h>
#include <string.h>

#include "repvol/log.h"
#include "repvol/loop.h"

int rv_loop_init(struct rv_loop *l, unsigned entries)
{
    memset(l, 0, sizeof *l);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* A larger completion queue absorbs bursts (many requests completing at
     * once); the kernel also buffers overflow (IORING_FEAT_NODROP). */
    /* Newest first, falling back on older kernels: SINGLE_ISSUER (only
     * this thread submits: less locking) with DEFER_TASKRUN (completion
     * work runs when this loop asks for events, not by interrupting it),
     * then COOP_TASKRUN, then nothing. */
    static const unsigned tries[] = {
#if defined(IORING_SETUP_SINGLE_ISSUER) && defined(IORING_SETUP_DEFER_TASKRUN)
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
#endif
#ifdef IORING_SETUP_COOP_TASKRUN
        IORING_SETUP_COOP_TASKRUN,
#endif
        0,
    };
    int r = -EINVAL;
    for (unsigned i = 0; i < sizeof tries / sizeof tries[0] && r == -EINVAL; i++) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE | tries[i];
        p.cq_entries = entries * 4;
        r = io_uring_queue_init_params(entries, &l->ring, &p);
    }
    if (r < 0) {
        rv_err("io_uring setup (%u entries) failed: %s", entries, strerror(-r));
        return r;
    }
    if (!(p.features & IORING_FEAT_NODROP))
        rv_warn("kernel io_uring lacks IORING_FEAT_NODROP; completions could be lost under overload");
    l->defer_tail = &l->defer_head;
    return 0;
}

void rv_loop_fini(struct rv_loop *l)
{
    io_uring_queue_exit(&l->ring);
}

struct io_uring_sqe *rv_loop_sqe(struct rv_loop *l, struct rv_op *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    while (!sqe) {
        /* Submission queue full: hand what we have to the kernel. */
        int r = io_uring_submit(&l->ring);
        if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR)
            rv_err("io_uring_submit: %s", strerror(-r));
        else if (r > 0)
            l->submitted += r;
        sqe = io_uring_get_sqe(&l->ring);
    }
    io_uring_sqe_set_data(sqe, op);
    return sqe;
}

void rv_loop_defer(struct rv_loop *l, struct rv_op *op, int res)
{
    op->defer_res = res;
    op->defer_next = NULL;
    *l->defer_tail = op;
    l->defer_tail = &op->defer_next;
}

static void run_deferred(struct rv_loop *l)
{
    /* Take the current list; callbacks may defer more, which run next turn. */
    struct rv_op *op = l->defer_head;
    l->defer_head = NULL;
    l->defer_tail = &l->defer_head;
    while (op) {
        struct rv_op *next = op->defer_next;
        op->cqe_flags = 0;
        op->fn(op, op->defer_res);
        op = next;
    }
}

void rv_loop_stop(struct rv_loop *l) { l->stopping = true; }

int rv_loop_run(struct rv_loop *l)
{
    struct io_uring_cqe *cqes[256];

    while (!l->stopping || l->defer_head) {
        run_deferred(l);
        if (l->stopping && !l->defer_head)
            break;
        /* Don't sleep while deferred work is waiting. */
        unsigned want = l->defer_head ? 0 : 1;
        int r = io_uring_submit_and_wait(&l->ring, want);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            rv_err("io_uring_submit_and_wait: %s", strerror(-r));
            return r;
        }
        if (r > 0)
            l->submitted += r;
        unsigned n;
        while ((n = io_uring_peek_batch_cqe(&l->ring, cqes, (unsigned)(sizeof cqes / sizeof cqes[0]))) > 0) {
            for (unsigned i = 0; i < n; i++) {
                struct rv_op *op = io_uring_cqe_get_data(cqes[i]);
                int res = cqes[i]->res;
                uint32_t flags = cqes[i]->flags;
                /* Mark the CQE seen before dispatching: the callback may
                 * submit and even wait, and must see a consistent ring. */
                io_uring_cqe_seen(&l->ring, cqes[i]);
                l->completed++;
                if (op) {
                    op->cqe_flags = flags;
                    op->fn(op, res);
                }
            }
        }
    }
    /* Hand any SQEs queued by the last callbacks to the kernel. */
    io_uring_submit(&l->ring);
    return 0;
}
