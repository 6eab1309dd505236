/* test-ublk.c - the pure part of the ublk frontend: feature negotiation,
 * device parameters (checked the way the 6.12 kernel checks them), request
 * decoding, commit results, opcode encoding and mmap/pread offsets.  Runs
 * anywhere: no ublk driver needed. */
#include <errno.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "unit-main.h"

#include "repvol/backend.h"
#include "repvol/ublk.h"

static struct rv_ublk_opts opts(bool recovery, bool user_copy)
{
    struct rv_ublk_opts o;
    memset(&o, 0, sizeof o);
    o.nr_queues = 2;
    o.queue_depth = 64;
    o.max_io = 512 << 10;
    o.dev_id = -1;
    o.recovery = recovery;
    o.user_copy = user_copy;
    return o;
}

/* What a 6.12 kernel reports (GET_FEATURES). */
#define K612 (RV_UBLK_F_SUPPORT_ZERO_COPY | RV_UBLK_F_URING_CMD_COMP_IN_TASK | RV_UBLK_F_NEED_GET_DATA | \
              RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_USER_RECOVERY_REISSUE | RV_UBLK_F_UNPRIVILEGED_DEV | \
              RV_UBLK_F_CMD_IOCTL_ENCODE | RV_UBLK_F_USER_COPY | RV_UBLK_F_ZONED | \
              RV_UBLK_F_USER_RECOVERY_FAIL_IO)

static void test_negotiate(void)
{
    uint64_t f;
    char why[256];
    struct rv_ublk_opts o = opts(true, false);
    rv_ublk_negotiate(K612, &o, &f, why, sizeof why);
    CU_ASSERT_EQUAL(f, RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_USER_RECOVERY_REISSUE | RV_UBLK_F_CMD_IOCTL_ENCODE);
    CU_ASSERT_STRING_EQUAL(why, "");
    /* Never ask for what we don't implement. */
    CU_ASSERT_EQUAL(f & (RV_UBLK_F_UNPRIVILEGED_DEV | RV_UBLK_F_ZONED | RV_UBLK_F_NEED_GET_DATA |
                         RV_UBLK_F_SUPPORT_ZERO_COPY | RV_UBLK_F_USER_RECOVERY_FAIL_IO), 0);

    o = opts(true, true);
    rv_ublk_negotiate(K612, &o, &f, why, sizeof why);
    CU_ASSERT(f & RV_UBLK_F_USER_COPY);

    /* Recovery without REISSUE: degrade, and say so. */
    rv_ublk_negotiate(RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_CMD_IOCTL_ENCODE, &o, &f, why, sizeof why);
    CU_ASSERT_EQUAL(f, RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_CMD_IOCTL_ENCODE);
    CU_ASSERT(strstr(why, "REISSUE") != NULL);
    CU_ASSERT(strstr(why, "USER_COPY") != NULL);

    /* No recovery at all. */
    rv_ublk_negotiate(RV_UBLK_F_CMD_IOCTL_ENCODE, &o, &f, why, sizeof why);
    CU_ASSERT_EQUAL(f, RV_UBLK_F_CMD_IOCTL_ENCODE);
    CU_ASSERT(strstr(why, "USER_RECOVERY") != NULL);

    /* A kernel without GET_FEATURES (0): legacy opcodes, ask for recovery. */
    o = opts(true, false);
    rv_ublk_negotiate(0, &o, &f, why, sizeof why);
    CU_ASSERT_EQUAL(f, RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_USER_RECOVERY_REISSUE);

    /* Recovery not wanted. */
    o = opts(false, false);
    rv_ublk_negotiate(K612, &o, &f, why, sizeof why);
    CU_ASSERT_EQUAL(f, RV_UBLK_F_CMD_IOCTL_ENCODE);
    /* A tiny why[] buffer is not overrun. */
    o = opts(true, true);
    char small[8];
    memset(small, 'x', sizeof small);
    rv_ublk_negotiate(RV_UBLK_F_CMD_IOCTL_ENCODE, &o, &f, small, sizeof small);
    CU_ASSERT(memchr(small, '\0', sizeof small) != NULL);
}

