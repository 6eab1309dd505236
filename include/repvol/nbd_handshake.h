/* nbd_handshake.h - the NBD fixed-newstyle handshake as a pure state machine.
 *
 * The driver owns the socket; this machine owns the protocol.  Usage:
 *
 *   nbd_hs_init(&hs, &exp);               // queues the 18-byte greeting
 *   loop:
 *     out = nbd_hs_output(&hs, &n);       // send all pending output first
 *     ... send; nbd_hs_output_consumed(&hs, sent);
 *     st = nbd_hs_feed(&hs, bytes, len, &used);
 *
 *   NBD_HS_CONTINUE  send pending output, then feed more input.  If used < len
 *                    the output buffer is full (the client pipelined options
 *                    without reading replies): drain it, then feed the rest.
 *                    Feeding len 0 is allowed.
 *   NBD_HS_DONE      send pending output, then enter the transmission phase
 *                    with hs.result.  Bytes after `used` belong to the
 *                    transmission phase (request headers): keep them.
 *   NBD_HS_CLOSE     send pending output (e.g. the ACK to NBD_OPT_ABORT),
 *                    then close.  hs.close_reason says why, for the log.
 *   NBD_HS_STARTTLS  send pending output (the ACK to NBD_OPT_STARTTLS), then
 *                    run the TLS handshake and call nbd_hs_tls_started();
 *                    the options continue inside TLS.  Bytes after `used`
 *                    arrived in plaintext after STARTTLS: a client must not
 *                    send any (and they could be an attacker's injection), so
 *                    the driver closes if there are any.
 *
 * Once DONE or CLOSE, further calls return the same status and consume
 * nothing.  The machine never allocates; struct nbd_hs is about 33 KiB, so
 * allocate it per connection rather than on a small stack.
 *
 * The export is a single volume: "" and exp->name both select it. */
#ifndef REPVOL_NBD_HANDSHAKE_H
#define REPVOL_NBD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repvol/nbd_proto.h"

/* Option data longer than this is answered NBD_REP_ERR_TOO_BIG and skipped
 * without being buffered (names are at most 4096 bytes; this leaves room for
 * a handful of meta-context queries). */
#define NBD_HS_MAX_OPT_LEN     16384u
/* Options per connection before we hang up: a client that never ends the
 * handshake is a denial of service (spec permits a hard disconnect). */
#define NBD_HS_MAX_OPTIONS     1000u
/* Upper bound of the replies to one option: GO with EXPORT, NAME (4096),
 * DESCRIPTION (4096), BLOCK_SIZE and ACK; LIST with name + description. */
#define NBD_HS_REPLY_MAX       8448u
#define NBD_HS_OUT_SIZE        (2 * NBD_HS_REPLY_MAX)
/* The id given to base:allocation by NBD_OPT_SET_META_CONTEXT. */
#define NBD_HS_BASE_ALLOCATION_ID 1u

struct nbd_hs_export {
    const char *name;           /* NULL means "" */
    const char *description;    /* NULL or "": none */
    uint64_t size;
    uint16_t tflags;            /* NBD_FLAG_* the caller wants to advertise.  HAS_FLAGS
                                 * is always added; SEND_DF is dropped unless structured
                                 * replies get negotiated; SEND_FAST_ZERO is dropped
                                 * without SEND_WRITE_ZEROES (spec MUSTs). */
    /* NBD_INFO_BLOCK_SIZE values; min_block 0 means "send no block size info".
     * Spec: min a power of 2 <= 64 KiB; pref a power of 2 >= max(min, 512);
     * max >= pref.  max_block must equal nbd_limits.max_payload. */
    uint32_t min_block, pref_block, max_block;
    /* Non-NULL: the export exists but may not be used now (e.g. the volume
     * is a replication secondary).  GO/INFO are answered
     * NBD_REP_ERR_UNKNOWN with this text; EXPORT_NAME closes. */
    const char *unavailable;
    /* NBD_OPT_STARTTLS policy (the spec's NOTLS / FORCEDTLS modes, and
     * optional TLS in between, like nbdkit --tls=off|on|require). */
    enum nbd_hs_tls { NBD_HS_TLS_OFF, NBD_HS_TLS_ON, NBD_HS_TLS_REQUIRE } tls;
};

