/* test-backend.c - the io_uring loop, buffer pool, file backend and volume
 * engine, driven for real against image files in a temp directory.  Every
 * data check compares bytes read back through the engine with bytes read
 * from the file directly. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/log.h"
#include "repvol/volume.h"

#define VOL_SIZE (8u << 20)

static char tmpdir[256];
static char img[300];

struct waiter {
    struct rv_req req;
    struct rv_loop *loop;
    int done;
};

static void on_done(struct rv_req *req)
{
    struct waiter *w = (struct waiter *)req;
    w->done = 1;
    rv_loop_stop(w->loop);
}

/* Run one request to completion and return its result. */
static int run_req(struct rv_volume *v, uint8_t type, uint8_t flags, uint64_t off, uint32_t len, void *buf)
{
    struct waiter w;
    memset(&w, 0, sizeof w);
    w.loop = v->loop;
    w.req.type = type;
    w.req.flags = flags;
    w.req.off = off;
    w.req.len = len;
    w.req.buf = buf;
    w.req.done = on_done;
    v->loop->stopping = false;
    rv_volume_submit(v, &w.req);
    CU_ASSERT_EQUAL(w.done, 0);          /* never completes inline */
    CU_ASSERT_EQUAL(rv_loop_run(v->loop), 0);
    CU_ASSERT_EQUAL(w.done, 1);
    return w.req.result;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static int file_matches(uint64_t off, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n);
    int fd = open(img, O_RDONLY);
    ssize_t r = pread(fd, got, n, (off_t)off);
    close(fd);
    int ok = r == (ssize_t)n && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static uint64_t image_blocks(void)
{
    struct stat st;
    CU_ASSERT_EQUAL(stat(img, &st), 0);
    return (uint64_t)st.st_blocks;
}

static int setup_volume(struct rv_volume *v, struct rv_loop *l, enum rv_cache_mode cache, bool ro)
{
    struct rv_volume_opts o = { .cache = cache, .readonly = ro, .role = RV_ROLE_PRIMARY,
                                .max_request = 1u << 20,
                                .buffer_mem = 16u << 20 };
    CU_ASSERT_EQUAL_FATAL(rv_loop_init(l, 64), 0);
    return rv_volume_open(v, l, img, &o);
}

static void new_image(void)
{
    unlink(img);
    struct rv_meta m;
    CU_ASSERT_EQUAL_FATAL(rv_meta_create_image(img, VOL_SIZE, "t", 4096, 4096, &m), 0);
}

static void rw_roundtrip(enum rv_cache_mode cache)
{
    new_image();
    struct rv_loop l;
    struct rv_volume v;
    CU_ASSERT_EQUAL_FATAL(setup_volume(&v, &l, cache, false), 0);
    CU_ASSERT_EQUAL(v.size, VOL_SIZE);

    /* Aligned (direct-capable) and unaligned (page-cache fallback) writes. */
    struct { uint64_t off; uint32_t len; uint8_t flags; } cases[] = {
        { 0, 4096, 0 }, { 65536, 131072, RV_IO_FUA }, { 1000, 3000, 0 },
        { VOL_SIZE - 4096, 4096, 0 }, { 12345, 1, RV_IO_FUA }, { 4096 * 7 + 512, 512 * 9, 0 },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *w = rv_bufpool_get(&v.pool, cases[i].len);
        uint8_t *r = rv_bufpool_get(&v.pool, cases[i].len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        fill(w, cases[i].len, i + 1);
        CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, cases[i].flags, cases[i].off, cases[i].len, w), 0);
        memset(r, 0xEE, cases[i].len);
        CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, cases[i].off, cases[i].len, r), 0);
        CU_ASSERT(memcmp(w, r, cases[i].len) == 0);
        CU_ASSERT(file_matches(cases[i].off, w, cases[i].len));
        rv_bufpool_put(&v.pool, w);
        rv_bufpool_put(&v.pool, r);
    }
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_FLUSH, 0, 0, 0, NULL), 0);
    CU_ASSERT_EQUAL(v.stats.inflight, 0);
    CU_ASSERT_EQUAL(rv_volume_close(&v), 0);
    rv_loop_fini(&l);

    /* Clean shutdown was recorded. */
    int fd = open(img, O_RDONLY);
    struct rv_meta m;
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), 0);
    CU_ASSERT(m.flags & RV_META_F_CLEAN);
    CU_ASSERT_EQUAL(m.open_count, 1);
    close(fd);
}

