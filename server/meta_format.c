/* meta_format.c - encode/decode/read/write the repvol superblock
 * (format described in include/repvol/meta_format.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "repvol/crc32c.h"
#include "repvol/meta_format.h"
#include "repvol/wire.h"

_Static_assert(RV_META_OFF_END == RV_META_HDR_LEN, "layout table and header_len disagree");
_Static_assert(RV_META_OFF_HISTORY_GEN + 8 * RV_META_HISTORY == RV_META_OFF_CTIME,
               "history_gen size");
_Static_assert(RV_META_OFF_NAME + RV_META_NAME_LEN == RV_META_OFF_DATA_SIZE, "name size");

__attribute__((format(printf, 3, 4)))
static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

const char *rv_meta_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case RV_META_ERR_TRUNCATED:
        return "truncated: too small to hold a 4096-byte repvol superblock";
    case RV_META_ERR_MAGIC:
        return "not a repvol image (no repvol superblock in the last 4 KiB)";
    case RV_META_ERR_VERSION:
        return "unsupported repvol metadata format version";
    case RV_META_ERR_CRC:
        return "superblock checksum mismatch (corrupted metadata)";
    case RV_META_ERR_FIELD:
        return "invalid superblock: field out of range";
    case RV_META_ERR_SIZE:
        return "size mismatch: file size does not match the metadata layout";
    case RV_META_ERR_NOTFILE:
        return "not a regular file or block device";
    }
    const char *desc = rv_errno_desc(err);
    return desc ? desc : "unknown error";
}

const char *rv_disk_state_name(uint32_t state)
{
    switch (state) {
    case RV_DISK_INCONSISTENT: return "Inconsistent";
    case RV_DISK_OUTDATED:     return "Outdated";
    case RV_DISK_UPTODATE:     return "UpToDate";
    }
    return "unknown";
}

const char *rv_role_name(uint32_t role)
{
    switch (role) {
    case RV_ROLE_SECONDARY: return "secondary";
    case RV_ROLE_PRIMARY:   return "primary";
    }
    return "unknown";
}

static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

static int check_data_size(uint64_t data_size, char *why, size_t whylen)
{
    if (data_size == 0) {
        why_set(why, whylen, "data_size is 0");
        return -EINVAL;
    }
    if (data_size % RV_META_ALIGN) {
        why_set(why, whylen, "data_size %" PRIu64 " is not a multiple of %u",
                data_size, RV_META_ALIGN);
        return -EINVAL;
    }
    if (data_size > RV_META_MAX_DATA_SIZE) {
        why_set(why, whylen, "data_size %" PRIu64 " exceeds the maximum %" PRIu64,
                data_size, RV_META_MAX_DATA_SIZE);
        return -EINVAL;
    }
    return 0;
}

static int check_granularity(uint32_t gran, char *why, size_t whylen)
{
    if (!is_pow2(gran) || gran < RV_META_MIN_GRANULARITY) {
        why_set(why, whylen, "bm_granularity %" PRIu32 " is not a power of two >= %u",
                gran, RV_META_MIN_GRANULARITY);
        return -EINVAL;
    }
    return 0;
}

static int layout_why(uint64_t data_size, uint32_t gran, struct rv_meta_layout *out,
                      char *why, size_t whylen)
{
    int r = check_data_size(data_size, why, whylen);
    if (r == 0)
        r = check_granularity(gran, why, whylen);
    if (r)
        return r;
    /* data_size <= 2^60, so nothing below can overflow. */
    uint64_t bits = (data_size + gran - 1) / gran;
    uint64_t bytes = (bits + 7) / 8;
    out->data_size = data_size;
    out->granularity = gran;
    out->bitmap_bits = bits;
    out->bitmap_offset = data_size;
    out->bitmap_length = RV_ALIGN_UP(bytes, (uint64_t)RV_META_ALIGN);
    out->sb_offset = out->bitmap_offset + out->bitmap_length;
    out->file_size = out->sb_offset + RV_META_SB_SIZE;
    return 0;
}

int rv_meta_layout(uint64_t data_size, uint32_t granularity, struct rv_meta_layout *out)
{
    return layout_why(data_size, granularity, out, NULL, 0);
}

