#!/usr/bin/env bash
# ublk + replication in the 6.12 guest: two daemons on the guest's loopback,
# the primary exporting /dev/ublkb0, the secondary mirroring it.  fio with
# verify and an ext4 file system written through the device; kill -9 of the
# primary during fio and a restart (device recovered, link and resync back,
# fio verify OK); then both images must be byte-identical (cmp); the
# secondary, started with --ublk, creates its device when promoted, and the
# file system and files are there (e2fsck, cmp).
. "$(dirname "$0")/vm-functions.sh"
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
cat >"$guest" <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((96 << 20))
repvol create --size 96M $GDIR/a.img >/dev/null || gfail "repvol create"
cp $GDIR/a.img $GDIR/b.img

peer_state() {
    repvol status --json --control "$GDIR/$1.ctl" 2>/dev/null | grep -o '"peer":{"state":"[a-z]*"' | cut -d'"' -f6
}

gstep "secondary B, primary A with --ublk, over 127.0.0.1"
start_daemon b --volume $GDIR/b.img --node-id 2 --role secondary --repl-listen 127.0.0.1:7790 --peer 127.0.0.1:7789 \
    --ublk
wait_ctl b
grep -q "created on promotion" $GDIR/b.log || gfail "secondary with --ublk: no word about the device"
start_daemon a --volume $GDIR/a.img --node-id 1 --role primary --repl-listen 127.0.0.1:7789 --peer 127.0.0.1:7790 \
    --ublk --ublk-queues 2 --ublk-depth 32
dev=$(wait_dev a)
i=0
while [ "$(peer_state a)" != connected ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(peer_state a)" = connected ] || gfail "peer state '$(peer_state a)' after 20 s"
ginfo "replicating; device $dev"

gstep "a second daemon for an image in use is refused (no second device)"
start_daemon c --volume $GDIR/b.img --ublk 2>/dev/null
i=0
while alive c && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
alive c && gfail "a second daemon on the secondary's image kept running"

gstep "fio randwrite QD32 with verify through /dev/ublkb0"
fio --name=repl --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bsrange=4k-64k --iodepth=32 \
    --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 --output=$GDIR/fio.out ||
    { cat $GDIR/fio.out; gfail "fio verify failed"; }
grep -E "WRITE:|READ:" $GDIR/fio.out | sed 's/^/    /'

gstep "ext4 through the replicated device"
rand_file $GDIR/f1 $((6 << 20))
mkfs.ext4 -q -F -E offset=$((40 << 20)) "$dev" $((48 << 10)) || gfail "mkfs.ext4 at 40M"
losetup -o $((40 << 20)) /dev/loop7 "$dev" 2>/dev/null || /usr/sbin/losetup -o $((40 << 20)) /dev/loop7 "$dev" || gfail "losetup"
mount -t ext4 /dev/loop7 /mnt/u || gfail "mount"
cp $GDIR/f1 /mnt/u/f1 || gfail "write"
umount /mnt/u
/usr/sbin/losetup -d /dev/loop7 2>/dev/null || losetup -d /dev/loop7
repvol status --control $GDIR/a.ctl | grep -E "^(peer|ublk|requests)" | sed 's/^/    /'

gstep "kill -9 of the replicating primary during fio; restart: device recovered, link back, resync"
fio --name=crash --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bsrange=4k-64k --iodepth=16 \
    --size=32M --loops=4 --verify=crc32c --do_verify=1 --verify_fatal=1 --output=$GDIR/crash.out &
fio_pid=$!
sleep 1.5
kill -0 $fio_pid 2>/dev/null || gfail "fio ended before the kill"
kill9 a
sleep 0.3
[ -b "$dev" ] || gfail "$dev went away with the primary"
: >$GDIR/a.out
start_daemon a --volume $GDIR/a.img --node-id 1 --role primary --repl-listen 127.0.0.1:7789 --peer 127.0.0.1:7790 \
    --ublk --ublk-queues 2 --ublk-depth 32
[ "$(wait_dev a)" = "$dev" ] || gfail "the restarted primary did not take $dev back"
i=0
while kill -0 $fio_pid 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
wait $fio_pid || { cat $GDIR/crash.out; gfail "fio failed across the primary's crash"; }
grep -E "err=" $GDIR/crash.out | sed 's/^/    /'
synced() {
    j=$(repvol status --json --control $GDIR/a.ctl 2>/dev/null)
    echo "$j" | grep -q '"peer":{"state":"connected"' && echo "$j" | grep -q '"sync":{"state":"none"' &&
        echo "$j" | grep -q '"bytes_left":0,'
}
i=0
while ! synced && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
synced || gfail "primary not connected and in sync 60 s after the restart: $(repvol status --control $GDIR/a.ctl)"
ginfo "fio verify OK across the crash; link up, resync done"

gstep "stop the primary: its device goes, the secondary's image equals the primary's"
[ ! -e /sys/block/ublkb1 ] || gfail "the secondary made a device"
stop_daemon a
dev_gone "$dev"
same_data $GDIR/a.img $GDIR/b.img $SIZE
ginfo "a.img and b.img identical over $SIZE bytes"

gstep "failover: promote the secondary; started with --ublk, it now creates the device"
repvol primary --control $GDIR/b.ctl >$GDIR/prom.out || gfail "repvol primary: $(cat $GDIR/prom.out)"
devb=$(grep /dev/ $GDIR/prom.out)
ginfo "promoted; device $devb"
i=0
while [ ! -e "/sys/block/${devb#/dev/}" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$devb" ] || gfail "no device after promotion"
/usr/sbin/losetup -r -o $((40 << 20)) /dev/loop7 "$devb" || gfail "losetup on $devb"
e2fsck -fn /dev/loop7 || gfail "e2fsck of the secondary's copy through its ublk device"
mount -t ext4 -o ro,noload /dev/loop7 /mnt/u && cmp $GDIR/f1 /mnt/u/f1 || gfail "file differs on the secondary's copy"
umount /mnt/u
/usr/sbin/losetup -d /dev/loop7
stop_daemon b
dev_gone "$devb"
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
