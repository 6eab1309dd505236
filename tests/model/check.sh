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

# (tests/install-deps.sh installs spin; a test run never downloads anything)
command -v spin >/dev/null 2>&1 ||
    skip "the spin model checker is not installed (Debian: apt-get install spin; or tests/install-deps.sh)"
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

# The findings (README.md, "Findings").  One line each:
#   number | short name | FIX_ flag of the model | assertions it violates |
#   bounds (and mode) of its counterexample run | runs: q quick and deep,
#   d deep only (the search takes minutes), n none (not reproduced, or no
#   longer with the other fixes in: README.md) | what
# A finding whose fix is in the C code is in FIXED below: the model has
# that fix on by default (repvol.pml, top), and -DBUG_<name> brings the old
# code back for its xfail run.  An open finding's fix is only proposed: the
# pass runs turn it on (-DFIX_<name>), its xfail run leaves it off.
XB="-DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2"
XB2="-DMAXW=3 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2"
FINDINGS=(
"1|fence-gap|FENCE_ALL|a_ok|$XB|q|fencing only on loss of a live link"
"2|insync-state|SAME_GEN_STATE|e_ok|$XB|q|same generation: an Outdated/Inconsistent secondary stays so"
"3|hello|HELLO_STABLE|c_ok d_ok e_ok|$XB|q|the dialer decides on a state newer than its HELLO"
"4|late-mark|MARK_AT_ISSUE|d_ok a_ok|$XB|q|a local-only write is marked dirty only at req_join"
"5|full-holes|FULL_SYNC_HOLES|d_ok|-DALLOW_FORCE=0 -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=3|n|a full sync skips holes the target has data in"
"6|meta-cb|META_CB|a_ok c_ok|$XB2|d|the meta_commit callback runs after the flush already in flight"
"7|same-gen-bm|SAME_GEN_BITMAP|d_ok|$XB|n|same generation: the secondary's dirty bits are ignored"
"8|outdate|OUTDATE_DURABLE|a_ok|$XB2|d|'repvol outdate' answers before Outdated is durable"
"9|sd-lost|SD_LOST|b_ok a_ok|$XB|d|SYNC_DONE's answer lost: one generation, two data sets"
"10|mode-a|AL_UNTIL_ACK|d_ok|-DMODE=1 -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0|q|mode A: the activity log lets go before the peer's ACK"
"11|mode-b|TRACK_UNACKED|d_ok|-DMODE=2 -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0|q|mode B: received, not applied, not marked"
"13|fence-handshake|FENCE_HANDSHAKE|a_ok|$XB|q|a write issued before the link came up is acknowledged before the peer is a resync target"
"12|ahead-gen|AHEAD_GEN|b_ok a_ok|-DMAXW=3 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2|n|deferred flush: no new generation after a quick reconnect"
"14|sd-durable|SD_DURABLE|b_ok d_ok|-DMAXW=3 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2|n|SYNC_DONE in flight when the source crashes (its counterexample needs a search of hours)"
)
# Fixes in the C code (model default; see repvol.pml).
FIXED=" FENCE_ALL SAME_GEN_STATE MARK_AT_ISSUE SAME_GEN_BITMAP SD_LOST AL_UNTIL_ACK META_CB OUTDATE_DURABLE HELLO_STABLE FENCE_HANDSHAKE TRACK_UNACKED SD_DURABLE "
# Proposed fixes of the open findings, for the pass runs.
OPEN_C= OPEN_AB=
for f in "${FINDINGS[@]}"; do
    IFS='|' read -r num name flag asserts bounds when what <<<"$f"
    case "$FIXED" in *" $flag "*) continue ;; esac
    case $num in
    1 | 8 | 13) OPEN_C+=" -DFIX_$flag" ;;                  # fencing: mode C only
    10 | 11) case "$OPEN_AB" in *FIX_$flag*) ;; *) OPEN_AB+=" -DFIX_$flag" ;; esac ;;
    *) case "$OPEN_C" in *FIX_$flag*) ;; *) OPEN_C+=" -DFIX_$flag"; OPEN_AB+=" -DFIX_$flag" ;; esac ;;
    esac
done
C="-DFENCE=1$OPEN_C"
AB="$OPEN_AB"
without() { local f=" $1 "; echo "${f/ -DFIX_$2 / }"; }

# name | kind | properties | -D flags | search | expected assertions (xfail) | finding
RUNS=()
run() { RUNS+=("$1|$2|$3|$4|$5|${6:-}|${7:-}"); }

