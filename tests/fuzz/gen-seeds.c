/* gen-seeds.c - write the constructed seed corpora of tests/fuzz/corpus/.
 *
 *   gen-seeds OUTDIR        writes OUTDIR/<harness>/<seed>
 *
 * Built and run by make-seeds.sh.  Every seed is encoded with the real
 * encoders of librepvol-core (nbd_encode_*, rv_repl_encode_*, rv_meta_encode)
 * so the bytes are exact and follow the formats when they change.  The input
 * layouts (control prefixes) are those documented at the top of each
 * harness and in tests/fuzz/README.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "repvol/meta_format.h"
#include "repvol/nbd_handshake.h"
#include "repvol/nbd_proto.h"
#include "repvol/repl_proto.h"
#include "repvol/wire.h"

static const char *outdir;

/* ------------------------------------------------------------ byte buffer */

struct buf {
    uint8_t d[65536];
    size_t n;
};

static void die(const char *msg)
{
    fprintf(stderr, "gen-seeds: %s\n", msg);
    exit(1);
}

static uint8_t *room(struct buf *b, size_t n)
{
    if (n > sizeof b->d - b->n)
        die("seed too large");
    uint8_t *p = b->d + b->n;
    b->n += n;
    return p;
}

static void put(struct buf *b, const void *p, size_t n) { memcpy(room(b, n), p, n); }
static void put8(struct buf *b, uint8_t v) { *room(b, 1) = v; }
static void put16(struct buf *b, uint16_t v) { rv_put_be16(room(b, 2), v); }
static void put32(struct buf *b, uint32_t v) { rv_put_be32(room(b, 4), v); }
static void put64(struct buf *b, uint64_t v) { rv_put_be64(room(b, 8), v); }
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }
static void fill(struct buf *b, uint8_t v, size_t n) { memset(room(b, n), v, n); }

static void save(const char *harness, const char *name, const struct buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        die("mkdir failed");
    snprintf(path, sizeof path, "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->d, 1, b->n, f) != b->n || fclose(f) != 0)
        die("cannot write a seed");
}

/* ============================================================ NBD requests */

static void req(struct buf *b, uint16_t type, uint16_t flags, uint64_t off, uint32_t count)
{
    static uint64_t cookie = 1;
    struct nbd_request r = { .flags = flags, .type = type, .cookie = cookie++,
                             .offset = off, .count = count };
    nbd_encode_request(room(b, NBD_REQUEST_SIZE), &r);
}

static void write_req(struct buf *b, uint16_t flags, uint64_t off, uint32_t count)
{
    req(b, NBD_CMD_WRITE, flags, off, count);
    fill(b, 0xab, count);
}

/* fuzz-nbd-request prefix: struct nbd_limits. */
static void limits(struct buf *b, uint64_t size, uint32_t max_payload, uint16_t tflags,
                   bool structured, bool base_allocation)
{
    put64(b, size);
    put32(b, max_payload);
    put16(b, tflags);
    put8(b, (uint8_t)(structured | base_allocation << 1));
}

#define TF_ALL (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |            \
                NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | \
                NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE)
#define GiB (UINT64_C(1) << 30)
#define MiB (UINT32_C(1) << 20)

