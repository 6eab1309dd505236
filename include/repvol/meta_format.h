/* meta_format.h - the on-disk format of a repvol image: data, bitmap, superblock.
 *
 * FILE LAYOUT (all offsets in bytes, everything 4 KiB aligned)
 *
 *   0                 data_size         sb_offset       file_size
 *   +-----------------+-----------------+---------------+
 *   | data            | bitmap area     | superblock    |
 *   | (raw image)     | (bm_length)     | (4096)        |
 *   +-----------------+-----------------+---------------+
 *
 *   - data:       the volume's contents as a plain raw image, so in an
 *                 emergency `mount -o loop,sizelimit=DATA_SIZE` or
 *                 `losetup --sizelimit` works without repvol.
 *   - bitmap:     room for a dirty bitmap, one bit per bm_granularity bytes
 *                 of data (bit i covers [i*gran, (i+1)*gran)), rounded up to
 *                 4 KiB.  All zero = nothing out of sync; a created image
 *                 leaves it as a hole.  Bit order inside the area belongs to
 *                 the replication code that will use it.
 *   - superblock: the LAST 4096 bytes of the file (or block device), so it is
 *                 found at size - 4096 without knowing anything else (DRBD's
 *                 "internal meta-data" idea).
 *
 * In format version 1 the layout is a pure function of (data_size,
 * bm_granularity), see rv_meta_layout(); the superblock records bm_offset and
 * bm_length redundantly and decoders check they match, and that the file is
 * exactly layout.file_size bytes (RV_META_ERR_SIZE otherwise: e.g. the file
 * was truncated or grown, and in the "grown" case the superblock is no longer
 * at the end, so the error is RV_META_ERR_MAGIC).
 *
 * SUPERBLOCK, format version 1.  Integers are unsigned big-endian, encoded
 * field by field with the wire.h helpers.
 *
 *   off  size  field           meaning
 *   ---  ----  --------------  -----------------------------------------------
 *     0     8  magic           "RPVLMETA" (ASCII, no NUL)
 *     8     4  version         format version = 1; other values are refused
 *    12     4  header_len      bytes of this block version 1 defines = 200
 *    16     4  crc32c          CRC-32C of all 4096 bytes with this field = 0
 *    20     4  flags           RV_META_F_*; an unknown bit is an error
 *    24    16  uuid            volume UUID, shared by all replicas; not nil
 *    40    64  name            1..63 printable ASCII chars, NUL padded
 *   104     8  data_size       bytes of data at offset 0; >0, 4 KiB multiple
 *   112     4  block_size      logical block size exported: 512 or 4096
 *   116     4  bm_granularity  data bytes per bitmap bit; power of 2, >= 4096
 *   120     8  bm_offset       file offset of the bitmap area (= data_size)
 *   128     8  bm_length       bitmap area bytes = ALIGN_UP(ceil(bits/8), 4096)
 *   136     4  disk_state      enum rv_disk_state (0 is invalid)
 *   140     4  role            enum rv_role (0 is invalid)
 *   144     4  node_id         this replica's node id, 0..RV_META_MAX_NODES-1
 *   148     4  (reserved)      zero
 *   152     8  current_gen     identifier of the data generation on this disk
 *   160     8  bitmap_gen      generation the bitmap tracks changes since;
 *                              0 = bitmap not in use
 *   168     8  history_gen[0]  previous current_gen (newest first)
 *   176     8  history_gen[1]  the one before
 *   184     8  ctime           creation time, unix seconds (UTC)
 *   192     8  open_count      times the daemon has opened the volume
 *   200  3896  (reserved)      zero, up to the end of the block
 *
 * The generation identifiers follow DRBD's scheme and get their meaning from
 * the replication work: a fresh volume has a random non-zero current_gen and
 * no bitmap or history; a primary that starts writing without its peer moves
 * current_gen into bitmap_gen, picks a new current_gen and records dirty
 * granules in the bitmap; comparing the identifiers of two replicas tells
 * which one is newer, or that they split.
 *
 * COMPATIBILITY.  Every byte from header_len to the end is written as zero and
 * checked to be zero.  Any change to the superblock (new fields in the
 * reserved area, new flag bits, new enum values that old code must not
 * misread) bumps `version` and raises header_len to cover the new fields; a
 * reader refuses a version it does not know (RV_META_ERR_VERSION), so an old
 * binary never rewrites - and silently drops - fields it does not understand.
 * Expected additions: an activity-log area (offset/length) for fast resync
 * after a primary crash, per-peer records (peer node id, peer UUID, per-peer
 * bitmap generation) for more than one peer, a resize generation, and a
 * feature-flag word.
 *
 * Durability: the superblock is a single 4 KiB block rewritten in place; a
 * write torn by power loss is caught by the CRC (RV_META_ERR_CRC).
 */
#ifndef REPVOL_META_FORMAT_H
#define REPVOL_META_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "repvol/util.h"

