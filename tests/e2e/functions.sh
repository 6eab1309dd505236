# shellcheck shell=bash disable=SC2034 # variables here are for the tests
# tests/e2e/functions.sh - sourced by every end-to-end test.
#
# Each test runs with bash under the automake parallel test harness
# (exit 0 pass, 77 skip, anything else fail), or by hand:
#
#   abs_top_builddir=/work/main/build bash tests/e2e/030-nbdcopy-roundtrip.sh
#
# Environment:
#   abs_top_srcdir, abs_top_builddir  set by `make check`; guessed otherwise
#   REPVOLD_WRAPPER      command prefix for the daemon (e.g. valgrind ...)
#   REPVOLD_EXTRA_ARGS   extra daemon arguments (word-split)
#   E2E_TIMEOUT_SCALE    multiply every bound (default 1, 6 under a wrapper)
#   E2E_KEEP_TMP=1       keep the per-test temp dir for inspection
#
# What a test gets:
#   TEST_NAME TEST_DIR REPVOLD REPVOL NBD_BAD_CLIENT
#   start_repvold IMG SOCK [ARGS...]   -> REPVOLD_PID REPVOLD_LOG REPVOLD_SOCK REPVOLD_URI REPVOLD_CTL
#   stop_repvold [SIGNAL] [SECONDS]    assert exit status 0 and a clean log
#   repvold_alive                      daemon process still running?
#   on_exit 'CMD'                      cleanup registry, run LIFO by the EXIT trap
#   track_pid PID                      kill PID (TERM, then KILL) at exit
#   wait_bounded PID SECONDS           wait for a child, kill it on timeout (rc 124)
#   require_cmd CMD PKG / require_root / require_python_nbd (sets PYTHON_NBD)
#   fail MSG / step MSG / assert_eq A B MSG / assert_bytes_equal A B [N] MSG
#   expect_fail CMD...                 must exit non-zero, not crash, not hang
#   data_sha IMG SIZE / file_sha FILE / nbd_uri SOCK [EXPORT] / nbd_tcp_uri PORT [EXPORT]
#   free_tcp_port / random_file PATH BYTES / create_volume IMG SIZE [ARGS...]
#   small_tmpfs SIZE (sets MNT) / verify_acked LOG IMG...
#   tmo SECONDS CMD...                 run CMD under timeout(1), scaled
#   check_log_clean LOG                no sanitizer / valgrind reports

set -Eeuo pipefail
export LC_ALL=C

TEST_NAME=$(basename "$0" .sh)

_e2e_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${abs_top_srcdir:-}" ]; then
    abs_top_srcdir=$(cd "$_e2e_here/../.." && pwd)
fi
if [ -z "${abs_top_builddir:-}" ]; then
    if [ -x "$abs_top_srcdir/build/repvold" ]; then
        abs_top_builddir=$abs_top_srcdir/build
    elif [ -x "$abs_top_srcdir/repvold" ]; then
        abs_top_builddir=$abs_top_srcdir
    elif [ -x "$PWD/repvold" ]; then
        abs_top_builddir=$PWD
    else
        abs_top_builddir=$abs_top_srcdir/build
    fi
fi
if [ -d "$abs_top_builddir" ]; then abs_top_builddir=$(cd "$abs_top_builddir" && pwd); fi
export abs_top_srcdir abs_top_builddir

REPVOLD=$abs_top_builddir/repvold
REPVOL=$abs_top_builddir/repvol
NBD_BAD_CLIENT=$abs_top_builddir/tests/helpers/nbd-bad-client

if [ -z "${E2E_TIMEOUT_SCALE:-}" ]; then
    if [ -n "${REPVOLD_WRAPPER:-}" ]; then E2E_TIMEOUT_SCALE=6; else E2E_TIMEOUT_SCALE=1; fi
fi

# ------------------------------------------------------------------ output

step() { printf '=== %s: %s\n' "$TEST_NAME" "$*"; }
info() { printf '    %s\n' "$*"; }

