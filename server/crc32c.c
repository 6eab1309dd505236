/* crc32c.c - CRC-32C, software and SSE4.2 (see include/repvol/crc32c.h). */
#include <pthread.h>
#include <string.h>

#include "repvol/crc32c.h"

#define CRC32C_POLY 0x82F63B78u     /* 0x1EDC6F41 bit-reversed */

/* Slicing-by-8 tables: crc_tab[k][n] is the CRC register after feeding byte
 * n followed by k zero bytes.  Global because they are a pure function of the
 * polynomial: computed once (pthread_once) on first use, read-only after. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_tab_once = PTHREAD_ONCE_INIT;

static void crc_tab_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int bit = 0; bit < 8; bit++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        crc_tab[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++) {
            uint32_t prev = crc_tab[k - 1][n];
            crc_tab[k][n] = (prev >> 8) ^ crc_tab[0][prev & 0xff];
        }
}

uint32_t rv_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_tab_once, crc_tab_init);
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    while (len >= 8) {
        /* Bytes are combined explicitly, so this is endian-independent and
         * needs no alignment. */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                           (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
            crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
            crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^
            crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* Compiled for SSE4.2 but only called after the run-time check below. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);           /* little-endian load, any alignment */
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t rv_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, buf, len);
#endif
    return rv_crc32c_sw(crc, buf, len);
}
