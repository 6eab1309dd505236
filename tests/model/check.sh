#!/usr/bin/env bash
# tests/model/check.sh - model-check the replication protocol (repvol.pml)
# with spin: generate each verifier, compile it, run it, report state-space
# sizes per run and per property, and fail on anything unexpected.
#
#   bash tests/model/check.sh [--quick | --deep] [--jobs N] [--keep] [--strict]
#                             [--full-trail] [--list] [RUN...]
#
#   --quick       the runs for `make check` (about 1-2 minutes on 2 cores)
#   --deep        larger bounds, some as bitstate searches (`make model-deep`;
#                 tens of minutes); this is the default
#   --jobs N      verifiers run in parallel (default: number of CPUs, max 4)
#   --keep        keep the work directory (trails, pan sources, logs)
#   --strict      known C-code bugs (xfail runs) count as failures
#   --full-trail  print the whole `spin -t -p` output of an unexpected error
#                 (default: the model's event lines and spin's error lines)
#   --list        print the runs and exit
#   RUN...        only these runs (names from --list)
#
# Two kinds of runs (README.md explains the fixes and the findings):
#   pass   the model with the proposed fixes (-DFIX_*): no assertion may fail,
#          no invalid end state, the search must complete
#   xfail  the model as the C code is (or with all fixes but one): the search
#          must find the documented counterexample (a given assertion);
#          reported as XFAIL; if it is NOT found any more, the C code or the
#          model changed: the run fails so README.md gets updated
# Exit: 0 all as expected, 1 something unexpected, 77 spin unavailable.
set -u

here=$(cd "$(dirname "$0")" && pwd)
model=$here/repvol.pml
mode=deep
jobs=
keep=0
strict=0
full_trail=0
list=0
only=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) mode=quick ;;
    --deep) mode=deep ;;
    --jobs) jobs=$2; shift ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    --keep) keep=1 ;;
    --strict) strict=1 ;;
    --full-trail) full_trail=1 ;;
    --list) list=1 ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) only+=("$1") ;;
    esac
    shift
done

# ---------------------------------------------------------------- tools

skip() { echo "SKIP: $*"; exit 77; }

if ! command -v spin >/dev/null 2>&1; then
    # Debian package 'spin'; only when we may install without asking.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "check.sh: spin not found: apt-get install -y spin"
        DEBIAN_FRONTEND=noninteractive apt-get install -y spin >/dev/null 2>&1 ||
            { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y spin >/dev/null 2>&1; }
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "check.sh: spin not found: sudo apt-get install -y spin"
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y spin >/dev/null 2>&1
    fi
    command -v spin >/dev/null 2>&1 ||
        skip "the spin model checker is not installed and could not be installed (Debian: apt-get install spin)"
fi
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=gcc
command -v "$CC" >/dev/null 2>&1 || skip "no C compiler to build the spin verifiers"
[ -r "$model" ] || { echo "check.sh: $model not found" >&2; exit 1; }

if [ -z "$jobs" ]; then
    jobs=$(nproc 2>/dev/null || echo 2)
    [ "$jobs" -gt 4 ] && jobs=4
fi
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1

# ---------------------------------------------------------------- runs

# The proposed fixes (README.md, "Findings"): C = mode C with fencing.
FIX_C="-DFENCE=1 -DFIX_FENCE_ALL -DFIX_SAME_GEN_STATE -DFIX_HELLO_STABLE -DFIX_MARK_AT_ISSUE \
-DFIX_FULL_SYNC_HOLES -DFIX_SAME_GEN_BITMAP -DFIX_OUTDATE_DURABLE -DFIX_META_CB -DFIX_SD_LOST -DFIX_AHEAD_GEN"
FIX_AB="-DFIX_SAME_GEN_STATE -DFIX_HELLO_STABLE -DFIX_MARK_AT_ISSUE -DFIX_FULL_SYNC_HOLES -DFIX_SAME_GEN_BITMAP \
-DFIX_META_CB -DFIX_SD_LOST -DFIX_AHEAD_GEN -DFIX_TRACK_UNACKED"
# all C fixes but one
but() { local f=" $FIX_C "; echo "${f/ -D$1 / }"; }

