/* test-meta.c - unit tests for the on-disk metadata format and CRC-32C. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/crc32c.h"
#include "repvol/meta_format.h"
#include "repvol/wire.h"

/* ------------------------------------------------------------- helpers */

/* A valid superblock with a distinct, non-default value in every field. */
static void sample_meta(struct rv_meta *m)
{
    memset(m, 0, sizeof *m);
    m->version = RV_META_VERSION;
    m->flags = RV_META_F_CLEAN;
    for (int i = 0; i < RV_UUID_LEN; i++)
        m->uuid[i] = (uint8_t)(0xa0 + i);
    strcpy(m->name, "test volume ~!\"\\");
    m->data_size = UINT64_C(3) << 30;           /* 3 GiB */
    m->block_size = 512;
    m->bm_granularity = 65536;
    struct rv_meta_layout lay;
    CU_ASSERT_FATAL(rv_meta_layout(m->data_size, m->bm_granularity, &lay) == 0);
    m->bm_offset = lay.bitmap_offset;
    m->bm_length = lay.bitmap_length;
    m->disk_state = RV_DISK_OUTDATED;
    m->role = RV_ROLE_PRIMARY;
    m->node_id = 7;
    m->current_gen = UINT64_C(0x0123456789abcdef);
    m->bitmap_gen = UINT64_C(0xfedcba9876543210);
    m->history_gen[0] = UINT64_C(0x1111222233334444);
    m->history_gen[1] = UINT64_C(0x5555666677778888);
    m->ctime = UINT64_C(1700000000);
    m->open_count = UINT64_C(0x100000001);
}

static void assert_meta_equal(const struct rv_meta *a, const struct rv_meta *b)
{
    CU_ASSERT_EQUAL(a->version, b->version);
    CU_ASSERT_EQUAL(a->flags, b->flags);
    CU_ASSERT(memcmp(a->uuid, b->uuid, RV_UUID_LEN) == 0);
    CU_ASSERT_STRING_EQUAL(a->name, b->name);
    CU_ASSERT_EQUAL(a->data_size, b->data_size);
    CU_ASSERT_EQUAL(a->block_size, b->block_size);
    CU_ASSERT_EQUAL(a->bm_granularity, b->bm_granularity);
    CU_ASSERT_EQUAL(a->bm_offset, b->bm_offset);
    CU_ASSERT_EQUAL(a->bm_length, b->bm_length);
    CU_ASSERT_EQUAL(a->disk_state, b->disk_state);
    CU_ASSERT_EQUAL(a->role, b->role);
    CU_ASSERT_EQUAL(a->node_id, b->node_id);
    CU_ASSERT_EQUAL(a->current_gen, b->current_gen);
    CU_ASSERT_EQUAL(a->bitmap_gen, b->bitmap_gen);
    CU_ASSERT_EQUAL(a->history_gen[0], b->history_gen[0]);
    CU_ASSERT_EQUAL(a->history_gen[1], b->history_gen[1]);
    CU_ASSERT_EQUAL(a->ctime, b->ctime);
    CU_ASSERT_EQUAL(a->open_count, b->open_count);
}

/* Recompute the CRC after a test has edited an encoded superblock. */
static void fix_crc(uint8_t *buf)
{
    static const uint8_t zero[4];
    uint32_t c = rv_crc32c(0, buf, RV_META_OFF_CRC);
    c = rv_crc32c(c, zero, 4);
    c = rv_crc32c(c, buf + RV_META_OFF_CRC + 4, RV_META_SB_SIZE - RV_META_OFF_CRC - 4);
    rv_put_be32(buf + RV_META_OFF_CRC, c);
}

static uint8_t *encoded_sample(void)
{
    struct rv_meta m;
    sample_meta(&m);
    uint8_t *buf = malloc(RV_META_SB_SIZE);
    CU_ASSERT_FATAL(buf != NULL);
    CU_ASSERT_FATAL(rv_meta_encode(&m, buf) == 0);
    return buf;
}

/* Temp directory for the file tests, removed in suite cleanup. */
static char tmpdir[PATH_MAX];   /* set once by suite init, read by the tests */

static void tmp_path(char *out, size_t len, const char *name)
{
    int n = snprintf(out, len, "%s/%s", tmpdir, name);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < len);
}

