/* test-nbd-proto.c - unit tests for the pure NBD transmission codecs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/nbd_proto.h"
#include "repvol/wire.h"

/* ------------------------------------------------------------ test helpers */

/* Deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

#define MiB (UINT32_C(1) << 20)

/* A writable 1 GiB export advertising everything we support, with
 * structured replies and base:allocation negotiated. */
static struct nbd_limits full_limits(void)
{
    return (struct nbd_limits){
        .export_size = UINT64_C(1) << 30,
        .max_payload = 32 * MiB,
        .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                  NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
                  NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE,
        .structured = true,
        .base_allocation = true,
    };
}

static struct nbd_request req(uint16_t type, uint16_t flags, uint64_t off, uint32_t count)
{
    return (struct nbd_request){ .type = type, .flags = flags, .cookie = 0x1122334455667788,
                                 .offset = off, .count = count };
}

static uint32_t check(uint16_t type, uint16_t flags, uint64_t off, uint32_t count,
                      const struct nbd_limits *lim)
{
    struct nbd_request r = req(type, flags, off, count);
    return nbd_check_request(&r, lim);
}

/* ---------------------------------------------------------- request decode */

static void test_request_roundtrip(void)
{
    struct nbd_request in = { .flags = 0xbeef, .type = 0x0102, .cookie = 0xdeadbeefcafef00d,
                              .offset = 0x0102030405060708, .count = 0xa0b0c0d0 };
    struct nbd_request out;
    uint8_t buf[64];

    CU_ASSERT_EQUAL(nbd_encode_request(buf, &in), NBD_REQUEST_SIZE);
    /* The exact wire layout. */
    static const uint8_t expect[28] = {
        0x25, 0x60, 0x95, 0x13, 0xbe, 0xef, 0x01, 0x02,
        0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0xa0, 0xb0, 0xc0, 0xd0 };
    CU_ASSERT_EQUAL(memcmp(buf, expect, 28), 0);

    CU_ASSERT_EQUAL(nbd_decode_request(buf, sizeof(buf), &out), 28);
    CU_ASSERT_EQUAL(out.flags, in.flags);
    CU_ASSERT_EQUAL(out.type, in.type);
    CU_ASSERT_EQUAL(out.cookie, in.cookie);
    CU_ASSERT_EQUAL(out.offset, in.offset);
    CU_ASSERT_EQUAL(out.count, in.count);
}

static void test_request_truncated(void)
{
    struct nbd_request in = req(NBD_CMD_READ, 0, 4096, 512), out;
    uint8_t buf[28];

    nbd_encode_request(buf, &in);
    for (size_t len = 0; len < 28; len++)
        CU_ASSERT_EQUAL(nbd_decode_request(buf, len, &out), 0);
    CU_ASSERT_EQUAL(nbd_decode_request(buf, 28, &out), 28);
}

static void test_request_bad_magic(void)
{
    struct nbd_request in = req(NBD_CMD_READ, 0, 0, 512), out;
    uint8_t buf[28];

    nbd_encode_request(buf, &in);
    for (int byte = 0; byte < 4; byte++) {
        uint8_t b2[28];
        memcpy(b2, buf, 28);
        b2[byte] ^= 0x40;
        CU_ASSERT_EQUAL(nbd_decode_request(b2, 28, &out), -EPROTO);
    }
    /* Extended headers were never negotiated: their magic is garbage too. */
    rv_put_be32(buf, NBD_EXTENDED_REQUEST_MAGIC);
    CU_ASSERT_EQUAL(nbd_decode_request(buf, 28, &out), -EPROTO);
    /* Short input is "need more", even with a bad magic. */
    CU_ASSERT_EQUAL(nbd_decode_request(buf, 27, &out), 0);
}

/* ------------------------------------------------------------ check rules */

