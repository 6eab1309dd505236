/* fuzz-nbd-handshake.c - libFuzzer harness for the NBD option phase:
 * nbd_hs_init, nbd_hs_feed, nbd_hs_output(_consumed), nbd_hs_set_shutdown,
 * nbd_hs_limits (server/nbd_handshake.c), driven the way
 * server/nbd_server.c drives them.
 *
 * Input layout (see tests/fuzz/README.md):
 *
 *   off  size  what
 *     0     1  export: bits 0-1 name (NULL, "", "vol0", 5000 chars),
 *              bits 2-3 description (NULL, "", short, 5000 chars),
 *              bit 4 advertise block sizes, bit 5 which sizes,
 *              bits 6-7 size (1 GiB, 0, UINT64_MAX, 28 KiB)
 *     1     2  transmission flags the server wants to advertise (be16)
 *     3     1  bits 0-5: 0, or: call nbd_hs_set_shutdown before feed
 *              number N; bits 6-7: STARTTLS policy (off, on, require, off)
 *     4     2  seed for chunk and drain sizes; 0 = feed everything at once
 *              and drain everything after each feed
 *     6     1  bits 0-6 drain policy: 0 = drain all; else random partial
 *              drains; bit 7: export unavailable (a replication secondary)
 *     7     1  largest chunk = 1 + 64 * b bytes
 *     8     -  the bytes the client sends: client flags, options; after a
 *              successful handshake, transmission-phase requests
 *
 * The client stream is cut into chunks whose sizes come from the seed (so
 * every partial-input path is taken, including zero-length feeds), and the
 * server's output is drained in pieces between feeds.  Everything drained
 * goes through a client-side parser that checks the reply stream is well
 * framed and its contents match the export.
 *
 * Invariants checked: output never exceeds NBD_HS_OUT_SIZE and stays inside
 * hs.out; consumed <= len; input is refused (used < len) only when the
 * pending output is above NBD_HS_OUT_SIZE - NBD_HS_REPLY_MAX (the documented
 * backpressure), and some input is always taken when no output is pending;
 * after DONE or CLOSE nothing more is consumed and the status sticks; CLOSE
 * has a reason and is never the "internal error" one; the negotiated
 * result obeys the spec MUSTs listed in nbd_handshake.h; after shutdown no
 * reply but ERR_SHUTDOWN, ERR_TOO_BIG and ABORT's ACK goes out and the
 * handshake cannot succeed; nbd_hs_limits matches the result; the rest of
 * the input then goes through nbd_decode_request / nbd_check_request with
 * those limits. */
#include <errno.h>

#include "fuzz-util.h"
#include "repvol/nbd_handshake.h"
#include "repvol/nbd_proto.h"
#include "repvol/util.h"
#include "repvol/wire.h"

#define PREFIX_SIZE 8
#define LONG_STR 5000                   /* longer than NBD_MAX_STRING */

static struct nbd_hs hs;                /* ~33 KiB: not on the stack */
static char long_name[LONG_STR + 1], long_desc[LONG_STR + 1];

/* ------------------------------------------------------- client model */

struct client {
    const struct nbd_hs_export *exp;
    uint64_t pos;                       /* output bytes parsed so far */
    size_t greet_len;
    uint8_t greet[18];
    size_t hdr_len;                     /* bytes of the current reply header */
    uint8_t hdr[NBD_OPT_REPLY_HEADER_SIZE];
    bool in_data;
    uint32_t opt, type, len;            /* current reply */
    uint32_t data_len;
    uint8_t data[NBD_HS_REPLY_MAX];
    uint64_t reply_start;               /* output position of its header */
    uint32_t last_opt, last_type;       /* last complete reply */
    unsigned replies;
    uint64_t shutdown_mark;             /* output position when shutdown began */
    bool tls;                           /* STARTTLS done (the driver's TLS is up) */
    uint16_t info_tflags;               /* from the last NBD_INFO_EXPORT */
};

static size_t clamp_len(const char *s)
{
    return s ? strnlen(s, NBD_MAX_STRING) : 0;
}

static bool is_error(uint32_t type)
{
    return type & NBD_REP_FLAG_ERROR;
}

