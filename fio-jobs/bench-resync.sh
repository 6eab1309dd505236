#!/usr/bin/env bash
# fio-jobs/bench-resync.sh - what replication's background machinery costs.
# Prints numbers; it is not a pass/fail test (it exits non-zero only when a
# measurement could not be made).  Needs root (network namespaces).
#
#   sudo bash fio-jobs/bench-resync.sh [--dirty SIZE] [--runtime SECS] [--repeat N]
#                                      [--dir DIR] [--build DIR]
#
#   --dirty SIZE    resync: size of the dirty region, in MiB or with suffix
#                   M/G (BENCH_DIRTY, default 512M); the volume is twice that
#   --runtime SECS  seconds per fio job of the degraded-mode part (BENCH_RUNTIME, 10)
#   --repeat N      degraded-mode part: runs of each (mode, job), alternating
#                   standalone and degraded; medians are compared (BENCH_REPEAT, 3)
#   --dir DIR       work directory for the images (BENCH_DIR, /var/tmp);
#                   a fresh subdirectory is made and removed
#   --build DIR     build directory with repvol and repvold (BENCH_BUILD, REPO/build)
#
# 1. Resync throughput.  Two network namespaces joined by a veth pair (the
#    e2e tests' layout, addresses 10.79.0.1/2).  Primary A and secondary B
#    start in sync; B is stopped; fio writes the first DIRTY bytes of A's
#    volume (1 MiB sequential writes, so the dirty region is one run); B is
#    restarted and A resyncs the region (no --resync-rate).  Throughput =
#    bytes resynced / time from A's "resync started" to "resync complete"
#    log lines.  Reference, in the same run, over the same veth, the same
#    bytes: nbdcopy from an `nbdkit file` export in A's namespace (Unix
#    socket) to an `nbdkit file` export in B's namespace (TCP over the veth),
#    nbdcopy running in A's namespace, with --flush; once with nbdcopy's
#    defaults (multi-conn: up to 4 connections, several requests in flight
#    on each) and once shaped like the resync (1 connection, at most 8
#    requests of 256 KiB in flight).
#    Caveat: the resync target writes each 256 KiB chunk with FUA through
#    O_DIRECT; nbdkit writes through the page cache and flushes once at the
#    end (--flush).
# 2. Write overhead of the dirty bitmap and the activity log.  One filled
#    image; repvold standalone (no peer) vs repvold as a primary whose peer
#    is configured (--peer 10.79.0.2, nothing listening there) but absent, so
#    every write marks the bitmap; fio nbd engine, 4 KiB randwrite at QD32
#    and QD1 over the whole volume, RUNTIME s each (1 s ramp), REPEAT times
#    alternating the two daemons (a shared machine is noisy), reported as
#    IOPS per run and the ratio of the medians, degraded/standalone.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DIRTY=${BENCH_DIRTY:-512M}
RUNTIME=${BENCH_RUNTIME:-10}
REPEAT=${BENCH_REPEAT:-3}
BASEDIR=${BENCH_DIR:-/var/tmp}
BUILD=${BENCH_BUILD:-$REPO/build}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die() { printf 'bench-resync: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'bench-resync: %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case $1 in
    --dirty) DIRTY=${2:?}; shift 2 ;;
    --runtime) RUNTIME=${2:?}; shift 2 ;;
    --repeat) REPEAT=${2:?}; shift 2 ;;
    --dir) BASEDIR=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
    esac
done
case $DIRTY in
*[Gg]) DIRTY_MB=$((${DIRTY%[Gg]} * 1024)) ;;
*[Mm]) DIRTY_MB=${DIRTY%[Mm]} ;;
*) DIRTY_MB=$DIRTY ;;
esac
[[ $DIRTY_MB =~ ^[1-9][0-9]*$ ]] || die "bad --dirty '$DIRTY' (examples: 512M, 1G)"
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "--runtime must be a whole number of seconds >= 1"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a whole number >= 1"
DIRTY_BYTES=$((DIRTY_MB << 20))
VOL_BYTES=$((2 * DIRTY_BYTES))
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
for c in ip fio nbdcopy nbdkit nbdinfo python3 timeout; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found: run 'sudo bash tests/install-deps.sh'"
done
{ [ -x "$BUILD/repvold" ] && [ -x "$BUILD/repvol" ]; } || die "no repvold/repvol in $BUILD: build first, or pass --build DIR"
mkdir -p "$BASEDIR"

# ------------------------------------------------------------------ cleanup

W=$(mktemp -d "$BASEDIR/repvol-bench-resync.XXXXXX")
TAG=rvb$$
NS_A=${TAG}a NS_B=${TAG}b
PIDS=()
cleanup() {
    local rc=$? p i
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || continue
        for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pid_alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    case ${st%% *} in Z | X | x) return 1 ;; esac
}