#define RV_META_MAGIC           "RPVLMETA"
#define RV_META_MAGIC_LEN       8
#define RV_META_VERSION         1u
#define RV_META_SB_SIZE         4096u       /* the superblock block */
#define RV_META_HDR_LEN         200u        /* bytes defined by version 1 */
#define RV_META_ALIGN           4096u       /* data_size and areas are multiples */
#define RV_META_NAME_LEN        64          /* on-disk name field, NUL padded */
#define RV_META_NAME_MAX        63          /* longest name (always a NUL) */
#define RV_META_HISTORY         2           /* history_gen[] entries */
#define RV_META_MAX_NODES       32          /* node_id < RV_META_MAX_NODES */

#define RV_META_DEFAULT_BLOCK_SIZE   4096u
#define RV_META_DEFAULT_GRANULARITY  4096u
#define RV_META_MIN_GRANULARITY      4096u
#define RV_META_MAX_GRANULARITY      (1u << 31)
/* Largest data_size (1 EiB): keeps every offset well inside off_t. */
#define RV_META_MAX_DATA_SIZE        (UINT64_C(1) << 60)

/* Byte offsets of the superblock fields (the table above). */
enum rv_meta_offset {
    RV_META_OFF_MAGIC       = 0,
    RV_META_OFF_VERSION     = 8,
    RV_META_OFF_HDR_LEN     = 12,
    RV_META_OFF_CRC         = 16,
    RV_META_OFF_FLAGS       = 20,
    RV_META_OFF_UUID        = 24,
    RV_META_OFF_NAME        = 40,
    RV_META_OFF_DATA_SIZE   = 104,
    RV_META_OFF_BLOCK_SIZE  = 112,
    RV_META_OFF_GRANULARITY = 116,
    RV_META_OFF_BM_OFFSET   = 120,
    RV_META_OFF_BM_LENGTH   = 128,
    RV_META_OFF_DISK_STATE  = 136,
    RV_META_OFF_ROLE        = 140,
    RV_META_OFF_NODE_ID     = 144,
    RV_META_OFF_RESERVED0   = 148,
    RV_META_OFF_CURRENT_GEN = 152,
    RV_META_OFF_BITMAP_GEN  = 160,
    RV_META_OFF_HISTORY_GEN = 168,  /* RV_META_HISTORY x u64 */
    RV_META_OFF_CTIME       = 184,
    RV_META_OFF_OPEN_COUNT  = 192,
    RV_META_OFF_END         = 200,  /* == RV_META_HDR_LEN; zero from here on */
};

/* flags */
#define RV_META_F_CLEAN   0x00000001u   /* last shutdown was clean: all data
                                           flushed, bitmap written.  Cleared when
                                           the daemon opens the volume, set again
                                           by a clean close. */
#define RV_META_F_KNOWN   (RV_META_F_CLEAN)

/* What is known about the data on this disk. */
enum rv_disk_state {
    RV_DISK_INCONSISTENT = 1,   /* not usable: sync target, partly written */
    RV_DISK_OUTDATED     = 2,   /* consistent, but a peer is known to be newer */
    RV_DISK_UPTODATE     = 3,   /* consistent and the newest data */
};

enum rv_role {
    RV_ROLE_SECONDARY = 1,      /* not serving writes (mirror target) */
    RV_ROLE_PRIMARY   = 2,      /* serving I/O */
};

/* The decoded superblock, host-endian. */
struct rv_meta {
    uint32_t version;           /* set by decode; encode always writes RV_META_VERSION */
    uint32_t flags;             /* RV_META_F_* */
    uint8_t uuid[RV_UUID_LEN];
    char name[RV_META_NAME_LEN];    /* NUL-terminated, 1..63 printable ASCII */
    uint64_t data_size;         /* bytes of data at offset 0 */
    uint32_t block_size;        /* 512 or 4096 */
    uint32_t bm_granularity;    /* data bytes per bitmap bit */
    uint64_t bm_offset;         /* file offset of the bitmap area */
    uint64_t bm_length;         /* bytes */
    uint32_t disk_state;        /* enum rv_disk_state */
    uint32_t role;              /* enum rv_role */
    uint32_t node_id;
    uint64_t current_gen;
    uint64_t bitmap_gen;
    uint64_t history_gen[RV_META_HISTORY];
    uint64_t ctime;             /* unix seconds */
    uint64_t open_count;
};

/* Where things are in an image (see rv_meta_layout). */
struct rv_meta_layout {
    uint64_t data_size;
    uint32_t granularity;
    uint64_t bitmap_bits;       /* ceil(data_size / granularity) */
    uint64_t bitmap_offset;     /* = data_size */
    uint64_t bitmap_length;     /* ALIGN_UP(ceil(bitmap_bits / 8), 4096) */
    uint64_t sb_offset;         /* bitmap_offset + bitmap_length */
    uint64_t file_size;         /* sb_offset + RV_META_SB_SIZE */
};

/* Errors the metadata functions return besides plain -errno values.  All are
 * <= -1000, so they never collide with -errno. */
