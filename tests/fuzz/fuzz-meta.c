/* fuzz-meta.c - libFuzzer harness for the on-disk superblock codec:
 * rv_meta_decode(_ex), rv_meta_check, rv_meta_encode, rv_meta_layout,
 * rv_meta_check_file_size (server/meta_format.c).
 *
 * Input: the bytes of a superblock (the last 4 KiB of an image), possibly
 * short or with trailing bytes.  Each input is used three ways:
 *
 *   1. as is: rv_meta_decode_ex(input) - magic, version and CRC paths;
 *   2. "fixed": the first 4096 bytes (zero-padded) with the CRC field
 *      recomputed, so mutations reach the field checks behind the CRC
 *      instead of dying at RV_META_ERR_CRC;
 *   3. "raw struct": the fixed block's fields loaded into a struct rv_meta
 *      with no validation at all (name not even NUL-terminated), then
 *      rv_meta_check / rv_meta_encode / rv_meta_layout on it.
 *
 * Oracles: the error classes and their order as documented in
 * meta_format.h; the why-buffer size never changes a result and a short
 * why is a prefix of the long one; on success encode(decode(x)) == x
 * byte for byte and decode(encode(m)) == m; rv_meta_check accepts exactly
 * what rv_meta_encode accepts; rv_meta_layout matches a 128-bit model. */
#include <errno.h>

#include "fuzz-util.h"
#include "repvol/crc32c.h"
#include "repvol/meta_format.h"
#include "repvol/wire.h"

typedef unsigned __int128 u128;

static void check_meta_equal(const struct rv_meta *a, const struct rv_meta *b)
{
    FUZZ_CHECK(a->version == b->version);
    FUZZ_CHECK(a->flags == b->flags);
    FUZZ_CHECK(memcmp(a->uuid, b->uuid, sizeof a->uuid) == 0);
    FUZZ_CHECK(memcmp(a->name, b->name, sizeof a->name) == 0);
    FUZZ_CHECK(a->data_size == b->data_size);
    FUZZ_CHECK(a->block_size == b->block_size);
    FUZZ_CHECK(a->bm_granularity == b->bm_granularity);
    FUZZ_CHECK(a->bm_offset == b->bm_offset);
    FUZZ_CHECK(a->bm_length == b->bm_length);
    FUZZ_CHECK(a->disk_state == b->disk_state);
    FUZZ_CHECK(a->role == b->role);
    FUZZ_CHECK(a->node_id == b->node_id);
    FUZZ_CHECK(a->current_gen == b->current_gen);
    FUZZ_CHECK(a->bitmap_gen == b->bitmap_gen);
    for (int i = 0; i < RV_META_HISTORY; i++)
        FUZZ_CHECK(a->history_gen[i] == b->history_gen[i]);
    FUZZ_CHECK(a->ctime == b->ctime);
    FUZZ_CHECK(a->open_count == b->open_count);
}

static bool is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* rv_meta_layout against the documented formula in 128-bit arithmetic. */
static void check_layout(uint64_t data_size, uint32_t gran)
{
    struct rv_meta_layout lay;
    memset(&lay, 0xa5, sizeof lay);
    int r = rv_meta_layout(data_size, gran, &lay);
    bool valid = data_size > 0 && data_size % RV_META_ALIGN == 0 &&
                 data_size <= RV_META_MAX_DATA_SIZE && gran >= RV_META_MIN_GRANULARITY &&
                 (gran & (gran - 1)) == 0;      /* <= 2^31 always holds for a u32 power of 2 */
    FUZZ_CHECKF((r == 0) == valid, "layout(%llu, %u) = %d",
                (unsigned long long)data_size, gran, r);
    if (!valid) {
        FUZZ_CHECK(r == -EINVAL);
        return;
    }
    u128 bits = ((u128)data_size + gran - 1) / gran;
    u128 bytes = (bits + 7) / 8;
    u128 bm_len = (bytes + RV_META_ALIGN - 1) / RV_META_ALIGN * RV_META_ALIGN;
    FUZZ_CHECK(lay.data_size == data_size && lay.granularity == gran);
    FUZZ_CHECK(lay.bitmap_bits == bits);
    FUZZ_CHECK(lay.bitmap_offset == data_size);
    FUZZ_CHECK(lay.bitmap_length == bm_len);
    FUZZ_CHECK(lay.sb_offset == (u128)data_size + bm_len);
    FUZZ_CHECK(lay.file_size == (u128)data_size + bm_len + RV_META_SB_SIZE);
}

