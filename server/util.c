/* util.c - size parsing, UUIDs, clocks (see include/repvol/util.h). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <limits.h>
#include <openssl/rand.h>

#include "repvol/util.h"

int rv_parse_size(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    case 'P': shift = 50; end++; break;
    default: return -EINVAL;
    }
    if (shift) {
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
    }
    if (*end != '\0')
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

const char *rv_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < RV_ARRAY_SIZE(units)) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

void rv_uuid_generate(uint8_t uuid[RV_UUID_LEN])
{
    if (RAND_bytes(uuid, RV_UUID_LEN) != 1) {
        /* openssl's generator failed to seed: fall back to the kernel's. */
        FILE *f = fopen("/dev/urandom", "rb");
        if (!f || fread(uuid, 1, RV_UUID_LEN, f) != RV_UUID_LEN)
            abort();
        fclose(f);
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;  /* version 4 */
    uuid[8] = (uuid[8] & 0x3f) | 0x80;  /* RFC 4122 variant */
}

void rv_uuid_format(const uint8_t u[RV_UUID_LEN], char out[RV_UUID_STR_LEN])
{
    snprintf(out, RV_UUID_STR_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
             u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int rv_uuid_parse(const char *s, uint8_t uuid[RV_UUID_LEN])
{
    if (!s || strlen(s) != RV_UUID_STR_LEN - 1)
        return -EINVAL;
    unsigned n = 0;
    for (size_t i = 0; s[i]; ) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -EINVAL;
            i++;
            continue;
        }
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        uuid[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return n == RV_UUID_LEN ? 0 : -EINVAL;
}

uint64_t rv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int rv_fsync_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int r = 0;
    if (fsync(dfd) < 0 && errno != EINVAL)   /* EINVAL: fs can't sync dirs */
        r = -errno;
    close(dfd);
    return r;
}

const char *rv_errno_desc(int err)
{
    return err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
}