static void gen_requests(void)
{
    const char *h = "fuzz-nbd-request";
    struct buf b;

    /* Everything negotiated, every command once, each valid. */
    b.n = 0;
    limits(&b, GiB, 32 * MiB, TF_ALL, true, true);
    req(&b, NBD_CMD_READ, 0, 0, 4096);
    write_req(&b, 0, 4096, 512);
    write_req(&b, NBD_CMD_FLAG_FUA, GiB - 512, 512);
    req(&b, NBD_CMD_FLUSH, 0, 0, 0);
    req(&b, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 1 << 20, 1 << 20);
    req(&b, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO, 0, 65536);
    req(&b, NBD_CMD_CACHE, 0, 0, 1 << 20);
    req(&b, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 1u << 30);
    req(&b, NBD_CMD_READ, NBD_CMD_FLAG_DF, 8192, 32 * MiB);
    req(&b, NBD_CMD_DISC, 0, 0, 0);
    save(h, "all-commands", &b);

    /* Read-only export, simple replies, spec default max payload: most
     * requests are rejected, a rejected WRITE's payload is skipped. */
    b.n = 0;
    limits(&b, MiB, 0, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH,
           false, false);
    req(&b, NBD_CMD_READ, 0, 0, 512);
    write_req(&b, 0, 0, 1024);                      /* EPERM, payload discarded */
    req(&b, NBD_CMD_READ, 0, MiB - 512, 1024);      /* past the end: EINVAL */
    req(&b, NBD_CMD_READ, 0, 0, 33 * MiB);          /* above max, simple: EINVAL */
    req(&b, NBD_CMD_TRIM, 0, 0, 512);               /* not advertised */
    req(&b, NBD_CMD_BLOCK_STATUS, 0, 0, 512);       /* not negotiated */
    req(&b, NBD_CMD_FLUSH, 0, 512, 0);              /* FLUSH with an offset */
    req(&b, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512);/* FUA not advertised */
    req(&b, NBD_CMD_DISC, 0, 0, 0);
    save(h, "read-only-simple", &b);

    /* Payload limits: a WRITE above max but under the DoS floor is drained,
     * one above both disconnects. */
    b.n = 0;
    limits(&b, 64 * GiB, MiB, TF_ALL, true, false);
    req(&b, NBD_CMD_READ, 0, 0, 2 * MiB);           /* EOVERFLOW */
    write_req(&b, 0, 0, 600);
    req(&b, NBD_CMD_WRITE, 0, 0, 2 * MiB);          /* EINVAL, payload follows */
    fill(&b, 0xcd, 2000);
    req(&b, NBD_CMD_WRITE, 0, 0, 64 * MiB);         /* DISCONNECT */
    save(h, "payload-limits", &b);

    /* Bounds and unknown values. */
    b.n = 0;
    limits(&b, GiB, 32 * MiB, TF_ALL, true, true);
    req(&b, NBD_CMD_READ, 0, UINT64_MAX, 1);        /* offset + count wraps */
    req(&b, NBD_CMD_WRITE_ZEROES, 0, GiB, 1);       /* ENOSPC */
    req(&b, NBD_CMD_READ, 0, 0, 0);                 /* count 0 */
    req(&b, 9, 0, 0, 512);                          /* unknown command */
    req(&b, NBD_CMD_READ, 0x40, 0, 512);            /* unknown flag */
    req(&b, NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 0);  /* DF on WRITE */
    req(&b, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_NO_HOLE, 0, 512);
    req(&b, NBD_CMD_READ, 0, GiB - 4096, 4096);     /* last block: fine */
    put32(&b, 0x12345678);                          /* bad magic: hang up */
    fill(&b, 0, 24);
    save(h, "bounds-and-bad-magic", &b);

    /* Server replies, for the client-side parsers run on the same bytes. */
    b.n = 0;
    limits(&b, GiB, 0, TF_ALL, true, true);
    nbd_encode_simple_reply(room(&b, NBD_SIMPLE_REPLY_SIZE), 0, 1);
    nbd_encode_offset_data(room(&b, NBD_OFFSET_DATA_PREFIX_SIZE), 0, 2, 4096, 16);
    fill(&b, 0x11, 16);
    nbd_encode_offset_hole(room(&b, NBD_OFFSET_HOLE_SIZE), 0, 2, 8192, 4096);
    {
        uint8_t tmp[128];
        size_t n = nbd_encode_error_chunk(tmp, sizeof tmp, NBD_REPLY_FLAG_DONE, 3, NBD_EIO,
                                          "I/O error");
        put(&b, tmp, n);
        struct nbd_block_desc d[2] = { { 4096, 0 }, { 8192, NBD_STATE_HOLE | NBD_STATE_ZERO } };
        n = nbd_encode_block_status(tmp, sizeof tmp, NBD_REPLY_FLAG_DONE, 4, 1, d, 2);
        put(&b, tmp, n);
    }
    nbd_encode_none_chunk(room(&b, NBD_NONE_CHUNK_SIZE), 2);
    nbd_encode_simple_reply(room(&b, NBD_SIMPLE_REPLY_SIZE), NBD_EINVAL, 5);
    save(h, "server-replies", &b);

    b.n = 0;
    limits(&b, GiB, 0, TF_ALL, false, false);
    put64(&b, NBD_OPT_REPLY_MAGIC);
    put32(&b, NBD_OPT_GO);
    put32(&b, NBD_REP_ERR_UNKNOWN);
    put32(&b, 5);
    puts_(&b, "nope!");
    save(h, "option-reply", &b);
}

