/* repl_proto.c - replication link frame header, hello body and refusal
 * codecs (format described in include/repvol/repl_proto.h).  Pure code: no
 * I/O, no global mutable state. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "repvol/repl_proto.h"
#include "repvol/util.h"
#include "repvol/wire.h"

_Static_assert(RV_REPL_HOFF_END == RV_REPL_HELLO_SIZE, "hello layout table and size disagree");
_Static_assert(RV_REPL_HOFF_HISTORY_GEN + 8 * RV_REPL_HISTORY == RV_REPL_HOFF_MODE,
               "history_gen size");
_Static_assert(RV_REPL_HOFF_NAME + RV_REPL_NAME_LEN == RV_REPL_HOFF_END, "name size");
_Static_assert(RV_REPL_HOFF_UUID + RV_UUID_LEN == RV_REPL_HOFF_DATA_SIZE, "uuid size");
_Static_assert(sizeof(((struct rv_repl_hello *)0)->name) == RV_REPL_NAME_LEN, "name field");
_Static_assert(sizeof(((struct rv_repl_hello *)0)->uuid) == RV_UUID_LEN, "uuid field");
_Static_assert(RV_REPL_HISTORY == RV_META_HISTORY, "history depth");
_Static_assert(RV_ROLE_SECONDARY == 1 && RV_ROLE_PRIMARY == 2, "hello role values are on the wire");
_Static_assert(RV_DISK_INCONSISTENT == 1 && RV_DISK_OUTDATED == 2 && RV_DISK_UPTODATE == 3,
               "hello disk_state values are on the wire");

/* Header field offsets (the table in the header file). */
enum {
    OFF_MAGIC = 0, OFF_VERSION = 4, OFF_TYPE = 6, OFF_FLAGS = 8, OFF_STATUS = 12,
    OFF_SEQ = 16, OFF_OFFSET = 24, OFF_LENGTH = 32, OFF_PAYLOAD_LEN = 36, OFF_END = 40,
};
_Static_assert(OFF_END == RV_REPL_HDR_SIZE, "header layout table and size disagree");

__attribute__((format(printf, 3, 4)))
static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ type table */

enum range_rule {
    RANGE_NONE,     /* offset and length must be 0 */
    RANGE_REQ,      /* length >= 1, offset + length must not wrap */
    RANGE_ANY,      /* not checked (reserved types) */
    RANGE_LOOSE,    /* HELLO/REFUSE: not checked, see the header comment */
};

enum status_rule {
    STATUS_ZERO,    /* must be 0 */
    STATUS_ERRNO,   /* 1..RV_REPL_MAX_ERRNO */
    STATUS_ANY,     /* not checked */
};

#define FLAGS_IGNORED UINT32_MAX

struct type_rule {
    uint16_t type;
    const char *name;
    uint8_t range;              /* enum range_rule */
    uint8_t status;             /* enum status_rule */
    bool payload_is_length;     /* payload_len must equal length */
    uint32_t min_payload, max_payload;
    uint32_t flags;             /* allowed flag bits, or FLAGS_IGNORED */
};

#define F_WRITE (RV_REPL_F_FUA | RV_REPL_F_ACK_ON_RECEIVE)