# bg NS LOG CMD...: start CMD in namespace NS (or "-" for this one); sets BG_PID.
bg() {
    local ns=$1 log=$2
    shift 2
    if [ "$ns" = - ]; then
        "$@" </dev/null >"$log" 2>&1 &
    else
        ip netns exec "$ns" "$@" </dev/null >"$log" 2>&1 &
    fi
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# stop PID: SIGTERM, bounded wait, SIGKILL.
stop() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < 200; i++)); do pid_alive "$p" || break; sleep 0.1; done
    if pid_alive "$p"; then
        say "warning: pid $p ignored SIGTERM for 20 s; SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
}

# wait_nbd PID URI SECS
wait_nbd() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        pid_alive "$1" || return 1
        timeout 5 nbdinfo --size "$2" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# wait_ctl PID CTL SECS: the daemon answers on its control socket.
wait_ctl() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        pid_alive "$1" || return 1
        "$BUILD/repvol" status --control "$2" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# sync_fields CTL: "PEER_STATE SYNC_STATE BYTES_DONE BYTES_LEFT RUNS"
sync_fields() {
    "$BUILD/repvol" status --json --control "$1" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d.get("peer") or {}
s = p.get("sync") or {}
print(p.get("state", "none"), s.get("state", "none"), s.get("bytes_done", 0), s.get("bytes_left", 0), s.get("runs", 0))' 2>/dev/null ||
        echo "unknown unknown 0 0 0"
}

drop_cache() { sync; dd if="$1" iflag=nocache count=0 status=none 2>/dev/null || true; }

# ------------------------------------------------------------------ network

ip netns add "$NS_A" || die "ip netns add failed"
ip netns add "$NS_B"
ip link add "${TAG}va" type veth peer name "${TAG}vb"
ip link set "${TAG}va" netns "$NS_A"
ip link set "${TAG}vb" netns "$NS_B"
ip -n "$NS_A" addr add 10.79.0.1/24 dev "${TAG}va"
ip -n "$NS_B" addr add 10.79.0.2/24 dev "${TAG}vb"
for n in "$NS_A" "$NS_B"; do ip -n "$n" link set lo up; done
ip -n "$NS_A" link set "${TAG}va" up
ip -n "$NS_B" link set "${TAG}vb" up
for ((i = 0; i < 50; i++)); do
    ip netns exec "$NS_A" ping -c1 -W1 10.79.0.2 >/dev/null 2>&1 && break
    sleep 0.1
done

say "work dir $W ($(df -PT "$W" | awk 'NR==2 {print $1 ", " $2}')); machine: $(nproc) cores, kernel $(uname -r)"
say "$(fio --version), $(nbdkit --version 2>/dev/null | head -1), $(nbdcopy --version 2>/dev/null | head -1)"
say "load average $(cut -d' ' -f1-3 /proc/loadavg) (numbers from a busy machine are noisy)"
say "commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"

# ------------------------------------------------------------------ 1. resync

node() { # N IMG ROLE [ARGS...]: start repvold node N (A or B) in its namespace
    local n=$1 img=$2 role=$3 id=1 me=10.79.0.1 peer=10.79.0.2 ns=$NS_A
    shift 3
    if [ "$n" = B ]; then id=2 me=10.79.0.2 peer=10.79.0.1 ns=$NS_B; fi
    rm -f "$W/node$n.ctl" "$W/node$n.sock"
    bg "$ns" "$W/node$n.log" "$BUILD/repvold" --volume "$img" --node-id "$id" --role "$role" \
        --control "$W/node$n.ctl" --repl-listen "$me:7789" --peer "$peer:7789" --insecure \
        --listen "unix:$W/node$n.sock" --no-mlock "$@"
    wait_ctl "$BG_PID" "$W/node$n.ctl" 15 || { cat "$W/node$n.log" >&2; die "node $n did not start"; }
    NODE_PID[$n]=$BG_PID
}
declare -A NODE_PID=()

wait_peer() { # CTL STATE SECS
    local i s=
    for ((i = 0; i < $3 * 10; i++)); do
        read -r s _ <<<"$(sync_fields "$1")"
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    die "peer state '$s', expected '$2' within $3 s"
}

say "1. resync of a ${DIRTY_MB} MiB dirty region over the veth vs nbdcopy between two nbdkit file exports"
"$BUILD/repvol" create --size "$VOL_BYTES" --name bench "$W/a.img" >/dev/null
cp --sparse=always "$W/a.img" "$W/b.img"
node B "$W/b.img" secondary
node A "$W/a.img" primary
wait_peer "$W/nodeA.ctl" connected 20
stop "${NODE_PID[B]}"
for ((i = 0; i < 200; i++)); do
    read -r ps _ <<<"$(sync_fields "$W/nodeA.ctl")"
    [ "$ps" = disconnected ] || [ "$ps" = connecting ] && break
    sleep 0.1