static int suite_init(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test-meta.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_cleanup(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* -------------------------------------------------------------- crc32c */

static void test_crc32c_known_answers(void)
{
    CU_ASSERT_EQUAL(rv_crc32c(0, "123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(rv_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(rv_crc32c(0, "", 0), 0u);
    CU_ASSERT_EQUAL(rv_crc32c(0, "a", 1), 0xC1D04330u);

    /* RFC 3720 (iSCSI) appendix B.4 test vectors. */
    uint8_t buf[48];
    memset(buf, 0, 32);
    CU_ASSERT_EQUAL(rv_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    CU_ASSERT_EQUAL(rv_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CU_ASSERT_EQUAL(rv_crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CU_ASSERT_EQUAL(rv_crc32c(0, buf, 32), 0x113FDB5Cu);
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    CU_ASSERT_EQUAL(rv_crc32c(0, iscsi_read, sizeof iscsi_read), 0xD9963A56u);
}

/* Hardware and software paths agree for every length/alignment, and the CRC
 * can be computed piecewise. */
static void test_crc32c_paths_agree(void)
{
    enum { N = 1024 + 64 };
    uint8_t *buf = malloc(N);
    CU_ASSERT_FATAL(buf != NULL);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len + off <= N; len += (len < 80 ? 1 : 61)) {
            uint32_t hw = rv_crc32c(0, buf + off, len);
            uint32_t sw = rv_crc32c_sw(0, buf + off, len);
            CU_ASSERT_EQUAL(hw, sw);
            size_t cut = len / 3;
            CU_ASSERT_EQUAL(rv_crc32c(rv_crc32c(0, buf + off, cut), buf + off + cut, len - cut), hw);
            CU_ASSERT_EQUAL(rv_crc32c_sw(rv_crc32c_sw(0, buf + off, cut), buf + off + cut,
                                         len - cut), hw);
        }
    free(buf);
}

/* -------------------------------------------------------------- encode/decode */

static void test_roundtrip(void)
{
    struct rv_meta m, d;
    sample_meta(&m);
    uint8_t buf[RV_META_SB_SIZE], buf2[RV_META_SB_SIZE];
    CU_ASSERT_EQUAL_FATAL(rv_meta_encode(&m, buf), 0);
    CU_ASSERT_EQUAL_FATAL(rv_meta_decode(buf, sizeof buf, &d), 0);
    assert_meta_equal(&m, &d);
    /* Re-encoding the decoded form gives the same bytes. */
    CU_ASSERT_EQUAL(rv_meta_encode(&d, buf2), 0);
    CU_ASSERT(memcmp(buf, buf2, sizeof buf) == 0);

    /* Longer buffers are fine: only the first 4096 bytes count. */
    uint8_t big[RV_META_SB_SIZE + 100];
    memcpy(big, buf, sizeof buf);
    memset(big + RV_META_SB_SIZE, 0xee, 100);
    CU_ASSERT_EQUAL(rv_meta_decode(big, sizeof big, &d), 0);
    assert_meta_equal(&m, &d);

    /* Extremes: longest name, largest values that are valid. */
    memset(m.name, 'x', RV_META_NAME_MAX);
    m.name[RV_META_NAME_MAX] = '\0';
    m.node_id = RV_META_MAX_NODES - 1;
    m.current_gen = m.bitmap_gen = m.history_gen[0] = m.history_gen[1] = UINT64_MAX;
    m.ctime = m.open_count = UINT64_MAX;
    m.flags = 0;
    m.role = RV_ROLE_SECONDARY;
    m.disk_state = RV_DISK_INCONSISTENT;
    m.block_size = 4096;
    CU_ASSERT_EQUAL_FATAL(rv_meta_encode(&m, buf), 0);
    CU_ASSERT_EQUAL_FATAL(rv_meta_decode(buf, sizeof buf, &d), 0);
    assert_meta_equal(&m, &d);
}

/* The bytes land where the layout table in meta_format.h says. */
static void test_encoded_layout(void)
{
    struct rv_meta m;
    sample_meta(&m);
    uint8_t buf[RV_META_SB_SIZE];
    CU_ASSERT_EQUAL_FATAL(rv_meta_encode(&m, buf), 0);
    CU_ASSERT(memcmp(buf, "RPVLMETA", 8) == 0);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 8), 1);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 12), 200);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 20), RV_META_F_CLEAN);
    CU_ASSERT_EQUAL(buf[24], 0xa0);
    CU_ASSERT_EQUAL(buf[39], 0xaf);
    CU_ASSERT(memcmp(buf + 40, m.name, strlen(m.name) + 1) == 0);
    CU_ASSERT_EQUAL(buf[103], 0);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 104), UINT64_C(3) << 30);
    CU_ASSERT_EQUAL(buf[104 + 4], 0xc0);                   /* big-endian */
    CU_ASSERT_EQUAL(rv_get_be32(buf + 112), 512);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 116), 65536);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 120), UINT64_C(3) << 30);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 128), 8192);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 136), RV_DISK_OUTDATED);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 140), RV_ROLE_PRIMARY);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 144), 7);
    CU_ASSERT_EQUAL(rv_get_be32(buf + 148), 0);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 152), UINT64_C(0x0123456789abcdef));
    CU_ASSERT_EQUAL(buf[152], 0x01);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 160), UINT64_C(0xfedcba9876543210));
    CU_ASSERT_EQUAL(rv_get_be64(buf + 168), UINT64_C(0x1111222233334444));
    CU_ASSERT_EQUAL(rv_get_be64(buf + 176), UINT64_C(0x5555666677778888));
    CU_ASSERT_EQUAL(rv_get_be64(buf + 184), 1700000000);
    CU_ASSERT_EQUAL(rv_get_be64(buf + 192), UINT64_C(0x100000001));
    for (size_t i = 200; i < RV_META_SB_SIZE; i++)
        if (buf[i] != 0) {
            CU_FAIL("reserved byte not zero");
            break;
        }
    /* The stored CRC is CRC-32C of the block with the CRC field zeroed. */
    uint32_t stored = rv_get_be32(buf + 16);
    memset(buf + 16, 0, 4);
    CU_ASSERT_EQUAL(rv_crc32c(0, buf, sizeof buf), stored);
}