static void test_rw_direct(void) { rw_roundtrip(RV_CACHE_DIRECT); }
static void test_rw_buffered(void) { rw_roundtrip(RV_CACHE_BUFFERED); }

static void test_trim_zero_extents(void)
{
    new_image();
    struct rv_loop l;
    struct rv_volume v;
    CU_ASSERT_EQUAL_FATAL(setup_volume(&v, &l, RV_CACHE_DIRECT, false), 0);
    struct rv_extent e[16];

    /* Fresh volume: one hole. */
    int n = rv_volume_extents(&v, 0, VOL_SIZE, e, 16);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(e[0].len, VOL_SIZE);
    CU_ASSERT(e[0].flags & RV_EXTENT_HOLE);

    uint32_t len = 1u << 20;
    uint8_t *w = rv_bufpool_get(&v.pool, len);
    uint8_t *r = rv_bufpool_get(&v.pool, len);
    uint8_t *zero = calloc(1, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    fill(w, len, 9);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, 0, 0, len, w), 0);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, 0, 2 * len, len, w), 0);

    n = rv_volume_extents(&v, 0, VOL_SIZE, e, 16);
    CU_ASSERT(n >= 3);
    CU_ASSERT_EQUAL(e[0].off, 0);
    CU_ASSERT_EQUAL(e[0].flags, 0);           /* data */
    CU_ASSERT(e[0].len >= len);

    /* TRIM the first 64 KiB: reads zero, is a hole again. */
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_TRIM, 0, 0, 65536, NULL), 0);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 0, len, r), 0);
    CU_ASSERT(memcmp(r, zero, 65536) == 0);
    CU_ASSERT(memcmp(r + 65536, w + 65536, len - 65536) == 0);
    n = rv_volume_extents(&v, 0, 65536, e, 16);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT(e[0].flags & RV_EXTENT_HOLE);

    /* WRITE_ZEROES with NO_HOLE: zeroes, space stays allocated (st_blocks;
     * SEEK_DATA may call unwritten extents holes). */
    uint64_t blocks0 = image_blocks();
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_ZERO, RV_IO_NO_HOLE, 2 * len, 65536, NULL), 0);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 2 * len, len, r), 0);
    CU_ASSERT(memcmp(r, zero, 65536) == 0);
    CU_ASSERT(memcmp(r + 65536, w + 65536, len - 65536) == 0);
    CU_ASSERT(image_blocks() >= blocks0);

    /* WRITE_ZEROES without NO_HOLE punches (frees space), with FUA and FAST_ZERO. */
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_ZERO, RV_IO_FUA | RV_IO_FAST_ZERO, 2 * len + 65536, 65536, NULL), 0);
    CU_ASSERT(image_blocks() < blocks0);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 2 * len, len, r), 0);
    CU_ASSERT(memcmp(r, zero, 2 * 65536) == 0);
    CU_ASSERT(memcmp(r + 2 * 65536, w + 2 * 65536, len - 2 * 65536) == 0);
    CU_ASSERT(file_matches(2 * len, r, len));

    free(zero);
    rv_bufpool_put(&v.pool, w);
    rv_bufpool_put(&v.pool, r);
    CU_ASSERT_EQUAL(rv_volume_close(&v), 0);
    rv_loop_fini(&l);
}

