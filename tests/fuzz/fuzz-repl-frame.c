/* fuzz-repl-frame.c - libFuzzer harness for the replication link codecs:
 * rv_repl_decode_hdr, rv_repl_decode_hello(_ex), rv_repl_check_compat,
 * rv_repl_decode_refuse_msg (server/repl_proto.c).
 *
 * Input layout (see tests/fuzz/README.md):
 *
 *   off  size  what
 *     0     1  mode: (b & 3) 0 or 3 = frame stream, 1 = two bare hello
 *              bodies, 2 = one bare REFUSE message
 *     1     1  message-buffer size selector: why/msg buffers of 1 + b bytes
 *     2     -  mode 0/3: frames as a peer sends them - 40-byte header, then
 *                        payload_len bytes of payload - until the input ends
 *                        or a header error makes the stream unframeable;
 *              mode 1:   hello body A (160 bytes, or more: the rest of the
 *                        first half), hello body B (the second half);
 *              mode 2:   REFUSE payload bytes.
 *
 * In the frame stream HELLO/STATE payloads go to rv_repl_decode_hello_ex,
 * REFUSE payloads to rv_repl_decode_refuse_msg, and the first two hellos
 * seen to rv_repl_check_compat (both ways round).
 *
 * Oracles: each decoder is compared with an independent model written from
 * the contract in include/repvol/repl_proto.h (header type table and check
 * order, hello field rules, compat refusal order, refusal text sanitising);
 * round trips encode(decode(x)) == x and decode(encode(s)) == s where decode
 * succeeds; message buffers are always NUL-terminated, never overrun (heap
 * buffers of the exact size), and a short one holds a prefix of a long one. */
#include <errno.h>

#include "fuzz-util.h"
#include "repvol/repl_proto.h"
#include "repvol/util.h"
#include "repvol/wire.h"

#define MiB (UINT32_C(1) << 20)

/* ================================================================ models */

/* The type table of repl_proto.h. */
enum { R_NONE, R_REQ, R_ANY, R_LOOSE };         /* range rule */
enum { S_ZERO, S_ERRNO, S_ANY };                /* status rule */
#define F_ANY UINT32_MAX                        /* flags ignored */

struct model_type {
    uint16_t type;
    int range, status;
    bool payload_is_length;
    uint32_t min_payload, max_payload, flags;
};

static const struct model_type model_types[] = {
    /* HELLO and REFUSE: status "any" - they must get through to a peer of
     * any version (REFUSE's status is the reason). */
    { RV_REPL_T_HELLO, R_LOOSE, S_ANY, false, 160, 4096, F_ANY },
    { RV_REPL_T_REFUSE, R_LOOSE, S_ANY, false, 0, 1024, F_ANY },
    { RV_REPL_T_WRITE, R_REQ, S_ZERO, true, 1, 32 * MiB,
      RV_REPL_F_FUA | RV_REPL_F_ACK_ON_RECEIVE },
    /* Mode B sets ACK_ON_RECEIVE on every request, FLUSH too. */
    { RV_REPL_T_FLUSH, R_NONE, S_ZERO, false, 0, 0, RV_REPL_F_ACK_ON_RECEIVE },
    { RV_REPL_T_TRIM, R_REQ, S_ZERO, false, 0, 0, RV_REPL_F_FUA | RV_REPL_F_ACK_ON_RECEIVE },
    { RV_REPL_T_ZERO, R_REQ, S_ZERO, false, 0, 0,
      RV_REPL_F_FUA | RV_REPL_F_NO_HOLE | RV_REPL_F_ACK_ON_RECEIVE },
    { RV_REPL_T_ACK, R_NONE, S_ZERO, false, 0, 0, RV_REPL_F_RECEIVED },
    { RV_REPL_T_NACK, R_NONE, S_ERRNO, false, 0, 0, 0 },
    { RV_REPL_T_PING, R_NONE, S_ZERO, false, 0, 0, 0 },
    { RV_REPL_T_PONG, R_NONE, S_ZERO, false, 0, 0, 0 },
    { RV_REPL_T_GOODBYE, R_NONE, S_ZERO, false, 0, 0, 0 },
    { RV_REPL_T_RESYNC_WRITE, R_REQ, S_ANY, true, 1, 32 * MiB, RV_REPL_F_FUA },
    { RV_REPL_T_RESYNC_REQ, R_REQ, S_ANY, false, 0, 0, 0 },
    { RV_REPL_T_BITMAP, R_ANY, S_ANY, false, 0, MiB, 0 },
    { RV_REPL_T_DIGEST_REQ, R_ANY, S_ANY, false, 0, 0, 0 },
    { RV_REPL_T_DIGEST, R_ANY, S_ANY, false, 0, MiB, 0 },
    { RV_REPL_T_SYNC_DONE, R_ANY, S_ANY, false, 0, 0, 0 },
    { RV_REPL_T_STATE, R_ANY, S_ANY, false, 160, 4096, 0 },
};