static bool is_printable(char c) { return c >= 0x20 && c <= 0x7e; }

/* Checks the name bytes as stored: printable run, a NUL, NUL padding. */
static int check_name(const char *name, size_t field_len, bool need_padding,
                      char *why, size_t whylen)
{
    size_t n = 0;
    while (n < field_len && name[n] != '\0') {
        if (!is_printable(name[n])) {
            why_set(why, whylen, "name has a non-printable byte 0x%02x at position %zu",
                    (unsigned char)name[n], n);
            return RV_META_ERR_FIELD;
        }
        n++;
    }
    if (n == 0) {
        why_set(why, whylen, "name is empty");
        return RV_META_ERR_FIELD;
    }
    if (n > RV_META_NAME_MAX) {
        why_set(why, whylen, "name is longer than %d characters", RV_META_NAME_MAX);
        return RV_META_ERR_FIELD;
    }
    if (need_padding)
        for (size_t i = n; i < field_len; i++)
            if (name[i] != '\0') {
                why_set(why, whylen, "name padding byte %zu is not zero", i);
                return RV_META_ERR_FIELD;
            }
    return 0;
}

int rv_meta_check(const struct rv_meta *m, char *why, size_t whylen)
{
    why_set(why, whylen, "%s", "");
    if (m->flags & ~RV_META_F_KNOWN) {
        why_set(why, whylen, "flags 0x%08" PRIx32 " has unknown bits 0x%08" PRIx32,
                m->flags, m->flags & ~RV_META_F_KNOWN);
        return RV_META_ERR_FIELD;
    }
    static const uint8_t nil[RV_UUID_LEN];
    if (memcmp(m->uuid, nil, RV_UUID_LEN) == 0) {
        why_set(why, whylen, "uuid is nil (all zero)");
        return RV_META_ERR_FIELD;
    }
    int r = check_name(m->name, sizeof m->name, false, why, whylen);
    if (r)
        return r;
    struct rv_meta_layout lay;
    if (layout_why(m->data_size, m->bm_granularity, &lay, why, whylen))
        return RV_META_ERR_FIELD;
    if (m->block_size != 512 && m->block_size != 4096) {
        why_set(why, whylen, "block_size %" PRIu32 " is not 512 or 4096", m->block_size);
        return RV_META_ERR_FIELD;
    }
    if (m->bm_offset != lay.bitmap_offset) {
        why_set(why, whylen, "bm_offset %" PRIu64 " does not follow the data (expected %" PRIu64 ")",
                m->bm_offset, lay.bitmap_offset);
        return RV_META_ERR_FIELD;
    }
    if (m->bm_length != lay.bitmap_length) {
        why_set(why, whylen, "bm_length %" PRIu64 " does not match data_size and "
                "bm_granularity (expected %" PRIu64 ")", m->bm_length, lay.bitmap_length);
        return RV_META_ERR_FIELD;
    }
    if (m->disk_state < RV_DISK_INCONSISTENT || m->disk_state > RV_DISK_UPTODATE) {
        why_set(why, whylen, "disk_state %" PRIu32 " is not a known state", m->disk_state);
        return RV_META_ERR_FIELD;
    }
    if (m->role != RV_ROLE_SECONDARY && m->role != RV_ROLE_PRIMARY) {
        why_set(why, whylen, "role %" PRIu32 " is not a known role", m->role);
        return RV_META_ERR_FIELD;
    }
    if (m->node_id >= RV_META_MAX_NODES) {
        why_set(why, whylen, "node_id %" PRIu32 " is not below %d", m->node_id,
                RV_META_MAX_NODES);
        return RV_META_ERR_FIELD;
    }
    return 0;
}

/* CRC of the block as if the crc field were zero. */
static uint32_t sb_crc(const uint8_t *buf)
{
    static const uint8_t zero[4];
    uint32_t c = rv_crc32c(0, buf, RV_META_OFF_CRC);
    c = rv_crc32c(c, zero, sizeof zero);
    return rv_crc32c(c, buf + RV_META_OFF_CRC + 4, RV_META_SB_SIZE - RV_META_OFF_CRC - 4);
}

