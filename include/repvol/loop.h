/* loop.h - the io_uring event loop that drives sockets and disk alike.
 *
 * One loop per thread.  Every ring operation carries a pointer to a struct
 * rv_op as its user_data; when the completion arrives the loop calls
 * op->fn(op, res).  Callers embed the rv_op in whatever object owns the
 * operation (a request, a connection) and get back to it with
 * RV_CONTAINER_OF.  An SQE with user_data 0 is fire-and-forget.
 *
 * Callbacks never run inline from a submit call: work that completes
 * synchronously goes through rv_loop_defer(), so a frontend's completion
 * handler can never re-enter the code that submitted the request. */
#ifndef REPVOL_LOOP_H
#define REPVOL_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <liburing.h>

struct rv_op;
typedef void (*rv_op_fn)(struct rv_op *op, int res);

struct rv_op {
    rv_op_fn fn;
    uint32_t cqe_flags;     /* flags of the completion being delivered (IORING_CQE_F_MORE...) */
    int defer_res;          /* result handed to fn when deferred */
    struct rv_op *defer_next;
};

struct rv_loop {
    struct io_uring ring;
    bool stopping;
    struct rv_op *defer_head;
    struct rv_op **defer_tail;
    uint64_t submitted;     /* SQEs handed to the kernel, for statistics */
    uint64_t completed;     /* CQEs reaped */
};

/* Set up a ring with `entries` submission slots (the completion queue gets
 * four times as many).  Returns 0 or -errno. */
int rv_loop_init(struct rv_loop *l, unsigned entries);
void rv_loop_fini(struct rv_loop *l);

/* An SQE bound to `op` (op may be NULL for fire-and-forget).  Never NULL:
 * when the submission queue is full it is flushed to the kernel first. */
struct io_uring_sqe *rv_loop_sqe(struct rv_loop *l, struct rv_op *op);

/* Call op->fn(op, res) on the next turn of the loop. */
void rv_loop_defer(struct rv_loop *l, struct rv_op *op, int res);

/* Run until rv_loop_stop() is called.  Returns 0 or -errno on ring failure. */
int rv_loop_run(struct rv_loop *l);
void rv_loop_stop(struct rv_loop *l);

#endif
