/* bitmap.c - dirty bitmap and activity log (see include/repvol/bitmap.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repvol/bitmap.h"
#include "repvol/log.h"
#include "repvol/util.h"

#define PAGE 4096u

static unsigned ilog2(uint64_t v)
{
    unsigned r = 0;
    while (v > 1) {
        v >>= 1;
        r++;
    }
    return r;
}

int rv_bitmap_load(struct rv_bitmap *bm, int fd, uint64_t area_off, uint64_t area_len,
                   uint64_t data_size, uint32_t granularity)
{
    memset(bm, 0, sizeof *bm);
    bm->gran_shift = ilog2(granularity);
    bm->nbits = (data_size + granularity - 1) >> bm->gran_shift;
    bm->nbytes = area_len;
    if ((bm->nbits + 7) / 8 > area_len || area_len % PAGE)
        return -EINVAL;
    bm->nextents = (data_size + (1u << RV_AL_EXTENT_SHIFT) - 1) >> RV_AL_EXTENT_SHIFT;
    if (posix_memalign((void **)&bm->disk, PAGE, area_len) != 0)
        return -ENOMEM;
    bm->mem = malloc(area_len);
    bm->page_dirty = calloc(area_len / PAGE, 1);
    bm->ext_inflight = calloc(bm->nextents, sizeof *bm->ext_inflight);
    bm->ext_hot = calloc(bm->nextents, 1);
    bm->ext_lru = malloc(RV_AL_EXTENTS * sizeof *bm->ext_lru);
    if (!bm->mem || !bm->page_dirty || !bm->ext_inflight || !bm->ext_hot || !bm->ext_lru) {
        rv_bitmap_free(bm);
        return -ENOMEM;
    }
    for (uint64_t done = 0; done < area_len;) {
        ssize_t n = pread(fd, bm->disk + done, area_len - done, (off_t)(area_off + done));
        if (n <= 0) {
            int e = n < 0 ? -errno : -EIO;
            rv_bitmap_free(bm);
            return e;
        }
        done += (uint64_t)n;
    }
    /* Bits past the end of the volume are never set. */
    for (uint64_t b = bm->nbits; b < area_len * 8 && b < bm->nbits + 8; b++)
        bm->disk[b >> 3] &= (uint8_t)~(1u << (b & 7));
    memset(bm->disk + (bm->nbits + 7) / 8, 0, area_len - (bm->nbits + 7) / 8);
    memcpy(bm->mem, bm->disk, area_len);
    for (uint64_t i = 0; i < (bm->nbits + 7) / 8; i++)
        bm->set_bits += (uint64_t)__builtin_popcount(bm->mem[i]);
    for (unsigned i = 0; i < RV_AL_EXTENTS; i++)
        bm->ext_lru[i] = UINT32_MAX;
    return 0;
}

void rv_bitmap_free(struct rv_bitmap *bm)
{
    free(bm->disk);
    free(bm->mem);
    free(bm->page_dirty);
    free(bm->ext_inflight);
    free(bm->ext_hot);
    free(bm->ext_lru);
    memset(bm, 0, sizeof *bm);
}

static void disk_page_dirty(struct rv_bitmap *bm, uint64_t byte)
{
    uint64_t page = byte / PAGE;
    if (!bm->page_dirty[page]) {
        bm->page_dirty[page] = 1;
        bm->dirty_pages++;
    }
}

/* Set or clear bits [first, last] in one array. */
static uint64_t set_range(uint8_t *a, uint64_t first, uint64_t last, bool on)
{
    uint64_t changed = 0;
    for (uint64_t b = first; b <= last; b++) {
        uint8_t m = (uint8_t)(1u << (b & 7));
        uint8_t *p = &a[b >> 3];
        if (((*p & m) != 0) != on) {
            *p = on ? (uint8_t)(*p | m) : (uint8_t)(*p & ~m);
            changed++;
        }
        /* whole bytes at a time where possible */
        if ((b & 7) == 7 && b + 8 <= last) {
            while (b + 8 <= last && (a[(b + 1) >> 3] == (on ? 0xff : 0x00)))
                b += 8;
        }
    }
    return changed;
}

static void sync_disk_range(struct rv_bitmap *bm, uint64_t first, uint64_t last)
{
    /* disk = mem | hot extents, for the bytes holding [first, last]. */
    uint64_t per_ext = (uint64_t)1 << (RV_AL_EXTENT_SHIFT - bm->gran_shift);
    for (uint64_t byte = first >> 3; byte <= last >> 3; byte++) {
        uint8_t v = bm->mem[byte];
        uint64_t b0 = byte * 8;
        for (unsigned k = 0; k < 8 && b0 + k < bm->nbits; k++) {
            uint64_t ext = (b0 + k) / per_ext;
            if (bm->ext_hot[ext])
                v |= (uint8_t)(1u << k);
        }
        if (bm->disk[byte] != v) {
            bm->disk[byte] = v;
            disk_page_dirty(bm, byte);
        }
    }
}

void rv_bitmap_mark(struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = rv_bitmap_first(bm, off), last = rv_bitmap_last(bm, off, len);
    if (last >= bm->nbits)
        last = bm->nbits - 1;
    bm->set_bits += set_range(bm->mem, first, last, true);
    sync_disk_range(bm, first, last);
}

void rv_bitmap_clear(struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = rv_bitmap_first(bm, off), last = rv_bitmap_last(bm, off, len);
    if (last >= bm->nbits)
        last = bm->nbits - 1;
    bm->set_bits -= set_range(bm->mem, first, last, false);
    sync_disk_range(bm, first, last);
}

void rv_bitmap_mark_all(struct rv_bitmap *bm)
{
    if (bm->nbits)
        rv_bitmap_mark(bm, 0, bm->nbits << bm->gran_shift);
}