int rv_meta_encode(const struct rv_meta *m, uint8_t buf[RV_META_SB_SIZE])
{
    if (rv_meta_check(m, NULL, 0))
        return -EINVAL;
    memset(buf, 0, RV_META_SB_SIZE);
    memcpy(buf + RV_META_OFF_MAGIC, RV_META_MAGIC, RV_META_MAGIC_LEN);
    rv_put_be32(buf + RV_META_OFF_VERSION, RV_META_VERSION);
    rv_put_be32(buf + RV_META_OFF_HDR_LEN, RV_META_HDR_LEN);
    rv_put_be32(buf + RV_META_OFF_FLAGS, m->flags);
    memcpy(buf + RV_META_OFF_UUID, m->uuid, RV_UUID_LEN);
    memcpy(buf + RV_META_OFF_NAME, m->name, strnlen(m->name, sizeof m->name));
    rv_put_be64(buf + RV_META_OFF_DATA_SIZE, m->data_size);
    rv_put_be32(buf + RV_META_OFF_BLOCK_SIZE, m->block_size);
    rv_put_be32(buf + RV_META_OFF_GRANULARITY, m->bm_granularity);
    rv_put_be64(buf + RV_META_OFF_BM_OFFSET, m->bm_offset);
    rv_put_be64(buf + RV_META_OFF_BM_LENGTH, m->bm_length);
    rv_put_be32(buf + RV_META_OFF_DISK_STATE, m->disk_state);
    rv_put_be32(buf + RV_META_OFF_ROLE, m->role);
    rv_put_be32(buf + RV_META_OFF_NODE_ID, m->node_id);
    rv_put_be64(buf + RV_META_OFF_CURRENT_GEN, m->current_gen);
    rv_put_be64(buf + RV_META_OFF_BITMAP_GEN, m->bitmap_gen);
    for (int i = 0; i < RV_META_HISTORY; i++)
        rv_put_be64(buf + RV_META_OFF_HISTORY_GEN + 8 * i, m->history_gen[i]);
    rv_put_be64(buf + RV_META_OFF_CTIME, m->ctime);
    rv_put_be64(buf + RV_META_OFF_OPEN_COUNT, m->open_count);
    rv_put_be32(buf + RV_META_OFF_CRC, sb_crc(buf));
    return 0;
}