static void test_bounds_and_modes(void)
{
    new_image();
    struct rv_loop l;
    struct rv_volume v;
    CU_ASSERT_EQUAL_FATAL(setup_volume(&v, &l, RV_CACHE_DIRECT, false), 0);
    uint8_t *b = rv_bufpool_get(&v.pool, 8192);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, VOL_SIZE, 4096, b), -EINVAL);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, 0, VOL_SIZE - 4096, 8192, b), -EINVAL);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, 0, UINT64_MAX - 10, 4096, b), -EINVAL);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_TRIM, 0, VOL_SIZE - 1, 2, NULL), -EINVAL);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 0, (1u << 20) + 4096, b), -EOVERFLOW);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 0, 0, b), 0);
    CU_ASSERT_EQUAL(run_req(&v, 99, 0, 0, 4096, b), -EINVAL);
    CU_ASSERT_EQUAL(v.stats.inflight, 0);
    rv_bufpool_put(&v.pool, b);

    /* Second opener is refused while the first holds the image. */
    struct rv_loop l2;
    struct rv_volume v2;
    CU_ASSERT(setup_volume(&v2, &l2, RV_CACHE_DIRECT, false) < 0);
    rv_loop_fini(&l2);
    CU_ASSERT_EQUAL(rv_volume_close(&v), 0);
    rv_loop_fini(&l);

    /* Read-only: writes refused with EPERM, image untouched. */
    CU_ASSERT_EQUAL_FATAL(setup_volume(&v, &l, RV_CACHE_BUFFERED, true), 0);
    b = rv_bufpool_get(&v.pool, 4096);
    memset(b, 0x5A, 4096);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_WRITE, 0, 0, 4096, b), -EPERM);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_ZERO, 0, 0, 4096, NULL), -EPERM);
    CU_ASSERT_EQUAL(run_req(&v, RV_IO_READ, 0, 0, 4096, b), 0);
    uint8_t zero[4096] = { 0 };
    CU_ASSERT(memcmp(b, zero, 4096) == 0);
    rv_bufpool_put(&v.pool, b);
    CU_ASSERT_EQUAL(rv_volume_close(&v), 0);
    rv_loop_fini(&l);

    /* Garbage file is refused with a clear error. */
    int fd = open(img, O_WRONLY | O_TRUNC);
    CU_ASSERT(write(fd, "garbage", 7) == 7);
    close(fd);
    CU_ASSERT(setup_volume(&v, &l, RV_CACHE_DIRECT, false) < 0);
    rv_loop_fini(&l);
}

/* Many requests in flight at once, completing in any order. */
static unsigned concurrent_left;
static void conc_done(struct rv_req *req)
{
    CU_ASSERT_EQUAL(req->result, 0);
    if (--concurrent_left == 0)
        rv_loop_stop(req->vol->loop);
}

static void test_concurrent(void)
{
    new_image();
    struct rv_loop l;
    struct rv_volume v;
    CU_ASSERT_EQUAL_FATAL(setup_volume(&v, &l, RV_CACHE_DIRECT, false), 0);
    enum { N = 64, BS = 16384 };
    static struct rv_req reqs[N];
    void *bufs[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = rv_bufpool_get(&v.pool, BS);
        CU_ASSERT_PTR_NOT_NULL_FATAL(bufs[i]);
        fill(bufs[i], BS, 100 + i);
        memset(&reqs[i], 0, sizeof reqs[i]);
        reqs[i].type = RV_IO_WRITE;
        reqs[i].off = (uint64_t)((i * 37) % N) * BS;
        reqs[i].len = BS;
        reqs[i].buf = bufs[i];
        reqs[i].done = conc_done;
    }
    concurrent_left = N;
    l.stopping = false;
    for (int i = 0; i < N; i++)
        rv_volume_submit(&v, &reqs[i]);
    CU_ASSERT_EQUAL(rv_loop_run(&l), 0);
    CU_ASSERT_EQUAL(concurrent_left, 0);
    for (int i = 0; i < N; i++) {
        CU_ASSERT(file_matches(reqs[i].off, bufs[i], BS));
        rv_bufpool_put(&v.pool, bufs[i]);
    }
    CU_ASSERT_EQUAL(rv_volume_close(&v), 0);
    rv_loop_fini(&l);
}

static int woke;
static void wake_cb(struct rv_bufpool_waiter *w) { (void)w; woke++; }

