/* fuzz-util.h - helpers shared by the libFuzzer harnesses in tests/fuzz.
 *
 * Header-only so each harness is one .c file linked against the real core
 * sources (run-fuzzers.sh builds them).  Nothing here knows any protocol. */
#ifndef REPVOL_FUZZ_UTIL_H
#define REPVOL_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant the parser promises.  abort() is what libFuzzer reports as a
 * crash ("deadly signal"), with the input saved as an artifact. */
#define FUZZ_CHECK(cond)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__,        \
                    __LINE__, #cond);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Same, with a printf-style explanation (values that help triage). */
#define FUZZ_CHECKF(cond, ...)                                                  \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: invariant violated: %s: ", __FILE__,        \
                    __LINE__, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* A cursor over the fuzz input: take() hands out the next bytes, and reads
 * past the end yield zeros (so a short input is still a valid input). */
struct fuzz_in {
    const uint8_t *p;
    size_t len, off;
};

static inline void fuzz_in_init(struct fuzz_in *in, const uint8_t *p, size_t len)
{
    in->p = p;
    in->len = len;
    in->off = 0;
}

static inline size_t fuzz_in_left(const struct fuzz_in *in) { return in->len - in->off; }

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    return in->off < in->len ? in->p[in->off++] : 0;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t v = fuzz_u8(in);
    return (uint16_t)(v << 8 | fuzz_u8(in));
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
    uint32_t v = fuzz_u16(in);
    return v << 16 | fuzz_u16(in);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
    uint64_t v = fuzz_u32(in);
    return v << 32 | fuzz_u32(in);
}

/* Deterministic PRNG (xorshift64*), seeded from input bytes, for decisions
 * that should not eat into the protocol bytes (chunk sizes, drain sizes).
 * Its multiplications wrap on purpose: exempt from
 * FUZZ_EXTRA_CFLAGS=-fsanitize=unsigned-integer-overflow. */
#if defined(__clang__)
#define FUZZ_WRAPS __attribute__((no_sanitize("unsigned-integer-overflow")))
#else
#define FUZZ_WRAPS
#endif

struct fuzz_rng {
    uint64_t s;
};

FUZZ_WRAPS static inline void fuzz_rng_seed(struct fuzz_rng *r, uint64_t seed)
{
    r->s = seed * UINT64_C(0x9e3779b97f4a7c15) + UINT64_C(0x2545f4914f6cdd1d);
    if (r->s == 0)
        r->s = 1;
}

FUZZ_WRAPS static inline uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

/* Uniform-enough value in [0, n) (n > 0). */
static inline uint64_t fuzz_rng_below(struct fuzz_rng *r, uint64_t n)
{
    return fuzz_rng_next(r) % n;
}

/* A message buffer a parser writes into must be NUL-terminated within its
 * size.  Check that, and that nothing past the size was written (the buffer
 * is allocated exactly whylen bytes by the caller, so ASan catches an
 * overflow; this catches a missing terminator). */
static inline void fuzz_check_cstr(const char *s, size_t cap)
{
    FUZZ_CHECK(cap > 0);
    FUZZ_CHECKF(memchr(s, '\0', cap) != NULL, "string not NUL-terminated in %zu bytes", cap);
}

/* A heap copy of exactly n bytes, so ASan flags any read past the end (the
 * fuzz input itself already is such a buffer; copies we modify need it too). */
static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

#endif
