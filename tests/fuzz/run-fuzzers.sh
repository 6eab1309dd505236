#!/usr/bin/env bash
# tests/fuzz/run-fuzzers.sh - build and run the libFuzzer harnesses.
#
#   run-fuzzers.sh [options] [harness...]     default: all harnesses
#
#   --smoke         replay corpus + regressions, then fuzz a few seconds each
#                   (what 'make check' runs; deterministic seed)
#   --time SEC      fuzzing time per harness (default 60; smoke: 4)
#   --jobs N        harnesses run in parallel (default: number of CPUs)
#   --build-only    compile, don't run
#   --replay FILE.. run the given inputs through every selected harness
#                   (e.g. to check a crash artifact is fixed), no fuzzing
#   -h, --help
#
# Harness names: fuzz-nbd-handshake fuzz-nbd-request fuzz-repl-frame fuzz-meta
# (or a unique part of one: handshake, request, repl, meta).
#
# Environment:
#   abs_top_srcdir     source tree (default: two levels above this script)
#   abs_top_builddir   build tree (default: abs_top_srcdir)
#   FUZZ_CC            clang to use.  Unset: look for clang.  Set but empty
#                      (configure found none): skip.
#   FUZZ_BIN_DIR       where binaries go (default $abs_top_builddir/tests/fuzz/bin)
#   FUZZ_WORK_DIR      growing corpora and crash artifacts of the long runs
#                      (default $abs_top_builddir/tests/fuzz/work)
#   FUZZ_SEED          libFuzzer -seed (smoke default 1; long runs: random)
#   FUZZ_EXTRA_CFLAGS  added when compiling (e.g. -fsanitize=unsigned-integer-overflow)
#   FUZZ_EXTRA_ARGS    added to every libFuzzer command line
#
# The harnesses link the real sources of librepvol-core (compiled here with
# clang and the sanitizers), never copies.  Exit status: 0 all fine, 1 a
# harness crashed or failed to build, 77 clang/libFuzzer unavailable (skip).
set -uo pipefail

HARNESSES_ALL=(fuzz-nbd-handshake fuzz-nbd-request fuzz-repl-frame fuzz-meta)
# The parsers, i.e. librepvol-core minus the control-socket client (which
# needs a socket and is not a parser).
CORE_SOURCES=(
    server/log.c server/util.c server/crc32c.c server/meta_format.c
    server/nbd_proto.c server/nbd_handshake.c server/repl_proto.c server/strbuf.c
)

say() { printf 'run-fuzzers: %s\n' "$*"; }
die() { printf 'run-fuzzers: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'run-fuzzers: SKIP: %s\n' "$*"; exit 77; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=${abs_top_srcdir:-$(cd "$here/../.." && pwd)}
builddir=${abs_top_builddir:-$srcdir}
fuzzsrc=$srcdir/tests/fuzz
bindir=${FUZZ_BIN_DIR:-$builddir/tests/fuzz/bin}
workdir=${FUZZ_WORK_DIR:-$builddir/tests/fuzz/work}

smoke=0
build_only=0
time_per=""
jobs=$(nproc 2>/dev/null || echo 2)
replay=()
selected=()
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) smoke=1 ;;
    --build-only) build_only=1 ;;
    --time) shift; time_per=${1:?--time needs seconds} ;;
    --time=*) time_per=${1#--time=} ;;
    --jobs) shift; jobs=${1:?--jobs needs a number} ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    --replay) shift; while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do replay+=("$1"); shift; done; continue ;;
    -h | --help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *)
        # Exact name, or a unique part of one ("meta", "repl").
        h=""
        for c in "${HARNESSES_ALL[@]}"; do
            if [ "$c" = "$1" ] || [ "$c" = "fuzz-$1" ]; then h=$c; break; fi
            case "$c" in *"$1"*) [ -z "$h" ] && h=$c || h=ambiguous ;; esac
        done
        [ -n "$h" ] && [ "$h" != ambiguous ] || die "no single harness matches '$1' (have: ${HARNESSES_ALL[*]})"
        selected+=("$h")
        ;;
    esac
    shift
