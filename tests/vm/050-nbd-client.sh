#!/usr/bin/env bash
# The kernel's own NBD client against repvold's NBD export, in the 6.12
# guest (the host has no nbd module): nbd-client on 127.0.0.1, mkfs.ext4,
# mount, write, remount, cmp; disconnect; the image holds the file system
# (e2fsck on the image) and the bytes the kernel saw (cmp with a raw copy).
. "$(dirname "$0")/vm-functions.sh"
guest=$(mktemp /tmp/vm-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
cat >"$guest" <<'GUEST'
. /vmtest/guest-lib.sh
SIZE=$((96 << 20))
repvol create --size 96M $GDIR/a.img >/dev/null || gfail "repvol create"
start_daemon a --volume $GDIR/a.img --listen tcp:127.0.0.1:10809
wait_ctl a

gstep "nbd-client 127.0.0.1 -> /dev/nbd0"
nbd-client -b 4096 127.0.0.1 10809 /dev/nbd0 -N a || gfail "nbd-client connect"
i=0
while [ "$(cat /sys/block/nbd0/size)" = 0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(cat /sys/block/nbd0/size)" = $((SIZE / 512)) ] || gfail "nbd0 size $(cat /sys/block/nbd0/size) sectors"

gstep "mkfs.ext4, mount, write, remount, cmp"
rand_file $GDIR/f1 $((8 << 20))
mkfs.ext4 -q -F /dev/nbd0 || gfail "mkfs.ext4"
mount -t ext4 /dev/nbd0 /mnt/u || gfail "mount"
cp $GDIR/f1 /mnt/u/f1 && cp $GDIR/f1 /mnt/u/f2 || gfail "write"
umount /mnt/u
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 /dev/nbd0 /mnt/u || gfail "remount"
cmp $GDIR/f1 /mnt/u/f1 && cmp $GDIR/f1 /mnt/u/f2 || gfail "files differ after remount"
umount /mnt/u
e2fsck -fn /dev/nbd0 || gfail "e2fsck on /dev/nbd0"
dd if=/dev/nbd0 of=$GDIR/raw bs=1M 2>/dev/null || gfail "raw read"
nbd-client -d /dev/nbd0 || gfail "nbd-client -d"
repvol status --control $GDIR/a.ctl | grep -E "^requests" | sed 's/^/    /'
stop_daemon a
same_data $GDIR/raw $GDIR/a.img $SIZE
e2fsck -fn $GDIR/a.img || gfail "e2fsck on the image"
echo "GUEST PASS"
GUEST
vm_run "$guest" || exit $?
echo "PASS: $VM_TEST_NAME"