int rv_meta_decode_ex(const uint8_t *buf, size_t len, struct rv_meta *m,
                      char *why, size_t whylen)
{
    memset(m, 0, sizeof *m);
    why_set(why, whylen, "%s", "");
    if (!buf || len < RV_META_SB_SIZE) {
        why_set(why, whylen, "have %zu bytes, need %u", buf ? len : 0, RV_META_SB_SIZE);
        return RV_META_ERR_TRUNCATED;
    }
    if (memcmp(buf + RV_META_OFF_MAGIC, RV_META_MAGIC, RV_META_MAGIC_LEN) != 0) {
        char found[2 * RV_META_MAGIC_LEN + 1];
        for (int i = 0; i < RV_META_MAGIC_LEN; i++)
            snprintf(found + 2 * i, 3, "%02x", buf[RV_META_OFF_MAGIC + i]);
        why_set(why, whylen, "expected \"%s\", found bytes %s", RV_META_MAGIC, found);
        return RV_META_ERR_MAGIC;
    }
    m->version = rv_get_be32(buf + RV_META_OFF_VERSION);
    if (m->version != RV_META_VERSION) {
        why_set(why, whylen, "version %" PRIu32 ", this program reads version %u",
                m->version, RV_META_VERSION);
        return RV_META_ERR_VERSION;
    }
    uint32_t stored = rv_get_be32(buf + RV_META_OFF_CRC), computed = sb_crc(buf);
    if (stored != computed) {
        why_set(why, whylen, "stored 0x%08" PRIx32 ", computed 0x%08" PRIx32, stored, computed);
        return RV_META_ERR_CRC;
    }

    m->flags = rv_get_be32(buf + RV_META_OFF_FLAGS);
    memcpy(m->uuid, buf + RV_META_OFF_UUID, RV_UUID_LEN);
    /* Copied with its NUL only if valid; check_name below decides. */
    memcpy(m->name, buf + RV_META_OFF_NAME, RV_META_NAME_LEN);
    m->name[RV_META_NAME_LEN - 1] = '\0';
    m->data_size = rv_get_be64(buf + RV_META_OFF_DATA_SIZE);
    m->block_size = rv_get_be32(buf + RV_META_OFF_BLOCK_SIZE);
    m->bm_granularity = rv_get_be32(buf + RV_META_OFF_GRANULARITY);
    m->bm_offset = rv_get_be64(buf + RV_META_OFF_BM_OFFSET);
    m->bm_length = rv_get_be64(buf + RV_META_OFF_BM_LENGTH);
    m->disk_state = rv_get_be32(buf + RV_META_OFF_DISK_STATE);
    m->role = rv_get_be32(buf + RV_META_OFF_ROLE);
    m->node_id = rv_get_be32(buf + RV_META_OFF_NODE_ID);
    m->current_gen = rv_get_be64(buf + RV_META_OFF_CURRENT_GEN);
    m->bitmap_gen = rv_get_be64(buf + RV_META_OFF_BITMAP_GEN);
    for (int i = 0; i < RV_META_HISTORY; i++)
        m->history_gen[i] = rv_get_be64(buf + RV_META_OFF_HISTORY_GEN + 8 * i);
    m->ctime = rv_get_be64(buf + RV_META_OFF_CTIME);
    m->open_count = rv_get_be64(buf + RV_META_OFF_OPEN_COUNT);

    uint32_t hdr_len = rv_get_be32(buf + RV_META_OFF_HDR_LEN);
    if (hdr_len != RV_META_HDR_LEN) {
        why_set(why, whylen, "header_len %" PRIu32 " is not %u for version %u",
                hdr_len, RV_META_HDR_LEN, RV_META_VERSION);
        return RV_META_ERR_FIELD;
    }
    /* The on-disk name field, including padding (m->name lost byte 63). */
    int r = check_name((const char *)buf + RV_META_OFF_NAME, RV_META_NAME_LEN, true,
                       why, whylen);
    if (r)
        return r;
    if (rv_get_be32(buf + RV_META_OFF_RESERVED0) != 0) {
        why_set(why, whylen, "reserved bytes at offset %d are not zero", RV_META_OFF_RESERVED0);
        return RV_META_ERR_FIELD;
    }
    for (size_t i = RV_META_HDR_LEN; i < RV_META_SB_SIZE; i++)
        if (buf[i] != 0) {
            why_set(why, whylen, "reserved byte at offset %zu is not zero", i);
            return RV_META_ERR_FIELD;
        }
    return rv_meta_check(m, why, whylen);
}

int rv_meta_decode(const uint8_t *buf, size_t len, struct rv_meta *m)
{
    return rv_meta_decode_ex(buf, len, m, NULL, 0);
}

static int check_file_size_why(const struct rv_meta *m, uint64_t file_size,
                               char *why, size_t whylen)
{
    struct rv_meta_layout lay;
    if (layout_why(m->data_size, m->bm_granularity, &lay, why, whylen))
        return RV_META_ERR_FIELD;
    if (file_size != lay.file_size) {
        why_set(why, whylen, "file is %" PRIu64 " bytes, the metadata (data_size %" PRIu64
                ", bitmap %" PRIu64 ", superblock %u) needs exactly %" PRIu64,
                file_size, m->data_size, lay.bitmap_length, RV_META_SB_SIZE, lay.file_size);
        return RV_META_ERR_SIZE;
    }
    return 0;
}

int rv_meta_check_file_size(const struct rv_meta *m, uint64_t file_size)
{
    return check_file_size_why(m, file_size, NULL, 0);
}

int rv_meta_fd_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        return 0;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t sz = 0;
        if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
            return -errno;
        *size = sz;
        return 0;
    }
    return RV_META_ERR_NOTFILE;
}