static void test_params(void)
{
    struct rv_ublk_params p;
    char why[128];
    CU_ASSERT_EQUAL(rv_ublk_build_params(&p, 64ull << 20, 512 << 10, false), 0);
    CU_ASSERT_EQUAL(p.len, sizeof p);
    CU_ASSERT_EQUAL(p.types, RV_UBLK_PARAM_TYPE_BASIC | RV_UBLK_PARAM_TYPE_DISCARD);
    /* The kernel must send FLUSH and FUA. */
    CU_ASSERT(p.basic.attrs & RV_UBLK_ATTR_VOLATILE_CACHE);
    CU_ASSERT(p.basic.attrs & RV_UBLK_ATTR_FUA);
    CU_ASSERT_FALSE(p.basic.attrs & RV_UBLK_ATTR_READ_ONLY);
    CU_ASSERT_EQUAL(p.basic.dev_sectors, (64ull << 20) >> 9);
    CU_ASSERT_EQUAL(p.basic.max_sectors, 1024);
    CU_ASSERT_EQUAL(p.basic.logical_bs_shift, 9);
    CU_ASSERT_EQUAL(p.basic.physical_bs_shift, 12);
    CU_ASSERT_EQUAL(p.discard.max_discard_segments, 1);
    CU_ASSERT(p.discard.discard_granularity > 0);
    CU_ASSERT(p.discard.max_write_zeroes_sectors > 0);
    /* 32-bit engine lengths: at most 1 GiB per discard / write-zeroes. */
    CU_ASSERT((uint64_t)p.discard.max_discard_sectors << 9 <= UINT32_MAX);
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 512 << 10, why, sizeof why), 0);
    /* The kernel rounds max_io_buf_bytes; a smaller buffer than max_sectors is refused. */
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 256 << 10, why, sizeof why), -EINVAL);
    CU_ASSERT(strstr(why, "max_sectors") != NULL);

    /* Odd sizes round down to whole sectors. */
    CU_ASSERT_EQUAL(rv_ublk_build_params(&p, (1 << 20) + 100, 4096, false), 0);
    CU_ASSERT_EQUAL(p.basic.dev_sectors, 2048);

    /* Read-only: attribute, no discard. */
    CU_ASSERT_EQUAL(rv_ublk_build_params(&p, 1 << 20, 4096, true), 0);
    CU_ASSERT(p.basic.attrs & RV_UBLK_ATTR_READ_ONLY);
    CU_ASSERT_EQUAL(p.types, RV_UBLK_PARAM_TYPE_BASIC);
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 4096, why, sizeof why), 0);

    CU_ASSERT_EQUAL(rv_ublk_build_params(&p, 0, 4096, false), -EINVAL);
    CU_ASSERT_EQUAL(rv_ublk_build_params(&p, 1 << 20, 1000, false), -EINVAL);

    /* What the kernel would refuse. */
    rv_ublk_build_params(&p, 1 << 20, 4096, false);
    p.discard.max_discard_segments = 2;
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 4096, why, sizeof why), -EINVAL);
    rv_ublk_build_params(&p, 1 << 20, 4096, false);
    p.types |= RV_UBLK_PARAM_TYPE_DEVT;
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 4096, why, sizeof why), -EINVAL);
    rv_ublk_build_params(&p, 1 << 20, 4096, false);
    p.basic.logical_bs_shift = 13;
    CU_ASSERT_EQUAL(rv_ublk_check_params(&p, 4096, why, sizeof why), -EINVAL);
}

static struct rv_ublksrv_io_desc iod(unsigned op, uint32_t flags, uint64_t sector, uint32_t nr)
{
    struct rv_ublksrv_io_desc d;
    memset(&d, 0, sizeof d);
    d.op_flags = op | flags;
    d.start_sector = sector;
    d.nr_sectors = nr;
    return d;
}

