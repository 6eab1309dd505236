/* test-nbd-handshake.c - the handshake state machine driven in memory with
 * realistic client byte streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/nbd_handshake.h"
#include "repvol/wire.h"

#define MiB (UINT32_C(1) << 20)
#define ALL_TFLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | \
                    NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | \
                    NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN)

static const struct nbd_hs_export test_exp = {
    .name = "vol0",
    .description = "test volume",
    .size = UINT64_C(1) << 30,
    .tflags = ALL_TFLAGS,
    .min_block = 1, .pref_block = 4096, .max_block = 32 * MiB,
};

/* Deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

/* ------------------------------------------------- client stream builder */

struct stream {
    uint8_t *b;
    size_t len, cap;
};

static void s_init(struct stream *s)
{
    s->cap = 1 << 16;
    s->len = 0;
    s->b = malloc(s->cap);
}

static void s_free(struct stream *s) { free(s->b); }

static uint8_t *s_grow(struct stream *s, size_t n)
{
    while (s->len + n > s->cap) {
        s->cap *= 2;
        s->b = realloc(s->b, s->cap);
    }
    uint8_t *p = s->b + s->len;
    s->len += n;
    return p;
}

static void s_u16(struct stream *s, uint16_t v) { rv_put_be16(s_grow(s, 2), v); }
static void s_u32(struct stream *s, uint32_t v) { rv_put_be32(s_grow(s, 4), v); }
static void s_bytes(struct stream *s, const void *p, size_t n) { if (n) memcpy(s_grow(s, n), p, n); }

static void s_flags(struct stream *s, uint32_t flags) { s_u32(s, flags); }

static void s_opt(struct stream *s, uint32_t opt, const void *data, uint32_t len)
{
    nbd_encode_option(s_grow(s, 16), opt, len);
    s_bytes(s, data, len);
}

/* NBD_OPT_INFO / NBD_OPT_GO */
static void s_go(struct stream *s, uint32_t opt, const char *name, const uint16_t *req, uint16_t n)
{
    uint32_t nl = (uint32_t)strlen(name);
    nbd_encode_option(s_grow(s, 16), opt, 4 + nl + 2 + 2u * n);
    s_u32(s, nl);
    s_bytes(s, name, nl);
    s_u16(s, n);
    for (uint16_t i = 0; i < n; i++)
        s_u16(s, req[i]);
}

/* NBD_OPT_{LIST,SET}_META_CONTEXT */
static void s_meta(struct stream *s, uint32_t opt, const char *name, const char *const *q, uint32_t n)
{
    uint32_t len = 4 + (uint32_t)strlen(name) + 4;
    for (uint32_t i = 0; i < n; i++)
        len += 4 + (uint32_t)strlen(q[i]);
    nbd_encode_option(s_grow(s, 16), opt, len);
    s_u32(s, (uint32_t)strlen(name));
    s_bytes(s, name, strlen(name));
    s_u32(s, n);
    for (uint32_t i = 0; i < n; i++) {
        s_u32(s, (uint32_t)strlen(q[i]));
        s_bytes(s, q[i], strlen(q[i]));
    }
}

