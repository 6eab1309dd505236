#!/usr/bin/env bash
# fio-jobs/bench.sh - side-by-side benchmark of repvold against the raw image
# file and against nbdkit's file plugin, and of repvold replicating to a peer
# against repvold alone.  Prints numbers; it is not a pass/fail test (it exits
# non-zero only when a run could not be made).
#
#   sudo bash fio-jobs/bench.sh [OPTIONS]
#
# Options (each also settable through the environment variable in brackets):
#   --targets LIST   comma-separated, in order (BENCH_TARGETS, default
#                    raw,nbdkit,repvold,repl,repl-disk).  A new target NAME is
#                    a set of functions target_NAME_{describe,prepare,start,stop}
#                    (and optionally _check) below; see "Targets".
#   --modes LIST     direct,buffered (BENCH_MODES, default both)
#   --jobs LIST      job names = fio-jobs/NAME.fio (BENCH_JOBS, default all six)
#   --size SIZE      bytes of each target used, fio syntax: 1g, 512m (BENCH_SIZE, 1g)
#   --runtime SECS   measured seconds per job (BENCH_RUNTIME, 3: the default
#                    run, 5 targets x 2 modes x 6 jobs, takes about 6 minutes;
#                    use 10 or more for steadier numbers)
#   --ramp SECS      seconds run before measuring (BENCH_RAMP, 1)
#   --dir DIR        work directory for the images (BENCH_DIR, /var/tmp/repvol-bench);
#                    every target's file lives here, so all are on one disk
#   --out DIR        results directory (BENCH_OUT, DIR/results-TIMESTAMP)
#   --build DIR      build directory with repvol and repvold (BENCH_BUILD, REPO/build)
#   --keep           keep the images afterwards (default: delete them)
#   --rtt-count N    round trips timed for the link's RTT (BENCH_RTT_COUNT, 1000)
#
# Modes, like with like:
#   raw      direct:   fio io_uring, O_DIRECT on the image file
#            buffered: fio io_uring through the page cache
#   nbdkit   direct:   nbdkit file plugin cache=none.  nbdkit 1.32 has no
#                      O_DIRECT: it writes through the page cache, starts
#                      writeback at once (sync_file_range) and evicts the
#                      pages (fadvise DONTNEED), and evicts pages after reads;
#                      the closest it has to O_DIRECT
#            buffered: nbdkit file plugin, default cache
#   repvold  direct:   repvold --cache direct (O_DIRECT)
#            buffered: repvold --cache buffered
#   repl     repvold as above, replicating in mode C (answered once written
#            on both nodes) to a second repvold in another network namespace
#            over a veth pair; the secondary's image on a tmpfs, so the
#            numbers show the cost of replication, not of a second disk
#   repl-disk  the same with the secondary's image on the work dir's disk
#   repl-tls   as repl, with the link over TLS 1.3 (PSK); not in the default
#              list: --targets repvold,repl,repl-tls gives the cost of TLS
#   The replicated targets need root (namespaces, tmpfs).  With them, the
#   link's round-trip time for 4 KiB each way is measured too, and a
#   summary compares them with repvold: 4k randwrite QD32 IOPS ratio, QD1
#   write p50 against repvold's p50 + RTT + 30 us, 1M seq write ratio.
#   NBD targets are driven by fio's nbd engine (libnbd) over a Unix socket,
#   one connection, the job's queue depth in flight.
#
# Before every job: sync, and the page cache of the target's file is dropped
# (fadvise DONTNEED), so every job starts cold and no writeback from the
# previous job runs during it.  Images are filled with data first so reads
# never hit holes.
#
# Output: a table (IOPS, MB/s, completion latency p50/p99 in µs, server CPU
# seconds per 100k I/Os from /proc/PID/stat utime+stime, and the IOPS of
# each target other than raw and nbdkit as a ratio of raw's and nbdkit's in
# the same mode), and in the results directory: results.json, results.csv,
# table.txt, meta.json (machine, versions, commit, parameters), fio/*.json
# (fio's own output) and the servers' logs; with replicated targets also
# rtt.json and replication.json (the summary).
#
# Server CPU is measured over the whole fio run, ramp included, and divided by
# an estimate of the I/Os done over the whole run (measured IOPS x (ramp +
# runtime)).  fio and the server share the machine's cores.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

TARGETS=${BENCH_TARGETS:-raw,nbdkit,repvold,repl,repl-disk}
MODES=${BENCH_MODES:-direct,buffered}
JOBS=${BENCH_JOBS:-randwrite-4k-qd1,randwrite-4k-qd32,randread-4k-qd1,randread-4k-qd32,seqwrite-1m,seqread-1m}
SIZE=${BENCH_SIZE:-1g}
RUNTIME=${BENCH_RUNTIME:-3}
RAMP=${BENCH_RAMP:-1}
DIR=${BENCH_DIR:-/var/tmp/repvol-bench}
OUT=${BENCH_OUT:-}
BUILD=${BENCH_BUILD:-$REPO/build}
KEEP=${BENCH_KEEP:-0}

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'bench: %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case $1 in
    --targets) TARGETS=${2:?}; shift 2 ;;
    --modes) MODES=${2:?}; shift 2 ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --runtime) RUNTIME=${2:?}; shift 2 ;;
    --ramp) RAMP=${2:?}; shift 2 ;;
    --dir) DIR=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --rtt-count) BENCH_RTT_COUNT=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
    esac
done

if ! [[ $RUNTIME =~ ^[1-9][0-9]*$ ]]; then die "--runtime must be a whole number of seconds >= 1"; fi
[[ $RAMP =~ ^[0-9]+$ ]] || die "--ramp must be a whole number of seconds"
for c in fio python3 timeout getconf; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found: run 'sudo bash tests/install-deps.sh'"
done