done
[ ${#selected[@]} -gt 0 ] || selected=("${HARNESSES_ALL[@]}")
[ -n "$time_per" ] || { [ $smoke = 1 ] && time_per=4 || time_per=60; }
case "$time_per$jobs" in *[!0-9]*) die "--time and --jobs take whole numbers" ;; esac
[ "$jobs" -ge 1 ] || jobs=1

# ------------------------------------------------------------ the compiler
if [ "${FUZZ_CC+set}" = set ]; then
    [ -n "$FUZZ_CC" ] || skip "configure found no clang with libFuzzer (install clang and libclang-rt-14-dev, re-run configure)"
    cc=$FUZZ_CC
else
    cc=""
    for c in clang clang-14 clang-15 clang-16 clang-17 clang-18; do
        if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
    done
    [ -n "$cc" ] || skip "no clang found (Debian: apt-get install clang libclang-rt-14-dev)"
fi
command -v "$cc" >/dev/null 2>&1 || skip "FUZZ_CC='$cc' is not an executable"

SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
CFLAGS=(-std=gnu11 -g -O1 -D_GNU_SOURCE -I"$srcdir/include" -Wall -Wextra -Wno-unused-parameter
        -Wshadow -Wvla -Wformat=2 "${SAN[@]}")
# Same as the regular build, which force-includes the configure results.
[ -f "$builddir/config.h" ] && CFLAGS+=(-include "$builddir/config.h")
# shellcheck disable=SC2206
[ -n "${FUZZ_EXTRA_CFLAGS:-}" ] && CFLAGS+=($FUZZ_EXTRA_CFLAGS)
LIBS=$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)
CRYPTO_CFLAGS=$(pkg-config --cflags libcrypto 2>/dev/null || true)

mkdir -p "$bindir" || die "cannot create $bindir"

# Does this clang have libFuzzer and the sanitizer runtimes?  Cached per
# compiler path in the bin dir.
probe_stamp=$bindir/.probe-$(printf '%s' "$(command -v "$cc")" | tr -c 'A-Za-z0-9' _)
if [ ! -f "$probe_stamp" ]; then
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return n > 0 && d[0] == 42; }\n' \
        > "$bindir/probe.c"
    if "$cc" -fsanitize=fuzzer "${SAN[@]}" "$bindir/probe.c" -o "$bindir/probe" >"$bindir/probe.log" 2>&1 &&
       "$bindir/probe" -runs=10 >>"$bindir/probe.log" 2>&1; then
        : >"$probe_stamp"
    else
        skip "$cc cannot build or run a libFuzzer binary (Debian: apt-get install libclang-rt-14-dev); see $bindir/probe.log"
    fi
    rm -f "$bindir/probe" "$bindir/probe.c"
fi