/* The usual client start: fixed newstyle, no zeroes. */
static void s_start(struct stream *s)
{
    s_init(s);
    s_flags(s, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
}

/* ------------------------------------------------------------ the driver */

struct run {
    enum nbd_hs_status st;
    size_t consumed;            /* of the client stream */
    uint8_t *out;               /* everything the server sent, greeting included */
    size_t out_len, out_cap;
    struct nbd_hs_result result;
    const char *close_reason;
    size_t max_pending;         /* most output ever pending at once */
};

static void drain(struct nbd_hs *hs, struct run *r)
{
    size_t n;
    const uint8_t *p = nbd_hs_output(hs, &n);
    if (n > r->max_pending)
        r->max_pending = n;
    if (!n)
        return;
    while (r->out_len + n > r->out_cap) {
        r->out_cap = r->out_cap ? r->out_cap * 2 : 1 << 16;
        r->out = realloc(r->out, r->out_cap);
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    nbd_hs_output_consumed(hs, n);
}

/* Feed `in` in pieces of `chunk` bytes (0: all at once), sending all output
 * after every call, the way the connection driver does. */
static void run_ex(const struct nbd_hs_export *exp, const uint8_t *in, size_t len, size_t chunk,
                   struct run *r)
{
    struct nbd_hs *hs = malloc(sizeof(*hs));
    memset(r, 0, sizeof(*r));
    nbd_hs_init(hs, exp);
    drain(hs, r);
    r->st = NBD_HS_CONTINUE;
    size_t off = 0;
    while (off < len) {
        size_t n = chunk ? (len - off < chunk ? len - off : chunk) : len - off, c;
        r->st = nbd_hs_feed(hs, in + off, n, &c);
        CU_ASSERT(c <= n);
        off += c;
        size_t pending;
        nbd_hs_output(hs, &pending);
        drain(hs, r);
        if (r->st != NBD_HS_CONTINUE)
            break;
        /* Partial consumption is only allowed while output is pending. */
        if (c < n && pending == 0) {
            CU_FAIL("feed stalled with no output pending");
            break;
        }
    }
    r->consumed = off;
    r->result = hs->result;
    r->close_reason = hs->close_reason;
    /* Terminal states are sticky and consume nothing. */
    if (r->st != NBD_HS_CONTINUE) {
        size_t c = 99;
        uint8_t junk[4] = { 1, 2, 3, 4 };
        CU_ASSERT_EQUAL(nbd_hs_feed(hs, junk, sizeof(junk), &c), r->st);
        CU_ASSERT_EQUAL(c, 0);
    }
    free(hs);
}

static void run(const struct stream *s, size_t chunk, struct run *r)
{
    run_ex(&test_exp, s->b, s->len, chunk, r);
}

static void run_free(struct run *r) { free(r->out); }

/* ------------------------------------------------------ reply inspection */

struct optrep {
    uint32_t opt, type, len;
    const uint8_t *data;
};

/* Parse option replies after the greeting; returns how many, and sets *rest
 * to the offset of the first byte that is not an option reply. */
static size_t parse_replies(const struct run *r, struct optrep *rep, size_t max, size_t *rest)
{
    size_t off = 18, n = 0;
    while (n < max && r->out_len - off >= 20 && rv_get_be64(r->out + off) == NBD_OPT_REPLY_MAGIC) {
        rep[n].opt = rv_get_be32(r->out + off + 8);
        rep[n].type = rv_get_be32(r->out + off + 12);
        rep[n].len = rv_get_be32(r->out + off + 16);
        rep[n].data = r->out + off + 20;
        CU_ASSERT_FATAL(r->out_len - off - 20 >= rep[n].len);
        off += 20 + rep[n].len;
        n++;
    }
    if (rest)
        *rest = off;
    return n;
}

static void check_greeting(const struct run *r)
{
    CU_ASSERT_FATAL(r->out_len >= 18);
    CU_ASSERT_EQUAL(memcmp(r->out, "NBDMAGICIHAVEOPT", 16), 0);
    CU_ASSERT_EQUAL(rv_get_be16(r->out + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

static bool rep_is(const struct optrep *p, uint32_t opt, uint32_t type)
{
    return p->opt == opt && p->type == type;
}

static bool info_is(const struct optrep *p, uint32_t opt, uint16_t info, uint32_t len)
{
    return p->opt == opt && p->type == NBD_REP_INFO && p->len == len &&
           rv_get_be16(p->data) == info;
}

/* Transmission flags we expect to see without / with structured replies. */
#define TFLAGS_SIMPLE (ALL_TFLAGS & ~NBD_FLAG_SEND_DF)
#define TFLAGS_STRUCT ALL_TFLAGS

/* ------------------------------------------------------------------ tests */

static void test_greeting(void)
{
    struct nbd_hs *hs = malloc(sizeof(*hs));
    size_t n;
    nbd_hs_init(hs, &test_exp);
    const uint8_t *p = nbd_hs_output(hs, &n);
    CU_ASSERT_EQUAL(n, 18);
    CU_ASSERT_EQUAL(memcmp(p, "NBDMAGICIHAVEOPT\x00\x03", 18), 0);
    /* Partial sends. */
    nbd_hs_output_consumed(hs, 8);
    p = nbd_hs_output(hs, &n);
    CU_ASSERT_EQUAL(n, 10);
    CU_ASSERT_EQUAL(memcmp(p, "IHAVEOPT", 8), 0);
    nbd_hs_output_consumed(hs, 100);    /* over-consume is clamped */
    CU_ASSERT_PTR_NULL(nbd_hs_output(hs, &n));
    CU_ASSERT_EQUAL(n, 0);
    /* Nothing to do before the client speaks. */
    size_t c;
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, NULL, 0, &c), NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(c, 0);
    free(hs);
}

static void test_go_no_info(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];
    size_t rest;

    s_start(&s);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(r.consumed, s.len);
    check_greeting(&r);
    size_t n = parse_replies(&r, rep, 8, &rest);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(rest, r.out_len);
    CU_ASSERT(info_is(&rep[0], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT_EQUAL(rv_get_be64(rep[0].data + 2), test_exp.size);
    CU_ASSERT_EQUAL(rv_get_be16(rep[0].data + 10), TFLAGS_SIMPLE);
    /* BLOCK_SIZE is sent unrequested (allowed by the spec). */
    CU_ASSERT(info_is(&rep[1], NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, 14));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_GO, NBD_REP_ACK));
    CU_ASSERT_EQUAL(rep[2].len, 0);
    CU_ASSERT_TRUE(r.result.go);
    CU_ASSERT_FALSE(r.result.block_size_requested);
    CU_ASSERT_FALSE(r.result.structured);
    CU_ASSERT_FALSE(r.result.base_allocation);
    CU_ASSERT_TRUE(r.result.no_zeroes);
    CU_ASSERT_EQUAL(r.result.tflags, TFLAGS_SIMPLE);
    run_free(&r);
    s_free(&s);
}

static void test_go_with_info(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];
    const uint16_t req[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE, 0x7777 };

    s_start(&s);
    s_go(&s, NBD_OPT_GO, "vol0", req, 4);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 8, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT(info_is(&rep[0], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT(info_is(&rep[1], NBD_OPT_GO, NBD_INFO_NAME, 2 + 4));
    CU_ASSERT_EQUAL(memcmp(rep[1].data + 2, "vol0", 4), 0);
    CU_ASSERT(info_is(&rep[2], NBD_OPT_GO, NBD_INFO_DESCRIPTION, 2 + 11));
    CU_ASSERT_EQUAL(memcmp(rep[2].data + 2, "test volume", 11), 0);
    CU_ASSERT(info_is(&rep[3], NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, 14));
    CU_ASSERT_EQUAL(rv_get_be32(rep[3].data + 2), 1);
    CU_ASSERT_EQUAL(rv_get_be32(rep[3].data + 6), 4096);
    CU_ASSERT_EQUAL(rv_get_be32(rep[3].data + 10), 32 * MiB);
    CU_ASSERT(rep_is(&rep[4], NBD_OPT_GO, NBD_REP_ACK));
    CU_ASSERT_TRUE(r.result.block_size_requested);
    run_free(&r);
    s_free(&s);
}

static void test_info_then_go(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];

    s_start(&s);
    s_go(&s, NBD_OPT_INFO, "vol0", NULL, 0);
    s_go(&s, NBD_OPT_GO, "vol0", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    CU_ASSERT(info_is(&rep[0], NBD_OPT_INFO, NBD_INFO_EXPORT, 12));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_INFO, NBD_REP_ACK));
    CU_ASSERT(info_is(&rep[3], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_GO, NBD_REP_ACK));
    /* Same parameters, no intervening option: same information. */
    CU_ASSERT_EQUAL(memcmp(rep[0].data, rep[3].data, 12), 0);
    run_free(&r);
    s_free(&s);
}

static void test_go_unknown_export(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];

    s_start(&s);
    s_go(&s, NBD_OPT_GO, "nope", NULL, 0);
    s_go(&s, NBD_OPT_INFO, "vol", NULL, 0);      /* a prefix is not a match */
    s_go(&s, NBD_OPT_GO, "vol0", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 8, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_GO, NBD_REP_ERR_UNKNOWN));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN));
    CU_ASSERT(info_is(&rep[2], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT(rep_is(&rep[4], NBD_OPT_GO, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

static void test_go_malformed(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];
    uint8_t d[16];

    s_start(&s);
    s_opt(&s, NBD_OPT_GO, "\0\0\0", 3);                 /* shorter than 6 */
    rv_put_be32(d, 100); rv_put_be16(d + 4, 0);
    s_opt(&s, NBD_OPT_GO, d, 6);                         /* name length too big */
    rv_put_be32(d, 0); rv_put_be16(d + 4, 3);
    s_opt(&s, NBD_OPT_GO, d, 8);                         /* 3 requests, room for 1 */
    rv_put_be32(d, 0); rv_put_be16(d + 4, 0);
    s_opt(&s, NBD_OPT_INFO, d, 7);                       /* trailing byte */
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 8, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 7);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(rep_is(&rep[i], NBD_OPT_GO, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[3], NBD_OPT_INFO, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[6], NBD_OPT_GO, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

static void test_export_name(void)
{
    struct stream s;
    struct run r;
    size_t rest;

    /* Without NO_ZEROES: size, flags, 124 zeroes. */
    s_init(&s);
    s_flags(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
    s_opt(&s, NBD_OPT_EXPORT_NAME, "vol0", 4);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(r.consumed, s.len);
    CU_ASSERT_EQUAL(parse_replies(&r, NULL, 0, &rest), 0);
    CU_ASSERT_EQUAL_FATAL(r.out_len, 18 + 8 + 2 + 124);
    CU_ASSERT_EQUAL(rv_get_be64(r.out + 18), test_exp.size);
    CU_ASSERT_EQUAL(rv_get_be16(r.out + 26), TFLAGS_SIMPLE);
    static const uint8_t zero[124];
    CU_ASSERT_EQUAL(memcmp(r.out + 28, zero, 124), 0);
    CU_ASSERT_FALSE(r.result.go);
    CU_ASSERT_FALSE(r.result.no_zeroes);
    CU_ASSERT_EQUAL(r.result.tflags, TFLAGS_SIMPLE);
    run_free(&r);
    s_free(&s);

    /* With NO_ZEROES, default export, and the first transmission request
     * already in the same buffer: it must be left unconsumed. */
    s_start(&s);
    s_opt(&s, NBD_OPT_EXPORT_NAME, NULL, 0);
    size_t hs_len = s.len;
    struct nbd_request rq = { .type = NBD_CMD_READ, .cookie = 1, .offset = 0, .count = 512 };
    nbd_encode_request(s_grow(&s, 28), &rq);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(r.consumed, hs_len);
    CU_ASSERT_EQUAL(r.out_len, 18 + 10);
    CU_ASSERT_TRUE(r.result.no_zeroes);
    run_free(&r);
    /* Same when fed byte by byte. */
    run(&s, 1, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(r.consumed, hs_len);
    run_free(&r);
    s_free(&s);

    /* Structured replies negotiated before EXPORT_NAME stay negotiated. */
    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_opt(&s, NBD_OPT_EXPORT_NAME, "vol0", 4);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_TRUE(r.result.structured);
    CU_ASSERT_EQUAL(r.result.tflags, TFLAGS_STRUCT);
    CU_ASSERT_EQUAL(rv_get_be16(r.out + r.out_len - 2), TFLAGS_STRUCT);
    run_free(&r);
    s_free(&s);
}

static void test_export_name_unknown(void)
{
    struct stream s;
    struct run r;

    s_start(&s);
    s_opt(&s, NBD_OPT_EXPORT_NAME, "other", 5);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL(r.out_len, 18);         /* no way to send an error */
    CU_ASSERT_PTR_NOT_NULL(r.close_reason);
    run_free(&r);
    s_free(&s);

    /* A name longer than the spec allows: closed at the header, data unread. */
    s_start(&s);
    nbd_encode_option(s_grow(&s, 16), NBD_OPT_EXPORT_NAME, 5000);
    size_t hdr_end = s.len;
    memset(s_grow(&s, 5000), 'a', 5000);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL(r.consumed, hdr_end);
    run_free(&r);
    s_free(&s);
}

static void test_list(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];

    s_start(&s);
    s_opt(&s, NBD_OPT_LIST, NULL, 0);
    s_opt(&s, NBD_OPT_LIST, "x", 1);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(r.consumed, s.len);
    size_t n = parse_replies(&r, rep, 8, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_LIST, NBD_REP_SERVER));
    CU_ASSERT_EQUAL(rep[0].len, 4 + 4 + 11);
    CU_ASSERT_EQUAL(rv_get_be32(rep[0].data), 4);
    CU_ASSERT_EQUAL(memcmp(rep[0].data + 4, "vol0test volume", 15), 0);
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_LIST, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_LIST, NBD_REP_ERR_INVALID));
    run_free(&r);
    s_free(&s);
}

static void test_abort(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[4];

    s_start(&s);
    s_opt(&s, NBD_OPT_ABORT, NULL, 0);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);           /* never looked at */
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL(r.consumed, 4 + 16);
    CU_ASSERT_EQUAL_FATAL(parse_replies(&r, rep, 4, NULL), 1);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_ABORT, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);

    /* Data with ABORT is ignored, not an error. */
    s_start(&s);
    s_opt(&s, NBD_OPT_ABORT, "junk", 4);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL_FATAL(parse_replies(&r, rep, 4, NULL), 1);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_ABORT, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

static void test_structured_and_meta(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];
    const char *q[] = { "base:allocation" };
    const uint16_t req[] = { NBD_INFO_BLOCK_SIZE };

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "vol0", q, 1);
    s_go(&s, NBD_OPT_GO, "vol0", req, 1);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT));
    CU_ASSERT_EQUAL(rep[1].len, 4 + 15);
    CU_ASSERT_EQUAL(rv_get_be32(rep[1].data), NBD_HS_BASE_ALLOCATION_ID);
    CU_ASSERT_EQUAL(memcmp(rep[1].data + 4, "base:allocation", 15), 0);
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(info_is(&rep[3], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT_EQUAL(rv_get_be16(rep[3].data + 10), TFLAGS_STRUCT);
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_GO, NBD_REP_ACK));
    CU_ASSERT_TRUE(r.result.structured);
    CU_ASSERT_TRUE(r.result.base_allocation);
    CU_ASSERT_EQUAL(r.result.base_allocation_id, NBD_HS_BASE_ALLOCATION_ID);
    CU_ASSERT_EQUAL(r.result.tflags, TFLAGS_STRUCT);
    run_free(&r);
    s_free(&s);
}

