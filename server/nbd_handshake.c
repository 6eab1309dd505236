/* nbd_handshake.c - fixed-newstyle option haggling; see nbd_handshake.h.
 *
 * Input is consumed in units: the 4-byte client flags, a 16-byte option
 * header, then the option's data (buffered whole, at most NBD_HS_MAX_OPT_LEN)
 * or, for an oversized option, skipped byte by byte.  Each complete unit is
 * handled at once and its replies appended to the output buffer.  Before
 * starting an option we make sure the worst-case reply fits, so handling an
 * option never runs out of output space. */
#include <string.h>

#include "repvol/nbd_handshake.h"
#include "repvol/util.h"
#include "repvol/wire.h"

static const char base_allocation[] = "base:allocation";

/* ------------------------------------------------------------------ output */

static size_t out_room(const struct nbd_hs *hs)
{
    return NBD_HS_OUT_SIZE - hs->out_off - hs->out_len;
}

/* Move pending output to the front so all free space is contiguous. */
static void out_compact(struct nbd_hs *hs)
{
    if (hs->out_off) {
        memmove(hs->out, hs->out + hs->out_off, hs->out_len);
        hs->out_off = 0;
    }
}

static void hs_close(struct nbd_hs *hs, const char *why)
{
    hs->state = NBD_HS_ST_CLOSED;
    hs->close_reason = why;
}

/* Cannot fail in practice: every option's replies fit in NBD_HS_REPLY_MAX and
 * room for that is reserved before the option is read.  Close rather than
 * emit a truncated message if that reasoning is ever broken. */
static uint8_t *out_reserve(struct nbd_hs *hs, size_t n)
{
    if (n > out_room(hs)) {
        hs_close(hs, "internal error: handshake output buffer overflow");
        return NULL;
    }
    uint8_t *p = hs->out + hs->out_off + hs->out_len;
    hs->out_len += n;
    return p;
}

static void out_put(struct nbd_hs *hs, const void *data, size_t n)
{
    uint8_t *p = out_reserve(hs, n);
    if (p && n)
        memcpy(p, data, n);
}

/* Option reply header; the caller appends exactly len bytes of data. */
static void reply_hdr(struct nbd_hs *hs, uint32_t type, uint32_t len)
{
    uint8_t *p = out_reserve(hs, NBD_OPT_REPLY_HEADER_SIZE);
    if (!p)
        return;
    rv_put_be64(p, NBD_OPT_REPLY_MAGIC);
    rv_put_be32(p + 8, hs->opt);
    rv_put_be32(p + 12, type);
    rv_put_be32(p + 16, len);
}

static void reply_ack(struct nbd_hs *hs)
{
    reply_hdr(hs, NBD_REP_ACK, 0);
}

/* Error replies carry a human-readable message (spec: optional). */
static void reply_err(struct nbd_hs *hs, uint32_t type, const char *msg)
{
    size_t n = strlen(msg);
    reply_hdr(hs, type, (uint32_t)n);
    out_put(hs, msg, n);
}

/* ------------------------------------------------------------------ export */

static const char *exp_name(const struct nbd_hs *hs)
{
    return hs->exp->name ? hs->exp->name : "";
}

static size_t clamp_string(const char *s)
{
    return strnlen(s, NBD_MAX_STRING);
}

/* "" is the default export; otherwise the exact volume name. */
static bool name_matches(const struct nbd_hs *hs, const uint8_t *name, uint32_t len)
{
    if (len == 0)
        return true;
    const char *n = exp_name(hs);
    return len == strlen(n) && memcmp(name, n, len) == 0;
}

static uint16_t effective_tflags(const struct nbd_hs *hs)
{
    uint16_t f = hs->exp->tflags | NBD_FLAG_HAS_FLAGS;

    if (!hs->result.structured)
        f &= ~NBD_FLAG_SEND_DF;         /* spec: MUST be clear without structured replies */
    if (!(f & NBD_FLAG_SEND_WRITE_ZEROES))
        f &= ~NBD_FLAG_SEND_FAST_ZERO;  /* spec: MUST be clear without WRITE_ZEROES */
    /* Extensions this code does not speak. */
    f &= ~(NBD_FLAG_SEND_RESIZE | NBD_FLAG_BLOCK_STATUS_PAYLOAD);
    return (uint16_t)f;
}