# ------------------------------------------------------------------- build
# Objects are rebuilt when their source, any header, this script or the
# compiler flags change; cheap enough that no dependency tracking is needed.
flags_id=$(printf '%s ' "$cc" "${CFLAGS[@]}" | cksum | cut -d' ' -f1)
deps=("$srcdir"/include/repvol/*.h "$fuzzsrc/fuzz-util.h" "${BASH_SOURCE[0]}")
[ -f "$builddir/config.h" ] && deps+=("$builddir/config.h")
newest_dep=$(ls -t "${deps[@]}" | head -1)
objdir=$bindir/obj-$flags_id
mkdir -p "$objdir"

needs_build() {   # target source
    [ ! -e "$1" ] || [ "$2" -nt "$1" ] || [ "$newest_dep" -nt "$1" ]
}

build_failed=0
compile() {   # source object [extra flags]
    local src=$1 obj=$2
    shift 2
    if needs_build "$obj" "$src"; then
        # shellcheck disable=SC2086
        "$cc" "${CFLAGS[@]}" $CRYPTO_CFLAGS "$@" -c "$src" -o "$obj.tmp" 2>"$obj.log" &&
            mv "$obj.tmp" "$obj" || { cat "$obj.log" >&2; return 1; }
        [ -s "$obj.log" ] && cat "$obj.log" >&2
    fi
    return 0
}

build() {
    local pids=() objs=() s o h
    for s in "${CORE_SOURCES[@]}"; do
        [ -f "$srcdir/$s" ] || die "missing core source $srcdir/$s"
        o=$objdir/$(basename "$s" .c).o
        objs+=("$o")
        # -fsanitize=fuzzer-no-link: coverage instrumentation without main().
        compile "$srcdir/$s" "$o" -fsanitize=fuzzer-no-link &
        pids+=($!)
        if [ ${#pids[@]} -ge $((jobs * 2)) ]; then wait "${pids[0]}" || build_failed=1; pids=("${pids[@]:1}"); fi
    done
    for h in "${selected[@]}"; do
        compile "$fuzzsrc/$h.c" "$objdir/$h.o" -fsanitize=fuzzer-no-link -Werror &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || build_failed=1; done
    [ $build_failed = 0 ] || return 1
    for h in "${selected[@]}"; do
        local newest_obj
        newest_obj=$(ls -t "${objs[@]}" "$objdir/$h.o" | head -1)
        if [ ! -e "$bindir/$h" ] || [ "$newest_obj" -nt "$bindir/$h" ]; then
            # shellcheck disable=SC2086
            "$cc" -fsanitize=fuzzer "${SAN[@]}" "$objdir/$h.o" "${objs[@]}" $LIBS \
                -o "$bindir/$h" || return 1
        fi
    done
}

t0=$(date +%s)
build || die "build failed"
say "built ${selected[*]} with $cc in $(( $(date +%s) - t0 ))s ($bindir)"
[ $build_only = 1 ] && exit 0

# --------------------------------------------------------------------- run
# Per-harness libFuzzer options: inputs larger than a unit buys nothing.
max_len() {
    case "$1" in
    fuzz-nbd-handshake) echo 24576 ;;   # a dozen options, or one past the 16 KiB cap
    fuzz-nbd-request)   echo 4096 ;;
    fuzz-repl-frame)    echo 8192 ;;    # hello (up to 4 KiB) + refuse + frames
    fuzz-meta)          echo 4608 ;;    # one 4 KiB superblock and some slack
    *)                  echo 4096 ;;
    esac
}

files_in() {   # dir: the regular files in it, sorted (none: nothing)
    [ -d "$1" ] || return 0
    find "$1" -maxdepth 1 -type f ! -name '.*' ! -name 'README*' | LC_ALL=C sort
}

# Runs in the background; everything goes to $log, the verdict to $log.rc.
run_one() {   # harness log
    local h=$1 log=$2 bin=$bindir/$1 rc=0
    local corpus=$fuzzsrc/corpus/$h regr=$fuzzsrc/regressions/$h
    local common=(-max_len="$(max_len "$h")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    # shellcheck disable=SC2206
    [ -n "${FUZZ_EXTRA_ARGS:-}" ] && common+=($FUZZ_EXTRA_ARGS)
    {
        if [ ${#replay[@]} -gt 0 ]; then
            "$bin" "${common[@]}" "${replay[@]}" || rc=1
            echo "$rc" >"$log.rc"
            return
        fi
        # 1. Every seed and every regression input, one by one.
        local inputs=()
        mapfile -t inputs < <(files_in "$corpus"; files_in "$regr")
        if [ ${#inputs[@]} -gt 0 ]; then
            echo "== replay ${#inputs[@]} inputs"
            "$bin" "${common[@]}" "${inputs[@]}" >/dev/null 2>"$log.replay" || {
                cat "$log.replay"
                echo "REPLAY FAILED on $(grep '^Running: ' "$log.replay" | tail -1 | cut -c10-)"
                rc=1
            }
            tail -n 3 "$log.replay"
        fi
        # 2. Fuzz, starting from the seeds and regressions.  New inputs go to
        #    the first (writable) corpus directory, never into the source tree.
        if [ $rc = 0 ]; then
            local wc art seed=()
            if [ $smoke = 1 ]; then
                wc=$(mktemp -d "${TMPDIR:-/tmp}/repvol-fuzz-$h.XXXXXX")
                art=$wc/artifacts/
                seed=(-seed="${FUZZ_SEED:-1}")
            else
                wc=$workdir/corpus/$h
                art=$workdir/artifacts/$h/
                [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
            fi
            mkdir -p "$wc" "$art"
            local dirs=("$wc")
            [ -d "$corpus" ] && dirs+=("$corpus")
            [ -d "$regr" ] && dirs+=("$regr")
            echo "== fuzz ${time_per}s"
            "$bin" "${common[@]}" "${seed[@]}" -max_total_time="$time_per" \
                -artifact_prefix="$art" "${dirs[@]}" || rc=1
            if [ $rc != 0 ]; then
                echo "ARTIFACTS:"
                find "$art" -maxdepth 1 -type f | sed 's/^/  /'
                if [ $smoke = 1 ]; then
                    # Keep the crash input where the user can find it.
                    mkdir -p "$workdir/artifacts/$h" &&
                        cp "$art"* "$workdir/artifacts/$h/" 2>/dev/null &&
                        echo "  (copied to $workdir/artifacts/$h/)"
                fi
            fi
            [ $smoke = 1 ] && rm -rf "$wc"
        fi
        echo "$rc" >"$log.rc"
    } >"$log" 2>&1
}

logdir=$bindir/logs
mkdir -p "$logdir"
if [ ${#replay[@]} -gt 0 ]; then
    say "replaying ${#replay[@]} input(s) through ${selected[*]}"
elif [ $smoke = 1 ]; then
    say "smoke: replay corpus and regressions, then ${time_per}s of fuzzing per harness, $jobs at a time"
else
    say "fuzzing ${time_per}s per harness, $jobs at a time; corpora in $workdir/corpus"
fi

running=()
for h in "${selected[@]}"; do
    rm -f "$logdir/$h.log.rc"
    run_one "$h" "$logdir/$h.log" &
    running+=($!)
    if [ ${#running[@]} -ge "$jobs" ]; then wait "${running[0]}"; running=("${running[@]:1}"); fi
done
wait

failed=0
printf '\n%-20s %-8s %14s %10s %8s  %s\n' harness result executions exec/s corpus "cov / detail"
for h in "${selected[@]}"; do
    log=$logdir/$h.log
    rc=$(cat "$log.rc" 2>/dev/null || echo 1)
    # libFuzzer's final stats: "stat::number_of_executed_units: N" etc.
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    if [ "$rc" = 0 ]; then res=ok; else res=FAILED; failed=1; fi
    printf '%-20s %-8s %14s %10s %8s  %s\n' "$h" "$res" "${execs:--}" "${speed:--}" "${corp:--}" "${cov:-}"
done
for h in "${selected[@]}"; do
    log=$logdir/$h.log
    if [ "$(cat "$log.rc" 2>/dev/null || echo 1)" != 0 ]; then
        printf '\n---- %s (full log: %s)\n' "$h" "$log"
        grep -E 'ERROR:|SUMMARY:|invariant violated|deadly signal|runtime error|Test unit written|REPLAY FAILED|^  /|copied to' "$log" | head -40
    fi
done
if [ $failed = 1 ]; then
    printf '\nA harness failed.  Reproduce with:  %s/<harness> <artifact>\n' "$bindir"
    printf 'then fix the parser and add the input: see tests/fuzz/README.md ("Regression inputs").\n'
    exit 1
fi
exit 0
