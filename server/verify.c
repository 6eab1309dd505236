/* verify.c - online verify (see include/repvol/verify.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "repvol/log.h"
#include "repvol/repl_proto.h"
#include "repvol/util.h"
#include "repvol/verify.h"
#include "repvol/volume.h"

struct vchunk {
    struct rv_req req;
    struct rv_sendq_item item;
    struct rv_verify *vf;
    uint64_t seq;
    bool busy, sent, answered;
    uint8_t local[RV_VERIFY_CHUNK / 4096 * RV_VERIFY_DIGEST];
};

struct vrange { uint64_t off, len; };

struct rv_verify {
    struct rv_volume *v;
    struct rv_resync_link link;
    bool running, aborting, mark;
    uint64_t cursor, checked, mismatched_bytes, runs;
    uint64_t start_ns, end_ns;
    unsigned inflight;
    struct vchunk chunks[RV_VERIFY_INFLIGHT];
    struct vrange ranges[RV_VERIFY_MAX_RANGES];
    unsigned nranges;
    uint64_t nmismatch_ranges;
    void (*then)(void *ctx, bool marked);
    void *then_ctx;
    struct rv_op defer_op;
};

static void vf_pump(struct rv_verify *vf);
static void vchunk_free(struct vchunk *c);

void rv_verify_digest(const uint8_t *buf, uint32_t len, uint32_t granule, uint8_t *out)
{
    for (uint32_t i = 0; i * granule < len; i++) {
        uint8_t d[EVP_MAX_MD_SIZE];
        unsigned dl = 0;
        uint32_t n = RV_MIN(granule, len - i * granule);
        EVP_Digest(buf + (size_t)i * granule, n, d, &dl, EVP_sha256(), NULL);
        memcpy(out + (size_t)i * RV_VERIFY_DIGEST, d, RV_VERIFY_DIGEST);
    }
}

int rv_verify_create(struct rv_verify **out, struct rv_volume *v, const struct rv_resync_link *link)
{
    struct rv_verify *vf = calloc(1, sizeof *vf);
    if (!vf)
        return -ENOMEM;
    vf->v = v;
    vf->link = *link;
    for (unsigned i = 0; i < RV_VERIFY_INFLIGHT; i++)
        vf->chunks[i].vf = vf;
    *out = vf;
    return 0;
}

void rv_verify_destroy(struct rv_verify *vf) { free(vf); }

bool rv_verify_idle(const struct rv_verify *vf) { return !vf || vf->inflight == 0; }

int rv_verify_start(struct rv_verify *vf, bool mark, void (*then)(void *ctx, bool marked), void *ctx)
{
    if (vf->running)
        return -EBUSY;
    vf->running = true;
    vf->aborting = false;
    vf->mark = mark;
    vf->cursor = vf->checked = vf->mismatched_bytes = 0;
    vf->nranges = 0;
    vf->nmismatch_ranges = 0;
    vf->then = then;
    vf->then_ctx = ctx;
    vf->start_ns = rv_now_ns();
    vf->end_ns = 0;
    vf->runs++;
    rv_info("volume %s: online verify started%s", vf->v->meta.name, mark ? " (differences will be resynced)" : "");
    vf_pump(vf);
    return 0;
}

void rv_verify_abort(struct rv_verify *vf)
{
    if (!vf)
        return;
    /* Requests on the wire will never be answered now. */
    for (unsigned i = 0; i < RV_VERIFY_INFLIGHT; i++) {
        struct vchunk *c = &vf->chunks[i];
        if (c->busy && c->sent && !c->answered) {
            c->answered = true;
            vchunk_free(c);
        }
    }
    if (!vf->running)
        return;
    rv_warn("volume %s: online verify interrupted at %" PRIu64 " of %" PRIu64 " bytes", vf->v->meta.name,
            vf->cursor, vf->v->size);
    vf->aborting = true;
    vf->running = false;
    vf->end_ns = rv_now_ns();
}

