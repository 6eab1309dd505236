/* ublk_abi.h - the ublk userspace block driver's kernel interface, as much of
 * it as repvol uses, defined here rather than taken from <linux/ublk_cmd.h>:
 * Debian 12's linux-libc-dev (6.1) lacks the ioctl-encoded opcodes
 * (UBLK_U_CMD_*, UBLK_U_IO_*), GET_FEATURES, USER_COPY and the newer flags.
 *
 * Matches include/uapi/linux/ublk_cmd.h of Linux 6.12 (the kernel the VM tests
 * boot); every layout below is fixed-width and checked against the kernel's
 * sizes with _Static_assert.  Names carry an RV_/rv_ prefix so this header can
 * coexist with the system one. */
#ifndef REPVOL_UBLK_ABI_H
#define REPVOL_UBLK_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

/* ------------------------------------------------------------ control commands
 * Sent as IORING_OP_URING_CMD on /dev/ublk-control (a ring with SQE128: the
 * command block is 32 bytes). */
#define RV_UBLK_CMD_GET_QUEUE_AFFINITY   0x01
#define RV_UBLK_CMD_GET_DEV_INFO         0x02
#define RV_UBLK_CMD_ADD_DEV              0x04
#define RV_UBLK_CMD_DEL_DEV              0x05
#define RV_UBLK_CMD_START_DEV            0x06
#define RV_UBLK_CMD_STOP_DEV             0x07
#define RV_UBLK_CMD_SET_PARAMS           0x08
#define RV_UBLK_CMD_GET_PARAMS           0x09
#define RV_UBLK_CMD_START_USER_RECOVERY  0x10
#define RV_UBLK_CMD_END_USER_RECOVERY    0x11
#define RV_UBLK_CMD_GET_DEV_INFO2        0x12
#define RV_UBLK_CMD_GET_FEATURES         0x13   /* ioctl-encoded form only */

/* Per-tag I/O commands, on /dev/ublkcN (16-byte command block). */
#define RV_UBLK_IO_FETCH_REQ             0x20
#define RV_UBLK_IO_COMMIT_AND_FETCH_REQ  0x21
#define RV_UBLK_IO_NEED_GET_DATA         0x22

/* Result of a FETCH / COMMIT_AND_FETCH completion. */
#define RV_UBLK_IO_RES_OK                0
#define RV_UBLK_IO_RES_NEED_GET_DATA     1
#define RV_UBLK_IO_RES_ABORT             (-19)  /* -ENODEV: the device is going away */

/* mmap offsets of /dev/ublkcN: queue q's descriptor array lives at
 * RV_UBLKSRV_CMD_BUF_OFFSET + q * rv_ublk_max_cmd_buf_size(). */
#define RV_UBLKSRV_CMD_BUF_OFFSET        0
#define RV_UBLKSRV_IO_BUF_OFFSET         0x80000000ULL
#define RV_UBLK_MAX_QUEUE_DEPTH          4096
#define RV_UBLK_MAX_NR_QUEUES            4096
/* USER_COPY: pread/pwrite offset of (queue, tag, byte) on /dev/ublkcN. */
#define RV_UBLK_IO_BUF_BITS              25
#define RV_UBLK_TAG_OFF                  RV_UBLK_IO_BUF_BITS
#define RV_UBLK_TAG_BITS                 16
#define RV_UBLK_QID_OFF                  (RV_UBLK_TAG_OFF + RV_UBLK_TAG_BITS)

/* Device features (ublksrv_ctrl_dev_info.flags; GET_FEATURES reports the
 * ones the kernel knows). */
