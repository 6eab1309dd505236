/* nbd_proto.c - pure NBD transmission-phase codecs; see nbd_proto.h. */
#include <errno.h>
#include <string.h>

#include "repvol/nbd_proto.h"
#include "repvol/wire.h"

int nbd_decode_request(const uint8_t *buf, size_t len, struct nbd_request *req)
{
    if (len < NBD_REQUEST_SIZE)
        return 0;
    if (rv_get_be32(buf) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    req->flags = rv_get_be16(buf + 4);
    req->type = rv_get_be16(buf + 6);
    req->cookie = rv_get_be64(buf + 8);
    req->offset = rv_get_be64(buf + 16);
    req->count = rv_get_be32(buf + 24);
    return NBD_REQUEST_SIZE;
}

static bool is_write_cmd(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

uint32_t nbd_check_request(const struct nbd_request *req, const struct nbd_limits *lim)
{
    const uint16_t t = req->type, f = req->flags, tf = lim->tflags;
    const uint32_t max_payload = lim->max_payload ? lim->max_payload : NBD_DEFAULT_MAX_PAYLOAD;

    switch (t) {
    case NBD_CMD_DISC:
        return 0;               /* never replied to: nothing to report */
    case NBD_CMD_READ: case NBD_CMD_WRITE: case NBD_CMD_FLUSH: case NBD_CMD_TRIM:
    case NBD_CMD_CACHE: case NBD_CMD_WRITE_ZEROES: case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        return NBD_EINVAL;
    }

    /* Flags: known, applicable to this command, and negotiated.  The spec
     * says SHOULD EINVAL for each of these. */
    if (f & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF |
              NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO))
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_FUA) && !(tf & NBD_FLAG_SEND_FUA))
        return NBD_EINVAL;
    if ((f & (NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO)) && t != NBD_CMD_WRITE_ZEROES)
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_FAST_ZERO) && !(tf & NBD_FLAG_SEND_FAST_ZERO))
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_DF) &&
        (t != NBD_CMD_READ || !(tf & NBD_FLAG_SEND_DF) || !lim->structured))
        return NBD_EINVAL;
    if ((f & NBD_CMD_FLAG_REQ_ONE) && t != NBD_CMD_BLOCK_STATUS)
        return NBD_EINVAL;

    /* Commands that exist only when advertised. */
    switch (t) {
    case NBD_CMD_FLUSH:
        if (!(tf & NBD_FLAG_SEND_FLUSH))
            return NBD_EINVAL;
        break;
    case NBD_CMD_TRIM:
        if (!(tf & NBD_FLAG_SEND_TRIM))
            return NBD_EINVAL;
        break;
    case NBD_CMD_WRITE_ZEROES:
        if (!(tf & NBD_FLAG_SEND_WRITE_ZEROES))
            return NBD_EINVAL;
        break;
    case NBD_CMD_CACHE:
        if (!(tf & NBD_FLAG_SEND_CACHE))
            return NBD_EINVAL;
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!lim->structured || !lim->base_allocation)
            return NBD_EINVAL;
        break;
    default:
        break;
    }

    if (is_write_cmd(t) && (tf & NBD_FLAG_READ_ONLY))
        return NBD_EPERM;

    if (t == NBD_CMD_FLUSH)
        return (req->offset || req->count) ? NBD_EINVAL : 0;

    if (req->count == 0)
        return NBD_EINVAL;

    if (t == NBD_CMD_READ && req->count > max_payload)
        return lim->structured ? NBD_EOVERFLOW : NBD_EINVAL;
    if (t == NBD_CMD_WRITE && req->count > max_payload)
        return NBD_EINVAL;

    /* Written so that it cannot overflow: offset + count <= size. */
    if (req->offset > lim->export_size || req->count > lim->export_size - req->offset)
        return (t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC : NBD_EINVAL;

    return 0;
}

enum nbd_payload_action nbd_rejected_payload_action(const struct nbd_request *req,
                                                    const struct nbd_limits *lim)
{
    uint32_t len = nbd_request_payload_len(req);
    uint32_t max_payload = lim->max_payload ? lim->max_payload : NBD_DEFAULT_MAX_PAYLOAD;

    if (len == 0)
        return NBD_PAYLOAD_NONE;
    if (len > max_payload && len > NBD_DOS_PAYLOAD_FLOOR)
        return NBD_PAYLOAD_DISCONNECT;
    return NBD_PAYLOAD_DISCARD;
}

uint32_t nbd_errno_to_nbd(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return 0;
    case EPERM: case EROFS: case EACCES:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC: case EDQUOT: case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP      /* the same value on Linux: a duplicate case would not compile */
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* ----------------------------------------------------------------- encoders */

size_t nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t cookie)
{
    rv_put_be32(buf, NBD_SIMPLE_REPLY_MAGIC);
    rv_put_be32(buf + 4, error);
    rv_put_be64(buf + 8, cookie);
    return NBD_SIMPLE_REPLY_SIZE;
}

