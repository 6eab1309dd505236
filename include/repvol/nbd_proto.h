/* nbd_proto.h - NBD wire constants and pure transmission-phase codecs.
 *
 * Nothing here touches a socket or the event loop: the connection driver
 * (server/nbd_server.c) receives bytes and hands them to these functions, and
 * the fuzzers feed raw bytes straight into the same parsers.  No function
 * allocates or keeps state.
 *
 * Reference: the NBD protocol specification, doc/proto.md in
 * github.com/NetworkBlockDevice/nbd.  Where the spec leaves a choice to the
 * server, the choice is documented next to the function that makes it. */
#ifndef REPVOL_NBD_PROTO_H
#define REPVOL_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ magics */
#define NBD_MAGIC                    UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT                 UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC          UINT64_C(0x0003e889045565a9)
#define NBD_REQUEST_MAGIC            UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC       UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC   UINT32_C(0x668e33ef)
/* Only valid after NBD_OPT_EXTENDED_HEADERS, which we never accept. */
#define NBD_EXTENDED_REQUEST_MAGIC   UINT32_C(0x21e41c71)
#define NBD_EXTENDED_REPLY_MAGIC     UINT32_C(0x6e8a278c)

/* ----------------------------------------------------- handshake flags (16) */
#define NBD_FLAG_FIXED_NEWSTYLE      (1u << 0)
#define NBD_FLAG_NO_ZEROES           (1u << 1)

/* -------------------------------------------------------- client flags (32) */
#define NBD_FLAG_C_FIXED_NEWSTYLE    (1u << 0)
#define NBD_FLAG_C_NO_ZEROES         (1u << 1)

/* -------------------------------------------------- transmission flags (16) */
#define NBD_FLAG_HAS_FLAGS           (1u << 0)
#define NBD_FLAG_READ_ONLY           (1u << 1)
#define NBD_FLAG_SEND_FLUSH          (1u << 2)
#define NBD_FLAG_SEND_FUA            (1u << 3)
#define NBD_FLAG_ROTATIONAL          (1u << 4)
#define NBD_FLAG_SEND_TRIM           (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES   (1u << 6)
#define NBD_FLAG_SEND_DF             (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN      (1u << 8)
#define NBD_FLAG_SEND_RESIZE         (1u << 9)
#define NBD_FLAG_SEND_CACHE          (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO      (1u << 11)
#define NBD_FLAG_BLOCK_STATUS_PAYLOAD (1u << 12)

/* ------------------------------------------------------------------ options */
#define NBD_OPT_EXPORT_NAME          1u
#define NBD_OPT_ABORT                2u
#define NBD_OPT_LIST                 3u
#define NBD_OPT_PEEK_EXPORT          4u   /* withdrawn */
#define NBD_OPT_STARTTLS             5u
#define NBD_OPT_INFO                 6u
#define NBD_OPT_GO                   7u
#define NBD_OPT_STRUCTURED_REPLY     8u
#define NBD_OPT_LIST_META_CONTEXT    9u
#define NBD_OPT_SET_META_CONTEXT     10u
#define NBD_OPT_EXTENDED_HEADERS     11u

/* ------------------------------------------------------- option reply types */
#define NBD_REP_ACK                  1u
#define NBD_REP_SERVER               2u
#define NBD_REP_INFO                 3u
#define NBD_REP_META_CONTEXT         4u
#define NBD_REP_FLAG_ERROR           (1u << 31)
#define NBD_REP_ERR_UNSUP            (NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY           (NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID          (NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM         (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD         (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN          (NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN         (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD  (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG          (NBD_REP_FLAG_ERROR | 9u)
#define NBD_REP_ERR_EXT_HEADER_REQD  (NBD_REP_FLAG_ERROR | 10u)

/* ------------------------------------------------------ NBD_REP_INFO types */
#define NBD_INFO_EXPORT              0u
#define NBD_INFO_NAME                1u
#define NBD_INFO_DESCRIPTION         2u
#define NBD_INFO_BLOCK_SIZE          3u

/* ----------------------------------------------------------------- commands */
#define NBD_CMD_READ                 0u
#define NBD_CMD_WRITE                1u
#define NBD_CMD_DISC                 2u
#define NBD_CMD_FLUSH                3u
#define NBD_CMD_TRIM                 4u
#define NBD_CMD_CACHE                5u
#define NBD_CMD_WRITE_ZEROES         6u
#define NBD_CMD_BLOCK_STATUS         7u