# name | kind | properties | -D flags | search | expected assertion (xfail) | finding
RUNS=()
run() { RUNS+=("$1|$2|$3|$4|$5|${6:-}|${7:-}"); }

# pass: the model with the proposed fixes.  Searches: exh = exhaustive
# (state compression), bit = bitstate (supertrace, 2^32 bits: near-complete,
# may miss states; used where the exhaustive one does not fit the time).
if [ "$mode" = quick ]; then
    run c-core     pass "a b c d e" "$FIX_C -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" exh
    run c-ops      pass "a b c d e" "$FIX_C -DMAXW=2 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=3" exh
    run c-crash2   pass "a b c d e" "$FIX_C -DMAXW=2 -DMAXCRASH=2 -DMAXCUT=0 -DMAXOPS=1" exh
    run c-policy   pass "b c d e"   "$FIX_C -DSB_POLICY=2 -DALLOW_FORCE=0 -DMAXW=2 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=3" exh
    run a-core     pass "b c d e"   "-DMODE=1 $FIX_AB -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
    run b-core     pass "b c d e"   "-DMODE=2 $FIX_AB -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
else
    run c-core     pass "a b c d e" "$FIX_C -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" exh
    run c-ops      pass "a b c d e" "$FIX_C -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=3" exh
    run c-crash2   pass "a b c d e" "$FIX_C -DMAXW=2 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-big      pass "a b c d e" "$FIX_C -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-policy1  pass "b c d e"   "$FIX_C -DSB_POLICY=1 -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=3" exh
    run c-policy2  pass "b c d e"   "$FIX_C -DSB_POLICY=2 -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=3" exh
    run c-al2      pass "a b c d e" "$FIX_C -DAL_CAP=2 -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" exh
    run a-core     pass "b c d e"   "-DMODE=1 $FIX_AB -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" exh
    run b-core     pass "b c d e"   "-DMODE=2 $FIX_AB -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" exh
fi

# xfail: counterexamples against the C code as it is (one run per finding;
# "all fixes but X" isolates finding X).  Small bounds: found in seconds.
X="-DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2"
run bug-nofence      xfail a   "$X" bit a_ok "0 (no fence-peer handler: (a) cannot hold)"
run bug-as-is        xfail "a b c d e" "-DFENCE=1 $X" bit a_ok "1 (the model exactly as the code is)"
run bug-fence-gap    xfail a   "$(but FIX_FENCE_ALL) $X" bit a_ok "1 (fencing only on loss of a live link)"
run bug-insync-state xfail e   "$(but FIX_SAME_GEN_STATE) $X" bit e_ok "2 (same generation: Outdated/Inconsistent secondary stays so)"
run bug-hello        xfail e   "$(but FIX_HELLO_STABLE) $X" bit e_ok "3 (dialer decides on a state newer than its HELLO)"
run bug-late-mark    xfail d   "$(but FIX_MARK_AT_ISSUE) $X" bit d_ok "4 (local-only write marked only at req_join)"
run bug-full-holes   xfail d   "$(but FIX_FULL_SYNC_HOLES) $X" bit d_ok "5 (full sync skips holes the target has data in)"
run bug-meta-cb      xfail c   "$(but FIX_META_CB) -DMAXW=3 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2" bit c_ok "6 (meta_commit callback runs after the flush in flight)"
run bug-same-gen-bm  xfail d   "$(but FIX_SAME_GEN_BITMAP) $X" bit d_ok "7 (same generation: the secondary's dirty bits are ignored)"
run bug-outdate      xfail a   "$(but FIX_OUTDATE_DURABLE) -DMAXW=3 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2" bit a_ok "8 (repvol outdate answers before Outdated is durable)"
run bug-sd-lost      xfail b   "$(but FIX_SD_LOST) $X" bit b_ok "9 (SYNC_DONE answer lost: one generation, two data sets)"
run bug-ahead-gen    xfail b   "$(but FIX_AHEAD_GEN) -DMAXW=3 -DMAXCRASH=2 -DMAXCUT=0 -DMAXOPS=2" bit b_ok "12 (deferred flush: no new generation after a quick reconnect)"
run bug-mode-a       xfail d   "-DMODE=1 ${FIX_AB/-DFIX_TRACK_UNACKED/} -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" bit d_ok "10 (mode A: activity log released before the peer's ACK)"
run bug-mode-b       xfail d   "-DMODE=2 ${FIX_AB/-DFIX_TRACK_UNACKED/} -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" bit d_ok "11 (mode B: received, not applied, not marked)"