#define RV_UBLK_F_SUPPORT_ZERO_COPY      (1ULL << 0)
#define RV_UBLK_F_URING_CMD_COMP_IN_TASK (1ULL << 1)
#define RV_UBLK_F_NEED_GET_DATA          (1ULL << 2)
#define RV_UBLK_F_USER_RECOVERY          (1ULL << 3)
#define RV_UBLK_F_USER_RECOVERY_REISSUE  (1ULL << 4)
#define RV_UBLK_F_UNPRIVILEGED_DEV       (1ULL << 5)
#define RV_UBLK_F_CMD_IOCTL_ENCODE       (1ULL << 6)
#define RV_UBLK_F_USER_COPY              (1ULL << 7)
#define RV_UBLK_F_ZONED                  (1ULL << 8)
#define RV_UBLK_F_USER_RECOVERY_FAIL_IO  (1ULL << 9)

/* Device states (ublksrv_ctrl_dev_info.state). */
#define RV_UBLK_S_DEV_DEAD               0
#define RV_UBLK_S_DEV_LIVE               1
#define RV_UBLK_S_DEV_QUIESCED           2
#define RV_UBLK_S_DEV_FAIL_IO            3

/* Request operations (low 8 bits of ublksrv_io_desc.op_flags) and flags. */
#define RV_UBLK_IO_OP_READ               0
#define RV_UBLK_IO_OP_WRITE              1
#define RV_UBLK_IO_OP_FLUSH              2
#define RV_UBLK_IO_OP_DISCARD            3
#define RV_UBLK_IO_OP_WRITE_SAME         4
#define RV_UBLK_IO_OP_WRITE_ZEROES       5
#define RV_UBLK_IO_F_FAILFAST_DEV        (1U << 8)
#define RV_UBLK_IO_F_FAILFAST_TRANSPORT  (1U << 9)
#define RV_UBLK_IO_F_FAILFAST_DRIVER     (1U << 10)
#define RV_UBLK_IO_F_META                (1U << 11)
#define RV_UBLK_IO_F_FUA                 (1U << 13)
#define RV_UBLK_IO_F_NOUNMAP             (1U << 15)
#define RV_UBLK_IO_F_SWAP                (1U << 16)

/* Control command block (sqe->cmd). */
struct rv_ublksrv_ctrl_cmd {
    uint32_t dev_id;            /* target device; (uint32_t)-1 with ADD_DEV: any free id */
    uint16_t queue_id;          /* (uint16_t)-1 unless the command is for a queue */
    uint16_t len;               /* bytes at addr */
    uint64_t addr;              /* in/out buffer */
    uint64_t data[1];           /* inline argument (START_DEV: the server's pid) */
    uint16_t dev_path_len;      /* UNPRIVILEGED_DEV / GET_DEV_INFO2 only */
    uint16_t pad;
    uint32_t reserved;
};

struct rv_ublksrv_ctrl_dev_info {
    uint16_t nr_hw_queues;
    uint16_t queue_depth;
    uint16_t state;             /* RV_UBLK_S_DEV_* */
    uint16_t pad0;
    uint32_t max_io_buf_bytes;
    uint32_t dev_id;
    int32_t ublksrv_pid;
    uint32_t pad1;
    uint64_t flags;             /* RV_UBLK_F_* */
    uint64_t ublksrv_flags;     /* the server's own; kept by the kernel, never interpreted */
    uint32_t owner_uid;
    uint32_t owner_gid;
    uint64_t reserved1;
    uint64_t reserved2;
};

/* One per tag, in the mmap'ed descriptor array of a queue. */
struct rv_ublksrv_io_desc {
    uint32_t op_flags;          /* op: bits 0-7, flags: bits 8-31 */
    uint32_t nr_sectors;
    uint64_t start_sector;
    uint64_t addr;              /* the buffer given with FETCH */
};

/* Per-tag I/O command block (sqe->cmd). */
struct rv_ublksrv_io_cmd {
    uint16_t q_id;
    uint16_t tag;
    int32_t result;             /* COMMIT: bytes done or -errno */
    uint64_t addr;              /* FETCH/COMMIT: the tag's buffer (unused with USER_COPY) */
};