/* ========================================================== NBD handshake */

/* fuzz-nbd-handshake prefix (see the harness): export config, tflags,
 * shutdown point, chunk seed, drain policy, chunk size. */
enum {
    EXP_NAME_VOL0 = 2, EXP_NAME_LONG = 3,
    EXP_DESC_SHORT = 2 << 2, EXP_DESC_LONG = 3 << 2,
    EXP_BLOCKS = 0x10, EXP_BLOCKS_1M = 0x20,
};
/* What repvold advertises for a writable volume (server/nbd_server.c). */
#define TF_REPVOLD (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |      \
                    NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_TRIM |   \
                    NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO)
#define EXP_REPVOLD (EXP_NAME_VOL0 | EXP_DESC_SHORT | EXP_BLOCKS | EXP_BLOCKS_1M)

static void hs_prefix(struct buf *b, uint8_t exp, uint16_t tflags, uint8_t shutdown_at,
                      uint16_t seed, uint8_t drain, uint8_t chunk)
{
    b->n = 0;
    put8(b, exp);
    put16(b, tflags);
    put8(b, shutdown_at);
    put16(b, seed);
    put8(b, drain);
    put8(b, chunk);
}

static void opt(struct buf *b, uint32_t option, const void *data, uint32_t len)
{
    nbd_encode_option(room(b, NBD_OPT_HEADER_SIZE), option, len);
    if (len)
        put(b, data, len);
}

/* NBD_OPT_INFO / NBD_OPT_GO: name, then information requests. */
static void opt_info_go(struct buf *b, uint32_t option, const char *name, int nreq, ...)
{
    uint32_t nl = (uint32_t)strlen(name);
    nbd_encode_option(room(b, NBD_OPT_HEADER_SIZE), option, 4 + nl + 2 + 2 * (uint32_t)nreq);
    put32(b, nl);
    puts_(b, name);
    put16(b, (uint16_t)nreq);
    va_list ap;
    va_start(ap, nreq);
    for (int i = 0; i < nreq; i++)
        put16(b, (uint16_t)va_arg(ap, int));
    va_end(ap);
}

/* NBD_OPT_{LIST,SET}_META_CONTEXT: name, then queries. */
static void opt_meta(struct buf *b, uint32_t option, const char *name, int nq, ...)
{
    uint32_t len = 4 + (uint32_t)strlen(name) + 4;
    va_list ap;
    va_start(ap, nq);
    for (int i = 0; i < nq; i++)
        len += 4 + (uint32_t)strlen(va_arg(ap, const char *));
    va_end(ap);
    nbd_encode_option(room(b, NBD_OPT_HEADER_SIZE), option, len);
    put32(b, (uint32_t)strlen(name));
    puts_(b, name);
    put32(b, (uint32_t)nq);
    va_start(ap, nq);
    for (int i = 0; i < nq; i++) {
        const char *q = va_arg(ap, const char *);
        put32(b, (uint32_t)strlen(q));
        puts_(b, q);
    }
    va_end(ap);
}

static void client_flags(struct buf *b, uint32_t f) { put32(b, f); }