/* Everything that must hold for a superblock the decoder accepted; buf is
 * the 4096-byte block it came from. */
static void check_accepted(const struct rv_meta *m, const uint8_t *buf)
{
    FUZZ_CHECK(m->version == RV_META_VERSION);
    FUZZ_CHECK(rv_meta_check(m, NULL, 0) == 0);
    FUZZ_CHECK(memchr(m->name, '\0', sizeof m->name) != NULL);
    FUZZ_CHECK(rv_disk_state_name(m->disk_state) != NULL);
    FUZZ_CHECK(rv_role_name(m->role) != NULL);

    /* Re-encoding is byte-exact: version 1 has no field a decoder drops. */
    uint8_t *enc = malloc(RV_META_SB_SIZE);
    FUZZ_CHECK(enc != NULL);
    FUZZ_CHECK(rv_meta_encode(m, enc) == 0);
    FUZZ_CHECK(memcmp(enc, buf, RV_META_SB_SIZE) == 0);
    struct rv_meta again;
    FUZZ_CHECK(rv_meta_decode(enc, RV_META_SB_SIZE, &again) == 0);
    check_meta_equal(m, &again);
    free(enc);

    /* The layout the superblock describes; the file must be exactly that. */
    struct rv_meta_layout lay;
    FUZZ_CHECK(rv_meta_layout(m->data_size, m->bm_granularity, &lay) == 0);
    FUZZ_CHECK(lay.bitmap_offset == m->bm_offset && lay.bitmap_length == m->bm_length);
    FUZZ_CHECK(rv_meta_check_file_size(m, lay.file_size) == 0);
    FUZZ_CHECK(rv_meta_check_file_size(m, lay.file_size - 1) == RV_META_ERR_SIZE);
    FUZZ_CHECK(rv_meta_check_file_size(m, lay.file_size + RV_META_SB_SIZE) == RV_META_ERR_SIZE);
}

/* rv_meta_decode_ex with no why, a full why and a short why (heap buffers of
 * exactly that size, so ASan sees an overflow).  All three must agree. */
static int decode3(const uint8_t *buf, size_t len, struct rv_meta *m, size_t short_len)
{
    struct rv_meta m1, m2;
    char *full = malloc(RV_META_WHY_LEN), *shrt = malloc(short_len);
    FUZZ_CHECK(full && shrt);
    memset(full, 0x5a, RV_META_WHY_LEN);
    memset(shrt, 0x5a, short_len);

    int r = rv_meta_decode(buf, len, m);
    int r1 = rv_meta_decode_ex(buf, len, &m1, full, RV_META_WHY_LEN);
    int r2 = rv_meta_decode_ex(buf, len, &m2, shrt, short_len);
    FUZZ_CHECKF(r == r1 && r == r2, "decode results %d %d %d", r, r1, r2);
    check_meta_equal(m, &m1);
    check_meta_equal(m, &m2);
    fuzz_check_cstr(full, RV_META_WHY_LEN);
    fuzz_check_cstr(shrt, short_len);
    FUZZ_CHECKF((r == 0) == (full[0] == '\0'), "result %d with why \"%s\"", r, full);
    /* vsnprintf truncation: the short message is a prefix of the full one. */
    size_t fl = strlen(full), sl = strlen(shrt);
    FUZZ_CHECK(sl == RV_MIN(fl, short_len - 1));
    FUZZ_CHECK(memcmp(shrt, full, sl) == 0);
    FUZZ_CHECK(rv_meta_strerror(r) != NULL);
    free(full);
    free(shrt);
    return r;
}

