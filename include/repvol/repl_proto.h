/* repl_proto.h - the replication link's wire format: frame header, hello
 * body, refusals, and the pure codecs for them.
 *
 * One TCP connection per peer carries frames: a fixed 40-byte header and an
 * optional payload of payload_len bytes.  Nothing here does I/O: the link
 * driver reads bytes and hands them to these functions, and fuzzers feed
 * arbitrary bytes to the same decoders.  Integers are unsigned big-endian,
 * encoded field by field with the wire.h helpers.
 *
 * FRAME HEADER (RV_REPL_HDR_SIZE = 40 bytes)
 *
 *   off  size  field        meaning
 *   ---  ----  -----------  -----------------------------------------------
 *     0     4  magic        0x52565250 ("RVRP")
 *     4     2  version      RV_REPL_VERSION = 1 (header format; the protocol
 *                           version is negotiated in the hello body)
 *     6     2  type         RV_REPL_T_*
 *     8     4  flags        RV_REPL_F_*, allowed set depends on the type
 *    12     4  status       ACK: 0; NACK: a positive Linux errno (1..4095);
 *                           REFUSE: an RV_REPL_REFUSE_* reason (any value
 *                           accepted); other version-1 types: 0; reserved
 *                           types: not checked
 *    16     8  seq          requests: the sender's sequence number;
 *                           ACK/NACK/PONG: the sequence being answered
 *    24     8  offset       byte offset in the volume (range types)
 *    32     4  length       bytes of the volume range (range types)
 *    36     4  payload_len  bytes following the header
 *
 * TYPES and what the header decoder accepts for each ("range" = offset and
 * length describe a volume range, length >= 1, offset + length does not wrap;
 * otherwise offset and length must be 0):
 *
 *   type               range  payload_len                      flags
 *   -----------------  -----  -------------------------------  --------------
 *    1 HELLO           -      160..4096 (hello body)           ignored
 *    2 REFUSE          -      0..1024 (UTF-8 message)          ignored
 *   10 WRITE           yes    == length, <= 32 MiB             FUA ACK_ON_RECEIVE
 *   11 FLUSH           no     0                                ACK_ON_RECEIVE
 *   12 TRIM            yes    0                                FUA ACK_ON_RECEIVE
 *   13 ZERO            yes    0                                FUA NO_HOLE ACK_ON_RECEIVE
 *   20 ACK             no     0                                RECEIVED
 *   21 NACK            no     0                                -
 *   30 PING            no     0                                -
 *   31 PONG            no     0                                -
 *   32 GOODBYE         no     0                                -
 *      (the sender stops cleanly: nothing but ACKs for requests it already
 *      had follows.  From a secondary: its copy is durably marked Outdated
 *      first, so the primary need not fence it.)
 *   reserved for resync (decoded as valid; semantics come with resync):
 *   40 RESYNC_WRITE    yes    == length, <= 32 MiB             FUA
 *   41 RESYNC_REQ      yes    0 (asks the peer to send a range) -
 *   42 BITMAP          any    0..1 MiB                         -
 *   43 DIGEST_REQ      any    0                                -
 *   44 DIGEST          any    0..1 MiB                         -
 *   45 SYNC_DONE       any    0                                -
 *   46 STATE           any    160..4096 (hello-like body)      -
 *
 * ("any": offset/length not checked, their meaning is not defined yet.)
 * A flag bit not listed for the type is RV_REPL_ERR_FLAGS; "-" = none.
 * In mode B the primary sets ACK_ON_RECEIVE on every request (FLUSH too):
 * the peer sends an ACK with RECEIVED as soon as it has the whole frame.
 * HELLO and REFUSE are exchanged before the protocol version is agreed, so
 * their header is checked as loosely as possible (flags, offset, length
 * ignored): a newer peer must always be able to get a hello or a refusal
 * through to an older one.
 *
 * HELLO BODY (RV_REPL_HELLO_SIZE = 160 bytes; a longer body from a newer
 * peer is accepted and the extra bytes ignored, a shorter one is rejected)
 *
 *   off  size  field          meaning
 *   ---  ----  -------------  ---------------------------------------------
 *     0     4  proto_min      lowest protocol version spoken (>= 1)
 *     4     4  proto_max      highest protocol version spoken (>= proto_min)
 *     8    16  uuid           volume UUID (not nil)
 *    24     8  data_size      bytes of data; > 0, multiple of 4096
 *    32     4  block_size     512 or 4096
 *    36     4  node_id        0..RV_META_MAX_NODES-1
 *    40     4  role           enum rv_role (1 secondary, 2 primary)
 *    44     4  disk_state     enum rv_disk_state (1..3)
 *    48     8  current_gen    data generation identifiers, as in the
 *    56     8  bitmap_gen       superblock (meta_format.h)
 *    64     8  history_gen[0]
 *    72     8  history_gen[1]
 *    80     4  mode           replication mode: 1 = A, 2 = B, 3 = C
 *    84     4  flags          RV_REPL_HELLO_F_*; unknown bits are kept in
 *                             the decoded struct and otherwise ignored
 *    88     8  dirty_bytes    bytes marked in the sender's dirty bitmap
 *    96    64  name           0..63 printable ASCII characters, NUL padded
 *   160        (end; version 1 leaves no reserved bytes)
 *
 * FRAMING AFTER AN ERROR.  rv_repl_decode_hdr checks, in this order: magic,
 * version, type, payload and range bounds (RV_REPL_ERR_LENGTH), flags
 * (RV_REPL_ERR_FLAGS), other fields (RV_REPL_ERR_FIELD).  After
 * RV_REPL_ERR_FLAGS or RV_REPL_ERR_FIELD the payload_len is within the type's
 * bound, so a receiver could still skip the payload; after any of the others
 * the stream cannot be trusted and the link must be dropped (after a REFUSE
 * with RV_REPL_REFUSE_VERSION or RV_REPL_REFUSE_PROTOCOL).
 */
