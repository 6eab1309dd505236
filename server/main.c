/* main.c - repvold: serve one volume (an image file) over NBD.
 *
 * Start-up order matters for the localhost-NBD deadlock: the daemon may
 * serve a file system mounted on this very host, so before serving it marks
 * itself as an I/O flusher (PR_SET_IO_FLUSHER: its own allocations don't
 * recurse into file system reclaim), preallocates every request buffer and
 * locks its memory (mlockall), so completing a write never waits on reclaim
 * that waits on that write. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "repvol/control.h"
#include "repvol/frontend.h"
#include "repvol/log.h"
#include "repvol/netaddr.h"
#include "repvol/tls.h"
#include "repvol/loop.h"
#include "repvol/peer_link.h"
#include "repvol/repl_proto.h"
#include "repvol/roles.h"
#include "repvol/status.h"
#include "repvol/ublk.h"
#include "repvol/util.h"
#include "repvol/volume.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#if defined(__SANITIZE_ADDRESS__)
#define RV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RV_ASAN 1
#endif
#endif

#define MAX_LISTEN 8

struct daemon {
    struct rv_loop loop;
    struct rv_volume vol;
    struct rv_frontend *nbd;
    struct rv_frontend *ublk;   /* NULL unless --ublk / 'repvol attach' */
    unsigned fe_live;           /* frontends not yet drained during shutdown */
    struct rv_op ublk_gone_op;  /* destroy a detached ublk frontend, from the loop */
    struct rv_frontend *ublk_dead;  /* detached, to be destroyed */
    struct rv_ublk_opts ublk_opts;  /* --ublk-* options, for --ublk and 'repvol attach' */
    bool want_ublk;             /* --ublk: a device whenever this node is primary */
    struct rv_control *control;
    struct rv_peer *peer;
    int sigfd;
    struct signalfd_siginfo siginfo;
    struct rv_op sig_op;
    bool shutting_down;
    bool ublk_runtime;          /* attached through the control socket */
    int exit_code;
};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: repvold --volume PATH.img --listen ADDR [--listen ADDR...] [options]\n"
"       repvold --volume PATH.img --ublk [options]\n"
"\n"
"Serve a repvol volume (an image made by 'repvol create') over NBD and/or as a\n"
"local block device /dev/ublkbN (ublk).\n"
"Runs in the foreground; SIGTERM or SIGINT stops it cleanly: requests already\n"
"received complete and are answered, the image is flushed and marked clean.\n"
"\n"
"  -v, --volume PATH        the image file\n"
"  -l, --listen ADDR        unix:/path/to.sock or tcp:HOST:PORT (repeatable)\n"
"      --export-name NAME   name announced to NBD_OPT_LIST (default: volume name);\n"
"                           clients may also ask for the empty name\n"
"      --cache MODE         direct (default): O_DIRECT for aligned I/O;\n"
"                           buffered: through the page cache\n"
"      --readonly           refuse writes\n"
"      --max-request SIZE   largest read/write accepted (default 32M)\n"
"      --buffer-mem SIZE    memory preallocated for request buffers (default 64M)\n"
"      --max-connections N  (default 64)\n"
"      --max-inflight N     requests in flight per connection (default 128)\n"
"      --handshake-timeout S  close a client still negotiating after S seconds\n"
"                           (default 10): idle connections can't hold the\n"
"                           --max-connections places for long\n"
"      --send-timeout S     close a client that has read none of its replies for\n"
"                           S seconds (default 30): it holds its READs' buffers\n"
"      --no-mlock           don't lock memory (not recommended when a file system\n"
"                           on this host is mounted from the volume)\n"
"      --control PATH       control socket for 'repvol status' and friends\n"
"                           (default /run/repvol/VOLUME-NAME.ctl)\n"
"      --pidfile FILE       write the daemon's pid\n"
"\n"
"TLS for NBD clients (NBD_OPT_STARTTLS, as nbdkit and libnbd do it):\n"
"      --tls MODE           off (default), on (clients choose) or require (plaintext\n"
"                           clients get NBD_REP_ERR_TLS_REQD); giving credentials\n"
"                           without --tls means require\n"
"      --tls-psk FILE       pre-shared keys, lines 'username:hexkey' (psktool -u)\n"
"      --tls-certificates DIR  X.509: DIR/ca-cert.pem, server-cert.pem,\n"
"                           server-key.pem (clients must present a certificate\n"
"                           signed by that CA)\n"
"      --insecure           allow NBD or replication on a non-loopback address\n"
"                           without TLS (refused otherwise: anyone who reaches\n"
"                           the port could read and overwrite the volume)\n"
"Key files must be readable by their owner only (root or this user).\n"
"\n"
"Local block device (ublk; needs the kernel's ublk_drv, Linux >= 6.0, and root):\n"
"      --ublk               serve the volume as /dev/ublkbN (the path is printed on\n"
"                           stdout once the device is live); without /dev/ublk-control\n"
"                           the daemon says so and exits 1 (use --listen for NBD).\n"
"                           Stopping the daemon removes the device.  If the daemon\n"
"                           dies (kill -9, crash), the device stays and I/O pauses;\n"
"                           restarting it with --ublk re-attaches and resumes\n"
"                           (UBLK_F_USER_RECOVERY, with _REISSUE).  A secondary\n"
"                           creates the device when it is promoted\n"
"      --ublk-id N          device number to create or to recover (default: the one\n"
"                           a crashed daemon of this volume left, else any free)\n"
"      --ublk-queues N      hardware queues, one thread each (default 2)\n"
"      --ublk-depth N       requests in flight per queue (default 64)\n"
"      --ublk-max-io SIZE   largest request (default 512K)\n"
"      --ublk-no-recovery   the device goes away with the daemon\n"
"      --ublk-user-copy     copy data with pread/pwrite on /dev/ublkcN\n"
"                           (UBLK_F_USER_COPY) instead of the mapped buffers\n"
"\n"
"Replication (DRBD-style, to one peer node over TCP):\n"
"      --peer HOST:PORT     the peer's replication address (the primary dials it)\n"
"      --repl-listen HOST:PORT  accept the peer's connection here\n"
"      --node-id N          this node's id, 0..31, different on the two nodes\n"
"      --force-primary      serve as primary even a copy that is not UpToDate\n"
"                           (Inconsistent: an unfinished sync; Outdated: behind)\n"
"      --role ROLE          primary (serves clients, sends writes) or secondary\n"
"                           (applies the primary's writes, exports nothing);\n"
"                           default: primary without --peer/--repl-listen, else\n"
"                           the role recorded in the volume\n"
"      --protocol MODE      when a write is acknowledged to the client:\n"
"                           C (default): written on both nodes (FUA and FLUSH:\n"
"                              on stable storage on both);\n"
"                           B: written here and received by the peer (lost only\n"
"                              if both nodes fail at once);\n"
"                           A: written here and queued for the peer (a 32M send\n"
"                              buffer; when it fills, the lagging peer is dropped\n"
"                              and resynced later; a crash of this node can lose\n"
"                              what was queued)\n"
"      --peer-timeout MS    declare a silent peer dead after this long (6000); one\n"
"                           that answers keepalives but completes no write for\n"
"                           4 times as long (its disk hangs) is dropped too\n"
"      --resync-rate RATE   cap resync traffic, bytes/s (e.g. 50M); default no cap\n"
"      --split-brain-policy P  when both nodes changed the data while apart:\n"
"                           disconnect (default: refuse, an operator decides),\n"
"                           discard-zero-changes (a side that changed nothing\n"
"                           takes the other's data), discard-least-changes (the\n"
"                           side with fewer changed bytes takes the other's);\n"
"                           a primary's data is never discarded automatically\n"
"      --fence-peer-handler PATH  mode C: when the primary loses its peer, run\n"
"                           PATH (env REPVOL_VOLUME, REPVOL_PEER, REPVOL_NODE_ID,\n"
"                           REPVOL_UUID) and hold writes the peer lacks until it\n"
"                           exits 0 (it fences or outdates the peer); on failure\n"
"                           they stay held until 'repvol resume-io'\n"
"      --resync-checksum    a full sync compares SHA-256 digests per 4K block and\n"
"                           sends only blocks that differ (after an unclean split,\n"
"                           when the peer already holds most of the data)\n"
"                           (at most 8 x 256K in flight)\n"
"      --repl-tls-psk FILE  TLS 1.3 with a pre-shared key on the replication link\n"
"                           (the same 'identity:hexkey' file on both nodes)\n"
"      --repl-tls-identity NAME  the identity to use from that file (default:\n"
"                           its first line); the listener accepts only it\n"
"      --repl-tls-certificates DIR  TLS with X.509 on the link: DIR/ca-cert.pem,\n"
"                           server-cert.pem + server-key.pem (accepting) and\n"
"                           client-cert.pem + client-key.pem (dialing)\n"
"      --repl-tls-peer-name NAME  the name the peer's certificate must carry\n"
"                           (default: the host part of --peer)\n"
"      --log-level LEVEL    error, warn, info (default) or debug\n"
"  -h, --help               this text\n"
"\n"
"Durability: a write is answered once the image file has it (page cache or\n"
"device); FUA writes and FLUSH are answered once on stable storage.  The ublk\n"
"device advertises a volatile write cache with FUA, so fsync reaches the image\n"
"(and, in mode C, the peer) as a FLUSH.\n");
}