# Size in bytes (fio-style suffixes are powers of 1024).
SIZE_BYTES=$(python3 - "$SIZE" <<'EOF'
import re, sys
m = re.fullmatch(r'(\d+)([kmgt]?)(i?b?)', sys.argv[1].strip().lower())
if not m:
    sys.exit("bad size")
print(int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))
EOF
) || die "bad --size '$SIZE' (examples: 1g, 512m)"
[ "$SIZE_BYTES" -ge $((64 << 20)) ] || die "--size must be at least 64m"
[ $((SIZE_BYTES % 1048576)) -eq 0 ] || die "--size must be a multiple of 1m"

IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
IFS=, read -r -a MODE_LIST <<<"$MODES"
IFS=, read -r -a JOB_LIST <<<"$JOBS"
for j in "${JOB_LIST[@]}"; do
    [ -f "$HERE/$j.fio" ] || die "no job file $HERE/$j.fio"
done
for m in "${MODE_LIST[@]}"; do
    case $m in direct | buffered) ;; *) die "unknown mode '$m' (direct, buffered)" ;; esac
done

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
[ -n "$OUT" ] || OUT=$DIR/results-$STAMP
mkdir -p "$DIR" "$OUT/fio" "$OUT/logs"
DIR=$(cd "$DIR" && pwd)
OUT=$(cd "$OUT" && pwd)
RECORDS=$OUT/records.jsonl
: >"$RECORDS"
FAILURES=0

# fio's overall bound: ramp + runtime + time to connect/lay out, generous.
FIO_BOUND=$((RAMP + RUNTIME + 120))
# Filling SIZE bytes: allow 10 MB/s at worst, and at least 2 minutes.
FILL_BOUND=$((SIZE_BYTES / 10000000 + 120))

# ------------------------------------------------------------------ helpers

# Server state, set by a target's start function.
SERVER_PID=""     # pid whose CPU time is measured ("" = no server)
SERVER_SOCK=""
SERVER_LOG=""
SERVER_STOP_BOUND=30

# Environment for the fio job files.
FIO_ENGINE="" FIO_FILENAME="" FIO_ENGINE_OPTS="" FIO_DIRECT=0
MODE_DESC=""      # what this target+mode means, printed and recorded
CACHE_FILE=""     # file whose page cache is dropped before each job

pid_alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    case ${st%% *} in Z | X | x) return 1 ;; esac
}

# CPU ticks (utime + stime) of a process, all its threads included.
cpu_ticks() {
    local st fields
    st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
    st=${st##*) }
    read -r -a fields <<<"$st"
    # After "pid (comm) ": fields[0] is field 3 (state); utime is 14, stime 15.
    echo $((fields[11] + fields[12]))
}

# wait_for_socket PID SOCK SECS: until SOCK answers NBD, PID dies or time runs out.
wait_for_nbd() {
    local pid=$1 sock=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        pid_alive "$pid" || return 1
        if [ -S "$sock" ] && timeout 5 nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# stop_pid PID SECS: SIGTERM, wait up to SECS, then SIGKILL.
stop_pid() {
    local pid=$1 secs=$2 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        say "warning: pid $pid still running after ${secs}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

drop_cache() {
    sync
    [ -n "$CACHE_FILE" ] && [ -f "$CACHE_FILE" ] || return 0
    dd if="$CACHE_FILE" iflag=nocache count=0 status=none 2>/dev/null || true
}

run_fio() { # OUTPUT.json JOBFILE
    local out=$1 job=$2
    FIO_ENGINE=$FIO_ENGINE FIO_FILENAME=$FIO_FILENAME FIO_ENGINE_OPTS=$FIO_ENGINE_OPTS \
        FIO_DIRECT=$FIO_DIRECT FIO_SIZE=$SIZE_BYTES FIO_RUNTIME=$RUNTIME FIO_RAMP=$RAMP \
        timeout -k 10 "$FIO_BOUND" fio --output-format=json --output="$out" "$job" </dev/null
}

# fill FILE: write every byte of the first SIZE bytes with O_DIRECT (done
# before any server opens FILE).
fill_file() {
    local file=$1 log t0 t1
    t0=$(date +%s.%N)
    log=$OUT/logs/fill-$(basename "$file").txt
    FIO_ENGINE=io_uring FIO_FILENAME=$file FIO_ENGINE_OPTS=description=fill FIO_DIRECT=1 \
        FIO_SIZE=$SIZE_BYTES timeout -k 10 "$FILL_BOUND" \
        fio --output="$log" "$HERE/fill.fio" </dev/null || die "filling $file failed (see $log)"
    t1=$(date +%s.%N)
    say "filled $file with $SIZE ($(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1") s)"
}

# ------------------------------------------------------------------ targets
#
# A target NAME provides:
#   target_NAME_describe MODE  one line: what the mode is
#   target_NAME_prepare        once: create and fill its file(s)
#   target_NAME_start MODE     start its server if any; set FIO_ENGINE,
#                              FIO_FILENAME, FIO_ENGINE_OPTS, FIO_DIRECT,
#                              CACHE_FILE, SERVER_PID (or "")
#   target_NAME_stop           stop its server
# A replicated target (primary + peer) can be added the same way.

PLAIN_IMG=$DIR/plain.img   # raw and nbdkit share one plain raw file
REPVOLD_IMG=$DIR/repvold.img
PLAIN_FILLED=0

prepare_plain() {
    [ "$PLAIN_FILLED" = 1 ] && return 0
    rm -f "$PLAIN_IMG"
    truncate -s "$SIZE_BYTES" "$PLAIN_IMG"
    fill_file "$PLAIN_IMG"
    PLAIN_FILLED=1
}

nbd_env() { # SOCK
    FIO_ENGINE=nbd
    FIO_FILENAME=nbd
    FIO_ENGINE_OPTS="uri=nbd+unix:///?socket=$1"
    FIO_DIRECT=0
}

# --- raw: the image file itself, no server.
target_raw_describe() {
    case $1 in
    direct) echo "fio io_uring on the file, O_DIRECT" ;;
    buffered) echo "fio io_uring on the file, page cache" ;;
    esac
}
target_raw_prepare() { prepare_plain; }
target_raw_start() {
    FIO_ENGINE=io_uring
    FIO_FILENAME=$PLAIN_IMG
    FIO_ENGINE_OPTS=description=raw
    if [ "$1" = direct ]; then FIO_DIRECT=1; else FIO_DIRECT=0; fi
    CACHE_FILE=$PLAIN_IMG
    SERVER_PID=""
}
target_raw_stop() { :; }