static void test_limits(void)
{
    struct stream s;
    struct nbd_hs *hs = malloc(sizeof(*hs));
    struct nbd_limits lim;
    const char *q[] = { "base:allocation" };
    size_t c;

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "vol0", q, 1);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    nbd_hs_init(hs, &test_exp);
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, s.b, s.len, &c), NBD_HS_DONE);
    nbd_hs_limits(hs, &lim);
    CU_ASSERT_EQUAL(lim.export_size, test_exp.size);
    CU_ASSERT_EQUAL(lim.max_payload, test_exp.max_block);
    CU_ASSERT_EQUAL(lim.tflags, TFLAGS_STRUCT);
    CU_ASSERT_TRUE(lim.structured);
    CU_ASSERT_TRUE(lim.base_allocation);
    /* The negotiated limits accept what was negotiated... */
    struct nbd_request rq = { .type = NBD_CMD_BLOCK_STATUS, .flags = NBD_CMD_FLAG_REQ_ONE,
                              .offset = 0, .count = 4096 };
    CU_ASSERT_EQUAL(nbd_check_request(&rq, &lim), 0);
    rq = (struct nbd_request){ .type = NBD_CMD_READ, .flags = NBD_CMD_FLAG_DF, .count = 4096 };
    CU_ASSERT_EQUAL(nbd_check_request(&rq, &lim), 0);
    s_free(&s);

    /* ...and, without structured replies, refuse DF and BLOCK_STATUS. */
    struct nbd_hs_export e = test_exp;
    e.min_block = 0;
    s_start(&s);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    nbd_hs_init(hs, &e);
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, s.b, s.len, &c), NBD_HS_DONE);
    nbd_hs_limits(hs, &lim);
    CU_ASSERT_EQUAL(lim.max_payload, 0);    /* nothing advertised: spec default */
    CU_ASSERT_FALSE(lim.structured);
    CU_ASSERT_EQUAL(nbd_check_request(&rq, &lim), NBD_EINVAL);
    rq.type = NBD_CMD_BLOCK_STATUS;
    rq.flags = 0;
    CU_ASSERT_EQUAL(nbd_check_request(&rq, &lim), NBD_EINVAL);
    s_free(&s);
    free(hs);
}

