#!/usr/bin/env bash
# Online verify: flip bytes in three known 4 KiB blocks of the secondary's
# image while both nodes are stopped; `repvol verify` must report exactly
# those ranges; `repvol verify --resync` repairs them; the images end equal.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin

SIZE=$((256 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary
node_wait_peer_state A connected
random_file "$TEST_DIR/src" $((64 << 20))
tmo 60 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}"

step "a clean pair verifies clean"
tmo 60 "$REPVOL" verify --control "${NODE_CTL[A]}" >"$TEST_DIR/verify0.out" ||
    { cat "$TEST_DIR/verify0.out"; fail "verify of identical copies failed or found differences"; }
grep -q '^# 0 B differ in 0 range' "$TEST_DIR/verify0.out" || fail "unexpected verify output: $(cat "$TEST_DIR/verify0.out")"

node_stop A
node_stop B
step "flip bytes in 3 blocks of the secondary (offsets 4 KiB, 1 MiB + 8 KiB, 200 MiB)"
for off in 4096 $((1048576 + 8192)) $((200 << 20)); do
    printf '\xde\xad\xbe\xef' | dd of="$TEST_DIR/b.img" bs=1 seek=$((off + 100)) conv=notrunc status=none
done

node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary
node_wait_peer_state A connected
rc=0
tmo 60 "$REPVOL" verify --control "${NODE_CTL[A]}" >"$TEST_DIR/verify1.out" || rc=$?
cat "$TEST_DIR/verify1.out"
[ "$rc" -eq 3 ] || fail "verify should exit 3 (copies differ), got $rc"
printf '4096 4096\n1056768 4096\n209715200 4096\n' >"$TEST_DIR/expected"
grep -v '^#' "$TEST_DIR/verify1.out" >"$TEST_DIR/got"
cmp "$TEST_DIR/expected" "$TEST_DIR/got" || fail "verify reported other ranges than the three flipped blocks"

step "verify --resync repairs them"
rc=0
tmo 60 "$REPVOL" verify --resync --control "${NODE_CTL[A]}" >"$TEST_DIR/verify2.out" || rc=$?
[ "$rc" -eq 3 ] || fail "verify --resync should still report the differences it repaired (exit 3), got $rc"
node_wait_peer_state A connected
tmo 60 "$REPVOL" verify --control "${NODE_CTL[A]}" >"$TEST_DIR/verify3.out" ||
    { cat "$TEST_DIR/verify3.out"; fail "copies still differ after verify --resync"; }

node_stop A
node_stop B
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ after verify --resync"
echo "PASS: $TEST_NAME"
