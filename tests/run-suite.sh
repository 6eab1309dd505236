#!/usr/bin/env bash
# tests/run-suite.sh - the whole test suite, from a fresh clone, unattended:
#
#   sudo bash tests/run-suite.sh
#
#   1. tests/install-deps.sh             (no-op when everything is installed)
#   2. ./autogen.sh
#   3. build/      ../configure                      make -j2, make check
#   4. build-san/  ../configure --enable-sanitizers  make -j2, make check
#   5. make -C build check-valgrind     (unit tests and two e2e tests under valgrind)
#   6. make -C build check-vm           (ublk and kernel NBD tests in a qemu guest
#                                        running a Debian 6.12 kernel; tests/vm/)
#
# Old build/ and build-san/ are removed first.  Tests run two at a time
# (RUN_SUITE_CHECK_JOBS; each end-to-end test has its own namespaces,
# directories, sockets and ports).
# At the end: the failing tests' logs, the skipped tests with their reasons,
# and a last line "N passed, M failed" counting every automake test result
# of every phase (a test run in two phases counts twice).  Exit status 0 only
# if nothing failed; skips (exit 77) are not failures.
#
# Environment:
#   RUN_SUITE_PHASE_TIMEOUT=1500   seconds allowed for one 'make check' phase
#   RUN_SUITE_PHASES="build san valgrind vm"   phases to run (for debugging)
#   RUN_SUITE_LOG_LINES=300        at most this many lines printed per failing log
set -uo pipefail
export LC_ALL=C
exec </dev/null

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PHASE_TIMEOUT=${RUN_SUITE_PHASE_TIMEOUT:-1500}
PHASES=${RUN_SUITE_PHASES:-build san valgrind vm}
LOG_LINES=${RUN_SUITE_LOG_LINES:-300}
JOBS=2
CHECK_JOBS=${RUN_SUITE_CHECK_JOBS:-2}

T_START=$(date +%s)
banner() { printf '\n==== %s\n' "$*"; }
note() { printf 'run-suite: %s\n' "$*"; }

# One entry per result: STATUS PHASE TEST LOGFILE REASON, separated by US
# (a non-blank separator, so empty fields survive 'read').
US=$'\x1f'
RESULTS=()
add_result() { RESULTS+=("$1$US$2$US$3$US${4:-}$US${5:-}"); }
PHASE_TIMES=()

elapsed() { echo $(($(date +%s) - $1)); }

# skip_reason LOG: the reason a skipped test gave.
skip_reason() {
    local log=$1 r=""
    if [ -f "$log" ]; then
        # The tests' convention: "SKIP: TEST: reason"; else the last line
        # the test printed (not the harness's "SKIP x (exit status: 77)").
        r=$(grep -m1 -E '^(SKIP|skip|Skipped|SKIPPED): ' "$log" 2>/dev/null | sed -E 's/^[A-Za-z]+: *//')
        [ -n "$r" ] || r=$(grep -v -E '^[[:space:]]*$|^SKIP [^ ]+ \(exit status: 77\)$' "$log" | tail -n 1)
    fi
    printf '%s' "${r:-no reason given}"
}

# collect_trs PHASE BUILDDIR [NEWER-THAN-FILE]: add every automake test
# result (.trs ':test-result:' lines) under BUILDDIR; sets COLLECTED.
COLLECTED=0
collect_trs() {
    local phase=$1 dir=$2 stamp=${3:-} trs name log st n=0
    local find_args=("$dir" -name '*.trs' -type f)
    [ -n "$stamp" ] && find_args+=(-newer "$stamp")
    while IFS= read -r trs; do
        name=${trs#"$dir"/}
        name=${name%.trs}
        log=${trs%.trs}.log
        while read -r st; do
            n=$((n + 1))
            case $st in
            SKIP) add_result SKIP "$phase" "$name" "$log" "$(skip_reason "$log")" ;;
            *) add_result "$st" "$phase" "$name" "$log" ;;
            esac
        done < <(sed -n 's/^:test-result: *\([A-Z]*\).*/\1/p' "$trs")
    done < <(find "${find_args[@]}" | sort)
    COLLECTED=$n
}

phase_failed_tests() { # PHASE: how many FAIL/ERROR/XPASS results the phase has
    local r n=0 st ph
    for r in "${RESULTS[@]}"; do
        IFS=$US read -r st ph _ <<<"$r"
        [ "$ph" = "$1" ] || continue
        case $st in FAIL | ERROR | XPASS) n=$((n + 1)) ;; esac
    done
    echo "$n"
}