static const struct type_rule type_rules[] = {
    { RV_REPL_T_HELLO,  "HELLO",  RANGE_LOOSE, STATUS_ANY,   false,
      RV_REPL_HELLO_SIZE, RV_REPL_HELLO_MAX, FLAGS_IGNORED },
    { RV_REPL_T_REFUSE, "REFUSE", RANGE_LOOSE, STATUS_ANY,   false,
      0, RV_REPL_REFUSE_MSG_MAX, FLAGS_IGNORED },
    { RV_REPL_T_WRITE,  "WRITE",  RANGE_REQ,   STATUS_ZERO,  true,
      1, RV_REPL_MAX_PAYLOAD, F_WRITE },
    { RV_REPL_T_FLUSH,  "FLUSH",  RANGE_NONE,  STATUS_ZERO,  false, 0, 0,
      RV_REPL_F_ACK_ON_RECEIVE },
    { RV_REPL_T_TRIM,   "TRIM",   RANGE_REQ,   STATUS_ZERO,  false, 0, 0, F_WRITE },
    { RV_REPL_T_ZERO,   "ZERO",   RANGE_REQ,   STATUS_ZERO,  false, 0, 0,
      F_WRITE | RV_REPL_F_NO_HOLE },
    { RV_REPL_T_ACK,    "ACK",    RANGE_NONE,  STATUS_ZERO,  false, 0, 0, RV_REPL_F_RECEIVED },
    { RV_REPL_T_NACK,   "NACK",   RANGE_NONE,  STATUS_ERRNO, false, 0, 0, 0 },
    { RV_REPL_T_PING,   "PING",   RANGE_NONE,  STATUS_ZERO,  false, 0, 0, 0 },
    { RV_REPL_T_PONG,   "PONG",   RANGE_NONE,  STATUS_ZERO,  false, 0, 0, 0 },
    { RV_REPL_T_GOODBYE, "GOODBYE", RANGE_NONE, STATUS_ZERO, false, 0, 0, 0 },
    { RV_REPL_T_RESYNC_WRITE, "RESYNC_WRITE", RANGE_REQ, STATUS_ANY, true,
      1, RV_REPL_MAX_PAYLOAD, RV_REPL_F_FUA },
    { RV_REPL_T_RESYNC_REQ, "RESYNC_REQ", RANGE_REQ, STATUS_ANY, false, 0, 0, 0 },
    { RV_REPL_T_BITMAP, "BITMAP", RANGE_ANY, STATUS_ANY, false, 0, RV_REPL_MAX_BULK, 0 },
    { RV_REPL_T_DIGEST_REQ, "DIGEST_REQ", RANGE_ANY, STATUS_ANY, false, 0, 0, 0 },
    { RV_REPL_T_DIGEST, "DIGEST", RANGE_ANY, STATUS_ANY, false, 0, RV_REPL_MAX_BULK, 0 },
    { RV_REPL_T_SYNC_DONE, "SYNC_DONE", RANGE_ANY, STATUS_ANY, false, 0, 0, 0 },
    { RV_REPL_T_STATE,  "STATE",  RANGE_ANY,   STATUS_ANY,   false,
      RV_REPL_HELLO_SIZE, RV_REPL_HELLO_MAX, 0 },
};

static const struct type_rule *type_rule(uint16_t type)
{
    for (size_t i = 0; i < RV_ARRAY_SIZE(type_rules); i++)
        if (type_rules[i].type == type)
            return &type_rules[i];
    return NULL;
}

const char *rv_repl_type_name(uint16_t type)
{
    const struct type_rule *r = type_rule(type);
    return r ? r->name : "unknown type";
}

uint32_t rv_repl_max_payload(uint16_t type)
{
    const struct type_rule *r = type_rule(type);
    return r ? r->max_payload : 0;
}

/* ------------------------------------------------------------ header */

size_t rv_repl_encode_hdr(uint8_t buf[RV_REPL_HDR_SIZE], const struct rv_repl_hdr *h)
{
    rv_put_be32(buf + OFF_MAGIC, RV_REPL_MAGIC);
    rv_put_be16(buf + OFF_VERSION, RV_REPL_VERSION);
    rv_put_be16(buf + OFF_TYPE, h->type);
    rv_put_be32(buf + OFF_FLAGS, h->flags);
    rv_put_be32(buf + OFF_STATUS, h->status);
    rv_put_be64(buf + OFF_SEQ, h->seq);
    rv_put_be64(buf + OFF_OFFSET, h->offset);
    rv_put_be32(buf + OFF_LENGTH, h->length);
    rv_put_be32(buf + OFF_PAYLOAD_LEN, h->payload_len);
    return RV_REPL_HDR_SIZE;
}

