#!/usr/bin/env bash
# client/quickstart.sh - repvol from nothing to a mounted file system, in one
# command, on a fresh Debian 12 machine:
#
#   sudo bash client/quickstart.sh [WORKDIR]      (default /var/tmp/repvol-demo)
#
# It installs the dependencies, builds repvol in build/, creates a 1 GiB
# volume, serves it with repvold on a Unix socket, benchmarks it briefly with
# fio (fio's NBD engine, straight to the daemon), then puts an ext4 file
# system on it through nbdfuse + a loop device, writes files and reads them
# back, stops everything, and finally checks the file system in the image
# file with the daemon stopped (e2fsck, and a read-only loop mount of the
# data region: the emergency path that needs no repvol at all).
#
# Environment:
#   QS_SIZE=1G            volume size (repvol syntax: K/M/G suffixes)
#   QS_FIO_RUNTIME=10     seconds per fio job (0 = skip the benchmark)
#   QS_SKIP_BUILD=1       skip install-deps and the build (use build/ as is)
#
# Everything it starts is stopped again on exit, failure or Ctrl-C; the image
# file is kept.
set -Eeuo pipefail
export LC_ALL=C

case ${1:-} in
-h | --help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
-*)
    echo "quickstart: unknown option '$1' (usage: sudo bash $0 [WORKDIR])" >&2
    exit 2
    ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${1:-/var/tmp/repvol-demo}
SIZE=${QS_SIZE:-1G}
FIO_RUNTIME=${QS_FIO_RUNTIME:-10}
BUILD=$REPO/build

STEPS=10
STEP=0
BOLD="" NORM=""
if [ -t 1 ]; then BOLD=$'\033[1m' NORM=$'\033[0m'; fi
step() {
    STEP=$((STEP + 1))
    printf '\n%s[%d/%d] %s%s\n' "$BOLD" "$STEP" "$STEPS" "$*" "$NORM"
}
info() { printf '      %s\n' "$*"; }
die() {
    printf '\nquickstart: FAILED: %s\n' "$*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    die "run as root (it installs packages, sets up a loop device and mounts): sudo bash $0 ${1:-}"
fi
if ! [[ $FIO_RUNTIME =~ ^[0-9]+$ ]]; then die "QS_FIO_RUNTIME must be a whole number"; fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
IMG=$WORK/demo.img
SOCK=$WORK/repvold.sock
CTL=$WORK/repvold.ctl
DAEMON_LOG=$WORK/repvold.log
DISK=$WORK/disk           # nbdfuse mounts the volume over this file
MNT=$WORK/mnt
MANIFEST=$WORK/files.sha256
URI="nbd+unix:///?socket=$SOCK"

DAEMON_PID=""
NBDFUSE_PID=""
LOOPS=()

# ------------------------------------------------------------------ helpers

pid_alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    case ${st%% *} in Z | X | x) return 1 ;; esac
}

# wait_gone PID SECONDS: wait until PID has exited; 1 if it is still there.
wait_gone() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    ! pid_alive "$pid"
}

is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# detach_loop DEV: detach, and wait until the kernel has really let go of
# the backing file (detaching completes asynchronously, e.g. while udev still
# has the device open).
detach_loop() {
    local dev=$1 i back
    back=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null | sed 's/[[:space:]]*$//')
    for ((i = 0; i < 5; i++)); do
        timeout 30 losetup -d "$dev" 2>/dev/null && break
        sleep 1
    done
    for ((i = 0; i < 300; i++)); do # 30 s
        if [ -z "$back" ] || [ -z "$(losetup -n -O NAME -j "$back" 2>/dev/null)" ]; then
            return 0
        fi
        sleep 0.1
    done
    printf 'quickstart: warning: %s still holds %s\n' "$dev" "${back:-its file}" >&2
    return 1
}

# unmount_fuse: fusermount3 -u, retried while the mount is still busy.
unmount_fuse() {
    local i
    for ((i = 0; i < 20; i++)); do
        is_mounted "$DISK" || return 0
        timeout 30 fusermount3 -u "$DISK" 2>/dev/null && return 0
        sleep 0.5
    done
    timeout 30 fusermount3 -u "$DISK" # last try, with its error message
}

