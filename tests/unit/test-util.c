/* test-util.c - unit tests for server/util.c: sizes, UUIDs, clock, macros. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/util.h"
#include "repvol/wire.h"

static void expect_size(const char *s, uint64_t want)
{
    uint64_t v = 0xdeadbeef;
    int r = rv_parse_size(s, &v);
    if (r != 0 || v != want)
        fprintf(stderr, "\n  rv_parse_size(\"%s\") = %d, %llu; want %llu\n", s, r,
                (unsigned long long)v, (unsigned long long)want);
    CU_ASSERT_EQUAL(r, 0);
    CU_ASSERT_EQUAL(v, want);
}

static void expect_size_err(const char *s, int want)
{
    uint64_t v = 0xdeadbeef;
    int r = rv_parse_size(s, &v);
    if (r != want)
        fprintf(stderr, "\n  rv_parse_size(\"%s\") = %d; want %d\n", s ? s : "(null)", r, want);
    CU_ASSERT_EQUAL(r, want);
    CU_ASSERT_EQUAL(v, 0xdeadbeef);     /* untouched on error */
}

static void test_parse_size(void)
{
    const uint64_t K = 1024, M = K * K, G = M * K, T = G * K, P = T * K;
    expect_size("0", 0);
    expect_size("4096", 4096);
    expect_size("1", 1);
    expect_size("4G", 4 * G);
    expect_size("4g", 4 * G);
    expect_size("512M", 512 * M);
    expect_size("1K", K);
    expect_size("1KiB", K);
    expect_size("1KB", K);             /* suffixes are binary, with or without "iB" */
    expect_size("1k", K);
    expect_size("3T", 3 * T);
    expect_size("2PiB", 2 * P);
    expect_size("16383P", 16383 * P);  /* largest P that fits */
    expect_size("007", 7);
    expect_size("18446744073709551615", UINT64_MAX);

    expect_size_err("", -EINVAL);
    expect_size_err(NULL, -EINVAL);
    expect_size_err("-1", -EINVAL);
    expect_size_err("+1", -EINVAL);
    expect_size_err(" 4G", -EINVAL);
    expect_size_err("4 G", -EINVAL);
    expect_size_err("4G ", -EINVAL);
    expect_size_err("abc", -EINVAL);
    expect_size_err("G", -EINVAL);
    expect_size_err("4X", -EINVAL);
    expect_size_err("4E", -EINVAL);     /* no exa suffix */
    expect_size_err("4Gi", -EINVAL);
    expect_size_err("4GiBs", -EINVAL);
    expect_size_err("4iB", -EINVAL);
    expect_size_err("4B", -EINVAL);     /* "B" only after a unit */
    expect_size_err("1.5G", -EINVAL);
    expect_size_err("0x10", -EINVAL);
    expect_size_err("99999999999P", -ERANGE);
    expect_size_err("16384P", -ERANGE);
    expect_size_err("17179869184G", -ERANGE);               /* 2^34 G = 2^64 */
    expect_size_err("18446744073709551616", -ERANGE);       /* 2^64 */
    expect_size_err("99999999999999999999999", -ERANGE);
}

static void test_format_size(void)
{
    char buf[32];
    CU_ASSERT_STRING_EQUAL(rv_format_size(0, buf, sizeof buf), "0 B");
    CU_ASSERT_STRING_EQUAL(rv_format_size(1023, buf, sizeof buf), "1023 B");
    CU_ASSERT_STRING_EQUAL(rv_format_size(1024, buf, sizeof buf), "1.0 KiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(4096, buf, sizeof buf), "4.0 KiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_C(1) << 20, buf, sizeof buf), "1.0 MiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_C(3) << 29, buf, sizeof buf), "1.5 GiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_C(4) << 30, buf, sizeof buf), "4.0 GiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_C(1) << 40, buf, sizeof buf), "1.0 TiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_C(1) << 50, buf, sizeof buf), "1.0 PiB");
    CU_ASSERT_STRING_EQUAL(rv_format_size(UINT64_MAX, buf, sizeof buf), "16.0 EiB");
    /* Returns its buffer; truncates rather than overflowing a short one. */
    CU_ASSERT_PTR_EQUAL(rv_format_size(5, buf, sizeof buf), buf);
    char small[4];
    rv_format_size(UINT64_C(4) << 30, small, sizeof small);
    CU_ASSERT_STRING_EQUAL(small, "4.0");
}

