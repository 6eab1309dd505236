#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# qemu-img against the export: convert -n onto it, compare, info, map,
# convert back out; the image's data region equals the source.
. "$(dirname "$0")/functions.sh"

require_cmd qemu-img qemu-utils
require_cmd nbdinfo libnbd-bin
require_cmd python3 python3
require_binaries

SIZE=$((64 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
PORT=$(free_tcp_port)
TCP_URI=$(nbd_tcp_uri "$PORT")

create_volume "$IMG" "$SIZE"

step "sources: old random data, then new random data with zero ranges"
random_file "$TEST_DIR/old.raw" "$SIZE"
random_file "$TEST_DIR/src.raw" "$SIZE"
# 8 MiB hole and an unaligned 100 KiB zero range in the new data.
fallocate -p -o $((16 << 20)) -l $((8 << 20)) "$TEST_DIR/src.raw" 2>/dev/null ||
    dd if=/dev/zero of="$TEST_DIR/src.raw" bs=1M seek=16 count=8 conv=notrunc status=none
dd if=/dev/zero of="$TEST_DIR/src.raw" bs=1024 seek=$((40 * 1024 + 3)) count=100 conv=notrunc status=none
assert_eq "$(stat -c %s "$TEST_DIR/src.raw")" "$SIZE" "source size"

start_repvold "$IMG" "$SOCK" --listen "tcp:127.0.0.1:$PORT"
URI=$REPVOLD_URI

step "qemu-img info"
tmo 30 qemu-img info --output=json "$URI" >"$TEST_DIR/info.json" || fail "qemu-img info"
cat "$TEST_DIR/info.json"
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$TEST_DIR/info.json")" \
    "$SIZE" "qemu-img info virtual-size"
tmo 30 qemu-img info --output=json "$TCP_URI" >"$TEST_DIR/info-tcp.json" || fail "qemu-img info (tcp)"
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$TEST_DIR/info-tcp.json")" \
    "$SIZE" "qemu-img info virtual-size (tcp)"

step "qemu-img convert -n old data, then the new data over it"
tmo 60 qemu-img convert -n -f raw -O raw "$TEST_DIR/old.raw" "$URI" || fail "qemu-img convert -n (old)"
tmo 60 qemu-img compare -f raw -F raw "$TEST_DIR/old.raw" "$URI" || fail "qemu-img compare (old)"
tmo 60 qemu-img convert -n -f raw -O raw "$TEST_DIR/src.raw" "$URI" || fail "qemu-img convert -n (new)"

step "qemu-img compare over unix and tcp"
tmo 60 qemu-img compare -f raw -F raw "$TEST_DIR/src.raw" "$URI" || fail "qemu-img compare: export differs from source"
tmo 60 qemu-img compare -f raw -F raw "$TEST_DIR/src.raw" "$TCP_URI" || fail "qemu-img compare (tcp): export differs"
# compare must be able to fail: flip one byte in a copy of the source.
cp "$TEST_DIR/src.raw" "$TEST_DIR/flipped.raw"
printf '\x5a' | dd of="$TEST_DIR/flipped.raw" bs=1 seek=$((SIZE - 12345)) conv=notrunc status=none
cmp -s "$TEST_DIR/flipped.raw" "$TEST_DIR/src.raw" &&
    printf '\xa5' | dd of="$TEST_DIR/flipped.raw" bs=1 seek=$((SIZE - 12345)) conv=notrunc status=none
rc=0
tmo 60 qemu-img compare -q -f raw -F raw "$TEST_DIR/flipped.raw" "$URI" || rc=$?
assert_eq "$rc" 1 "qemu-img compare exit status against a different image"

step "qemu-img map"
tmo 30 qemu-img map --output=json -f raw "$URI" >"$TEST_DIR/map.json" || fail "qemu-img map"
tmo 30 qemu-img map -f raw "$URI" || true
python3 - "$TEST_DIR/map.json" "$TEST_DIR/src.raw" "$SIZE" <<'EOF' || fail "qemu-img map inconsistent with the data"
import json, sys
m = json.load(open(sys.argv[1]))
src = open(sys.argv[2], "rb")
size = int(sys.argv[3])
pos = 0
for x in m:
    assert x["start"] == pos, "gap/overlap at %d: %r" % (pos, x)
    assert x["present"], "not present: %r" % x
    if x["zero"]:
        src.seek(x["start"])
        left = x["length"]
        while left:
            b = src.read(min(left, 1 << 20))
            assert b and b.count(0) == len(b), "extent %r reported zero but holds data" % x
            left -= len(b)
    pos += x["length"]
assert pos == size, "map covers %d bytes, size %d" % (pos, size)
print("    map: %d extents, %d bytes zero" % (len(m), sum(x["length"] for x in m if x["zero"])))
EOF

step "qemu-img convert back out"
tmo 60 qemu-img convert -f raw -O raw "$URI" "$TEST_DIR/out.raw" || fail "qemu-img convert out"
assert_bytes_equal "$TEST_DIR/out.raw" "$TEST_DIR/src.raw" "data converted back out"
stop_repvold

step "image data region equals the source"
assert_bytes_equal "$IMG" "$TEST_DIR/src.raw" "$SIZE" "image data region"