if [ "$list" = 1 ]; then
    for r in "${RUNS[@]}"; do
        IFS='|' read -r name kind props flags search expect finding <<<"$r"
        printf '%-17s %-5s %-10s %-4s %s\n' "$name" "$kind" "$props" "$search" "$flags"
    done
    exit 0
fi
if [ ${#only[@]} -gt 0 ]; then
    sel=()
    for r in "${RUNS[@]}"; do
        for o in "${only[@]}"; do [ "${r%%|*}" = "$o" ] && sel+=("$r"); done
    done
    [ ${#sel[@]} -gt 0 ] || { echo "check.sh: no such run: ${only[*]} (try --list)" >&2; exit 2; }
    RUNS=("${sel[@]}")
fi

# ---------------------------------------------------------------- one run

work=$(mktemp -d "${TMPDIR:-/tmp}/repvol-model.XXXXXX")
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# verify NAME KIND FLAGS SEARCH: writes $work/NAME/{pan.log,result}
verify() {
    local name=$1 kind=$2 flags=$3 search=$4 d=$work/$1
    mkdir -p "$d"
    cp "$model" "$d/repvol.pml"
    local t0 t1 ccflags panflags
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    if ! (cd "$d" && spin -a $flags repvol.pml >spin.log 2>&1); then
        echo "status=modelerror" >"$d/result"; return
    fi
    case $search in
    exh) ccflags="-DCOLLAPSE -DMEMLIM=${MODEL_MEMLIM:-6144}"; panflags="" ;;
    bit) ccflags="-DBITSTATE"; panflags="-w${MODEL_BITS:-32}" ;;
    esac
    [ "$kind" = xfail ] && ccflags="-DBITSTATE" && panflags="-w26"
    # shellcheck disable=SC2086
    if ! (cd "$d" && $CC -O2 -w -DSAFETY -DVECTORSZ=2048 -DNFAIR=3 $ccflags -o pan pan.c >cc.log 2>&1); then
        echo "status=ccerror" >"$d/result"; return
    fi
    # -m: search depth limit (far above the deepest path), -c1: stop at the first error
    # shellcheck disable=SC2086
    (cd "$d" && ./pan -m200000 -c1 -n $panflags >pan.log 2>&1)
    t1=$(date +%s.%N)
    local log=$d/pan.log errors stored matched depth viol incomplete=0
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | tail -1)
    stored=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | tail -1)
    matched=$(sed -n 's/^ *\([0-9.e+]*\) states, matched.*/\1/p' "$log" | tail -1)
    depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$log" | tail -1)
    viol=$(sed -n 's/^pan:[0-9]*: \(.*\) (at depth [0-9]*)$/\1/p' "$log" | head -1)
    grep -q 'max search depth too small\|reached -DMEMLIM bound\|out of memory' "$log" && incomplete=1
    {
        echo "status=done"
        echo "errors=${errors:-?}"
        echo "stored=${stored:-?}"
        echo "matched=${matched:-?}"
        echo "depth=${depth:-?}"
        echo "viol=${viol}"
        echo "incomplete=$incomplete"
        echo "secs=$(echo "$t1 - $t0" | bc 2>/dev/null || echo "?")"
    } >"$d/result"
}

# ---------------------------------------------------------------- run them