static void gen_handshake(void)
{
    const char *h = "fuzz-nbd-handshake";
    const uint32_t fl = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
    struct buf b;

    /* What qemu-img/qemu-nbd's client sends: structured replies,
     * base:allocation, GO asking for block sizes; then some I/O. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    opt_meta(&b, NBD_OPT_SET_META_CONTEXT, "vol0", 1, "base:allocation");
    opt_info_go(&b, NBD_OPT_GO, "vol0", 1, NBD_INFO_BLOCK_SIZE);
    req(&b, NBD_CMD_BLOCK_STATUS, 0, 0, 65536);
    req(&b, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096);
    write_req(&b, NBD_CMD_FLAG_FUA, 4096, 512);
    req(&b, NBD_CMD_FLUSH, 0, 0, 0);
    req(&b, NBD_CMD_DISC, 0, 0, 0);
    save(h, "qemu-style-go", &b);

    /* The same conversation fed byte by byte with partial drains. */
    b.d[4] = 0x12, b.d[5] = 0x34, b.d[6] = 1, b.d[7] = 0;
    save(h, "qemu-style-go-bytewise", &b);

    /* Default export "", a LIST first, INFO with every request type (and an
     * unknown one), then GO in chunks of up to 65 bytes. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0x0101, 1, 1);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_LIST, NULL, 0);
    opt_info_go(&b, NBD_OPT_INFO, "", 4, NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
                NBD_INFO_BLOCK_SIZE, 77);
    opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    opt_meta(&b, NBD_OPT_LIST_META_CONTEXT, "", 0);
    opt_meta(&b, NBD_OPT_LIST_META_CONTEXT, "vol0", 2, "base:", "qemu:dirty-bitmap:x");
    opt_info_go(&b, NBD_OPT_GO, "", 1, NBD_INFO_NAME);
    req(&b, NBD_CMD_READ, 0, 0, 512);
    save(h, "list-info-go", &b);

    /* Old style end: NBD_OPT_EXPORT_NAME, with and without the 124 zeros. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, NBD_FLAG_C_FIXED_NEWSTYLE);
    opt(&b, NBD_OPT_EXPORT_NAME, "vol0", 4);
    req(&b, NBD_CMD_READ, 0, 0, 512);
    save(h, "export-name-zeroes", &b);
    hs_prefix(&b, EXP_NAME_VOL0, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, 0, 7, 0, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_EXPORT_NAME, "", 0);
    write_req(&b, 0, 0, 16);
    save(h, "export-name-read-only", &b);

    /* Errors the client can recover from, then a successful GO. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0x0202, 0, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_STARTTLS, NULL, 0);
    opt(&b, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    opt(&b, NBD_OPT_PEEK_EXPORT, NULL, 0);
    opt(&b, 0x1234, "xyz", 3);
    opt_meta(&b, NBD_OPT_SET_META_CONTEXT, "", 1, "base:allocation");  /* before SR */
    opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);                        /* twice */
    opt(&b, NBD_OPT_LIST, "x", 1);                                     /* data on LIST */
    opt_meta(&b, NBD_OPT_SET_META_CONTEXT, "", 1, "nocolon");
    opt_meta(&b, NBD_OPT_SET_META_CONTEXT, "other", 1, "base:allocation");
    opt(&b, NBD_OPT_INFO, "\0\0\0\4vol", 7);                           /* truncated */
    opt_info_go(&b, NBD_OPT_GO, "nope", 0);                            /* unknown export */
    opt_meta(&b, NBD_OPT_SET_META_CONTEXT, "", 1, "base:allocation");
    opt_info_go(&b, NBD_OPT_GO, "vol0", 0);
    req(&b, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 4096);
    save(h, "recoverable-errors", &b);

    /* An option too long to buffer: answered at once, its data skipped. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0x0303, 0, 40);
    client_flags(&b, fl);
    nbd_encode_option(room(&b, NBD_OPT_HEADER_SIZE), NBD_OPT_INFO, NBD_HS_MAX_OPT_LEN + 1);
    fill(&b, 'z', NBD_HS_MAX_OPT_LEN + 1);
    opt_info_go(&b, NBD_OPT_GO, "vol0", 0);
    save(h, "too-big-option", &b);

    /* Pipelined LISTs with 4 KiB names and descriptions: the output buffer
     * fills up and input is refused until it is drained. */
    hs_prefix(&b, EXP_NAME_LONG | EXP_DESC_LONG, TF_REPVOLD, 0, 0x0404, 1, 255);
    client_flags(&b, fl);
    for (int i = 0; i < 6; i++)
        opt(&b, NBD_OPT_LIST, NULL, 0);
    opt_info_go(&b, NBD_OPT_GO, "", 2, NBD_INFO_NAME, NBD_INFO_DESCRIPTION);
    save(h, "pipelined-backpressure", &b);

    /* The server starts shutting down before the third feed. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 3, 0x0505, 0, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    opt(&b, NBD_OPT_LIST, NULL, 0);
    opt_info_go(&b, NBD_OPT_GO, "", 0);
    opt(&b, NBD_OPT_EXPORT_NAME, "", 0);
    save(h, "shutdown", &b);

    /* A replication secondary: the export exists but is unavailable. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0x80, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_LIST, NULL, 0);
    opt_info_go(&b, NBD_OPT_INFO, "", 1, NBD_INFO_NAME);
    opt_info_go(&b, NBD_OPT_GO, "vol0", 0);
    opt(&b, NBD_OPT_EXPORT_NAME, "vol0", 4);
    save(h, "secondary-unavailable", &b);

    /* A client that never ends the handshake: hung up on after
     * NBD_HS_MAX_OPTIONS options. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl);
    for (unsigned i = 0; i <= NBD_HS_MAX_OPTIONS; i++)
        opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    save(h, "too-many-options", &b);

    /* Fatal: ABORT, bad option magic, unknown client flags, non-fixed
     * newstyle, an over-long EXPORT_NAME. */
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl);
    opt(&b, NBD_OPT_ABORT, "bye!", 4);
    save(h, "abort", &b);
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl);
    puts_(&b, "IHAVEOPX");
    put32(&b, NBD_OPT_GO);
    put32(&b, 0);
    save(h, "bad-option-magic", &b);
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl | 0x80);
    save(h, "unknown-client-flags", &b);
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, 0);
    save(h, "not-fixed-newstyle", &b);
    hs_prefix(&b, EXP_REPVOLD, TF_REPVOLD, 0, 0, 0, 0);
    client_flags(&b, fl);
    nbd_encode_option(room(&b, NBD_OPT_HEADER_SIZE), NBD_OPT_EXPORT_NAME, NBD_MAX_STRING + 1);
    save(h, "export-name-too-long", &b);
}

