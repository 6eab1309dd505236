/* fuzz-nbd-request.c - libFuzzer harness for the NBD transmission-phase
 * request parser: nbd_decode_request, nbd_check_request and
 * nbd_rejected_payload_action (server/nbd_proto.c).
 *
 * Input layout (see tests/fuzz/README.md):
 *
 *   off  size  what
 *     0     8  export_size                      } struct nbd_limits, as the
 *     8     4  max_payload (0 = 32 MiB default) } handshake would have
 *    12     2  tflags                           } negotiated them
 *    14     1  bit 0 structured, bit 1 base_allocation
 *    15     -  the client's byte stream: 28-byte request headers, each WRITE
 *              followed by its payload
 *
 * The stream is walked the way server/nbd_server.c walks it: decode a
 * header, validate it, then either consume the WRITE payload (accepted, or
 * rejected with NBD_PAYLOAD_DISCARD) or stop (bad magic, DISCONNECT, DISC).
 *
 * Oracles: nbd_check_request is compared with an independent model written
 * from the contract in include/repvol/nbd_proto.h (so a changed check order
 * or a missed case shows up as a mismatch, not only memory errors);
 * nbd_rejected_payload_action likewise; decode(encode(req)) == req and
 * encode(decode(bytes)) == bytes.  The same stream is also fed to the
 * client-side reply parsers (nbd_decode_reply, nbd_decode_opt_reply), which
 * the test client and nbd-bad-client use. */
#include <errno.h>

#include "fuzz-util.h"
#include "repvol/nbd_proto.h"
#include "repvol/wire.h"

#define LIMITS_SIZE 15

/* ------------------------------------------------------------------ model */

/* nbd_check_request as documented in nbd_proto.h, check by check. */
static uint32_t model_check(const struct nbd_request *r, const struct nbd_limits *lim)
{
    const uint16_t t = r->type, f = r->flags, tf = lim->tflags;
    const uint64_t maxp = lim->max_payload ? lim->max_payload : NBD_DEFAULT_MAX_PAYLOAD;

    if (t == NBD_CMD_DISC)
        return 0;
    if (t > NBD_CMD_BLOCK_STATUS)
        return NBD_EINVAL;

    /* Flag known, and taken by this command. */
    const uint16_t known = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF |
                           NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO;
    if (f & ~known)
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_NO_HOLE) && t != NBD_CMD_WRITE_ZEROES)
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_FAST_ZERO) && t != NBD_CMD_WRITE_ZEROES)
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_DF) && t != NBD_CMD_READ)
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_REQ_ONE) && t != NBD_CMD_BLOCK_STATUS)
        return NBD_EINVAL;
    /* Flag negotiated. */
    if ((f & NBD_CMD_FLAG_FUA) && !(tf & NBD_FLAG_SEND_FUA))
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_DF) && (!(tf & NBD_FLAG_SEND_DF) || !lim->structured))
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_FAST_ZERO) && !(tf & NBD_FLAG_SEND_FAST_ZERO))
        return NBD_EINVAL;
    /* Command advertised. */
    if (t == NBD_CMD_FLUSH && !(tf & NBD_FLAG_SEND_FLUSH))
        return NBD_EINVAL;
    if (t == NBD_CMD_TRIM && !(tf & NBD_FLAG_SEND_TRIM))
        return NBD_EINVAL;
    if (t == NBD_CMD_WRITE_ZEROES && !(tf & NBD_FLAG_SEND_WRITE_ZEROES))
        return NBD_EINVAL;
    if (t == NBD_CMD_CACHE && !(tf & NBD_FLAG_SEND_CACHE))
        return NBD_EINVAL;
    if (t == NBD_CMD_BLOCK_STATUS && (!lim->structured || !lim->base_allocation))
        return NBD_EINVAL;

    bool writes = t == NBD_CMD_WRITE || t == NBD_CMD_TRIM || t == NBD_CMD_WRITE_ZEROES;
    if (writes && (tf & NBD_FLAG_READ_ONLY))
        return NBD_EPERM;
    if (t == NBD_CMD_FLUSH)
        return r->offset == 0 && r->count == 0 ? 0 : NBD_EINVAL;
    if (r->count == 0)
        return NBD_EINVAL;
    if (t == NBD_CMD_READ && r->count > maxp)
        return lim->structured ? NBD_EOVERFLOW : NBD_EINVAL;
    if (t == NBD_CMD_WRITE && r->count > maxp)
        return NBD_EINVAL;
    /* 128-bit arithmetic: the model must not share the parser's overflow
     * reasoning. */
    if ((unsigned __int128)r->offset + r->count > lim->export_size)
        return t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return 0;
}