static void on_signal(struct rv_op *op, int res);

static void arm_signal(struct daemon *d)
{
    d->sig_op.fn = on_signal;
    struct io_uring_sqe *sqe = rv_loop_sqe(&d->loop, &d->sig_op);
    io_uring_prep_read(sqe, d->sigfd, &d->siginfo, sizeof d->siginfo, 0);
}

static int cmd_ublk(void *ctx, int argc, char **argv, struct rv_strbuf *out);

static int cmd_status(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    bool json = argc > 1 && !strcmp(argv[1], "json");
    rv_status_render(&d->vol, d->nbd, json, out);
    if (!json && d->nbd->ops->describe) {
        rv_sb_printf(out, "nbd:         ");
        d->nbd->ops->describe(d->nbd, out);
    }
    if (!json && d->ublk) {
        rv_sb_printf(out, "ublk:        ");
        cmd_ublk(ctx, 0, NULL, out);
    } else if (json && out->len >= 2 && !strcmp(out->buf + out->len - 2, "}\n")) {
        /* One more member in the status object: "ublk": null or the device. */
        out->len -= 2;
        if (!d->ublk) {
            rv_sb_printf(out, ",\"ublk\":null}\n");
            return 0;
        }
        struct rv_ublk_stats st;
        rv_ublk_get_stats(d->ublk, &st);
        rv_sb_printf(out, ",\"ublk\":{\"device\":");
        rv_sb_json_str(out, rv_ublk_device_path(d->ublk));
        rv_sb_printf(out, ",\"requests\":%" PRIu64 ",\"fua_writes\":%" PRIu64 ",\"flushes\":%" PRIu64
                     ",\"discards\":%" PRIu64 ",\"write_zeroes\":%" PRIu64 ",\"errors\":%" PRIu64 "}}\n",
                     st.requests, st.fua_writes, st.flushes, st.discards, st.write_zeroes, st.errors);
    }
    return 0;
}

static void peer_closed(void *arg)
{
    struct daemon *d = arg;
    rv_loop_stop(&d->loop);
}

static int cmd_verify(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (!d->peer) {
        rv_sb_printf(out, "this volume has no peer to compare with");
        return -ENOTCONN;
    }
    bool mark = argc > 1 && !strcmp(argv[1], "resync");
    char msg[160];
    int r = rv_peer_verify(d->peer, mark, msg, sizeof msg);
    rv_sb_printf(out, "%s\n", msg);
    return r;
}