static void test_decode(void)
{
    const uint64_t size = 64ull << 20;
    const uint32_t max_io = 512 << 10;
    struct rv_ublk_io io;
    struct rv_ublksrv_io_desc d;

    d = iod(RV_UBLK_IO_OP_READ, 0, 8, 8);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_READ);
    CU_ASSERT_EQUAL(io.off, 4096);
    CU_ASSERT_EQUAL(io.len, 4096);
    CU_ASSERT_EQUAL(io.flags, 0);

    d = iod(RV_UBLK_IO_OP_WRITE, RV_UBLK_IO_F_FUA, 0, 1024);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_WRITE);
    CU_ASSERT_EQUAL(io.flags, RV_IO_FUA);
    CU_ASSERT_EQUAL(io.len, max_io);

    d = iod(RV_UBLK_IO_OP_WRITE, RV_UBLK_IO_F_FAILFAST_DEV | RV_UBLK_IO_F_META, 0, 8);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.flags, 0);

    d = iod(RV_UBLK_IO_OP_FLUSH, 0, 0, 0);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_FLUSH);
    CU_ASSERT_EQUAL(io.len, 0);
    /* The block layer gives a flush sector -1 (found in the guest: mkfs
     * failed with EINVAL on every flush). */
    d = iod(RV_UBLK_IO_OP_FLUSH, 0, UINT64_MAX, 0);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_FLUSH);
    CU_ASSERT_EQUAL(io.off, 0);

    d = iod(RV_UBLK_IO_OP_DISCARD, 0, 2048, 2048);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_TRIM);
    CU_ASSERT_EQUAL(io.off, 1 << 20);
    CU_ASSERT_EQUAL(io.len, 1 << 20);   /* larger than max_io: fine for discard */

    d = iod(RV_UBLK_IO_OP_WRITE_ZEROES, RV_UBLK_IO_F_NOUNMAP, 0, 16);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.type, RV_IO_ZERO);
    CU_ASSERT_EQUAL(io.flags, RV_IO_NO_HOLE);
    d = iod(RV_UBLK_IO_OP_WRITE_ZEROES, 0, 0, 16);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    CU_ASSERT_EQUAL(io.flags, 0);

    /* Refusals. */
    d = iod(RV_UBLK_IO_OP_WRITE_SAME, 0, 0, 8);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), -EOPNOTSUPP);
    d = iod(13 /* ZONE_APPEND */, 0, 0, 8);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), -EOPNOTSUPP);
    d = iod(RV_UBLK_IO_OP_READ, 0, 0, (max_io >> 9) + 8);
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), -EINVAL);
    d = iod(RV_UBLK_IO_OP_WRITE, 0, (size >> 9) - 4, 8);          /* crosses the end */
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), -EINVAL);
    d = iod(RV_UBLK_IO_OP_READ, 0, (size >> 9) - 8, 8);           /* the last 4K */
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), 0);
    d = iod(RV_UBLK_IO_OP_READ, 0, UINT64_MAX, 8);                /* sector overflows bytes */
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, size, &io), -EINVAL);
    d = iod(RV_UBLK_IO_OP_DISCARD, 0, 0, UINT32_MAX);             /* > 32-bit byte length */
    CU_ASSERT_EQUAL(rv_ublk_decode(&d, max_io, 1ull << 42, &io), -EINVAL);
}

static void test_commit_result(void)
{
    struct rv_ublk_io io = { .type = RV_IO_READ, .len = 8192 };
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, 0), 8192);
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, -EIO), -EIO);
    io.type = RV_IO_WRITE;
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, 0), 8192);
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, -ENOSPC), -ENOSPC);
    io.type = RV_IO_FLUSH;
    io.len = 0;
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, 0), 0);
    io.type = RV_IO_TRIM;
    io.len = 1 << 20;
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, 0), 0);
    CU_ASSERT_EQUAL(rv_ublk_commit_result(&io, -EPERM), -EPERM);
}

