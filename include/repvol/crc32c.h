/* crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * The checksum iSCSI, ext4, btrfs and SCTP use.  rv_crc32c() follows the
 * zlib crc32() convention: start with crc = 0, pass the previous result to
 * continue over more bytes, the result is the finished CRC (pre- and
 * post-inversion are done inside):
 *
 *     rv_crc32c(0, "123456789", 9) == 0xE3069283
 *     rv_crc32c(rv_crc32c(0, a, n), b, m) == CRC of a followed by b
 *
 * On x86-64 CPUs with SSE4.2 the CRC32 instruction is used (chosen at run
 * time); elsewhere a portable slicing-by-8 table implementation.  Thread-safe. */
#ifndef REPVOL_CRC32C_H
#define REPVOL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t rv_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable implementation, always available; rv_crc32c() returns the
 * same values.  Exposed so tests can compare the two paths. */
uint32_t rv_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