#define RV_UBLK_ATTR_READ_ONLY           (1U << 0)
#define RV_UBLK_ATTR_ROTATIONAL          (1U << 1)
#define RV_UBLK_ATTR_VOLATILE_CACHE      (1U << 2)
#define RV_UBLK_ATTR_FUA                 (1U << 3)

struct rv_ublk_param_basic {
    uint32_t attrs;             /* RV_UBLK_ATTR_* */
    uint8_t logical_bs_shift;
    uint8_t physical_bs_shift;
    uint8_t io_opt_shift;
    uint8_t io_min_shift;
    uint32_t max_sectors;
    uint32_t chunk_sectors;
    uint64_t dev_sectors;
    uint64_t virt_boundary_mask;
};

struct rv_ublk_param_discard {
    uint32_t discard_alignment;
    uint32_t discard_granularity;
    uint32_t max_discard_sectors;
    uint32_t max_write_zeroes_sectors;
    uint16_t max_discard_segments;
    uint16_t reserved0;
};

struct rv_ublk_param_devt {     /* read-only: filled by the kernel after START_DEV */
    uint32_t char_major;
    uint32_t char_minor;
    uint32_t disk_major;
    uint32_t disk_minor;
};

struct rv_ublk_param_zoned {
    uint32_t max_open_zones;
    uint32_t max_active_zones;
    uint32_t max_zone_append_sectors;
    uint8_t reserved[20];
};

#define RV_UBLK_PARAM_TYPE_BASIC         (1U << 0)
#define RV_UBLK_PARAM_TYPE_DISCARD       (1U << 1)
#define RV_UBLK_PARAM_TYPE_DEVT          (1U << 2)
#define RV_UBLK_PARAM_TYPE_ZONED         (1U << 3)

struct rv_ublk_params {
    uint32_t len;               /* sizeof this struct (the kernel copies at most what it knows) */
    uint32_t types;             /* RV_UBLK_PARAM_TYPE_* present */
    struct rv_ublk_param_basic basic;
    struct rv_ublk_param_discard discard;
    struct rv_ublk_param_devt devt;
    struct rv_ublk_param_zoned zoned;
};

_Static_assert(sizeof(struct rv_ublksrv_ctrl_cmd) == 32, "ublksrv_ctrl_cmd is 32 bytes");
_Static_assert(sizeof(struct rv_ublksrv_ctrl_dev_info) == 64, "ublksrv_ctrl_dev_info is 64 bytes");
_Static_assert(sizeof(struct rv_ublksrv_io_desc) == 24, "ublksrv_io_desc is 24 bytes");
_Static_assert(sizeof(struct rv_ublksrv_io_cmd) == 16, "ublksrv_io_cmd is 16 bytes");
_Static_assert(sizeof(struct rv_ublk_param_basic) == 32, "ublk_param_basic is 32 bytes");
_Static_assert(sizeof(struct rv_ublk_param_discard) == 20, "ublk_param_discard is 20 bytes");
_Static_assert(sizeof(struct rv_ublk_param_devt) == 16, "ublk_param_devt is 16 bytes");
_Static_assert(sizeof(struct rv_ublk_param_zoned) == 32, "ublk_param_zoned is 32 bytes");
_Static_assert(sizeof(struct rv_ublk_params) == 112, "ublk_params (6.12, with zoned) is 112 bytes");

/* Opcodes: ioctl-encoded (UBLK_F_CMD_IOCTL_ENCODE, the only form new
 * commands have) and the legacy bare numbers. */
#define RV_UBLK_U_CMD(nr)  ((uint32_t)_IOWR('u', (nr), struct rv_ublksrv_ctrl_cmd))
#define RV_UBLK_U_CMD_R(nr) ((uint32_t)_IOR('u', (nr), struct rv_ublksrv_ctrl_cmd))
#define RV_UBLK_U_IO(nr)   ((uint32_t)_IOWR('u', (nr), struct rv_ublksrv_io_cmd))

#endif