static const struct model_type *model_type(uint16_t t)
{
    for (size_t i = 0; i < RV_ARRAY_SIZE(model_types); i++)
        if (model_types[i].type == t)
            return &model_types[i];
    return NULL;
}

/* rv_repl_decode_hdr's verdict on 40 or more bytes. */
static int model_hdr(const uint8_t *b)
{
    if (rv_get_be32(b) != RV_REPL_MAGIC)
        return RV_REPL_ERR_MAGIC;
    if (rv_get_be16(b + 4) != RV_REPL_VERSION)
        return RV_REPL_ERR_VERSION;
    const struct model_type *t = model_type(rv_get_be16(b + 6));
    if (!t)
        return RV_REPL_ERR_TYPE;
    uint32_t flags = rv_get_be32(b + 8), status = rv_get_be32(b + 12);
    uint64_t offset = rv_get_be64(b + 24);
    uint32_t length = rv_get_be32(b + 32), plen = rv_get_be32(b + 36);

    if (plen < t->min_payload || plen > t->max_payload)
        return RV_REPL_ERR_LENGTH;
    if (t->payload_is_length && plen != length)
        return RV_REPL_ERR_LENGTH;
    if (t->range == R_REQ && (length == 0 || (unsigned __int128)offset + length > UINT64_MAX))
        return RV_REPL_ERR_LENGTH;
    if (t->range == R_NONE && length != 0)
        return RV_REPL_ERR_LENGTH;
    if (t->flags != F_ANY && (flags & ~t->flags))
        return RV_REPL_ERR_FLAGS;
    if (t->range == R_NONE && offset != 0)
        return RV_REPL_ERR_FIELD;
    if (t->status == S_ZERO && status != 0)
        return RV_REPL_ERR_FIELD;
    if (t->status == S_ERRNO && (status == 0 || status > RV_REPL_MAX_ERRNO))
        return RV_REPL_ERR_FIELD;
    return RV_REPL_HDR_SIZE;
}

/* The hello field rules (every field but the name). */
static bool model_hello_values_ok(const struct rv_repl_hello *h)
{
    static const uint8_t nil[RV_UUID_LEN];
    return h->proto_min >= 1 && h->proto_min <= h->proto_max &&
           memcmp(h->uuid, nil, RV_UUID_LEN) != 0 &&
           h->data_size > 0 && h->data_size % 4096 == 0 &&
           h->data_size <= (UINT64_C(1) << 60) &&
           (h->block_size == 512 || h->block_size == 4096) &&
           h->node_id < RV_META_MAX_NODES &&
           (h->role == 1 || h->role == 2) &&
           h->disk_state >= 1 && h->disk_state <= 3 &&
           h->mode >= 1 && h->mode <= 3;
}

/* Wire name field: printable ASCII, a NUL, NUL padding (64 bytes). */
static bool model_wire_name_ok(const uint8_t *n)
{
    size_t i = 0;
    while (i < RV_REPL_NAME_LEN && n[i] >= 0x20 && n[i] <= 0x7e)
        i++;
    if (i == RV_REPL_NAME_LEN || n[i] != 0)
        return false;
    for (; i < RV_REPL_NAME_LEN; i++)
        if (n[i])
            return false;
    return true;
}