static void test_bad_magic_version(void)
{
    uint8_t *buf = encoded_sample();
    struct rv_meta d;
    char why[RV_META_WHY_LEN];

    buf[0] = 'X';
    CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), RV_META_ERR_MAGIC);
    fix_crc(buf);   /* a valid CRC doesn't make a wrong magic acceptable */
    CU_ASSERT_EQUAL(rv_meta_decode_ex(buf, RV_META_SB_SIZE, &d, why, sizeof why),
                    RV_META_ERR_MAGIC);
    CU_ASSERT(strstr(why, "RPVLMETA") != NULL);

    memset(buf, 0, RV_META_SB_SIZE);
    CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), RV_META_ERR_MAGIC);
    free(buf);

    uint32_t versions[] = { 0, 2, 0x01000000, UINT32_MAX };
    for (size_t i = 0; i < RV_ARRAY_SIZE(versions); i++) {
        buf = encoded_sample();
        rv_put_be32(buf + RV_META_OFF_VERSION, versions[i]);
        fix_crc(buf);
        CU_ASSERT_EQUAL(rv_meta_decode_ex(buf, RV_META_SB_SIZE, &d, why, sizeof why),
                        RV_META_ERR_VERSION);
        CU_ASSERT_EQUAL(d.version, versions[i]);
        free(buf);
    }
}

/* Any single corrupted byte is detected, with the right error. */
static void test_bad_crc_every_byte(void)
{
    uint8_t *buf = encoded_sample();
    struct rv_meta d;
    int wrong = 0;
    for (size_t i = 0; i < RV_META_SB_SIZE; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            buf[i] ^= (uint8_t)(1u << bit);
            int r = rv_meta_decode(buf, RV_META_SB_SIZE, &d);
            int want = i < RV_META_OFF_VERSION ? RV_META_ERR_MAGIC
                     : i < RV_META_OFF_HDR_LEN ? RV_META_ERR_VERSION
                     : RV_META_ERR_CRC;
            if (r != want)
                wrong++;
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), 0);   /* restored */

    /* The stored CRC itself wrong. */
    rv_put_be32(buf + RV_META_OFF_CRC, rv_get_be32(buf + RV_META_OFF_CRC) + 1);
    CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), RV_META_ERR_CRC);
    free(buf);
}

static void test_truncated(void)
{
    uint8_t *buf = encoded_sample();
    struct rv_meta d;
    int wrong = 0;
    for (size_t len = 0; len < RV_META_SB_SIZE; len++) {
        /* An exact-size heap copy, so ASan catches any read past len. */
        uint8_t *copy = malloc(len ? len : 1);
        CU_ASSERT_FATAL(copy != NULL);
        memcpy(copy, buf, len);
        if (rv_meta_decode(copy, len, &d) != RV_META_ERR_TRUNCATED)
            wrong++;
        free(copy);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(rv_meta_decode(NULL, 0, &d), RV_META_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), 0);
    free(buf);
}

/* Set a field in an encoded sample, fix the CRC, expect RV_META_ERR_FIELD. */
enum fw { W32, W64, WBYTE };
static void expect_field_error(size_t off, enum fw width, uint64_t value, const char *what)
{
    uint8_t *buf = encoded_sample();
    switch (width) {
    case W32:   rv_put_be32(buf + off, (uint32_t)value); break;
    case W64:   rv_put_be64(buf + off, value); break;
    case WBYTE: buf[off] = (uint8_t)value; break;
    }
    fix_crc(buf);
    struct rv_meta d;
    char why[RV_META_WHY_LEN];
    int r = rv_meta_decode_ex(buf, RV_META_SB_SIZE, &d, why, sizeof why);
    if (r != RV_META_ERR_FIELD)
        fprintf(stderr, "\n  %s: got %d (%s), want RV_META_ERR_FIELD\n", what, r,
                rv_meta_strerror(r));
    CU_ASSERT_EQUAL(r, RV_META_ERR_FIELD);
    CU_ASSERT(why[0] != '\0');
    free(buf);
}

