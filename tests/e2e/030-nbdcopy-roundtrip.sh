#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# nbdcopy round trip: random 64 MiB in and out (both cache modes), the
# image's data region equals the source, then a sparse source over the old
# data: zeroes correct, holes preserved in the copy out.
. "$(dirname "$0")/functions.sh"

require_cmd nbdcopy libnbd-bin
require_cmd nbdinfo libnbd-bin
require_binaries

SIZE=$((64 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
SRC=$TEST_DIR/src.raw

create_volume "$IMG" "$SIZE"

step "random 64 MiB source"
random_file "$SRC" "$SIZE"

for cache in direct buffered; do
    step "nbdcopy in and out with --cache $cache"
    rm -f "$TEST_DIR/out.raw"
    start_repvold "$IMG" "$SOCK" --cache "$cache"
    if [ "$cache" = buffered ]; then
        # Different data on the second pass, so a stale image cannot pass.
        random_file "$SRC" "$SIZE"
    fi
    tmo 60 nbdcopy --flush "$SRC" "$REPVOLD_URI" || fail "nbdcopy into the export (--cache $cache)"
    tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/out.raw" || fail "nbdcopy out of the export (--cache $cache)"
    assert_eq "$(stat -c %s "$TEST_DIR/out.raw")" "$SIZE" "size copied out"
    assert_bytes_equal "$SRC" "$TEST_DIR/out.raw" "data read back through the daemon (--cache $cache)"
    # Also read with a single connection and small requests.
    tmo 60 nbdcopy -C 1 --request-size=65536 "$REPVOLD_URI" - | cmp - "$SRC" ||
        fail "single-connection 64 KiB-request read differs (--cache $cache)"
    stop_repvold
    step "image data region equals the source (--cache $cache)"
    assert_bytes_equal "$IMG" "$SRC" "$SIZE" "image data region after --cache $cache"
    tmo 10 "$REPVOL" info "$IMG" >/dev/null || fail "image metadata invalid after the run"
done

step "sparse source over the old data"
SPARSE=$TEST_DIR/sparse.raw
truncate -s "$SIZE" "$SPARSE"
# Data islands at odd places, the rest holes (which must become zeroes).
for spec in 0:1048576 5242880:4096 12587008:65536 33554432:2097152 67104768:4096; do
    off=${spec%:*} len=${spec#*:}
    head -c "$len" /dev/urandom |
        dd of="$SPARSE" bs=4096 oflag=seek_bytes seek="$off" conv=notrunc status=none
done
# Also an all-zero but allocated 1 MiB (detected as zero by nbdcopy).
dd if=/dev/zero of="$SPARSE" bs=1M seek=48 count=1 conv=notrunc status=none
assert_eq "$(stat -c %s "$SPARSE")" "$SIZE" "sparse source size"
info "sparse source allocates $(allocated_bytes "$SPARSE") bytes"

start_repvold "$IMG" "$SOCK"
tmo 60 nbdcopy --flush "$SPARSE" "$REPVOLD_URI" || fail "nbdcopy sparse source into the export"
tmo 10 nbdinfo --map "$REPVOLD_URI" || fail "nbdinfo --map"
rm -f "$TEST_DIR/out2.raw"
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/out2.raw" || fail "nbdcopy sparse volume out"
assert_bytes_equal "$SPARSE" "$TEST_DIR/out2.raw" "sparse data read back (holes must read as zeroes)"
ALLOC=$(allocated_bytes "$TEST_DIR/out2.raw")
info "copy out allocates $ALLOC bytes"
[ "$ALLOC" -le $((16 << 20)) ] || fail "holes not preserved: copy out allocates $ALLOC of $SIZE bytes"
stop_repvold

step "image data region equals the sparse source"
assert_bytes_equal "$IMG" "$SPARSE" "$SIZE" "image data region after the sparse copy"