/* ------------------------------------------------------------ command flags */
#define NBD_CMD_FLAG_FUA             (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE         (1u << 1)
#define NBD_CMD_FLAG_DF              (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE         (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO       (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN     (1u << 5)  /* extended headers only: always rejected */

/* ------------------------------------------------ structured reply flags/types */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0u
#define NBD_REPLY_TYPE_OFFSET_DATA   1u
#define NBD_REPLY_TYPE_OFFSET_HOLE   2u
#define NBD_REPLY_TYPE_BLOCK_STATUS  5u
#define NBD_REPLY_TYPE_FLAG_ERROR    (1u << 15)
#define NBD_REPLY_TYPE_ERROR         (NBD_REPLY_TYPE_FLAG_ERROR | 1u)
#define NBD_REPLY_TYPE_ERROR_OFFSET  (NBD_REPLY_TYPE_FLAG_ERROR | 2u)

/* base:allocation status flags */
#define NBD_STATE_HOLE               (1u << 0)
#define NBD_STATE_ZERO               (1u << 1)

/* ------------------------------------------------------------- error values */
#define NBD_EPERM                    1u
#define NBD_EIO                      5u
#define NBD_ENOMEM                   12u
#define NBD_EINVAL                   22u
#define NBD_ENOSPC                   28u
#define NBD_EOVERFLOW                75u
#define NBD_ENOTSUP                  95u
#define NBD_ESHUTDOWN                108u

/* ------------------------------------------------------------------- sizes */
#define NBD_REQUEST_SIZE             28u  /* request header (WRITE payload follows) */
#define NBD_SIMPLE_REPLY_SIZE        16u  /* simple reply header (READ data follows) */
#define NBD_CHUNK_HEADER_SIZE        20u  /* structured reply chunk header */
#define NBD_OFFSET_DATA_PREFIX_SIZE  28u  /* chunk header + 64-bit offset */
#define NBD_OFFSET_HOLE_SIZE         32u  /* chunk header + offset + hole size */
#define NBD_ERROR_CHUNK_MIN_SIZE     26u  /* chunk header + error + message length */
#define NBD_NONE_CHUNK_SIZE          20u
#define NBD_OPT_HEADER_SIZE          16u  /* IHAVEOPT, option, length */
#define NBD_OPT_REPLY_HEADER_SIZE    20u  /* magic, option, type, length */
#define NBD_MAX_STRING               4096u /* spec: names and messages never longer */
/* Payloads up to this size SHOULD NOT be treated as denial of service, even
 * above the advertised maximum (spec, "Size constraints"). */
#define NBD_DOS_PAYLOAD_FLOOR        (UINT32_C(1) << 25)
/* Maximum payload assumed when nbd_limits.max_payload is 0 (spec default). */
#define NBD_DEFAULT_MAX_PAYLOAD      (UINT32_C(1) << 25)

/* A transmission-phase request header, decoded. */
struct nbd_request {
    uint16_t flags;             /* NBD_CMD_FLAG_* */
    uint16_t type;              /* NBD_CMD_* */
    uint64_t cookie;            /* a.k.a. handle: opaque, echoed in the reply */
    uint64_t offset;
    uint32_t count;             /* the spec's "length" */
};

/* What was negotiated for this connection, for nbd_check_request. */
struct nbd_limits {
    uint64_t export_size;
    uint32_t max_payload;       /* largest READ/WRITE accepted; what NBD_INFO_BLOCK_SIZE
                                 * advertised as maximum payload.  0 = spec default 32 MiB */
    uint16_t tflags;            /* transmission flags sent to the client (nbd_hs_result.tflags) */
    bool structured;            /* NBD_OPT_STRUCTURED_REPLY negotiated */
    bool base_allocation;       /* base:allocation selected by NBD_OPT_SET_META_CONTEXT */
};

/* One NBD_REPLY_TYPE_BLOCK_STATUS descriptor. */
struct nbd_block_desc {
    uint32_t length;            /* nonzero */
    uint32_t status;            /* NBD_STATE_* for base:allocation */
};

/* A reply header as seen by a client: simple (error set, flags/type/length 0)
 * or structured chunk (error 0).  Used by tests and the test client. */
struct nbd_reply {
    uint32_t magic;             /* NBD_SIMPLE_REPLY_MAGIC or NBD_STRUCTURED_REPLY_MAGIC */
    uint32_t error;             /* simple replies */
    uint16_t flags, type;       /* structured chunks */
    uint64_t cookie;
    uint32_t length;            /* structured chunks: payload bytes that follow */
};

/* ------------------------------------------------------- request decoding */