/* ========================================================== replication */

static struct rv_repl_hello hello(uint32_t node, uint32_t role, uint32_t mode)
{
    struct rv_repl_hello h = {
        .proto_min = 1, .proto_max = RV_REPL_PROTO_VERSION,
        .uuid = { 0x6b, 0x8e, 0x2a, 0x41, 0x95, 0x0c, 0x4f, 0x1e,
                  0x8d, 0x33, 0x5a, 0x27, 0xc0, 0x1d, 0x9e, 0x74 },
        .data_size = UINT64_C(1) << 30, .block_size = 4096, .node_id = node,
        .role = role, .disk_state = RV_DISK_UPTODATE,
        .current_gen = UINT64_C(0x1122334455667788), .bitmap_gen = 0,
        .history_gen = { UINT64_C(0x0102030405060708), 0 },
        .mode = mode, .flags = 0, .dirty_bytes = 0,
    };
    snprintf(h.name, sizeof h.name, "node%u", node);
    return h;
}

static void frame(struct buf *b, uint16_t type, uint32_t flags, uint32_t status, uint64_t seq,
                  uint64_t off, uint32_t length, uint32_t payload_len)
{
    struct rv_repl_hdr hd = { .type = type, .flags = flags, .status = status, .seq = seq,
                              .offset = off, .length = length, .payload_len = payload_len };
    rv_repl_encode_hdr(room(b, RV_REPL_HDR_SIZE), &hd);
}

