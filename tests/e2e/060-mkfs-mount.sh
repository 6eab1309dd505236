#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# A real filesystem on the volume: nbdfuse -> loop device -> mkfs.ext4 ->
# mount, write, remount, checksums, e2fsck; then, with the daemon stopped,
# the image's data region alone is a clean ext4 holding the same files
# (the data region is a raw image at offset 0).
. "$(dirname "$0")/functions.sh"

require_root
require_cmd nbdfuse libnbd-bin
require_cmd fusermount3 fuse3
require_cmd losetup mount
require_cmd mkfs.ext4 e2fsprogs
require_cmd e2fsck e2fsprogs
require_cmd mountpoint util-linux
[ -c /dev/fuse ] || skip "no /dev/fuse in this environment"
[ -e /dev/loop-control ] || skip "no loop device support in this environment"
require_binaries

SIZE=$((128 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
FUSE=$TEST_DIR/fuse
MNT=$TEST_DIR/mnt
MNT2=$TEST_DIR/mnt2
mkdir "$FUSE" "$MNT" "$MNT2"

LOOP=
NBDFUSE_PID=
fs_cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    if mountpoint -q "$MNT2"; then umount "$MNT2" || umount -l "$MNT2"; fi
    if [ -n "$LOOP" ]; then losetup -d "$LOOP"; fi
    if mountpoint -q "$FUSE"; then fusermount3 -u "$FUSE" || fusermount3 -u -z "$FUSE"; fi
}
on_exit fs_cleanup

# attach: daemon on IMG -> nbdfuse $FUSE/disk -> loop device $LOOP.
attach() {
    start_repvold "$IMG" "$SOCK"
    step "nbdfuse $FUSE/disk --unix $SOCK"
    rm -f "$TEST_DIR/nbdfuse.pid"
    nbdfuse -P "$TEST_DIR/nbdfuse.pid" "$FUSE/disk" --unix "$SOCK" </dev/null >"$TEST_DIR/nbdfuse.log" 2>&1 &
    NBDFUSE_PID=$!
    track_pid "$NBDFUSE_PID"
    local i
    for ((i = 0; ; i++)); do
        [ -s "$TEST_DIR/nbdfuse.pid" ] && break
        pid_alive "$NBDFUSE_PID" || { cat "$TEST_DIR/nbdfuse.log" >&2; fail "nbdfuse exited"; }
        [ "$i" -lt $(($(tscale 10) * 10)) ] || fail "nbdfuse not ready within $(tscale 10) s"
        sleep 0.1
    done
    assert_eq "$(stat -c %s "$FUSE/disk")" "$SIZE" "size of the nbdfuse file"
    step "loop device on the FUSE file"
    LOOP=$(tmo 30 losetup -f --show "$FUSE/disk") || fail "losetup -f --show failed"
    info "loop device $LOOP"
    assert_eq "$(blockdev --getsize64 "$LOOP")" "$SIZE" "loop device size"
}

# detach: loop device, nbdfuse and daemon, each must go away cleanly.
detach() {
    step "detach loop, stop nbdfuse, stop the daemon"
    tmo 30 losetup -d "$LOOP" || fail "losetup -d $LOOP"
    local i
    for ((i = 0; i < 50; i++)); do
        losetup "$LOOP" >/dev/null 2>&1 || break
        sleep 0.1
    done
    LOOP=
    # The loop driver lets go of the FUSE file a moment after `losetup -d`
    # returns: retry the unmount while it is still busy (bounded).
    local ok=
    for ((i = 0; i < 50; i++)); do
        if [ -z "$(losetup -j "$FUSE/disk" -O NAME -n 2>/dev/null)" ] &&
            timeout 10 fusermount3 -u "$FUSE" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.2
    done
    [ -n "$ok" ] || tmo 30 fusermount3 -u "$FUSE" || fail "fusermount3 -u"
    wait_bounded "$NBDFUSE_PID" 20 || { cat "$TEST_DIR/nbdfuse.log" >&2; fail "nbdfuse did not exit cleanly"; }
    stop_repvold
}

manifest() {
    (cd "$1" && find . -path ./lost+found -prune -o \( -type f -o -type l \) -print0 |
        sort -z | xargs -0 sha256sum)
}

# check_files DIR: same files, same contents as written.
check_files() {
    (cd "$1" && sha256sum --quiet -c "$TEST_DIR/manifest") || fail "file contents differ in $1"
    manifest "$1" | cmp - "$TEST_DIR/manifest" || fail "file list differs in $1"
    cmp "$1/odd.bin" "$1/a/link" || fail "symlink content in $1"
}

create_volume "$IMG" "$SIZE" --name fsvol
attach

step "mkfs.ext4 and mount"
tmo 60 mkfs.ext4 -q -F -L repvol-e2e "$LOOP" || fail "mkfs.ext4"
tmo 30 mount -t ext4 "$LOOP" "$MNT" || fail "mount $LOOP"

step "write files (random data, a directory tree)"
random_file "$MNT/big.bin" $((24 << 20))
random_file "$MNT/odd.bin" 1234567
: >"$MNT/empty"
for d in a a/b a/b/c x x/y; do mkdir -p "$MNT/$d"; done
for ((i = 0; i < 60; i++)); do
    case $((i % 5)) in
    0) dir=a ;; 1) dir=a/b ;; 2) dir=a/b/c ;; 3) dir=x ;; *) dir=x/y ;;
    esac
    head -c $(((i * 7919) % 200000 + 1)) /dev/urandom >"$MNT/$dir/f$i"
done
ln -s ../odd.bin "$MNT/a/link"
dd if=/dev/urandom of="$MNT/x/direct.bin" bs=1M count=4 oflag=direct status=none
manifest "$MNT" >"$TEST_DIR/manifest"
info "$(wc -l <"$TEST_DIR/manifest") files"
[ "$(wc -l <"$TEST_DIR/manifest")" -ge 64 ] || fail "manifest too short"
tmo 60 sync || fail "sync"
tmo 60 umount "$MNT" || fail "umount"

step "remount and compare checksums"
blockdev --flushbufs "$LOOP" || true
tmo 30 mount -t ext4 "$LOOP" "$MNT" || fail "remount $LOOP"
check_files "$MNT"
tmo 60 umount "$MNT" || fail "umount"

step "e2fsck -fn through the daemon"
tmo 60 e2fsck -fn "$LOOP" || fail "e2fsck -fn $LOOP reports problems"
detach

step "fresh daemon, fresh nbdfuse and loop (no cache anywhere): same files, clean fsck"
attach
tmo 60 e2fsck -fn "$LOOP" || fail "e2fsck -fn $LOOP reports problems after restart"
tmo 30 mount -t ext4 -o ro "$LOOP" "$MNT" || fail "mount $LOOP after restart"
check_files "$MNT"
tmo 60 umount "$MNT" || fail "umount"
detach

step "the image's data region alone is a clean ext4 with the same files"
head -c "$SIZE" "$IMG" >"$TEST_DIR/data.raw"
tmo 60 e2fsck -fn "$TEST_DIR/data.raw" || fail "e2fsck -fn on the image's data region"
tmo 30 mount -o loop,ro -t ext4 "$TEST_DIR/data.raw" "$MNT2" || fail "mount -o loop,ro of the data region"
check_files "$MNT2"
tmo 30 umount "$MNT2" || fail "umount $MNT2"
