/* bufpool.h - preallocated, page-aligned I/O buffers.
 *
 * The daemon may serve a filesystem mounted on its own host; if it had to
 * allocate memory to complete a write, memory reclaim could wait on that very
 * write (the localhost-NBD deadlock).  So every data buffer comes from this
 * pool, allocated and locked at start-up.  The pool has size classes (powers
 * of four from 4 KiB up to the largest request); a request takes the smallest
 * free buffer that fits.  When none is free the caller stops reading new
 * requests and registers a waiter: back-pressure instead of allocation. */
#ifndef REPVOL_BUFPOOL_H
#define REPVOL_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define RV_BUFPOOL_MAX_CLASSES 12

struct rv_bufpool_waiter {
    void (*wake)(struct rv_bufpool_waiter *w);
    struct rv_bufpool_waiter *next;
    int queued;
};

struct rv_bufclass {
    size_t size;            /* bytes per buffer */
    unsigned count;         /* buffers in this class */
    unsigned nfree;
    uint8_t *base;          /* count * size bytes, page aligned */
    void **freelist;        /* stack of free buffers */
};

struct rv_bufpool {
    struct rv_bufclass cls[RV_BUFPOOL_MAX_CLASSES];
    unsigned nclasses;
    size_t max_size;
    size_t total_bytes;
    struct rv_bufpool_waiter *waiters;
};

/* Buffers of up to max_size bytes, about `budget` bytes in all (each class
 * gets an equal share, at least one buffer).  Returns 0 or -ENOMEM. */
int rv_bufpool_init(struct rv_bufpool *p, size_t max_size, size_t budget);
void rv_bufpool_fini(struct rv_bufpool *p);

/* A buffer of at least len bytes, or NULL when none is free right now (or
 * len > max_size). */
void *rv_bufpool_get(struct rv_bufpool *p, size_t len);
/* The same, from classes of at most max_class bytes only. */
void *rv_bufpool_get_max(struct rv_bufpool *p, size_t len, size_t max_class);
void rv_bufpool_put(struct rv_bufpool *p, void *buf);
/* The size of the class buf came from (what it really holds of the pool). */
size_t rv_bufpool_size(const struct rv_bufpool *p, const void *buf);

/* Ask to be woken (once) when a buffer is returned. */
void rv_bufpool_wait(struct rv_bufpool *p, struct rv_bufpool_waiter *w);
void rv_bufpool_cancel_wait(struct rv_bufpool *p, struct rv_bufpool_waiter *w);

#endif