static void hello_body(struct buf *b, const struct rv_repl_hello *h, size_t len)
{
    uint8_t *p = room(b, len);
    memset(p, 0, len);
    if (rv_repl_encode_hello(p, len, h) != RV_REPL_HELLO_SIZE)
        die("rv_repl_encode_hello failed");
}

static void hello_frame(struct buf *b, const struct rv_repl_hello *h, size_t len)
{
    frame(b, RV_REPL_T_HELLO, 0, 0, 0, 0, 0, (uint32_t)len);
    hello_body(b, h, len);
}

static void refuse_frame(struct buf *b, uint32_t reason, const char *msg)
{
    uint8_t tmp[RV_REPL_HDR_SIZE + RV_REPL_REFUSE_MSG_MAX];
    put(b, tmp, rv_repl_encode_refuse(tmp, sizeof tmp, reason, msg));
}

static void repl_prefix(struct buf *b, uint8_t mode, uint8_t msglen_sel)
{
    b->n = 0;
    put8(b, mode);
    put8(b, msglen_sel);
}

static void gen_repl(void)
{
    const char *h = "fuzz-repl-frame";
    struct buf b;
    struct rv_repl_hello prim = hello(0, RV_ROLE_PRIMARY, RV_REPL_MODE_C);
    struct rv_repl_hello sec = hello(1, RV_ROLE_SECONDARY, RV_REPL_MODE_C);

    /* A primary's side of a session: hello, then every request type. */
    repl_prefix(&b, 0, 255);
    hello_frame(&b, &prim, RV_REPL_HELLO_SIZE);
    frame(&b, RV_REPL_T_WRITE, 0, 0, 1, 0, 512, 512);
    fill(&b, 0x5a, 512);
    frame(&b, RV_REPL_T_WRITE, RV_REPL_F_FUA | RV_REPL_F_ACK_ON_RECEIVE, 0, 2, 1 << 20, 64, 64);
    fill(&b, 0xa5, 64);
    frame(&b, RV_REPL_T_FLUSH, RV_REPL_F_ACK_ON_RECEIVE, 0, 3, 0, 0, 0);
    frame(&b, RV_REPL_T_TRIM, RV_REPL_F_FUA, 0, 4, 4096, 1 << 20, 0);
    frame(&b, RV_REPL_T_ZERO, RV_REPL_F_NO_HOLE, 0, 5, 8192, 4096, 0);
    frame(&b, RV_REPL_T_PING, 0, 0, 6, 0, 0, 0);
    save(h, "primary-session", &b);

    /* The secondary's answers: its hello, acks, a nack, a pong. */
    repl_prefix(&b, 0, 100);
    hello_frame(&b, &sec, RV_REPL_HELLO_SIZE);
    frame(&b, RV_REPL_T_ACK, RV_REPL_F_RECEIVED, 0, 1, 0, 0, 0);
    frame(&b, RV_REPL_T_ACK, 0, 0, 1, 0, 0, 0);
    frame(&b, RV_REPL_T_NACK, 0, EIO, 2, 0, 0, 0);
    frame(&b, RV_REPL_T_PONG, 0, 0, 6, 0, 0, 0);
    save(h, "secondary-session", &b);

    /* Both hellos in one stream: compatible (check_compat both ways). */
    repl_prefix(&b, 0, 40);
    hello_frame(&b, &prim, RV_REPL_HELLO_SIZE);
    hello_frame(&b, &sec, 200);         /* a newer peer's longer body */
    save(h, "hello-pair", &b);

    /* A refused connection: hello, then REFUSE with a UTF-8 message. */
    repl_prefix(&b, 0, 30);
    hello_frame(&b, &prim, RV_REPL_HELLO_SIZE);
    refuse_frame(&b, RV_REPL_REFUSE_UUID,
                 "different volumes: uuid 6b8e2a41-950c-4f1e-8d33-5a27c01d9e74 \xc3\xa9t\xc3\xa9");
    save(h, "hello-refuse", &b);

    /* Types reserved for resync. */
    repl_prefix(&b, 0, 255);
    frame(&b, RV_REPL_T_RESYNC_REQ, 0, 0, 1, 0, 1 << 20, 0);
    frame(&b, RV_REPL_T_RESYNC_WRITE, RV_REPL_F_FUA, 0, 2, 0, 32, 32);
    fill(&b, 0x77, 32);
    frame(&b, RV_REPL_T_BITMAP, 0, 0, 3, 0, 0, 64);
    fill(&b, 0xff, 64);
    frame(&b, RV_REPL_T_DIGEST_REQ, 0, 0, 4, 0, 4096, 0);
    frame(&b, RV_REPL_T_DIGEST, 0, 0, 5, 0, 4096, 32);
    fill(&b, 0x42, 32);
    frame(&b, RV_REPL_T_SYNC_DONE, 0, 0, 6, 0, 0, 0);
    frame(&b, RV_REPL_T_STATE, 0, 0, 7, 0, 0, RV_REPL_HELLO_SIZE);
    hello_body(&b, &sec, RV_REPL_HELLO_SIZE);
    save(h, "resync-types", &b);

    /* Skippable errors (FLAGS, FIELD), then one that drops the link. */
    repl_prefix(&b, 0, 255);
    frame(&b, RV_REPL_T_PING, RV_REPL_F_FUA, 0, 1, 0, 0, 0);          /* FLAGS */
    frame(&b, RV_REPL_T_ACK, 0, 7, 2, 0, 0, 0);                       /* FIELD: status */
    frame(&b, RV_REPL_T_FLUSH, 0, 0, 3, 4096, 0, 0);                  /* FIELD: offset */
    frame(&b, RV_REPL_T_NACK, 0, 0, 4, 0, 0, 0);                      /* FIELD: errno 0 */
    frame(&b, RV_REPL_T_WRITE, 0, 0, 5, UINT64_MAX, 16, 16);          /* LENGTH: wraps */
    fill(&b, 0, 16);
    save(h, "header-errors", &b);

    /* Two bare hello bodies: same volume, different sizes -> SIZE. */
    repl_prefix(&b, 1, 60);
    struct rv_repl_hello big = sec;
    big.data_size *= 2;
    hello_body(&b, &prim, RV_REPL_HELLO_SIZE);
    hello_body(&b, &big, RV_REPL_HELLO_SIZE);
    save(h, "bare-hellos-size-differs", &b);

    /* Bare hellos that are invalid in several ways. */
    repl_prefix(&b, 1, 255);
    struct rv_repl_hello bad = prim;
    hello_body(&b, &bad, RV_REPL_HELLO_SIZE);
    b.d[b.n - RV_REPL_HELLO_SIZE + RV_REPL_HOFF_MODE + 3] = 7;         /* mode 7 */
    hello_body(&b, &sec, RV_REPL_HELLO_SIZE);
    b.d[b.n - 1] = 'x';                                                 /* name padding */
    save(h, "bare-hellos-invalid", &b);

    /* Refusal texts: every kind of bad byte the sanitiser handles. */
    repl_prefix(&b, 2, 255);
    puts_(&b, "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 | overlong \xc0\x80 \xe0\x80\x80"
              " | surrogate \xed\xa0\x80 | too big \xf4\x90\x80\x80 | cut \xe2\x82"
              " | C1 \xc2\x85 | DEL \x7f | ESC \x1b[31mred\x1b[0m | tab\tnl\n");
    save(h, "refuse-text-utf8", &b);
    repl_prefix(&b, 2, 17);
    for (int i = 0; i < 340; i++)
        puts_(&b, "\xe2\x82\xac");      /* 1020 bytes, then one across 1024 */
    puts_(&b, "\xf0\x9f\x98\x80 tail beyond the 1024-byte limit");
    save(h, "refuse-text-too-long", &b);
    repl_prefix(&b, 2, 8);
    puts_(&b, "B");
    save(h, "refuse-text-mode-b", &b);
}