static uint32_t model_common_version(const struct rv_repl_hello *a, const struct rv_repl_hello *b)
{
    uint32_t lo = a->proto_min > b->proto_min ? a->proto_min : b->proto_min;
    uint32_t hi = a->proto_max < b->proto_max ? a->proto_max : b->proto_max;
    return lo <= hi && hi > 0 ? hi : 0;
}

static uint32_t model_compat(const struct rv_repl_hello *a, const struct rv_repl_hello *b)
{
    if (model_common_version(a, b) == 0)
        return RV_REPL_REFUSE_VERSION;
    if (memcmp(a->uuid, b->uuid, RV_UUID_LEN) != 0)
        return RV_REPL_REFUSE_UUID;
    if (a->data_size != b->data_size)
        return RV_REPL_REFUSE_SIZE;
    if (a->node_id == b->node_id)
        return RV_REPL_REFUSE_NODE_ID;
    if (a->role == RV_ROLE_PRIMARY && b->role == RV_ROLE_PRIMARY)
        return RV_REPL_REFUSE_BOTH_PRIMARY;
    if (a->mode != b->mode)
        return RV_REPL_REFUSE_MODE;
    return 0;
}

/* One UTF-8 code point at p (avail bytes) decoded the long way: returns its
 * length and *cp, or 0 if no well-formed sequence starts at p (RFC 3629:
 * shortest form, no surrogates, at most U+10FFFF). */
static size_t model_utf8(const uint8_t *p, size_t avail, uint32_t *cp)
{
    size_t n;
    uint32_t v, min;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    } else if ((p[0] & 0xe0) == 0xc0) {
        n = 2, v = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, v = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, v = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* rv_repl_decode_refuse_msg's output, into out (msglen bytes). */
static void model_refuse_msg(const uint8_t *p, size_t len, char *out, size_t msglen)
{
    if (len > RV_REPL_REFUSE_MSG_MAX)
        len = RV_REPL_REFUSE_MSG_MAX;
    size_t o = 0, i = 0;
    while (i < len) {
        uint32_t cp = 0;
        size_t n = model_utf8(p + i, len - i, &cp);
        bool ok = n > 0 && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp <= 0x9f);
        size_t w = ok ? n : 1;
        if (o + w > msglen - 1)
            break;
        if (ok)
            memcpy(out + o, p + i, n);
        else
            out[o] = '?';
        o += w;
        i += n ? n : 1;
    }
    out[o] = '\0';
}

/* ======================================================== the harness */

struct ctx {
    size_t msglen;                  /* size of message buffers, >= 1 */
    struct rv_repl_hello hellos[2]; /* the first two hellos decoded */
    int nhellos;
};

static char *xmalloc_str(size_t n)
{
    char *s = malloc(n);
    FUZZ_CHECK(s != NULL);
    memset(s, 0x5a, n);
    return s;
}

/* why/msg buffers: NUL-terminated, short one a prefix of the full one. */
static void check_msgs(const char *full, size_t full_len, const char *shrt, size_t short_len)
{
    fuzz_check_cstr(full, full_len);
    fuzz_check_cstr(shrt, short_len);
    size_t fl = strlen(full), sl = strlen(shrt);
    FUZZ_CHECKF(sl == RV_MIN(fl, short_len - 1) && memcmp(shrt, full, sl) == 0,
                "\"%s\" is not the %zu-byte cut of \"%s\"", shrt, short_len, full);
}

static void check_hello_equal(const struct rv_repl_hello *a, const struct rv_repl_hello *b)
{
    FUZZ_CHECK(a->proto_min == b->proto_min && a->proto_max == b->proto_max);
    FUZZ_CHECK(memcmp(a->uuid, b->uuid, RV_UUID_LEN) == 0);
    FUZZ_CHECK(a->data_size == b->data_size && a->block_size == b->block_size);
    FUZZ_CHECK(a->node_id == b->node_id && a->role == b->role);
    FUZZ_CHECK(a->disk_state == b->disk_state);
    FUZZ_CHECK(a->current_gen == b->current_gen && a->bitmap_gen == b->bitmap_gen);
    for (int i = 0; i < RV_REPL_HISTORY; i++)
        FUZZ_CHECK(a->history_gen[i] == b->history_gen[i]);
    FUZZ_CHECK(a->mode == b->mode && a->flags == b->flags);
    FUZZ_CHECK(a->dirty_bytes == b->dirty_bytes);
    FUZZ_CHECK(memcmp(a->name, b->name, sizeof a->name) == 0);
}