static void record_mismatch(struct rv_verify *vf, uint64_t off, uint64_t len)
{
    vf->mismatched_bytes += len;
    if (vf->mark)
        rv_bitmap_mark(&vf->v->bm, off, len);
    /* Merge with the previous range when adjacent (chunks finish in order
     * most of the time; out of order they are simply separate ranges). */
    if (vf->nranges && vf->ranges[vf->nranges - 1].off + vf->ranges[vf->nranges - 1].len == off) {
        vf->ranges[vf->nranges - 1].len += len;
        return;
    }
    vf->nmismatch_ranges++;
    rv_warn("volume %s: verify: copies differ at offset %" PRIu64 " length %" PRIu64, vf->v->meta.name, off, len);
    if (vf->nranges < RV_VERIFY_MAX_RANGES)
        vf->ranges[vf->nranges++] = (struct vrange){ off, len };
}

static void vchunk_free(struct vchunk *c)
{
    struct rv_verify *vf = c->vf;
    if (c->req.buf)
        rv_bufpool_put(&vf->v->pool, c->req.buf);
    c->req.buf = NULL;
    c->busy = false;
    vf->inflight--;
    if (vf->link.idle && vf->inflight == 0)
        vf->link.idle(vf->link.ctx);
}

static int cmp_range(const void *a, const void *b)
{
    const struct vrange *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void vf_finish(struct rv_verify *vf)
{
    vf->running = false;
    vf->end_ns = rv_now_ns();
    qsort(vf->ranges, vf->nranges, sizeof vf->ranges[0], cmp_range);
    /* Merge ranges that touch after sorting. */
    unsigned n = 0;
    for (unsigned i = 0; i < vf->nranges; i++) {
        if (n && vf->ranges[n - 1].off + vf->ranges[n - 1].len == vf->ranges[i].off)
            vf->ranges[n - 1].len += vf->ranges[i].len;
        else
            vf->ranges[n++] = vf->ranges[i];
    }
    vf->nranges = n;
    char a[32], b[32];
    rv_info("volume %s: online verify done: %s checked, %s differ in %u range(s)", vf->v->meta.name,
            rv_format_size(vf->checked, a, sizeof a), rv_format_size(vf->mismatched_bytes, b, sizeof b), n);
    if (vf->then)
        vf->then(vf->then_ctx, vf->mark && vf->mismatched_bytes > 0);
}

bool rv_verify_answer(struct rv_verify *vf, uint64_t seq, int err, const uint8_t *payload, uint32_t len)
{
    if (!vf)
        return false;
    for (unsigned i = 0; i < RV_VERIFY_INFLIGHT; i++) {
        struct vchunk *c = &vf->chunks[i];
        if (!c->busy || c->seq != seq || c->answered || !c->sent)
            continue;
        c->answered = true;
        uint32_t gran = 1u << vf->v->bm.gran_shift;
        uint32_t n = (c->req.len + gran - 1) / gran;
        if (err || len != n * RV_VERIFY_DIGEST) {
            rv_err("volume %s: verify: bad digest answer for offset %" PRIu64, vf->v->meta.name, c->req.off);
        } else if (!vf->aborting) {
            for (uint32_t k = 0; k < n; k++) {
                if (memcmp(c->local + (size_t)k * RV_VERIFY_DIGEST, payload + (size_t)k * RV_VERIFY_DIGEST,
                           RV_VERIFY_DIGEST) != 0) {
                    uint64_t off = c->req.off + (uint64_t)k * gran;
                    record_mismatch(vf, off, RV_MIN((uint64_t)gran, c->req.off + c->req.len - off));
                }
            }
            vf->checked += c->req.len;
        }
        vchunk_free(c);
        vf_pump(vf);
        return true;
    }
    return false;
}

static void vchunk_sent(struct rv_sendq_item *it, int err)
{
    struct vchunk *c = RV_CONTAINER_OF(it, struct vchunk, item);
    c->sent = true;
    if (err) {
        c->answered = true;
        vchunk_free(c);
    }
}

static void vchunk_read_done(struct rv_req *req)
{
    struct vchunk *c = RV_CONTAINER_OF(req, struct vchunk, req);
    struct rv_verify *vf = c->vf;
    if (req->result < 0 || vf->aborting) {
        vchunk_free(c);
        vf_pump(vf);
        return;
    }
    rv_verify_digest(req->buf, req->len, 1u << vf->v->bm.gran_shift, c->local);
    /* Within the ordering list's protection: the request reaches the peer
     * before any later write to this range. */
    c->seq = vf->link.next_seq(vf->link.ctx);
    struct rv_repl_hdr h = { .type = RV_REPL_T_DIGEST_REQ, .seq = c->seq, .offset = req->off,
                             .length = req->len };
    rv_repl_encode_hdr(c->item.hdr, &h);
    c->item.hdr_len = RV_REPL_HDR_SIZE;
    c->item.data = NULL;
    c->item.data_len = 0;
    c->item.done = vchunk_sent;
    c->sent = c->answered = false;
    if (!vf->link.send(vf->link.ctx, &c->item))
        vchunk_free(c);
}

static void vf_pump(struct rv_verify *vf)
{
    struct rv_volume *v = vf->v;
    while (vf->running && !vf->aborting && vf->inflight < RV_VERIFY_INFLIGHT && vf->cursor < v->size) {
        uint32_t len = (uint32_t)RV_MIN((uint64_t)RV_VERIFY_CHUNK, v->size - vf->cursor);
        void *buf = rv_bufpool_get(&v->pool, len);
        if (!buf)
            return;     /* retried when a chunk finishes */
        struct vchunk *c = NULL;
        for (unsigned i = 0; i < RV_VERIFY_INFLIGHT; i++)
            if (!vf->chunks[i].busy) {
                c = &vf->chunks[i];
                break;
            }
        c->busy = true;
        c->seq = 0;
        c->sent = c->answered = false;
        vf->inflight++;
        memset(&c->req, 0, sizeof c->req);
        c->req.origin = RV_ORIGIN_RESYNC;
        c->req.type = RV_IO_READ;
        c->req.off = vf->cursor;
        c->req.len = len;
        c->req.buf = buf;
        c->req.done = vchunk_read_done;
        vf->cursor += len;
        rv_volume_submit(v, &c->req);
    }
    if (vf->running && !vf->aborting && vf->cursor >= v->size && vf->inflight == 0)
        vf_finish(vf);
}

void rv_verify_status(const struct rv_verify *vf, bool json, struct rv_strbuf *out)
{
    const char *state = !vf || vf->runs == 0 ? "never" : vf->running ? "running" : vf->aborting ? "interrupted" : "done";
    uint64_t size = vf ? vf->v->size : 0;
    double pct = size ? 100.0 * (double)(vf->running ? vf->cursor : vf->checked) / (double)size : 0;
    if (json) {
        rv_sb_printf(out, "{\"state\":\"%s\",\"percent\":%.1f,\"checked\":%" PRIu64 ",\"mismatched_bytes\":%" PRIu64
                     ",\"mismatched_ranges\":%" PRIu64 ",\"ranges\":[",
                     state, pct, vf ? vf->checked : 0, vf ? vf->mismatched_bytes : 0, vf ? vf->nmismatch_ranges : 0);
        for (unsigned i = 0; vf && i < vf->nranges; i++)
            rv_sb_printf(out, "%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 "}", i ? "," : "", vf->ranges[i].off,
                         vf->ranges[i].len);
        rv_sb_printf(out, "]}");
        return;
    }
    if (!vf || vf->runs == 0)
        return;
    char a[32];
    rv_sb_printf(out, "verify:      %s, %.1f%%, %s differ in %u range(s)\n", state, pct,
                 rv_format_size(vf->mismatched_bytes, a, sizeof a), vf->nranges);
    for (unsigned i = 0; i < vf->nranges && i < 16; i++)
        rv_sb_printf(out, "  differs:   offset %" PRIu64 " length %" PRIu64 "\n", vf->ranges[i].off,
                     vf->ranges[i].len);
}

void rv_verify_progress(const struct rv_verify *vf, struct rv_strbuf *out)
{
    const char *state = !vf || vf->runs == 0 ? "never" : vf->running ? "running" : vf->aborting ? "interrupted" : "done";
    uint64_t size = vf ? vf->v->size : 0;
    double pct = size ? 100.0 * (double)(vf->running ? vf->cursor : vf->checked) / (double)size : 0;
    rv_sb_printf(out, "verify %s %.1f %" PRIu64 "\n", state, pct, vf ? vf->mismatched_bytes : 0);
    for (unsigned i = 0; vf && i < vf->nranges; i++)
        rv_sb_printf(out, "range %" PRIu64 " %" PRIu64 "\n", vf->ranges[i].off, vf->ranges[i].len);
}
