/* wire.h - fixed-width big-endian load/store helpers.
 *
 * Every on-disk and on-wire structure in repvol is encoded field by field with
 * these helpers into a byte buffer, never by casting a packed struct onto the
 * bytes: that keeps alignment and endianness explicit and lets the decoders
 * reject truncated input before reading past it. */
#ifndef REPVOL_WIRE_H
#define REPVOL_WIRE_H

#include <stdint.h>
#include <string.h>

static inline void rv_put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void rv_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void rv_put_be64(uint8_t *p, uint64_t v)
{
    rv_put_be32(p, (uint32_t)(v >> 32));
    rv_put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t rv_get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rv_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t rv_get_be64(const uint8_t *p)
{
    return (uint64_t)rv_get_be32(p) << 32 | rv_get_be32(p + 4);
}

#endif
