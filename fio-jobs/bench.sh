#!/usr/bin/env bash
# fio-jobs/bench.sh - side-by-side benchmark of repvold against the raw image
# file and against nbdkit's file plugin.  Prints numbers; it is not a
# pass/fail test (it exits non-zero only when a run could not be made).
#
#   sudo bash fio-jobs/bench.sh [OPTIONS]
#
# Options (each also settable through the environment variable in brackets):
#   --targets LIST   comma-separated, in order (BENCH_TARGETS, default
#                    raw,nbdkit,repvold).  A new target NAME is a set of
#                    functions target_NAME_{describe,prepare,start,stop}
#                    below; see "Targets".
#   --modes LIST     direct,buffered (BENCH_MODES, default both)
#   --jobs LIST      job names = fio-jobs/NAME.fio (BENCH_JOBS, default all six)
#   --size SIZE      bytes of each target used, fio syntax: 1g, 512m (BENCH_SIZE, 1g)
#   --runtime SECS   measured seconds per job (BENCH_RUNTIME, 10)
#   --ramp SECS      seconds run before measuring (BENCH_RAMP, 1)
#   --dir DIR        work directory for the images (BENCH_DIR, /var/tmp/repvol-bench);
#                    every target's file lives here, so all are on one disk
#   --out DIR        results directory (BENCH_OUT, DIR/results-TIMESTAMP)
#   --build DIR      build directory with repvol and repvold (BENCH_BUILD, REPO/build)
#   --keep           keep the images afterwards (default: delete them)
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
# (fio's own output) and the servers' logs.
#
# Server CPU is measured over the whole fio run, ramp included, and divided by
# an estimate of the I/Os done over the whole run (measured IOPS x (ramp +
# runtime)).  fio and the server share the machine's cores.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

TARGETS=${BENCH_TARGETS:-raw,nbdkit,repvold}
MODES=${BENCH_MODES:-direct,buffered}
JOBS=${BENCH_JOBS:-randwrite-4k-qd1,randwrite-4k-qd32,randread-4k-qd1,randread-4k-qd32,seqwrite-1m,seqread-1m}
SIZE=${BENCH_SIZE:-1g}
RUNTIME=${BENCH_RUNTIME:-10}
RAMP=${BENCH_RAMP:-1}
DIR=${BENCH_DIR:-/var/tmp/repvol-bench}
OUT=${BENCH_OUT:-}
BUILD=${BENCH_BUILD:-$REPO/build}
KEEP=${BENCH_KEEP:-0}

usage() { sed -n '2,52p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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

for t in "${TARGET_LIST[@]}"; do
    declare -F "target_${t}_start" >/dev/null || die "unknown target '$t' (known: raw, nbdkit, repvold)"
done

# ------------------------------------------------------------------ cleanup

CURRENT_TARGET=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CURRENT_TARGET" ] && [ -n "$SERVER_PID" ]; then
        stop_pid "$SERVER_PID" 10
    fi
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
            c1=0
            [ -n "$SERVER_PID" ] && c1=$(cpu_ticks "$SERVER_PID")
            if [ -n "$SERVER_PID" ] && ! pid_alive "$SERVER_PID"; then
                say "error: $t server died during $j (log: $SERVER_LOG)"
                [ "$rc" != 0 ] || rc=1
            fi
            cpu=""
            [ -n "$SERVER_PID" ] && [ "$c0" -ge 0 ] && [ "$c1" -ge 0 ] && cpu=$((c1 - c0))
            python3 - "$out" "$RECORDS" "$t" "$m" "$j" "$rc" "$cpu" "$CLK_TCK" "$RUNTIME" "$RAMP" "$MODE_DESC" "$n" "$total" <<'EOF'
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
with open(records, "a") as f:
    f.write(json.dumps(rec) + "\n")
s = "%-8s %-8s %-18s " % (target, mode, job)
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
    lines.append("  %-8s %-8s %s" % (t, m, desc))
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
say "results: $OUT/{table.txt,results.json,results.csv,meta.json,fio/,logs/}"
if [ "$FAILURES" -gt 0 ]; then
    say "$FAILURES run(s) failed"
    exit 1
fi