static void test_check_valid(void)
{
    struct nbd_limits l = full_limits();
    uint64_t sz = l.export_size;

    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, 4096, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096, &l), 0); /* FUA: any command */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, sz - 1, 1, &l), 0);              /* last byte */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, l.max_payload, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, sz - 4096, 4096, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, (uint32_t)sz, &l), 0);
    /* No payload: not limited by max_payload. */
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, 0, 512 * MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512 * MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES,
                          NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_FUA,
                          0, 4096, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, (uint32_t)sz, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_CACHE, 0, 0, 64 * MiB, &l), 0);
    /* DISC always passes: there is no reply to carry an error. */
    CU_ASSERT_EQUAL(check(NBD_CMD_DISC, 0xffff, 99, 99, &l), 0);
}

static void test_check_unknown_command(void)
{
    struct nbd_limits l = full_limits();
    CU_ASSERT_EQUAL(check(8, 0, 0, 512, &l), NBD_EINVAL);     /* RESIZE: not ours */
    CU_ASSERT_EQUAL(check(0x7f, 0, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(0xffff, 0, 0, 512, &l), NBD_EINVAL);
}

static void test_check_flags(void)
{
    struct nbd_limits l = full_limits();

    /* Unknown bits, including extended headers' PAYLOAD_LEN. */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0x8000, 0, 512, &l), NBD_EINVAL);
    /* Flags on the wrong command. */
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_REQ_ONE, 0, 512, &l), NBD_EINVAL);

    /* Flags not negotiated. */
    struct nbd_limits nofua = l;
    nofua.tflags &= ~NBD_FLAG_SEND_FUA;
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &nofua), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, 0, 512, &nofua), 0);

    struct nbd_limits nodf = l;
    nodf.tflags &= ~NBD_FLAG_SEND_DF;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &nodf), NBD_EINVAL);
    struct nbd_limits simple = l;          /* SEND_DF set but no structured replies */
    simple.structured = false;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &simple), NBD_EINVAL);

    struct nbd_limits nofz = l;
    nofz.tflags &= ~NBD_FLAG_SEND_FAST_ZERO;
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &nofz), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, &nofz), 0);
}

static void test_check_not_advertised(void)
{
    struct nbd_limits l = full_limits();
    struct nbd_limits m;

    m = l; m.tflags &= ~NBD_FLAG_SEND_FLUSH;
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 0, 0, &m), NBD_EINVAL);
    m = l; m.tflags &= ~NBD_FLAG_SEND_TRIM;
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, 0, 512, &m), NBD_EINVAL);
    m = l; m.tflags &= ~(NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &m), NBD_EINVAL);
    m = l; m.tflags &= ~NBD_FLAG_SEND_CACHE;
    CU_ASSERT_EQUAL(check(NBD_CMD_CACHE, 0, 0, 512, &m), NBD_EINVAL);
    m = l; m.base_allocation = false;
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &m), NBD_EINVAL);
    m = l; m.structured = false;
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &m), NBD_EINVAL);
}

static void test_check_read_only(void)
{
    struct nbd_limits l = full_limits();
    l.tflags |= NBD_FLAG_READ_ONLY;

    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, 0, 512, &l), NBD_EPERM);
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EPERM);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EPERM);
    /* EPERM wins over the bounds error. */
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, l.export_size, 512, &l), NBD_EPERM);
    /* Reads and flushes are fine. */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, 512, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), 0);
}

static void test_check_zero_and_flush_fields(void)
{
    struct nbd_limits l = full_limits();

    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 1, 0, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 0, 1, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, &l), 0);
    static const uint16_t zero_len_rejected[] = {
        NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_CACHE,
        NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS };
    for (size_t i = 0; i < sizeof(zero_len_rejected) / sizeof(zero_len_rejected[0]); i++)
        CU_ASSERT_EQUAL(check(zero_len_rejected[i], 0, 0, 0, &l), NBD_EINVAL);
}