fail() {
    printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

skip() {
    printf 'SKIP: %s: %s\n' "$TEST_NAME" "$*" >&2
    exit 77
}

_e2e_err() {
    local rc=$1 line=$2 cmd=$3
    printf 'ERROR: %s: command exited with status %s at line %s: %s\n' \
        "$TEST_NAME" "$rc" "$line" "$cmd" >&2
    local i
    for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
        printf '    in %s() called from line %s\n' "${FUNCNAME[i]}" "${BASH_LINENO[i - 1]}" >&2
    done
}

# ------------------------------------------------------------------ bounds

# Scale a number of seconds by E2E_TIMEOUT_SCALE.
tscale() { echo $(($1 * E2E_TIMEOUT_SCALE)); }

# tmo SECONDS CMD... : run CMD, killed after SECONDS (scaled); rc 124 on timeout.
tmo() {
    local secs
    secs=$(tscale "$1")
    shift
    timeout -k 5 "$secs" "$@"
}

# Is PID a live (not zombie) process?
pid_alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    case ${st%% *} in
    Z | X | x) return 1 ;;
    esac
    return 0
}

# wait_bounded PID SECONDS: wait for a child of this shell; kill it (TERM,
# then KILL) if it is still running after SECONDS (scaled).  Returns the
# child's exit status, or 124 if it had to be killed.
wait_bounded() {
    local pid=$1 limit rc=0 i
    limit=$(($(tscale "$2") * 10))
    for ((i = 0; i < limit; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    wait "$pid" || rc=$?
    return "$rc"
}

# ------------------------------------------------------------------ cleanup

_e2e_cleanups=()
_e2e_tracked_pids=()
_e2e_daemon_pids=()
_e2e_daemon_logs=()
_e2e_ndaemons=0

# on_exit 'CMD': eval CMD at exit, last registered first.  Failures ignored.
on_exit() { _e2e_cleanups+=("$*"); }

# track_pid PID: make sure PID is gone at exit.
track_pid() { _e2e_tracked_pids+=("$1"); }

_e2e_kill() {
    local pid=$1 i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

_e2e_exit() {
    local rc=$? i pid log bad=0
    set +eE
    trap - ERR
    for ((i = ${#_e2e_cleanups[@]} - 1; i >= 0; i--)); do
        eval "${_e2e_cleanups[i]}" >/dev/null 2>&1 </dev/null
    done
    for pid in "${_e2e_tracked_pids[@]}" "${_e2e_daemon_pids[@]}"; do
        _e2e_kill "$pid"
    done
    for log in "${_e2e_daemon_logs[@]}"; do
        if [ -f "$log" ] && ! _log_clean "$log"; then
            printf 'FAIL: %s: sanitizer/valgrind report in %s:\n' "$TEST_NAME" "$log" >&2
            _log_reports "$log" >&2
            bad=1
        fi
    done
    if [ "$rc" -eq 0 ] && [ "$bad" -ne 0 ]; then rc=1; fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        for log in "${_e2e_daemon_logs[@]}"; do
            [ -f "$log" ] || continue
            printf -- '----- %s (last 100 lines) -----\n' "$log" >&2
            tail -n 100 "$log" >&2
        done
    fi
    cd / || true
    if [ -n "${TEST_DIR:-}" ] && [ -d "$TEST_DIR" ]; then
        if [ "${E2E_KEEP_TMP:-0}" = 1 ]; then
            printf 'kept %s\n' "$TEST_DIR" >&2
        else
            rm -rf "$TEST_DIR"
        fi
    fi
    case $rc in
    0) printf 'PASS: %s\n' "$TEST_NAME" ;;
    77) ;;
    *) printf 'FAIL: %s (exit status %s)\n' "$TEST_NAME" "$rc" >&2 ;;
    esac
    exit "$rc"
}

trap '_e2e_err $? $LINENO "$BASH_COMMAND"' ERR
trap _e2e_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/repvol-e2e-$TEST_NAME.XXXXXX")
if [ ${#TEST_DIR} -gt 70 ]; then
    # Unix socket paths must stay well under 108 bytes.
    rm -rf "$TEST_DIR"
    TEST_DIR=$(mktemp -d "/tmp/repvol-e2e-$TEST_NAME.XXXXXX")
fi
# Run in the temp dir: tools that drop files into the current directory
# (fio's verify state, core dumps) must not litter the build tree.
cd "$TEST_DIR"

# ------------------------------------------------------------------ requirements

# require_cmd CMD PKG: skip (77) only if CMD really is not installed.
require_cmd() {
    command -v "$1" >/dev/null 2>&1 ||
        skip "'$1' not found: install Debian package '$2'"
}

require_root() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (mount, losetup)"
}

# Find a python3 that has the libnbd bindings (python3-libnbd installs them
# for Debian's /usr/bin/python3, which may not be the first python3 in PATH).
require_python_nbd() {
    local py
    for py in /usr/bin/python3 python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import nbd' >/dev/null 2>&1; then
                        PYTHON_NBD=$(command -v "$py")
            return 0
        fi
    done
    skip "no python3 with the 'nbd' module: install Debian package 'python3-libnbd'"
}

require_binaries() {
    # start_repvold probes readiness with nbdinfo.
    require_cmd nbdinfo libnbd-bin
    require_cmd timeout coreutils
    [ -x "$REPVOL" ] || fail "$REPVOL not built (set abs_top_builddir)"
    [ -x "$REPVOLD" ] || fail "$REPVOLD not built (set abs_top_builddir)"
}

# ------------------------------------------------------------------ assertions

assert_eq() {
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# assert_bytes_equal A B [N] MSG: A and B equal (first N bytes if N given).
assert_bytes_equal() {
    local a=$1 b=$2 n='' msg out
    if [ $# -ge 4 ]; then n=$3; msg=$4; else msg=$3; fi
    if [ -n "$n" ]; then
        out=$(cmp -n "$n" -- "$a" "$b" 2>&1) || fail "$msg: $out"
    else
        out=$(cmp -- "$a" "$b" 2>&1) || fail "$msg: $out"
    fi
}

# expect_fail CMD...: CMD must exit non-zero by itself, i.e. not succeed,
# not time out (bounded at 30 s) and not die of a signal.  Its stderr is
# left in $TEST_DIR/expect_fail.err and its status in EXPECT_FAIL_RC.
expect_fail() {
    EXPECT_FAIL_RC=0
    tmo 30 "$@" >"$TEST_DIR/expect_fail.out" 2>"$TEST_DIR/expect_fail.err" || EXPECT_FAIL_RC=$?
    case $EXPECT_FAIL_RC in
    0) fail "expected failure, but succeeded: $*" ;;
    124 | 137) fail "timed out: $*" ;;
    esac
    if [ "$EXPECT_FAIL_RC" -gt 128 ]; then
        cat "$TEST_DIR/expect_fail.err" >&2
        fail "died of signal $((EXPECT_FAIL_RC - 128)): $*"
    fi
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$TEST_DIR/expect_fail.err"; then
        cat "$TEST_DIR/expect_fail.err" >&2
        fail "sanitizer report from: $*"
    fi
}

# ------------------------------------------------------------------ data helpers

# data_sha IMG SIZE: sha256 of the first SIZE bytes (the volume's data region).
data_sha() {
    local n
    n=$(head -c "$2" -- "$1" | wc -c)
    [ "$n" -eq "$2" ] || fail "data_sha: $1 has only $n bytes, wanted $2"
    head -c "$2" -- "$1" | sha256sum | cut -d' ' -f1
}

file_sha() { sha256sum -- "$1" | cut -d' ' -f1; }

# random_file PATH BYTES
random_file() {
    head -c "$2" /dev/urandom >"$1"
    [ "$(stat -c %s -- "$1")" -eq "$2" ] || fail "random_file: short $1"
}

nbd_uri() { printf 'nbd+unix:///%s?socket=%s' "${2:-}" "$1"; }
nbd_tcp_uri() { printf 'nbd://127.0.0.1:%s/%s' "$1" "${2:-}"; }

# A currently free TCP port on 127.0.0.1.
free_tcp_port() {
    local p
    if p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null); then
        echo "$p"
    else
        shuf -i 20000-60000 -n 1
    fi
}

# Allocated bytes of a file (to check sparseness).
allocated_bytes() { echo $(($(stat -c '%b * %B' -- "$1"))); }

# small_tmpfs SIZE: a size-limited tmpfs at $TEST_DIR/mnt (sets MNT), for
# disk-full tests; unmounted at exit.  Skips the test if it cannot mount.
small_tmpfs() {
    MNT=$TEST_DIR/mnt
    mkdir -p "$MNT"
    mount -t tmpfs -o "size=$1" "repvol-$TEST_NAME" "$MNT" || skip "cannot mount a tmpfs"
    on_exit "umount -l '$MNT'"
}

# verify_acked LOG IMG...: every write ack-checker logged as acknowledged is
# in each image (ACK_CHECKER must be set); prints the checker's summary.
verify_acked() {
    local log=$1 img
    shift
    for img in "$@"; do
        tmo 60 "$ACK_CHECKER" verify --log "$log" --image "$img" >"$TEST_DIR/verify.out" 2>&1 ||
            { cat "$TEST_DIR/verify.out" >&2; fail "acknowledged writes missing from $img"; }
        sed 's/^/    /' "$TEST_DIR/verify.out"
    done
}

# create_volume IMG SIZE_BYTES [ARGS...]: `repvol create`, asserting success.
create_volume() {
    local img=$1 size=$2
    shift 2
    [ $((size % 1048576)) -eq 0 ] || fail "create_volume: size must be whole MiB"
    tmo 30 "$REPVOL" create --size "$((size / 1048576))M" "$@" "$img" ||
        fail "repvol create --size $((size / 1048576))M $* $img failed"
    [ "$(stat -c %s -- "$img")" -gt "$size" ] ||
        fail "image $img is not larger than its data region ($size)"
}

# ------------------------------------------------------------------ daemon

_E2E_REPORT_RE='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer|runtime error:|^==[0-9]+== '
# First 60 report lines (sed reads everything: no SIGPIPE under pipefail).
_log_reports() { grep -nE "$_E2E_REPORT_RE" -- "$1" | sed -n '1,60p'; }
_log_clean() { ! grep -qE "$_E2E_REPORT_RE" -- "$1"; }

# check_log_clean LOG: no sanitizer or valgrind report in the daemon's log.
check_log_clean() {
    if ! _log_clean "$1"; then
        _log_reports "$1" >&2
        fail "sanitizer/valgrind report in daemon log $1"
    fi
}

REPVOLD_PID=
REPVOLD_LOG=
REPVOLD_SOCK=
REPVOLD_URI=

repvold_alive() { [ -n "$REPVOLD_PID" ] && pid_alive "$REPVOLD_PID"; }

# start_repvold IMG SOCK [ARGS...]: run the daemon in the background (under
# $REPVOLD_WRAPPER, with $REPVOLD_EXTRA_ARGS), wait until SOCK answers an
# NBD handshake (bounded), fail with its log if it died or never came up.
start_repvold() {
    local img=$1 sock=$2 rc=0 i limit
    shift 2
    [ -x "$REPVOLD" ] || fail "$REPVOLD not built (set abs_top_builddir)"
    [ -z "$REPVOLD_PID" ] || fail "start_repvold: daemon $REPVOLD_PID still running"
    local -a wrapper=() extra=() control=()
    # Each daemon gets its own control socket: the default one is named
    # after the volume (/run/repvol/NAME.ctl), and tests run in parallel.
    if [ -z "${_e2e_has_control:-}" ]; then
        _e2e_has_control=no
        local help
        help=$("$REPVOLD" --help 2>&1 || true)
        if [[ $help == *--control* ]]; then _e2e_has_control=yes; fi
    fi
    read -r -a wrapper <<<"${REPVOLD_WRAPPER:-}"
    read -r -a extra <<<"${REPVOLD_EXTRA_ARGS:-}"
    _e2e_ndaemons=$((_e2e_ndaemons + 1))
    REPVOLD_LOG=$TEST_DIR/repvold.$_e2e_ndaemons.log
    REPVOLD_CTL=$TEST_DIR/repvold.$_e2e_ndaemons.ctl
    if [ "$_e2e_has_control" = yes ]; then control=(--control "$REPVOLD_CTL"); fi
    REPVOLD_SOCK=$sock
    REPVOLD_URI=$(nbd_uri "$sock")
    _e2e_daemon_logs+=("$REPVOLD_LOG")
    info "start: ${wrapper[*]} $REPVOLD --volume $img --listen unix:$sock ${control[*]} ${extra[*]} $*"
    # Background jobs of a non-interactive shell start with SIGINT and
    # SIGQUIT ignored; give the daemon the defaults it would get from a
    # terminal or a service manager (env --default-signal: coreutils >= 9).
    local -a sigdfl=()
    if env --default-signal=INT true 2>/dev/null; then sigdfl=(env '--default-signal=INT,QUIT'); fi
    "${sigdfl[@]}" "${wrapper[@]}" "$REPVOLD" --volume "$img" --listen "unix:$sock" "${control[@]}" "${extra[@]}" "$@" \
        </dev/null >"$REPVOLD_LOG" 2>&1 &
    REPVOLD_PID=$!
    _e2e_daemon_pids+=("$REPVOLD_PID")
    limit=$(($(tscale 10) * 10))
    for ((i = 0; ; i++)); do
        if ! pid_alive "$REPVOLD_PID"; then
            wait "$REPVOLD_PID" || rc=$?
            REPVOLD_PID=
            cat "$REPVOLD_LOG" >&2
            fail "repvold exited with status $rc during start-up"
        fi
        if [ -S "$sock" ] && timeout 5 nbdinfo --size "$REPVOLD_URI" >/dev/null 2>&1; then
            break
        fi
        [ "$i" -lt "$limit" ] || fail "repvold not serving on $sock after $(tscale 10) s"
        sleep 0.1
    done
    info "repvold pid $REPVOLD_PID serving $REPVOLD_URI"
}

# stop_repvold [SIGNAL] [SECONDS]: signal the daemon (TERM by default), wait
# (bounded, default 20 s scaled) and assert exit status 0 - under valgrind
# that is the wrapper's status too, since valgrind runs in the same process.
stop_repvold() {
    local sig=${1:-TERM} secs=${2:-20} pid=$REPVOLD_PID rc=0 t0
    [ -n "$pid" ] || fail "stop_repvold: no daemon running"
    if ! pid_alive "$pid"; then
        wait "$pid" || rc=$?
        REPVOLD_PID=
        fail "repvold (pid $pid) had already exited with status $rc before SIG$sig"
    fi
    t0=${EPOCHREALTIME/[^0-9]/}
    kill -s "$sig" "$pid"
    wait_bounded "$pid" "$secs" || rc=$?
    REPVOLD_PID=
    local -a keep=()
    local p
    for p in "${_e2e_daemon_pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    _e2e_daemon_pids=("${keep[@]}")
    check_log_clean "$REPVOLD_LOG"
    [ "$rc" -ne 124 ] || fail "repvold did not exit within $(tscale "$secs") s of SIG$sig"
    [ "$rc" -eq 0 ] || fail "repvold exited with status $rc after SIG$sig"
    REPVOLD_STOP_MS=$(((${EPOCHREALTIME/[^0-9]/} - t0) / 1000))
    info "repvold exited 0 after SIG$sig in $REPVOLD_STOP_MS ms"
}