/* "progress": one line per activity, space-separated, for the CLI's
 * --watch and verify --wait (the JSON status has the same, for scripts). */
static int cmd_progress(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (d->peer)
        rv_peer_progress(d->peer, out);
    else
        rv_sb_printf(out, "peer none\n");
    return 0;
}

static bool has_arg(int argc, char **argv, const char *word)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], word))
            return true;
    return false;
}

static int ublk_attach(struct daemon *d);

static int cmd_primary(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    int r = rv_role_promote(&d->vol, d->peer, has_arg(argc, argv, "force"), out);
    /* Started with --ublk as a secondary: the device comes with the role. */
    if (r == 0 && d->want_ublk && !d->ublk && !d->ublk_dead && d->vol.role == RV_ROLE_PRIMARY) {
        d->ublk_runtime = true;
        if (ublk_attach(d) == 0)
            rv_sb_printf(out, "%s\n", rv_ublk_device_path(d->ublk));
        else
            rv_sb_printf(out, "the ublk device could not be created (see the daemon's log)\n");
    }
    return r;
}

static int cmd_secondary(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (d->ublk) {
        rv_sb_printf(out, "the volume is attached as %s: detach it first ('repvol detach')",
                     rv_ublk_device_path(d->ublk));
        return -EBUSY;
    }
    return rv_role_demote(&d->vol, d->peer, d->nbd, has_arg(argc, argv, "force"), out);
}

static int cmd_connect(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (!d->peer) {
        rv_sb_printf(out, "this volume has no peer configured (--peer/--repl-listen)");
        return -ENOTCONN;
    }
    char msg[160];
    int r = rv_peer_connect(d->peer, has_arg(argc, argv, "discard-my-data"), msg, sizeof msg);
    rv_sb_printf(out, "%s\n", msg);
    return r;
}

static int cmd_resume_io(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (d->peer)
        rv_peer_resume_io(d->peer);
    rv_sb_printf(out, "I/O resumed\n");
    return 0;
}

/* A fence script on the surviving primary asks the other node to mark its
 * copy Outdated (it is behind): it will then refuse promotion without
 * --force. */
static int cmd_outdate(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (d->vol.role == RV_ROLE_PRIMARY) {
        rv_sb_printf(out, "a primary cannot be outdated");
        return -EPERM;
    }
    if (d->peer && rv_peer_connected(d->peer)) {
        rv_sb_printf(out, "connected to the primary: the copy is current");
        return -EBUSY;
    }
    if (d->vol.meta.disk_state == RV_DISK_UPTODATE)
        d->vol.meta.disk_state = RV_DISK_OUTDATED;
    /* The fence-peer handler's success rests on this answer: give it only
     * once the state is on disk (model finding 8: a crash before the flush
     * brought the copy back UpToDate and promotable). */
    int r = rv_volume_meta_write_now(&d->vol);
    if (r == -EAGAIN) {
        rv_volume_meta_commit(&d->vol, NULL);
        rv_sb_printf(out, "a metadata flush is in progress; try again");
        return -EAGAIN;         /* the CLI retries */
    }
    if (r < 0) {
        rv_sb_printf(out, "cannot record the Outdated state: %s", strerror(-r));
        return r;
    }
    rv_info("volume %s: marked Outdated", d->vol.meta.name);
    rv_sb_printf(out, "%s\n", rv_disk_state_name(d->vol.meta.disk_state));
    return 0;
}

static void ublk_started(struct rv_frontend *fe, int err);
static void ublk_drained(struct rv_frontend *fe);

/* "ublk": the device path, or "none". */
static int cmd_ublk(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (!d->ublk) {
        rv_sb_printf(out, "none\n");
        return 0;
    }
    struct rv_ublk_stats st;
    rv_ublk_get_stats(d->ublk, &st);
    rv_sb_printf(out, "%s requests %" PRIu64 " fua_writes %" PRIu64 " flushes %" PRIu64 " discards %" PRIu64
                 " write_zeroes %" PRIu64 " errors %" PRIu64 "\n", rv_ublk_device_path(d->ublk), st.requests,
                 st.fua_writes, st.flushes, st.discards, st.write_zeroes, st.errors);
    return 0;
}

static int ublk_attach(struct daemon *d)
{
    if (d->vol.role != RV_ROLE_PRIMARY) {
        rv_err("volume %s: --ublk: only a primary serves its volume (this node is %s)", d->vol.meta.name,
               rv_role_name(d->vol.role));
        return -EPERM;
    }
    d->ublk_opts.readonly = d->vol.readonly;
    int r = rv_ublk_frontend_create(&d->ublk, &d->vol, &d->loop, &d->ublk_opts);
    if (r < 0) {
        d->ublk = NULL;
        return r;
    }
    d->ublk->owner = d;
    d->ublk->drained = ublk_drained;
    rv_ublk_on_started(d->ublk, ublk_started);
    r = d->ublk->ops->start(d->ublk);
    if (r < 0) {
        d->ublk->ops->destroy(d->ublk);
        d->ublk = NULL;
    }
    return r;
}

/* "ublk-attach": create the device now (as --ublk does at start-up). */
static int cmd_ublk_attach(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (d->ublk) {
        rv_sb_printf(out, "already attached as %s\n", rv_ublk_device_path(d->ublk));
        return -EEXIST;
    }
    if (rv_ublk_available() < 0) {
        rv_warn("attach: %s", RV_UBLK_NO_DRIVER_MSG);
        rv_sb_printf(out, "%s\n", RV_UBLK_NO_DRIVER_MSG);
        return -ENODEV;
    }
    d->ublk_runtime = true;
    int r = ublk_attach(d);
    if (r < 0) {
        rv_sb_printf(out, "cannot create the ublk device: %s (see the daemon's log)\n", strerror(-r));
        return r;
    }
    rv_sb_printf(out, "%s\n", rv_ublk_device_path(d->ublk));
    return 0;
}

