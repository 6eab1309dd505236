/* volume.h - the volume engine: the one request type every frontend speaks.
 *
 * A frontend (NBD connection, ublk queue) decodes its wire request into a
 * struct rv_req and calls rv_volume_submit().  The engine checks bounds and
 * role, fans the request out to the local backend (and, with replication, to
 * each peer link), joins the completions and calls req->done exactly once,
 * from the event loop, with req->result = 0 or -errno.
 *
 * What is durable when req->done reports success (single node):
 *   WRITE         completed to the backend (page cache or device)
 *   WRITE + FUA   on stable storage (RWF_DSYNC)
 *   FLUSH         every write completed before the FLUSH was submitted is on
 *                 stable storage (fdatasync of the image file)
 *   TRIM / ZERO   completed (with FUA: stable)
 */
#ifndef REPVOL_VOLUME_H
#define REPVOL_VOLUME_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/backend.h"
#include "repvol/bufpool.h"
#include "repvol/loop.h"
#include "repvol/meta_format.h"

struct rv_volume;

struct rv_req {
    /* Filled by the frontend. */
    uint8_t type;               /* enum rv_io_type */
    uint8_t flags;              /* RV_IO_* */
    uint64_t off;
    uint32_t len;
    void *buf;                  /* READ/WRITE data, len bytes, from the volume's buffer pool */
    void (*done)(struct rv_req *req);
    int result;                 /* set before done() is called */

    /* Engine-private. */
    struct rv_volume *vol;
    struct rv_bio local;
    unsigned pending;           /* legs (local, peers) still running */
    uint64_t start_ns;
};

struct rv_volume_opts {
    enum rv_cache_mode cache;
    bool readonly;
    size_t max_request;         /* largest READ/WRITE accepted, bytes */
    size_t buffer_mem;          /* bytes preallocated for request buffers */
};

struct rv_volume_stats {
    uint64_t reads, writes, flushes, trims, zeroes;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;
    uint64_t inflight;
};

struct rv_volume {
    char path[4096];
    struct rv_meta meta;        /* decoded superblock */
    char uuid_str[40];          /* for log lines */
    uint64_t size;              /* bytes clients see */
    bool readonly;
    size_t max_request;
    struct rv_loop *loop;
    struct rv_backend *be;
    struct rv_bufpool pool;
    struct rv_volume_stats stats;
    int meta_fd;                /* start-up/shutdown superblock I/O only */
};

/* Open the image at path: read and check the metadata, open the backend,
 * preallocate buffers.  Logs the reason on failure.  Returns 0 or -errno. */
int rv_volume_open(struct rv_volume *v, struct rv_loop *loop, const char *path,
                   const struct rv_volume_opts *opts);

/* Start a request; req->done is always called later from the loop. */
void rv_volume_submit(struct rv_volume *v, struct rv_req *req);

/* Allocation map (see rv_backend_ops.extents). */
int rv_volume_extents(struct rv_volume *v, uint64_t off, uint64_t len,
                      struct rv_extent *ext, unsigned max);

/* Flush the image and record a clean shutdown.  No request may be in
 * flight.  Returns 0 or -errno. */
int rv_volume_close(struct rv_volume *v);

#endif