static void test_bufpool(void)
{
    struct rv_bufpool p;
    CU_ASSERT_EQUAL_FATAL(rv_bufpool_init(&p, 1u << 20, 4u << 20), 0);
    CU_ASSERT(p.nclasses >= 2);
    void *a = rv_bufpool_get(&p, 1);
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_EQUAL((uintptr_t)a % 4096, 0);
    CU_ASSERT_PTR_NULL(rv_bufpool_get(&p, (1u << 20) + 1));
    /* Exhaust the largest class, then everything: get returns NULL. */
    void *held[4096];
    unsigned n = 0;
    void *b;
    while (n < 4096 && (b = rv_bufpool_get(&p, 1u << 20)) != NULL)
        held[n++] = b;
    CU_ASSERT(n >= 1);
    CU_ASSERT_PTR_NULL(rv_bufpool_get(&p, 1u << 20));
    struct rv_bufpool_waiter w = { .wake = wake_cb };
    woke = 0;
    rv_bufpool_wait(&p, &w);
    rv_bufpool_wait(&p, &w);              /* idempotent */
    rv_bufpool_put(&p, held[--n]);
    CU_ASSERT_EQUAL(woke, 1);
    rv_bufpool_put(&p, a);
    CU_ASSERT_EQUAL(woke, 1);             /* woken once only */
    b = rv_bufpool_get(&p, 1u << 20);
    CU_ASSERT_PTR_NOT_NULL(b);
    rv_bufpool_put(&p, b);
    while (n)
        rv_bufpool_put(&p, held[--n]);
    /* Every buffer came back: the whole pool can be taken again. */
    unsigned total = 0;
    for (unsigned i = 0; i < p.nclasses; i++) {
        CU_ASSERT_EQUAL(p.cls[i].nfree, p.cls[i].count);
        total += p.cls[i].count;
    }
    CU_ASSERT(total > 0);
    rv_bufpool_fini(&p);
}

/* rv_bufpool_get_max takes only classes up to the limit; rv_bufpool_size
 * names the class a buffer came from (the NBD frontend's per-connection
 * share of the pool is counted with it). */
static void test_bufpool_get_max(void)
{
    struct rv_bufpool p;
    CU_ASSERT_EQUAL_FATAL(rv_bufpool_init(&p, 1u << 20, 4u << 20), 0);
    void *small = rv_bufpool_get_max(&p, 4096, 4096);
    CU_ASSERT_PTR_NOT_NULL(small);
    CU_ASSERT_EQUAL(rv_bufpool_size(&p, small), 4096);
    CU_ASSERT_PTR_NULL(rv_bufpool_get_max(&p, 8192, 4096));     /* fits no allowed class */
    /* Take every buffer of 256 KiB or less: get_max then finds nothing,
     * while the unrestricted get still hands out a 1 MiB one. */
    void *held[4096];
    unsigned n = 0;
    void *b;
    while (n < RV_ARRAY_SIZE(held) && (b = rv_bufpool_get_max(&p, 1, 256u << 10)) != NULL) {
        CU_ASSERT(rv_bufpool_size(&p, b) <= (256u << 10));
        held[n++] = b;
    }
    CU_ASSERT(n > 0 && n < RV_ARRAY_SIZE(held));
    b = rv_bufpool_get(&p, 1);
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_EQUAL(rv_bufpool_size(&p, b), 1u << 20);
    rv_bufpool_put(&p, b);
    while (n > 0)
        rv_bufpool_put(&p, held[--n]);
    rv_bufpool_put(&p, small);
    CU_ASSERT_EQUAL(rv_bufpool_size(&p, &n), 0);                  /* not from the pool */
    rv_bufpool_fini(&p);
}

int main(void)
{
    rv_log_init("test-backend", RV_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "%s/repvol-test-backend.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return 1;
    snprintf(img, sizeof img, "%s/vol.img", tmpdir);
    static const struct unit_test tests[] = {
        { "buffer pool", test_bufpool },
        { "buffer pool: get_max and size", test_bufpool_get_max },
        { "read/write round trip, O_DIRECT", test_rw_direct },
        { "read/write round trip, buffered", test_rw_buffered },
        { "trim, write-zeroes, extents", test_trim_zero_extents },
        { "bounds, read-only, locking, garbage", test_bounds_and_modes },
        { "64 concurrent writes", test_concurrent },
    };
    int rc = UNIT_RUN("backend", NULL, NULL, tests);
    unlink(img);
    rmdir(tmpdir);
    return rc;
}