static void test_check_max_payload(void)
{
    struct nbd_limits l = full_limits();
    l.max_payload = MiB;

    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, MiB + 1, &l), NBD_EOVERFLOW);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, MiB + 1, &l), NBD_EOVERFLOW);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, 0, MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, 0, MiB + 1, &l), NBD_EINVAL);
    struct nbd_limits s = l;
    s.structured = false;
    s.tflags &= ~NBD_FLAG_SEND_DF;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, MiB + 1, &s), NBD_EINVAL);
    /* Commands without payload ignore it. */
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, 0, 8 * MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, 0, 0, 8 * MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, 0, 0, 8 * MiB, &l), 0);
    /* 0 means the spec default, 32 MiB. */
    l.max_payload = 0;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, 32 * MiB, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, 32 * MiB + 1, &l), NBD_EOVERFLOW);
}

static void test_check_bounds(void)
{
    struct nbd_limits l = full_limits();
    uint64_t sz = l.export_size;

    /* Reads and the like: EINVAL.  Writes: ENOSPC (spec SHOULD). */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, sz, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, sz - 511, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, sz - 1, 2, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_CACHE, 0, sz, 1, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_BLOCK_STATUS, 0, sz, 1, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, sz, 512, &l), NBD_ENOSPC);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE_ZEROES, 0, sz - 1, 2, &l), NBD_ENOSPC);
    /* offset + count wrapping around 2^64. */
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, UINT64_MAX - 10, 512, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, UINT64_MAX, 1, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_WRITE, 0, UINT64_MAX - 10, 512, &l), NBD_ENOSPC);
    CU_ASSERT_EQUAL(check(NBD_CMD_TRIM, 0, UINT64_MAX - 100, UINT32_MAX, &l), NBD_EINVAL);
    /* An empty export rejects everything with a length. */
    l.export_size = 0;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, 0, 1, &l), NBD_EINVAL);
    CU_ASSERT_EQUAL(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
    /* Huge export: the bound is exact. */
    l.export_size = UINT64_MAX;
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, UINT64_MAX - 512, 512, &l), 0);
    CU_ASSERT_EQUAL(check(NBD_CMD_READ, 0, UINT64_MAX - 511, 512, &l), NBD_EINVAL);
}

static void test_payload_action(void)
{
    struct nbd_limits l = full_limits();
    struct nbd_request r;

    l.max_payload = MiB;
    r = req(NBD_CMD_READ, 0, 0, UINT32_MAX);
    CU_ASSERT_EQUAL(nbd_request_payload_len(&r), 0);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_NONE);
    r = req(NBD_CMD_WRITE_ZEROES, 0, 0, UINT32_MAX);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_NONE);
    r = req(NBD_CMD_WRITE, 0, 0, 4096);
    CU_ASSERT_EQUAL(nbd_request_payload_len(&r), 4096);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_DISCARD);
    /* Above max_payload but within the spec's 32 MiB "not DoS" floor. */
    r = req(NBD_CMD_WRITE, 0, 0, 32 * MiB);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_DISCARD);
    r = req(NBD_CMD_WRITE, 0, 0, 32 * MiB + 1);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_DISCONNECT);
    /* A server advertising more than 32 MiB drains up to what it advertised. */
    l.max_payload = 64 * MiB;
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_DISCARD);
    r = req(NBD_CMD_WRITE, 0, 0, 64 * MiB + 1);
    CU_ASSERT_EQUAL(nbd_rejected_payload_action(&r, &l), NBD_PAYLOAD_DISCONNECT);

    /* Which replies must be structured. */
    l = full_limits();
    r = req(NBD_CMD_READ, 0, 0, 1);
    CU_ASSERT_TRUE(nbd_reply_must_be_structured(&r, &l));
    r = req(NBD_CMD_BLOCK_STATUS, 0, 0, 1);
    CU_ASSERT_TRUE(nbd_reply_must_be_structured(&r, &l));
    r = req(NBD_CMD_WRITE, 0, 0, 1);
    CU_ASSERT_FALSE(nbd_reply_must_be_structured(&r, &l));
    l.structured = false;
    r = req(NBD_CMD_READ, 0, 0, 1);
    CU_ASSERT_FALSE(nbd_reply_must_be_structured(&r, &l));
}