# Unmount the file system, detach loop devices, unmount nbdfuse.
unmap() {
    local dev
    if is_mounted "$MNT"; then
        timeout 120 umount "$MNT" || timeout 30 umount -l "$MNT" || true
    fi
    for dev in "${LOOPS[@]}"; do
        if [ -n "$dev" ]; then detach_loop "$dev" || true; fi
    done
    LOOPS=()
    if is_mounted "$DISK"; then
        unmount_fuse || timeout 30 fusermount3 -uz "$DISK" || true
    fi
    if [ -n "$NBDFUSE_PID" ]; then
        if ! wait_gone "$NBDFUSE_PID" 15; then
            kill -KILL "$NBDFUSE_PID" 2>/dev/null || true
        fi
        wait "$NBDFUSE_PID" 2>/dev/null || true
        NBDFUSE_PID=""
    fi
}

# stop_daemon: SIGTERM, up to 30 s to drain and flush; returns its exit status.
stop_daemon() {
    local rc=0
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    if ! wait_gone "$DAEMON_PID" 30; then
        printf 'quickstart: repvold did not stop within 30 s; SIGKILL\n' >&2
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    wait "$DAEMON_PID" 2>/dev/null || rc=$?
    DAEMON_PID=""
    return "$rc"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ "$rc" -ne 0 ]; then
        printf '\nquickstart: cleaning up after a failure (exit status %d)\n' "$rc" >&2
    fi
    unmap
    stop_daemon >/dev/null 2>&1
    rm -f "$SOCK" "$CTL"
    if [ "$rc" -ne 0 ] && [ -s "$DAEMON_LOG" ]; then
        printf '\nlast lines of %s:\n' "$DAEMON_LOG" >&2
        tail -n 20 "$DAEMON_LOG" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'printf "quickstart: command failed (status %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

# A previous run killed hard may have left its mounts behind: clear them
# (only this work directory's own paths).
if is_mounted "$MNT"; then timeout 60 umount "$MNT" || die "$MNT is mounted and busy"; fi
while read -r dev; do
    if [ -n "$dev" ]; then detach_loop "$dev" || true; fi
done < <(losetup -j "$DISK" -O NAME -n 2>/dev/null; losetup -j "$IMG" -O NAME -n 2>/dev/null)
if is_mounted "$DISK"; then unmount_fuse || die "$DISK is still mounted"; fi
if [ -f "$WORK/repvold.pid" ] && pid_alive "$(cat "$WORK/repvold.pid")"; then
    die "a repvold from an earlier run is still running (pid $(cat "$WORK/repvold.pid")); stop it first"
fi

# fio_report NAME JSONFILE: print IOPS, bandwidth and latency from fio's JSON.
fio_report() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
name, path = sys.argv[1:]
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
d = job["write"] if job["write"]["total_ios"] else job["read"]
p = d["clat_ns"].get("percentile", {})
print("      %-18s %8.0f IOPS  %8.1f MB/s  latency mean %.0f us, p50 %.0f us, p99 %.0f us" % (
    name, d["iops"], d["bw_bytes"] / 1e6, d["clat_ns"]["mean"] / 1e3,
    p.get("50.000000", 0) / 1e3, p.get("99.000000", 0) / 1e3))
EOF
}

START=$(date +%s)

# ------------------------------------------------------------------ 1, 2

if [ "${QS_SKIP_BUILD:-0}" = 1 ]; then
    step "Dependencies: skipped (QS_SKIP_BUILD=1)"
    step "Build: skipped (QS_SKIP_BUILD=1), using $BUILD"
else
    step "Installing dependencies (tests/install-deps.sh)"
    bash "$REPO/tests/install-deps.sh"

    step "Building repvol in $BUILD (log: $WORK/build.log)"
    : >"$WORK/build.log"
    (
        set -e
        cd "$REPO"
        echo "+ ./autogen.sh"
        ./autogen.sh
        mkdir -p "$BUILD"
        cd "$BUILD"
        echo "+ ../configure"
        ../configure
        echo "+ make -j2"
        make -j2
    ) >>"$WORK/build.log" 2>&1 || {
        tail -n 40 "$WORK/build.log" >&2
        die "build failed (full log: $WORK/build.log)"
    }
    info "built $BUILD/repvold and $BUILD/repvol"
fi
if ! [ -x "$BUILD/repvold" ] || ! [ -x "$BUILD/repvol" ]; then
    die "no $BUILD/repvold or $BUILD/repvol"