static void test_opcodes(void)
{
    /* The kernel's values (include/uapi/linux/ublk_cmd.h, 6.12). */
    CU_ASSERT_EQUAL(rv_ublk_ctrl_op(RV_UBLK_F_CMD_IOCTL_ENCODE, RV_UBLK_CMD_ADD_DEV), 0xc0207504u);
    CU_ASSERT_EQUAL(rv_ublk_ctrl_op(RV_UBLK_F_CMD_IOCTL_ENCODE, RV_UBLK_CMD_GET_DEV_INFO), 0x80207502u);
    CU_ASSERT_EQUAL(rv_ublk_ctrl_op(RV_UBLK_F_CMD_IOCTL_ENCODE, RV_UBLK_CMD_START_USER_RECOVERY), 0xc0207510u);
    CU_ASSERT_EQUAL(rv_ublk_ctrl_op(0, RV_UBLK_CMD_GET_FEATURES), 0x80207513u);   /* ioctl form only */
    CU_ASSERT_EQUAL(rv_ublk_ctrl_op(0, RV_UBLK_CMD_ADD_DEV), RV_UBLK_CMD_ADD_DEV);
    CU_ASSERT_EQUAL(rv_ublk_io_op(RV_UBLK_F_CMD_IOCTL_ENCODE, RV_UBLK_IO_FETCH_REQ), 0xc0107520u);
    CU_ASSERT_EQUAL(rv_ublk_io_op(RV_UBLK_F_CMD_IOCTL_ENCODE, RV_UBLK_IO_COMMIT_AND_FETCH_REQ), 0xc0107521u);
    CU_ASSERT_EQUAL(rv_ublk_io_op(0, RV_UBLK_IO_COMMIT_AND_FETCH_REQ), RV_UBLK_IO_COMMIT_AND_FETCH_REQ);
}

static void test_offsets(void)
{
    CU_ASSERT_EQUAL(rv_ublk_desc_size(64, 4096), 4096);        /* 64 x 24 = 1536 */
    CU_ASSERT_EQUAL(rv_ublk_desc_size(256, 4096), 8192);       /* 6144 */
    CU_ASSERT_EQUAL(rv_ublk_desc_offset(0, 4096), 0);
    CU_ASSERT_EQUAL(rv_ublk_desc_offset(1, 4096), 98304);      /* 4096 x 24 */
    CU_ASSERT_EQUAL(rv_ublk_desc_offset(3, 4096), 3 * 98304);
    CU_ASSERT_EQUAL(rv_ublk_user_copy_offset(0, 0), 0x80000000ull);
    CU_ASSERT_EQUAL(rv_ublk_user_copy_offset(1, 2), 0x80000000ull + (1ull << 41) + (2ull << 25));
}

static void test_names(void)
{
    uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8 };
    CU_ASSERT_EQUAL(rv_ublk_volume_tag(uuid), 0x123456789abcdef0ull);
    uint8_t zero[16] = { 0 };
    CU_ASSERT_NOT_EQUAL(rv_ublk_volume_tag(zero), 0);
    CU_ASSERT_STRING_EQUAL(rv_ublk_state_name(RV_UBLK_S_DEV_QUIESCED), "quiesced");
    CU_ASSERT_STRING_EQUAL(rv_ublk_state_name(99), "unknown");
    char buf[128];
    rv_ublk_flags_str(RV_UBLK_F_USER_RECOVERY | RV_UBLK_F_USER_RECOVERY_REISSUE, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "recovery,reissue");
    rv_ublk_flags_str(0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "none");
    char tiny[6];
    rv_ublk_flags_str(K612, tiny, sizeof tiny);
    CU_ASSERT(memchr(tiny, '\0', sizeof tiny) != NULL);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "feature negotiation", test_negotiate },
        { "device parameters", test_params },
        { "request decoding", test_decode },
        { "commit results", test_commit_result },
        { "opcode encoding", test_opcodes },
        { "mmap and copy offsets", test_offsets },
        { "volume tag, names", test_names },
    };
    return UNIT_RUN("ublk", NULL, NULL, tests);
}