static enum nbd_payload_action model_payload(const struct nbd_request *r,
                                             const struct nbd_limits *lim)
{
    uint64_t maxp = lim->max_payload ? lim->max_payload : NBD_DEFAULT_MAX_PAYLOAD;
    if (r->type != NBD_CMD_WRITE || r->count == 0)
        return NBD_PAYLOAD_NONE;
    if (r->count > maxp && r->count > NBD_DOS_PAYLOAD_FLOOR)
        return NBD_PAYLOAD_DISCONNECT;
    return NBD_PAYLOAD_DISCARD;
}

/* ------------------------------------------------------------- requests */

static void check_names(const struct nbd_request *r, uint32_t err)
{
    FUZZ_CHECK(nbd_cmd_name(r->type) != NULL);
    FUZZ_CHECK(nbd_err_name(err) != NULL);
}

/* One header at p, with len bytes up to the end of the input.  Returns the
 * bytes to advance past it (header and payload), or 0 to stop. */
static size_t one_request(const uint8_t *p, size_t len, const struct nbd_limits *lim)
{
    struct nbd_request req;
    memset(&req, 0xa5, sizeof req);
    int n = nbd_decode_request(p, len, &req);

    if (len < NBD_REQUEST_SIZE) {
        FUZZ_CHECKF(n == 0, "decode of %zu bytes returned %d", len, n);
        return 0;
    }
    if (rv_get_be32(p) != NBD_REQUEST_MAGIC) {
        FUZZ_CHECKF(n == -EPROTO, "bad magic returned %d", n);
        return 0;
    }
    FUZZ_CHECKF(n == NBD_REQUEST_SIZE, "decode returned %d", n);

    /* Round trips, both ways. */
    uint8_t enc[NBD_REQUEST_SIZE + 1];
    enc[NBD_REQUEST_SIZE] = 0x5a;
    FUZZ_CHECK(nbd_encode_request(enc, &req) == NBD_REQUEST_SIZE);
    FUZZ_CHECK(enc[NBD_REQUEST_SIZE] == 0x5a);
    FUZZ_CHECK(memcmp(enc, p, NBD_REQUEST_SIZE) == 0);
    struct nbd_request again;
    FUZZ_CHECK(nbd_decode_request(enc, NBD_REQUEST_SIZE, &again) == NBD_REQUEST_SIZE);
    FUZZ_CHECK(again.flags == req.flags && again.type == req.type &&
               again.cookie == req.cookie && again.offset == req.offset &&
               again.count == req.count);

    /* Validation against the model. */
    uint32_t err = nbd_check_request(&req, lim);
    uint32_t want = model_check(&req, lim);
    FUZZ_CHECKF(err == want, "check_request(type %u flags 0x%x off %llu count %u; size %llu "
                "max %u tflags 0x%x sr %d ba %d) = %u, contract says %u",
                req.type, req.flags, (unsigned long long)req.offset, req.count,
                (unsigned long long)lim->export_size, lim->max_payload, lim->tflags,
                lim->structured, lim->base_allocation, err, want);
    check_names(&req, err);

    uint32_t plen = nbd_request_payload_len(&req);
    FUZZ_CHECK(plen == (req.type == NBD_CMD_WRITE ? req.count : 0));
    bool must_sr = nbd_reply_must_be_structured(&req, lim);
    FUZZ_CHECK(!must_sr || lim->structured);

    enum nbd_payload_action act = nbd_rejected_payload_action(&req, lim);
    FUZZ_CHECKF(act == model_payload(&req, lim), "payload action %d for type %u count %u",
                act, req.type, req.count);

    if (req.type == NBD_CMD_DISC)
        return 0;               /* the driver stops reading after DISC */
    if (err && act == NBD_PAYLOAD_DISCONNECT)
        return 0;
    /* Accepted WRITE or rejected with DISCARD: the payload follows. */
    size_t adv = NBD_REQUEST_SIZE;
    if (plen > len - adv)
        return 0;               /* the rest of the input is payload */
    return adv + plen;
}

/* --------------------------------------------------------------- replies */

