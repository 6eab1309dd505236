/* ublk_proto.c - the pure part of the ublk frontend (see include/repvol/ublk.h):
 * feature negotiation, device parameters, request decoding.  No system calls,
 * so the unit tests exercise all of it on machines without ublk_drv. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "repvol/backend.h"
#include "repvol/ublk.h"

/* Largest DISCARD / WRITE_ZEROES the kernel may send: the engine's request
 * length is 32 bits. */
#define RV_UBLK_MAX_DISCARD (1u << 30)

static void note(char *why, size_t why_len, const char *msg)
{
    if (!why || why_len == 0)
        return;
    size_t n = strlen(why);
    if (n + 1 >= why_len)
        return;
    snprintf(why + n, why_len - n, "%s%s", n ? "; " : "", msg);
}

void rv_ublk_negotiate(uint64_t kf, const struct rv_ublk_opts *o, uint64_t *flags, char *why,
                       size_t why_len)
{
    uint64_t f = 0;
    if (why && why_len)
        why[0] = '\0';
    /* kf == 0: a kernel without GET_FEATURES (before 6.5).  It still has
     * USER_RECOVERY (6.0) but not the ioctl encoding; ask for recovery and
     * let ADD_DEV keep what it knows. */
    bool old = kf == 0;
    if (kf & RV_UBLK_F_CMD_IOCTL_ENCODE)
        f |= RV_UBLK_F_CMD_IOCTL_ENCODE;
    if (o->recovery) {
        if (old || (kf & RV_UBLK_F_USER_RECOVERY)) {
            f |= RV_UBLK_F_USER_RECOVERY;
            /* REISSUE: requests in flight when the daemon died are sent
             * again to its successor instead of failing: the file system
             * on the device sees only a pause. */
            if (old || (kf & RV_UBLK_F_USER_RECOVERY_REISSUE))
                f |= RV_UBLK_F_USER_RECOVERY_REISSUE;
            else
                note(why, why_len, "kernel lacks UBLK_F_USER_RECOVERY_REISSUE: requests in flight at a "
                     "crash fail instead of being reissued");
        } else {
            note(why, why_len, "kernel lacks UBLK_F_USER_RECOVERY: the device goes away with the daemon");
        }
    }
    if (o->user_copy) {
        if (kf & RV_UBLK_F_USER_COPY)
            f |= RV_UBLK_F_USER_COPY;
        else
            note(why, why_len, "kernel lacks UBLK_F_USER_COPY: copying through the mapped buffers");
    }
    *flags = f;
}

int rv_ublk_build_params(struct rv_ublk_params *p, uint64_t size, uint32_t max_io, bool readonly)
{
    memset(p, 0, sizeof *p);
    if (size < 512 || max_io < 4096 || max_io % 4096)
        return -EINVAL;
    p->len = sizeof *p;
    p->types = RV_UBLK_PARAM_TYPE_BASIC | RV_UBLK_PARAM_TYPE_DISCARD;
    /* A volatile write cache with FUA: the kernel then sends REQ_OP_FLUSH
     * for fsync/sync and REQ_FUA on journal commits, which map to the
     * engine's FLUSH (fdatasync here, and on the peer in mode C) and FUA
     * (RWF_DSYNC).  Without it the kernel would assume every completed
     * write is already stable, and a power loss could eat acknowledged
     * data still in the page cache of the image file. */
    p->basic.attrs = RV_UBLK_ATTR_VOLATILE_CACHE | RV_UBLK_ATTR_FUA;
    if (readonly)
        p->basic.attrs |= RV_UBLK_ATTR_READ_ONLY;
    p->basic.logical_bs_shift = 9;
    p->basic.physical_bs_shift = 12;
    p->basic.io_opt_shift = 12;
    p->basic.io_min_shift = 12;
    p->basic.max_sectors = max_io >> 9;
    p->basic.dev_sectors = size >> 9;
    if (!readonly) {
        p->discard.discard_granularity = 4096;
        p->discard.max_discard_sectors = RV_UBLK_MAX_DISCARD >> 9;
        p->discard.max_write_zeroes_sectors = RV_UBLK_MAX_DISCARD >> 9;
        p->discard.max_discard_segments = 1;
    } else {
        p->types &= ~RV_UBLK_PARAM_TYPE_DISCARD;
    }
    return 0;
}

int rv_ublk_check_params(const struct rv_ublk_params *p, uint32_t max_io_buf_bytes, char *why,
                         size_t why_len)
{
    const char *bad = NULL;
    if (!(p->types & RV_UBLK_PARAM_TYPE_BASIC))
        bad = "no basic parameters";
    else if (p->basic.logical_bs_shift < 9 || p->basic.logical_bs_shift > 12)
        bad = "logical block size outside 512..4096";
    else if (p->basic.logical_bs_shift > p->basic.physical_bs_shift)
        bad = "logical block larger than physical block";
    else if (p->basic.max_sectors > (max_io_buf_bytes >> 9))
        bad = "max_sectors larger than the I/O buffer";
    else if (p->basic.dev_sectors == 0)
        bad = "empty device";
    else if ((p->types & RV_UBLK_PARAM_TYPE_DISCARD) && p->discard.max_discard_sectors &&
             p->discard.max_discard_segments != 1)
        bad = "discard must be single-segment";
    else if ((p->types & RV_UBLK_PARAM_TYPE_DISCARD) && !p->discard.discard_granularity)
        bad = "discard granularity 0";
    else if (p->types & (RV_UBLK_PARAM_TYPE_DEVT | RV_UBLK_PARAM_TYPE_ZONED))
        bad = "devt is read-only and zoned devices are not supported";
    if (!bad)
        return 0;
    if (why && why_len)
        snprintf(why, why_len, "%s", bad);
    return -EINVAL;
}