static void check_reply(struct client *c)
{
    const uint8_t *d = c->data;
    uint32_t n = c->len;
    const char *name = c->exp->name ? c->exp->name : "";
    const char *desc = c->exp->description ? c->exp->description : "";

    FUZZ_CHECK(nbd_opt_name(c->opt) != NULL && nbd_rep_name(c->type) != NULL);
    if (c->reply_start >= c->shutdown_mark)
        FUZZ_CHECKF(c->type == NBD_REP_ERR_SHUTDOWN || c->type == NBD_REP_ERR_TOO_BIG ||
                    (c->type == NBD_REP_ACK && c->opt == NBD_OPT_ABORT),
                    "reply %s to %s after shutdown", nbd_rep_name(c->type), nbd_opt_name(c->opt));

    /* FORCEDTLS: before TLS only errors (TLS_REQD, TOO_BIG, SHUTDOWN...)
     * and the ACKs of STARTTLS and ABORT. */
    if (c->exp->tls == NBD_HS_TLS_REQUIRE && !c->tls)
        FUZZ_CHECKF(is_error(c->type) ||
                    (c->type == NBD_REP_ACK && (c->opt == NBD_OPT_STARTTLS || c->opt == NBD_OPT_ABORT)),
                    "reply %s to %s before TLS", nbd_rep_name(c->type), nbd_opt_name(c->opt));
    if (c->type == NBD_REP_ERR_TLS_REQD)
        FUZZ_CHECK(c->exp->tls == NBD_HS_TLS_REQUIRE && !c->tls);
    if (c->opt == NBD_OPT_STARTTLS && c->type == NBD_REP_ACK)
        FUZZ_CHECK(c->exp->tls != NBD_HS_TLS_OFF && !c->tls);

    switch (c->type) {
    case NBD_REP_ACK:
        FUZZ_CHECK(n == 0);
        break;
    case NBD_REP_SERVER: {
        FUZZ_CHECK(c->opt == NBD_OPT_LIST);
        FUZZ_CHECK(n >= 4);
        uint32_t nl = rv_get_be32(d);
        FUZZ_CHECK(nl == clamp_len(name) && nl <= n - 4);
        FUZZ_CHECK(memcmp(d + 4, name, nl) == 0);
        FUZZ_CHECK(n - 4 - nl == clamp_len(desc));
        FUZZ_CHECK(memcmp(d + 4 + nl, desc, n - 4 - nl) == 0);
        break;
    }
    case NBD_REP_INFO: {
        FUZZ_CHECK(c->opt == NBD_OPT_INFO || c->opt == NBD_OPT_GO);
        FUZZ_CHECK(n >= 2);
        uint16_t info = rv_get_be16(d);
        FUZZ_CHECK(nbd_info_name(info) != NULL);
        switch (info) {
        case NBD_INFO_EXPORT:
            FUZZ_CHECK(n == 12);
            FUZZ_CHECK(rv_get_be64(d + 2) == c->exp->size);
            c->info_tflags = rv_get_be16(d + 10);
            FUZZ_CHECK(c->info_tflags & NBD_FLAG_HAS_FLAGS);
            break;
        case NBD_INFO_NAME:
            FUZZ_CHECK(n - 2 == clamp_len(name) && memcmp(d + 2, name, n - 2) == 0);
            break;
        case NBD_INFO_DESCRIPTION:
            FUZZ_CHECK(n - 2 == clamp_len(desc) && n > 2 && memcmp(d + 2, desc, n - 2) == 0);
            break;
        case NBD_INFO_BLOCK_SIZE:
            FUZZ_CHECK(n == 14 && c->exp->min_block);
            FUZZ_CHECK(rv_get_be32(d + 2) == c->exp->min_block);
            FUZZ_CHECK(rv_get_be32(d + 6) == c->exp->pref_block);
            FUZZ_CHECK(rv_get_be32(d + 10) == c->exp->max_block);
            break;
        default:
            FUZZ_CHECKF(0, "unexpected NBD_INFO type %u", info);
        }
        break;
    }
    case NBD_REP_META_CONTEXT:
        FUZZ_CHECK(c->opt == NBD_OPT_LIST_META_CONTEXT || c->opt == NBD_OPT_SET_META_CONTEXT);
        FUZZ_CHECK(n == 4 + 15 && memcmp(d + 4, "base:allocation", 15) == 0);
        FUZZ_CHECK(rv_get_be32(d) ==
                   (c->opt == NBD_OPT_SET_META_CONTEXT ? NBD_HS_BASE_ALLOCATION_ID : 0));
        break;
    default:
        FUZZ_CHECKF(is_error(c->type) && c->type <= NBD_REP_ERR_EXT_HEADER_REQD,
                    "unknown reply type 0x%x", c->type);
        /* Our error messages are short printable ASCII. */
        FUZZ_CHECK(n <= NBD_MAX_STRING);
        for (uint32_t i = 0; i < n; i++)
            FUZZ_CHECK(d[i] >= 0x20 && d[i] < 0x7f);
        break;
    }
    c->last_opt = c->opt;
    c->last_type = c->type;
    c->replies++;
}

