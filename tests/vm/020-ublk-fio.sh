#!/usr/bin/env bash
# ublk in the 6.12 guest: fio with verify=crc32c on /dev/ublkb0 (random
# writes of mixed sizes at QD32 over two queues, FUA writes, sequential 1M),
# DISCARD and WRITE_ZEROES read back as zeroes, data outside them intact;
# the image file holds exactly what the device showed.
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
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