fi
for c in nbdinfo nbdfuse fusermount3 losetup mkfs.ext4 e2fsck fio python3 findmnt timeout; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found: run 'sudo bash tests/install-deps.sh'"
done
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || die "/dev/fuse missing: this kernel has no FUSE, which nbdfuse needs"

# ------------------------------------------------------------------ 3

step "Creating a $SIZE volume: $IMG"
rm -f "$IMG" "$MANIFEST"
"$BUILD/repvol" create --size "$SIZE" --name demo "$IMG" | sed 's/^/      /'
info "sparse: $(du -h "$IMG" | cut -f1) used on disk, $(stat -c %s "$IMG") bytes long (data + metadata tail)"

# ------------------------------------------------------------------ 4

step "Starting repvold on $SOCK"
rm -f "$SOCK" "$CTL"
info "$BUILD/repvold --volume $IMG --listen unix:$SOCK --control $CTL (log: $DAEMON_LOG)"
"$BUILD/repvold" --volume "$IMG" --listen "unix:$SOCK" --control "$CTL" \
    --pidfile "$WORK/repvold.pid" --log-level info </dev/null 2>"$DAEMON_LOG" &
DAEMON_PID=$!
ready=no
for ((i = 0; i < 150; i++)); do # 15 s
    pid_alive "$DAEMON_PID" || break
    if [ -S "$SOCK" ] && timeout 5 nbdinfo --size "$URI" >/dev/null 2>&1; then
        ready=yes
        break
    fi
    sleep 0.1
done
[ "$ready" = yes ] || die "repvold did not start serving within 15 s (log: $DAEMON_LOG)"
VOL_BYTES=$(timeout 10 nbdinfo --size "$URI")
info "pid $DAEMON_PID, serving $VOL_BYTES bytes at $URI"
timeout 10 nbdinfo "$URI" | grep -E 'export=|export-size|can_flush|can_fua|can_trim|can_multi_conn' |
    sed 's/^[[:space:]]*/      /' || true

# ------------------------------------------------------------------ 5

step "Benchmarking the raw volume with fio over NBD (${FIO_RUNTIME} s per job; before mkfs, as fio overwrites the volume)"
if [ "$FIO_RUNTIME" -gt 0 ]; then
    for job in randwrite-4k-qd32 seqwrite-1m; do
        out=$WORK/fio-$job.json
        FIO_ENGINE=nbd FIO_FILENAME=nbd FIO_ENGINE_OPTS="uri=$URI" FIO_DIRECT=0 \
            FIO_SIZE="$VOL_BYTES" FIO_RUNTIME="$FIO_RUNTIME" FIO_RAMP=1 \
            timeout -k 10 $((FIO_RUNTIME + 90)) \
            fio --output-format=json --output="$out" "$REPO/fio-jobs/$job.fio" </dev/null ||
            die "fio $job failed (output: $out)"
        fio_report "$job" "$out"
    done
    info "(fio's nbd engine, one connection, repvold --cache direct; full table: fio-jobs/bench.sh)"
else
    info "skipped (QS_FIO_RUNTIME=0)"
fi

# ------------------------------------------------------------------ 6

step "Mapping the volume as a block device: nbdfuse -> $DISK -> loop device"
mkdir -p "$MNT"
rm -f "$DISK"
touch "$DISK"
rm -f "$WORK/nbdfuse.pid"
nbdfuse -P "$WORK/nbdfuse.pid" "$DISK" --unix "$SOCK" </dev/null 2>"$WORK/nbdfuse.log" &
NBDFUSE_PID=$!
for ((i = 0; i < 150; i++)); do
    [ -s "$WORK/nbdfuse.pid" ] && break
    pid_alive "$NBDFUSE_PID" || break
    sleep 0.1
done
if ! [ -s "$WORK/nbdfuse.pid" ] || ! is_mounted "$DISK"; then
    die "nbdfuse did not mount $DISK within 15 s (log: $WORK/nbdfuse.log)"
fi
info "nbdfuse $DISK --unix $SOCK   (pid $NBDFUSE_PID; $DISK is now the volume, $(stat -c %s "$DISK") bytes)"
# O_DIRECT on the FUSE file keeps the data out of a second page cache.
LOOP=$(timeout 30 losetup --direct-io=on -f --show "$DISK" 2>/dev/null) ||
    LOOP=$(timeout 30 losetup -f --show "$DISK") || die "losetup failed"
LOOPS+=("$LOOP")
info "losetup --direct-io=on -f --show $DISK  ->  $LOOP (direct I/O: $(losetup -n -O DIO "$LOOP" | tr -d ' '))"