static void test_field_ranges(void)
{
    expect_field_error(RV_META_OFF_HDR_LEN, W32, 199, "header_len 199");
    expect_field_error(RV_META_OFF_HDR_LEN, W32, 4096, "header_len 4096");
    expect_field_error(RV_META_OFF_FLAGS, W32, 0x2, "unknown flag");
    expect_field_error(RV_META_OFF_FLAGS, W32, 0x80000001u, "unknown flag high");
    {
        uint8_t *buf = encoded_sample();
        memset(buf + RV_META_OFF_UUID, 0, RV_UUID_LEN);
        fix_crc(buf);
        struct rv_meta d;
        CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), RV_META_ERR_FIELD);
        free(buf);
    }
    expect_field_error(RV_META_OFF_NAME, WBYTE, 0, "empty name");
    expect_field_error(RV_META_OFF_NAME + 2, WBYTE, 0x07, "control char in name");
    expect_field_error(RV_META_OFF_NAME + 2, WBYTE, 0xc3, "non-ASCII in name");
    expect_field_error(RV_META_OFF_NAME + 50, WBYTE, 'z', "garbage after the name's NUL");
    {
        uint8_t *buf = encoded_sample();
        memset(buf + RV_META_OFF_NAME, 'a', RV_META_NAME_LEN);   /* no NUL */
        fix_crc(buf);
        struct rv_meta d;
        CU_ASSERT_EQUAL(rv_meta_decode(buf, RV_META_SB_SIZE, &d), RV_META_ERR_FIELD);
        CU_ASSERT_EQUAL(strlen(d.name), RV_META_NAME_LEN - 1);   /* still terminated */
        free(buf);
    }
    expect_field_error(RV_META_OFF_DATA_SIZE, W64, 0, "data_size 0");
    expect_field_error(RV_META_OFF_DATA_SIZE, W64, (UINT64_C(3) << 30) + 512, "data_size unaligned");
    expect_field_error(RV_META_OFF_DATA_SIZE, W64, UINT64_MAX & ~UINT64_C(4095), "data_size huge");
    expect_field_error(RV_META_OFF_DATA_SIZE, W64, UINT64_C(2) << 30, "data_size != bm_offset");
    expect_field_error(RV_META_OFF_BLOCK_SIZE, W32, 1000, "block size 1000");
    expect_field_error(RV_META_OFF_BLOCK_SIZE, W32, 0, "block size 0");
    expect_field_error(RV_META_OFF_BLOCK_SIZE, W32, 1024, "block size 1024");
    expect_field_error(RV_META_OFF_BLOCK_SIZE, W32, 8192, "block size 8192");
    expect_field_error(RV_META_OFF_GRANULARITY, W32, 65536 + 4096, "granularity not pow2");
    expect_field_error(RV_META_OFF_GRANULARITY, W32, 3 * 4096, "granularity 12K");
    expect_field_error(RV_META_OFF_GRANULARITY, W32, 2048, "granularity 2048");
    expect_field_error(RV_META_OFF_GRANULARITY, W32, 0, "granularity 0");
    expect_field_error(RV_META_OFF_GRANULARITY, W32, 4096, "granularity != bm_length");
    expect_field_error(RV_META_OFF_BM_OFFSET, W64, 0, "bm_offset 0");
    expect_field_error(RV_META_OFF_BM_OFFSET, W64, (UINT64_C(3) << 30) + 4096, "bm_offset +4096");
    expect_field_error(RV_META_OFF_BM_LENGTH, W64, 4096, "bm_length short");
    expect_field_error(RV_META_OFF_BM_LENGTH, W64, 8192 + 4096, "bm_length long");
    expect_field_error(RV_META_OFF_DISK_STATE, W32, 0, "disk state 0");
    expect_field_error(RV_META_OFF_DISK_STATE, W32, 4, "disk state 4");
    expect_field_error(RV_META_OFF_ROLE, W32, 0, "role 0");
    expect_field_error(RV_META_OFF_ROLE, W32, 3, "role 3");
    expect_field_error(RV_META_OFF_NODE_ID, W32, RV_META_MAX_NODES, "node id 32");
    expect_field_error(RV_META_OFF_NODE_ID, W32, UINT32_MAX, "node id max");
    expect_field_error(RV_META_OFF_RESERVED0, W32, 1, "reserved0");
    expect_field_error(RV_META_OFF_END, WBYTE, 1, "reserved at 200");
    expect_field_error(RV_META_SB_SIZE - 1, WBYTE, 0x80, "reserved at 4095");

    /* On RV_META_ERR_FIELD the decoded fields are available for reports. */
    uint8_t *buf = encoded_sample();
    rv_put_be32(buf + RV_META_OFF_BLOCK_SIZE, 1000);
    fix_crc(buf);
    struct rv_meta d;
    char why[RV_META_WHY_LEN];
    CU_ASSERT_EQUAL(rv_meta_decode_ex(buf, RV_META_SB_SIZE, &d, why, sizeof why),
                    RV_META_ERR_FIELD);
    CU_ASSERT_EQUAL(d.block_size, 1000);
    CU_ASSERT_EQUAL(d.node_id, 7);
    CU_ASSERT(strstr(why, "block_size") != NULL && strstr(why, "1000") != NULL);
    free(buf);
}