int rv_ublk_decode(const struct rv_ublksrv_io_desc *iod, uint32_t max_io, uint64_t size,
                   struct rv_ublk_io *out)
{
    unsigned op = iod->op_flags & 0xff;
    uint32_t fl = iod->op_flags & ~0xffu;
    memset(out, 0, sizeof *out);
    /* A flush carries no range (the block layer gives it sector -1). */
    if (op == RV_UBLK_IO_OP_FLUSH) {
        out->type = RV_IO_FLUSH;
        return 0;
    }
    if (iod->start_sector > (UINT64_MAX >> 9))
        return -EINVAL;
    uint64_t off = iod->start_sector << 9;
    uint64_t len = (uint64_t)iod->nr_sectors << 9;
    switch (op) {
    case RV_UBLK_IO_OP_READ:
        out->type = RV_IO_READ;
        break;
    case RV_UBLK_IO_OP_WRITE:
        out->type = RV_IO_WRITE;
        if (fl & RV_UBLK_IO_F_FUA)
            out->flags |= RV_IO_FUA;
        break;
    case RV_UBLK_IO_OP_DISCARD:
        out->type = RV_IO_TRIM;
        break;
    case RV_UBLK_IO_OP_WRITE_ZEROES:
        out->type = RV_IO_ZERO;
        if (fl & RV_UBLK_IO_F_NOUNMAP)
            out->flags |= RV_IO_NO_HOLE;
        if (fl & RV_UBLK_IO_F_FUA)
            out->flags |= RV_IO_FUA;
        break;
    default:
        return -EOPNOTSUPP;
    }
    if (len > UINT32_MAX)
        return -EINVAL;
    if ((out->type == RV_IO_READ || out->type == RV_IO_WRITE) && len > max_io)
        return -EINVAL;
    if (off > size || len > size - off)
        return -EINVAL;
    out->off = off;
    out->len = (uint32_t)len;
    return 0;
}

int32_t rv_ublk_commit_result(const struct rv_ublk_io *io, int result)
{
    if (result < 0)
        return result;
    if (io->type == RV_IO_READ || io->type == RV_IO_WRITE)
        return (int32_t)io->len;
    return 0;
}

uint32_t rv_ublk_ctrl_op(uint64_t features, unsigned nr)
{
    if (!(features & RV_UBLK_F_CMD_IOCTL_ENCODE) && nr != RV_UBLK_CMD_GET_FEATURES)
        return nr;
    switch (nr) {
    case RV_UBLK_CMD_GET_QUEUE_AFFINITY:
    case RV_UBLK_CMD_GET_DEV_INFO:
    case RV_UBLK_CMD_GET_PARAMS:
    case RV_UBLK_CMD_GET_DEV_INFO2:
    case RV_UBLK_CMD_GET_FEATURES:
        return RV_UBLK_U_CMD_R(nr);
    default:
        return RV_UBLK_U_CMD(nr);
    }
}

uint32_t rv_ublk_io_op(uint64_t features, unsigned nr)
{
    if (!(features & RV_UBLK_F_CMD_IOCTL_ENCODE))
        return nr;
    return RV_UBLK_U_IO(nr);
}

size_t rv_ublk_desc_size(unsigned depth, size_t page)
{
    size_t n = (size_t)depth * sizeof(struct rv_ublksrv_io_desc);
    return (n + page - 1) / page * page;
}

uint64_t rv_ublk_desc_offset(unsigned q, size_t page)
{
    /* The kernel spaces the queues' arrays by the size of the largest one. */
    return RV_UBLKSRV_CMD_BUF_OFFSET + (uint64_t)q * rv_ublk_desc_size(RV_UBLK_MAX_QUEUE_DEPTH, page);
}

uint64_t rv_ublk_user_copy_offset(unsigned q, unsigned tag)
{
    return RV_UBLKSRV_IO_BUF_OFFSET + ((uint64_t)q << RV_UBLK_QID_OFF) + ((uint64_t)tag << RV_UBLK_TAG_OFF);
}

uint64_t rv_ublk_volume_tag(const uint8_t uuid[16])
{
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = (t << 8) | uuid[i];
    return t ? t : 1;
}

const char *rv_ublk_state_name(unsigned state)
{
    switch (state) {
    case RV_UBLK_S_DEV_DEAD: return "dead";
    case RV_UBLK_S_DEV_LIVE: return "live";
    case RV_UBLK_S_DEV_QUIESCED: return "quiesced";
    case RV_UBLK_S_DEV_FAIL_IO: return "fail-io";
    default: return "unknown";
    }
}

void rv_ublk_flags_str(uint64_t flags, char *buf, size_t len)
{
    static const struct { uint64_t f; const char *name; } names[] = {
        { RV_UBLK_F_USER_RECOVERY, "recovery" },
        { RV_UBLK_F_USER_RECOVERY_REISSUE, "reissue" },
        { RV_UBLK_F_CMD_IOCTL_ENCODE, "ioctl-encode" },
        { RV_UBLK_F_USER_COPY, "user-copy" },
        { RV_UBLK_F_SUPPORT_ZERO_COPY, "zero-copy" },
        { RV_UBLK_F_URING_CMD_COMP_IN_TASK, "comp-in-task" },
        { RV_UBLK_F_NEED_GET_DATA, "need-get-data" },
        { RV_UBLK_F_UNPRIVILEGED_DEV, "unprivileged" },
        { RV_UBLK_F_ZONED, "zoned" },
        { RV_UBLK_F_USER_RECOVERY_FAIL_IO, "recovery-fail-io" },
    };
    size_t n = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(flags & names[i].f))
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? "," : "", names[i].name);
        if (w < 0 || (size_t)w >= len - n)
            return;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(buf, len, "none");
}