/* ----------------------------------------------------------------- options */

static void opt_export_name(struct nbd_hs *hs, const uint8_t *d, uint32_t len)
{
    /* Old-style end of the handshake: no way to report an error but to hang up. */
    if (!name_matches(hs, d, len)) {
        hs_close(hs, "NBD_OPT_EXPORT_NAME for an unknown export");
        return;
    }
    if (hs->exp->unavailable) {
        hs_close(hs, hs->exp->unavailable);
        return;
    }
    uint16_t tflags = effective_tflags(hs);
    uint8_t *p = out_reserve(hs, 10);
    if (!p)
        return;
    rv_put_be64(p, hs->exp->size);
    rv_put_be16(p + 8, tflags);
    if (!hs->result.no_zeroes) {
        p = out_reserve(hs, 124);
        if (!p)
            return;
        memset(p, 0, 124);
    }
    hs->result.tflags = tflags;
    hs->result.go = false;
    hs->result.block_size_requested = false;
    hs->state = NBD_HS_ST_DONE;
}

static void opt_list(struct nbd_hs *hs, uint32_t len)
{
    if (len) {
        reply_err(hs, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
        return;
    }
    const char *name = exp_name(hs);
    const char *desc = hs->exp->description ? hs->exp->description : "";
    size_t nl = clamp_string(name), dl = clamp_string(desc);

    /* Name, then the optional human-readable details (the description). */
    reply_hdr(hs, NBD_REP_SERVER, (uint32_t)(4 + nl + dl));
    uint8_t *p = out_reserve(hs, 4);
    if (!p)
        return;
    rv_put_be32(p, (uint32_t)nl);
    out_put(hs, name, nl);
    out_put(hs, desc, dl);
    reply_ack(hs);
}

static void opt_starttls(struct nbd_hs *hs, uint32_t len)
{
    if (len) {
        reply_err(hs, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
        return;
    }
    if (hs->exp->tls == NBD_HS_TLS_OFF) {
        reply_err(hs, NBD_REP_ERR_POLICY, "TLS is not enabled on this server");
        return;
    }
    if (hs->tls_active) {
        reply_err(hs, NBD_REP_ERR_INVALID, "TLS is already active");
        return;
    }
    reply_ack(hs);
    if (hs->state == NBD_HS_ST_CLOSED)
        return;
    /* Spec: nothing negotiated before STARTTLS survives it (an attacker
     * could have shaped it in plaintext). */
    hs->result.structured = false;
    hs->result.base_allocation = false;
    hs->result.base_allocation_id = 0;
    hs->state = NBD_HS_ST_STARTTLS;
}

/* FORCEDTLS: before TLS only STARTTLS (and ABORT, handled with the header)
 * are allowed. */
static bool tls_required(const struct nbd_hs *hs)
{
    return hs->exp->tls == NBD_HS_TLS_REQUIRE && !hs->tls_active;
}

static void info_reply(struct nbd_hs *hs, uint16_t info, const void *data, size_t n)
{
    reply_hdr(hs, NBD_REP_INFO, (uint32_t)(2 + n));
    uint8_t *p = out_reserve(hs, 2);
    if (!p)
        return;
    rv_put_be16(p, info);
    out_put(hs, data, n);
}

/* NBD_OPT_INFO and NBD_OPT_GO share their format and replies. */
static void opt_info_go(struct nbd_hs *hs, const uint8_t *d, uint32_t len)
{
    /* u32 name length, name, u16 request count, u16 requests[] */
    if (len < 6) {
        reply_err(hs, NBD_REP_ERR_INVALID, "option data too short");
        return;
    }
    uint32_t nl = rv_get_be32(d);
    if (nl > len - 6) {
        reply_err(hs, NBD_REP_ERR_INVALID, "export name length exceeds option data");
        return;
    }
    uint32_t nreq = rv_get_be16(d + 4 + nl);
    if ((uint64_t)4 + nl + 2 + 2 * (uint64_t)nreq != len) {
        reply_err(hs, NBD_REP_ERR_INVALID, "information request count does not match option length");
        return;
    }
    if (!name_matches(hs, d + 4, nl)) {
        reply_err(hs, NBD_REP_ERR_UNKNOWN, "unknown export name");
        return;
    }
    if (hs->exp->unavailable) {
        reply_err(hs, NBD_REP_ERR_UNKNOWN, hs->exp->unavailable);
        return;
    }

    /* Duplicates are a client error; answering each type once is harmless.
     * Unknown types MUST be ignored. */
    bool want_name = false, want_desc = false, want_bs = false;
    for (uint32_t i = 0; i < nreq; i++) {
        switch (rv_get_be16(d + 4 + nl + 2 + 2 * i)) {
        case NBD_INFO_NAME: want_name = true; break;
        case NBD_INFO_DESCRIPTION: want_desc = true; break;
        case NBD_INFO_BLOCK_SIZE: want_bs = true; break;
        default: break;
        }
    }

    uint16_t tflags = effective_tflags(hs);
    uint8_t buf[12];

    /* Mandatory before ACK. */
    rv_put_be64(buf, hs->exp->size);
    rv_put_be16(buf + 8, tflags);
    info_reply(hs, NBD_INFO_EXPORT, buf, 10);

    /* The spec lets the server send unrequested info, but the client may not
     * understand it; NAME and DESCRIPTION only go out when asked for.
     * BLOCK_SIZE goes out always (as qemu-nbd does): it is the only way a
     * client learns our maximum payload, and a client ignoring it is covered
     * by nbd_check_request rejecting oversized requests cleanly.  Only a GO
     * that asked for it binds the client to it (result.block_size_requested). */
    if (want_name) {
        const char *name = exp_name(hs);
        info_reply(hs, NBD_INFO_NAME, name, clamp_string(name));
    }
    if (want_desc && hs->exp->description && hs->exp->description[0])
        info_reply(hs, NBD_INFO_DESCRIPTION, hs->exp->description,
                   clamp_string(hs->exp->description));
    if (hs->exp->min_block) {
        rv_put_be32(buf, hs->exp->min_block);
        rv_put_be32(buf + 4, hs->exp->pref_block);
        rv_put_be32(buf + 8, hs->exp->max_block);
        info_reply(hs, NBD_INFO_BLOCK_SIZE, buf, 12);
    }
    reply_ack(hs);

    if (hs->opt == NBD_OPT_GO && hs->state != NBD_HS_ST_CLOSED) {
        hs->result.tflags = tflags;
        hs->result.go = true;
        hs->result.block_size_requested = want_bs;
        hs->state = NBD_HS_ST_DONE;
    }
}

static void opt_structured_reply(struct nbd_hs *hs, uint32_t len)
{
    if (len)
        reply_err(hs, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
    else if (hs->result.structured)
        reply_err(hs, NBD_REP_ERR_INVALID, "structured replies already negotiated");
    else {
        hs->result.structured = true;
        reply_ack(hs);
    }
}

/* Parsed NBD_OPT_{LIST,SET}_META_CONTEXT data: u32 name length, name, u32
 * query count, queries (u32 length, string). */
struct meta_req {
    const uint8_t *name;
    uint32_t name_len;
    uint32_t nq;
    const uint8_t *queries;     /* first query's length field */
};

/* Checks the whole syntax up front so no reply goes out for a malformed
 * request.  Returns NULL or the reason it is invalid. */
static const char *parse_meta(const uint8_t *d, uint32_t len, struct meta_req *m)
{
    if (len < 8)
        return "option data too short";
    m->name_len = rv_get_be32(d);
    if (m->name_len > len - 8)
        return "export name length exceeds option data";
    m->name = d + 4;
    m->nq = rv_get_be32(d + 4 + m->name_len);
    m->queries = d + 8 + m->name_len;

    uint32_t off = 8 + m->name_len;
    for (uint32_t i = 0; i < m->nq; i++) {
        if (len - off < 4)
            return "query count exceeds option data";
        uint32_t ql = rv_get_be32(d + off);
        off += 4;
        if (ql > len - off)
            return "query length exceeds option data";
        /* Spec: a query MUST start with a non-empty namespace and a colon. */
        const uint8_t *colon = memchr(d + off, ':', ql);
        if (!colon || colon == d + off)
            return "query lacks a namespace";
        off += ql;
    }
    if (off != len)
        return "trailing bytes after the last query";
    return NULL;
}

static bool query_is(const uint8_t *q, uint32_t ql, const char *s)
{
    return ql == strlen(s) && memcmp(q, s, ql) == 0;
}

/* Does any query select base:allocation?  LIST also accepts the "base:"
 * wildcard (spec: MUST support it in LIST, MUST ignore it in SET); unknown
 * namespaces and leaf names are ignored. */
static bool meta_selects_base_allocation(const struct meta_req *m, bool list)
{
    if (m->nq == 0)
        return list;            /* LIST with no query lists everything; SET selects nothing */
    const uint8_t *p = m->queries;
    for (uint32_t i = 0; i < m->nq; i++) {
        uint32_t ql = rv_get_be32(p);
        const uint8_t *q = p + 4;
        if (query_is(q, ql, base_allocation) || (list && query_is(q, ql, "base:")))
            return true;
        p = q + ql;
    }
    return false;
}

static void opt_meta_context(struct nbd_hs *hs, const uint8_t *d, uint32_t len)
{
    bool list = hs->opt == NBD_OPT_LIST_META_CONTEXT;
    struct meta_req m;
    const char *bad;

    if (!list) {
        /* SET replaces the selection even when it fails. */
        hs->result.base_allocation = false;
        hs->result.base_allocation_id = 0;
    }
    if (!hs->result.structured) {
        reply_err(hs, NBD_REP_ERR_INVALID, "negotiate structured replies first");
        return;
    }
    if ((bad = parse_meta(d, len, &m)) != NULL) {
        reply_err(hs, NBD_REP_ERR_INVALID, bad);
        return;
    }
    if (!name_matches(hs, m.name, m.name_len)) {
        reply_err(hs, NBD_REP_ERR_UNKNOWN, "unknown export name");
        return;
    }
    if (meta_selects_base_allocation(&m, list)) {
        /* Spec: ids in LIST replies are reserved, SHOULD be 0. */
        uint32_t id = list ? 0 : NBD_HS_BASE_ALLOCATION_ID;
        size_t n = strlen(base_allocation);
        reply_hdr(hs, NBD_REP_META_CONTEXT, (uint32_t)(4 + n));
        uint8_t *p = out_reserve(hs, 4);
        if (!p)
            return;
        rv_put_be32(p, id);
        out_put(hs, base_allocation, n);
        if (!list) {
            hs->result.base_allocation = true;
            hs->result.base_allocation_id = id;
        }
    }
    reply_ack(hs);
}

/* A complete option (header and data) has arrived. */
static void handle_option(struct nbd_hs *hs, const uint8_t *d, uint32_t len)
{
    hs->state = NBD_HS_ST_OPT_HEADER;   /* unless the handler ends the handshake */

    if (hs->shutting_down) {
        if (hs->opt == NBD_OPT_EXPORT_NAME)
            hs_close(hs, "server shutting down");
        else
            reply_err(hs, NBD_REP_ERR_SHUTDOWN, "server shutting down");
        return;
    }
    if (tls_required(hs) && hs->opt != NBD_OPT_STARTTLS) {
        if (hs->opt == NBD_OPT_EXPORT_NAME)
            hs_close(hs, "NBD_OPT_EXPORT_NAME without TLS, which this server requires");
        else
            reply_err(hs, NBD_REP_ERR_TLS_REQD, "this server requires TLS: use NBD_OPT_STARTTLS");
        return;
    }
    switch (hs->opt) {
    case NBD_OPT_EXPORT_NAME:       opt_export_name(hs, d, len); break;
    case NBD_OPT_LIST:              opt_list(hs, len); break;
    case NBD_OPT_STARTTLS:          opt_starttls(hs, len); break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:                opt_info_go(hs, d, len); break;
    case NBD_OPT_STRUCTURED_REPLY:  opt_structured_reply(hs, len); break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:  opt_meta_context(hs, d, len); break;
    default:
        /* Includes NBD_OPT_EXTENDED_HEADERS: not implemented. */
        reply_err(hs, NBD_REP_ERR_UNSUP, "option not supported");
        break;
    }
}

/* A complete 16-byte option header has arrived. */
static void handle_opt_header(struct nbd_hs *hs, const uint8_t *h)
{
    if (rv_get_be64(h) != NBD_IHAVEOPT) {
        /* The stream can no longer be framed. */
        hs_close(hs, "bad option magic");
        return;
    }
    hs->opt = rv_get_be32(h + 8);
    hs->opt_len = rv_get_be32(h + 12);
    if (++hs->options > NBD_HS_MAX_OPTIONS) {
        hs_close(hs, "too many options");
        return;
    }
    if (hs->opt == NBD_OPT_ABORT) {
        /* Any data is ignored (spec SHOULD); we hang up right away. */
        reply_ack(hs);
        if (hs->state != NBD_HS_ST_CLOSED)
            hs_close(hs, "client sent NBD_OPT_ABORT");
        return;
    }
    if (hs->opt == NBD_OPT_EXPORT_NAME && hs->opt_len > NBD_MAX_STRING) {
        hs_close(hs, "NBD_OPT_EXPORT_NAME name too long");
        return;
    }
    if (hs->opt_len > NBD_HS_MAX_OPT_LEN) {
        /* Reply now rather than after the data: a client that sends a huge
         * length and then waits gets an answer instead of a hang.  The data,
         * if it comes, is skipped without being stored. */
        reply_err(hs, NBD_REP_ERR_TOO_BIG, "option data too long");
        if (hs->state != NBD_HS_ST_CLOSED) {
            hs->discard_left = hs->opt_len;
            hs->state = NBD_HS_ST_OPT_DISCARD;
        }
        return;
    }
    hs->state = NBD_HS_ST_OPT_DATA;
}

static void handle_client_flags(struct nbd_hs *hs, const uint8_t *p)
{
    uint32_t f = rv_get_be32(p);

    /* Spec: the server MUST drop the connection on unknown client flags. */
    if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        hs_close(hs, "unknown client flags");
        return;
    }
    /* Non-fixed newstyle would mean no option errors: we require fixed. */
    if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE)) {
        hs_close(hs, "client does not support fixed newstyle");
        return;
    }
    hs->result.no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
    hs->state = NBD_HS_ST_OPT_HEADER;
}