static void test_uuid_roundtrip(void)
{
    const uint8_t u[RV_UUID_LEN] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                     0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21 };
    char s[RV_UUID_STR_LEN];
    rv_uuid_format(u, s);
    CU_ASSERT_STRING_EQUAL(s, "12345678-9abc-def0-0fed-cba987654321");
    CU_ASSERT_EQUAL(strlen(s), RV_UUID_STR_LEN - 1);
    uint8_t back[RV_UUID_LEN];
    CU_ASSERT_EQUAL(rv_uuid_parse(s, back), 0);
    CU_ASSERT(memcmp(u, back, RV_UUID_LEN) == 0);

    /* Upper case is accepted; formatting is lower case. */
    CU_ASSERT_EQUAL(rv_uuid_parse("12345678-9ABC-DEF0-0FED-CBA987654321", back), 0);
    CU_ASSERT(memcmp(u, back, RV_UUID_LEN) == 0);

    const uint8_t zero[RV_UUID_LEN] = { 0 };
    rv_uuid_format(zero, s);
    CU_ASSERT_STRING_EQUAL(s, "00000000-0000-0000-0000-000000000000");

    for (int i = 0; i < 100; i++) {
        uint8_t g[RV_UUID_LEN], p[RV_UUID_LEN];
        rv_uuid_generate(g);
        rv_uuid_format(g, s);
        CU_ASSERT_EQUAL(rv_uuid_parse(s, p), 0);
        CU_ASSERT(memcmp(g, p, RV_UUID_LEN) == 0);
    }
}

static void test_uuid_rejects(void)
{
    static const char *const bad[] = {
        "",
        "12345678-9abc-def0-0fed-cba98765432",      /* one short */
        "12345678-9abc-def0-0fed-cba9876543210",    /* one long */
        "12345678-9abc-def0-0fed-cba98765432g",     /* not hex */
        "1234567809abc-def0-0fed-cba987654321",     /* dash missing */
        "12345678-9abc-def0-0fed-cba9876543-1",     /* dash misplaced */
        "123456789abcdef00fedcba987654321",          /* no dashes */
        "12345678-9abc-def0-0fed+cba987654321",
        "{2345678-9abc-def0-0fed-cba98765432}",
        "12345678 9abc def0 0fed cba987654321",
        " 12345678-9abc-def0-0fed-cba98765432",
        "-12345678-9abc-def0-0fed-cba9876543",
    };
    uint8_t u[RV_UUID_LEN];
    for (size_t i = 0; i < RV_ARRAY_SIZE(bad); i++) {
        int r = rv_uuid_parse(bad[i], u);
        if (r != -EINVAL)
            fprintf(stderr, "\n  rv_uuid_parse(\"%s\") = %d\n", bad[i], r);
        CU_ASSERT_EQUAL(r, -EINVAL);
    }
    CU_ASSERT_EQUAL(rv_uuid_parse(NULL, u), -EINVAL);
}