/* "ublk-detach": remove the device (requests in flight finish first). */
static int cmd_ublk_detach(void *ctx, int argc, char **argv, struct rv_strbuf *out)
{
    struct daemon *d = ctx;
    if (!d->ublk) {
        rv_sb_printf(out, "no ublk device attached\n");
        return -ENOENT;
    }
    rv_sb_printf(out, "%s\n", rv_ublk_device_path(d->ublk));
    d->ublk->ops->shutdown(d->ublk);
    return 0;
}

static const struct rv_control_cmd control_cmds[] = {
    { "ublk", cmd_ublk },
    { "ublk-attach", cmd_ublk_attach },
    { "ublk-detach", cmd_ublk_detach },
    { "resume-io", cmd_resume_io },
    { "outdate", cmd_outdate },
    { "primary", cmd_primary },
    { "secondary", cmd_secondary },
    { "connect", cmd_connect },
    { "status", cmd_status },
    { "verify", cmd_verify },
    { "progress", cmd_progress },
    { NULL, NULL },
};

static void frontend_drained(struct rv_frontend *fe)
{
    struct daemon *d = fe->owner;
    if (d->fe_live > 1) {
        d->fe_live--;
        return;
    }
    d->fe_live = 0;
    rv_info("all requests answered; flushing the image");
    /* The link goes last: client writes in flight needed it. */
    if (d->peer)
        rv_peer_shutdown(d->peer, peer_closed, d);
    else
        rv_loop_stop(&d->loop);
}

/* Stop every frontend; the last one drained stops the link and the loop. */
static void daemon_shutdown(struct daemon *d)
{
    d->shutting_down = true;
    d->fe_live = 1 + (d->ublk ? 1 : 0);
    if (d->ublk)
        d->ublk->ops->shutdown(d->ublk);
    d->nbd->ops->shutdown(d->nbd);
}

static void ublk_gone(struct rv_op *op, int res)
{
    struct daemon *d = RV_CONTAINER_OF(op, struct daemon, ublk_gone_op);
    if (d->ublk_dead) {
        d->ublk_dead->ops->destroy(d->ublk_dead);
        d->ublk_dead = NULL;
    }
}

static void ublk_drained(struct rv_frontend *fe)
{
    struct daemon *d = fe->owner;
    if (d->shutting_down) {
        frontend_drained(fe);
        return;
    }
    /* Detached at run time: free it on the next turn (not from inside its
     * own callback). */
    d->ublk = NULL;
    d->ublk_dead = fe;
    d->ublk_gone_op.fn = ublk_gone;
    rv_loop_defer(&d->loop, &d->ublk_gone_op, 0);
}

/* The device is live: its path goes to stdout (scripts read it there). */
static void ublk_started(struct rv_frontend *fe, int err)
{
    struct daemon *d = fe->owner;
    if (err == 0) {
        printf("%s\n", rv_ublk_device_path(fe));
        fflush(stdout);
        return;
    }
    if (!d->shutting_down && d->exit_code == 0 && !d->ublk_runtime) {
        rv_err("volume %s: the ublk device did not start; shutting down", d->vol.meta.name);
        d->exit_code = 1;
        rv_control_stop(d->control);
        d->control = NULL;
        daemon_shutdown(d);
    } else if (!d->shutting_down) {
        fe->ops->shutdown(fe);          /* 'repvol attach' failed: remove it again */
    }
}

static void on_signal(struct rv_op *op, int res)
{
    struct daemon *d = RV_CONTAINER_OF(op, struct daemon, sig_op);
    if (res != (int)sizeof d->siginfo) {
        if (res < 0 && res != -EINTR && res != -EAGAIN)
            rv_err("reading signals: %s", strerror(-res));
        arm_signal(d);
        return;
    }
    RV_MARK_DEFINED(&d->siginfo, sizeof d->siginfo);
    int sig = (int)d->siginfo.ssi_signo;
    if (d->shutting_down) {
        rv_warn("signal %d again: still waiting for %u request(s) to finish",
                sig, d->nbd->ops->inflight(d->nbd));
    } else {
        d->shutting_down = true;
        rv_control_stop(d->control);
        d->control = NULL;
        rv_info("signal %d (%s): shutting down, finishing %u request(s) in flight", sig,
                strsignal(sig), d->nbd->ops->inflight(d->nbd) + (d->ublk ? d->ublk->ops->inflight(d->ublk) : 0));
        daemon_shutdown(d);
    }
    arm_signal(d);
}

static int write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
        rv_err("pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void harden_memory(bool want_mlock, size_t pool_bytes)
{
    /* Without CAP_SYS_RESOURCE this fails; say so, the daemon still works. */
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
        rv_warn("PR_SET_IO_FLUSHER: %s (reclaim may wait on this daemon)", strerror(errno));
    if (!want_mlock)
        return;
#ifdef RV_ASAN
    (void)pool_bytes;
    rv_info("sanitizer build: not locking memory");
#else
    if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
        char sz[32];
        rv_warn("mlockall (%s of buffers): %s; memory not locked", rv_format_size(pool_bytes, sz, sizeof sz),
                strerror(errno));
    }
#endif
}

struct tls_opts {
    int nbd_mode;                       /* enum nbd_hs_tls, -1 = not given */
    const char *nbd_psk, *nbd_certs;
    const char *repl_psk, *repl_identity, *repl_certs, *repl_peer_name;
    bool insecure;
};

static int make_ctx(const struct rv_tls_config *cfg, struct rv_tls_ctx **out, const char *what)
{
    char msg[RV_TLS_ERR_MAX];
    int r = rv_tls_ctx_new(cfg, out, msg, sizeof msg);
    if (r < 0)
        fprintf(stderr, "repvold: %s: %s\n", what, msg);
    return r;
}