/* encode refuses what decode would refuse. */
static void test_encode_rejects(void)
{
    uint8_t buf[RV_META_SB_SIZE];
    struct rv_meta m;
    char why[RV_META_WHY_LEN];
#define REJECT(stmt) do { sample_meta(&m); stmt; \
        CU_ASSERT_EQUAL(rv_meta_encode(&m, buf), -EINVAL); \
        CU_ASSERT_EQUAL(rv_meta_check(&m, why, sizeof why), RV_META_ERR_FIELD); \
        CU_ASSERT(why[0] != '\0'); } while (0)
    REJECT(m.data_size = 0);
    REJECT(m.data_size = 4097);
    REJECT(m.data_size = m.data_size + 4096);            /* bitmap offset now wrong */
    REJECT(m.block_size = 1000);
    REJECT(m.bm_granularity = 4096 * 3);
    REJECT(m.bm_granularity = 1024);
    REJECT(m.bm_length = 0);
    REJECT(m.bm_offset++);
    REJECT(m.disk_state = 0);
    REJECT(m.disk_state = 99);
    REJECT(m.role = 0);
    REJECT(m.node_id = 32);
    REJECT(m.flags = 0x10);
    REJECT(memset(m.uuid, 0, sizeof m.uuid));
    REJECT(m.name[0] = '\0');
    REJECT(m.name[1] = '\n');
    REJECT(memset(m.name, 'n', sizeof m.name));        /* 64 chars, no NUL */
#undef REJECT
    sample_meta(&m);
    CU_ASSERT_EQUAL(rv_meta_check(&m, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(why, "");
    /* Garbage after the name's NUL in the struct is not encoded. */
    memset(m.name, 'q', sizeof m.name);
    strcpy(m.name, "vol");
    CU_ASSERT_EQUAL_FATAL(rv_meta_encode(&m, buf), 0);
    for (size_t i = RV_META_OFF_NAME + 3; i < RV_META_OFF_DATA_SIZE; i++)
        CU_ASSERT_EQUAL(buf[i], 0);
}

/* ------------------------------------------------------------------- layout */

struct layout_case {
    uint64_t data_size;
    uint32_t gran;
    uint64_t bits, bm_len;
};

static void test_layout(void)
{
    const uint64_t K = 1024, M = K * K, G = M * K, T = G * K;
    const struct layout_case cases[] = {
        { 1 * M,            4096,  256,              4096 },
        { 4 * G,            4096,  1048576,          128 * K },
        { 1 * T,            4096,  UINT64_C(1) << 28, 32 * M },
        { 1 * T,            65536, UINT64_C(1) << 24, 2 * M },
        { 4096,             4096,  1,                4096 },
        { 3 * 4096,         4096,  3,                4096 },
        { 4096 * 32768,     4096,  32768,            4096 },         /* exactly one page of bits */
        { 4096 * 32769,     4096,  32769,            8192 },         /* one bit more */
        { 4096 * 262145,    4096,  262145,           36864 },        /* 32769 bytes */
        { 1 * M + 4096,     65536, 17,               4096 },         /* partial last granule */
        { 10 * G + 12288,   4096,  2621443,          331776 },       /* 327681 bytes -> 81 pages */
        { 1 * G,            UINT32_C(1) << 31, 1,    4096 },
        { RV_META_MAX_DATA_SIZE, 4096, UINT64_C(1) << 48, UINT64_C(1) << 45 },
    };
    for (size_t i = 0; i < RV_ARRAY_SIZE(cases); i++) {
        const struct layout_case *c = &cases[i];
        struct rv_meta_layout l;
        CU_ASSERT_EQUAL_FATAL(rv_meta_layout(c->data_size, c->gran, &l), 0);
        CU_ASSERT_EQUAL(l.data_size, c->data_size);
        CU_ASSERT_EQUAL(l.granularity, c->gran);
        CU_ASSERT_EQUAL(l.bitmap_bits, c->bits);
        CU_ASSERT_EQUAL(l.bitmap_offset, c->data_size);
        CU_ASSERT_EQUAL(l.bitmap_length, c->bm_len);
        CU_ASSERT_EQUAL(l.bitmap_length % 4096, 0);
        CU_ASSERT(l.bitmap_length * 8 >= l.bitmap_bits);
        CU_ASSERT(l.bitmap_length * 8 - l.bitmap_bits < 4096 * 8);
        CU_ASSERT_EQUAL(l.sb_offset, c->data_size + c->bm_len);
        CU_ASSERT_EQUAL(l.file_size, c->data_size + c->bm_len + 4096);
    }

    struct rv_meta_layout l;
    CU_ASSERT_EQUAL(rv_meta_layout(0, 4096, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(4095, 4096, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M + 512, 4096, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(RV_META_MAX_DATA_SIZE + 4096, 4096, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(UINT64_MAX & ~UINT64_C(4095), 4096, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M, 0, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M, 2048, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M, 1000, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M, 12288, &l), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_layout(1 * M, UINT32_MAX, &l), -EINVAL);
}

static void test_check_file_size(void)
{
    struct rv_meta m;
    sample_meta(&m);
    struct rv_meta_layout l;
    CU_ASSERT_EQUAL_FATAL(rv_meta_layout(m.data_size, m.bm_granularity, &l), 0);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size), 0);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size + 1), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size - 1), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size + 4096), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size - 4096), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, m.data_size), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, 0), RV_META_ERR_SIZE);
    m.data_size = 0;
    CU_ASSERT_EQUAL(rv_meta_check_file_size(&m, l.file_size), RV_META_ERR_FIELD);
}