/* A hello body of len bytes (the buffer ends there). */
static void do_hello(struct ctx *c, const uint8_t *p, size_t len)
{
    struct rv_repl_hello h, h1, h2;
    char *full = xmalloc_str(RV_REPL_MSG_LEN), *shrt = xmalloc_str(c->msglen);
    int r = rv_repl_decode_hello(p, len, &h);
    int r1 = rv_repl_decode_hello_ex(p, len, &h1, full, RV_REPL_MSG_LEN);
    int r2 = rv_repl_decode_hello_ex(p, len, &h2, shrt, c->msglen);
    FUZZ_CHECKF(r == r1 && r == r2, "hello results %d %d %d", r, r1, r2);
    check_hello_equal(&h, &h1);
    check_hello_equal(&h, &h2);
    check_msgs(full, RV_REPL_MSG_LEN, shrt, c->msglen);
    FUZZ_CHECKF((r == 0) == (full[0] == '\0'), "result %d, why \"%s\"", r, full);
    FUZZ_CHECK(rv_repl_strerror(r) != NULL);
    free(full);
    free(shrt);

    if (len < RV_REPL_HELLO_SIZE) {
        FUZZ_CHECK(r == RV_REPL_ERR_LENGTH);
        static const struct rv_repl_hello zero;
        check_hello_equal(&h, &zero);
        return;
    }
    /* Every field decoded, whatever the verdict. */
    FUZZ_CHECK(h.proto_min == rv_get_be32(p + RV_REPL_HOFF_PROTO_MIN));
    FUZZ_CHECK(h.proto_max == rv_get_be32(p + RV_REPL_HOFF_PROTO_MAX));
    FUZZ_CHECK(memcmp(h.uuid, p + RV_REPL_HOFF_UUID, RV_UUID_LEN) == 0);
    FUZZ_CHECK(h.data_size == rv_get_be64(p + RV_REPL_HOFF_DATA_SIZE));
    FUZZ_CHECK(h.block_size == rv_get_be32(p + RV_REPL_HOFF_BLOCK_SIZE));
    FUZZ_CHECK(h.node_id == rv_get_be32(p + RV_REPL_HOFF_NODE_ID));
    FUZZ_CHECK(h.role == rv_get_be32(p + RV_REPL_HOFF_ROLE));
    FUZZ_CHECK(h.disk_state == rv_get_be32(p + RV_REPL_HOFF_DISK_STATE));
    FUZZ_CHECK(h.current_gen == rv_get_be64(p + RV_REPL_HOFF_CURRENT_GEN));
    FUZZ_CHECK(h.bitmap_gen == rv_get_be64(p + RV_REPL_HOFF_BITMAP_GEN));
    for (int i = 0; i < RV_REPL_HISTORY; i++)
        FUZZ_CHECK(h.history_gen[i] == rv_get_be64(p + RV_REPL_HOFF_HISTORY_GEN + 8 * i));
    FUZZ_CHECK(h.mode == rv_get_be32(p + RV_REPL_HOFF_MODE));
    FUZZ_CHECK(h.flags == rv_get_be32(p + RV_REPL_HOFF_FLAGS));
    FUZZ_CHECK(h.dirty_bytes == rv_get_be64(p + RV_REPL_HOFF_DIRTY_BYTES));
    FUZZ_CHECK(memcmp(h.name, p + RV_REPL_HOFF_NAME, RV_REPL_NAME_LEN - 1) == 0);
    FUZZ_CHECK(h.name[RV_REPL_NAME_LEN - 1] == '\0');

    bool valid = model_hello_values_ok(&h) && model_wire_name_ok(p + RV_REPL_HOFF_NAME);
    FUZZ_CHECKF((r == 0) == valid, "decode_hello = %d, contract says %s", r,
                valid ? "valid" : "invalid");
    FUZZ_CHECK(r == 0 || r == RV_REPL_ERR_FIELD);

    /* Encoding takes exactly what rv_repl_hello_check accepts. */
    int chk = rv_repl_hello_check(&h, NULL, 0);
    FUZZ_CHECK(chk == 0 || chk == RV_REPL_ERR_FIELD);
    uint8_t *enc = malloc(RV_REPL_HELLO_SIZE);
    FUZZ_CHECK(enc != NULL);
    FUZZ_CHECK(rv_repl_encode_hello(enc, RV_REPL_HELLO_SIZE - 1, &h) == -EINVAL);
    int e = rv_repl_encode_hello(enc, RV_REPL_HELLO_SIZE, &h);
    FUZZ_CHECKF((e == RV_REPL_HELLO_SIZE) == (chk == 0), "hello_check %d, encode %d", chk, e);
    if (r == 0) {
        FUZZ_CHECK(chk == 0);
        /* Byte-exact: a valid body has nothing the decoder drops but the
         * bytes past 160. */
        FUZZ_CHECK(memcmp(enc, p, RV_REPL_HELLO_SIZE) == 0);
    }
    if (e == RV_REPL_HELLO_SIZE) {
        /* decode(encode(h)) == h, up to the bytes after the name's NUL
         * (not sent: a body with junk there was refused, but the struct
         * decoded from it still encodes). */
        struct rv_repl_hello back, norm = h;
        size_t nl = strlen(norm.name);
        memset(norm.name + nl, 0, sizeof norm.name - nl);
        FUZZ_CHECK(rv_repl_decode_hello(enc, RV_REPL_HELLO_SIZE, &back) == 0);
        check_hello_equal(&norm, &back);
    } else {
        FUZZ_CHECK(e == -EINVAL);
    }
    free(enc);
    FUZZ_CHECK(rv_repl_mode_name(h.mode) != NULL);

    if (c->nhellos < 2)
        c->hellos[c->nhellos++] = h;
}