/* Decode one request header from buf.  Returns NBD_REQUEST_SIZE (bytes
 * consumed) on success, 0 if len < NBD_REQUEST_SIZE (need more bytes), or
 * -EPROTO if the magic is wrong.  A wrong magic means the stream can no longer
 * be framed: the driver must hard-disconnect (no reply is possible). */
int nbd_decode_request(const uint8_t *buf, size_t len, struct nbd_request *req);

/* Validate a decoded request against what was negotiated.  Returns 0, or the
 * NBD error to reply with.  Checks, in this order:
 *
 *   unknown command                                        NBD_EINVAL
 *   unknown flag bit, or a flag the command does not take  NBD_EINVAL
 *     (NO_HOLE/FAST_ZERO: WRITE_ZEROES only; DF: READ only; REQ_ONE:
 *      BLOCK_STATUS only; FUA: any command)
 *   flag not negotiated (FUA without SEND_FUA, DF without SEND_DF or without
 *     structured replies, FAST_ZERO without SEND_FAST_ZERO)  NBD_EINVAL
 *   command not advertised (FLUSH, TRIM, WRITE_ZEROES, CACHE without their
 *     SEND_* flag; BLOCK_STATUS without structured replies and
 *     base:allocation)                                     NBD_EINVAL
 *   WRITE, TRIM, WRITE_ZEROES on a READ_ONLY export        NBD_EPERM
 *   FLUSH with nonzero offset or count (spec: MUST be 0)   NBD_EINVAL
 *   count 0 on READ/WRITE/TRIM/CACHE/WRITE_ZEROES/BLOCK_STATUS: the spec
 *     leaves the behaviour unspecified (server SHOULD NOT disconnect); we
 *     reply an error so the engine never sees empty I/O  NBD_EINVAL
 *   READ above max_payload: with structured replies the spec explicitly
 *     permits NBD_EOVERFLOW; with simple replies it only says the request
 *     "will fail" and says not to use EOVERFLOW outside the documented cases,
 *     so                                                   NBD_EOVERFLOW / NBD_EINVAL
 *   WRITE above max_payload (a client MUST NOT; EOVERFLOW is reserved for
 *     other cases)                                         NBD_EINVAL
 *     TRIM/WRITE_ZEROES/BLOCK_STATUS/CACHE carry no payload and are not
 *     limited by max_payload.
 *   offset+count beyond the export size, or overflowing: the spec says
 *     SHOULD NBD_ENOSPC for WRITE and WRITE_ZEROES, SHOULD NBD_EINVAL for the
 *     others                                               NBD_ENOSPC / NBD_EINVAL
 *
 * NBD_CMD_DISC always passes (there is no reply to it; the driver finishes
 * in-flight requests and closes).  Minimum-block alignment is not checked:
 * the backend accepts unaligned I/O. */
uint32_t nbd_check_request(const struct nbd_request *req, const struct nbd_limits *lim);

/* Bytes of payload that follow the request header on the wire: count for
 * NBD_CMD_WRITE, 0 for everything else. */
static inline uint32_t nbd_request_payload_len(const struct nbd_request *req)
{
    return req->type == NBD_CMD_WRITE ? req->count : 0;
}

/* What the driver does with the payload of a request it will not execute
 * (rejected by nbd_check_request, or failed before its payload was read). */
enum nbd_payload_action {
    NBD_PAYLOAD_NONE,           /* no payload: just send the error reply */
    NBD_PAYLOAD_DISCARD,        /* read and drop the payload bytes, then send the
                                 * error reply; the connection stays usable */
    NBD_PAYLOAD_DISCONNECT,     /* payload so large that draining it would be a
                                 * denial of service: hard-disconnect, no reply */
};
/* DISCONNECT only for a WRITE whose count exceeds both max_payload and
 * NBD_DOS_PAYLOAD_FLOOR (the spec forbids treating <= 32 MiB as DoS). */
enum nbd_payload_action nbd_rejected_payload_action(const struct nbd_request *req,
                                                    const struct nbd_limits *lim);

/* True if the reply to this request must be structured: with structured
 * replies negotiated, every READ reply (even an early NBD_EINVAL) and every
 * BLOCK_STATUS reply.  Other commands may get a simple reply (errors included,
 * though an NBD_REPLY_TYPE_ERROR chunk is preferred since it carries text). */
static inline bool nbd_reply_must_be_structured(const struct nbd_request *req,
                                                const struct nbd_limits *lim)
{
    return lim->structured &&
           (req->type == NBD_CMD_READ || req->type == NBD_CMD_BLOCK_STATUS);
}

