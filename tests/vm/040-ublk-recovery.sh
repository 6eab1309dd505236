#!/usr/bin/env bash
# ublk crash recovery in the 6.12 guest (UBLK_F_USER_RECOVERY_REISSUE):
#  1. fio randwrite with verify on /dev/ublkb0 (several passes, so it runs
#     for seconds even on a fast host); kill -9 of the daemon in the
#     middle; the device stays; a restarted daemon finds it by the volume's
#     mark and re-attaches; fio finishes and its verify passes.
#  2. the same with a mounted ext4 being written: after the restart the
#     writes complete, files compare equal, e2fsck is clean.
#  3. --ublk-no-recovery: the device goes away with a killed daemon.
#  4. a device whose daemon is gone for good: 'repvol detach --id' removes it.
. "$(dirname "$0")/vm-functions.sh"
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
cat >"$guest" <<'GUEST'
. /vmtest/guest-lib.sh
repvol create --size 96M $GDIR/a.img >/dev/null || gfail "repvol create"
UBLK="--volume $GDIR/a.img --ublk --ublk-queues 2 --ublk-depth 32"

gstep "fio randwrite+verify, kill -9 of the daemon at 1.5 s, restart"
start_daemon a $UBLK
dev=$(wait_dev a)
fio --name=crash --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bsrange=4k-64k --iodepth=32 \
    --size=48M --loops=3 --verify=crc32c --do_verify=1 --verify_fatal=1 --output=$GDIR/fio.out &
fio_pid=$!
sleep 1.5
kill -0 $fio_pid 2>/dev/null || gfail "fio ended before the kill (make it longer)"
kill9 a
sleep 0.5
[ -b "$dev" ] || gfail "$dev went away with the daemon"
grep -q . /sys/block/ublkb0/size || gfail "disk gone"
ginfo "device state after the crash: $(cat /sys/block/ublkb0/inflight 2>/dev/null) in flight"
: >$GDIR/a.out
start_daemon a $UBLK
dev2=$(wait_dev a)
[ "$dev2" = "$dev" ] || gfail "restarted daemon made $dev2, not $dev"
grep -q "recovering the device of a previous daemon" $GDIR/a.log || gfail "restart did not recover"
i=0
while kill -0 $fio_pid 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $fio_pid 2>/dev/null && gfail "fio still running 120 s after the restart"
wait $fio_pid
rc=$?
grep -E "WRITE:|READ:|err=" $GDIR/fio.out | sed 's/^/    /'
[ $rc -eq 0 ] || { cat $GDIR/fio.out; gfail "fio exited $rc after the recovery"; }
grep -q "err= 0" $GDIR/fio.out || gfail "fio reported errors"
ginfo "fio finished, verify OK"

gstep "mounted ext4 being written, kill -9, restart"
mkfs.ext4 -q -F "$dev" || gfail "mkfs"
mount -t ext4 "$dev" /mnt/u || gfail "mount"
rand_file $GDIR/f1 $((4 << 20))
( for n in 1 2 3 4 5 6 7 8; do cp $GDIR/f1 /mnt/u/f$n && sync; done ) &
cp_pid=$!
sleep 1
kill9 a
sleep 0.3
: >$GDIR/a.out
start_daemon a $UBLK
wait_dev a >/dev/null
i=0
while kill -0 $cp_pid 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
wait $cp_pid || gfail "writes on the file system failed across the crash"
for n in 1 2 3 4 5 6 7 8; do cmp $GDIR/f1 /mnt/u/f$n || gfail "f$n differs"; done
umount /mnt/u || gfail "umount"
e2fsck -fn "$dev" || gfail "e2fsck after the crash"
dmesg | grep -iE "ext4.*error|I/O error|blk_update_request" && gfail "the kernel saw I/O errors"
ginfo "8 files intact, e2fsck clean, no I/O errors in dmesg"

gstep "a daemon with --ublk-no-recovery takes its device with it"
repvol create --size 16M $GDIR/n.img >/dev/null
start_daemon n --volume $GDIR/n.img --ublk --ublk-no-recovery --ublk-id 1
dev1=$(wait_dev n)
grep -q "flags ioctl-encode" $GDIR/n.log || gfail "recovery flags set anyway: $(grep serving $GDIR/n.log)"
kill9 n
dev_gone "$dev1"
ginfo "$dev1 gone with its daemon"

gstep "a device whose daemon is gone for good: repvol detach --id 0"
kill9 a
sleep 0.3
repvol detach --id 0 || gfail "repvol detach --id 0"
dev_gone "$dev"
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