enum rv_meta_err {
    RV_META_ERR_TRUNCATED = -1000,  /* fewer than 4096 bytes (buffer or file) */
    RV_META_ERR_MAGIC     = -1001,  /* no magic: not a repvol image */
    RV_META_ERR_VERSION   = -1002,  /* format version this code doesn't know */
    RV_META_ERR_CRC       = -1003,  /* checksum mismatch: corrupted superblock */
    RV_META_ERR_FIELD     = -1004,  /* a field out of range / inconsistent */
    RV_META_ERR_SIZE      = -1005,  /* file size doesn't match the layout */
    RV_META_ERR_NOTFILE   = -1006,  /* not a regular file or block device */
};

/* Room for the detail strings the *_ex functions produce. */
#define RV_META_WHY_LEN 160

/* A clear message for 0, an RV_META_ERR_* value or a -errno value.  Never
 * NULL; static storage. */
const char *rv_meta_strerror(int err);

/* "Inconsistent", "Outdated", "UpToDate" / "secondary", "primary";
 * "unknown" for anything else. */
const char *rv_disk_state_name(uint32_t state);
const char *rv_role_name(uint32_t role);

/* Compute the layout for a data size and bitmap granularity.  Returns 0, or
 * -EINVAL if data_size is 0, not a multiple of 4096 or above
 * RV_META_MAX_DATA_SIZE, or granularity is not a power of two in
 * [4096, 2^31]. */
int rv_meta_layout(uint64_t data_size, uint32_t granularity, struct rv_meta_layout *out);

/* Check every field of m (not version).  Returns 0 or RV_META_ERR_FIELD; if
 * why is not NULL it gets a description of the first bad field, e.g.
 * "block_size 1000 is not 512 or 4096" ("" on success). */
int rv_meta_check(const struct rv_meta *m, char *why, size_t whylen);

/* Encode m into a superblock, CRC included.  Returns 0, or -EINVAL if
 * rv_meta_check() rejects m (buf is then unspecified). */
int rv_meta_encode(const struct rv_meta *m, uint8_t buf[RV_META_SB_SIZE]);

/* Decode the superblock at the start of buf (len >= 4096; bytes past 4096 are
 * ignored).  Checks, in this order: length (RV_META_ERR_TRUNCATED), magic
 * (RV_META_ERR_MAGIC), version (RV_META_ERR_VERSION; m->version holds the
 * version found), CRC (RV_META_ERR_CRC), then header_len, reserved bytes and
 * every field (RV_META_ERR_FIELD; *m then holds all decoded fields, for error
 * reports).  Returns 0 on success.  *m is zeroed first. */
int rv_meta_decode(const uint8_t *buf, size_t len, struct rv_meta *m);
int rv_meta_decode_ex(const uint8_t *buf, size_t len, struct rv_meta *m,
                      char *why, size_t whylen);

/* 0 if a file/device of file_size bytes has exactly m's layout, else
 * RV_META_ERR_SIZE (or RV_META_ERR_FIELD if m's sizes are invalid). */
int rv_meta_check_file_size(const struct rv_meta *m, uint64_t file_size);

/* Size of a regular file (st_size) or block device (BLKGETSIZE64).
 * Returns 0, -errno or RV_META_ERR_NOTFILE. */
int rv_meta_fd_size(int fd, uint64_t *size);

/* Read the superblock of the image open at fd: size it, pread the last 4 KiB,
 * decode, check the file size.  Returns 0, -errno (I/O), or an RV_META_ERR_*
 * value (as rv_meta_decode, plus RV_META_ERR_SIZE and RV_META_ERR_NOTFILE).
 * On RV_META_ERR_FIELD / RV_META_ERR_SIZE *m holds the decoded fields.  The
 * _ex form also writes a detail (offsets, sizes, the bad field) to why. */
int rv_meta_read_fd(int fd, struct rv_meta *m);
int rv_meta_read_fd_ex(int fd, struct rv_meta *m, char *why, size_t whylen);

/* Encode m and write it as the last 4 KiB of the image open at fd (opened for
 * writing), then fdatasync.  Refuses (RV_META_ERR_SIZE, nothing written) if
 * the file size doesn't match m's layout.  Returns 0, -EINVAL (invalid m),
 * -errno or an RV_META_ERR_* value.  The buffer is 4 KiB aligned, so fd may
 * be O_DIRECT. */
int rv_meta_write_fd(int fd, const struct rv_meta *m);

/* Create a NEW sparse image at path (O_CREAT|O_EXCL, mode 0600 & ~umask):
 * ftruncate to the layout's file size, write a fresh superblock (new v4
 * UUID, UpToDate, secondary, node 0, clean, random non-zero current_gen,
 * bitmap_gen 0, ctime = now, open_count 0), fsync the file and its
 * directory.  block_size and granularity 0 mean the defaults.  name must be
 * 1..63 printable ASCII characters.  Returns 0 and fills *out (may be NULL),
 * -EINVAL for bad parameters, -EEXIST if path exists (it is left untouched),
 * or another -errno; on failure after creating the file, the file is removed. */
int rv_meta_create_image(const char *path, uint64_t data_size, const char *name,
                         uint32_t block_size, uint32_t granularity,
                         struct rv_meta *out);

#endif