/* The documented check order up to the CRC. */
static void check_decode_class(const uint8_t *buf, size_t len, int r, const struct rv_meta *m)
{
    if (len < RV_META_SB_SIZE) {
        FUZZ_CHECK(r == RV_META_ERR_TRUNCATED);
        FUZZ_CHECK(is_zero(m, sizeof *m));
        return;
    }
    if (memcmp(buf, RV_META_MAGIC, RV_META_MAGIC_LEN) != 0) {
        FUZZ_CHECK(r == RV_META_ERR_MAGIC);
        FUZZ_CHECK(is_zero(m, sizeof *m));
        return;
    }
    uint32_t version = rv_get_be32(buf + RV_META_OFF_VERSION);
    FUZZ_CHECK(m->version == version);
    if (version != RV_META_VERSION) {
        FUZZ_CHECK(r == RV_META_ERR_VERSION);
        return;
    }
    uint8_t *copy = fuzz_dup(buf, RV_META_SB_SIZE);
    memset(copy + RV_META_OFF_CRC, 0, 4);
    uint32_t crc = rv_crc32c(0, copy, RV_META_SB_SIZE);
    free(copy);
    if (crc != rv_get_be32(buf + RV_META_OFF_CRC)) {
        FUZZ_CHECK(r == RV_META_ERR_CRC);
        return;
    }
    FUZZ_CHECKF(r == 0 || r == RV_META_ERR_FIELD, "decode returned %d", r);
    if (r == 0) {
        FUZZ_CHECK(rv_get_be32(buf + RV_META_OFF_HDR_LEN) == RV_META_HDR_LEN);
        FUZZ_CHECK(is_zero(buf + RV_META_HDR_LEN, RV_META_SB_SIZE - RV_META_HDR_LEN));
        FUZZ_CHECK(is_zero(buf + RV_META_OFF_RESERVED0, 4));
        check_accepted(m, buf);
    }
}