static int check_payload_and_range(const struct type_rule *r, const struct rv_repl_hdr *h)
{
    if (h->payload_len < r->min_payload || h->payload_len > r->max_payload)
        return RV_REPL_ERR_LENGTH;
    if (r->payload_is_length && h->payload_len != h->length)
        return RV_REPL_ERR_LENGTH;
    switch (r->range) {
    case RANGE_NONE:
        if (h->length != 0)
            return RV_REPL_ERR_LENGTH;
        break;
    case RANGE_REQ:
        if (h->length == 0 || h->offset > UINT64_MAX - h->length)
            return RV_REPL_ERR_LENGTH;
        break;
    }
    return 0;
}

static int check_fields(const struct type_rule *r, const struct rv_repl_hdr *h)
{
    if (r->range == RANGE_NONE && h->offset != 0)
        return RV_REPL_ERR_FIELD;
    switch (r->status) {
    case STATUS_ZERO:
        if (h->status != 0)
            return RV_REPL_ERR_FIELD;
        break;
    case STATUS_ERRNO:
        if (h->status == 0 || h->status > RV_REPL_MAX_ERRNO)
            return RV_REPL_ERR_FIELD;
        break;
    }
    return 0;
}

int rv_repl_decode_hdr(const uint8_t *buf, size_t len, struct rv_repl_hdr *h)
{
    memset(h, 0, sizeof *h);
    if (!buf || len < RV_REPL_HDR_SIZE)
        return 0;
    if (rv_get_be32(buf + OFF_MAGIC) != RV_REPL_MAGIC)
        return RV_REPL_ERR_MAGIC;
    h->version = rv_get_be16(buf + OFF_VERSION);
    h->type = rv_get_be16(buf + OFF_TYPE);
    h->flags = rv_get_be32(buf + OFF_FLAGS);
    h->status = rv_get_be32(buf + OFF_STATUS);
    h->seq = rv_get_be64(buf + OFF_SEQ);
    h->offset = rv_get_be64(buf + OFF_OFFSET);
    h->length = rv_get_be32(buf + OFF_LENGTH);
    h->payload_len = rv_get_be32(buf + OFF_PAYLOAD_LEN);
    if (h->version != RV_REPL_VERSION)
        return RV_REPL_ERR_VERSION;
    const struct type_rule *r = type_rule(h->type);
    if (!r)
        return RV_REPL_ERR_TYPE;
    int e = check_payload_and_range(r, h);
    if (e)
        return e;
    if (r->flags != FLAGS_IGNORED && (h->flags & ~r->flags))
        return RV_REPL_ERR_FLAGS;
    e = check_fields(r, h);
    if (e)
        return e;
    return RV_REPL_HDR_SIZE;
}

/* ------------------------------------------------------------ hello */

static bool is_printable(uint8_t c) { return c >= 0x20 && c <= 0x7e; }

/* name: field_len bytes; a run of printable ASCII, then a NUL, then (if
 * need_padding) only NULs. */
static int check_name(const char *name, size_t field_len, bool need_padding,
                      char *why, size_t whylen)
{
    size_t n = 0;
    while (n < field_len && name[n] != '\0') {
        if (!is_printable((uint8_t)name[n])) {
            why_set(why, whylen, "name has a non-printable byte 0x%02x at position %zu",
                    (uint8_t)name[n], n);
            return RV_REPL_ERR_FIELD;
        }
        n++;
    }
    if (n == field_len) {
        why_set(why, whylen, "name is not NUL-terminated within %zu bytes", field_len);
        return RV_REPL_ERR_FIELD;
    }
    if (need_padding)
        for (size_t i = n; i < field_len; i++)
            if (name[i] != '\0') {
                why_set(why, whylen, "name padding byte %zu is not zero", i);
                return RV_REPL_ERR_FIELD;
            }
    return 0;
}