done
[ "$i" -lt 200 ] || die "primary still '$ps' 20 s after the secondary stopped"
timeout -k 5 300 fio --name=dirty --ioengine=nbd --uri="nbd+unix:///?socket=$W/nodeA.sock" --rw=write \
    --bs=1m --iodepth=8 --size="$DIRTY_BYTES" --output="$W/fio-dirty.out" ||
    { cat "$W/fio-dirty.out" >&2; die "fio could not dirty the region"; }
read -r _ _ _ left runs0 <<<"$(sync_fields "$W/nodeA.ctl")"
[ "$left" -ge "$DIRTY_BYTES" ] || die "primary has only $left bytes dirty after writing $DIRTY_BYTES"
# nbdcopy's source: the same bytes, as a plain file.
head -c "$DIRTY_BYTES" "$W/a.img" >"$W/src.raw"
drop_cache "$W/a.img"
drop_cache "$W/b.img"
t0=$(date +%s.%N)
node B "$W/b.img" secondary
for ((i = 0; ; i++)); do
    read -r ps ss ndone left runs <<<"$(sync_fields "$W/nodeA.ctl")"
    [ "$ps" = connected ] && [ "$ss" = none ] && [ "$runs" -gt "$runs0" ] && [ "$left" -eq 0 ] && break
    [ "$i" -lt 6000 ] || die "resync not done after 10 minutes ($ps $ss $ndone done, $left left)"
    sleep 0.1
done
t1=$(date +%s.%N)
stop "${NODE_PID[A]}"
stop "${NODE_PID[B]}"
cmp -n "$DIRTY_BYTES" "$W/a.img" "$W/b.img" >/dev/null || die "resync left the images different"
RESYNC=$(python3 - "$W/nodeA.log" "$ndone" "$t0" "$t1" <<'EOF'
import re, sys
log, done, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def ts(l):
    h, m, s = l.split()[0].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)
start = end = None
for l in open(log):
    if "resync started as source" in l:
        start = ts(l)
    elif "resync complete" in l:
        end = ts(l)
if start is None or end is None or end <= start:
    sys.exit("no resync start/complete lines in " + log)
secs = end - start
print("%.1f %.3f %.1f %.3f" % (done / secs / 1e6, secs, done / (t1 - t0) / 1e6, t1 - t0))
EOF
) || die "could not time the resync"
read -r resync_mbs resync_s wall_mbs wall_s <<<"$RESYNC"
printf '    %-44s %8.1f MB/s  (%d bytes in %s s; %.1f MB/s over %s s from the secondary'"'"'s start)\n' \
    "repvold resync (8 x 256K in flight, FUA)" "$resync_mbs" "$ndone" "$resync_s" "$wall_mbs" "$wall_s"

# nbdcopy between nbdkit file exports: A's side over a Unix socket, B's over TCP on the veth.
nbdcopy_run() { # LABEL NBDCOPY-ARGS...
    local label=$1 t0 t1
    shift
    rm -f "$W/dst.raw" "$W/src.sock"
    truncate -s "$DIRTY_BYTES" "$W/dst.raw"
    drop_cache "$W/src.raw"
    bg "$NS_A" "$W/nbdkit-src.log" nbdkit --foreground --exit-with-parent -U "$W/src.sock" file "$W/src.raw"
    local src=$BG_PID
    bg "$NS_B" "$W/nbdkit-dst.log" nbdkit --foreground --exit-with-parent -i 10.79.0.2 -p 10809 file "$W/dst.raw"
    local dst=$BG_PID
    wait_nbd "$src" "nbd+unix:///?socket=$W/src.sock" 15 || die "nbdkit (source) did not start"
    local i
    for ((i = 0; i < 150; i++)); do
        ip netns exec "$NS_A" timeout 5 nbdinfo --size nbd://10.79.0.2:10809/ >/dev/null 2>&1 && break
        pid_alive "$dst" || die "nbdkit (destination) died"
        sleep 0.1
    done
    t0=$(date +%s.%N)
    ip netns exec "$NS_A" timeout -k 5 600 nbdcopy --flush "$@" "nbd+unix:///?socket=$W/src.sock" \
        nbd://10.79.0.2:10809/ || die "nbdcopy $* failed"
    t1=$(date +%s.%N)
    stop "$src"
    stop "$dst"
    cmp "$W/src.raw" "$W/dst.raw" >/dev/null || die "nbdcopy $*: copy differs"
    read -r COPY_MBS COPY_S < <(python3 -c 'import sys; b, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print("%.1f %.3f" % (b / t / 1e6, t))' \
        "$DIRTY_BYTES" "$t0" "$t1")
    printf '    %-44s %8.1f MB/s  (%s s)\n' "$label" "$COPY_MBS" "$COPY_S"
}
nbdcopy_run "nbdcopy --flush, defaults"
copy1_mbs=$COPY_MBS
nbdcopy_run "nbdcopy --flush -C1 -R8 --request-size=256K" --connections=1 --requests=8 --request-size=262144
copy2_mbs=$COPY_MBS
python3 -c 'import sys; r, a, b = map(float, sys.argv[1:]); print("    resync / nbdcopy defaults: %.2fx;  resync / nbdcopy shaped like it: %.2fx" % (r / a, r / b))' \
    "$resync_mbs" "$copy1_mbs" "$copy2_mbs"