/* Check the TLS options, load the credentials, and refuse to expose the
 * volume beyond this machine without TLS unless told --insecure. */
static int setup_tls(struct tls_opts *t, const char *const *listen, struct rv_peer_opts *popts,
                     struct rv_nbd_opts *nopts)
{
    /* NBD */
    bool nbd_creds = t->nbd_psk || t->nbd_certs;
    if (t->nbd_psk && t->nbd_certs) {
        fprintf(stderr, "repvold: give --tls-psk or --tls-certificates, not both\n");
        return -EINVAL;
    }
    if (t->nbd_mode < 0)
        t->nbd_mode = nbd_creds ? NBD_HS_TLS_REQUIRE : NBD_HS_TLS_OFF;
    if (t->nbd_mode != NBD_HS_TLS_OFF && !nbd_creds) {
        fprintf(stderr, "repvold: --tls %s needs credentials: --tls-psk FILE or --tls-certificates DIR\n",
                t->nbd_mode == NBD_HS_TLS_ON ? "on" : "require");
        return -EINVAL;
    }
    if (t->nbd_mode == NBD_HS_TLS_OFF && nbd_creds) {
        fprintf(stderr, "repvold: --tls off contradicts --tls-psk/--tls-certificates\n");
        return -EINVAL;
    }
    if (t->nbd_mode != NBD_HS_TLS_OFF) {
        struct rv_tls_config cfg = { .kind = t->nbd_psk ? RV_TLS_PSK : RV_TLS_X509, .psk_file = t->nbd_psk,
                                     .x509_dir = t->nbd_certs, .server = true };
        if (make_ctx(&cfg, &nopts->tls, t->nbd_psk ? "--tls-psk" : "--tls-certificates") < 0)
            return -EINVAL;
        nopts->tls_mode = (enum nbd_hs_tls)t->nbd_mode;
    }
    for (unsigned i = 0; listen[i]; i++) {
        if (strncmp(listen[i], "tcp:", 4) || t->nbd_mode == NBD_HS_TLS_REQUIRE || t->insecure)
            continue;
        int lo = rv_hostport_is_loopback(listen[i]);
        if (lo < 0) {
            fprintf(stderr, "repvold: --listen %s: cannot resolve the host\n", listen[i]);
            return -EINVAL;
        }
        if (!lo) {
            fprintf(stderr, "repvold: refusing to serve NBD on %s without TLS: anyone who can reach it could "
                    "read and overwrite the volume; use --tls require with --tls-psk FILE or "
                    "--tls-certificates DIR, or --insecure to do it anyway\n", listen[i]);
            return -EPERM;
        }
    }