size_t nbd_encode_chunk_header(uint8_t *buf, uint16_t flags, uint16_t type,
                               uint64_t cookie, uint32_t length)
{
    rv_put_be32(buf, NBD_STRUCTURED_REPLY_MAGIC);
    rv_put_be16(buf + 4, flags);
    rv_put_be16(buf + 6, type);
    rv_put_be64(buf + 8, cookie);
    rv_put_be32(buf + 16, length);
    return NBD_CHUNK_HEADER_SIZE;
}

size_t nbd_encode_offset_data(uint8_t *buf, uint16_t flags, uint64_t cookie,
                              uint64_t offset, uint32_t data_len)
{
    /* The spec requires at least one byte, and length = 8 + data_len is 32-bit. */
    if (data_len == 0 || data_len > UINT32_MAX - 8)
        return 0;
    nbd_encode_chunk_header(buf, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie, 8 + data_len);
    rv_put_be64(buf + NBD_CHUNK_HEADER_SIZE, offset);
    return NBD_OFFSET_DATA_PREFIX_SIZE;
}

size_t nbd_encode_offset_hole(uint8_t *buf, uint16_t flags, uint64_t cookie,
                              uint64_t offset, uint32_t hole_len)
{
    if (hole_len == 0)
        return 0;
    nbd_encode_chunk_header(buf, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, 12);
    rv_put_be64(buf + NBD_CHUNK_HEADER_SIZE, offset);
    rv_put_be32(buf + NBD_CHUNK_HEADER_SIZE + 8, hole_len);
    return NBD_OFFSET_HOLE_SIZE;
}

/* Shared by both error chunk types: trailer is 0 (ERROR) or 8 (ERROR_OFFSET). */
static size_t encode_error(uint8_t *buf, size_t cap, uint16_t flags, uint16_t type,
                           uint64_t cookie, uint32_t error, const char *msg,
                           size_t trailer, uint64_t offset)
{
    size_t fixed = NBD_ERROR_CHUNK_MIN_SIZE + trailer;
    size_t mlen = msg ? strnlen(msg, NBD_MAX_STRING) : 0;

    if (cap < fixed)
        return 0;
    if (mlen > cap - fixed)
        mlen = cap - fixed;
    if (error == 0)
        error = NBD_EIO;        /* an error chunk with error 0 is invalid */
    nbd_encode_chunk_header(buf, flags, type, cookie, (uint32_t)(6 + mlen + trailer));
    rv_put_be32(buf + 20, error);
    rv_put_be16(buf + 24, (uint16_t)mlen);
    if (mlen)
        memcpy(buf + 26, msg, mlen);
    if (trailer)
        rv_put_be64(buf + 26 + mlen, offset);
    return fixed + mlen;
}

size_t nbd_encode_error_chunk(uint8_t *buf, size_t cap, uint16_t flags, uint64_t cookie,
                              uint32_t error, const char *msg)
{
    return encode_error(buf, cap, flags, NBD_REPLY_TYPE_ERROR, cookie, error, msg, 0, 0);
}

size_t nbd_encode_error_offset_chunk(uint8_t *buf, size_t cap, uint16_t flags,
                                     uint64_t cookie, uint32_t error, const char *msg,
                                     uint64_t offset)
{
    return encode_error(buf, cap, flags, NBD_REPLY_TYPE_ERROR_OFFSET, cookie, error, msg,
                        8, offset);
}