/* Every field but the name. */
static int check_hello_values(const struct rv_repl_hello *h, char *why, size_t whylen)
{
    if (h->proto_min == 0) {
        why_set(why, whylen, "proto_min is 0 (versions start at 1)");
        return RV_REPL_ERR_FIELD;
    }
    if (h->proto_min > h->proto_max) {
        why_set(why, whylen, "proto_min %" PRIu32 " is above proto_max %" PRIu32,
                h->proto_min, h->proto_max);
        return RV_REPL_ERR_FIELD;
    }
    static const uint8_t nil[RV_UUID_LEN];
    if (memcmp(h->uuid, nil, RV_UUID_LEN) == 0) {
        why_set(why, whylen, "uuid is nil (all zero)");
        return RV_REPL_ERR_FIELD;
    }
    if (h->data_size == 0 || h->data_size % RV_META_ALIGN ||
        h->data_size > RV_META_MAX_DATA_SIZE) {
        why_set(why, whylen, "data_size %" PRIu64 " is not a nonzero multiple of %u "
                "up to %" PRIu64, h->data_size, RV_META_ALIGN, RV_META_MAX_DATA_SIZE);
        return RV_REPL_ERR_FIELD;
    }
    if (h->block_size != 512 && h->block_size != 4096) {
        why_set(why, whylen, "block_size %" PRIu32 " is not 512 or 4096", h->block_size);
        return RV_REPL_ERR_FIELD;
    }
    if (h->node_id >= RV_META_MAX_NODES) {
        why_set(why, whylen, "node_id %" PRIu32 " is not below %d", h->node_id,
                RV_META_MAX_NODES);
        return RV_REPL_ERR_FIELD;
    }
    if (h->role != RV_ROLE_SECONDARY && h->role != RV_ROLE_PRIMARY) {
        why_set(why, whylen, "role %" PRIu32 " is not 1 (secondary) or 2 (primary)", h->role);
        return RV_REPL_ERR_FIELD;
    }
    if (h->disk_state < RV_DISK_INCONSISTENT || h->disk_state > RV_DISK_UPTODATE) {
        why_set(why, whylen, "disk_state %" PRIu32 " is not 1 (Inconsistent), "
                "2 (Outdated) or 3 (UpToDate)", h->disk_state);
        return RV_REPL_ERR_FIELD;
    }
    if (h->mode < RV_REPL_MODE_A || h->mode > RV_REPL_MODE_C) {
        why_set(why, whylen, "mode %" PRIu32 " is not 1 (A), 2 (B) or 3 (C)", h->mode);
        return RV_REPL_ERR_FIELD;
    }
    return 0;
}

int rv_repl_hello_check(const struct rv_repl_hello *h, char *why, size_t whylen)
{
    why_set(why, whylen, "%s", "");
    int r = check_hello_values(h, why, whylen);
    if (r)
        return r;
    return check_name(h->name, sizeof h->name, false, why, whylen);
}