rm -f "$W/a.img" "$W/b.img" "$W/src.raw" "$W/dst.raw"

# ------------------------------------------------------------------ 2. degraded-mode write overhead

say "2. 4 KiB randwrite, ${RUNTIME} s each: standalone repvold vs primary with a configured but absent peer"
"$BUILD/repvol" create --size "$VOL_BYTES" --name bench "$W/c.img" >/dev/null
timeout -k 5 600 fio --name=fill --ioengine=io_uring --filename="$W/c.img" --direct=1 --rw=write --bs=1m \
    --iodepth=8 --size="$VOL_BYTES" --output="$W/fio-fill.out" || die "filling the image failed"

fio_iops() { # URI QD -> IOPS
    local out=$W/fio-$RANDOM.json
    timeout -k 5 $((RUNTIME + 120)) fio --name=rw --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k \
        --iodepth="$2" --size="$VOL_BYTES" --time_based=1 --runtime="$RUNTIME" --ramp_time=1 \
        --randrepeat=0 --norandommap=1 --thread=1 --output-format=json --output="$out" </dev/null ||
        die "fio QD$2 failed"
    python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print("%.0f" % json.loads(t[t.index("{"):])["jobs"][0]["write"]["iops"])' "$out"
}

declare -A IOPS=()
for ((rep = 1; rep <= REPEAT; rep++)); do
    for mode in standalone degraded; do
        rm -f "$W/c.sock" "$W/c.ctl"
        if [ "$mode" = standalone ]; then
            bg - "$W/c-$mode.log" "$BUILD/repvold" --volume "$W/c.img" --listen "unix:$W/c.sock" \
                --control "$W/c.ctl" --no-mlock
        else
            # Nothing listens on 10.79.0.2:7789: the peer is configured, absent.
            bg "$NS_A" "$W/c-$mode.log" "$BUILD/repvold" --volume "$W/c.img" --listen "unix:$W/c.sock" \
                --control "$W/c.ctl" --no-mlock --node-id 1 --role primary \
                --repl-listen 10.79.0.1:7789 --peer 10.79.0.2:7789 --insecure
        fi
        pid=$BG_PID
        wait_nbd "$pid" "nbd+unix:///?socket=$W/c.sock" 15 || { cat "$W/c-$mode.log" >&2; die "repvold ($mode) did not start"; }
        if [ "$mode" = degraded ]; then
            read -r ps _ <<<"$(sync_fields "$W/c.ctl")"
            case $ps in disconnected | connecting) ;; *) die "degraded primary's peer state is '$ps'" ;; esac
        fi
        for qd in 32 1; do
            drop_cache "$W/c.img"
            v=$(fio_iops "nbd+unix:///?socket=$W/c.sock" "$qd")
            IOPS[$mode.$qd]="${IOPS[$mode.$qd]:-} $v"
            printf '    run %d/%d  %-12s QD%-3s %9s IOPS\n' "$rep" "$REPEAT" "$mode" "$qd" "$v"
        done
        if [ "$mode" = degraded ] && [ "$rep" = 1 ]; then
            "$BUILD/repvol" status --json --control "$W/c.ctl" >"$W/c-status.json" 2>/dev/null || true
            python3 - "$W/c-status.json" <<'EOF' || true
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("peer") or {}
s = p.get("sync") or {}
print("    (degraded primary: %d MiB marked dirty so far, peer %s)" % (s.get("bytes_left", 0) >> 20, p.get("state")))
EOF
        fi
        stop "$pid"
    done
done
python3 - "${IOPS[standalone.32]}" "${IOPS[standalone.1]}" "${IOPS[degraded.32]}" "${IOPS[degraded.1]}" <<'EOF'
import statistics, sys
s32, s1, d32, d1 = ([float(x) for x in a.split()] for a in sys.argv[1:])
for qd, s, d in (("QD32", s32, d32), ("QD1", s1, d1)):
    ms, md = statistics.median(s), statistics.median(d)
    print("    %-5s median IOPS: standalone %8.0f  degraded %8.0f  degraded/standalone %.3f (%+.1f%%)"
          % (qd, ms, md, md / ms, (md / ms - 1) * 100))
EOF
say "done"