# pass: the code's model plus the proposed fixes of the open findings.
# exh = exhaustive (state compression); bit = bitstate (supertrace: may
# miss states; only where the exhaustive search does not fit the time).
Q="-DMAXINFL=1"
if [ "$mode" = quick ]; then
    run c-cut        pass "a b c d e" "$C $Q -DMAXW=2 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=0" exh
    run c-crash      pass "a b c d e" "$C $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=0 -DMAXOPS=0" exh
    run c-crash-cut  pass "a b c d e" "$C $Q -DMAXW=1 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
    run c-ops        pass "a b c d e" "$C $Q -DMAXW=1 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=1" exh
    run c-policy     pass "b c d e"   "$C -DSB_POLICY=2 -DALLOW_FORCE=0 $Q -DMAXW=1 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=1" exh
    run a-core       pass "b c d e"   "-DMODE=1 $AB $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=0 -DMAXOPS=0" exh
    run b-core       pass "b c d e"   "-DMODE=2 $AB $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=0 -DMAXOPS=0" exh
else
    run c-cut        pass "a b c d e" "$C -DMAXW=2 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=0" exh
    run c-crash-cut  pass "a b c d e" "$C $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
    run c-ops        pass "a b c d e" "$C $Q -DMAXW=2 -DMAXCRASH=0 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-crash2     pass "a b c d e" "$C $Q -DMAXW=1 -DMAXCRASH=2 -DMAXCUT=0 -DMAXOPS=1" exh
    run c-core       pass "a b c d e" "$C $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" bit
    run c-big        pass "a b c d e" "$C -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-crash2-big pass "a b c d e" "$C -DMAXW=2 -DMAXCRASH=2 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-policy1    pass "b c d e"   "$C -DSB_POLICY=1 $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-policy2    pass "b c d e"   "$C -DSB_POLICY=2 $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=2" bit
    run c-al2        pass "a b c d e" "$C -DAL_CAP=2 $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" bit
    run a-core       pass "b c d e"   "-DMODE=1 $AB $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
    run b-core       pass "b c d e"   "-DMODE=2 $AB $Q -DMAXW=2 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=0" exh
    run a-big        pass "b c d e"   "-DMODE=1 $AB -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" bit
    run b-big        pass "b c d e"   "-DMODE=2 $AB -DMAXW=3 -DMAXCRASH=1 -DMAXCUT=1 -DMAXOPS=1" bit
fi

# xfail: one counterexample per finding (bitstate, small bounds: found in
# seconds).  Open finding: the proposed fixes of all the others, not its
# own.  Fixed finding: -DBUG_<name> (the old code) shows the property can
# fail and the run still finds it.
run bug-nofence xfail a "$XB" bit "a_ok" "0 (no fence-peer handler: (a) cannot hold; a documented limitation)"
for f in "${FINDINGS[@]}"; do
    IFS='|' read -r num name flag asserts bounds when what <<<"$f"
    [ "$when" = n ] && continue
    [ "$when" = d ] && [ "$mode" = quick ] && continue
    case $num in 10 | 11) base=$AB ;; *) base=$C ;; esac
    case "$FIXED" in
    *" $flag "*) run "bug-$name" xfail "-" "$base -DBUG_$flag $bounds" bit "$asserts" "$num (fixed: $what)" ;;
    *) run "bug-$name" xfail "-" "$(without "$base" "$flag") $bounds" bit "$asserts" "$num (open: $what)" ;;
    esac
done

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
    exh) ccflags="-DCOLLAPSE -DMEMLIM=${MODEL_MEMLIM:-4096}"; panflags="" ;;
    bit) ccflags="-DBITSTATE"; panflags="-w${MODEL_BITS:-31}" ;;
    esac
    [ "$kind" = xfail ] && ccflags="-DBITSTATE" && panflags="-w26"
    # pan.c is large: -O0 compiles in seconds, -O1 runs ~1.5x faster
    local opt=-O1
    [ "$mode" = quick ] || [ "$kind" = xfail ] && opt=-O0
    # shellcheck disable=SC2086
    if ! (cd "$d" && $CC $opt -w -DSAFETY -DVECTORSZ=2048 -DNFAIR=3 $ccflags -o pan pan.c >cc.log 2>&1); then
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
        printf 'viol=%q\n' "$viol"
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
        if [ "${errors:-0}" != 0 ] && [[ " $expect " == *" ${viol#assertion violated } "* ]]; then
            res=XFAIL; note="finding $finding: $viol"
            [ "$strict" = 1 ] && res=FAIL
        elif [ "${errors:-0}" != 0 ]; then
            res=FAIL; note="expected one of: $expect; found '$viol' (finding $finding)"
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