/* ============================================================ superblock */

static struct rv_meta meta(uint64_t data_size, uint32_t block_size, uint32_t gran)
{
    struct rv_meta m = {
        .version = RV_META_VERSION, .flags = RV_META_F_CLEAN,
        .uuid = { 0x6b, 0x8e, 0x2a, 0x41, 0x95, 0x0c, 0x4f, 0x1e,
                  0x8d, 0x33, 0x5a, 0x27, 0xc0, 0x1d, 0x9e, 0x74 },
        .data_size = data_size, .block_size = block_size, .bm_granularity = gran,
        .disk_state = RV_DISK_UPTODATE, .role = RV_ROLE_SECONDARY, .node_id = 0,
        .current_gen = UINT64_C(0x1122334455667788),
        .ctime = 1700000000, .open_count = 0,
    };
    snprintf(m.name, sizeof m.name, "vol0");
    struct rv_meta_layout lay;
    if (rv_meta_layout(data_size, gran, &lay))
        die("bad layout");
    m.bm_offset = lay.bitmap_offset;
    m.bm_length = lay.bitmap_length;
    return m;
}

static void sb(struct buf *b, const struct rv_meta *m)
{
    b->n = 0;
    if (rv_meta_encode(m, room(b, RV_META_SB_SIZE)))
        die("rv_meta_encode failed");
}