static void test_errno_map(void)
{
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(0), 0);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(EPERM), NBD_EPERM);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EPERM), NBD_EPERM);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EROFS), NBD_EPERM);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EACCES), NBD_EPERM);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EIO), NBD_EIO);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-ENOMEM), NBD_ENOMEM);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EINVAL), NBD_EINVAL);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-ENOSPC), NBD_ENOSPC);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EDQUOT), NBD_ENOSPC);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EFBIG), NBD_ENOSPC);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EOVERFLOW), NBD_EOVERFLOW);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-ENOTSUP), NBD_ENOTSUP);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EOPNOTSUPP), NBD_ENOTSUP);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(ESHUTDOWN), NBD_ESHUTDOWN);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-EBADF), NBD_EIO);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-ENOENT), NBD_EIO);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(12345), NBD_EIO);
    CU_ASSERT_EQUAL(nbd_errno_to_nbd(-2147483647), NBD_EIO);
}

/* ---------------------------------------------------------------- encoders */

static void test_simple_reply(void)
{
    uint8_t buf[16];
    struct nbd_reply r;

    CU_ASSERT_EQUAL(nbd_encode_simple_reply(buf, NBD_EINVAL, 0x0102030405060708), 16);
    static const uint8_t expect[16] = { 0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22,
                                        1, 2, 3, 4, 5, 6, 7, 8 };
    CU_ASSERT_EQUAL(memcmp(buf, expect, 16), 0);
    for (size_t len = 0; len < 16; len++)
        CU_ASSERT_EQUAL(nbd_decode_reply(buf, len, &r), 0);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 16, &r), 16);
    CU_ASSERT_EQUAL(r.magic, NBD_SIMPLE_REPLY_MAGIC);
    CU_ASSERT_EQUAL(r.error, NBD_EINVAL);
    CU_ASSERT_EQUAL(r.cookie, 0x0102030405060708);
    buf[0] = 0;
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 16, &r), -EPROTO);
}

static void test_chunk_header(void)
{
    uint8_t buf[20];
    struct nbd_reply r;

    CU_ASSERT_EQUAL(nbd_encode_chunk_header(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                                            42, 0x01020304), 20);
    static const uint8_t expect[20] = { 0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1,
                                        0, 0, 0, 0, 0, 0, 0, 42, 1, 2, 3, 4 };
    CU_ASSERT_EQUAL(memcmp(buf, expect, 20), 0);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 19, &r), 0);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 20, &r), 20);
    CU_ASSERT_EQUAL(r.magic, NBD_STRUCTURED_REPLY_MAGIC);
    CU_ASSERT_EQUAL(r.flags, NBD_REPLY_FLAG_DONE);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_ERROR);
    CU_ASSERT_EQUAL(r.cookie, 42);
    CU_ASSERT_EQUAL(r.length, 0x01020304);
    CU_ASSERT_EQUAL(r.error, 0);
}

static void test_offset_data_and_hole(void)
{
    uint8_t buf[32];
    struct nbd_reply r;

    CU_ASSERT_EQUAL(nbd_encode_offset_data(buf, NBD_REPLY_FLAG_DONE, 7, 0xabcdef, 4096), 28);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 28, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_OFFSET_DATA);
    CU_ASSERT_EQUAL(r.length, 8 + 4096);
    CU_ASSERT_EQUAL(r.cookie, 7);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 20), 0xabcdef);
    CU_ASSERT_EQUAL(nbd_encode_offset_data(buf, 0, 7, 0, UINT32_MAX - 8), 28);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 16), UINT32_MAX);
    CU_ASSERT_EQUAL(nbd_encode_offset_data(buf, 0, 7, 0, UINT32_MAX - 7), 0);
    CU_ASSERT_EQUAL(nbd_encode_offset_data(buf, 0, 7, 0, 0), 0);

    CU_ASSERT_EQUAL(nbd_encode_offset_hole(buf, 0, 9, 1 << 20, 65536), 32);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 32, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_OFFSET_HOLE);
    CU_ASSERT_EQUAL(r.length, 12);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 20), 1 << 20);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 28), 65536);
    CU_ASSERT_EQUAL(nbd_encode_offset_hole(buf, 0, 9, 0, 0), 0);
}