# --- nbdkit: the reference NBD server, file plugin.
target_nbdkit_describe() {
    case $1 in
    direct) echo "nbdkit file cache=none (no O_DIRECT in nbdkit $(nbdkit --version 2>/dev/null | awk '{print $2}'): writeback started at once + pages evicted)" ;;
    buffered) echo "nbdkit file, default cache (page cache)" ;;
    esac
}
target_nbdkit_prepare() {
    command -v nbdkit >/dev/null 2>&1 || die "nbdkit not found: run 'sudo bash tests/install-deps.sh'"
    prepare_plain
}
target_nbdkit_start() {
    local mode=$1 args=()
    [ "$mode" = direct ] && args+=(cache=none)
    SERVER_SOCK=$DIR/nbdkit.sock
    SERVER_LOG=$OUT/logs/nbdkit-$mode.log
    rm -f "$SERVER_SOCK"
    nbdkit --foreground --exit-with-parent -U "$SERVER_SOCK" \
        file "$PLAIN_IMG" "${args[@]}" </dev/null 2>"$SERVER_LOG" &
    SERVER_PID=$!
    wait_for_nbd "$SERVER_PID" "$SERVER_SOCK" 15 || { cat "$SERVER_LOG" >&2; die "nbdkit did not start"; }
    nbd_env "$SERVER_SOCK"
    CACHE_FILE=$PLAIN_IMG
}
target_nbdkit_stop() {
    stop_pid "$SERVER_PID" "$SERVER_STOP_BOUND"
    SERVER_PID=""
    rm -f "$SERVER_SOCK"
}

# --- repvold: this project's daemon.
target_repvold_describe() {
    case $1 in
    direct) echo "repvold --cache direct (O_DIRECT)" ;;
    buffered) echo "repvold --cache buffered (page cache)" ;;
    esac
}
target_repvold_prepare() {
    [ -x "$BUILD/repvold" ] || die "no $BUILD/repvold: build first (see README), or pass --build DIR"
    [ -x "$BUILD/repvol" ] ||
        die "no $BUILD/repvol or $BUILD/repvol: build first (see README), or pass --build DIR"
    rm -f "$REPVOLD_IMG"
    "$BUILD/repvol" create --size "$SIZE_BYTES" --name bench "$REPVOLD_IMG" >/dev/null
    # The data region is a raw image at offset 0: fill it directly, before
    # the daemon opens the image.
    fill_file "$REPVOLD_IMG"
}
target_repvold_start() {
    local mode=$1
    SERVER_SOCK=$DIR/repvold.sock
    SERVER_LOG=$OUT/logs/repvold-$mode.log
    rm -f "$SERVER_SOCK" "$DIR/repvold.ctl"
    "$BUILD/repvold" --volume "$REPVOLD_IMG" --listen "unix:$SERVER_SOCK" \
        --cache "$mode" --control "$DIR/repvold.ctl" --log-level info \
        </dev/null 2>"$SERVER_LOG" &
    SERVER_PID=$!
    wait_for_nbd "$SERVER_PID" "$SERVER_SOCK" 15 || { cat "$SERVER_LOG" >&2; die "repvold did not start"; }
    nbd_env "$SERVER_SOCK"
    CACHE_FILE=$REPVOLD_IMG
}
target_repvold_stop() {
    local rc=0
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < SERVER_STOP_BOUND * 10; i++)); do
        pid_alive "$SERVER_PID" || break
        sleep 0.1
    done
    if pid_alive "$SERVER_PID"; then
        say "warning: repvold did not stop in ${SERVER_STOP_BOUND}s; SIGKILL"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || rc=$?
    [ "$rc" = 0 ] || { say "warning: repvold exited with status $rc (log: $SERVER_LOG)"; FAILURES=$((FAILURES + 1)); }
    SERVER_PID=""
    rm -f "$SERVER_SOCK" "$DIR/repvold.ctl"
}

# --- repl, repl-disk: repvold replicating every write to a peer (mode C,
# the default: a write is answered once it is on both nodes).  The primary
# runs in one network namespace, the secondary in another, joined by a
# veth pair (10.78.0.1 <-> 10.78.0.2), both made here and removed at exit;
# fio reaches the primary through its Unix socket, from this namespace.
# The primary's image is on the work dir's disk, like every other target's.
#   repl       the secondary's image on a size-limited tmpfs: the cost of
#              replicating (link, peer round trip, peer CPU) without the
#              peer's disk, which on one machine would be the same disk
#   repl-disk  the secondary's image on the work dir's disk too (both
#              nodes' writes hit one disk: a worst case, not a 2-host setup)
# Server CPU is the primary's; the secondary's is in the table's notes.
# The link's round-trip time for a 4 KiB message each way is measured once
# (python3 TCP ping-pong across the veth, median of BENCH_RTT_COUNT).
REPL_NS_A="" REPL_NS_B="" REPL_TAG="" REPL_TMPFS="" REPL_TMPFS_MOUNTED=0
REPL_ADDR_A=10.78.0.1 REPL_ADDR_B=10.78.0.2 REPL_PORT=7789 RTT_PORT=7790
REPL_IMG_A=$DIR/repl-a.img
REPL_IMG_B=""           # the current target's secondary image
REPL_FILLED=0
REPL_B_PID="" REPL_B_LOG="" REPL_B_CPU0=0
RTT_COUNT=${BENCH_RTT_COUNT:-1000}