static void gen_meta(void)
{
    const char *h = "fuzz-meta";
    struct buf b;

    /* What 'repvol create' writes by default. */
    struct rv_meta m = meta(GiB, 4096, 4096);
    sb(&b, &m);
    save(h, "created-1g", &b);

    /* A primary that has been writing without its peer. */
    m = meta(8 * GiB, 512, 65536);
    m.flags = 0;
    m.role = RV_ROLE_PRIMARY;
    m.node_id = 1;
    m.bitmap_gen = UINT64_C(0x1122334455667788);
    m.current_gen = UINT64_C(0x99aabbccddeeff00);
    m.history_gen[0] = UINT64_C(0x0102030405060708);
    m.history_gen[1] = UINT64_C(0x1112131415161718);
    m.open_count = 42;
    memset(m.name, 'N', RV_META_NAME_MAX);
    m.name[RV_META_NAME_MAX] = '\0';
    sb(&b, &m);
    save(h, "primary-dirty-512", &b);

    /* The smallest and the largest layouts. */
    m = meta(4096, 4096, RV_META_MAX_GRANULARITY);
    m.disk_state = RV_DISK_OUTDATED;
    sb(&b, &m);
    save(h, "smallest", &b);
    m = meta(RV_META_MAX_DATA_SIZE, 4096, 4096);
    m.disk_state = RV_DISK_INCONSISTENT;
    m.node_id = RV_META_MAX_NODES - 1;
    sb(&b, &m);
    save(h, "largest", &b);

    /* Damaged: a torn write (CRC), a newer version, a truncated block, an
     * image grown so the superblock is not at the end (no magic), and one
     * with trailing bytes (ignored). */
    m = meta(GiB, 4096, 4096);
    sb(&b, &m);
    b.d[RV_META_OFF_NAME] = 'W';
    save(h, "bad-crc", &b);
    sb(&b, &m);
    rv_put_be32(b.d + RV_META_OFF_VERSION, 2);
    save(h, "version-2", &b);
    sb(&b, &m);
    b.n = RV_META_HDR_LEN;
    save(h, "truncated", &b);
    b.n = 0;
    fill(&b, 0, RV_META_SB_SIZE);
    save(h, "zeros", &b);
    sb(&b, &m);
    fill(&b, 0xee, 100);
    save(h, "trailing-bytes", &b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen-seeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    gen_requests();
    gen_handshake();
    gen_repl();
    gen_meta();
    return 0;
}