/* Pass 3: a struct straight from the bytes, nothing validated. */
static void raw_struct(const uint8_t *b, size_t short_len)
{
    struct rv_meta m;
    memset(&m, 0, sizeof m);
    m.version = rv_get_be32(b + RV_META_OFF_VERSION);
    m.flags = rv_get_be32(b + RV_META_OFF_FLAGS);
    memcpy(m.uuid, b + RV_META_OFF_UUID, RV_UUID_LEN);
    memcpy(m.name, b + RV_META_OFF_NAME, RV_META_NAME_LEN);    /* maybe no NUL */
    m.data_size = rv_get_be64(b + RV_META_OFF_DATA_SIZE);
    m.block_size = rv_get_be32(b + RV_META_OFF_BLOCK_SIZE);
    m.bm_granularity = rv_get_be32(b + RV_META_OFF_GRANULARITY);
    m.bm_offset = rv_get_be64(b + RV_META_OFF_BM_OFFSET);
    m.bm_length = rv_get_be64(b + RV_META_OFF_BM_LENGTH);
    m.disk_state = rv_get_be32(b + RV_META_OFF_DISK_STATE);
    m.role = rv_get_be32(b + RV_META_OFF_ROLE);
    m.node_id = rv_get_be32(b + RV_META_OFF_NODE_ID);
    m.current_gen = rv_get_be64(b + RV_META_OFF_CURRENT_GEN);
    m.bitmap_gen = rv_get_be64(b + RV_META_OFF_BITMAP_GEN);
    for (int i = 0; i < RV_META_HISTORY; i++)
        m.history_gen[i] = rv_get_be64(b + RV_META_OFF_HISTORY_GEN + 8 * i);
    m.ctime = rv_get_be64(b + RV_META_OFF_CTIME);
    m.open_count = rv_get_be64(b + RV_META_OFF_OPEN_COUNT);

    check_layout(m.data_size, m.bm_granularity);

    /* The file-size check on unvalidated sizes (file size: any u64 from
     * the input). */
    struct rv_meta_layout lay;
    int lr = rv_meta_layout(m.data_size, m.bm_granularity, &lay);
    uint64_t fsize = rv_get_be64(b + RV_META_OFF_CTIME);
    int fr = rv_meta_check_file_size(&m, fsize);
    if (lr) {
        FUZZ_CHECK(fr == RV_META_ERR_FIELD);
    } else {
        FUZZ_CHECK(fr == (fsize == lay.file_size ? 0 : RV_META_ERR_SIZE));
        FUZZ_CHECK(rv_meta_check_file_size(&m, lay.file_size) == 0);
    }

    char *full = malloc(RV_META_WHY_LEN), *shrt = malloc(short_len);
    FUZZ_CHECK(full && shrt);
    int r = rv_meta_check(&m, full, RV_META_WHY_LEN);
    int r2 = rv_meta_check(&m, shrt, short_len);
    FUZZ_CHECK(r == r2 && r == rv_meta_check(&m, NULL, 0));
    FUZZ_CHECK(r == 0 || r == RV_META_ERR_FIELD);
    fuzz_check_cstr(full, RV_META_WHY_LEN);
    fuzz_check_cstr(shrt, short_len);
    FUZZ_CHECK((r == 0) == (full[0] == '\0'));
    size_t fl = strlen(full), sl = strlen(shrt);
    FUZZ_CHECK(sl == RV_MIN(fl, short_len - 1) && memcmp(shrt, full, sl) == 0);
    free(full);
    free(shrt);

    uint8_t *enc = malloc(RV_META_SB_SIZE);
    FUZZ_CHECK(enc != NULL);
    int e = rv_meta_encode(&m, enc);
    FUZZ_CHECKF((e == 0) == (r == 0), "check %d but encode %d", r, e);
    if (e == 0) {
        /* decode(encode(m)) == m, up to what encode normalises: the version
         * (always 1) and the bytes after the name's NUL (not stored). */
        struct rv_meta back;
        FUZZ_CHECK(rv_meta_decode(enc, RV_META_SB_SIZE, &back) == 0);
        struct rv_meta norm = m;
        norm.version = RV_META_VERSION;
        size_t nl = strnlen(m.name, sizeof m.name);
        FUZZ_CHECK(nl < sizeof m.name);
        memset(norm.name + nl, 0, sizeof norm.name - nl);
        check_meta_equal(&norm, &back);
        check_accepted(&back, enc);
    } else {
        FUZZ_CHECK(e == -EINVAL);
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A why-buffer size that varies with the input, 1..32. */
    size_t short_len = 1 + (size ? data[size - 1] % 32 : 0);
    struct rv_meta m;

    /* 1. As is. */
    int r = decode3(data, size, &m, short_len);
    check_decode_class(data, size, r, &m);

    /* 2. CRC fixed up. */
    uint8_t *blk = calloc(1, RV_META_SB_SIZE);
    FUZZ_CHECK(blk != NULL);
    memcpy(blk, data, RV_MIN(size, (size_t)RV_META_SB_SIZE));
    rv_put_be32(blk + RV_META_OFF_CRC, 0);
    rv_put_be32(blk + RV_META_OFF_CRC, rv_crc32c(0, blk, RV_META_SB_SIZE));
    r = decode3(blk, RV_META_SB_SIZE, &m, short_len);
    FUZZ_CHECK(r != RV_META_ERR_CRC && r != RV_META_ERR_TRUNCATED);
    check_decode_class(blk, RV_META_SB_SIZE, r, &m);

    /* 3. No validation at all before rv_meta_check / rv_meta_encode. */
    raw_struct(blk, short_len);
    free(blk);
    return 0;
}