#ifndef REPVOL_REPL_PROTO_H
#define REPVOL_REPL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "repvol/meta_format.h"     /* enum rv_role, enum rv_disk_state */

#define RV_REPL_MAGIC           0x52565250u     /* "RVRP" */
#define RV_REPL_VERSION         1u              /* header format version */
#define RV_REPL_PROTO_VERSION   1u              /* protocol version this code speaks */
#define RV_REPL_HDR_SIZE        40
#define RV_REPL_HELLO_SIZE      160
#define RV_REPL_HELLO_MAX       4096u           /* largest hello/STATE body accepted */
#define RV_REPL_MAX_PAYLOAD     (UINT32_C(32) << 20)  /* WRITE / RESYNC_WRITE */
#define RV_REPL_MAX_BULK        (UINT32_C(1) << 20)   /* BITMAP / DIGEST */
#define RV_REPL_REFUSE_MSG_MAX  1024u           /* REFUSE message bytes */
#define RV_REPL_MAX_ERRNO       4095u           /* NACK status bound */
#define RV_REPL_NAME_LEN        64              /* hello name field */
#define RV_REPL_NAME_MAX        63
#define RV_REPL_HISTORY         2

/* Frame types. */
enum rv_repl_type {
    RV_REPL_T_HELLO        = 1,
    RV_REPL_T_REFUSE       = 2,
    RV_REPL_T_WRITE        = 10,
    RV_REPL_T_FLUSH        = 11,
    RV_REPL_T_TRIM         = 12,
    RV_REPL_T_ZERO         = 13,
    RV_REPL_T_ACK          = 20,
    RV_REPL_T_NACK         = 21,
    RV_REPL_T_PING         = 30,
    RV_REPL_T_PONG         = 31,
    RV_REPL_T_GOODBYE      = 32,
    /* reserved for resync */
    RV_REPL_T_RESYNC_WRITE = 40,
    RV_REPL_T_RESYNC_REQ   = 41,
    RV_REPL_T_BITMAP       = 42,
    RV_REPL_T_DIGEST_REQ   = 43,
    RV_REPL_T_DIGEST       = 44,
    RV_REPL_T_SYNC_DONE    = 45,
    RV_REPL_T_STATE        = 46,
};

/* Header flags. */
#define RV_REPL_F_FUA             0x1u  /* durable on the peer before it acks */
#define RV_REPL_F_NO_HOLE         0x2u  /* ZERO: allocate, don't punch a hole */
#define RV_REPL_F_ACK_ON_RECEIVE  0x4u  /* mode B: ack (RECEIVED) on receipt */
#define RV_REPL_F_RECEIVED        0x8u  /* ACK: acknowledges receipt only */

/* Hello flags. */
#define RV_REPL_HELLO_F_DISCARD_MY_DATA 0x1u
#define RV_REPL_HELLO_F_KNOWN           (RV_REPL_HELLO_F_DISCARD_MY_DATA)

/* Replication modes (hello.mode). */
enum rv_repl_mode {
    RV_REPL_MODE_A = 1,     /* async: complete when sent */
    RV_REPL_MODE_B = 2,     /* complete when the peer has received it */
    RV_REPL_MODE_C = 3,     /* complete when the peer has written it */
};

