#!/usr/bin/env bash
# tests/vm/bench-frontends.sh - in ONE run of the 6.12 kernel guest, the same
# image served three ways at the same time and measured with the same fio jobs:
#   ublk   repvold --ublk                   -> /dev/ublkb0
#   nbd    the same repvold, --listen tcp:127.0.0.1 -> kernel nbd-client /dev/nbd0
#   loop   the kernel's loop driver on the same image file (no daemon at all)
# Jobs: 4k randwrite QD32, 4k randread QD32, 1M seq write QD4, 1M seq read QD4
# (io_uring, O_DIRECT on the device).  The image is on the guest's tmpfs, so
# what differs is the path through each frontend.  qemu runs under TCG on a
# shared host: absolute numbers are meaningless and drift, so the jobs run
# in interleaved rounds (job by job, target by target) and the table shows
# the median of the rounds and the ratios of the medians.
#
#   make bench-vm   or   abs_top_builddir=build bash tests/vm/bench-frontends.sh
# Environment: BENCH_RUNTIME (seconds per job, default 3), BENCH_ROUNDS (3),
# BENCH_SIZE_MB (128), BENCH_UBLK_ARGS (extra repvold options, e.g.
# --ublk-user-copy).
. "$(dirname "$0")/vm-functions.sh"
VM_TIMEOUT=${VM_TIMEOUT:-900}
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
{
    echo "RT=${BENCH_RUNTIME:-3}"
    echo "ROUNDS=${BENCH_ROUNDS:-3}"
    echo "MB=${BENCH_SIZE_MB:-128}"
    echo "UARGS='${BENCH_UBLK_ARGS:-}'"
    cat <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((MB << 20))
repvol create --size ${MB}M $GDIR/a.img >/dev/null || gfail "repvol create"
dd if=/dev/urandom of=$GDIR/a.img bs=1M count=$MB conv=notrunc 2>/dev/null   # no holes: reads do work

gstep "one repvold: --ublk and NBD on 127.0.0.1; nbd-client; loop on the same file"
start_daemon r --volume $GDIR/a.img --ublk --ublk-queues 2 --ublk-depth 64 $UARGS --listen tcp:127.0.0.1:10809
ublk=$(wait_dev r)
nbd-client -b 4096 127.0.0.1 10809 /dev/nbd0 -N a >/dev/null || gfail "nbd-client"
/usr/sbin/losetup --sizelimit $SIZE -f --show $GDIR/a.img >$GDIR/loopdev || gfail "losetup"
loop=$(cat $GDIR/loopdev)
ginfo "ublk $ublk, nbd /dev/nbd0, loop $loop; $ROUNDS rounds of ${RT}s jobs"

# job TARGET DEV RW BS QD -> "RESULT TARGET RW VALUE" (4k: IOPS, 1M: MB/s)
job() {
    out=$(fio --name="$1" --filename="$2" --direct=1 --ioengine=io_uring --rw="$3" --bs="$4" --iodepth="$5" \
        --size=$((SIZE - (1 << 20))) --runtime=$RT --time_based --ramp_time=1 --output-format=terse 2>/dev/null)
    [ -n "$out" ] || gfail "fio $1 $3 on $2"
    echo "$out" | awk -F';' -v n="$1" -v rw="$3" -v bs="$4" '{
        if (rw ~ /read/) { bw = $7; iops = $8 } else { bw = $48; iops = $49 }
        printf "RESULT %s %s %.1f\n", n, rw, (bs == "4k") ? iops : bw / 1024 }'
}
r=1
while [ $r -le $ROUNDS ]; do
    for spec in "randwrite 4k 32" "randread 4k 32" "write 1M 4" "read 1M 4"; do
        set -- $spec
        job ublk "$ublk" $1 $2 $3
        job nbd /dev/nbd0 $1 $2 $3
        job loop "$loop" $1 $2 $3
    done | tee -a $GDIR/results
    r=$((r + 1))
done
/usr/sbin/losetup -d "$loop"
nbd-client -d /dev/nbd0 >/dev/null
stop_daemon r
dev_gone "$ublk"

gstep "medians of $ROUNDS rounds (4k: IOPS, 1M: MB/s) and ratios (> 1: ublk faster)"
awk '$1 == "RESULT" { k = $2 " " $3; n[k]++; v[k, n[k]] = $4 }
     function median(k,   m, i, j, t, a) {
        m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
     END {
        split("randwrite randread write read", jobs, " ")
        split("4k-QD32 4k-QD32 1M-QD4 1M-QD4", lab, " ")
        printf "%-18s %9s %9s %9s %9s %10s\n", "job", "ublk", "nbd", "loop", "ublk/nbd", "ublk/loop"
        for (i = 1; i <= 4; i++) {
            u = median("ublk " jobs[i]); b = median("nbd " jobs[i]); l = median("loop " jobs[i])
            printf "%-18s %9.0f %9.0f %9.0f %9.2f %10.2f\n", jobs[i] " " lab[i], u, b, l, b ? u / b : 0, l ? u / l : 0
        }
     }' $GDIR/results
echo "GUEST PASS"
GUEST
} >"$guest"
vm_run "$guest" || exit $?