static void test_strerror_names(void)
{
    const int errs[] = { RV_META_ERR_TRUNCATED, RV_META_ERR_MAGIC, RV_META_ERR_VERSION,
                         RV_META_ERR_CRC, RV_META_ERR_FIELD, RV_META_ERR_SIZE,
                         RV_META_ERR_NOTFILE };
    for (size_t i = 0; i < RV_ARRAY_SIZE(errs); i++) {
        const char *s = rv_meta_strerror(errs[i]);
        CU_ASSERT(s != NULL && strlen(s) > 10);
        CU_ASSERT(errs[i] <= -1000);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT(strcmp(s, rv_meta_strerror(errs[j])) != 0);
    }
    CU_ASSERT(strstr(rv_meta_strerror(RV_META_ERR_SIZE), "size mismatch") != NULL);
    CU_ASSERT(strstr(rv_meta_strerror(RV_META_ERR_MAGIC), "not a repvol image") != NULL);
    CU_ASSERT_STRING_EQUAL(rv_meta_strerror(-ENOENT), "No such file or directory");
    CU_ASSERT_STRING_EQUAL(rv_meta_strerror(-EEXIST), "File exists");
    CU_ASSERT_STRING_EQUAL(rv_meta_strerror(0), "success");
    CU_ASSERT(rv_meta_strerror(-999) != NULL);
    CU_ASSERT(rv_meta_strerror(12345) != NULL);
    CU_ASSERT(rv_meta_strerror(INT32_MIN) != NULL);

    CU_ASSERT_STRING_EQUAL(rv_disk_state_name(RV_DISK_INCONSISTENT), "Inconsistent");
    CU_ASSERT_STRING_EQUAL(rv_disk_state_name(RV_DISK_OUTDATED), "Outdated");
    CU_ASSERT_STRING_EQUAL(rv_disk_state_name(RV_DISK_UPTODATE), "UpToDate");
    CU_ASSERT_STRING_EQUAL(rv_disk_state_name(0), "unknown");
    CU_ASSERT_STRING_EQUAL(rv_disk_state_name(1000), "unknown");
    CU_ASSERT_STRING_EQUAL(rv_role_name(RV_ROLE_SECONDARY), "secondary");
    CU_ASSERT_STRING_EQUAL(rv_role_name(RV_ROLE_PRIMARY), "primary");
    CU_ASSERT_STRING_EQUAL(rv_role_name(0), "unknown");
}

/* ------------------------------------------------------------------- files */