static void test_error_chunk(void)
{
    uint8_t buf[5000];
    struct nbd_reply r;
    size_t n;

    n = nbd_encode_error_chunk(buf, sizeof(buf), NBD_REPLY_FLAG_DONE, 5, NBD_EIO, "disk on fire");
    CU_ASSERT_EQUAL(n, 26 + 12);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, n, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_ERROR);
    CU_ASSERT_EQUAL(r.flags, NBD_REPLY_FLAG_DONE);
    CU_ASSERT_EQUAL(r.length, 6 + 12);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 20), NBD_EIO);
    CU_ASSERT_EQUAL(rv_get_be16(buf + 24), 12);
    CU_ASSERT_EQUAL(memcmp(buf + 26, "disk on fire", 12), 0);

    /* No message; error 0 is never sent. */
    n = nbd_encode_error_chunk(buf, sizeof(buf), 0, 5, 0, NULL);
    CU_ASSERT_EQUAL(n, 26);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 16), 6);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 20), NBD_EIO);
    CU_ASSERT_EQUAL(rv_get_be16(buf + 24), 0);

    /* Message cut to the buffer, and to 4096. */
    n = nbd_encode_error_chunk(buf, 30, 0, 5, NBD_EINVAL, "abcdefgh");
    CU_ASSERT_EQUAL(n, 30);
    CU_ASSERT_EQUAL(rv_get_be16(buf + 24), 4);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 16), 10);
    CU_ASSERT_EQUAL(nbd_encode_error_chunk(buf, 25, 0, 5, NBD_EINVAL, "x"), 0);
    static char longmsg[6000];
    memset(longmsg, 'm', sizeof(longmsg) - 1);
    n = nbd_encode_error_chunk(buf, sizeof(buf), 0, 5, NBD_EINVAL, longmsg);
    CU_ASSERT_EQUAL(n, 26 + 4096);
    CU_ASSERT_EQUAL(rv_get_be16(buf + 24), 4096);

    /* ERROR_OFFSET: the offset trails the message. */
    n = nbd_encode_error_offset_chunk(buf, sizeof(buf), NBD_REPLY_FLAG_DONE, 6, NBD_EIO,
                                      "bad", 0x1122334455667788);
    CU_ASSERT_EQUAL(n, 26 + 3 + 8);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, n, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_ERROR_OFFSET);
    CU_ASSERT_EQUAL(r.length, 6 + 3 + 8);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 29), 0x1122334455667788);
    CU_ASSERT_EQUAL(nbd_encode_error_offset_chunk(buf, 33, 0, 6, NBD_EIO, "bad", 1), 0);
    n = nbd_encode_error_offset_chunk(buf, 35, 0, 6, NBD_EIO, "bad", 1);
    CU_ASSERT_EQUAL(n, 35);
    CU_ASSERT_EQUAL(rv_get_be16(buf + 24), 1);
}

static void test_block_status(void)
{
    uint8_t buf[128];
    struct nbd_reply r;
    const struct nbd_block_desc d[3] = {
        { 4096, 0 }, { 65536, NBD_STATE_HOLE | NBD_STATE_ZERO }, { 512, NBD_STATE_ZERO } };

    CU_ASSERT_EQUAL(nbd_block_status_size(3), 48);
    CU_ASSERT_EQUAL(nbd_encode_block_status(buf, sizeof(buf), NBD_REPLY_FLAG_DONE, 77, 1, d, 3), 48);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 48, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_BLOCK_STATUS);
    CU_ASSERT_EQUAL(r.length, 4 + 24);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 20), 1);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(rv_get_be32(buf + 24 + 8 * i), d[i].length);
        CU_ASSERT_EQUAL(rv_get_be32(buf + 28 + 8 * i), d[i].status);
    }
    CU_ASSERT_EQUAL(nbd_encode_block_status(buf, 47, 0, 77, 1, d, 3), 0);
    CU_ASSERT_EQUAL(nbd_encode_block_status(buf, sizeof(buf), 0, 77, 1, d, 0), 0);
    const struct nbd_block_desc bad[2] = { { 1, 0 }, { 0, 0 } };
    CU_ASSERT_EQUAL(nbd_encode_block_status(buf, sizeof(buf), 0, 77, 1, bad, 2), 0);
}