void rv_bitmap_clear_all(struct rv_bitmap *bm)
{
    if (bm->nbits)
        rv_bitmap_clear(bm, 0, bm->nbits << bm->gran_shift);
}

/* Make extent e hot, evicting the least recently hot idle one if full. */
static void al_make_hot(struct rv_bitmap *bm, uint32_t e)
{
    uint64_t per_ext = (uint64_t)1 << (RV_AL_EXTENT_SHIFT - bm->gran_shift);
    if (bm->hot_count == RV_AL_EXTENTS) {
        /* Oldest first; an extent with writes in flight stays. */
        for (unsigned i = 0; i < RV_AL_EXTENTS; i++) {
            uint32_t old = bm->ext_lru[i];
            if (old != UINT32_MAX && bm->ext_inflight[old] == 0) {
                memmove(&bm->ext_lru[i], &bm->ext_lru[i + 1], (RV_AL_EXTENTS - 1 - i) * sizeof *bm->ext_lru);
                bm->ext_lru[RV_AL_EXTENTS - 1] = UINT32_MAX;
                bm->ext_hot[old] = 0;
                bm->hot_count--;
                uint64_t first = old * per_ext, last = RV_MIN(first + per_ext, bm->nbits) - 1;
                sync_disk_range(bm, first, last);
                break;
            }
        }
        /* All hot extents busy: run over the limit rather than stall. */
    }
    if (bm->hot_count < RV_AL_EXTENTS)
        bm->ext_lru[bm->hot_count] = e;
    bm->hot_count++;
    bm->ext_hot[e] = 1;
    bm->al_transactions++;
    uint64_t first = e * per_ext, last = RV_MIN(first + per_ext, bm->nbits) - 1;
    sync_disk_range(bm, first, last);
}

bool rv_bitmap_al_begin(struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    bool ready = true;
    if (len == 0)
        len = 1;
    uint64_t e0 = off >> RV_AL_EXTENT_SHIFT, e1 = (off + len - 1) >> RV_AL_EXTENT_SHIFT;
    for (uint64_t e = e0; e <= e1 && e < bm->nextents; e++) {
        if (!bm->ext_hot[e]) {
            al_make_hot(bm, (uint32_t)e);
            ready = false;
        }
        bm->ext_inflight[e]++;
    }
    return ready;
}

void rv_bitmap_al_end(struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    if (len == 0)
        len = 1;
    uint64_t e0 = off >> RV_AL_EXTENT_SHIFT, e1 = (off + len - 1) >> RV_AL_EXTENT_SHIFT;
    for (uint64_t e = e0; e <= e1 && e < bm->nextents; e++)
        if (bm->ext_inflight[e])
            bm->ext_inflight[e]--;
}

void rv_bitmap_al_hold(struct rv_bitmap *bm, uint64_t off, uint64_t len)
{
    if (len == 0)
        len = 1;
    uint64_t e0 = off >> RV_AL_EXTENT_SHIFT, e1 = (off + len - 1) >> RV_AL_EXTENT_SHIFT;
    for (uint64_t e = e0; e <= e1 && e < bm->nextents; e++)
        bm->ext_inflight[e]++;
}

uint64_t rv_bitmap_next_set(const struct rv_bitmap *bm, uint64_t from)
{
    for (uint64_t b = from; b < bm->nbits;) {
        if ((b & 63) == 0 && b + 64 <= bm->nbits) {
            uint64_t w;
            memcpy(&w, &bm->mem[b >> 3], 8);
            if (w == 0) {
                b += 64;
                continue;
            }
        }
        if (rv_bitmap_test(bm, b))
            return b;
        b++;
    }
    return bm->nbits;
}

uint64_t rv_bitmap_run_end(const struct rv_bitmap *bm, uint64_t from, uint64_t max_bits)
{
    uint64_t b = from;
    while (b < bm->nbits && b - from < max_bits && rv_bitmap_test(bm, b))
        b++;
    return b;
}

void rv_bitmap_settle(struct rv_bitmap *bm)
{
    for (uint64_t i = 0; i < bm->nextents; i++)
        bm->ext_hot[i] = 0;
    for (unsigned i = 0; i < RV_AL_EXTENTS; i++)
        bm->ext_lru[i] = UINT32_MAX;
    bm->hot_count = 0;
    for (uint64_t byte = 0; byte < bm->nbytes; byte++) {
        if (bm->disk[byte] != bm->mem[byte]) {
            bm->disk[byte] = bm->mem[byte];
            disk_page_dirty(bm, byte);
        }
    }
}

unsigned rv_bitmap_queue_writes(struct rv_bitmap *bm, struct rv_loop *loop, int fd, uint64_t area_off)
{
    unsigned n = 0;
    for (uint64_t page = 0; bm->dirty_pages && page < bm->nbytes / PAGE; page++) {
        if (!bm->page_dirty[page])
            continue;
        bm->page_dirty[page] = 0;
        bm->dirty_pages--;
        struct io_uring_sqe *sqe = rv_loop_sqe(loop, NULL);
        io_uring_prep_write(sqe, fd, bm->disk + page * PAGE, PAGE, area_off + page * PAGE);
        sqe->flags |= IOSQE_IO_LINK;
        n++;
    }
    return n;
}

int rv_bitmap_write_sync(struct rv_bitmap *bm, int fd, uint64_t area_off)
{
    for (uint64_t page = 0; bm->dirty_pages && page < bm->nbytes / PAGE; page++) {
        if (!bm->page_dirty[page])
            continue;
        if (pwrite(fd, bm->disk + page * PAGE, PAGE, (off_t)(area_off + page * PAGE)) != PAGE)
            return errno ? -errno : -EIO;
        bm->page_dirty[page] = 0;
        bm->dirty_pages--;
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}
