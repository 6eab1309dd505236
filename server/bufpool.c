/* bufpool.c - preallocated, page-aligned I/O buffers (see bufpool.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "repvol/bufpool.h"
#include "repvol/log.h"

#define RV_BUF_MIN 4096u

int rv_bufpool_init(struct rv_bufpool *p, size_t max_size, size_t budget)
{
    memset(p, 0, sizeof *p);
    if (max_size < RV_BUF_MIN)
        max_size = RV_BUF_MIN;
    max_size = (max_size + RV_BUF_MIN - 1) / RV_BUF_MIN * RV_BUF_MIN;
    p->max_size = max_size;

    /* Classes 4K, 16K, 64K, ... (x4), the last one exactly max_size. */
    size_t sizes[RV_BUFPOOL_MAX_CLASSES];
    unsigned n = 0;
    for (size_t s = RV_BUF_MIN; s < max_size && n < RV_BUFPOOL_MAX_CLASSES - 1; s *= 4)
        sizes[n++] = s;
    sizes[n++] = max_size;
    size_t share = budget / n;

    for (unsigned i = 0; i < n; i++) {
        struct rv_bufclass *c = &p->cls[i];
        c->size = sizes[i];
        c->count = share / c->size;
        if (c->count == 0)
            c->count = 1;
        size_t bytes = c->count * c->size;
        /* mmap gives page alignment (O_DIRECT needs it) and memory the
         * kernel can lock with mlockall. */
        void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        c->freelist = calloc(c->count, sizeof(void *));
        if (base == MAP_FAILED || !c->freelist) {
            if (base != MAP_FAILED)
                munmap(base, bytes);
            free(c->freelist);
            c->freelist = NULL;
            p->nclasses = i;
            rv_bufpool_fini(p);
            rv_err("buffer pool: cannot allocate %zu bytes", bytes);
            return -ENOMEM;
        }
        c->base = base;
        for (unsigned k = 0; k < c->count; k++)
            c->freelist[k] = c->base + (size_t)k * c->size;
        c->nfree = c->count;
        p->total_bytes += bytes;
    }
    p->nclasses = n;
    return 0;
}

void rv_bufpool_fini(struct rv_bufpool *p)
{
    for (unsigned i = 0; i < p->nclasses; i++) {
        struct rv_bufclass *c = &p->cls[i];
        if (c->base)
            munmap(c->base, c->count * c->size);
        free(c->freelist);
    }
    memset(p, 0, sizeof *p);
}

void *rv_bufpool_get(struct rv_bufpool *p, size_t len)
{
    return rv_bufpool_get_max(p, len, SIZE_MAX);
}

void *rv_bufpool_get_max(struct rv_bufpool *p, size_t len, size_t max_class)
{
    if (len > p->max_size)
        return NULL;
    /* Smallest class that fits and has a free buffer; a bigger buffer is
     * better than waiting. */
    for (unsigned i = 0; i < p->nclasses; i++) {
        struct rv_bufclass *c = &p->cls[i];
        if (c->size > max_class)
            break;
        if (c->size >= len && c->nfree > 0)
            return c->freelist[--c->nfree];
    }
    return NULL;
}

size_t rv_bufpool_size(const struct rv_bufpool *p, const void *buf)
{
    const uint8_t *b = buf;
    for (unsigned i = 0; i < p->nclasses; i++) {
        const struct rv_bufclass *c = &p->cls[i];
        if (b >= c->base && b < c->base + c->count * c->size)
            return c->size;
    }
    return 0;
}

void rv_bufpool_put(struct rv_bufpool *p, void *buf)
{
    if (!buf)
        return;
    uint8_t *b = buf;
    for (unsigned i = 0; i < p->nclasses; i++) {
        struct rv_bufclass *c = &p->cls[i];
        if (b >= c->base && b < c->base + c->count * c->size) {
            c->freelist[c->nfree++] = buf;
            break;
        }
    }
    /* Wake every waiter: each retries its own allocation; one that still
     * finds nothing waits again.  Waiters are few (one per paused
     * connection), so this stays cheap. */
    struct rv_bufpool_waiter *w = p->waiters;
    p->waiters = NULL;
    while (w) {
        struct rv_bufpool_waiter *next = w->next;
        w->queued = 0;
        w->next = NULL;
        w->wake(w);
        w = next;
    }
}

void rv_bufpool_wait(struct rv_bufpool *p, struct rv_bufpool_waiter *w)
{
    if (w->queued)
        return;
    w->queued = 1;
    w->next = p->waiters;
    p->waiters = w;
}

void rv_bufpool_cancel_wait(struct rv_bufpool *p, struct rv_bufpool_waiter *w)
{
    if (!w->queued)
        return;
    for (struct rv_bufpool_waiter **pp = &p->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->queued = 0;
    w->next = NULL;
}