static void test_none_chunk(void)
{
    uint8_t buf[20];
    struct nbd_reply r;

    CU_ASSERT_EQUAL(nbd_encode_none_chunk(buf, 0xfeed), 20);
    CU_ASSERT_EQUAL(nbd_decode_reply(buf, 20, &r), 20);
    CU_ASSERT_EQUAL(r.type, NBD_REPLY_TYPE_NONE);
    CU_ASSERT_EQUAL(r.flags, NBD_REPLY_FLAG_DONE);
    CU_ASSERT_EQUAL(r.length, 0);
    CU_ASSERT_EQUAL(r.cookie, 0xfeed);
}

static void test_option_codec(void)
{
    uint8_t buf[20];
    uint32_t opt, type, len;

    CU_ASSERT_EQUAL(nbd_encode_option(buf, NBD_OPT_GO, 1234), 16);
    CU_ASSERT_EQUAL(rv_get_be64(buf), NBD_IHAVEOPT);
    CU_ASSERT_EQUAL(memcmp(buf, "IHAVEOPT", 8), 0);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 8), NBD_OPT_GO);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 12), 1234);

    rv_put_be64(buf, NBD_OPT_REPLY_MAGIC);
    rv_put_be32(buf + 8, NBD_OPT_LIST);
    rv_put_be32(buf + 12, NBD_REP_ERR_UNSUP);
    rv_put_be32(buf + 16, 9);
    CU_ASSERT_EQUAL(nbd_decode_opt_reply(buf, 19, &opt, &type, &len), 0);
    CU_ASSERT_EQUAL(nbd_decode_opt_reply(buf, 20, &opt, &type, &len), 20);
    CU_ASSERT_EQUAL(opt, NBD_OPT_LIST);
    CU_ASSERT_EQUAL(type, NBD_REP_ERR_UNSUP);
    CU_ASSERT_EQUAL(len, 9);
    buf[7] ^= 1;
    CU_ASSERT_EQUAL(nbd_decode_opt_reply(buf, 20, &opt, &type, &len), -EPROTO);
    /* The magics spell what the spec says they spell. */
    uint8_t m[8];
    rv_put_be64(m, NBD_MAGIC);
    CU_ASSERT_EQUAL(memcmp(m, "NBDMAGIC", 8), 0);
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(nbd_cmd_name(NBD_CMD_WRITE_ZEROES), "WRITE_ZEROES");
    CU_ASSERT_STRING_EQUAL(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "BLOCK_STATUS");
    CU_ASSERT_STRING_EQUAL(nbd_cmd_name(999), "unknown command");
    CU_ASSERT_STRING_EQUAL(nbd_opt_name(NBD_OPT_GO), "GO");
    CU_ASSERT_STRING_EQUAL(nbd_opt_name(NBD_OPT_EXTENDED_HEADERS), "EXTENDED_HEADERS");
    CU_ASSERT_STRING_EQUAL(nbd_opt_name(0xffffffff), "unknown option");
    CU_ASSERT_STRING_EQUAL(nbd_err_name(NBD_EOVERFLOW), "EOVERFLOW");
    CU_ASSERT_STRING_EQUAL(nbd_err_name(NBD_ESHUTDOWN), "ESHUTDOWN");
    CU_ASSERT_STRING_EQUAL(nbd_err_name(3), "unknown error");
    CU_ASSERT_STRING_EQUAL(nbd_rep_name(NBD_REP_ERR_TOO_BIG), "ERR_TOO_BIG");
    CU_ASSERT_STRING_EQUAL(nbd_info_name(NBD_INFO_BLOCK_SIZE), "BLOCK_SIZE");
    CU_ASSERT_STRING_EQUAL(nbd_reply_type_name(NBD_REPLY_TYPE_ERROR_OFFSET), "ERROR_OFFSET");
    /* Every value 0..0xffff has a name (never NULL). */
    for (uint32_t v = 0; v <= 0xffff; v++) {
        CU_ASSERT_PTR_NOT_NULL(nbd_cmd_name((uint16_t)v));
        CU_ASSERT_PTR_NOT_NULL(nbd_opt_name(v));
        CU_ASSERT_PTR_NOT_NULL(nbd_err_name(v));
    }
}