echo "repvol protocol model: $model ($mode, $(spin -V | head -1), $jobs parallel)"
start=$(date +%s)
running=0
for r in "${RUNS[@]}"; do
    IFS='|' read -r name kind props flags search expect finding <<<"$r"
    if [ "$running" -ge "$jobs" ]; then
        wait -n 2>/dev/null || true
        running=$((running - 1))
    fi
    verify "$name" "$kind" "$flags" "$search" &
    running=$((running + 1))
done
wait

# ---------------------------------------------------------------- report

fail=0
declare -A prop_runs=()
printf '\n%-6s %-17s %-10s %-4s %12s %12s %6s %7s  %s\n' RESULT RUN PROPERTIES SRCH STORED MATCHED DEPTH SECS NOTE
for r in "${RUNS[@]}"; do
    IFS='|' read -r name kind props flags search expect finding <<<"$r"
    d=$work/$name
    status= errors= stored= matched= depth= viol= incomplete= secs=
    # shellcheck disable=SC1090,SC1091
    [ -f "$d/result" ] && . "$d/result"
    res= note=
    if [ "$status" != done ]; then
        res=ERROR; note="$status: see $d/*.log"
        [ -f "$d/spin.log" ] && sed 's/^/    /' "$d/spin.log" | head -20
        [ -f "$d/cc.log" ] && sed 's/^/    /' "$d/cc.log" | head -20
    elif [ "$kind" = pass ]; then
        if [ "$errors" = 0 ] && [ "$incomplete" = 0 ]; then
            res=PASS
            [ "$search" = bit ] && note="bitstate (supertrace) search"
            for p in $props; do prop_runs[$p]+="$name:$stored "; done
        else
            res=FAIL; note=${viol:-"search incomplete (depth or memory limit)"}
        fi
    else
        if [ "${errors:-0}" != 0 ] && [ "${viol#assertion violated }" = "$expect" ]; then
            res=XFAIL; note="finding $finding: $viol"
            [ "$strict" = 1 ] && res=FAIL
        elif [ "${errors:-0}" != 0 ]; then
            res=FAIL; note="expected $expect, found '$viol' (finding $finding)"
        else
            res=XPASS; note="finding $finding no longer reproduced: update README.md and this list"
        fi
    fi
    printf '%-6s %-17s %-10s %-4s %12s %12s %6s %7s  %s\n' "$res" "$name" "${props// /,}" "$search" \
        "${stored:-}" "${matched:-}" "${depth:-}" "${secs:-}" "$note"
    case $res in
    PASS | XFAIL) ;;
    *)
        fail=1
        if [ -f "$d/repvol.pml.trail" ]; then
            echo "---- $name: counterexample (spin -t -p; model events and errors) ----"
            # shellcheck disable=SC2086
            if [ "$full_trail" = 1 ]; then
                (cd "$d" && spin -t -p $flags repvol.pml)
            else
                (cd "$d" && spin -t -p $flags repvol.pml) | grep -E 'MSC:|Error|assert|violated' | sed 's/^ *//'
            fi
            echo "---- full trail: spin -t -p $flags repvol.pml (in $d; --keep keeps it) ----"
            keep=1
        fi
        ;;
    esac
done

echo
echo "properties (pass runs that checked them: states stored):"
for p in a b c d e; do
    case $p in
    a) what="(a) mode C: every acknowledged write is on any node that becomes primary without --force/discard" ;;
    b) what="(b) diverged copies are never connected without --discard-my-data or a policy" ;;
    c) what="(c) a copy holding an unfinished resync is never promoted without --force (nor restarts UpToDate)" ;;
    d) what="(d) a resync never leaves an UpToDate copy with a stale block (SYNC_DONE; quiescent pair identical)" ;;
    e) what="(e) with the link up and nothing failing, a resync finishes (end-state check)" ;;
    esac
    echo "  $what"
    echo "      ${prop_runs[$p]:-none}"
done
echo
echo "total $(( $(date +%s) - start )) s; work directory $work$([ "$keep" = 1 ] && echo " (kept)" || echo " (removed)")"
[ "$fail" = 0 ] && echo "model check: OK" || echo "model check: FAILED"
exit $fail