int rv_repl_encode_hello(uint8_t *buf, size_t cap, const struct rv_repl_hello *h)
{
    if (!buf || cap < RV_REPL_HELLO_SIZE || rv_repl_hello_check(h, NULL, 0))
        return -EINVAL;
    memset(buf, 0, RV_REPL_HELLO_SIZE);
    rv_put_be32(buf + RV_REPL_HOFF_PROTO_MIN, h->proto_min);
    rv_put_be32(buf + RV_REPL_HOFF_PROTO_MAX, h->proto_max);
    memcpy(buf + RV_REPL_HOFF_UUID, h->uuid, RV_UUID_LEN);
    rv_put_be64(buf + RV_REPL_HOFF_DATA_SIZE, h->data_size);
    rv_put_be32(buf + RV_REPL_HOFF_BLOCK_SIZE, h->block_size);
    rv_put_be32(buf + RV_REPL_HOFF_NODE_ID, h->node_id);
    rv_put_be32(buf + RV_REPL_HOFF_ROLE, h->role);
    rv_put_be32(buf + RV_REPL_HOFF_DISK_STATE, h->disk_state);
    rv_put_be64(buf + RV_REPL_HOFF_CURRENT_GEN, h->current_gen);
    rv_put_be64(buf + RV_REPL_HOFF_BITMAP_GEN, h->bitmap_gen);
    for (int i = 0; i < RV_REPL_HISTORY; i++)
        rv_put_be64(buf + RV_REPL_HOFF_HISTORY_GEN + 8 * i, h->history_gen[i]);
    rv_put_be32(buf + RV_REPL_HOFF_MODE, h->mode);
    rv_put_be32(buf + RV_REPL_HOFF_FLAGS, h->flags);
    rv_put_be64(buf + RV_REPL_HOFF_DIRTY_BYTES, h->dirty_bytes);
    memcpy(buf + RV_REPL_HOFF_NAME, h->name, strnlen(h->name, sizeof h->name));
    return RV_REPL_HELLO_SIZE;
}

int rv_repl_decode_hello_ex(const uint8_t *buf, size_t len, struct rv_repl_hello *h,
                            char *why, size_t whylen)
{
    memset(h, 0, sizeof *h);
    why_set(why, whylen, "%s", "");
    if (!buf || len < RV_REPL_HELLO_SIZE) {
        why_set(why, whylen, "hello body is %zu bytes, need at least %d",
                buf ? len : 0, RV_REPL_HELLO_SIZE);
        return RV_REPL_ERR_LENGTH;
    }
    h->proto_min = rv_get_be32(buf + RV_REPL_HOFF_PROTO_MIN);
    h->proto_max = rv_get_be32(buf + RV_REPL_HOFF_PROTO_MAX);
    memcpy(h->uuid, buf + RV_REPL_HOFF_UUID, RV_UUID_LEN);
    h->data_size = rv_get_be64(buf + RV_REPL_HOFF_DATA_SIZE);
    h->block_size = rv_get_be32(buf + RV_REPL_HOFF_BLOCK_SIZE);
    h->node_id = rv_get_be32(buf + RV_REPL_HOFF_NODE_ID);
    h->role = rv_get_be32(buf + RV_REPL_HOFF_ROLE);
    h->disk_state = rv_get_be32(buf + RV_REPL_HOFF_DISK_STATE);
    h->current_gen = rv_get_be64(buf + RV_REPL_HOFF_CURRENT_GEN);
    h->bitmap_gen = rv_get_be64(buf + RV_REPL_HOFF_BITMAP_GEN);
    for (int i = 0; i < RV_REPL_HISTORY; i++)
        h->history_gen[i] = rv_get_be64(buf + RV_REPL_HOFF_HISTORY_GEN + 8 * i);
    h->mode = rv_get_be32(buf + RV_REPL_HOFF_MODE);
    h->flags = rv_get_be32(buf + RV_REPL_HOFF_FLAGS);
    h->dirty_bytes = rv_get_be64(buf + RV_REPL_HOFF_DIRTY_BYTES);
    /* Always NUL-terminated in *h; check_name below judges the wire bytes. */
    memcpy(h->name, buf + RV_REPL_HOFF_NAME, RV_REPL_NAME_LEN);
    h->name[RV_REPL_NAME_LEN - 1] = '\0';

    int r = check_hello_values(h, why, whylen);
    if (r)
        return r;
    return check_name((const char *)buf + RV_REPL_HOFF_NAME, RV_REPL_NAME_LEN, true,
                      why, whylen);
}

int rv_repl_decode_hello(const uint8_t *buf, size_t len, struct rv_repl_hello *h)
{
    return rv_repl_decode_hello_ex(buf, len, h, NULL, 0);
}