/* Refusal reasons (REFUSE status; rv_repl_check_compat's result). */
enum rv_repl_refuse {
    RV_REPL_REFUSE_VERSION      = 1,    /* no common protocol version */
    RV_REPL_REFUSE_UUID         = 2,    /* different volumes */
    RV_REPL_REFUSE_SIZE         = 3,    /* data sizes differ */
    RV_REPL_REFUSE_BOTH_PRIMARY = 4,
    RV_REPL_REFUSE_NO_PRIMARY   = 5,    /* defined; check_compat allows two secondaries */
    RV_REPL_REFUSE_GENERATION   = 6,    /* data generations split (resync) */
    RV_REPL_REFUSE_STATE        = 7,
    RV_REPL_REFUSE_BUSY         = 8,    /* already connected to a peer */
    RV_REPL_REFUSE_PROTOCOL     = 9,    /* malformed frame */
    RV_REPL_REFUSE_NODE_ID      = 10,   /* same node id on both ends */
    RV_REPL_REFUSE_MODE         = 11,   /* different replication modes */
};

/* Decoder errors.  All are <= -2000, so they never collide with -errno (nor
 * with the RV_META_ERR_* values around -1000). */
enum rv_repl_err {
    RV_REPL_ERR_MAGIC   = -2000,    /* not a repvol replication frame */
    RV_REPL_ERR_VERSION = -2001,    /* header version != RV_REPL_VERSION */
    RV_REPL_ERR_TYPE    = -2002,    /* unknown frame type */
    RV_REPL_ERR_LENGTH  = -2003,    /* payload_len / length / range out of
                                       bounds for the type; truncated body */
    RV_REPL_ERR_FLAGS   = -2004,    /* flag bit the type does not take */
    RV_REPL_ERR_FIELD   = -2005,    /* another field out of range: status,
                                       unused offset, hello field values */
};

/* A decoded frame header, host-endian. */
struct rv_repl_hdr {
    uint16_t version, type;
    uint32_t flags, status;
    uint64_t seq, offset;
    uint32_t length, payload_len;
};

/* A decoded hello (or STATE) body, host-endian. */
struct rv_repl_hello {
    uint32_t proto_min, proto_max;
    uint8_t uuid[16];
    uint64_t data_size;
    uint32_t block_size, node_id, role, disk_state;
    uint64_t current_gen, bitmap_gen, history_gen[2];
    uint32_t mode, flags;
    uint64_t dirty_bytes;
    char name[64];              /* NUL-terminated */
};

/* Byte offsets of the hello body fields (the table above). */
enum rv_repl_hello_offset {
    RV_REPL_HOFF_PROTO_MIN   = 0,
    RV_REPL_HOFF_PROTO_MAX   = 4,
    RV_REPL_HOFF_UUID        = 8,
    RV_REPL_HOFF_DATA_SIZE   = 24,
    RV_REPL_HOFF_BLOCK_SIZE  = 32,
    RV_REPL_HOFF_NODE_ID     = 36,
    RV_REPL_HOFF_ROLE        = 40,
    RV_REPL_HOFF_DISK_STATE  = 44,
    RV_REPL_HOFF_CURRENT_GEN = 48,
    RV_REPL_HOFF_BITMAP_GEN  = 56,
    RV_REPL_HOFF_HISTORY_GEN = 64,  /* RV_REPL_HISTORY x u64 */
    RV_REPL_HOFF_MODE        = 80,
    RV_REPL_HOFF_FLAGS       = 84,
    RV_REPL_HOFF_DIRTY_BYTES = 88,
    RV_REPL_HOFF_NAME        = 96,
    RV_REPL_HOFF_END         = 160, /* == RV_REPL_HELLO_SIZE */
};

/* Room for the messages rv_repl_check_compat and the *_ex decoders write. */
#define RV_REPL_MSG_LEN 256

/* ------------------------------------------------------------ header */

/* Encode h into buf: magic, RV_REPL_VERSION (h->version is ignored), then
 * h's other fields as they are - nothing is validated, so tests can build
 * bad frames.  Returns RV_REPL_HDR_SIZE. */
size_t rv_repl_encode_hdr(uint8_t buf[RV_REPL_HDR_SIZE], const struct rv_repl_hdr *h);

/* Decode and validate a header (checks and order: see "FRAMING" above).
 * Returns RV_REPL_HDR_SIZE, 0 if len < RV_REPL_HDR_SIZE (need more bytes),
 * or a negative RV_REPL_ERR_*.  *h is zeroed first; from RV_REPL_ERR_VERSION
 * on it holds every decoded field (h->version is the peer's version, to
 * log). */
int rv_repl_decode_hdr(const uint8_t *buf, size_t len, struct rv_repl_hdr *h);

