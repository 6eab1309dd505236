/* verify.h - online verify: compare the two copies while the volume is in use.
 *
 * The primary walks the volume in chunks.  Each chunk is read locally as an
 * ordered request (like a resync read: no write to the range is in flight
 * on either node while it is looked at), hashed per granule (SHA-256, via
 * openssl), and a DIGEST_REQ for the same range goes to the peer on the same
 * stream; the peer reads the range - ordered behind every write that
 * arrived before the request - and answers with its digests.  Differing
 * granules are reported as byte ranges and, on request, marked dirty so a
 * resync moves exactly those (the "checksum-based resync"). */
#ifndef REPVOL_VERIFY_H
#define REPVOL_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include "repvol/resync.h"
#include "repvol/strbuf.h"

#define RV_VERIFY_CHUNK     (1u << 20)
#define RV_VERIFY_INFLIGHT  4
#define RV_VERIFY_DIGEST    32          /* SHA-256 */
#define RV_VERIFY_MAX_RANGES 64         /* ranges kept for status */

struct rv_volume;
struct rv_verify;

int rv_verify_create(struct rv_verify **out, struct rv_volume *v, const struct rv_resync_link *link);
void rv_verify_destroy(struct rv_verify *vf);

/* Start a run; mark: mark differing granules dirty (and resync them when
 * the run ends, through `then`).  -EBUSY if one is running. */
int rv_verify_start(struct rv_verify *vf, bool mark, void (*then)(void *ctx, bool marked), void *ctx);
void rv_verify_abort(struct rv_verify *vf);
bool rv_verify_idle(const struct rv_verify *vf);
/* A DIGEST answer for seq (payload: digests); true if it was ours. */
bool rv_verify_answer(struct rv_verify *vf, uint64_t seq, int err, const uint8_t *payload, uint32_t len);

/* Hash each granule of buf (len bytes) into out (len/granule digests);
 * out may be buf itself (digest i lands where granule i's bytes were
 * already hashed).  Shared by both sides so they agree byte for byte. */
void rv_verify_digest(const uint8_t *buf, uint32_t len, uint32_t granule, uint8_t *out);

void rv_verify_status(const struct rv_verify *vf, bool json, struct rv_strbuf *out);
/* "verify STATE PERCENT MISMATCHED\n" then "range OFF LEN\n" per range */
void rv_verify_progress(const struct rv_verify *vf, struct rv_strbuf *out);

#endif