/* Random requests through decode + check: never crashes, and an accepted
 * request always lies inside the export and within limits. */
static void test_random_requests(void)
{
    rng_state = 0x5eed5eed12345678;
    for (int i = 0; i < 200000; i++) {
        uint8_t buf[28];
        for (int j = 0; j < 28; j += 8)
            rv_put_be64(buf + (j < 20 ? j : 20), rng());
        if (rng() & 1)
            rv_put_be32(buf, NBD_REQUEST_MAGIC);
        if (rng() & 1)
            rv_put_be16(buf + 6, (uint16_t)(rng() % 10));       /* mostly known commands */
        if (rng() & 1)
            rv_put_be16(buf + 4, (uint16_t)(rng() & 0x1f));     /* mostly known flags */
        if (rng() & 1)
            rv_put_be64(buf + 16, rng() % (UINT64_C(1) << 31)); /* offsets near the export */
        if (rng() & 1)
            rv_put_be32(buf + 24, (uint32_t)(rng() % (64 * MiB)));

        struct nbd_request r;
        size_t len = (size_t)(rng() % 29);
        int n = nbd_decode_request(buf, len, &r);
        if (len < 28) {
            CU_ASSERT_EQUAL(n, 0);
            continue;
        }
        if (rv_get_be32(buf) != NBD_REQUEST_MAGIC) {
            CU_ASSERT_EQUAL(n, -EPROTO);
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(n, 28);
        struct nbd_limits l = full_limits();
        if (rng() & 1) l.structured = false;
        if (rng() & 1) l.tflags |= NBD_FLAG_READ_ONLY;
        if (rng() & 1) l.base_allocation = false;
        uint32_t e = nbd_check_request(&r, &l);
        if (e == 0 && r.type != NBD_CMD_DISC) {
            CU_ASSERT(r.type <= NBD_CMD_BLOCK_STATUS);
            CU_ASSERT(r.offset <= l.export_size && r.count <= l.export_size - r.offset);
            if (r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE)
                CU_ASSERT(r.count <= l.max_payload);
            if (r.type != NBD_CMD_FLUSH)
                CU_ASSERT(r.count > 0);
            if (l.tflags & NBD_FLAG_READ_ONLY)
                CU_ASSERT(r.type != NBD_CMD_WRITE && r.type != NBD_CMD_TRIM &&
                          r.type != NBD_CMD_WRITE_ZEROES);
        } else if (e) {
            CU_ASSERT(e == NBD_EINVAL || e == NBD_EPERM || e == NBD_ENOSPC || e == NBD_EOVERFLOW);
        }
    }
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "request round trip", test_request_roundtrip },
        { "request truncated", test_request_truncated },
        { "request bad magic", test_request_bad_magic },
        { "check: valid requests", test_check_valid },
        { "check: unknown command", test_check_unknown_command },
        { "check: flags", test_check_flags },
        { "check: command not advertised", test_check_not_advertised },
        { "check: read-only export", test_check_read_only },
        { "check: zero length, flush fields", test_check_zero_and_flush_fields },
        { "check: max payload", test_check_max_payload },
        { "check: bounds and overflow", test_check_bounds },
        { "payload action, structured", test_payload_action },
        { "errno mapping", test_errno_map },
        { "simple reply", test_simple_reply },
        { "chunk header", test_chunk_header },
        { "offset data and hole", test_offset_data_and_hole },
        { "error chunks", test_error_chunk },
        { "block status chunk", test_block_status },
        { "none chunk", test_none_chunk },
        { "option header and reply codec", test_option_codec },
        { "names", test_names },
        { "random requests", test_random_requests },
    };
    return UNIT_RUN("nbd_proto", NULL, NULL, tests);
}