repl_net_setup() {
    [ -z "$REPL_NS_A" ] || return 0
    [ "$(id -u)" = 0 ] || die "targets repl, repl-disk need root (network namespaces, a tmpfs mount)"
    command -v ip >/dev/null 2>&1 || die "'ip' not found: install iproute2"
    REPL_TAG=rvb$$
    REPL_NS_A=${REPL_TAG}a
    REPL_NS_B=${REPL_TAG}b
    ip netns add "$REPL_NS_A" || die "ip netns add $REPL_NS_A failed"
    ip netns add "$REPL_NS_B" || die "ip netns add $REPL_NS_B failed"
    ip link add "${REPL_TAG}a" type veth peer name "${REPL_TAG}b" || die "cannot create a veth pair"
    ip link set "${REPL_TAG}a" netns "$REPL_NS_A"
    ip link set "${REPL_TAG}b" netns "$REPL_NS_B"
    ip -n "$REPL_NS_A" addr add "$REPL_ADDR_A/24" dev "${REPL_TAG}a"
    ip -n "$REPL_NS_B" addr add "$REPL_ADDR_B/24" dev "${REPL_TAG}b"
    local ns i
    for ns in "$REPL_NS_A" "$REPL_NS_B"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "${REPL_TAG}${ns: -1}" up
    done
    # Both ends up (carrier), bounded; the RTT probe below then proves traffic.
    for ((i = 0; i < 50; i++)); do
        ip -n "$REPL_NS_A" -br link show dev "${REPL_TAG}a" | grep -q ' UP ' &&
            ip -n "$REPL_NS_B" -br link show dev "${REPL_TAG}b" | grep -q ' UP ' && break
        sleep 0.1
    done
    [ "$i" -lt 50 ] || die "the veth between $REPL_NS_A and $REPL_NS_B did not come up"
    say "replication link: namespaces $REPL_NS_A ($REPL_ADDR_A) and $REPL_NS_B ($REPL_ADDR_B) over veth"
    measure_rtt
}

