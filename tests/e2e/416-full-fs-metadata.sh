#!/usr/bin/env bash
# The image's data region is fully allocated (fallocate: thick provisioning)
# but its metadata area (dirty bitmap) is still a hole, as `repvol create`
# leaves it; then the file system fills up (another file takes the rest).
# Data writes need no new space, but a replicating primary writes its
# bitmap (activity log while connected, dirty bits without the peer): the
# daemon allocates the metadata area when it starts, so every write to the
# volume still succeeds, with the peer connected and with the link cut.
# Space freed, link back: resync, identical copies, every write on both.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_root
require_binaries
require_python_nbd
require_cmd cmp diffutils
require_cmd fallocate util-linux

SIZE=$((64 << 20))
small_tmpfs 72m
A_IMG=$MNT/a.img
B_IMG=$TEST_DIR/b.img
create_volume "$A_IMG" "$SIZE" >/dev/null
cp --sparse=always "$A_IMG" "$B_IMG"
fallocate -o 0 -l "$SIZE" "$A_IMG"
info "A's image: $(($(allocated_bytes "$A_IMG") >> 10)) KiB allocated of $(($(stat -c %s "$A_IMG") >> 10)) KiB"
repl_setup
node_start B "$B_IMG" secondary --peer-timeout 2000
node_start A "$A_IMG" primary --cache buffered --peer-timeout 2000
node_wait_peer_state A connected
info "A's image after start: $(($(allocated_bytes "$A_IMG") >> 10)) KiB allocated"
# Fill the file system.
dd if=/dev/zero of="$MNT/filler" bs=1M status=none 2>/dev/null || true
[ "$(df --output=avail -k "$MNT" | tail -n 1 | tr -d ' ')" -eq 0 ] || fail "the file system is not full"
info "file system full: $(df -h --output=used,avail "$MNT" | tail -n 1)"

# write_all OFF MiB FILE: 256 KiB writes; prints OK/FAILED per chunk.
write_all() {
    tmo 60 "$PYTHON_NBD" - "${NODE_URI[A]}" "$1" "$2" "$3" <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
off, n, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = open(path, "rb").read()
CH = 256 << 10
for i in range(n * 4):
    try:
        h.pwrite(d[i * CH:(i + 1) * CH], off + i * CH)
        print("OK", i)
    except nbd.Error as e:
        print("FAILED", i, e.errnum, e.string)
h.flush()
h.shutdown()
PY
}

step "1: peer connected, 8 MiB of writes (the activity log lives in the bitmap area)"
random_file "$TEST_DIR/d1" $((8 << 20))
write_all $((8 << 20)) 8 "$TEST_DIR/d1" >"$TEST_DIR/r1" || fail "client failed"
n=$(grep -c '^FAILED' "$TEST_DIR/r1" || true)
[ "$n" -eq 0 ] || fail "$n writes failed on a full file system though the data region is allocated: $(grep -m1 '^FAILED' "$TEST_DIR/r1"); A: $(status_field A 'd["last_error"]')"

step "2: link cut, 8 MiB more (dirty bits to record)"
[ "$REPL_NET" = netns ] || skip "part 2 needs network namespaces"
link_down
wait_not_connected A 10
random_file "$TEST_DIR/d2" $((8 << 20))
write_all $((40 << 20)) 8 "$TEST_DIR/d2" >"$TEST_DIR/r2" || fail "client failed"
n=$(grep -c '^FAILED' "$TEST_DIR/r2" || true)
[ "$n" -eq 0 ] || fail "$n writes failed without the peer on a full file system: $(grep -m1 '^FAILED' "$TEST_DIR/r2"); A: $(status_field A 'd["last_error"]')"
info "all writes acknowledged, with and without the peer"

step "3: space freed, link back: resync"
rm -f "$MNT/filler"
runs0=$(status_field A 'd["peer"]["sync"]["runs"]')
link_up
wait_resync_done "$runs0" 30
node_stop A
node_stop B
assert_bytes_equal "$A_IMG" "$B_IMG" "$SIZE" "copies after the resync"
cmp -s -n $((8 << 20)) "$TEST_DIR/d1" "$B_IMG" 0 $((8 << 20)) || fail "part 1's writes are not on the copies"
cmp -s -n $((8 << 20)) "$TEST_DIR/d2" "$B_IMG" 0 $((40 << 20)) || fail "part 2's writes are not on the copies"
info "images identical, both parts' writes on both"
