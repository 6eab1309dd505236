/* util.h - small helpers shared by the daemon and the CLI. */
#ifndef REPVOL_UTIL_H
#define REPVOL_UTIL_H

#include <stdint.h>
#include <stddef.h>

#define RV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RV_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define RV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RV_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/* Parse "4G", "512M", "4096" (whole numbers only) with binary suffixes
 * K/M/G/T/P (optionally followed by "iB" or "B").  Returns 0 or -EINVAL
 * / -ERANGE. */
int rv_parse_size(const char *s, uint64_t *out);

/* Format a byte count as "4.0 GiB" into buf (at least 16 bytes). */
const char *rv_format_size(uint64_t bytes, char *buf, size_t len);

/* UUIDs are 16 raw bytes; text form is the usual 8-4-4-4-12 lower-case hex. */
#define RV_UUID_LEN 16
#define RV_UUID_STR_LEN 37   /* including the NUL */
void rv_uuid_generate(uint8_t uuid[RV_UUID_LEN]);   /* random (v4), via openssl RAND_bytes */
void rv_uuid_format(const uint8_t uuid[RV_UUID_LEN], char out[RV_UUID_STR_LEN]);
int rv_uuid_parse(const char *s, uint8_t uuid[RV_UUID_LEN]);

/* io_uring fills buffers from the kernel, which valgrind cannot see: tell it
 * that len bytes at p are now defined.  A no-op outside valgrind. */
#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#define RV_MARK_DEFINED(p, len) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (len)))
#else
#define RV_MARK_DEFINED(p, len) ((void)(p), (void)(len))
#endif

/* fsync the directory holding path, so a new directory entry is durable.
 * 0 or -errno (a file system that can't sync directories counts as 0). */
int rv_fsync_parent_dir(const char *path);

/* Description of a negative errno value, or NULL if it isn't one. */
const char *rv_errno_desc(int err);

/* Monotonic clock in nanoseconds. */
uint64_t rv_now_ns(void);

#endif