static void test_create_image(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "vol.img");
    const uint64_t size = UINT64_C(4) << 30;
    struct rv_meta m;
    uint64_t before = (uint64_t)time(NULL);
    CU_ASSERT_EQUAL_FATAL(rv_meta_create_image(path, size, "vol", 0, 0, &m), 0);

    struct rv_meta_layout l;
    CU_ASSERT_EQUAL_FATAL(rv_meta_layout(size, 4096, &l), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL((uint64_t)st.st_size, l.file_size);
    CU_ASSERT((uint64_t)st.st_blocks * 512 <= 1024 * 1024);     /* sparse */
    CU_ASSERT_EQUAL(st.st_mode & 0077, 0);                      /* not world readable */

    /* Fresh-volume defaults. */
    CU_ASSERT_EQUAL(m.version, RV_META_VERSION);
    CU_ASSERT_STRING_EQUAL(m.name, "vol");
    CU_ASSERT_EQUAL(m.data_size, size);
    CU_ASSERT_EQUAL(m.block_size, 4096);
    CU_ASSERT_EQUAL(m.bm_granularity, 4096);
    CU_ASSERT_EQUAL(m.bm_offset, l.bitmap_offset);
    CU_ASSERT_EQUAL(m.bm_length, l.bitmap_length);
    CU_ASSERT_EQUAL(m.flags, RV_META_F_CLEAN);
    CU_ASSERT_EQUAL(m.disk_state, RV_DISK_UPTODATE);
    CU_ASSERT_EQUAL(m.role, RV_ROLE_SECONDARY);
    CU_ASSERT_EQUAL(m.node_id, 0);
    CU_ASSERT(m.current_gen != 0);
    CU_ASSERT_EQUAL(m.bitmap_gen, 0);
    CU_ASSERT_EQUAL(m.history_gen[0], 0);
    CU_ASSERT_EQUAL(m.history_gen[1], 0);
    CU_ASSERT(m.ctime >= before && m.ctime <= (uint64_t)time(NULL));
    CU_ASSERT_EQUAL(m.open_count, 0);
    CU_ASSERT_EQUAL(m.uuid[6] >> 4, 4);
    CU_ASSERT_EQUAL(m.uuid[8] & 0xc0, 0x80);

    /* read_fd gives back the same. */
    int fd = open(path, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    struct rv_meta r;
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &r), 0);
    assert_meta_equal(&m, &r);

    /* write_fd + read_fd round trip. */
    r.open_count = 5;
    r.flags = 0;
    r.role = RV_ROLE_PRIMARY;
    r.bitmap_gen = r.current_gen;
    r.current_gen = 42;
    r.history_gen[0] = 43;
    CU_ASSERT_EQUAL(rv_meta_write_fd(fd, &r), 0);
    struct rv_meta r2;
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &r2), 0);
    assert_meta_equal(&r, &r2);
    CU_ASSERT_EQUAL(fstat(fd, &st), 0);
    CU_ASSERT_EQUAL((uint64_t)st.st_size, l.file_size);   /* wrote in place */

    /* write_fd refuses an invalid superblock or one for another layout. */
    r2.block_size = 1000;
    CU_ASSERT_EQUAL(rv_meta_write_fd(fd, &r2), -EINVAL);
    r2.block_size = 4096;
    struct rv_meta_layout l2;
    CU_ASSERT_EQUAL_FATAL(rv_meta_layout(size + 4096, 4096, &l2), 0);
    r2.data_size = size + 4096;
    r2.bm_offset = l2.bitmap_offset;
    r2.bm_length = l2.bitmap_length;
    CU_ASSERT_EQUAL(rv_meta_write_fd(fd, &r2), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &r2), 0);
    assert_meta_equal(&r, &r2);
    close(fd);

    /* Refuses to overwrite, and leaves the existing file alone. */
    struct rv_meta other;
    memset(&other, 0, sizeof other);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, UINT64_C(1) << 20, "x", 0, 0, &other), -EEXIST);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL((uint64_t)st.st_size, l.file_size);
    fd = open(path, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &r2), 0);
    assert_meta_equal(&r, &r2);
    close(fd);

    /* Two volumes get different identities. */
    char path2[PATH_MAX];
    tmp_path(path2, sizeof path2, "vol2.img");
    CU_ASSERT_EQUAL_FATAL(rv_meta_create_image(path2, UINT64_C(1) << 20, "vol2", 512, 65536,
                                               &other), 0);
    CU_ASSERT(memcmp(other.uuid, m.uuid, RV_UUID_LEN) != 0);
    CU_ASSERT(other.current_gen != m.current_gen);
    CU_ASSERT_EQUAL(other.block_size, 512);
    CU_ASSERT_EQUAL(other.bm_granularity, 65536);
    CU_ASSERT_EQUAL(stat(path2, &st), 0);
    CU_ASSERT_EQUAL((uint64_t)st.st_size, (UINT64_C(1) << 20) + 4096 + 4096);
    unlink(path2);
    unlink(path);
}

static void test_create_image_rejects(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "bad.img");
    struct rv_meta m;
    struct stat st;
    const uint64_t M = 1 << 20;
    CU_ASSERT_EQUAL(rv_meta_create_image(path, 0, "v", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M + 1, "v", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M, "v", 1000, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M, "v", 0, 5000, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M, "", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M, "tab\there", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M,
        "0123456789012345678901234567890123456789012345678901234567890123", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(NULL, M, "v", 0, 0, &m), -EINVAL);
    CU_ASSERT_EQUAL(rv_meta_create_image(path, M, NULL, 0, 0, &m), -EINVAL);
    CU_ASSERT(stat(path, &st) != 0 && errno == ENOENT);   /* nothing left behind */

    char nodir[PATH_MAX];
    tmp_path(nodir, sizeof nodir, "no/such/dir.img");
    CU_ASSERT_EQUAL(rv_meta_create_image(nodir, M, "v", 0, 0, &m), -ENOENT);
    /* A directory or a symlink in the way counts as existing. */
    CU_ASSERT_EQUAL(rv_meta_create_image(tmpdir, M, "v", 0, 0, &m), -EEXIST);
    char link[PATH_MAX];
    tmp_path(link, sizeof link, "dangling.img");
    CU_ASSERT_EQUAL_FATAL(symlink("nowhere", link), 0);
    CU_ASSERT_EQUAL(rv_meta_create_image(link, M, "v", 0, 0, &m), -EEXIST);
    CU_ASSERT(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    unlink(link);
}

/* A failure after the file was created removes the partial file: make
 * ftruncate fail with EFBIG through RLIMIT_FSIZE, in a child process. */
static void test_create_image_cleanup(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "partial.img");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = { 1 << 20, 1 << 20 };
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(10);
        struct rv_meta m;
        int r = rv_meta_create_image(path, UINT64_C(1) << 30, "v", 0, 0, &m);
        _exit(r == -EFBIG ? 0 : 11);
    }
    int status;
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat st;
    CU_ASSERT(stat(path, &st) != 0 && errno == ENOENT);
}