static void do_compat(struct ctx *c)
{
    if (c->nhellos == 0)
        return;
    const struct rv_repl_hello *a = &c->hellos[0];
    const struct rv_repl_hello *b = &c->hellos[c->nhellos - 1];   /* itself if alone */

    uint32_t v = rv_repl_common_version(a, b);
    FUZZ_CHECK(v == model_common_version(a, b));
    FUZZ_CHECK(v == rv_repl_common_version(b, a));

    char *full = xmalloc_str(RV_REPL_MSG_LEN), *shrt = xmalloc_str(c->msglen);
    uint32_t r = rv_repl_check_compat(a, b, full, RV_REPL_MSG_LEN);
    FUZZ_CHECK(rv_repl_check_compat(a, b, shrt, c->msglen) == r);
    FUZZ_CHECK(rv_repl_check_compat(a, b, NULL, 0) == r);
    check_msgs(full, RV_REPL_MSG_LEN, shrt, c->msglen);
    FUZZ_CHECKF(r == model_compat(a, b), "check_compat = %u (%s), contract says %u", r, full,
                model_compat(a, b));
    /* Every rule is symmetric, so the verdict is too. */
    FUZZ_CHECK(rv_repl_check_compat(b, a, NULL, 0) == r);
    FUZZ_CHECK(full[0] != '\0');
    if (r == 0)
        FUZZ_CHECK(strncmp(full, "compatible: protocol version ", 29) == 0);
    FUZZ_CHECK(rv_repl_refuse_name(r) != NULL);
    free(full);
    free(shrt);
}

