#!/usr/bin/env bash
# tests/vm/bench-frontends.sh - in ONE run of the 6.12 kernel guest, the same
# image served three ways, measured with the same fio jobs:
#   ublk   repvold --ublk                      -> /dev/ublkb0
#   nbd    repvold --listen tcp:127.0.0.1      -> kernel nbd-client /dev/nbd0
#   loop   the kernel's loop driver on the image file (no daemon at all)
# Jobs: 4k randwrite QD32, 4k randread QD32, 1M seq write, 1M seq read
# (io_uring, O_DIRECT on the device).  The image is on the guest's tmpfs, so
# what differs is the path through each frontend.  qemu runs under TCG:
# absolute numbers are meaningless, the ratios are what to read.
#
#   make bench-vm   or   abs_top_builddir=build bash tests/vm/bench-frontends.sh
# Environment: BENCH_RUNTIME (seconds per job, default 4), BENCH_SIZE_MB (128),
# BENCH_TARGETS (default "ublk nbd loop"; also ublk-ucopy: --ublk-user-copy).
. "$(dirname "$0")/vm-functions.sh"
VM_TIMEOUT=${VM_TIMEOUT:-600}
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
{
    echo "RT=${BENCH_RUNTIME:-4}"
    echo "MB=${BENCH_SIZE_MB:-128}"
    echo "TARGETS='${BENCH_TARGETS:-ublk nbd loop}'"
    cat <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((MB << 20))
repvol create --size ${MB}M $GDIR/a.img >/dev/null || gfail "repvol create"
dd if=/dev/urandom of=$GDIR/a.img bs=1M count=$MB conv=notrunc 2>/dev/null   # no holes: reads do work

# job NAME DEV RW BS -> prints "NAME RW KIOPS MBPS"
job() {
    out=$(fio --name="$1" --filename="$2" --direct=1 --ioengine=io_uring --rw="$3" --bs="$4" --iodepth=32 \
        --size=$((SIZE - (1 << 20))) --runtime=$RT --time_based --ramp_time=1 --output-format=terse 2>/dev/null)
    [ -n "$out" ] || gfail "fio $1 $3 on $2"
    echo "$out" | awk -F';' -v n="$1" -v rw="$3" '{
        if (rw ~ /read/) { bw = $7; iops = $8 } else { bw = $48; iops = $49 }
        printf "RESULT %s %s %.0f %.1f\n", n, rw, iops, bw / 1024 }'
}
suite() {
    job "$1" "$2" randwrite 4k
    job "$1" "$2" randread 4k
    job "$1" "$2" write 1M
    job "$1" "$2" read 1M
}

bench_ublk() {   # NAME ARGS...
    n=$1
    shift
    gstep "$n: repvold --ublk $*"
    start_daemon $n --volume $GDIR/a.img --ublk --ublk-queues 2 --ublk-depth 64 "$@"
    dev=$(wait_dev $n)
    suite $n "$dev" | tee -a $GDIR/results
    stop_daemon $n
    dev_gone "$dev"
}
for target in $TARGETS; do
    case $target in
    ublk) bench_ublk ublk ;;
    ublk-ucopy) bench_ublk ublk-ucopy --ublk-user-copy ;;
    nbd)
        gstep "nbd: kernel nbd-client -> repvold (TCP on the guest loopback)"
        start_daemon n --volume $GDIR/a.img --listen tcp:127.0.0.1:10809
        wait_ctl n
        nbd-client -b 4096 127.0.0.1 10809 /dev/nbd0 -N a || gfail "nbd-client"
        suite nbd /dev/nbd0 | tee -a $GDIR/results
        nbd-client -d /dev/nbd0 >/dev/null
        stop_daemon n
        ;;
    loop)
        gstep "loop: the kernel's loop driver on the image file"
        /usr/sbin/losetup --sizelimit $SIZE -f --show $GDIR/a.img >$GDIR/loopdev || gfail "losetup"
        loopdev=$(cat $GDIR/loopdev)
        suite loop "$loopdev" | tee -a $GDIR/results
        /usr/sbin/losetup -d "$loopdev"
        ;;
    *) gfail "unknown target $target" ;;
    esac
done

gstep "results and ratios (ublk / other; > 1: ublk faster); 4k jobs in IOPS, 1M jobs in MB/s"
awk -v targets="$TARGETS" '$1 == "RESULT" { v[$2 " " $3] = ($3 ~ /^(read|write)$/) ? $5 : $4 }
     END {
        nt = split(targets, t, " "); n = split("randwrite randread write read", jobs, " ")
        printf "%-10s", "job"
        for (k = 1; k <= nt; k++) printf " %10s", t[k]
        for (k = 1; k <= nt; k++) if (t[k] != "ublk" && v["ublk randwrite"] != "") printf " %14s", "ublk/" t[k]
        printf "\n"
        for (i = 1; i <= n; i++) {
            j = jobs[i]; printf "%-10s", (j == "write" || j == "read") ? "seq" j " 1M" : j " 4k"
            for (k = 1; k <= nt; k++) printf " %10.0f", v[t[k] " " j]
            for (k = 1; k <= nt; k++) if (t[k] != "ublk" && v["ublk randwrite"] != "")
                printf " %14.2f", (v[t[k] " " j] > 0 ? v["ublk " j] / v[t[k] " " j] : 0)
            printf "\n"
        }
     }' $GDIR/results
echo "GUEST PASS"
GUEST
} >"$guest"
vm_run "$guest" --smp 2 --mem 1024 || exit $?