static void test_structured_twice(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[4];

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, "x", 1);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(parse_replies(&r, rep, 4, NULL), 3);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep[1].len > 0);          /* errors carry a message */
    run_free(&r);
    s_free(&s);
}

static void test_set_meta_rules(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];
    const char *ba[] = { "base:allocation" };
    const char *wild[] = { "base:" };
    const char *mixed[] = { "qemu:dirty-bitmap:b", "base:allocation", "base:allocation" };

    s_start(&s);
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "vol0", ba, 1);         /* 0: before structured */
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);                 /* 1 */
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "other", ba, 1);        /* 2: unknown export */
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "", wild, 1);           /* 3: wildcard ignored in SET */
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "", mixed, 3);          /* 4,5: selected once */
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CONTINUE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNKNOWN));
    CU_ASSERT(rep_is(&rep[3], NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[4], NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT));
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
    run_free(&r);

    /* A later SET replaces the selection, even a failing one. */
    struct stream s2;
    s_start(&s2);
    s_opt(&s2, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s2, NBD_OPT_SET_META_CONTEXT, "vol0", ba, 1);
    s_meta(&s2, NBD_OPT_SET_META_CONTEXT, "vol0", NULL, 0);      /* selects nothing */
    s_go(&s2, NBD_OPT_GO, "", NULL, 0);
    run(&s2, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_FALSE(r.result.base_allocation);
    run_free(&r);
    s_free(&s2);

    s_start(&s2);
    s_opt(&s2, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s2, NBD_OPT_SET_META_CONTEXT, "vol0", ba, 1);
    s_meta(&s2, NBD_OPT_SET_META_CONTEXT, "bad", ba, 1);
    s_go(&s2, NBD_OPT_GO, "", NULL, 0);
    run(&s2, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_FALSE(r.result.base_allocation);
    run_free(&r);
    s_free(&s2);

    /* Selected with "" and then GO with the volume's name: the same export. */
    s_start(&s2);
    s_opt(&s2, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s2, NBD_OPT_SET_META_CONTEXT, "", ba, 1);
    s_go(&s2, NBD_OPT_GO, "vol0", NULL, 0);
    run(&s2, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_TRUE(r.result.base_allocation);
    run_free(&r);
    s_free(&s2);
    s_free(&s);
}

static void test_meta_malformed(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];
    uint8_t d[64];

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_opt(&s, NBD_OPT_SET_META_CONTEXT, "\0\0\0\0", 4);             /* too short */
    rv_put_be32(d, 0); rv_put_be32(d + 4, 2);                        /* 2 queries, none sent */
    s_opt(&s, NBD_OPT_SET_META_CONTEXT, d, 8);
    rv_put_be32(d, 0); rv_put_be32(d + 4, 1); rv_put_be32(d + 8, 50); /* query runs past end */
    memcpy(d + 12, "base:allocation", 15);
    s_opt(&s, NBD_OPT_LIST_META_CONTEXT, d, 27);
    rv_put_be32(d, 0); rv_put_be32(d + 4, 0);                        /* trailing garbage */
    s_opt(&s, NBD_OPT_LIST_META_CONTEXT, d, 9);
    rv_put_be32(d, 0xfffffff0); rv_put_be32(d + 4, 0);               /* huge name length */
    s_opt(&s, NBD_OPT_SET_META_CONTEXT, d, 8);
    const char *nocolon[] = { "allocation" };
    const char *emptyns[] = { ":allocation" };
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "", nocolon, 1);
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "", emptyns, 1);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(r.consumed, s.len);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 8);
    for (size_t i = 1; i < n; i++)
        CU_ASSERT_EQUAL(rep[i].type, NBD_REP_ERR_INVALID);
    run_free(&r);
    s_free(&s);
}

static void test_list_meta(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];
    const char *wild[] = { "base:" };
    const char *other[] = { "qemu:dirty-bitmap:x", "base:nonexistent" };
    const char *both[] = { "base:", "base:allocation" };

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);                 /* 0 */
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "", NULL, 0);           /* 1,2: everything */
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "vol0", wild, 1);       /* 3,4 */
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "vol0", other, 2);      /* 5: nothing matches */
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "vol0", both, 2);       /* 6,7: listed once */
    s_meta(&s, NBD_OPT_LIST_META_CONTEXT, "nope", NULL, 0);       /* 8 */
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 12);
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT));
    CU_ASSERT_EQUAL(rv_get_be32(rep[1].data), 0);       /* ids in LIST are reserved: 0 */
    CU_ASSERT_EQUAL(memcmp(rep[1].data + 4, "base:allocation", 15), 0);
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[3], NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT));
    CU_ASSERT(rep_is(&rep[4], NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[6], NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT));
    CU_ASSERT(rep_is(&rep[7], NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK));
    CU_ASSERT(rep_is(&rep[8], NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_UNKNOWN));
    /* LIST selects nothing. */
    CU_ASSERT_FALSE(r.result.base_allocation);
    run_free(&r);
    s_free(&s);
}