    /* Replication link */
    if (t->repl_psk && t->repl_certs) {
        fprintf(stderr, "repvold: give --repl-tls-psk or --repl-tls-certificates, not both\n");
        return -EINVAL;
    }
    bool repl_tls = t->repl_psk || t->repl_certs;
    if (!repl_tls && (t->repl_identity || t->repl_peer_name)) {
        fprintf(stderr, "repvold: --repl-tls-identity/--repl-tls-peer-name need --repl-tls-psk or "
                "--repl-tls-certificates\n");
        return -EINVAL;
    }
    if (repl_tls) {
        char peer_host[256] = "";
        if (t->repl_peer_name)
            snprintf(peer_host, sizeof peer_host, "%s", t->repl_peer_name);
        else if (popts->peer)
            rv_hostport_host(popts->peer, peer_host, sizeof peer_host);
        struct rv_tls_config cfg = { .kind = t->repl_psk ? RV_TLS_PSK : RV_TLS_X509, .psk_file = t->repl_psk,
                                     .psk_identity = t->repl_identity, .x509_dir = t->repl_certs,
                                     .peer_name = peer_host[0] ? peer_host : NULL };
        const char *what = t->repl_psk ? "--repl-tls-psk" : "--repl-tls-certificates";
        if (popts->peer) {
            cfg.server = false;
            if (make_ctx(&cfg, &popts->tls_client, what) < 0)
                return -EINVAL;
        }
        if (popts->listen) {
            cfg.server = true;
            if (make_ctx(&cfg, &popts->tls_server, what) < 0)
                return -EINVAL;
            if (t->repl_certs && !cfg.peer_name)
                rv_warn("--repl-tls-certificates without --peer or --repl-tls-peer-name: any certificate "
                        "signed by the CA may connect as the peer");
        }
        popts->tls_desc = t->repl_psk ? "PSK" : "X.509";
        return 0;
    }
    const char *addrs[2] = { popts->peer, popts->listen };
    for (unsigned i = 0; i < 2; i++) {
        if (!addrs[i] || t->insecure)
            continue;
        int lo = rv_hostport_is_loopback(addrs[i]);
        if (lo < 0) {
            fprintf(stderr, "repvold: %s %s: cannot resolve the host\n", i ? "--repl-listen" : "--peer",
                    addrs[i]);
            return -EINVAL;
        }
        if (!lo) {
            fprintf(stderr, "repvold: refusing to replicate over %s without TLS: a stranger could send writes "
                    "or read the data on the wire; use --repl-tls-psk FILE or --repl-tls-certificates DIR "
                    "(on both nodes), or --insecure on a trusted network\n", addrs[i]);
            return -EPERM;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_EXPORT = 256, OPT_CACHE, OPT_RO, OPT_MAXREQ, OPT_BUFMEM, OPT_MAXCONN,
           OPT_MAXINFL, OPT_NOMLOCK, OPT_PIDFILE, OPT_LOGLEVEL, OPT_CONTROL,
           OPT_PEER, OPT_REPL_LISTEN, OPT_NODE_ID, OPT_ROLE, OPT_PROTOCOL, OPT_PEER_TIMEOUT,
           OPT_RESYNC_RATE, OPT_RESYNC_CHECKSUM, OPT_SB_POLICY, OPT_FENCE, OPT_FORCE_PRIMARY,
           OPT_TLS, OPT_TLS_PSK, OPT_TLS_CERTS, OPT_INSECURE, OPT_REPL_TLS_PSK, OPT_REPL_TLS_ID,
           OPT_REPL_TLS_CERTS, OPT_REPL_TLS_PEER,
           OPT_UBLK, OPT_UBLK_ID, OPT_UBLK_QUEUES, OPT_UBLK_DEPTH, OPT_UBLK_MAXIO, OPT_UBLK_NOREC,
           OPT_UBLK_UCOPY,
           OPT_HS_TIMEOUT, OPT_SEND_TIMEOUT };
    static const struct option longopts[] = {
        { "volume", required_argument, NULL, 'v' },
        { "listen", required_argument, NULL, 'l' },
        { "export-name", required_argument, NULL, OPT_EXPORT },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "readonly", no_argument, NULL, OPT_RO },
        { "max-request", required_argument, NULL, OPT_MAXREQ },
        { "buffer-mem", required_argument, NULL, OPT_BUFMEM },
        { "max-connections", required_argument, NULL, OPT_MAXCONN },
        { "max-inflight", required_argument, NULL, OPT_MAXINFL },
        { "handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT },
        { "send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT },
        { "no-mlock", no_argument, NULL, OPT_NOMLOCK },
        { "pidfile", required_argument, NULL, OPT_PIDFILE },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "peer", required_argument, NULL, OPT_PEER },
        { "repl-listen", required_argument, NULL, OPT_REPL_LISTEN },
        { "node-id", required_argument, NULL, OPT_NODE_ID },
        { "role", required_argument, NULL, OPT_ROLE },
        { "protocol", required_argument, NULL, OPT_PROTOCOL },
        { "peer-timeout", required_argument, NULL, OPT_PEER_TIMEOUT },
        { "resync-rate", required_argument, NULL, OPT_RESYNC_RATE },
        { "resync-checksum", no_argument, NULL, OPT_RESYNC_CHECKSUM },
        { "split-brain-policy", required_argument, NULL, OPT_SB_POLICY },
        { "fence-peer-handler", required_argument, NULL, OPT_FENCE },
        { "force-primary", no_argument, NULL, OPT_FORCE_PRIMARY },
        { "tls", required_argument, NULL, OPT_TLS },
        { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
        { "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "repl-tls-psk", required_argument, NULL, OPT_REPL_TLS_PSK },
        { "repl-tls-identity", required_argument, NULL, OPT_REPL_TLS_ID },
        { "repl-tls-certificates", required_argument, NULL, OPT_REPL_TLS_CERTS },
        { "repl-tls-peer-name", required_argument, NULL, OPT_REPL_TLS_PEER },
        { "log-level", required_argument, NULL, OPT_LOGLEVEL },
        { "ublk", no_argument, NULL, OPT_UBLK },
        { "ublk-id", required_argument, NULL, OPT_UBLK_ID },
        { "ublk-queues", required_argument, NULL, OPT_UBLK_QUEUES },
        { "ublk-depth", required_argument, NULL, OPT_UBLK_DEPTH },
        { "ublk-max-io", required_argument, NULL, OPT_UBLK_MAXIO },
        { "ublk-no-recovery", no_argument, NULL, OPT_UBLK_NOREC },
        { "ublk-user-copy", no_argument, NULL, OPT_UBLK_UCOPY },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *volume = NULL, *export_name = NULL, *pidfile = NULL, *control = NULL;
    const char *listen[MAX_LISTEN + 1] = { NULL };
    unsigned nlisten = 0;
    struct rv_volume_opts vopts = {
        .cache = RV_CACHE_DIRECT, .max_request = 32u << 20, .buffer_mem = 64u << 20,
    };
    struct rv_nbd_opts nopts = { .max_connections = 64, .max_inflight = 128 };
    struct rv_peer_opts popts = { .mode = RV_MODE_C, .timeout_ms = 6000, .ping_ms = 1000 };
    bool want_mlock = true, force_primary = false, want_ublk = false;
    struct rv_ublk_opts ublk_opts = { .nr_queues = 2, .queue_depth = 64, .max_io = 512u << 10,
                                      .dev_id = -1, .recovery = true };
    struct tls_opts tlso = { .nbd_mode = -1 };
    enum rv_log_level level = RV_LOG_INFO;
    uint64_t n;
    int c;

    rv_log_init(argv[0], level);
    while ((c = getopt_long(argc, argv, "v:l:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'v': volume = optarg; break;
        case 'l':
            if (nlisten == MAX_LISTEN) {
                fprintf(stderr, "repvold: at most %d --listen addresses\n", MAX_LISTEN);
                return 2;
            }
            listen[nlisten++] = optarg;
            break;
        case OPT_EXPORT: export_name = optarg; break;
        case OPT_CACHE:
            if (rv_cache_mode_parse(optarg, &vopts.cache) < 0) {
                fprintf(stderr, "repvold: --cache: '%s' is not direct or buffered\n", optarg);
                return 2;
            }
            break;
        case OPT_RO: vopts.readonly = true; break;
        case OPT_MAXREQ:
            if (rv_parse_size(optarg, &n) < 0 || n < 4096 || n > (256u << 20)) {
                fprintf(stderr, "repvold: --max-request: '%s' is not a size from 4K to 256M\n", optarg);
                return 2;
            }
            vopts.max_request = n;
            break;
        case OPT_BUFMEM:
            if (rv_parse_size(optarg, &n) < 0 || n < (1u << 20)) {
                fprintf(stderr, "repvold: --buffer-mem: '%s' is not a size of at least 1M\n", optarg);
                return 2;
            }
            vopts.buffer_mem = n;
            break;
        case OPT_MAXCONN:
        case OPT_MAXINFL: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 65536) {
                fprintf(stderr, "repvold: '%s' is not a count from 1 to 65536\n", optarg);
                return 2;
            }
            if (c == OPT_MAXCONN)
                nopts.max_connections = v;
            else
                nopts.max_inflight = v;
            break;
        }
        case OPT_HS_TIMEOUT:
        case OPT_SEND_TIMEOUT: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 3600) {
                fprintf(stderr, "repvold: '%s' is not a number of seconds from 1 to 3600\n", optarg);
                return 2;
            }
            if (c == OPT_HS_TIMEOUT)
                nopts.handshake_timeout_ms = (unsigned)v * 1000;
            else
                nopts.send_timeout_ms = (unsigned)v * 1000;
            break;
        }
        case OPT_NOMLOCK: want_mlock = false; break;
        case OPT_PIDFILE: pidfile = optarg; break;
        case OPT_CONTROL: control = optarg; break;
        case OPT_PEER: popts.peer = optarg; break;
        case OPT_REPL_LISTEN: popts.listen = optarg; break;
        case OPT_NODE_ID: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || end == optarg || v >= RV_META_MAX_NODES) {
                fprintf(stderr, "repvold: --node-id: '%s' is not a number from 0 to %d\n", optarg,
                        RV_META_MAX_NODES - 1);
                return 2;
            }
            popts.node_id = (uint32_t)v;
            break;
        }
        case OPT_ROLE:
            if (!strcmp(optarg, "primary"))
                vopts.role = RV_ROLE_PRIMARY;
            else if (!strcmp(optarg, "secondary"))
                vopts.role = RV_ROLE_SECONDARY;
            else {
                fprintf(stderr, "repvold: --role: '%s' is not primary or secondary\n", optarg);
                return 2;
            }
            break;
        case OPT_PROTOCOL:
            if (rv_repl_mode_parse(optarg, &popts.mode) < 0) {
                fprintf(stderr, "repvold: --protocol: '%s' is not A, B or C\n", optarg);
                return 2;
            }
            break;
        case OPT_RESYNC_CHECKSUM: popts.checksum_resync = true; break;
        case OPT_FORCE_PRIMARY: force_primary = true; break;
        case OPT_FENCE:
            if (access(optarg, X_OK) < 0) {
                fprintf(stderr, "repvold: --fence-peer-handler %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            popts.fence_handler = optarg;
            break;
        case OPT_SB_POLICY:
            if (rv_sb_policy_parse(optarg, &popts.sb_policy) < 0) {
                fprintf(stderr, "repvold: --split-brain-policy: '%s' is not disconnect, discard-zero-changes "
                        "or discard-least-changes\n", optarg);
                return 2;
            }
            break;
        case OPT_RESYNC_RATE:
            if (rv_parse_size(optarg, &popts.resync_rate) < 0) {
                fprintf(stderr, "repvold: --resync-rate: '%s' is not a size per second (e.g. 50M)\n", optarg);
                return 2;
            }
            break;
        case OPT_PEER_TIMEOUT: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 100 || v > 600000) {
                fprintf(stderr, "repvold: --peer-timeout: '%s' is not a number of ms from 100 to 600000\n", optarg);
                return 2;
            }
            popts.timeout_ms = (unsigned)v;
            popts.ping_ms = RV_MAX(100u, popts.timeout_ms / 4);
            break;
        }
        case OPT_TLS:
            if (!strcmp(optarg, "off")) tlso.nbd_mode = NBD_HS_TLS_OFF;
            else if (!strcmp(optarg, "on")) tlso.nbd_mode = NBD_HS_TLS_ON;
            else if (!strcmp(optarg, "require")) tlso.nbd_mode = NBD_HS_TLS_REQUIRE;
            else {
                fprintf(stderr, "repvold: --tls: '%s' is not off, on or require\n", optarg);
                return 2;
            }
            break;
        case OPT_TLS_PSK: tlso.nbd_psk = optarg; break;
        case OPT_TLS_CERTS: tlso.nbd_certs = optarg; break;
        case OPT_INSECURE: tlso.insecure = true; break;
        case OPT_REPL_TLS_PSK: tlso.repl_psk = optarg; break;
        case OPT_REPL_TLS_ID: tlso.repl_identity = optarg; break;
        case OPT_REPL_TLS_CERTS: tlso.repl_certs = optarg; break;
        case OPT_REPL_TLS_PEER: tlso.repl_peer_name = optarg; break;
        case OPT_LOGLEVEL:
            if (!strcmp(optarg, "error")) level = RV_LOG_ERROR;
            else if (!strcmp(optarg, "warn") || !strcmp(optarg, "warning")) level = RV_LOG_WARN;
            else if (!strcmp(optarg, "info")) level = RV_LOG_INFO;
            else if (!strcmp(optarg, "debug")) level = RV_LOG_DEBUG;
            else {
                fprintf(stderr, "repvold: --log-level: '%s' is not error, warn, info or debug\n", optarg);
                return 2;
            }
            break;
        case OPT_UBLK: want_ublk = true; break;
        case OPT_UBLK_NOREC: ublk_opts.recovery = false; break;
        case OPT_UBLK_UCOPY: ublk_opts.user_copy = true; break;
        case OPT_UBLK_ID:
        case OPT_UBLK_QUEUES:
        case OPT_UBLK_DEPTH: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            unsigned long max = c == OPT_UBLK_ID ? 1048575 : c == OPT_UBLK_QUEUES ? 16 : 4096;
            if (*end || end == optarg || v > max || (c != OPT_UBLK_ID && v == 0)) {
                fprintf(stderr, "repvold: '%s' is not a number from %d to %lu\n", optarg, c == OPT_UBLK_ID ? 0 : 1,
                        max);
                return 2;
            }
            if (c == OPT_UBLK_ID)
                ublk_opts.dev_id = (int)v;
            else if (c == OPT_UBLK_QUEUES)
                ublk_opts.nr_queues = (unsigned)v;
            else
                ublk_opts.queue_depth = (unsigned)v;
            break;
        }
        case OPT_UBLK_MAXIO:
            if (rv_parse_size(optarg, &n) < 0 || n < 4096 || n > (32u << 20) || n % 4096) {
                fprintf(stderr, "repvold: --ublk-max-io: '%s' is not a multiple of 4K from 4K to 32M\n", optarg);
                return 2;
            }
            ublk_opts.max_io = (uint32_t)n;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "repvold: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!volume || (nlisten == 0 && !popts.listen && !want_ublk)) {
        fprintf(stderr, "repvold: --volume and at least one --listen (or --repl-listen, or --ublk) are required\n");
        usage(stderr);
        return 2;
    }
    /* Said before anything is opened: asking for a block device where the
     * kernel cannot make one is an error, not something to half-serve. */
    if (want_ublk && rv_ublk_available() < 0) {
        fprintf(stderr, "repvold: %s\n", RV_UBLK_NO_DRIVER_MSG);
        return 1;
    }
    if (want_ublk && ublk_opts.max_io > vopts.max_request)
        ublk_opts.max_io = (uint32_t)vopts.max_request;
    bool replicated = popts.peer || popts.listen;
    if (!replicated && vopts.role == 0)
        vopts.role = RV_ROLE_PRIMARY;       /* standalone: this node serves */
    rv_log_init(argv[0], level);
    signal(SIGPIPE, SIG_IGN);
    if (setup_tls(&tlso, listen, &popts, &nopts) < 0)
        return 2;

    static struct daemon d;   /* static: large (volume path buffers), lives as long as the process */
    d.sigfd = -1;
    d.ublk_opts = ublk_opts;
    int r = rv_loop_init(&d.loop, 1024);
    if (r < 0)
        return 1;
    r = rv_volume_open(&d.vol, &d.loop, volume, &vopts);
    if (r < 0) {
        rv_loop_fini(&d.loop);
        return 1;
    }
    if (d.vol.role == RV_ROLE_PRIMARY && d.vol.meta.disk_state != RV_DISK_UPTODATE && !force_primary) {
        rv_err("volume %s: refusing to serve an %s copy as primary: %s; start it as --role secondary to "
               "receive a sync from its peer, or add --force-primary to serve it anyway", d.vol.meta.name,
               rv_disk_state_name(d.vol.meta.disk_state),
               d.vol.meta.disk_state == RV_DISK_INCONSISTENT ? "it is an empty mirror or a resync into it "
               "did not finish" : "its peer is known to have newer data");
        r = -EPERM;
        goto out_volume;
    }
    if (d.vol.role == RV_ROLE_PRIMARY && d.vol.meta.disk_state != RV_DISK_UPTODATE) {
        rv_warn("volume %s: serving a %s copy as primary (--force-primary)", d.vol.meta.name,
                rv_disk_state_name(d.vol.meta.disk_state));
        d.vol.meta.disk_state = RV_DISK_UPTODATE;
    }
    harden_memory(want_mlock, d.vol.pool.total_bytes);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    d.sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (d.sigfd < 0) {
        rv_err("signalfd: %s", strerror(errno));
        goto out_volume;
    }

    if (replicated) {
        r = rv_peer_create(&d.peer, &d.vol, &d.loop, &popts);
        if (r < 0)
            goto out_volume;
        d.vol.peer = d.peer;
        rv_volume_track(&d.vol);
        r = rv_peer_start(d.peer);
        if (r < 0)
            goto out_volume;
    }
    nopts.listen = listen;
    nopts.export_name = export_name ? export_name : d.vol.meta.name;
    r = rv_nbd_frontend_create(&d.nbd, &d.vol, &d.loop, &nopts);
    if (r < 0)
        goto out_volume;
    d.nbd->owner = &d;
    d.nbd->drained = frontend_drained;
    /* The control socket first: a second daemon for a volume of the same
     * name stops here, before it has taken any NBD address. */
    char control_path[108];
    if (control)
        snprintf(control_path, sizeof control_path, "%s", control);
    else
        rv_control_default_path(d.vol.meta.name, control_path, sizeof control_path);
    r = rv_control_start(&d.control, &d.loop, control_path, control_cmds, &d);
    if (r < 0)
        goto out_frontend;
    r = d.nbd->ops->start(d.nbd);
    if (r < 0)
        goto out_frontend;
    d.want_ublk = want_ublk;
    if (want_ublk && d.vol.role != RV_ROLE_PRIMARY) {
        rv_info("volume %s: secondary: the ublk device will be created on promotion ('repvol primary')",
                d.vol.meta.name);
    } else if (want_ublk) {
        r = ublk_attach(&d);
        if (r < 0)
            goto out_frontend;
    }
    if (pidfile && write_pidfile(pidfile) < 0) {
        r = -1;
        goto out_frontend;
    }
    arm_signal(&d);
    r = rv_loop_run(&d.loop);
    if (r < 0)
        rv_err("event loop failed; shutting down");

    if (d.exit_code && r >= 0)
        r = -EIO;

out_frontend:
    rv_control_stop(d.control);
    if (d.ublk)
        d.ublk->ops->destroy(d.ublk);
    if (d.ublk_dead)
        d.ublk_dead->ops->destroy(d.ublk_dead);
    d.nbd->ops->destroy(d.nbd);
out_volume:
    rv_peer_destroy(d.peer);
    d.vol.peer = NULL;
    if (rv_volume_close(&d.vol) < 0 && r >= 0)
        r = -EIO;
    if (d.sigfd >= 0)
        close(d.sigfd);
    rv_loop_fini(&d.loop);
    rv_tls_ctx_free(nopts.tls);
    rv_tls_ctx_free(popts.tls_client);
    rv_tls_ctx_free(popts.tls_server);
    if (pidfile)
        unlink(pidfile);
    if (r >= 0)
        rv_info("stopped cleanly");
    return r < 0 ? 1 : 0;
}
