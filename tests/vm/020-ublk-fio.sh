#!/usr/bin/env bash
# ublk in the 6.12 guest: fio with verify=crc32c on /dev/ublkb0 (random
# writes of mixed sizes at QD32 over two queues, FUA writes, sequential 1M),
# DISCARD and WRITE_ZEROES read back as zeroes, data outside them intact;
# the image file holds exactly what the device showed; the same fio check
# with UBLK_F_USER_COPY; SIGTERM under load removes the device and exits 0.
. "$(dirname "$0")/vm-functions.sh"
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
cat >"$guest" <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((96 << 20))
repvol create --size 96M $GDIR/a.img >/dev/null || gfail "repvol create"
start_daemon a --volume $GDIR/a.img --ublk --ublk-queues 2 --ublk-depth 64 --ublk-max-io 256K
dev=$(wait_dev a)

run_fio() {
    name=$1
    shift
    fio --name="$name" --filename="$dev" --direct=1 --ioengine=io_uring --verify=crc32c --do_verify=1 \
        --verify_fatal=1 --output=$GDIR/$name.fio "$@" || { cat $GDIR/$name.fio; gfail "fio $name failed"; }
    grep -E "WRITE:|READ:|err=" $GDIR/$name.fio | sed 's/^/    /'
}
gstep "fio randwrite 4k-128k QD32, numjobs 2, verify crc32c"
run_fio randw --rw=randwrite --bsrange=4k-128k --iodepth=32 --numjobs=2 --offset_increment=32M --size=24M
gstep "fio randwrite with FUA (sync=1), verify"
run_fio fua --rw=randwrite --bs=16k --iodepth=8 --sync=1 --offset=64M --size=8M
gstep "fio sequential 1M writes (split at max I/O 256K) with fsync every 4, verify"
run_fio seq --rw=write --bs=1M --iodepth=4 --offset=72M --size=16M --fsync=4

gstep "DISCARD and WRITE_ZEROES read back as zeroes, neighbours intact"
rand_file $GDIR/pat $((4 << 20))
dd if=$GDIR/pat of="$dev" bs=1M seek=88 oflag=direct 2>/dev/null || gfail "dd pattern"
/usr/sbin/blkdiscard -o $((89 << 20)) -l $((1 << 20)) "$dev" || gfail "blkdiscard"
/usr/sbin/blkdiscard -z -o $((90 << 20)) -l $((1 << 20)) "$dev" || gfail "blkdiscard -z (write zeroes)"
dd if="$dev" of=$GDIR/back bs=1M skip=88 count=4 iflag=direct 2>/dev/null
head -c $((1 << 20)) /dev/zero >$GDIR/zero
cmp -n $((1 << 20)) $GDIR/pat $GDIR/back || gfail "first MiB changed"
dd if=$GDIR/back bs=1M skip=1 count=1 2>/dev/null | cmp - $GDIR/zero || gfail "discarded MiB is not zero"
dd if=$GDIR/back bs=1M skip=2 count=1 2>/dev/null | cmp - $GDIR/zero || gfail "write-zeroes MiB is not zero"
dd if=$GDIR/back bs=1M skip=3 count=1 2>/dev/null >$GDIR/b3
dd if=$GDIR/pat bs=1M skip=3 count=1 2>/dev/null | cmp - $GDIR/b3 || gfail "last MiB changed"
st=$(repvol status --json --control $GDIR/a.ctl)
echo "$st" | grep -o '"stats":{[^}]*}' | sed 's/^/    /'
echo "$st" | grep -q '"trims":0,' && gfail "no TRIM reached the engine"
echo "$st" | grep -q '"zeroes":0,' && gfail "no WRITE_ZEROES reached the engine"
echo "$st" | grep -q '"flushes":0,' && gfail "no FLUSH reached the engine"
echo "$st" | grep -q '"ublk":{"device":"/dev/ublkb0"' || gfail "status --json lacks the ublk device"
# The frontend's own counters: the kernel sent FUA writes and flushes.
u=$(repvol status --control $GDIR/a.ctl | grep '^ublk:')
ginfo "$u"
echo "$u" | grep -q "fua_writes 0 " && gfail "no FUA write reached the frontend"
echo "$u" | grep -q "flushes 0 " && gfail "no FLUSH reached the frontend"
echo "$u" | grep -q "errors 0" || gfail "the frontend saw errors"


gstep "the image holds what the device showed"
dd if="$dev" of=$GDIR/devcopy bs=1M iflag=direct 2>/dev/null
stop_daemon a
dev_gone "$dev"
same_data $GDIR/devcopy $GDIR/a.img $SIZE

gstep "UBLK_F_USER_COPY (--ublk-user-copy): fio randrw with verify"
start_daemon u --volume $GDIR/a.img --ublk --ublk-user-copy --ublk-queues 1 --ublk-depth 32
dev=$(wait_dev u)
grep -q "user-copy" $GDIR/u.log || gfail "the device was not created with UBLK_F_USER_COPY"
run_fio ucopy --rw=randrw --bsrange=4k-256k --iodepth=16 --size=32M
stop_daemon u
dev_gone "$dev"

gstep "SIGTERM while fio writes: requests in flight finish, device removed, exit 0"
start_daemon t --volume $GDIR/a.img --ublk
dev=$(wait_dev t)
fio --name=load --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=32 \
    --size=32M --time_based --runtime=30 --output=$GDIR/load.fio >/dev/null 2>&1 &
fio_pid=$!
sleep 1.5
stop_daemon t
dev_gone "$dev"
i=0
while kill -0 $fio_pid 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $fio_pid 2>/dev/null && gfail "fio still running 30 s after the device went away"
wait $fio_pid
grep -q "removed /dev/ublkb" $GDIR/t.log || gfail "no removal in the log"
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