/* Largest payload_len the header decoder accepts for type: 4096 for
 * HELLO/STATE, 1024 for REFUSE, 32 MiB for WRITE/RESYNC_WRITE, 1 MiB for
 * BITMAP/DIGEST, 0 for the others and for unknown types. */
uint32_t rv_repl_max_payload(uint16_t type);

/* ------------------------------------------------------------ hello */

/* Check every field of h.  Returns 0 or RV_REPL_ERR_FIELD; why (may be NULL)
 * gets the first bad field, e.g. "mode 7 is not 1 (A), 2 (B) or 3 (C)". */
int rv_repl_hello_check(const struct rv_repl_hello *h, char *why, size_t whylen);

/* Encode a 160-byte hello body.  Returns RV_REPL_HELLO_SIZE, or -EINVAL if
 * cap < RV_REPL_HELLO_SIZE or rv_repl_hello_check rejects h. */
int rv_repl_encode_hello(uint8_t *buf, size_t cap, const struct rv_repl_hello *h);

/* Decode a hello (or STATE) body of len bytes; bytes past 160 are ignored.
 * Returns 0, RV_REPL_ERR_LENGTH if len < 160, or RV_REPL_ERR_FIELD (bad
 * role / disk_state / mode, proto_min 0 or > proto_max, name not printable
 * or not NUL-terminated and padded, nil uuid, bad data_size / block_size /
 * node_id).  *h is zeroed first; on RV_REPL_ERR_FIELD it holds every decoded
 * field, so a caller can still compare protocol ranges and refuse with
 * RV_REPL_REFUSE_VERSION when a newer peer sends values this code does not
 * know.  The _ex form writes a description of the problem to why. */
int rv_repl_decode_hello(const uint8_t *buf, size_t len, struct rv_repl_hello *h);
int rv_repl_decode_hello_ex(const uint8_t *buf, size_t len, struct rv_repl_hello *h,
                            char *why, size_t whylen);

/* Highest protocol version both hellos speak, or 0 if the ranges don't
 * overlap. */
uint32_t rv_repl_common_version(const struct rv_repl_hello *local,
                                const struct rv_repl_hello *remote);

/* Compatibility of two nodes' hellos, ignoring data generations (that
 * decision comes with resync).  Returns 0 or the first refusal reason, in
 * this order: protocol ranges overlap (VERSION), uuid equal (UUID),
 * data_size equal (SIZE), node ids differ (NODE_ID), not both primary
 * (BOTH_PRIMARY), modes equal (MODE).  Two secondaries are compatible.
 * msg (may be NULL) gets one line naming both values, e.g. "data size
 * differs: local 1073741824 bytes, peer 2147483648 bytes", or on success
 * "compatible: protocol version 1". */
uint32_t rv_repl_check_compat(const struct rv_repl_hello *local,
                              const struct rv_repl_hello *remote,
                              char *msg, size_t msglen);

/* ------------------------------------------------------------ refuse */

/* Encode a REFUSE frame: header (status = reason, seq 0) and msg (may be
 * NULL) cut to RV_REPL_REFUSE_MSG_MAX bytes and to what fits in cap, never
 * inside a UTF-8 sequence.  Returns the bytes written, 0 if cap <
 * RV_REPL_HDR_SIZE. */
size_t rv_repl_encode_refuse(uint8_t *buf, size_t cap, uint32_t reason, const char *msg);

/* Turn a REFUSE payload (untrusted) into a printable, NUL-terminated string
 * for logs: control characters, DEL and invalid UTF-8 bytes become '?', the
 * rest is copied; cut to msglen - 1 bytes on a character boundary.  Returns
 * 0, or RV_REPL_ERR_LENGTH if len > RV_REPL_REFUSE_MSG_MAX (msg is then
 * still filled from the first RV_REPL_REFUSE_MSG_MAX bytes). */
int rv_repl_decode_refuse_msg(const uint8_t *payload, size_t len, char *msg, size_t msglen);

/* ------------------------------------------------------------ names */

/* "HELLO", "WRITE", ... ; "unknown type" otherwise. */
const char *rv_repl_type_name(uint16_t type);
/* "VERSION", "UUID", ... ; "OK" for 0, "unknown reason" otherwise. */
const char *rv_repl_refuse_name(uint32_t reason);
/* A message for 0, an RV_REPL_ERR_* or a -errno value; never NULL. */
const char *rv_repl_strerror(int err);
/* "A", "B", "C"; "unknown" otherwise. */
const char *rv_repl_mode_name(uint32_t mode);
/* "A"/"B"/"C", case-insensitive.  Returns 0 or -EINVAL (*mode untouched). */
int rv_repl_mode_parse(const char *s, uint32_t *mode);

#endif