static void test_unknown_options(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[16];

    s_start(&s);
    s_opt(&s, 0x1234, "hello", 5);
    s_opt(&s, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    s_opt(&s, NBD_OPT_PEEK_EXPORT, NULL, 0);
    s_opt(&s, 0, NULL, 0);
    s_opt(&s, 0xffffffff, "x", 1);
    s_opt(&s, NBD_OPT_STARTTLS, NULL, 0);
    s_opt(&s, NBD_OPT_STARTTLS, "x", 1);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 10);
    CU_ASSERT(rep_is(&rep[0], 0x1234, NBD_REP_ERR_UNSUP));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP));
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_PEEK_EXPORT, NBD_REP_ERR_UNSUP));
    CU_ASSERT(rep_is(&rep[3], 0, NBD_REP_ERR_UNSUP));
    CU_ASSERT(rep_is(&rep[4], 0xffffffff, NBD_REP_ERR_UNSUP));
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY));
    CU_ASSERT(rep_is(&rep[6], NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[9], NBD_OPT_GO, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

/* FORCEDTLS: before STARTTLS everything but ABORT is TLS_REQD; EXPORT_NAME
 * (which cannot carry an error) closes. */
static void test_tls_required(void)
{
    struct nbd_hs_export exp = test_exp;
    exp.tls = NBD_HS_TLS_REQUIRE;
    struct stream s;
    struct run r;
    struct optrep rep[16];
    const char *q[] = { "base:allocation" };

    s_start(&s);
    s_opt(&s, NBD_OPT_LIST, NULL, 0);
    s_go(&s, NBD_OPT_INFO, "", NULL, 0);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&s, NBD_OPT_SET_META_CONTEXT, "", q, 1);
    s_go(&s, NBD_OPT_GO, "vol0", NULL, 0);
    s_opt(&s, NBD_OPT_EXPORT_NAME, "vol0", 4);
    run_ex(&exp, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_PTR_NOT_NULL(r.close_reason);
    size_t rest, n = parse_replies(&r, rep, 16, &rest);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(rep[i].type, NBD_REP_ERR_TLS_REQD);
    CU_ASSERT_EQUAL(rest, r.out_len);           /* no export data leaked */
    CU_ASSERT(!r.result.structured);
    run_free(&r);
    s_free(&s);

    /* ABORT still works. */
    s_start(&s);
    s_opt(&s, NBD_OPT_ABORT, NULL, 0);
    run_ex(&exp, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_ABORT, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

/* STARTTLS is acknowledged, stops the machine until the driver has TLS up
 * (bytes after it are not consumed: the driver must refuse them), forgets
 * what was negotiated before, and is INVALID once TLS is active. */
static void test_starttls(void)
{
    for (int mode = NBD_HS_TLS_ON; mode <= NBD_HS_TLS_REQUIRE; mode++) {
        struct nbd_hs_export exp = test_exp;
        exp.tls = (enum nbd_hs_tls)mode;
        struct nbd_hs *hs = malloc(sizeof *hs);
        struct run r;
        struct optrep rep[16];
        struct stream s;
        size_t used;

        memset(&r, 0, sizeof r);
        nbd_hs_init(hs, &exp);
        drain(hs, &r);
        s_start(&s);
        if (mode == NBD_HS_TLS_ON)
            s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);   /* allowed in plaintext, then forgotten */
        s_opt(&s, NBD_OPT_STARTTLS, NULL, 0);
        size_t before = s.len;
        s_opt(&s, NBD_OPT_LIST, NULL, 0);                   /* "injected" plaintext */
        CU_ASSERT_EQUAL(nbd_hs_feed(hs, s.b, s.len, &used), NBD_HS_STARTTLS);
        CU_ASSERT_EQUAL(used, before);
        drain(hs, &r);
        CU_ASSERT_EQUAL(nbd_hs_feed(hs, s.b + used, s.len - used, &used), NBD_HS_STARTTLS);
        CU_ASSERT_EQUAL(used, 0);
        CU_ASSERT(!hs->result.structured);
        size_t n = parse_replies(&r, rep, 16, NULL);
        CU_ASSERT_EQUAL_FATAL(n, mode == NBD_HS_TLS_ON ? 2 : 1);
        CU_ASSERT(rep_is(&rep[n - 1], NBD_OPT_STARTTLS, NBD_REP_ACK));
        CU_ASSERT_EQUAL(rep[n - 1].len, 0);
        s_free(&s);

        /* Inside TLS: a second STARTTLS is INVALID; GO works. */
        nbd_hs_tls_started(hs);
        CU_ASSERT(hs->tls_active);
        s_init(&s);
        s_opt(&s, NBD_OPT_STARTTLS, NULL, 0);
        s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        s_go(&s, NBD_OPT_GO, "vol0", NULL, 0);
        size_t off = 0;
        enum nbd_hs_status st = NBD_HS_CONTINUE;
        for (int i = 0; i < 100 && st == NBD_HS_CONTINUE && off < s.len; i++) {
            st = nbd_hs_feed(hs, s.b + off, s.len - off, &used);
            off += used;
            drain(hs, &r);
        }
        CU_ASSERT_EQUAL(st, NBD_HS_DONE);
        CU_ASSERT(hs->result.structured);
        n = parse_replies(&r, rep, 16, NULL);
        size_t base = mode == NBD_HS_TLS_ON ? 2 : 1;
        CU_ASSERT_FATAL(n >= base + 3);
        CU_ASSERT(rep_is(&rep[base], NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID));
        CU_ASSERT(rep_is(&rep[base + 1], NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
        CU_ASSERT(rep_is(&rep[n - 1], NBD_OPT_GO, NBD_REP_ACK));
        s_free(&s);
        free(r.out);
        free(hs);
    }
}

/* --tls on: plaintext clients are still served. */
static void test_tls_optional_plaintext(void)
{
    struct nbd_hs_export exp = test_exp;
    exp.tls = NBD_HS_TLS_ON;
    struct stream s;
    struct run r;
    s_start(&s);
    s_go(&s, NBD_OPT_GO, "vol0", NULL, 0);
    run_ex(&exp, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    run_free(&r);
    s_free(&s);
}

static void test_oversized_option(void)
{
    struct stream s;
    struct run r;
    struct optrep rep[8];
    const uint32_t big = 200000;

    /* The data of an oversized option is skipped, even when it looks like
     * option headers; the machine then works normally. */
    s_start(&s);
    nbd_encode_option(s_grow(&s, 16), NBD_OPT_SET_META_CONTEXT, big);
    uint8_t *d = s_grow(&s, big);
    for (uint32_t i = 0; i + 16 <= big; i += 16)
        nbd_encode_option(d + i, NBD_OPT_ABORT, 0);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);

    for (size_t chunk = 0; chunk <= 4099; chunk += 4099) {
        run(&s, chunk, &r);
        CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
        CU_ASSERT_EQUAL(r.consumed, s.len);
        size_t n = parse_replies(&r, rep, 8, NULL);
        CU_ASSERT_EQUAL_FATAL(n, 4);
        CU_ASSERT(rep_is(&rep[0], NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_TOO_BIG));
        CU_ASSERT(rep_is(&rep[3], NBD_OPT_GO, NBD_REP_ACK));
        run_free(&r);
    }
    s_free(&s);

    /* A 1 GiB header alone gets its answer right away; the machine then just
     * skips whatever arrives, without buffering it. */
    struct nbd_hs *hs = malloc(sizeof(*hs));
    uint8_t buf[4 + 16];
    size_t c, n;
    nbd_hs_init(hs, &test_exp);
    nbd_hs_output_consumed(hs, 18);
    rv_put_be32(buf, NBD_FLAG_C_FIXED_NEWSTYLE);
    nbd_encode_option(buf + 4, NBD_OPT_INFO, 1u << 30);
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, buf, sizeof(buf), &c), NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(c, sizeof(buf));
    const uint8_t *out = nbd_hs_output(hs, &n);
    CU_ASSERT_FATAL(n >= 20);
    CU_ASSERT_EQUAL(rv_get_be32(out + 12), NBD_REP_ERR_TOO_BIG);
    nbd_hs_output_consumed(hs, n);
    static uint8_t junk[1 << 16];
    memset(junk, 0xa5, sizeof(junk));
    for (int i = 0; i < 100; i++) {
        CU_ASSERT_EQUAL(nbd_hs_feed(hs, junk, sizeof(junk), &c), NBD_HS_CONTINUE);
        CU_ASSERT_EQUAL(c, sizeof(junk));
        CU_ASSERT_EQUAL(hs->in_len, 0);
        CU_ASSERT_PTR_NULL(nbd_hs_output(hs, &n));
    }
    CU_ASSERT_EQUAL(hs->state, NBD_HS_ST_OPT_DISCARD);
    CU_ASSERT_EQUAL(hs->discard_left, (1u << 30) - 100 * sizeof(junk));
    free(hs);

    /* Exactly at the bound is still accepted (and, here, invalid). */
    s_start(&s);
    nbd_encode_option(s_grow(&s, 16), NBD_OPT_LIST, NBD_HS_MAX_OPT_LEN);
    memset(s_grow(&s, NBD_HS_MAX_OPT_LEN), 0, NBD_HS_MAX_OPT_LEN);
    nbd_encode_option(s_grow(&s, 16), NBD_OPT_LIST, NBD_HS_MAX_OPT_LEN + 1);
    memset(s_grow(&s, NBD_HS_MAX_OPT_LEN + 1), 0, NBD_HS_MAX_OPT_LEN + 1);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(r.consumed, s.len);
    CU_ASSERT_EQUAL_FATAL(parse_replies(&r, rep, 8, NULL), 2);
    CU_ASSERT(rep_is(&rep[0], NBD_OPT_LIST, NBD_REP_ERR_INVALID));
    CU_ASSERT(rep_is(&rep[1], NBD_OPT_LIST, NBD_REP_ERR_TOO_BIG));
    run_free(&r);
    s_free(&s);
}

static void test_bad_client_flags(void)
{
    static const uint32_t bad[] = { 0, NBD_FLAG_C_NO_ZEROES, 1u << 2, 0xffffffff,
                                    NBD_FLAG_C_FIXED_NEWSTYLE | (1u << 31) };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct stream s;
        struct run r;
        s_init(&s);
        s_flags(&s, bad[i]);
        s_go(&s, NBD_OPT_GO, "", NULL, 0);
        run(&s, 0, &r);
        CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
        CU_ASSERT_EQUAL(r.consumed, 4);
        CU_ASSERT_EQUAL(r.out_len, 18);
        CU_ASSERT_PTR_NOT_NULL(r.close_reason);
        run_free(&r);
        s_free(&s);
    }
}

static void test_bad_option_magic(void)
{
    struct stream s;
    struct run r;

    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    size_t good = s.len;
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    s.b[good] ^= 0x01;          /* "HHAVEOPT" */
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL(r.consumed, good + 16);
    struct optrep rep[2];
    CU_ASSERT_EQUAL(parse_replies(&r, rep, 2, NULL), 1);
    run_free(&r);
    s_free(&s);
}

static void test_too_many_options(void)
{
    struct stream s;
    struct run r;
    struct optrep *rep = malloc(2100 * sizeof(*rep));

    s_start(&s);
    for (unsigned i = 0; i < NBD_HS_MAX_OPTIONS; i++)
        s_opt(&s, NBD_OPT_LIST, NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(parse_replies(&r, rep, 2100, NULL), 2 * NBD_HS_MAX_OPTIONS);
    run_free(&r);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
    CU_ASSERT_EQUAL(parse_replies(&r, rep, 2100, NULL), 2 * NBD_HS_MAX_OPTIONS);
    run_free(&r);
    s_free(&s);
    free(rep);
}

static void test_shutdown(void)
{
    struct nbd_hs *hs = malloc(sizeof(*hs));
    struct stream s;
    size_t c, n;

    s_start(&s);
    s_opt(&s, NBD_OPT_LIST, NULL, 0);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    nbd_hs_init(hs, &test_exp);
    nbd_hs_output_consumed(hs, 18);
    nbd_hs_set_shutdown(hs);
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, s.b, s.len, &c), NBD_HS_CONTINUE);
    CU_ASSERT_EQUAL(c, s.len);
    const uint8_t *out = nbd_hs_output(hs, &n);
    CU_ASSERT_FATAL(n > 40);
    CU_ASSERT_EQUAL(rv_get_be32(out + 12), NBD_REP_ERR_SHUTDOWN);
    size_t second = 20 + rv_get_be32(out + 16);
    CU_ASSERT_EQUAL(rv_get_be32(out + second + 8), NBD_OPT_GO);
    CU_ASSERT_EQUAL(rv_get_be32(out + second + 12), NBD_REP_ERR_SHUTDOWN);
    nbd_hs_output_consumed(hs, n);
    uint8_t hdr[16];
    nbd_encode_option(hdr, NBD_OPT_EXPORT_NAME, 0);
    CU_ASSERT_EQUAL(nbd_hs_feed(hs, hdr, 16, &c), NBD_HS_CLOSE);
    CU_ASSERT_PTR_NULL(nbd_hs_output(hs, &n));
    s_free(&s);
    free(hs);
}

/* Names and descriptions longer than the spec's 4096 are cut, never overflow. */
static void test_long_strings(void)
{
    static char longname[6000], longdesc[9000];
    memset(longname, 'n', sizeof(longname) - 1);
    memset(longdesc, 'd', sizeof(longdesc) - 1);
    struct nbd_hs_export e = test_exp;
    e.name = longname;
    e.description = longdesc;
    const uint16_t req[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE };
    struct stream s;
    struct run r;
    struct optrep rep[16];

    s_start(&s);
    s_opt(&s, NBD_OPT_LIST, NULL, 0);
    s_go(&s, NBD_OPT_INFO, "", req, 3);
    s_go(&s, NBD_OPT_GO, "", req, 3);
    run_ex(&e, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    size_t n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 12);
    CU_ASSERT_EQUAL(rep[0].len, 4 + 4096 + 4096);
    CU_ASSERT(info_is(&rep[3], NBD_OPT_INFO, NBD_INFO_NAME, 2 + 4096));
    CU_ASSERT(info_is(&rep[4], NBD_OPT_INFO, NBD_INFO_DESCRIPTION, 2 + 4096));
    CU_ASSERT(r.max_pending <= NBD_HS_OUT_SIZE);
    run_free(&r);

    /* Byte at a time: at most one option completes per call, so what is
     * pending is one option's replies, within the documented bound; and the
     * bytes are the same as when fed all at once (with backpressure). */
    struct run r1;
    run_ex(&e, s.b, s.len, 1, &r1);
    CU_ASSERT(r1.max_pending <= NBD_HS_REPLY_MAX);
    run_ex(&e, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r1.out_len, r.out_len);
    CU_ASSERT(r1.out_len == r.out_len && memcmp(r1.out, r.out, r.out_len) == 0);
    run_free(&r1);
    run_free(&r);

    /* NULL name and description: the default export only. */
    e.name = NULL;
    e.description = NULL;
    e.min_block = 0;            /* no BLOCK_SIZE info at all */
    s_free(&s);
    s_start(&s);
    s_opt(&s, NBD_OPT_LIST, NULL, 0);
    s_go(&s, NBD_OPT_GO, "vol0", req, 3);
    s_go(&s, NBD_OPT_GO, "", req, 3);
    run_ex(&e, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    n = parse_replies(&r, rep, 16, NULL);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    CU_ASSERT_EQUAL(rep[0].len, 4);
    CU_ASSERT(rep_is(&rep[2], NBD_OPT_GO, NBD_REP_ERR_UNKNOWN));
    CU_ASSERT(info_is(&rep[3], NBD_OPT_GO, NBD_INFO_EXPORT, 12));
    CU_ASSERT(info_is(&rep[4], NBD_OPT_GO, NBD_INFO_NAME, 2));
    CU_ASSERT(rep_is(&rep[5], NBD_OPT_GO, NBD_REP_ACK));
    run_free(&r);
    s_free(&s);
}

static void test_tflags_sanitized(void)
{
    struct nbd_hs_export e = test_exp;
    struct stream s;
    struct run r;

    e.tflags = NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_SEND_DF | NBD_FLAG_READ_ONLY |
               NBD_FLAG_BLOCK_STATUS_PAYLOAD;
    s_start(&s);
    s_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run_ex(&e, s.b, s.len, 0, &r);
    CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(r.result.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_DF | NBD_FLAG_READ_ONLY);
    run_free(&r);
    s_free(&s);
}

/* Streams used for the chunking comparisons. */
static size_t build_streams(struct stream *v)
{
    const char *ba[] = { "base:allocation" };
    const char *wild[] = { "base:" };
    const uint16_t req[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME };
    size_t n = 0;

    s_start(&v[n]);
    s_go(&v[n++], NBD_OPT_GO, "", req, 2);

    s_start(&v[n]);
    s_opt(&v[n], NBD_OPT_LIST, NULL, 0);
    s_opt(&v[n], 0x4242, "abc", 3);
    s_opt(&v[n], NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    s_meta(&v[n], NBD_OPT_LIST_META_CONTEXT, "vol0", wild, 1);
    s_meta(&v[n], NBD_OPT_SET_META_CONTEXT, "vol0", ba, 1);
    s_go(&v[n], NBD_OPT_INFO, "nope", NULL, 0);
    s_go(&v[n++], NBD_OPT_GO, "vol0", req, 2);

    s_init(&v[n]);
    s_flags(&v[n], NBD_FLAG_C_FIXED_NEWSTYLE);
    s_opt(&v[n++], NBD_OPT_EXPORT_NAME, "vol0", 4);

    s_start(&v[n]);
    nbd_encode_option(s_grow(&v[n], 16), NBD_OPT_INFO, 40000);
    memset(s_grow(&v[n], 40000), 'z', 40000);
    s_opt(&v[n++], NBD_OPT_ABORT, NULL, 0);

    s_start(&v[n]);
    for (int i = 0; i < 50; i++)
        s_opt(&v[n], NBD_OPT_LIST, NULL, 0);    /* pipelined: exercises backpressure */
    s_go(&v[n++], NBD_OPT_GO, "", NULL, 0);
    return n;
}

static void test_chunking_identical(void)
{
    struct stream v[8];
    size_t nv = build_streams(v);
    static const size_t chunks[] = { 1, 2, 3, 7, 16, 17, 20, 1000, 4096 };

    for (size_t i = 0; i < nv; i++) {
        struct run whole;
        run(&v[i], 0, &whole);
        CU_ASSERT(whole.st != NBD_HS_CONTINUE);
        for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
            struct run r;
            run(&v[i], chunks[j], &r);
            CU_ASSERT_EQUAL(r.st, whole.st);
            CU_ASSERT_EQUAL(r.consumed, whole.consumed);
            CU_ASSERT_EQUAL(r.out_len, whole.out_len);
            CU_ASSERT(r.out_len == whole.out_len && memcmp(r.out, whole.out, r.out_len) == 0);
            CU_ASSERT(memcmp(&r.result, &whole.result, sizeof(r.result)) == 0);
            run_free(&r);
        }
        run_free(&whole);
        s_free(&v[i]);
    }
}

/* A client that pipelines options and a driver that only drains output when
 * the machine stops consuming: output stays bounded, nothing is lost. */
static void test_backpressure(void)
{
    struct stream s;
    struct run ref;
    struct nbd_hs *hs = malloc(sizeof(*hs));
    const uint16_t req[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION };

    s_start(&s);
    for (int i = 0; i < 200; i++)
        s_go(&s, NBD_OPT_INFO, "", req, 2);
    s_go(&s, NBD_OPT_GO, "", NULL, 0);
    run(&s, 0, &ref);
    CU_ASSERT_EQUAL(ref.st, NBD_HS_DONE);

    uint8_t *out = malloc(ref.out_len + 1);
    size_t out_len = 0, off = 0, c, n, stalls = 0;
    enum nbd_hs_status st = NBD_HS_CONTINUE;
    nbd_hs_init(hs, &test_exp);
    for (int guard = 0; guard < 100000; guard++) {
        st = nbd_hs_feed(hs, s.b + off, s.len - off, &c);
        off += c;
        const uint8_t *p = nbd_hs_output(hs, &n);
        CU_ASSERT(n <= NBD_HS_OUT_SIZE);
        if (st != NBD_HS_CONTINUE || off == s.len || c == 0) {
            if (c == 0 && st == NBD_HS_CONTINUE)
                stalls++;
            /* Drain only now, and only part of it, to exercise compaction. */
            size_t take = n > 1000 && st == NBD_HS_CONTINUE ? n / 2 : n;
            CU_ASSERT_FATAL(out_len + take <= ref.out_len);
            if (take)
                memcpy(out + out_len, p, take);
            out_len += take;
            nbd_hs_output_consumed(hs, take);
        }
        if (st != NBD_HS_CONTINUE) {
            nbd_hs_output(hs, &n);
            if (n == 0)
                break;
        }
    }
    CU_ASSERT(stalls > 0);
    CU_ASSERT_EQUAL(st, NBD_HS_DONE);
    CU_ASSERT_EQUAL(off, s.len);
    CU_ASSERT_EQUAL(out_len, ref.out_len);
    CU_ASSERT(memcmp(out, ref.out, out_len) == 0);
    free(out);
    free(hs);
    run_free(&ref);
    s_free(&s);
}

/* Random input never crashes, never overruns, and always ends in a sane
 * state.  Half the buffers start with a valid prefix so the option parsers,
 * not just the flag check, see the garbage. */
static void test_random_garbage(void)
{
    static uint8_t buf[4096];
    struct nbd_hs *hs = malloc(sizeof(*hs));
    unsigned done = 0, closed = 0, cont = 0;

    rng_state = 0x0123456789abcdef;
    for (int iter = 0; iter < 5000; iter++) {
        size_t len = (size_t)(rng() % sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rng();
        if ((iter & 1) && len >= 4) {
            rv_put_be32(buf, NBD_FLAG_C_FIXED_NEWSTYLE | (rng() & 1 ? NBD_FLAG_C_NO_ZEROES : 0));
            /* A few plausible option headers with small lengths. */
            size_t p = 4;
            while (p + 16 <= len && (rng() % 8)) {
                uint32_t dl = (uint32_t)(rng() % 64);
                nbd_encode_option(buf + p, (uint32_t)(rng() % 13), dl);
                if (rng() % 2 && p + 20 <= len)
                    rv_put_be32(buf + p + 16, (uint32_t)(rng() % 40));  /* a name length */
                p += 16 + dl;
            }
        }
        nbd_hs_init(hs, &test_exp);
        size_t off = 0, c, n;
        enum nbd_hs_status st = NBD_HS_CONTINUE;
        while (off < len) {
            size_t piece = 1 + (size_t)(rng() % 300);
            if (piece > len - off)
                piece = len - off;
            st = nbd_hs_feed(hs, buf + off, piece, &c);
            CU_ASSERT_FATAL(c <= piece);
            off += c;
            nbd_hs_output(hs, &n);
            CU_ASSERT_FATAL(n <= NBD_HS_OUT_SIZE);
            nbd_hs_output_consumed(hs, n);
            if (st != NBD_HS_CONTINUE)
                break;
            CU_ASSERT_FATAL(c == piece);    /* output always drained: no stall */
        }
        CU_ASSERT(st == NBD_HS_CONTINUE || st == NBD_HS_DONE || st == NBD_HS_CLOSE);
        if (st == NBD_HS_CLOSE)
            CU_ASSERT_PTR_NOT_NULL(hs->close_reason);
        if (st == NBD_HS_DONE)
            CU_ASSERT(hs->result.tflags & NBD_FLAG_HAS_FLAGS);
        done += st == NBD_HS_DONE;
        closed += st == NBD_HS_CLOSE;
        cont += st == NBD_HS_CONTINUE;
    }
    /* The generator reaches every outcome. */
    CU_ASSERT(closed > 0);
    CU_ASSERT(cont > 0);
    printf("(random: %u done, %u closed, %u continuing) ", done, closed, cont);
    free(hs);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "greeting and output accessors", test_greeting },
        { "GO without info requests", test_go_no_info },
        { "GO with info requests", test_go_with_info },
        { "INFO then GO", test_info_then_go },
        { "GO unknown export", test_go_unknown_export },
        { "GO malformed", test_go_malformed },
        { "EXPORT_NAME with/without NO_ZEROES", test_export_name },
        { "EXPORT_NAME unknown export", test_export_name_unknown },
        { "LIST", test_list },
        { "ABORT", test_abort },
        { "structured replies + SET_META_CONTEXT", test_structured_and_meta },
        { "structured replies twice", test_structured_twice },
        { "limits for the transmission phase", test_limits },
        { "SET_META_CONTEXT rules", test_set_meta_rules },
        { "META_CONTEXT malformed", test_meta_malformed },
        { "LIST_META_CONTEXT", test_list_meta },
        { "unknown options, STARTTLS", test_unknown_options },
        { "TLS required: TLS_REQD", test_tls_required },
        { "STARTTLS acknowledged, state reset, not twice", test_starttls },
        { "TLS optional: plaintext served", test_tls_optional_plaintext },
        { "oversized option", test_oversized_option },
        { "bad client flags", test_bad_client_flags },
        { "bad option magic", test_bad_option_magic },
        { "too many options", test_too_many_options },
        { "shutdown", test_shutdown },
        { "long names and descriptions", test_long_strings },
        { "transmission flags sanitized", test_tflags_sanitized },
        { "any chunking gives identical output", test_chunking_identical },
        { "backpressure", test_backpressure },
        { "random garbage", test_random_garbage },
    };
    return UNIT_RUN("nbd_handshake", NULL, NULL, tests);
}
