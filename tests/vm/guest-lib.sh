# tests/vm/guest-lib.sh - helpers for the guest side of the kernel tests.
# POSIX sh (the guest runs busybox).  Sourced by the guest script:
#   . /vmtest/guest-lib.sh
# Every wait is bounded; on failure the daemons' logs are printed.
set -u
export PATH=/usr/sbin:/usr/bin
GDIR=/tmp/g
mkdir -p $GDIR /mnt/u
DAEMONS=""

gstep() { echo "=== guest: $*"; }
ginfo() { echo "    $*"; }

gfail() {
    echo "GUEST FAIL: $*"
    for n in $DAEMONS; do
        echo "----- daemon $n log (last 60 lines) -----"
        tail -n 60 "$GDIR/$n.log" 2>/dev/null
    done
    dmesg | tail -n 30
    exit 1
}

# start_daemon NAME ARGS...: repvold in the background, stdout in NAME.out
# (where it prints the ublk device path), stderr in NAME.log.  PID in
# $GDIR/NAME.pid.
start_daemon() {
    n=$1
    shift
    DAEMONS="$DAEMONS $n"
    : >"$GDIR/$n.out"
    ginfo "start $n: repvold $*"
    repvold --no-mlock --cache buffered --control "$GDIR/$n.ctl" "$@" >"$GDIR/$n.out" 2>>"$GDIR/$n.log" &
    echo $! >"$GDIR/$n.pid"
}

dpid() { cat "$GDIR/$1.pid"; }

alive() { kill -0 "$(dpid "$1")" 2>/dev/null; }

# wait_dev NAME: until the daemon printed its device and the disk exists;
# prints the path.
wait_dev() {
    i=0
    while [ $i -lt 300 ]; do
        d=$(head -n 1 "$GDIR/$1.out" 2>/dev/null)
        if [ -n "$d" ] && [ -b "$d" ] && [ -e "/sys/block/${d#/dev/}" ]; then
            echo "$d"
            return 0
        fi
        alive "$1" || gfail "daemon $1 exited before its device was live"
        sleep 0.1
        i=$((i + 1))
    done
    gfail "daemon $1: no ublk device after 30 s"
}

# wait_ctl NAME: until the control socket answers.
wait_ctl() {
    i=0
    while [ $i -lt 300 ]; do
        repvol status --control "$GDIR/$1.ctl" >/dev/null 2>&1 && return 0
        alive "$1" || gfail "daemon $1 exited during start-up"
        sleep 0.1
        i=$((i + 1))
    done
    gfail "daemon $1: no control socket after 30 s"
}

# stop_daemon NAME [SIGNAL]: signal, wait (bounded 60 s), require exit 0
# and a log free of sanitizer reports.
stop_daemon() {
    p=$(dpid "$1")
    kill -"${2:-TERM}" "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$p" 2>/dev/null && gfail "daemon $1 still running 60 s after SIG${2:-TERM}"
    wait "$p"
    rc=$?
    check_log "$1"
    [ $rc -eq 0 ] || gfail "daemon $1 exited $rc after SIG${2:-TERM}"
    ginfo "daemon $1 stopped cleanly"
}

# kill9 NAME: kill -9 and reap.
kill9() {
    p=$(dpid "$1")
    kill -9 "$p"
    wait "$p" 2>/dev/null
    ginfo "daemon $1 (pid $p) killed with SIGKILL"
}

check_log() {
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$GDIR/$1.log"; then
        gfail "sanitizer report in daemon $1's log"
    fi
}

# dev_gone DEV: the block device has disappeared (bounded 10 s).
dev_gone() {
    i=0
    while [ -e "/sys/block/${1#/dev/}" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ ! -e "/sys/block/${1#/dev/}" ] || gfail "$1 still exists"
}

# same_data A B BYTES: the first BYTES of A and B are identical.
same_data() {
    cmp -n "$3" "$1" "$2" || gfail "$1 and $2 differ in their first $3 bytes"
}

# Busybox sh runs its own applets before anything in PATH: give full paths
# to the util-linux tools the tests copy in (blkdiscard -z, losetup).
rand_file() { head -c "$2" /dev/urandom >"$1"; }