enum nbd_hs_status {
    NBD_HS_CONTINUE,
    NBD_HS_DONE,
    NBD_HS_CLOSE,
    NBD_HS_STARTTLS,
};

/* What was negotiated; complete when nbd_hs_feed returns NBD_HS_DONE. */
struct nbd_hs_result {
    uint16_t tflags;            /* transmission flags exactly as sent to the client:
                                 * copy into nbd_limits.tflags */
    bool structured;            /* NBD_OPT_STRUCTURED_REPLY acknowledged */
    bool base_allocation;       /* base:allocation selected: BLOCK_STATUS allowed */
    uint32_t base_allocation_id;/* context id to put in BLOCK_STATUS chunks */
    bool no_zeroes;             /* client set NBD_FLAG_C_NO_ZEROES */
    bool go;                    /* ended by NBD_OPT_GO (false: NBD_OPT_EXPORT_NAME) */
    bool block_size_requested;  /* GO asked for NBD_INFO_BLOCK_SIZE: the client
                                 * promised to honour the advertised sizes */
};

enum nbd_hs_state {
    NBD_HS_ST_CLIENT_FLAGS,     /* waiting for the 32-bit client flags */
    NBD_HS_ST_OPT_HEADER,       /* waiting for IHAVEOPT, option, length */
    NBD_HS_ST_OPT_DATA,         /* buffering opt_len bytes of option data */
    NBD_HS_ST_OPT_DISCARD,      /* skipping the data of an oversized option */
    NBD_HS_ST_STARTTLS,         /* STARTTLS acknowledged: waiting for the driver */
    NBD_HS_ST_DONE,
    NBD_HS_ST_CLOSED,
};

struct nbd_hs {
    /* Readable by the caller. */
    struct nbd_hs_result result;
    const char *close_reason;   /* static string, set with NBD_HS_CLOSE */
    unsigned options;           /* option requests seen */
    bool tls_active;            /* the options now run inside TLS */

    /* Private to nbd_handshake.c. */
    const struct nbd_hs_export *exp;    /* borrowed: must outlive the handshake */
    enum nbd_hs_state state;
    bool shutting_down;
    uint32_t opt, opt_len;              /* the option being received */
    uint32_t discard_left;              /* OPT_DISCARD: bytes still to skip */
    size_t in_len;                      /* bytes of the current unit in in[] */
    size_t out_off, out_len;            /* pending output is out[out_off, out_off+out_len) */
    uint8_t in[NBD_HS_MAX_OPT_LEN];
    uint8_t out[NBD_HS_OUT_SIZE];
};

/* Reset hs for a new connection to exp and queue the server greeting
 * (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES). */
void nbd_hs_init(struct nbd_hs *hs, const struct nbd_hs_export *exp);

/* Feed bytes received from the client (in may be NULL when len is 0).
 * *consumed is set to how many bytes of in were used. */
enum nbd_hs_status nbd_hs_feed(struct nbd_hs *hs, const uint8_t *in, size_t len,
                               size_t *consumed);

/* After NBD_HS_STARTTLS: the TLS session is up (its handshake may still be
 * running underneath); options continue. */
void nbd_hs_tls_started(struct nbd_hs *hs);

/* Pending output (NULL and *len 0 when there is none). */
const uint8_t *nbd_hs_output(const struct nbd_hs *hs, size_t *len);
/* n bytes of the pending output were sent. */
void nbd_hs_output_consumed(struct nbd_hs *hs, size_t n);

/* After NBD_HS_DONE: the limits for nbd_check_request, from hs->result and
 * the export (max_payload = exp->max_block if block sizes were advertised,
 * else 0, i.e. the spec default of 32 MiB). */
void nbd_hs_limits(const struct nbd_hs *hs, struct nbd_limits *lim);

/* The server is shutting down: from now on every option but NBD_OPT_ABORT is
 * answered NBD_REP_ERR_SHUTDOWN (spec SHOULD), and NBD_OPT_EXPORT_NAME, which
 * cannot carry an error, closes.  The driver may also simply close. */
void nbd_hs_set_shutdown(struct nbd_hs *hs);

#endif