# build_phase PHASE DIR CONFIGURE-ARGS...: configure, make, make check.
build_phase() {
    local phase=$1 dir=$2 t0 rc n
    shift 2
    t0=$(date +%s)
    banner "$phase: configure ${*:-(defaults)} in ${dir#"$REPO"/}/"
    rm -rf "$dir"
    mkdir -p "$dir"
    if ! (cd "$dir" && ../configure "$@") >"$dir/configure.out" 2>&1; then
        tail -n 40 "$dir/configure.out"
        add_result ERROR "$phase" "configure" "$dir/configure.out"
        PHASE_TIMES+=("$phase $(elapsed "$t0")s (configure failed)")
        return 1
    fi
    banner "$phase: make -j$JOBS"
    if ! make -C "$dir" -j"$JOBS" >"$dir/make.out" 2>&1; then
        grep -E -B2 -A8 'error:|Error [0-9]' "$dir/make.out" | tail -n 80
        add_result ERROR "$phase" "make (compile)" "$dir/make.out"
        PHASE_TIMES+=("$phase $(elapsed "$t0")s (build failed)")
        return 1
    fi
    note "built in $(elapsed "$t0")s"
    banner "$phase: make check"
    rc=0
    # Two tests at a time: each end-to-end test has its own temp dir,
    # network namespaces (named after its pid), sockets and ports.
    timeout -k 60 "$PHASE_TIMEOUT" make -C "$dir" -j"$CHECK_JOBS" check 2>&1 | tee "$dir/check.out" |
        grep --line-buffered -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):|^# |Error [0-9]|error:'
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && note "make check timed out after ${PHASE_TIMEOUT}s"
    collect_trs "$phase" "$dir"
    n=$COLLECTED
    if [ "$rc" != 0 ]; then
        local missing
        missing=$(grep -o "No rule to make target '[^']*'" "$dir/check.out" | head -n 3 | tr '\n' ' ')
        if [ -n "$missing" ]; then
            # A test listed in Makefile.am whose file does not exist: the
            # harness stops there and later tests never run.
            add_result ERROR "$phase" "make check: $missing(tests after it did not run)" "$dir/check.out"
        elif [ "$(phase_failed_tests "$phase")" = 0 ]; then
            # make check failed without a failing test: a build error of a
            # check program, a harness problem, or the time limit.
            tail -n 40 "$dir/check.out"
            add_result ERROR "$phase" "make check (exit status $rc, no failing test recorded)" "$dir/check.out"
        fi
    fi
    PHASE_TIMES+=("$phase $(elapsed "$t0")s ($n test results)")
    [ "$rc" = 0 ]
}