static void write_file(const char *path, const void *data, size_t len, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    if (len)
        CU_ASSERT_EQUAL(pwrite(fd, data, len, 0), (ssize_t)len);
    CU_ASSERT_EQUAL(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static int read_meta_path(const char *path, struct rv_meta *m, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    int r = rv_meta_read_fd_ex(fd, m, why, whylen);
    close(fd);
    return r;
}

static void test_read_fd_errors(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "garbage.img");
    struct rv_meta m;
    char why[RV_META_WHY_LEN];

    write_file(path, NULL, 0, 0);                            /* empty */
    CU_ASSERT_EQUAL(read_meta_path(path, &m, why, sizeof why), RV_META_ERR_TRUNCATED);
    write_file(path, "hello", 5, 4095);                      /* too small */
    CU_ASSERT_EQUAL(read_meta_path(path, &m, why, sizeof why), RV_META_ERR_TRUNCATED);
    write_file(path, NULL, 0, 1 << 20);                      /* all zero */
    CU_ASSERT_EQUAL(read_meta_path(path, &m, why, sizeof why), RV_META_ERR_MAGIC);
    CU_ASSERT(strstr(why, "offset 1044480") != NULL);

    /* A valid superblock for 2 MiB at the end of a file sized for 1 MiB. */
    struct rv_meta s;
    sample_meta(&s);
    s.data_size = 2 << 20;
    s.bm_granularity = 4096;
    s.bm_offset = s.data_size;
    s.bm_length = 4096;
    uint8_t sb[RV_META_SB_SIZE];
    CU_ASSERT_EQUAL_FATAL(rv_meta_encode(&s, sb), 0);
    const uint64_t small = (1 << 20) + 4096 + 4096;
    write_file(path, NULL, 0, small);
    int fd = open(path, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(pwrite(fd, sb, sizeof sb, small - 4096), (ssize_t)sizeof sb);
    CU_ASSERT_EQUAL(rv_meta_read_fd_ex(fd, &m, why, sizeof why), RV_META_ERR_SIZE);
    CU_ASSERT_EQUAL(m.data_size, 2 << 20);                  /* fields available */
    CU_ASSERT(strstr(why, "1056768") != NULL);              /* the actual size */
    /* ... and with the right size it is accepted. */
    const uint64_t right = (2 << 20) + 4096 + 4096;
    CU_ASSERT_EQUAL(ftruncate(fd, (off_t)right), 0);
    CU_ASSERT_EQUAL(pwrite(fd, sb, sizeof sb, right - 4096), (ssize_t)sizeof sb);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), 0);
    assert_meta_equal(&s, &m);
    /* Grown by 4 KiB: the superblock is no longer at the end. */
    CU_ASSERT_EQUAL(ftruncate(fd, (off_t)right + 4096), 0);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), RV_META_ERR_MAGIC);
    /* Corrupted. */
    CU_ASSERT_EQUAL(ftruncate(fd, (off_t)right), 0);
    CU_ASSERT_EQUAL(pwrite(fd, "X", 1, right - 4096 + 300), 1);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), RV_META_ERR_CRC);
    close(fd);
    unlink(path);

    /* Not a file. */
    fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), RV_META_ERR_NOTFILE);
    close(fd);
    fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        CU_ASSERT_EQUAL(rv_meta_read_fd(fd, &m), RV_META_ERR_NOTFILE);
        close(fd);
    }
    /* Closed descriptor. */
    CU_ASSERT_EQUAL(rv_meta_read_fd(-1, &m), -EBADF);
}

/* ------------------------------------------------------------------- main */

int main(void)
{
    static const struct unit_test tests[] = {
        { "crc32c known answers", test_crc32c_known_answers },
        { "crc32c hw/sw/piecewise agree", test_crc32c_paths_agree },
        { "encode/decode round trip", test_roundtrip },
        { "encoded byte layout", test_encoded_layout },
        { "bad magic, bad version", test_bad_magic_version },
        { "every corrupted byte detected", test_bad_crc_every_byte },
        { "truncated buffers", test_truncated },
        { "out-of-range fields", test_field_ranges },
        { "encode rejects invalid", test_encode_rejects },
        { "layout arithmetic", test_layout },
        { "file size check", test_check_file_size },
        { "strerror and names", test_strerror_names },
        { "create_image", test_create_image },
        { "create_image rejects", test_create_image_rejects },
        { "create_image removes partial file", test_create_image_cleanup },
        { "read_fd errors", test_read_fd_errors },
    };
    return UNIT_RUN("meta_format", suite_init, suite_cleanup, tests);
}