/* Full pread/pwrite: retries on EINTR and short transfers. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;    /* the file shrank under us */
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int rv_meta_read_fd_ex(int fd, struct rv_meta *m, char *why, size_t whylen)
{
    memset(m, 0, sizeof *m);
    why_set(why, whylen, "%s", "");
    uint64_t size = 0;
    int r = rv_meta_fd_size(fd, &size);
    if (r)
        return r;
    if (size < RV_META_SB_SIZE) {
        why_set(why, whylen, "file is %" PRIu64 " bytes", size);
        return RV_META_ERR_TRUNCATED;
    }
    _Alignas(4096) uint8_t buf[RV_META_SB_SIZE];   /* aligned: fd may be O_DIRECT */
    uint64_t off = size - RV_META_SB_SIZE;
    r = pread_all(fd, buf, sizeof buf, off);
    if (r)
        return r;
    char detail[RV_META_WHY_LEN];
    r = rv_meta_decode_ex(buf, sizeof buf, m, detail, sizeof detail);
    if (r) {
        why_set(why, whylen, "superblock at offset %" PRIu64 ": %s", off, detail);
        return r;
    }
    return check_file_size_why(m, size, why, whylen);
}

int rv_meta_read_fd(int fd, struct rv_meta *m)
{
    return rv_meta_read_fd_ex(fd, m, NULL, 0);
}

int rv_meta_write_fd(int fd, const struct rv_meta *m)
{
    _Alignas(4096) uint8_t buf[RV_META_SB_SIZE];   /* aligned: fd may be O_DIRECT */
    int r = rv_meta_encode(m, buf);
    if (r)
        return r;
    uint64_t size = 0;
    r = rv_meta_fd_size(fd, &size);
    if (r)
        return r;
    r = rv_meta_check_file_size(m, size);
    if (r)
        return r;
    r = pwrite_all(fd, buf, sizeof buf, size - RV_META_SB_SIZE);
    if (r)
        return r;
    if (fdatasync(fd) < 0)
        return -errno;
    return 0;
}

static uint64_t random_nonzero_u64(void)
{
    uint64_t v = 0;
    while (v == 0) {
        ssize_t n = getrandom(&v, sizeof v, 0);
        if (n != (ssize_t)sizeof v) {
            /* Only EINTR is possible for 8 bytes once the pool is seeded. */
            v = 0;
        }
    }
    return v;
}


int rv_meta_create_image(const char *path, uint64_t data_size, const char *name,
                         uint32_t block_size, uint32_t granularity,
                         struct rv_meta *out)
{
    if (!path || !*path || !name)
        return -EINVAL;
    struct rv_meta m;
    memset(&m, 0, sizeof m);
    m.version = RV_META_VERSION;
    m.flags = RV_META_F_CLEAN;
    rv_uuid_generate(m.uuid);
    if (strlen(name) > RV_META_NAME_MAX)
        return -EINVAL;
    strcpy(m.name, name);
    m.data_size = data_size;
    m.block_size = block_size ? block_size : RV_META_DEFAULT_BLOCK_SIZE;
    m.bm_granularity = granularity ? granularity : RV_META_DEFAULT_GRANULARITY;
    struct rv_meta_layout lay;
    if (rv_meta_layout(m.data_size, m.bm_granularity, &lay))
        return -EINVAL;
    m.bm_offset = lay.bitmap_offset;
    m.bm_length = lay.bitmap_length;
    m.disk_state = RV_DISK_UPTODATE;
    m.role = RV_ROLE_SECONDARY;
    m.node_id = 0;
    m.current_gen = random_nonzero_u64();
    m.bitmap_gen = 0;
    m.ctime = (uint64_t)time(NULL);
    m.open_count = 0;
    if (rv_meta_check(&m, NULL, 0))
        return -EINVAL;

    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (ftruncate(fd, (off_t)lay.file_size) < 0)
        r = -errno;
    if (!r)
        r = rv_meta_write_fd(fd, &m);
    if (!r && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && !r)
        r = -errno;
    if (!r)
        r = rv_fsync_parent_dir(path);
    if (r) {
        unlink(path);
        return r;
    }
    if (out)
        *out = m;
    return 0;
}