/* ---------------------------------------------------------------- public */

void nbd_hs_init(struct nbd_hs *hs, const struct nbd_hs_export *exp)
{
    /* The two big buffers are not cleared: only in_len/out_len bytes are read. */
    memset(&hs->result, 0, sizeof(hs->result));
    hs->close_reason = NULL;
    hs->options = 0;
    hs->tls_active = false;
    hs->exp = exp;
    hs->state = NBD_HS_ST_CLIENT_FLAGS;
    hs->shutting_down = false;
    hs->opt = hs->opt_len = hs->discard_left = 0;
    hs->in_len = hs->out_off = hs->out_len = 0;

    uint8_t *p = out_reserve(hs, 18);
    rv_put_be64(p, NBD_MAGIC);
    rv_put_be64(p + 8, NBD_IHAVEOPT);
    rv_put_be16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

static enum nbd_hs_status status_of(const struct nbd_hs *hs)
{
    switch (hs->state) {
    case NBD_HS_ST_DONE:   return NBD_HS_DONE;
    case NBD_HS_ST_CLOSED: return NBD_HS_CLOSE;
    case NBD_HS_ST_STARTTLS: return NBD_HS_STARTTLS;
    default:               return NBD_HS_CONTINUE;
    }
}

enum nbd_hs_status nbd_hs_feed(struct nbd_hs *hs, const uint8_t *in, size_t len,
                               size_t *consumed)
{
    size_t used = 0;

    for (;;) {
        size_t need, take;

        switch (hs->state) {
        case NBD_HS_ST_DONE:
        case NBD_HS_ST_CLOSED:
        case NBD_HS_ST_STARTTLS:
            goto out;
        case NBD_HS_ST_OPT_DISCARD:
            take = RV_MIN(len - used, (size_t)hs->discard_left);
            used += take;
            hs->discard_left -= (uint32_t)take;
            if (hs->discard_left)
                goto out;       /* all input skipped; need more */
            hs->state = NBD_HS_ST_OPT_HEADER;
            continue;
        case NBD_HS_ST_CLIENT_FLAGS:
            need = 4;
            break;
        case NBD_HS_ST_OPT_HEADER:
            /* Backpressure: only start an option if its replies will fit. */
            if (hs->in_len == 0) {
                out_compact(hs);
                if (out_room(hs) < NBD_HS_REPLY_MAX)
                    goto out;
            }
            need = NBD_OPT_HEADER_SIZE;
            break;
        case NBD_HS_ST_OPT_DATA:
            need = hs->opt_len;
            break;
        default:
            hs_close(hs, "internal error: bad handshake state");
            goto out;
        }

        take = RV_MIN(need - hs->in_len, len - used);
        if (take) {
            memcpy(hs->in + hs->in_len, in + used, take);
            hs->in_len += take;
            used += take;
        }
        if (hs->in_len < need)
            goto out;
        hs->in_len = 0;

        switch (hs->state) {
        case NBD_HS_ST_CLIENT_FLAGS: handle_client_flags(hs, hs->in); break;
        case NBD_HS_ST_OPT_HEADER:   handle_opt_header(hs, hs->in); break;
        case NBD_HS_ST_OPT_DATA:     handle_option(hs, hs->in, hs->opt_len); break;
        default: break;
        }
    }
out:
    *consumed = used;
    return status_of(hs);
}

const uint8_t *nbd_hs_output(const struct nbd_hs *hs, size_t *len)
{
    *len = hs->out_len;
    return hs->out_len ? hs->out + hs->out_off : NULL;
}

void nbd_hs_output_consumed(struct nbd_hs *hs, size_t n)
{
    if (n > hs->out_len)
        n = hs->out_len;        /* tolerate a confused caller rather than corrupt state */
    hs->out_off += n;
    hs->out_len -= n;
    if (hs->out_len == 0)
        hs->out_off = 0;
}

void nbd_hs_limits(const struct nbd_hs *hs, struct nbd_limits *lim)
{
    *lim = (struct nbd_limits){
        .export_size = hs->exp->size,
        /* What the client was told; without NBD_INFO_BLOCK_SIZE it was told nothing. */
        .max_payload = hs->exp->min_block ? hs->exp->max_block : 0,
        .tflags = hs->result.tflags,
        .structured = hs->result.structured,
        .base_allocation = hs->result.base_allocation,
    };
}

void nbd_hs_tls_started(struct nbd_hs *hs)
{
    if (hs->state == NBD_HS_ST_STARTTLS) {
        hs->tls_active = true;
        hs->state = NBD_HS_ST_OPT_HEADER;
    }
}

void nbd_hs_set_shutdown(struct nbd_hs *hs)
{
    hs->shutting_down = true;
}