# ------------------------------------------------------------------ 7

step "Making an ext4 file system and mounting it on $MNT"
timeout 300 mkfs.ext4 -q -L repvol-demo "$LOOP" || die "mkfs.ext4 failed"
timeout 60 mount "$LOOP" "$MNT" || die "mount failed"
df -h "$MNT" | sed 's/^/      /'

# ------------------------------------------------------------------ 8

step "Writing files, then reading them back from the volume (sha256)"
t0=$(date +%s.%N)
head -c $((64 << 20)) /dev/urandom >"$MNT/random-64M.bin"
printf 'hello from repvol, %s\n' "$(date -u)" >"$MNT/hello.txt"
mkdir -p "$MNT/small"
for ((i = 0; i < 200; i++)); do
    head -c 4096 /dev/urandom >"$MNT/small/file-$i"
done
timeout 120 sync
t1=$(date +%s.%N)
(cd "$MNT" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum) >"$MANIFEST"
info "wrote $(wc -l <"$MANIFEST") files, $(du -sh "$MNT" | cut -f1) in $(python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$t1") s (synced)"
# Unmount, drop caches and mount again so the reads really come from repvold.
timeout 120 umount "$MNT" || die "umount failed"
sync
echo 3 >/proc/sys/vm/drop_caches
timeout 60 mount "$LOOP" "$MNT" || die "mount (again) failed"
if (cd "$MNT" && timeout 300 sha256sum --quiet -c "$MANIFEST"); then
    info "read back after remount + drop_caches: all $(wc -l <"$MANIFEST") files match: OK"
else
    die "files read back differ from what was written"
fi
if [ -x "$BUILD/repvol" ]; then
    timeout 10 "$BUILD/repvol" status --control "$CTL" 2>/dev/null | sed 's/^/      /' || true
fi

# ------------------------------------------------------------------ 9

step "Unmounting, detaching, stopping repvold (SIGTERM: drain, flush, exit 0)"
timeout 120 umount "$MNT" || die "umount failed"
info "umount $MNT"
detach_loop "$LOOP" || die "losetup -d $LOOP failed"
LOOPS=()
info "losetup -d $LOOP"
unmount_fuse || die "fusermount3 -u $DISK failed"
wait_gone "$NBDFUSE_PID" 15 || die "nbdfuse did not exit after fusermount3 -u"
wait "$NBDFUSE_PID" 2>/dev/null || true
NBDFUSE_PID=""
info "fusermount3 -u $DISK"
rc=0
stop_daemon || rc=$?
[ "$rc" -eq 0 ] || die "repvold exited with status $rc (log: $DAEMON_LOG)"
info "repvold exited with status 0"
rm -f "$DISK"
"$BUILD/repvol" info "$IMG" | grep -E 'data size|flags|open count' | sed 's/^[[:space:]]*/      /' || true

# ------------------------------------------------------------------ 10

step "Checking the image with the daemon stopped: e2fsck + read-only loop mount of the data region"
LOOP=$(timeout 30 losetup -r --sizelimit "$VOL_BYTES" -f --show "$IMG") || die "losetup of the image failed"
LOOPS+=("$LOOP")
info "losetup -r --sizelimit $VOL_BYTES -f --show $IMG  ->  $LOOP"
if ! timeout 300 e2fsck -fn "$LOOP" 2>&1 | sed 's/^/      /'; then
    die "e2fsck found problems in the file system"
fi
timeout 60 mount -o ro,noload "$LOOP" "$MNT" || die "read-only mount of the image failed"
if (cd "$MNT" && timeout 300 sha256sum --quiet -c "$MANIFEST"); then
    info "files read straight from the image file, no repvol running: OK"
else
    die "files in the image differ from what was written"
fi
timeout 60 umount "$MNT" || die "umount failed"
detach_loop "$LOOP" || die "losetup -d $LOOP failed"
LOOPS=()

printf '\n%squickstart: OK%s (%d s)\n' "$BOLD" "$NORM" "$(($(date +%s) - START))"
cat <<EOF
  image:   $IMG  ($(du -h "$IMG" | cut -f1) used; the first $VOL_BYTES bytes are the raw ext4 image)
  daemon:  $BUILD/repvold --volume $IMG --listen unix:$SOCK
  connect: nbdinfo '$URI'
  log:     $DAEMON_LOG
EOF
