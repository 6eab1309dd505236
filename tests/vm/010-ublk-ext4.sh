#!/usr/bin/env bash
# ublk in the 6.12 guest: repvold --ublk prints /dev/ublkb0; mkfs.ext4, mount,
# write, remount, read back (cmp), e2fsck -fn on the device; SIGTERM removes
# the device and leaves a clean image (e2fsck on the image file itself);
# 'repvol attach --ublk' / 'repvol detach' on a daemon serving NBD; a taken
# device id, --readonly, and a queue thread failing during the start.
. "$(dirname "$0")/vm-functions.sh"
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
cat >"$guest" <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((128 << 20))
repvol create --size 128M $GDIR/a.img >/dev/null || gfail "repvol create"

gstep "repvold --ublk: device path on stdout"
start_daemon a --volume $GDIR/a.img --ublk --ublk-queues 2 --ublk-depth 32
dev=$(wait_dev a)
[ "$dev" = /dev/ublkb0 ] || gfail "device path '$dev'"
[ "$(cat /sys/block/ublkb0/size)" = $((SIZE / 512)) ] || gfail "size $(cat /sys/block/ublkb0/size) sectors"
wc=$(cat /sys/block/ublkb0/queue/write_cache)
ginfo "write_cache: $wc, fua: $(cat /sys/block/ublkb0/queue/fua), discard max: $(cat /sys/block/ublkb0/queue/discard_max_bytes)"
[ "$wc" = "write back" ] || gfail "write cache '$wc': the kernel would not send FLUSH"
[ "$(cat /sys/block/ublkb0/queue/fua)" = 1 ] || gfail "FUA not advertised"

gstep "a second volume asking for the same device id is refused, the first is unaffected"
repvol create --size 16M $GDIR/other.img >/dev/null
for extra in "" --ublk-no-recovery; do
    # With recovery it looks at device 0 as a crashed daemon's and sees another
    # volume's mark; without, ADD_DEV finds the id taken.
    repvold --no-mlock --volume $GDIR/other.img --ublk --ublk-id 0 $extra --control $GDIR/o.ctl >$GDIR/o.out 2>$GDIR/o.log
    rc=$?
    [ $rc = 1 ] || gfail "second daemon for ublk id 0 ($extra) exited $rc"
    msg=$(grep -E "belongs to another volume|ADD_DEV.*File exists" $GDIR/o.log) || gfail "unclear refusal: $(cat $GDIR/o.log)"
    ginfo "refused: ${msg#*]: }"
    [ ! -s $GDIR/o.out ] || gfail "it printed a device: $(cat $GDIR/o.out)"
done
[ "$(cat /sys/block/ublkb0/size)" = $((SIZE / 512)) ] || gfail "ublkb0 changed"
alive a || gfail "daemon a died"

gstep "mkfs.ext4, mount, write, remount, cmp, e2fsck"
rand_file $GDIR/f1 $((8 << 20))
mkfs.ext4 -q -F "$dev" || gfail "mkfs.ext4"
mount -t ext4 "$dev" /mnt/u || gfail "mount"
cp $GDIR/f1 /mnt/u/f1 && mkdir /mnt/u/d && cp $GDIR/f1 /mnt/u/d/f2 || gfail "write files"
sync
umount /mnt/u || gfail "umount"
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 "$dev" /mnt/u || gfail "remount"
cmp $GDIR/f1 /mnt/u/f1 && cmp $GDIR/f1 /mnt/u/d/f2 || gfail "files differ after remount"
rm /mnt/u/d/f2 && fstrim -v /mnt/u 2>/dev/null
umount /mnt/u || gfail "umount 2"
e2fsck -fn "$dev" || gfail "e2fsck -fn on $dev"

gstep "SIGTERM removes the device, the image holds the file system"
stop_daemon a
dev_gone "$dev"
[ ! -e /dev/ublkc0 ] || gfail "/dev/ublkc0 still there"
e2fsck -fn $GDIR/a.img || gfail "e2fsck -fn on the image after the daemon stopped"

gstep "--readonly: a read-only device that still reads the file system"
start_daemon r --volume $GDIR/a.img --readonly --ublk
dev=$(wait_dev r)
[ "$(cat /sys/block/${dev#/dev/}/ro)" = 1 ] || gfail "$dev is not read-only"
dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct 2>/dev/null && gfail "a write to the read-only device succeeded"
e2fsck -fn "$dev" >/dev/null || gfail "e2fsck through the read-only device"
stop_daemon r
dev_gone "$dev"

gstep "attach --ublk / detach through the control socket of an NBD daemon"
start_daemon b --volume $GDIR/a.img --listen unix:$GDIR/b.sock
wait_ctl b
dev=$(repvol attach --ublk --control $GDIR/b.ctl) || gfail "repvol attach --ublk"
ginfo "attached: $dev"
[ -b "$dev" ] || gfail "attach printed '$dev'"
mount -t ext4 "$dev" /mnt/u || gfail "mount after attach"
cmp $GDIR/f1 /mnt/u/f1 || gfail "file differs after attach"
repvol detach --control $GDIR/b.ctl 2>$GDIR/det.err && gfail "detached a mounted device"
grep -q "in use" $GDIR/det.err || gfail "unclear refusal: $(cat $GDIR/det.err)"
[ -b "$dev" ] || gfail "the refused detach removed the device"
umount /mnt/u
[ "$(repvol status --control $GDIR/b.ctl >/dev/null; echo $?)" = 0 ] || gfail "status"
repvol secondary --control $GDIR/b.ctl 2>$GDIR/sec.err && gfail "demoted with a ublk device attached"
grep -q "detach it first" $GDIR/sec.err || gfail "demote refusal unclear: $(cat $GDIR/sec.err)"
repvol detach --control $GDIR/b.ctl || gfail "repvol detach"
dev_gone "$dev"
alive b || gfail "the daemon exited after detach"
repvol detach --control $GDIR/b.ctl 2>/dev/null && gfail "second detach succeeded"
dev=$(repvol attach --ublk --control $GDIR/b.ctl) || gfail "attach again"
stop_daemon b
dev_gone "$dev"

gstep "a queue thread that dies before serving: the start is cancelled, exit 1, no device left"
export REPVOL_UBLK_FAULT=queue-exit
start_daemon f --volume $GDIR/other.img --ublk --ublk-queues 2
unset REPVOL_UBLK_FAULT
p=$(dpid f)
i=0
while kill -0 $p 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $p 2>/dev/null && gfail "daemon still running 30 s after a queue failed"
wait $p
rc=$?
[ $rc = 1 ] || gfail "daemon exited $rc, expected 1"
grep -q "cancelling the start" $GDIR/f.log || gfail "no cancellation in the log"
[ ! -s $GDIR/f.out ] || gfail "a device path was printed: $(cat $GDIR/f.out)"
ls /dev/ublkc* /sys/block/ublkb* 2>/dev/null && gfail "a device was left behind"
ginfo "exited 1 after $((i / 10)) s, nothing left behind"
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
