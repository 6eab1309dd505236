/* ublk.h - the ublk frontend: the volume as a local block device /dev/ublkbN.
 *
 * Two layers:
 *   - pure protocol helpers (ublk/ublk_proto.c, in librepvol-core): feature
 *     negotiation, device parameters, request decoding, commit results and
 *     opcode selection.  No I/O; unit-tested on any machine.
 *   - the frontend (ublk/ublk_frontend.c, in librepvol-engine): talks to
 *     /dev/ublk-control and /dev/ublkcN through io_uring, one thread and ring
 *     per hardware queue, and hands every request to the volume engine on the
 *     daemon's event loop (see the comment at the top of that file).
 */
#ifndef REPVOL_UBLK_H
#define REPVOL_UBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "repvol/ublk_abi.h"

struct rv_frontend;
struct rv_volume;
struct rv_loop;

#define RV_UBLK_CONTROL_PATH "/dev/ublk-control"

/* The one line repvold prints where the kernel has no ublk driver. */
#define RV_UBLK_NO_DRIVER_MSG \
    "--ublk: no " RV_UBLK_CONTROL_PATH ": this kernel lacks ublk_drv (CONFIG_BLK_DEV_UBLK; try " \
    "'modprobe ublk_drv'); use the NBD frontend (--listen) instead"

/* ------------------------------------------------------------ options */

struct rv_ublk_opts {
    unsigned nr_queues;         /* hardware queues = threads (1..16) */
    unsigned queue_depth;       /* tags per queue (1..4096) */
    uint32_t max_io;            /* largest request, bytes (4K..volume max_request, power of two) */
    int dev_id;                 /* -1: any free id / find ours to recover */
    bool recovery;              /* ask for UBLK_F_USER_RECOVERY (+ REISSUE where offered) */
    bool user_copy;             /* ask for UBLK_F_USER_COPY (pread/pwrite on /dev/ublkcN) */
    bool readonly;
};

/* ------------------------------------------------------------ pure helpers */

/* What the server asks for, given what the kernel offers (GET_FEATURES;
 * 0 when the kernel predates that command).  Fills *flags with the device
 * flags for ADD_DEV; notes (recovery or copy mode unavailable) go to
 * why[] (may be empty).  Always succeeds: missing options degrade. */
void rv_ublk_negotiate(uint64_t kernel_features, const struct rv_ublk_opts *o, uint64_t *flags,
                       char *why, size_t why_len);

/* Device parameters for SET_PARAMS: size in bytes (rounded down to 512),
 * largest request, read-only.  The write cache is advertised as volatile
 * with FUA, so the kernel sends FLUSH for fsync and FUA for journal commits.
 * Returns 0 or -EINVAL (size 0, max_io not a multiple of 4K). */
int rv_ublk_build_params(struct rv_ublk_params *p, uint64_t size, uint32_t max_io, bool readonly);

/* Check parameters the way the 6.12 kernel does (ublk_validate_params):
 * 0 or -EINVAL, with the reason in why[]. */
int rv_ublk_check_params(const struct rv_ublk_params *p, uint32_t max_io_buf_bytes, char *why,
                         size_t why_len);

/* A decoded request, in the engine's terms (enum rv_io_type, RV_IO_*). */
struct rv_ublk_io {
    uint8_t type;
    uint8_t flags;
    uint64_t off;
    uint32_t len;
};

/* Decode one I/O descriptor.  -EOPNOTSUPP for operations the volume does
 * not do (WRITE_SAME, zoned), -EINVAL for a READ/WRITE larger than max_io
 * or a range past size. */
int rv_ublk_decode(const struct rv_ublksrv_io_desc *iod, uint32_t max_io, uint64_t size,
                   struct rv_ublk_io *out);

/* The value to COMMIT for a finished request: READ/WRITE the byte count,
 * other operations 0, failures the negative errno. */
int32_t rv_ublk_commit_result(const struct rv_ublk_io *io, int result);

/* The opcode of control command nr / I/O command nr: ioctl-encoded when the
 * kernel offers UBLK_F_CMD_IOCTL_ENCODE, else the legacy number. */
uint32_t rv_ublk_ctrl_op(uint64_t features, unsigned nr);
uint32_t rv_ublk_io_op(uint64_t features, unsigned nr);

/* Size and mmap offset of queue q's descriptor array on /dev/ublkcN. */
size_t rv_ublk_desc_size(unsigned depth, size_t page);
uint64_t rv_ublk_desc_offset(unsigned q, size_t page);

/* pread/pwrite offset of (q, tag) on /dev/ublkcN with USER_COPY. */
uint64_t rv_ublk_user_copy_offset(unsigned q, unsigned tag);

/* The 64-bit mark a daemon leaves in ublksrv_flags so that after a crash
 * its successor finds the device of this volume (first 8 bytes of the
 * volume UUID, never 0). */
uint64_t rv_ublk_volume_tag(const uint8_t uuid[16]);

const char *rv_ublk_state_name(unsigned state);
/* "recovery+reissue,ioctl-encode,user-copy" (the flags that matter here). */
void rv_ublk_flags_str(uint64_t flags, char *buf, size_t len);

/* ------------------------------------------------------------ frontend */

/* Is there a ublk driver?  0, or -ENOENT (no /dev/ublk-control) / -errno. */
int rv_ublk_available(void);

/* Create the frontend: opens the control device, adds (or, after a crash,
 * recovers) the device and sets its parameters.  ops->start() starts the
 * queues and the device; the device path is then rv_ublk_device_path(). */
int rv_ublk_frontend_create(struct rv_frontend **out, struct rv_volume *vol, struct rv_loop *loop,
                            const struct rv_ublk_opts *opts);
const char *rv_ublk_device_path(struct rv_frontend *fe);
/* Called once on the loop when the device is live (err 0) or failed to start. */
void rv_ublk_on_started(struct rv_frontend *fe, void (*cb)(struct rv_frontend *fe, int err));

/* Counters of requests the kernel sent (event-loop side). */
struct rv_ublk_stats {
    uint64_t requests, fua_writes, flushes, discards, write_zeroes, errors;
};
void rv_ublk_get_stats(struct rv_frontend *fe, struct rv_ublk_stats *st);

/* Remove a device left behind (a crashed daemon's, with recovery) by id:
 * STOP_DEV + DEL_DEV from this process.  0 or -errno. */
int rv_ublk_delete_device(int dev_id);

#endif