size_t nbd_encode_block_status(uint8_t *buf, size_t cap, uint16_t flags, uint64_t cookie,
                               uint32_t context_id, const struct nbd_block_desc *desc,
                               size_t n)
{
    /* Keeps 4 + 8n within the 32-bit length field. */
    if (n == 0 || n > (UINT32_MAX - 4) / 8 || cap < nbd_block_status_size(n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (desc[i].length == 0)
            return 0;
    nbd_encode_chunk_header(buf, flags, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
                            (uint32_t)(4 + 8 * n));
    rv_put_be32(buf + 20, context_id);
    uint8_t *p = buf + 24;
    for (size_t i = 0; i < n; i++, p += 8) {
        rv_put_be32(p, desc[i].length);
        rv_put_be32(p + 4, desc[i].status);
    }
    return nbd_block_status_size(n);
}

size_t nbd_encode_none_chunk(uint8_t *buf, uint64_t cookie)
{
    return nbd_encode_chunk_header(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

/* ------------------------------------------------------------- client side */

size_t nbd_encode_request(uint8_t *buf, const struct nbd_request *req)
{
    rv_put_be32(buf, NBD_REQUEST_MAGIC);
    rv_put_be16(buf + 4, req->flags);
    rv_put_be16(buf + 6, req->type);
    rv_put_be64(buf + 8, req->cookie);
    rv_put_be64(buf + 16, req->offset);
    rv_put_be32(buf + 24, req->count);
    return NBD_REQUEST_SIZE;
}

int nbd_decode_reply(const uint8_t *buf, size_t len, struct nbd_reply *r)
{
    if (len < 4)
        return 0;
    memset(r, 0, sizeof(*r));
    r->magic = rv_get_be32(buf);
    if (r->magic == NBD_SIMPLE_REPLY_MAGIC) {
        if (len < NBD_SIMPLE_REPLY_SIZE)
            return 0;
        r->error = rv_get_be32(buf + 4);
        r->cookie = rv_get_be64(buf + 8);
        return NBD_SIMPLE_REPLY_SIZE;
    }
    if (r->magic == NBD_STRUCTURED_REPLY_MAGIC) {
        if (len < NBD_CHUNK_HEADER_SIZE)
            return 0;
        r->flags = rv_get_be16(buf + 4);
        r->type = rv_get_be16(buf + 6);
        r->cookie = rv_get_be64(buf + 8);
        r->length = rv_get_be32(buf + 16);
        return NBD_CHUNK_HEADER_SIZE;
    }
    return -EPROTO;
}

size_t nbd_encode_option(uint8_t *buf, uint32_t option, uint32_t length)
{
    rv_put_be64(buf, NBD_IHAVEOPT);
    rv_put_be32(buf + 8, option);
    rv_put_be32(buf + 12, length);
    return NBD_OPT_HEADER_SIZE;
}

int nbd_decode_opt_reply(const uint8_t *buf, size_t len, uint32_t *option,
                         uint32_t *type, uint32_t *length)
{
    if (len < NBD_OPT_REPLY_HEADER_SIZE)
        return 0;
    if (rv_get_be64(buf) != NBD_OPT_REPLY_MAGIC)
        return -EPROTO;
    *option = rv_get_be32(buf + 8);
    *type = rv_get_be32(buf + 12);
    *length = rv_get_be32(buf + 16);
    return NBD_OPT_REPLY_HEADER_SIZE;
}

/* -------------------------------------------------------------------- names */

const char *nbd_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ: return "READ";
    case NBD_CMD_WRITE: return "WRITE";
    case NBD_CMD_DISC: return "DISC";
    case NBD_CMD_FLUSH: return "FLUSH";
    case NBD_CMD_TRIM: return "TRIM";
    case NBD_CMD_CACHE: return "CACHE";
    case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
    default: return "unknown command";
    }
}

const char *nbd_opt_name(uint32_t option)
{
    switch (option) {
    case NBD_OPT_EXPORT_NAME: return "EXPORT_NAME";
    case NBD_OPT_ABORT: return "ABORT";
    case NBD_OPT_LIST: return "LIST";
    case NBD_OPT_PEEK_EXPORT: return "PEEK_EXPORT";
    case NBD_OPT_STARTTLS: return "STARTTLS";
    case NBD_OPT_INFO: return "INFO";
    case NBD_OPT_GO: return "GO";
    case NBD_OPT_STRUCTURED_REPLY: return "STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT: return "SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS: return "EXTENDED_HEADERS";
    default: return "unknown option";
    }
}

const char *nbd_rep_name(uint32_t reply_type)
{
    switch (reply_type) {
    case NBD_REP_ACK: return "ACK";
    case NBD_REP_SERVER: return "SERVER";
    case NBD_REP_INFO: return "INFO";
    case NBD_REP_META_CONTEXT: return "META_CONTEXT";
    case NBD_REP_ERR_UNSUP: return "ERR_UNSUP";
    case NBD_REP_ERR_POLICY: return "ERR_POLICY";
    case NBD_REP_ERR_INVALID: return "ERR_INVALID";
    case NBD_REP_ERR_PLATFORM: return "ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD: return "ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN: return "ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN: return "ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG: return "ERR_TOO_BIG";
    case NBD_REP_ERR_EXT_HEADER_REQD: return "ERR_EXT_HEADER_REQD";
    default: return "unknown reply";
    }
}

const char *nbd_info_name(uint16_t info)
{
    switch (info) {
    case NBD_INFO_EXPORT: return "EXPORT";
    case NBD_INFO_NAME: return "NAME";
    case NBD_INFO_DESCRIPTION: return "DESCRIPTION";
    case NBD_INFO_BLOCK_SIZE: return "BLOCK_SIZE";
    default: return "unknown info";
    }
}

const char *nbd_err_name(uint32_t error)
{
    switch (error) {
    case 0: return "OK";
    case NBD_EPERM: return "EPERM";
    case NBD_EIO: return "EIO";
    case NBD_ENOMEM: return "ENOMEM";
    case NBD_EINVAL: return "EINVAL";
    case NBD_ENOSPC: return "ENOSPC";
    case NBD_EOVERFLOW: return "EOVERFLOW";
    case NBD_ENOTSUP: return "ENOTSUP";
    case NBD_ESHUTDOWN: return "ESHUTDOWN";
    default: return "unknown error";
    }
}

const char *nbd_reply_type_name(uint16_t type)
{
    switch (type) {
    case NBD_REPLY_TYPE_NONE: return "NONE";
    case NBD_REPLY_TYPE_OFFSET_DATA: return "OFFSET_DATA";
    case NBD_REPLY_TYPE_OFFSET_HOLE: return "OFFSET_HOLE";
    case NBD_REPLY_TYPE_BLOCK_STATUS: return "BLOCK_STATUS";
    case NBD_REPLY_TYPE_ERROR: return "ERROR";
    case NBD_REPLY_TYPE_ERROR_OFFSET: return "ERROR_OFFSET";
    default: return "unknown chunk type";
    }
}