valgrind_phase() {
    local dir=$REPO/build t0 rc stamp n unit_tests last
    t0=$(date +%s)
    banner "valgrind: make -C build check-valgrind"
    if [ ! -f "$dir/Makefile" ]; then
        add_result ERROR valgrind "check-valgrind (build/ was not configured)"
        PHASE_TIMES+=("valgrind skipped: no build/")
        return 1
    fi
    stamp=$dir/.check-valgrind-stamp
    touch "$stamp"
    sleep 1 # .trs files written from now on are strictly newer
    rc=0
    timeout -k 60 "$PHASE_TIMEOUT" make -C "$dir" check-valgrind 2>&1 | tee "$dir/check-valgrind.out" |
        grep --line-buffered -E '^valgrind |^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):|==[0-9]+==|Error [0-9]'
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && note "check-valgrind timed out after ${PHASE_TIMEOUT}s"
    # The unit tests run under valgrind in a plain loop that stops at the
    # first failure: each 'valgrind TEST' line is one test, the last one
    # failed if make failed before the e2e part produced any result.
    mapfile -t unit_tests < <(sed -n 's/^valgrind \(tests\/[^ ]*\)$/\1/p' "$dir/check-valgrind.out")
    collect_trs valgrind "$dir" "$stamp"
    n=$COLLECTED
    last=""
    if [ "$rc" != 0 ] && [ "$n" = 0 ] && [ ${#unit_tests[@]} -gt 0 ]; then
        last=${unit_tests[-1]}
    fi
    local t
    for t in "${unit_tests[@]}"; do
        if [ "$t" = "$last" ]; then
            add_result FAIL valgrind "$t (under valgrind)" "$dir/check-valgrind.out"
        else
            add_result PASS valgrind "$t (under valgrind)"
        fi
    done
    if [ "$rc" != 0 ] && [ "$(phase_failed_tests valgrind)" = 0 ]; then
        tail -n 40 "$dir/check-valgrind.out"
        add_result ERROR valgrind "check-valgrind (exit status $rc, no failing test recorded)" "$dir/check-valgrind.out"
    fi
    rm -f "$stamp"
    PHASE_TIMES+=("valgrind $(elapsed "$t0")s ($((n + ${#unit_tests[@]})) test results)")
    [ "$rc" = 0 ]
}

# The kernel-guest tests: their own automake run (make check-vm), one at a
# time; skipped (77, with the reason) only without qemu or the kernel package.
vm_phase() {
    local dir=$REPO/build t0 rc stamp n
    t0=$(date +%s)
    banner "vm: make -C build check-vm"
    if [ ! -f "$dir/Makefile" ]; then
        add_result ERROR vm "check-vm (build/ was not configured)"
        PHASE_TIMES+=("vm skipped: no build/")
        return 1
    fi
    stamp=$dir/.check-vm-stamp
    touch "$stamp"
    sleep 1
    timeout -k 60 "$PHASE_TIMEOUT" make -C "$dir" check-vm 2>&1 | tee "$dir/check-vm.out" |
        grep --line-buffered -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):|Error [0-9]'
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && note "check-vm timed out after ${PHASE_TIMEOUT}s"
    collect_trs vm "$dir" "$stamp"
    n=$COLLECTED
    if [ "$rc" != 0 ] && [ "$(phase_failed_tests vm)" = 0 ]; then
        tail -n 40 "$dir/check-vm.out"
        add_result ERROR vm "check-vm (exit status $rc, no failing test recorded)" "$dir/check-vm.out"
    fi
    rm -f "$stamp"
    PHASE_TIMES+=("vm $(elapsed "$t0")s ($n test results)")
    [ "$rc" = 0 ]
}

# ------------------------------------------------------------------ setup

banner "install dependencies"
if ! bash "$HERE/install-deps.sh"; then
    note "tests/install-deps.sh failed"
    printf '0 passed, 1 failed\n'
    exit 1
fi

# On machines where 'python3' is not Debian's (pyenv and the like), tools
# such as nbdsh would not find python3-libnbd: put Debian's first.
if ! python3 -c 'import nbd' >/dev/null 2>&1 && /usr/bin/python3 -c 'import nbd' >/dev/null 2>&1; then
    PYSHIM=$(mktemp -d /tmp/repvol-suite-py.XXXXXX)
    ln -s /usr/bin/python3 "$PYSHIM/python3"
    export PATH="$PYSHIM:$PATH"
    trap 'rm -rf "$PYSHIM"' EXIT
    note "python3 in PATH lacks the nbd module; using /usr/bin/python3 for the tests"
fi

banner "autogen"
if ! (cd "$REPO" && ./autogen.sh) >/tmp/repvol-autogen.$$.out 2>&1; then
    cat /tmp/repvol-autogen.$$.out
    rm -f /tmp/repvol-autogen.$$.out
    note "./autogen.sh failed"
    printf '0 passed, 1 failed\n'
    exit 1
fi
rm -f /tmp/repvol-autogen.$$.out
note "versions: $(gcc --version | head -n1); $(valgrind --version 2>/dev/null); kernel $(uname -r)"

# ------------------------------------------------------------------ phases

rm -rf "$REPO/build" "$REPO/build-san"
build_ok=no
for p in $PHASES; do
    case $p in
    build) build_phase build "$REPO/build" && build_ok=yes ;;
    san) build_phase san "$REPO/build-san" --enable-sanitizers ;;
    valgrind)
        if [ -x "$REPO/build/repvold" ] || [ "$build_ok" = yes ]; then
            valgrind_phase
        else
            add_result ERROR valgrind "check-valgrind (not run: build/ did not build)"
        fi
        ;;
    vm)
        if [ -x "$REPO/build/repvold" ] || [ "$build_ok" = yes ]; then
            vm_phase
        else
            add_result ERROR vm "check-vm (not run: build/ did not build)"
        fi
        ;;
    *) note "unknown phase '$p' ignored" ;;
    esac
done

# ------------------------------------------------------------------ report

passed=0 failed=0 skipped=0
failed_list=() skipped_list=()
for r in "${RESULTS[@]}"; do
    IFS=$US read -r st ph name log reason <<<"$r"
    case $st in
    PASS | XFAIL) passed=$((passed + 1)) ;;
    SKIP)
        skipped=$((skipped + 1))
        skipped_list+=("$ph: $name: $reason")
        ;;
    *)
        failed=$((failed + 1))
        failed_list+=("$st$US$ph$US$name$US$log")
        ;;
    esac
done

if [ ${#failed_list[@]} -gt 0 ]; then
    banner "logs of the failing tests"
    for f in "${failed_list[@]}"; do
        IFS=$US read -r st ph name log <<<"$f"
        printf '\n---- %s: %s: %s  (%s)\n' "$st" "$ph" "$name" "${log:-no log}"
        if [ -n "$log" ] && [ -f "$log" ]; then
            lines=$(wc -l <"$log")
            if [ "$lines" -gt "$LOG_LINES" ]; then
                printf '[... %d earlier lines cut; full log in %s]\n' "$((lines - LOG_LINES))" "$log"
            fi
            tail -n "$LOG_LINES" "$log"
        fi
    done
fi

banner "summary"
for t in "${PHASE_TIMES[@]}"; do note "phase $t"; done
note "total time $(elapsed "$T_START")s"
if [ ${#skipped_list[@]} -gt 0 ]; then
    note "skipped (exit 77), $skipped:"
    for s in "${skipped_list[@]}"; do printf '  SKIP %s\n' "$s"; done
fi
if [ ${#failed_list[@]} -gt 0 ]; then
    note "failed, $failed:"
    for f in "${failed_list[@]}"; do
        IFS=$US read -r st ph name log <<<"$f"
        printf '  %s %s: %s\n' "$st" "$ph" "$name"
    done
fi
note "$skipped skipped"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