/* The server's output, in whatever pieces it was drained. */
static void client_parse(struct client *c, const uint8_t *p, size_t n)
{
    static const uint8_t greeting[18] = { 'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C',
                                          'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 3 };
    while (n) {
        if (c->greet_len < sizeof greeting) {
            size_t t = RV_MIN(n, sizeof greeting - c->greet_len);
            memcpy(c->greet + c->greet_len, p, t);
            c->greet_len += t;
            p += t, n -= t, c->pos += t;
            if (c->greet_len == sizeof greeting)
                FUZZ_CHECK(memcmp(c->greet, greeting, sizeof greeting) == 0);
            continue;
        }
        if (!c->in_data) {
            if (c->hdr_len == 0)
                c->reply_start = c->pos;
            size_t t = RV_MIN(n, sizeof c->hdr - c->hdr_len);
            memcpy(c->hdr + c->hdr_len, p, t);
            c->hdr_len += t;
            p += t, n -= t, c->pos += t;
            if (c->hdr_len < sizeof c->hdr)
                continue;
            FUZZ_CHECK(nbd_decode_opt_reply(c->hdr, sizeof c->hdr, &c->opt, &c->type,
                                            &c->len) == NBD_OPT_REPLY_HEADER_SIZE);
            FUZZ_CHECKF(c->len <= NBD_HS_REPLY_MAX, "reply length %u", c->len);
            c->hdr_len = 0;
            c->data_len = 0;
            c->in_data = true;
        }
        size_t t = RV_MIN(n, (size_t)(c->len - c->data_len));
        memcpy(c->data + c->data_len, p, t);
        c->data_len += (uint32_t)t;
        p += t, n -= t, c->pos += t;
        if (c->data_len == c->len) {
            check_reply(c);
            c->in_data = false;
        }
    }
}

static bool client_at_boundary(const struct client *c)
{
    return c->greet_len == 18 && c->hdr_len == 0 && !c->in_data;
}

/* ------------------------------------------------------------ driver */

static size_t pending(void)
{
    size_t n = 0;
    const uint8_t *p = nbd_hs_output(&hs, &n);
    FUZZ_CHECK(n <= NBD_HS_OUT_SIZE);
    if (n == 0) {
        FUZZ_CHECK(p == NULL);
    } else {
        FUZZ_CHECK(p >= hs.out && p + n <= hs.out + NBD_HS_OUT_SIZE);
    }
    return n;
}

/* Send up to want bytes of the pending output to the client model. */
static void drain(struct client *c, size_t want)
{
    size_t n = 0;
    const uint8_t *p = nbd_hs_output(&hs, &n);
    size_t t = RV_MIN(want, n);
    if (t)
        client_parse(c, p, t);
    /* Claiming more than is pending must be harmless (documented). */
    nbd_hs_output_consumed(&hs, want > n ? want : t);
    FUZZ_CHECK(pending() == n - t);
}

static void drain_all(struct client *c)
{
    drain(c, SIZE_MAX);
}

/* The result after NBD_HS_DONE against the spec MUSTs in nbd_handshake.h. */
static void check_done(const struct nbd_hs_export *exp, const uint8_t *stream)
{
    const struct nbd_hs_result *r = &hs.result;
    uint16_t f = r->tflags;
    FUZZ_CHECK(f & NBD_FLAG_HAS_FLAGS);
    FUZZ_CHECK((f & ~(exp->tflags | NBD_FLAG_HAS_FLAGS)) == 0);
    FUZZ_CHECK(r->structured || !(f & NBD_FLAG_SEND_DF));
    FUZZ_CHECK(!(f & NBD_FLAG_SEND_FAST_ZERO) || (f & NBD_FLAG_SEND_WRITE_ZEROES));
    FUZZ_CHECK(!(f & (NBD_FLAG_SEND_RESIZE | NBD_FLAG_BLOCK_STATUS_PAYLOAD)));
    FUZZ_CHECK(!r->base_allocation || (r->structured &&
                                       r->base_allocation_id == NBD_HS_BASE_ALLOCATION_ID));
    FUZZ_CHECK(r->go || !r->block_size_requested);
    FUZZ_CHECK(r->no_zeroes == !!(rv_get_be32(stream) & NBD_FLAG_C_NO_ZEROES));
    FUZZ_CHECK(hs.options >= 1 && hs.options <= NBD_HS_MAX_OPTIONS);

    struct nbd_limits lim;
    nbd_hs_limits(&hs, &lim);
    FUZZ_CHECK(lim.export_size == exp->size);
    FUZZ_CHECK(lim.max_payload == (exp->min_block ? exp->max_block : 0));
    FUZZ_CHECK(lim.tflags == f);
    FUZZ_CHECK(lim.structured == r->structured && lim.base_allocation == r->base_allocation);
}

/* Transmission phase with the negotiated limits (fuzz-nbd-request.c holds
 * the full model of nbd_check_request; here: the limits are used sanely). */
static void transmission(const uint8_t *p, size_t len)
{
    struct nbd_limits lim;
    nbd_hs_limits(&hs, &lim);
    uint32_t maxp = lim.max_payload ? lim.max_payload : NBD_DEFAULT_MAX_PAYLOAD;
    size_t off = 0;
    for (int i = 0; i < 64; i++) {
        struct nbd_request req;
        int n = nbd_decode_request(p + off, len - off, &req);
        if (n <= 0) {
            FUZZ_CHECK(n == 0 || n == -EPROTO);
            return;
        }
        off += (size_t)n;
        uint32_t err = nbd_check_request(&req, &lim);
        FUZZ_CHECK(err == 0 || err == NBD_EINVAL || err == NBD_EPERM || err == NBD_ENOSPC ||
                   err == NBD_EOVERFLOW);
        if (err == 0 && req.type != NBD_CMD_DISC) {
            if (req.type == NBD_CMD_BLOCK_STATUS)
                FUZZ_CHECK(lim.structured && lim.base_allocation);
            if (req.type == NBD_CMD_READ || req.type == NBD_CMD_WRITE)
                FUZZ_CHECK(req.count <= maxp);
            if (req.type != NBD_CMD_FLUSH)
                FUZZ_CHECK(req.count && req.offset <= lim.export_size &&
                           req.count <= lim.export_size - req.offset);
            if (req.flags & NBD_CMD_FLAG_DF)
                FUZZ_CHECK(lim.structured && (lim.tflags & NBD_FLAG_SEND_DF));
        }
        uint32_t pl = nbd_request_payload_len(&req);
        if (err && nbd_rejected_payload_action(&req, &lim) == NBD_PAYLOAD_DISCONNECT)
            return;
        if (req.type == NBD_CMD_DISC || pl > len - off)
            return;
        off += pl;
    }
}

static void setup_export(struct nbd_hs_export *exp, const uint8_t *pre)
{
    static const char *const names[4] = { NULL, "", "vol0", long_name };
    static const char *const descs[4] = { NULL, "", "a repvol volume", long_desc };
    static const uint64_t sizes[4] = { UINT64_C(1) << 30, 0, UINT64_MAX, 7 * 4096 };
    memset(exp, 0, sizeof *exp);
    exp->name = names[pre[0] & 3];
    exp->description = descs[(pre[0] >> 2) & 3];
    if (pre[0] & 0x10) {
        if (pre[0] & 0x20) {
            exp->min_block = 1, exp->pref_block = 4096, exp->max_block = 1u << 20;
        } else {
            exp->min_block = 512, exp->pref_block = 4096, exp->max_block = 32u << 20;
        }
    }
    exp->size = sizes[pre[0] >> 6];
    exp->tflags = rv_get_be16(pre + 1);
    if (pre[6] & 0x80)
        exp->unavailable = "the volume is a replication secondary here; connect to the primary";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!long_name[0]) {
        memset(long_name, 'n', LONG_STR);
        memset(long_desc, 'd', LONG_STR);
    }
    if (size < PREFIX_SIZE)
        return 0;
    const uint8_t *pre = data;
    const uint8_t *in = data + PREFIX_SIZE;
    const size_t len = size - PREFIX_SIZE;

    struct nbd_hs_export exp;
    setup_export(&exp, pre);
    static const enum nbd_hs_tls tls_modes[4] = { NBD_HS_TLS_OFF, NBD_HS_TLS_ON, NBD_HS_TLS_REQUIRE,
                                                  NBD_HS_TLS_OFF };
    exp.tls = tls_modes[pre[3] >> 6];
    unsigned shutdown_at = pre[3] & 0x3f;
    uint16_t seed = rv_get_be16(pre + 4);
    bool one_shot = seed == 0;
    bool drain_partial = (pre[6] & 0x7f) != 0 && !one_shot;
    size_t max_chunk = 1 + 64 * (size_t)pre[7];
    struct fuzz_rng rng;
    fuzz_rng_seed(&rng, seed);
    /* FUZZ_DEBUG=1 traces the feeds (for triaging an artifact). */
    static int debug = -1;
    if (debug < 0)
        debug = getenv("FUZZ_DEBUG") != NULL;

    /* Stale bytes in the buffers must never reach the output. */
    memset(&hs, 0xa5, sizeof hs);
    nbd_hs_init(&hs, &exp);
    FUZZ_CHECK(pending() == 18);
    FUZZ_CHECK(hs.options == 0 && hs.close_reason == NULL);

    struct client c;
    memset(&c, 0, sizeof c);
    c.exp = &exp;
    c.shutdown_mark = UINT64_MAX;

    enum nbd_hs_status st = NBD_HS_CONTINUE;
    size_t pos = 0;
    unsigned feeds = 0, zero_feeds = 0;
    bool shut = false;
    for (unsigned iter = 0; pos < len; iter++) {
        FUZZ_CHECKF(iter < 4 * len + 1000, "no progress: pos %zu of %zu", pos, len);
        if (shutdown_at && feeds + 1 == shutdown_at && !shut) {
            c.shutdown_mark = c.pos + pending();
            nbd_hs_set_shutdown(&hs);
            shut = true;
        }
        size_t chunk = len - pos;
        if (!one_shot) {
            size_t r = (size_t)fuzz_rng_below(&rng, max_chunk + 1);   /* not inside RV_MIN */
            chunk = RV_MIN(chunk, r);
            if (chunk == 0 && ++zero_feeds > 2)
                chunk = 1;
            else if (chunk)
                zero_feeds = 0;
        }
        size_t before = pending();
        size_t used = SIZE_MAX;
        /* NULL is allowed for an empty feed; check it is never read. */
        st = nbd_hs_feed(&hs, chunk ? in + pos : NULL, chunk, &used);
        feeds++;
        if (debug)
            fprintf(stderr, "feed %u: pos %zu chunk %zu -> used %zu, status %d, output %zu -> %zu\n",
                    feeds, pos, chunk, used, (int)st, before, pending());
        FUZZ_CHECKF(used <= chunk, "consumed %zu of %zu", used, chunk);
        size_t after = pending();
        FUZZ_CHECK(hs.options <= NBD_HS_MAX_OPTIONS + 1);
        pos += used;
        if (st == NBD_HS_STARTTLS) {
            /* The driver: send the ACK, refuse plaintext that came after
             * it, else run TLS; the rest of the input is then "decrypted". */
            FUZZ_CHECK(exp.tls != NBD_HS_TLS_OFF && !hs.tls_active && !shut);
            FUZZ_CHECK(!hs.result.structured && !hs.result.base_allocation);
            size_t again = SIZE_MAX;
            FUZZ_CHECK(nbd_hs_feed(&hs, in + pos, len - pos, &again) == NBD_HS_STARTTLS && again == 0);
            drain_all(&c);
            FUZZ_CHECK(c.last_opt == NBD_OPT_STARTTLS && c.last_type == NBD_REP_ACK);
            if (used < chunk)
                break;              /* injected plaintext: the driver hangs up */
            nbd_hs_tls_started(&hs);
            FUZZ_CHECK(hs.tls_active);
            c.tls = true;
            st = NBD_HS_CONTINUE;
            continue;
        }
        if (st != NBD_HS_CONTINUE)
            break;
        FUZZ_CHECK(hs.close_reason == NULL);
        if (used < chunk) {
            /* Backpressure: only with a (nearly) full output buffer. */
            FUZZ_CHECKF(after > NBD_HS_OUT_SIZE - NBD_HS_REPLY_MAX,
                        "refused input with %zu bytes pending (had %zu)", after, before);
            /* Progress: with nothing pending, some input is always taken. */
            FUZZ_CHECK(before > 0 || used > 0);
        }
        if (drain_partial && used == chunk) {
            uint64_t r = fuzz_rng_next(&rng);
            drain(&c, r & 1 ? (size_t)(r >> 8) % (after + 1) : 0);
        } else {
            drain_all(&c);
        }
    }

    if (st == NBD_HS_CONTINUE) {
        /* Input exhausted mid-handshake: an empty feed changes nothing. */
        size_t used = SIZE_MAX;
        size_t before = pending();
        st = nbd_hs_feed(&hs, NULL, 0, &used);
        FUZZ_CHECK(used == 0);
        if (st == NBD_HS_CONTINUE)
            FUZZ_CHECK(pending() == before);
    }

    if (st == NBD_HS_DONE && !hs.result.go) {
        /* NBD_OPT_EXPORT_NAME ends with size, flags and maybe 124 zeros:
         * not an option reply, so check it apart from the framed replies. */
        size_t tail = hs.result.no_zeroes ? 10 : 134;
        size_t n = pending();
        FUZZ_CHECK(n >= tail);
        drain(&c, n - tail);
        FUZZ_CHECK(client_at_boundary(&c));
        const uint8_t *p = nbd_hs_output(&hs, &n);
        FUZZ_CHECK(n == tail);
        FUZZ_CHECK(rv_get_be64(p) == exp.size);
        FUZZ_CHECK(rv_get_be16(p + 8) == hs.result.tflags);
        for (size_t i = 10; i < tail; i++)
            FUZZ_CHECK(p[i] == 0);
        nbd_hs_output_consumed(&hs, n);
    }
    drain_all(&c);
    FUZZ_CHECK(pending() == 0);
    FUZZ_CHECK(client_at_boundary(&c));

    switch (st) {
    case NBD_HS_CONTINUE:
        FUZZ_CHECK(hs.close_reason == NULL);
        break;
    case NBD_HS_STARTTLS:
        FUZZ_CHECK(hs.close_reason == NULL && exp.tls != NBD_HS_TLS_OFF);
        break;
    case NBD_HS_DONE:
        FUZZ_CHECK(hs.close_reason == NULL);
        FUZZ_CHECK(!shut && !exp.unavailable);
        FUZZ_CHECK(exp.tls != NBD_HS_TLS_REQUIRE || hs.tls_active);
        check_done(&exp, in);
        if (hs.result.go) {
            FUZZ_CHECK(c.last_opt == NBD_OPT_GO && c.last_type == NBD_REP_ACK);
            FUZZ_CHECK(c.info_tflags == hs.result.tflags);
        }
        break;
    case NBD_HS_CLOSE:
        FUZZ_CHECK(hs.close_reason != NULL);
        FUZZ_CHECKF(strstr(hs.close_reason, "internal error") == NULL, "closed: %s",
                    hs.close_reason);
        break;
    }

    if (st != NBD_HS_CONTINUE) {
        /* Sticky: nothing more is consumed, and the status stays. */
        const char *why = hs.close_reason;
        size_t used = SIZE_MAX;
        FUZZ_CHECK(nbd_hs_feed(&hs, in + pos, len - pos, &used) == st && used == 0);
        FUZZ_CHECK(nbd_hs_feed(&hs, NULL, 0, &used) == st && used == 0);
        nbd_hs_set_shutdown(&hs);
        FUZZ_CHECK(nbd_hs_feed(&hs, in + pos, len - pos, &used) == st && used == 0);
        FUZZ_CHECK(pending() == 0 && hs.close_reason == why);
        if (st == NBD_HS_DONE)
            transmission(in + pos, len - pos);
    }
    return 0;
}