/* Client side: simple replies and structured chunk headers. */
static void parse_replies(const uint8_t *p, size_t len)
{
    size_t off = 0;
    for (unsigned guard = 0; guard < 4096; guard++) {
        struct nbd_reply r;
        int n = nbd_decode_reply(p + off, len - off, &r);
        if (n == 0) {
            /* Only for a short buffer. */
            size_t left = len - off;
            FUZZ_CHECK(left < NBD_CHUNK_HEADER_SIZE);
            if (left >= NBD_SIMPLE_REPLY_SIZE)
                FUZZ_CHECK(rv_get_be32(p + off) == NBD_STRUCTURED_REPLY_MAGIC);
            return;
        }
        if (n < 0) {
            FUZZ_CHECK(n == -EPROTO);
            uint32_t m = rv_get_be32(p + off);
            FUZZ_CHECK(m != NBD_SIMPLE_REPLY_MAGIC && m != NBD_STRUCTURED_REPLY_MAGIC);
            return;
        }
        uint8_t enc[NBD_CHUNK_HEADER_SIZE];
        if (r.magic == NBD_SIMPLE_REPLY_MAGIC) {
            FUZZ_CHECK(n == NBD_SIMPLE_REPLY_SIZE);
            FUZZ_CHECK(r.flags == 0 && r.type == 0 && r.length == 0);
            FUZZ_CHECK(nbd_encode_simple_reply(enc, r.error, r.cookie) == NBD_SIMPLE_REPLY_SIZE);
            FUZZ_CHECK(memcmp(enc, p + off, NBD_SIMPLE_REPLY_SIZE) == 0);
            FUZZ_CHECK(nbd_err_name(r.error) != NULL);
            off += (size_t)n;
        } else {
            FUZZ_CHECK(r.magic == NBD_STRUCTURED_REPLY_MAGIC);
            FUZZ_CHECK(n == NBD_CHUNK_HEADER_SIZE);
            FUZZ_CHECK(r.error == 0);
            FUZZ_CHECK(nbd_encode_chunk_header(enc, r.flags, r.type, r.cookie, r.length) ==
                       NBD_CHUNK_HEADER_SIZE);
            FUZZ_CHECK(memcmp(enc, p + off, NBD_CHUNK_HEADER_SIZE) == 0);
            FUZZ_CHECK(nbd_reply_type_name(r.type) != NULL);
            off += (size_t)n;
            if (r.length > len - off)
                return;
            off += r.length;
        }
    }
}

/* Client side: one option reply header. */
static void parse_opt_reply(const uint8_t *p, size_t len)
{
    uint32_t opt = 0xa5a5a5a5, type = 0xa5a5a5a5, olen = 0xa5a5a5a5;
    int n = nbd_decode_opt_reply(p, len, &opt, &type, &olen);
    if (len < NBD_OPT_REPLY_HEADER_SIZE) {
        FUZZ_CHECK(n == 0);
        return;
    }
    if (rv_get_be64(p) != NBD_OPT_REPLY_MAGIC) {
        FUZZ_CHECK(n == -EPROTO);
        return;
    }
    FUZZ_CHECK(n == NBD_OPT_REPLY_HEADER_SIZE);
    FUZZ_CHECK(opt == rv_get_be32(p + 8) && type == rv_get_be32(p + 12) &&
               olen == rv_get_be32(p + 16));
    FUZZ_CHECK(nbd_opt_name(opt) != NULL && nbd_rep_name(type) != NULL);
}

/* ------------------------------------------------------------------ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in;
    fuzz_in_init(&in, data, size);
    struct nbd_limits lim;
    lim.export_size = fuzz_u64(&in);
    lim.max_payload = fuzz_u32(&in);
    lim.tflags = fuzz_u16(&in);
    uint8_t b = fuzz_u8(&in);
    lim.structured = b & 1;
    lim.base_allocation = b & 2;
    if (size < LIMITS_SIZE)
        return 0;

    const uint8_t *p = data + LIMITS_SIZE;
    size_t len = size - LIMITS_SIZE;

    /* A truncated header at the very end of the input: the buffer ends
     * there, so an over-read is an ASan report. */
    size_t off = 0;
    for (unsigned guard = 0; guard < 65536; guard++) {
        size_t adv = one_request(p + off, len - off, &lim);
        if (adv == 0)
            break;
        off += adv;
    }

    parse_replies(p, len);
    parse_opt_reply(p, len);
    return 0;
}