/* errno (positive or negative) to NBD error: 0 -> 0; EPERM/EROFS/EACCES ->
 * EPERM; ENOSPC/EDQUOT/EFBIG -> ENOSPC; ENOTSUP/EOPNOTSUPP -> ENOTSUP; EIO,
 * ENOMEM, EINVAL, EOVERFLOW, ESHUTDOWN map to themselves; anything else ->
 * NBD_EIO. */
uint32_t nbd_errno_to_nbd(int err);

/* ---------------------------------------------------------- reply encoders
 * Each writes into buf and returns the number of bytes written; the
 * fixed-size ones need NBD_*_SIZE bytes.  Variable-size ones take the buffer
 * capacity and return 0 (writing nothing meaningful) if it is too small or
 * the arguments would make an invalid chunk. */

/* 16 bytes: magic, error, cookie.  For a successful READ the data follows. */
size_t nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t cookie);

/* 20 bytes: magic, flags, type, cookie, payload length. */
size_t nbd_encode_chunk_header(uint8_t *buf, uint16_t flags, uint16_t type,
                               uint64_t cookie, uint32_t length);

/* NBD_REPLY_TYPE_OFFSET_DATA prefix, 28 bytes: header (length 8 + data_len)
 * and the offset; the caller sends data_len bytes of data after it.  Returns
 * 0 if data_len is 0 or above UINT32_MAX - 8. */
size_t nbd_encode_offset_data(uint8_t *buf, uint16_t flags, uint64_t cookie,
                              uint64_t offset, uint32_t data_len);

/* NBD_REPLY_TYPE_OFFSET_HOLE, 32 bytes.  Returns 0 if hole_len is 0. */
size_t nbd_encode_offset_hole(uint8_t *buf, uint16_t flags, uint64_t cookie,
                              uint64_t offset, uint32_t hole_len);

/* NBD_REPLY_TYPE_ERROR: header, error, message length, message (may be NULL;
 * cut to NBD_MAX_STRING and to what fits in cap).  error 0 is not allowed on
 * the wire and is sent as NBD_EIO.  Returns 0 if cap < 26. */
size_t nbd_encode_error_chunk(uint8_t *buf, size_t cap, uint16_t flags, uint64_t cookie,
                              uint32_t error, const char *msg);

/* NBD_REPLY_TYPE_ERROR_OFFSET: like the error chunk, then the offset. */
size_t nbd_encode_error_offset_chunk(uint8_t *buf, size_t cap, uint16_t flags,
                                     uint64_t cookie, uint32_t error, const char *msg,
                                     uint64_t offset);

/* NBD_REPLY_TYPE_BLOCK_STATUS: header, context id, n descriptors.  Returns 0
 * if n is 0, any descriptor length is 0, or it does not fit in cap. */
static inline size_t nbd_block_status_size(size_t n) { return NBD_CHUNK_HEADER_SIZE + 4 + 8 * n; }
size_t nbd_encode_block_status(uint8_t *buf, size_t cap, uint16_t flags, uint64_t cookie,
                               uint32_t context_id, const struct nbd_block_desc *desc,
                               size_t n);

/* NBD_REPLY_TYPE_NONE with NBD_REPLY_FLAG_DONE (the spec requires DONE). */
size_t nbd_encode_none_chunk(uint8_t *buf, uint64_t cookie);

/* ------------------------------------------------ client side (tests, tools) */

/* 28 bytes. */
size_t nbd_encode_request(uint8_t *buf, const struct nbd_request *req);

/* Decode a simple reply (16 bytes) or a structured chunk header (20 bytes).
 * Returns bytes consumed, 0 if more bytes are needed, -EPROTO on an unknown
 * magic. */
int nbd_decode_reply(const uint8_t *buf, size_t len, struct nbd_reply *r);

/* 16 bytes: IHAVEOPT, option, data length (the data follows). */
size_t nbd_encode_option(uint8_t *buf, uint32_t option, uint32_t length);

/* Decode a 20-byte option reply header.  Returns 20, 0 if len < 20, -EPROTO
 * on a wrong magic. */
int nbd_decode_opt_reply(const uint8_t *buf, size_t len, uint32_t *option,
                         uint32_t *type, uint32_t *length);

/* --------------------------------------------------------- names for logs */
const char *nbd_cmd_name(uint16_t type);
const char *nbd_opt_name(uint32_t option);
const char *nbd_rep_name(uint32_t reply_type);
const char *nbd_info_name(uint16_t info);
const char *nbd_err_name(uint32_t error);
const char *nbd_reply_type_name(uint16_t type);

#endif