uint32_t rv_repl_common_version(const struct rv_repl_hello *local,
                                const struct rv_repl_hello *remote)
{
    uint32_t lo = RV_MAX(local->proto_min, remote->proto_min);
    uint32_t hi = RV_MIN(local->proto_max, remote->proto_max);
    return lo <= hi && hi > 0 ? hi : 0;
}

/* Same strings as rv_role_name(), kept here so this file links with only
 * util.c (fuzzers, the brief's direct build). */
static const char *role_name(uint32_t role)
{
    switch (role) {
    case RV_ROLE_SECONDARY: return "secondary";
    case RV_ROLE_PRIMARY:   return "primary";
    }
    return "unknown";
}

uint32_t rv_repl_check_compat(const struct rv_repl_hello *local,
                              const struct rv_repl_hello *remote,
                              char *msg, size_t msglen)
{
    uint32_t v = rv_repl_common_version(local, remote);
    if (v == 0) {
        why_set(msg, msglen, "no common protocol version: local speaks %" PRIu32 "..%" PRIu32
                ", peer speaks %" PRIu32 "..%" PRIu32,
                local->proto_min, local->proto_max, remote->proto_min, remote->proto_max);
        return RV_REPL_REFUSE_VERSION;
    }
    if (memcmp(local->uuid, remote->uuid, RV_UUID_LEN) != 0) {
        char lu[RV_UUID_STR_LEN], ru[RV_UUID_STR_LEN];
        rv_uuid_format(local->uuid, lu);
        rv_uuid_format(remote->uuid, ru);
        why_set(msg, msglen, "different volumes: local uuid %s, peer uuid %s", lu, ru);
        return RV_REPL_REFUSE_UUID;
    }
    if (local->data_size != remote->data_size) {
        why_set(msg, msglen, "data size differs: local %" PRIu64 " bytes, peer %" PRIu64
                " bytes", local->data_size, remote->data_size);
        return RV_REPL_REFUSE_SIZE;
    }
    if (local->node_id == remote->node_id) {
        why_set(msg, msglen, "same node id on both ends: local node id %" PRIu32
                ", peer node id %" PRIu32, local->node_id, remote->node_id);
        return RV_REPL_REFUSE_NODE_ID;
    }
    if (local->role == RV_ROLE_PRIMARY && remote->role == RV_ROLE_PRIMARY) {
        why_set(msg, msglen, "both nodes are primary: local role %s, peer role %s",
                role_name(local->role), role_name(remote->role));
        return RV_REPL_REFUSE_BOTH_PRIMARY;
    }
    if (local->mode != remote->mode) {
        why_set(msg, msglen, "replication modes differ: local mode %s, peer mode %s",
                rv_repl_mode_name(local->mode), rv_repl_mode_name(remote->mode));
        return RV_REPL_REFUSE_MODE;
    }
    why_set(msg, msglen, "compatible: protocol version %" PRIu32, v);
    return 0;
}

/* ------------------------------------------------------------ refuse */

/* Length of the well-formed UTF-8 sequence at p (avail bytes), or 0 if the
 * byte at p does not start one (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF). */