static void test_uuid_v4(void)
{
    enum { N = 200 };
    static uint8_t seen[N][RV_UUID_LEN];    /* static: keeps the stack small */
    for (int i = 0; i < N; i++) {
        rv_uuid_generate(seen[i]);
        CU_ASSERT_EQUAL(seen[i][6] >> 4, 4);            /* version 4 */
        CU_ASSERT_EQUAL(seen[i][8] & 0xc0, 0x80);       /* RFC 4122 variant */
        char s[RV_UUID_STR_LEN];
        rv_uuid_format(seen[i], s);
        CU_ASSERT_EQUAL(s[14], '4');
        CU_ASSERT(strchr("89ab", s[19]) != NULL);
        for (int j = 0; j < i; j++)
            CU_ASSERT(memcmp(seen[i], seen[j], RV_UUID_LEN) != 0);
    }
    /* The other 122 bits vary: every bit position takes both values. */
    uint8_t all_or[RV_UUID_LEN] = { 0 }, all_and[RV_UUID_LEN];
    memset(all_and, 0xff, sizeof all_and);
    for (int i = 0; i < N; i++)
        for (int b = 0; b < RV_UUID_LEN; b++) {
            all_or[b] |= seen[i][b];
            all_and[b] &= seen[i][b];
        }
    for (int b = 0; b < RV_UUID_LEN; b++) {
        uint8_t fixed_mask = b == 6 ? 0xf0 : b == 8 ? 0xc0 : 0;
        CU_ASSERT_EQUAL((uint8_t)(all_or[b] | fixed_mask), 0xff);
        CU_ASSERT_EQUAL((uint8_t)(all_and[b] & ~fixed_mask), 0);
    }
}

static void test_now_and_macros(void)
{
    uint64_t a = rv_now_ns(), b = rv_now_ns();
    CU_ASSERT(a > 0);
    CU_ASSERT(b >= a);

    CU_ASSERT_EQUAL(RV_ALIGN_UP(0, 4096), 0);
    CU_ASSERT_EQUAL(RV_ALIGN_UP(1, 4096), 4096);
    CU_ASSERT_EQUAL(RV_ALIGN_UP(4096, 4096), 4096);
    CU_ASSERT_EQUAL(RV_ALIGN_UP(4097, 4096), 8192);
    CU_ASSERT_EQUAL(RV_ALIGN_UP(10, 3), 12);
    CU_ASSERT_EQUAL(RV_MIN(3, 5), 3);
    CU_ASSERT_EQUAL(RV_MAX(3, 5), 5);
    int arr[7];
    CU_ASSERT_EQUAL(RV_ARRAY_SIZE(arr), 7);
    struct outer { int x; double y; char z; } o;
    CU_ASSERT_PTR_EQUAL(RV_CONTAINER_OF(&o.z, struct outer, z), &o);
    CU_ASSERT_PTR_EQUAL(RV_CONTAINER_OF(&o.y, struct outer, y), &o);
}

static void test_wire(void)
{
    uint8_t b[8];
    rv_put_be16(b, 0x1234);
    CU_ASSERT(b[0] == 0x12 && b[1] == 0x34);
    CU_ASSERT_EQUAL(rv_get_be16(b), 0x1234);
    rv_put_be32(b, 0xdeadbeef);
    CU_ASSERT(b[0] == 0xde && b[1] == 0xad && b[2] == 0xbe && b[3] == 0xef);
    CU_ASSERT_EQUAL(rv_get_be32(b), 0xdeadbeef);
    rv_put_be64(b, UINT64_C(0x0102030405060708));
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(b[i], i + 1);
    CU_ASSERT_EQUAL(rv_get_be64(b), UINT64_C(0x0102030405060708));
    rv_put_be64(b, UINT64_MAX);
    CU_ASSERT_EQUAL(rv_get_be64(b), UINT64_MAX);
    rv_put_be16(b, 0xffff);
    CU_ASSERT_EQUAL(rv_get_be16(b), 0xffff);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "rv_parse_size", test_parse_size },
        { "rv_format_size", test_format_size },
        { "uuid format/parse round trip", test_uuid_roundtrip },
        { "uuid parse rejects", test_uuid_rejects },
        { "uuid v4 bits", test_uuid_v4 },
        { "clock and macros", test_now_and_macros },
        { "wire.h big-endian helpers", test_wire },
    };
    return UNIT_RUN("util", NULL, NULL, tests);
}