/* A REFUSE payload of len bytes (the buffer ends there). */
static void do_refuse(struct ctx *c, const uint8_t *p, size_t len, uint32_t reason)
{
    char *msg = xmalloc_str(c->msglen), *want = xmalloc_str(c->msglen);
    int r = rv_repl_decode_refuse_msg(p, len, msg, c->msglen);
    FUZZ_CHECK(r == (len > RV_REPL_REFUSE_MSG_MAX ? RV_REPL_ERR_LENGTH : 0));
    FUZZ_CHECK(rv_repl_decode_refuse_msg(p, len, NULL, 0) == r);
    /* A NULL payload is an empty one. */
    FUZZ_CHECK(rv_repl_decode_refuse_msg(NULL, len, msg, c->msglen) == r && msg[0] == '\0');
    FUZZ_CHECK(rv_repl_decode_refuse_msg(p, len, msg, c->msglen) == r);
    fuzz_check_cstr(msg, c->msglen);
    model_refuse_msg(p, len, want, c->msglen);
    FUZZ_CHECKF(strcmp(msg, want) == 0, "refuse msg \"%s\", contract says \"%s\"", msg, want);

    /* The sanitised text is clean UTF-8 without controls. */
    size_t ml = strlen(msg);
    for (size_t i = 0; i < ml;) {
        uint32_t cp = 0;
        size_t n = model_utf8((const uint8_t *)msg + i, ml - i, &cp);
        FUZZ_CHECK(n > 0 && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp <= 0x9f));
        i += n;
    }

    /* Round trip through rv_repl_encode_refuse: header, then as much of the
     * text as fits, cut on a character boundary. */
    size_t cap = RV_REPL_HDR_SIZE + (c->msglen * 7) % 1100;
    uint8_t *frame = malloc(cap);
    FUZZ_CHECK(frame != NULL);
    FUZZ_CHECK(rv_repl_encode_refuse(frame, RV_REPL_HDR_SIZE - 1, reason, msg) == 0);
    size_t n = rv_repl_encode_refuse(frame, cap, reason, msg);
    FUZZ_CHECK(n >= RV_REPL_HDR_SIZE && n <= cap);
    struct rv_repl_hdr h;
    FUZZ_CHECK(rv_repl_decode_hdr(frame, n, &h) == RV_REPL_HDR_SIZE);
    FUZZ_CHECK(h.type == RV_REPL_T_REFUSE && h.status == reason && h.seq == 0);
    size_t pl = h.payload_len;
    FUZZ_CHECK(pl == n - RV_REPL_HDR_SIZE && pl <= ml);
    FUZZ_CHECK(memcmp(frame + RV_REPL_HDR_SIZE, msg, pl) == 0);
    if (ml <= RV_REPL_REFUSE_MSG_MAX && ml <= cap - RV_REPL_HDR_SIZE)
        FUZZ_CHECK(pl == ml);
    else
        FUZZ_CHECK(pl + 4 > RV_MIN((size_t)RV_REPL_REFUSE_MSG_MAX, cap - RV_REPL_HDR_SIZE));
    char *back = xmalloc_str(RV_REPL_REFUSE_MSG_MAX + 1);
    FUZZ_CHECK(rv_repl_decode_refuse_msg(frame + RV_REPL_HDR_SIZE, pl, back,
                                         RV_REPL_REFUSE_MSG_MAX + 1) == 0);
    FUZZ_CHECKF(strlen(back) == pl && memcmp(back, msg, pl) == 0,
                "encode_refuse cut \"%s\" into \"%s\"", msg, back);
    free(back);
    free(frame);
    free(msg);
    free(want);
    FUZZ_CHECK(rv_repl_refuse_name(reason) != NULL);
}