static size_t utf8_seq_len(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;   /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

size_t rv_repl_encode_refuse(uint8_t *buf, size_t cap, uint32_t reason, const char *msg)
{
    if (!buf || cap < RV_REPL_HDR_SIZE)
        return 0;
    size_t full = msg ? strnlen(msg, RV_REPL_REFUSE_MSG_MAX + 1) : 0;
    size_t n = RV_MIN(full, (size_t)RV_REPL_REFUSE_MSG_MAX);
    n = RV_MIN(n, cap - RV_REPL_HDR_SIZE);
    /* Don't cut inside a multi-byte character: back up to its lead byte. */
    while (n > 0 && n < full && ((uint8_t)msg[n] & 0xc0) == 0x80)
        n--;
    struct rv_repl_hdr h = {
        .type = RV_REPL_T_REFUSE,
        .status = reason,
        .payload_len = (uint32_t)n,
    };
    rv_repl_encode_hdr(buf, &h);
    if (n)
        memcpy(buf + RV_REPL_HDR_SIZE, msg, n);
    return RV_REPL_HDR_SIZE + n;
}

int rv_repl_decode_refuse_msg(const uint8_t *payload, size_t len, char *msg, size_t msglen)
{
    int ret = 0;
    if (len > RV_REPL_REFUSE_MSG_MAX) {
        len = RV_REPL_REFUSE_MSG_MAX;
        ret = RV_REPL_ERR_LENGTH;
    }
    if (!msg || msglen == 0)
        return ret;
    if (!payload)
        len = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; ) {
        size_t n = utf8_seq_len(payload + i, len - i);
        bool ok = n > 0;
        if (n == 0)
            n = 1;          /* invalid byte: replace it, resync on the next */
        else if (n == 1 && (payload[i] < 0x20 || payload[i] == 0x7f))
            ok = false;     /* C0 control or DEL */
        else if (n == 2 && payload[i] == 0xc2 && payload[i + 1] < 0xa0)
            ok = false;     /* C1 control U+0080..U+009F (e.g. CSI) */
        size_t out = ok ? n : 1;
        if (o + out > msglen - 1)
            break;
        if (ok)
            memcpy(msg + o, payload + i, n);
        else
            msg[o] = '?';
        o += out;
        i += n;
    }
    msg[o] = '\0';
    return ret;
}

/* ------------------------------------------------------------ names */

const char *rv_repl_refuse_name(uint32_t reason)
{
    switch (reason) {
    case 0:                           return "OK";
    case RV_REPL_REFUSE_VERSION:      return "VERSION";
    case RV_REPL_REFUSE_UUID:         return "UUID";
    case RV_REPL_REFUSE_SIZE:         return "SIZE";
    case RV_REPL_REFUSE_BOTH_PRIMARY: return "BOTH_PRIMARY";
    case RV_REPL_REFUSE_NO_PRIMARY:   return "NO_PRIMARY";
    case RV_REPL_REFUSE_GENERATION:   return "GENERATION";
    case RV_REPL_REFUSE_STATE:        return "STATE";
    case RV_REPL_REFUSE_BUSY:         return "BUSY";
    case RV_REPL_REFUSE_PROTOCOL:     return "PROTOCOL";
    case RV_REPL_REFUSE_NODE_ID:      return "NODE_ID";
    case RV_REPL_REFUSE_MODE:         return "MODE";
    }
    return "unknown reason";
}

const char *rv_repl_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case RV_REPL_ERR_MAGIC:
        return "bad frame magic: not a repvol replication frame";
    case RV_REPL_ERR_VERSION:
        return "unsupported replication frame header version";
    case RV_REPL_ERR_TYPE:
        return "unknown replication frame type";
    case RV_REPL_ERR_LENGTH:
        return "frame payload length or range out of bounds for its type";
    case RV_REPL_ERR_FLAGS:
        return "frame has flag bits its type does not take";
    case RV_REPL_ERR_FIELD:
        return "frame or hello field out of range";
    }
    const char *desc = rv_errno_desc(err);
    return desc ? desc : "unknown error";
}

const char *rv_repl_mode_name(uint32_t mode)
{
    switch (mode) {
    case RV_REPL_MODE_A: return "A";
    case RV_REPL_MODE_B: return "B";
    case RV_REPL_MODE_C: return "C";
    }
    return "unknown";
}

int rv_repl_mode_parse(const char *s, uint32_t *mode)
{
    if (!s || !s[0] || s[1])
        return -EINVAL;
    switch (s[0]) {
    case 'A': case 'a': *mode = RV_REPL_MODE_A; return 0;
    case 'B': case 'b': *mode = RV_REPL_MODE_B; return 0;
    case 'C': case 'c': *mode = RV_REPL_MODE_C; return 0;
    }
    return -EINVAL;
}