# Round trip of a 4 KiB message each way over the veth (TCP, NODELAY, one
# connection, after 100 warm-up trips): $OUT/rtt.json, RTT_P50_US.
RTT_P50_US=""
measure_rtt() {
    local py=$OUT/logs/rtt-pingpong.py spid rc=0
    cat >"$py" <<'PY'
import json, socket, statistics, sys, time
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
N = 4096
def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
if role == "server":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port)); ls.listen(1); ls.settimeout(30)
    s, _ = ls.accept(); s.settimeout(30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            s.sendall(recv_exact(s, N))
    except EOFError:
        pass
    sys.exit(0)
count, out = int(sys.argv[4]), sys.argv[5]
for i in range(100):
    try:
        s = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect to the ping-pong server")
s.settimeout(30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = bytes(range(256)) * (N // 256)
for _ in range(100):
    s.sendall(msg); recv_exact(s, N)
rt = []
for _ in range(count):
    t0 = time.perf_counter_ns()
    s.sendall(msg); recv_exact(s, N)
    rt.append((time.perf_counter_ns() - t0) / 1000.0)
s.close()
rt.sort()
q = lambda p: rt[min(len(rt) - 1, int(p * len(rt)))]
res = {"message_bytes": N, "round_trips": count, "p50_us": statistics.median(rt),
       "p10_us": q(0.10), "p90_us": q(0.90), "p99_us": q(0.99), "min_us": rt[0],
       "method": "python3 TCP ping-pong across the veth, 4 KiB each way, TCP_NODELAY"}
json.dump(res, open(out, "w"), indent=2)
print("%.1f" % res["p50_us"], "%.1f" % res["p10_us"], "%.1f" % res["p90_us"], "%.1f" % res["p99_us"])
PY
    ip netns exec "$REPL_NS_B" timeout -k 5 60 python3 "$py" server "$REPL_ADDR_B" "$RTT_PORT" </dev/null &
    spid=$!
    local line
    line=$(ip netns exec "$REPL_NS_A" timeout -k 5 60 python3 "$py" client "$REPL_ADDR_B" "$RTT_PORT" \
        "$RTT_COUNT" "$OUT/rtt.json" </dev/null) || rc=$?
    wait "$spid" 2>/dev/null || true
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        say "warning: measuring the link's round-trip time failed (status $rc)"
        return 0
    fi
    local p10 p90 p99
    read -r RTT_P50_US p10 p90 p99 <<<"$line"
    say "link round trip, 4 KiB each way (median of $RTT_COUNT): $RTT_P50_US us (p10 $p10, p90 $p90, p99 $p99)"
}

repl_tmpfs_setup() {
    [ -z "$REPL_TMPFS" ] || return 0
    REPL_TMPFS=$(mktemp -d /tmp/repvol-bench-tmpfs.XXXXXX)
    # The image is the data region plus a little metadata.
    mount -t tmpfs -o "size=$((SIZE_BYTES / 1048576 + 64))m,mode=0700" repvol-bench "$REPL_TMPFS" ||
        die "cannot mount a tmpfs on $REPL_TMPFS"
    REPL_TMPFS_MOUNTED=1
    say "tmpfs for the secondary's image: $REPL_TMPFS ($((SIZE_BYTES / 1048576 + 64)) MiB)"
}

repl_teardown() {
    if [ -n "$REPL_B_PID" ]; then stop_pid "$REPL_B_PID" 10; REPL_B_PID=""; fi
    if [ -n "$REPL_NS_A" ]; then
        ip netns del "$REPL_NS_A" 2>/dev/null || true
        ip netns del "$REPL_NS_B" 2>/dev/null || true
    fi
    if [ "$REPL_TMPFS_MOUNTED" = 1 ]; then
        umount "$REPL_TMPFS" 2>/dev/null || umount -l "$REPL_TMPFS" 2>/dev/null || true
        REPL_TMPFS_MOUNTED=0
    fi
    [ -z "$REPL_TMPFS" ] || rmdir "$REPL_TMPFS" 2>/dev/null || true
    rm -f "$DIR/repl-a.sock" "$DIR/repl-b.sock" "$DIR/repl-a.ctl" "$DIR/repl-b.ctl"
    [ "$KEEP" = 1 ] || rm -f "$REPL_IMG_A" "$DIR/repl-b.img"
}

# repl_prepare SECONDARY_IMAGE: the primary's image (made and filled once,
# shared by repl and repl-disk), copied to SECONDARY_IMAGE: both start with
# the same data and the same data generation, i.e. in sync.
repl_prepare() {
    if ! [ -x "$BUILD/repvold" ] || ! [ -x "$BUILD/repvol" ]; then
        die "no $BUILD/repvold or $BUILD/repvol: build first (see README), or pass --build DIR"
    fi
    repl_net_setup
    if [ "$REPL_FILLED" != 1 ]; then
        rm -f "$REPL_IMG_A"
        "$BUILD/repvol" create --size "$SIZE_BYTES" --name bench "$REPL_IMG_A" >/dev/null
        fill_file "$REPL_IMG_A"
        REPL_FILLED=1
    fi
    [ -z "$REPL_IMG_B" ] || rm -f "$REPL_IMG_B"
    REPL_IMG_B=$1
    rm -f "$REPL_IMG_B"
    cp --sparse=always "$REPL_IMG_A" "$REPL_IMG_B" || die "copying the image to $REPL_IMG_B failed"
    say "secondary's image: copy of the primary's at $REPL_IMG_B"
}

repl_status() { # CTL: `repvol status --json`
    timeout 5 "$BUILD/repvol" status --json --control "$1" 2>/dev/null
}

repl_peer_state() { # CTL
    repl_status "$1" | python3 -c 'import json,sys; print((json.load(sys.stdin).get("peer") or {}).get("state","none"))' 2>/dev/null ||
        echo unknown
}

repl_start() { # MODE
    local mode=$1 i st
    local -a common=(--cache "$mode" --log-level info)
    SERVER_SOCK=$DIR/repl-a.sock
    SERVER_LOG=$OUT/logs/$CURRENT_TARGET-$mode-primary.log
    REPL_B_LOG=$OUT/logs/$CURRENT_TARGET-$mode-secondary.log
    rm -f "$SERVER_SOCK" "$DIR/repl-b.sock" "$DIR/repl-a.ctl" "$DIR/repl-b.ctl"
    # `ip netns exec` execs the daemon: $! is the daemon itself.
    ip netns exec "$REPL_NS_B" "$BUILD/repvold" --volume "$REPL_IMG_B" --role secondary --node-id 2 \
        --repl-listen "$REPL_ADDR_B:$REPL_PORT" --peer "$REPL_ADDR_A:$REPL_PORT" $REPL_SECURITY \
        --listen "unix:$DIR/repl-b.sock" --control "$DIR/repl-b.ctl" "${common[@]}" \
        </dev/null >"$REPL_B_LOG" 2>&1 &
    REPL_B_PID=$!
    for ((i = 0; i < 150; i++)); do
        pid_alive "$REPL_B_PID" || { cat "$REPL_B_LOG" >&2; die "the secondary repvold exited during start-up"; }
        repl_status "$DIR/repl-b.ctl" >/dev/null && break
        sleep 0.1
    done
    [ "$i" -lt 150 ] || die "the secondary repvold did not come up in 15 s (log: $REPL_B_LOG)"
    ip netns exec "$REPL_NS_A" "$BUILD/repvold" --volume "$REPL_IMG_A" --role primary --node-id 1 \
        --repl-listen "$REPL_ADDR_A:$REPL_PORT" --peer "$REPL_ADDR_B:$REPL_PORT" $REPL_SECURITY \
        --listen "unix:$SERVER_SOCK" --control "$DIR/repl-a.ctl" "${common[@]}" \
        </dev/null >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_for_nbd "$SERVER_PID" "$SERVER_SOCK" 15 || { cat "$SERVER_LOG" >&2; die "the primary repvold did not start"; }
    for ((i = 0; i < 150; i++)); do
        st=$(repl_peer_state "$DIR/repl-a.ctl")
        [ "$st" = connected ] && break
        sleep 0.1
    done
    [ "$st" = connected ] || { tail -5 "$SERVER_LOG" "$REPL_B_LOG" >&2; die "the nodes did not connect (peer state '$st')"; }
    REPL_B_CPU0=$(cpu_ticks "$REPL_B_PID")
    nbd_env "$SERVER_SOCK"
    CACHE_FILE=$REPL_IMG_A
}

# After each job: the numbers only count if every write was replicated.
repl_check() {
    local st
    pid_alive "$REPL_B_PID" || { echo "the secondary died"; return; }
    st=$(repl_status "$DIR/repl-a.ctl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p, s = d["peer"], d["stats"]
bad = []
if p["state"] != "connected": bad.append("peer link %s" % p["state"])
if s["local_only_writes"]: bad.append("%d writes not replicated" % s["local_only_writes"])
if p["nacks"]: bad.append("%d NACKs" % p["nacks"])
print("; ".join(bad))' 2>&1) || st="cannot read the primary's status"
    echo "$st"
}

# stop_daemon PID NAME LOG: SIGTERM, bounded wait, exit status 0 expected.
stop_daemon() {
    local pid=$1 name=$2 log=$3 rc=0 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < SERVER_STOP_BOUND * 10; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        say "warning: $name did not stop in ${SERVER_STOP_BOUND}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 0 ] || { say "warning: $name exited with status $rc (log: $log)"; FAILURES=$((FAILURES + 1)); }
}

repl_stop() {
    local cpu=""
    [ -n "$REPL_B_PID" ] && cpu=$(cpu_ticks "$REPL_B_PID")
    stop_daemon "$SERVER_PID" "the primary repvold" "$SERVER_LOG"
    SERVER_PID=""
    stop_daemon "$REPL_B_PID" "the secondary repvold" "$REPL_B_LOG"
    REPL_B_PID=""
    if [ -n "$cpu" ] && [ "$cpu" -ge 0 ]; then
        say "secondary's CPU over all of $CURRENT_TARGET's jobs in this mode: $(python3 -c "print('%.2f' % ((${cpu} - ${REPL_B_CPU0}) / ${CLK_TCK}))") s"
    fi
    rm -f "$SERVER_SOCK" "$DIR/repl-b.sock" "$DIR/repl-a.ctl" "$DIR/repl-b.ctl"
    # Both stopped cleanly after mode C replication: the data regions match.
    if cmp -s -n "$SIZE_BYTES" "$REPL_IMG_A" "$REPL_IMG_B"; then
        say "$CURRENT_TARGET: primary and secondary images identical after the run"
    else
        say "error: $CURRENT_TARGET: primary and secondary images DIFFER after the run ($(cmp -n "$SIZE_BYTES" "$REPL_IMG_A" "$REPL_IMG_B" 2>&1 | head -1))"
        FAILURES=$((FAILURES + 1))
    fi
}

target_repl_describe() {
    echo "repvold --cache $1, replicating (mode C) over veth to a secondary (--cache $1) whose image is on tmpfs"
}
target_repl_prepare() {
    repl_tmpfs_setup
    repl_prepare "$REPL_TMPFS/repl-b.img"
}
target_repl_start() { REPL_SECURITY=--insecure repl_start "$1"; }
target_repl_check() { repl_check; }
target_repl_stop() { repl_stop; }

target_repl-disk_describe() {
    echo "repvold --cache $1, replicating (mode C) over veth to a secondary (--cache $1) whose image is on the same disk"
}
target_repl-disk_prepare() { repl_prepare "$DIR/repl-b.img"; }
target_repl-disk_start() { REPL_SECURITY=--insecure repl_start "$1"; }
target_repl-disk_check() { repl_check; }
target_repl-disk_stop() { repl_stop; }

# repl-tls: as repl, the link over TLS 1.3 with a pre-shared key (the
# summary then also compares it with repl: the cost of TLS).
target_repl-tls_describe() {
    echo "as repl, the replication link over TLS 1.3 (PSK, AES-128-GCM)"
}
target_repl-tls_prepare() {
    repl_tmpfs_setup
    repl_prepare "$REPL_TMPFS/repl-b.img"
    (umask 077 && echo "bench:$(openssl rand -hex 32)" >"$DIR/bench.psk") || die "cannot write $DIR/bench.psk"
}
target_repl-tls_start() { REPL_SECURITY="--repl-tls-psk $DIR/bench.psk" repl_start "$1"; }
target_repl-tls_check() { repl_check; }
target_repl-tls_stop() { repl_stop; }

for t in "${TARGET_LIST[@]}"; do
    declare -F "target_${t}_start" >/dev/null || die "unknown target '$t' (known: raw, nbdkit, repvold, repl, repl-disk, repl-tls)"
done

# ------------------------------------------------------------------ cleanup

CURRENT_TARGET=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CURRENT_TARGET" ] && [ -n "$SERVER_PID" ]; then
        stop_pid "$SERVER_PID" 10
    fi
    repl_teardown
    rm -f "$DIR/nbdkit.sock" "$DIR/repvold.sock" "$DIR/repvold.ctl"
    if [ "$KEEP" != 1 ]; then
        rm -f "$PLAIN_IMG" "$REPVOLD_IMG"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ run

say "targets=$TARGETS modes=$MODES size=$SIZE runtime=${RUNTIME}s ramp=${RAMP}s"
say "jobs=$JOBS"
say "work dir $DIR ($(df -P "$DIR" | awk 'NR==2 {print $1}'), $(df -PT "$DIR" | awk 'NR==2 {print $2}')); results in $OUT"
say "machine: $(nproc) cores, kernel $(uname -r), $(fio --version)"
for t in "${TARGET_LIST[@]}"; do
    for m in "${MODE_LIST[@]}"; do
        say "  $t/$m: $("target_${t}_describe" "$m")"
    done
done

python3 - "$OUT/meta.json" <<META
import json, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "commit": "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)",
           "kernel": "$(uname -r)", "cores": $(nproc), "fio": "$(fio --version)",
           "nbdkit": "$(nbdkit --version 2>/dev/null || echo none)", "dir": "$DIR",
           "size_bytes": $SIZE_BYTES, "runtime_s": $RUNTIME, "ramp_s": $RAMP,
           "targets": "$TARGETS", "modes": "$MODES", "jobs": "$JOBS"},
          open(sys.argv[1], "w"), indent=2)
META

total=$((${#TARGET_LIST[@]} * ${#MODE_LIST[@]} * ${#JOB_LIST[@]}))
n=0
for t in "${TARGET_LIST[@]}"; do
    "target_${t}_prepare"
    for m in "${MODE_LIST[@]}"; do
        CURRENT_TARGET=$t
        "target_${t}_start" "$m"
        MODE_DESC=$("target_${t}_describe" "$m")
        for j in "${JOB_LIST[@]}"; do
            n=$((n + 1))
            out=$OUT/fio/$t-$m-$j.json
            drop_cache
            c0=0
            [ -n "$SERVER_PID" ] && c0=$(cpu_ticks "$SERVER_PID")
            rc=0
            run_fio "$out" "$HERE/$j.fio" || rc=$?
            note=""
            if declare -F "target_${t}_check" >/dev/null; then note=$("target_${t}_check"); fi
            c1=0
            [ -n "$SERVER_PID" ] && c1=$(cpu_ticks "$SERVER_PID")
            if [ -n "$SERVER_PID" ] && ! pid_alive "$SERVER_PID"; then
                say "error: $t server died during $j (log: $SERVER_LOG)"
                [ "$rc" != 0 ] || rc=1
            fi
            cpu=""
            [ -n "$SERVER_PID" ] && [ "$c0" -ge 0 ] && [ "$c1" -ge 0 ] && cpu=$((c1 - c0))
            python3 - "$out" "$RECORDS" "$t" "$m" "$j" "$rc" "$cpu" "$CLK_TCK" "$RUNTIME" "$RAMP" "$MODE_DESC" "$n" "$total" "$note" <<'EOF'
import json, sys
out, records, target, mode, job, rc, cpu, tck, runtime, ramp, desc = sys.argv[1:12]
rec = {"target": target, "mode": mode, "job": job, "mode_desc": desc,
       "ok": False, "iops": None, "mb_s": None, "p50_us": None, "p99_us": None,
       "server_cpu_s": None, "server_cpu_s_per_100k_io": None, "ios": None}
try:
    text = open(out).read()
    data = json.loads(text[text.index("{"):])
    jb = data["jobs"][0]
    ddir = "write" if jb["write"]["total_ios"] > 0 else "read"
    d = jb[ddir]
    pct = d["clat_ns"].get("percentile", {})
    rec.update(ok=(rc == "0" and jb.get("error", 0) == 0 and d["total_ios"] > 0),
               ddir=ddir, iops=d["iops"], mb_s=d["bw_bytes"] / 1e6,
               p50_us=pct.get("50.000000", 0) / 1000.0,
               p99_us=pct.get("99.000000", 0) / 1000.0,
               mean_us=d["clat_ns"]["mean"] / 1000.0,
               ios=d["total_ios"], fio_usr_cpu=jb["usr_cpu"], fio_sys_cpu=jb["sys_cpu"])
    if cpu:
        secs = int(cpu) / int(tck)
        rec["server_cpu_s"] = secs
        ios_all = d["iops"] * (int(runtime) + int(ramp))
        if ios_all > 0:
            rec["server_cpu_s_per_100k_io"] = secs * 1e5 / ios_all
except Exception as e:  # keep going; the table shows the failure
    rec["error"] = "%s: %s" % (type(e).__name__, e)
if rc != "0":
    rec["error"] = rec.get("error", "") + " fio exit status %s" % rc
if len(sys.argv) > 14 and sys.argv[14]:
    rec["ok"] = False
    rec["error"] = (rec.get("error", "") + " " + sys.argv[14]).strip()
with open(records, "a") as f:
    f.write(json.dumps(rec) + "\n")
s = "%-9s %-8s %-18s " % (target, mode, job)
n, total = sys.argv[12:14]
if rec["ok"]:
    s += "%9.0f IOPS %8.1f MB/s  p50 %7.0f us  p99 %7.0f us" % (
        rec["iops"], rec["mb_s"], rec["p50_us"], rec["p99_us"])
    if rec["server_cpu_s_per_100k_io"] is not None:
        s += "  srv %.2f cpu-s/100k" % rec["server_cpu_s_per_100k_io"]
else:
    s += "FAILED (%s)" % rec.get("error", "?")
print("[%*s/%s] %s" % (len(total), n, total, s), flush=True)
EOF
            if [ "$rc" != 0 ]; then
                FAILURES=$((FAILURES + 1))
                say "fio failed for $t/$m/$j (status $rc); see $out"
            fi
            if [ -n "$note" ]; then
                FAILURES=$((FAILURES + 1))
                say "$t/$m/$j does not count: $note"
            fi
            if [ -n "$SERVER_PID" ] && ! pid_alive "$SERVER_PID"; then
                break # the server died: skip this mode's remaining jobs
            fi
        done
        "target_${t}_stop"
        CURRENT_TARGET=""
    done
done

# ------------------------------------------------------------------ report

python3 - "$RECORDS" "$OUT" "$SIZE" "$RUNTIME" "$RAMP" <<'EOF'
import csv, json, sys
records_path, out, size, runtime, ramp = sys.argv[1:]
recs = [json.loads(l) for l in open(records_path) if l.strip()]
by = {(r["target"], r["mode"], r["job"]): r for r in recs}

def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b

for r in recs:
    for base in ("raw", "nbdkit"):
        b = by.get((base, r["mode"], r["job"]))
        key = "iops_vs_" + base
        r[key] = None
        if r["target"] not in ("raw", "nbdkit") and b and r["ok"] and b["ok"]:
            r[key] = ratio(r["iops"], b["iops"])
    b = by.get(("nbdkit", r["mode"], r["job"]))
    r["cpu_vs_nbdkit"] = None
    if r["target"] not in ("raw", "nbdkit") and b:
        r["cpu_vs_nbdkit"] = ratio(r["server_cpu_s_per_100k_io"], b["server_cpu_s_per_100k_io"])

def f(v, fmt):
    return "-" if v is None else fmt % v

hdr = ["target", "mode", "job", "IOPS", "MB/s", "p50 us", "p99 us",
       "srv cpu-s/100k IO", "IOPS vs raw", "IOPS vs nbdkit", "cpu vs nbdkit"]
rows = []
for r in recs:
    if not r["ok"]:
        rows.append([r["target"], r["mode"], r["job"], "FAILED", "", "", "", "", "", "", ""])
        continue
    rows.append([r["target"], r["mode"], r["job"],
                 f(r["iops"], "%.0f"), f(r["mb_s"], "%.1f"),
                 f(r["p50_us"], "%.0f"), f(r["p99_us"], "%.0f"),
                 f(r["server_cpu_s_per_100k_io"], "%.2f"),
                 f(r["iops_vs_raw"], "%.2fx"), f(r["iops_vs_nbdkit"], "%.2fx"),
                 f(r["cpu_vs_nbdkit"], "%.2fx")])
widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
left = 3
def line(cells):
    return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))
lines = ["", "size %s, %ss measured after %ss ramp per job; latency = fio completion latency; "
         "srv cpu = server utime+stime per 100k I/Os (ramp included, estimated)" % (size, runtime, ramp),
         "", line(hdr), line(["-" * w for w in widths])]
prev = None
for row in rows:
    if prev is not None and row[0] != prev:
        lines.append("")
    prev = row[0]
    lines.append(line(row))
modes = []
for r in recs:
    if (r["target"], r["mode"]) not in modes:
        modes.append((r["target"], r["mode"]))
lines.append("")
lines.append("modes:")
for t, m in modes:
    desc = next(r["mode_desc"] for r in recs if r["target"] == t and r["mode"] == m)
    lines.append("  %-9s %-8s %s" % (t, m, desc))
text = "\n".join(lines) + "\n"
print(text)
open(out + "/table.txt", "w").write(text)
json.dump(recs, open(out + "/results.json", "w"), indent=2)
fields = ["target", "mode", "job", "ok", "iops", "mb_s", "p50_us", "p99_us", "mean_us",
          "server_cpu_s", "server_cpu_s_per_100k_io", "iops_vs_raw", "iops_vs_nbdkit",
          "cpu_vs_nbdkit", "ios", "fio_usr_cpu", "fio_sys_cpu", "mode_desc", "error"]
with open(out + "/results.csv", "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in recs:
        w.writerow(r)
EOF
# ------------------------------------------------------------------ replication summary

python3 - "$RECORDS" "$OUT" <<'EOF'
import json, sys
records_path, out = sys.argv[1:3]
recs = [json.loads(l) for l in open(records_path) if l.strip()]
by = {(r["target"], r["mode"], r["job"]): r for r in recs}
targets = [t for t in dict.fromkeys(r["target"] for r in recs) if t.startswith("repl")]
if not targets:
    sys.exit(0)
try:
    rtt = json.load(open(out + "/rtt.json"))
except (OSError, ValueError):
    rtt = None
rtt_us = rtt["p50_us"] if rtt else None
ALLOW = 30.0    # µs allowed for the replication path itself, beyond one round trip

def ok(t, m, j):
    r = by.get((t, m, j))
    return r if r and r["ok"] else None

lines = ["", "replication vs unreplicated repvold, same cache mode (ratios of the replicated target to repvold):"]
if rtt:
    lines.append("  link round trip, 4 KiB each way (python3 TCP ping-pong over the veth, median of %d): %.1f us"
                 " (p10 %.1f, p90 %.1f, p99 %.1f)" % (rtt["round_trips"], rtt_us, rtt["p10_us"], rtt["p90_us"], rtt["p99_us"]))
else:
    lines.append("  link round trip: not measured")
summary = {"rtt": rtt, "allowance_us": ALLOW, "rows": []}
modes = list(dict.fromkeys(r["mode"] for r in recs))
for t in targets:
    for m in modes:
        if not any(r["target"] == t and r["mode"] == m for r in recs):
            continue
        row = {"target": t, "mode": m}
        head = "  %-20s" % ("%s/%s" % (t, m))
        pad = " " * len(head)
        a, b = ok(t, m, "randwrite-4k-qd32"), ok("repvold", m, "randwrite-4k-qd32")
        if a and b:
            row["randwrite_4k_qd32_ratio"] = a["iops"] / b["iops"]
            s = "4k randwrite QD32: %8.0f vs %8.0f IOPS = %.2fx" % (a["iops"], b["iops"], row["randwrite_4k_qd32_ratio"])
        else:
            s = "4k randwrite QD32: n/a (job missing or failed for %s or repvold)" % t
        lines.append(head + s)
        a, b = ok(t, m, "randwrite-4k-qd1"), ok("repvold", m, "randwrite-4k-qd1")
        if a and b:
            row["qd1_write_p50_us"] = a["p50_us"]
            row["qd1_write_p50_unreplicated_us"] = b["p50_us"]
            s = "4k write QD1 p50:  %5.0f us" % a["p50_us"]
            if rtt_us is not None:
                budget = b["p50_us"] + rtt_us + ALLOW
                row["qd1_budget_us"] = budget
                row["qd1_within_budget"] = a["p50_us"] <= budget
                s += " vs %.0f (repvold p50) + %.0f (RTT) + %.0f = %.0f us: %s (%+.0f us)" % (
                    b["p50_us"], rtt_us, ALLOW, budget,
                    "within" if a["p50_us"] <= budget else "OVER", a["p50_us"] - budget)
            else:
                s += " vs repvold %.0f us (no RTT measured)" % b["p50_us"]
        else:
            s = "4k write QD1 p50:  n/a (job missing or failed for %s or repvold)" % t
        lines.append(pad + s)
        a, b = ok(t, m, "seqwrite-1m"), ok("repvold", m, "seqwrite-1m")
        if a and b:
            row["seqwrite_1m_ratio"] = a["mb_s"] / b["mb_s"]
            s = "1M seq write:      %8.1f vs %8.1f MB/s = %.2fx" % (a["mb_s"], b["mb_s"], row["seqwrite_1m_ratio"])
        else:
            s = "1M seq write:      n/a (job missing or failed for %s or repvold)" % t
        lines.append(pad + s)
        summary["rows"].append(row)
# The cost of TLS: repl-tls against repl, same mode.
if "repl-tls" in targets and "repl" in targets:
    lines.append("")
    lines.append("TLS on the replication link (repl-tls vs repl, same cache mode):")
    summary["tls"] = []
    for m in modes:
        row = {"mode": m}
        for job, key, unit in (("randwrite-4k-qd32", "iops", "IOPS"), ("seqwrite-1m", "mb_s", "MB/s")):
            a, b = ok("repl-tls", m, job), ok("repl", m, job)
            if a and b:
                row[job] = a[key] / b[key]
                lines.append("  %-9s %-18s %9.1f vs %9.1f %s = %.2fx (TLS costs %.0f%%)" % (
                    m, job, a[key], b[key], unit, row[job], 100.0 * (1 - row[job])))
            else:
                lines.append("  %-9s %-18s n/a" % (m, job))
        summary["tls"].append(row)
text = "\n".join(lines) + "\n"
print(text)
with open(out + "/table.txt", "a") as f:
    f.write(text)
json.dump(summary, open(out + "/replication.json", "w"), indent=2)
EOF
say "results: $OUT/{table.txt,results.json,results.csv,meta.json,fio/,logs/}"
if [ "$FAILURES" -gt 0 ]; then
    say "$FAILURES run(s) failed"
    exit 1
fi