/* Frames until the input ends or the stream cannot be framed any more. */
static void frame_stream(struct ctx *c, const uint8_t *p, size_t len)
{
    size_t off = 0;
    for (unsigned guard = 0; guard < 4096; guard++) {
        struct rv_repl_hdr h;
        memset(&h, 0xa5, sizeof h);
        size_t left = len - off;
        int r = rv_repl_decode_hdr(p + off, left, &h);
        FUZZ_CHECK(rv_repl_strerror(r < 0 ? r : 0) != NULL);
        if (left < RV_REPL_HDR_SIZE) {
            FUZZ_CHECK(r == 0);
            return;
        }
        const uint8_t *b = p + off;
        int want = model_hdr(b);
        FUZZ_CHECKF(r == want, "decode_hdr = %d, contract says %d (type %u)", r, want,
                    rv_get_be16(b + 6));
        if (r == RV_REPL_ERR_MAGIC) {
            static const struct rv_repl_hdr zero;
            FUZZ_CHECK(memcmp(&h, &zero, sizeof h) == 0);
            return;
        }
        /* From ERR_VERSION on, every field is decoded. */
        FUZZ_CHECK(h.version == rv_get_be16(b + 4) && h.type == rv_get_be16(b + 6) &&
                   h.flags == rv_get_be32(b + 8) && h.status == rv_get_be32(b + 12) &&
                   h.seq == rv_get_be64(b + 16) && h.offset == rv_get_be64(b + 24) &&
                   h.length == rv_get_be32(b + 32) && h.payload_len == rv_get_be32(b + 36));
        FUZZ_CHECK(rv_repl_type_name(h.type) != NULL);
        FUZZ_CHECK(rv_repl_max_payload(h.type) ==
                   (model_type(h.type) ? model_type(h.type)->max_payload : 0));
        if (r == RV_REPL_ERR_VERSION || r == RV_REPL_ERR_TYPE || r == RV_REPL_ERR_LENGTH)
            return;     /* the link is dropped */
        /* Success, FLAGS or FIELD: payload_len is within the type's bound,
         * so the payload can be skipped. */
        FUZZ_CHECK(h.payload_len <= rv_repl_max_payload(h.type));
        if (r == RV_REPL_HDR_SIZE) {
            uint8_t enc[RV_REPL_HDR_SIZE];
            FUZZ_CHECK(rv_repl_encode_hdr(enc, &h) == RV_REPL_HDR_SIZE);
            FUZZ_CHECK(memcmp(enc, b, RV_REPL_HDR_SIZE) == 0);
            struct rv_repl_hdr again;
            FUZZ_CHECK(rv_repl_decode_hdr(enc, sizeof enc, &again) == RV_REPL_HDR_SIZE);
            FUZZ_CHECK(memcmp(&again, &h, sizeof h) == 0);
        } else {
            FUZZ_CHECK(r == RV_REPL_ERR_FLAGS || r == RV_REPL_ERR_FIELD);
        }
        off += RV_REPL_HDR_SIZE;
        if (h.payload_len > len - off)
            return;     /* payload cut off by the end of the input */
        if (r == RV_REPL_HDR_SIZE) {
            /* Decoders get a copy that ends where the payload ends. */
            uint8_t *pl = fuzz_dup(p + off, h.payload_len);
            if (h.type == RV_REPL_T_HELLO || h.type == RV_REPL_T_STATE)
                do_hello(c, pl, h.payload_len);
            else if (h.type == RV_REPL_T_REFUSE)
                do_refuse(c, pl, h.payload_len, h.status);
            free(pl);
        }
        off += h.payload_len;
    }
}

static void mode_parse(const uint8_t *p, size_t len)
{
    FUZZ_CHECK(rv_repl_strerror(len ? -(int)p[0] : 0) != NULL);
    char s[4] = { 0 };
    memcpy(s, p, RV_MIN(len, sizeof s - 1));
    uint32_t mode = 0xa5a5a5a5;
    int r = rv_repl_mode_parse(s, &mode);
    bool ok = s[0] && !s[1] && strchr("AaBbCc", s[0]);
    FUZZ_CHECK((r == 0) == ok);
    if (ok)
        FUZZ_CHECK(mode == (uint32_t)(1 + (strchr("AaBbCc", s[0]) - "AaBbCc") / 2));
    else
        FUZZ_CHECK(r == -EINVAL && mode == 0xa5a5a5a5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct ctx c = { .msglen = 1 + (size_t)data[1] };
    const uint8_t *p = data + 2;
    size_t len = size - 2;

    switch (data[0] & 3) {
    case 1: {
        /* Two bare bodies; each decoder sees a buffer ending with its body. */
        size_t half = len / 2;
        uint8_t *a = fuzz_dup(p, half);
        do_hello(&c, a, half);
        free(a);
        do_hello(&c, p + half, len - half);
        break;
    }
    case 2:
        do_refuse(&c, p, len, (uint32_t)data[0] << 24 ^ (uint32_t)len);
        mode_parse(p, len);
        break;
    default:
        frame_stream(&c, p, len);
        break;
    }
    do_compat(&c);
    return 0;
}
