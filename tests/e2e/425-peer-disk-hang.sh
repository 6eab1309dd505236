#!/usr/bin/env bash
# The secondary's disk hangs (mode C): B's image sits on a loop-mounted
# ext4 that is frozen (fsfreeze) while a client writes through A.  B's
# process stays alive and its event loop keeps running (keepalives), but
# the writes A sends it never complete.  Expected:
#   - keepalives keep flowing both ways, so "no answer for --peer-timeout"
#     never fires; A must notice that the peer completes no write (4 x
#     --peer-timeout = 8 s here, like DRBD's ko-count) and let it go, then
#     go on acknowledging writes, recording them for the resync: the
#     client is held up for a bounded time only, and sees no error;
#   - A's status reports the peer as not connected, with the reason;
#   - (A redials meanwhile: B's event loop answers, and a resync starts,
#     stuck too until the thaw;)
#   - after the thaw, B's stuck writes complete, B reconnects, is resynced;
#     images identical, every acknowledged write on both.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_root
require_binaries
require_cmd cmp diffutils
require_cmd fsfreeze util-linux
require_cmd mkfs.ext4 e2fsprogs
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"

SIZE=$((64 << 20))
MNT=$TEST_DIR/mnt
mkdir -p "$MNT"
truncate -s 160M "$TEST_DIR/fs.img"
mkfs.ext4 -q -F "$TEST_DIR/fs.img" || fail "mkfs.ext4"
mount -o loop "$TEST_DIR/fs.img" "$MNT" 2>/dev/null || skip "cannot loop-mount an ext4 image (no loop devices?)"
on_exit "umount -l '$MNT'"
A_IMG=$TEST_DIR/a.img
B_IMG=$MNT/b.img
create_volume "$A_IMG" "$SIZE" >/dev/null
cp --sparse=always "$A_IMG" "$B_IMG"
repl_setup
# Thaw first at exit: nothing stuck on the frozen file system can die.
on_exit "fsfreeze -u '$MNT'"
node_start B "$B_IMG" secondary --peer-timeout 2000
node_start A "$A_IMG" primary --peer-timeout 2000
node_wait_peer_state A connected
node_wait_peer_state B connected

step "B's file system frozen 2 s into 18 s of writes through A"
"$ACK_CHECKER" write --uri "${NODE_URI[A]}" --log "$TEST_DIR/ack.log" --region-mb 48 --depth 16 \
    --rate 1500 --seconds 18 --seed "$RANDOM" >"$TEST_DIR/checker.out" 2>&1 &
CHECKER=$!
track_pid "$CHECKER"
sleep 2
acked0=$(grep -vc '^#' "$TEST_DIR/ack.log" || true)
runs0=$(status_field A 'd["peer"]["sync"]["runs"]')
fsfreeze -f "$MNT" || fail "fsfreeze"
t0=$SECONDS
wait_not_connected A 20
dt=$((SECONDS - t0))
perr=$(status_field A 'd["peer"]["last_error"]')
info "A gave up on the peer ~$dt s after B's disk hung: $perr"
[ "$dt" -le 12 ] || fail "A waited $dt s for a peer whose disk hangs (--peer-timeout 2000: 8 s expected)"
[[ $perr == *"completed no write"* ]] || fail "A's status does not say why the peer was dropped: '$perr'"
sleep 3
acked1=$(grep -vc '^#' "$TEST_DIR/ack.log" || true)
info "writes acknowledged: $acked0 before the hang, $acked1 by 3 s after A let the peer go"
node_alive B || fail "B died"
rc=0
wait_bounded "$CHECKER" 60 || rc=$?
sed 's/^/    /' "$TEST_DIR/checker.out"
[ "$rc" -eq 0 ] || fail "ack-checker exited with status $rc"
grep -q ' 0 failed, 0 unanswered; stopped after .*: \(time is up\|region used up\)' "$TEST_DIR/checker.out" ||
    fail "writes through A failed or stalled while B's disk hung"
[ "$acked1" -gt $((acked0 + 1000)) ] || fail "writes through A did not go on after the peer was let go ($acked0 -> $acked1)"

step "thaw: B's writes complete, B reconnects and is resynced"
fsfreeze -u "$MNT"
wait_resync_done "$runs0" 60
info "resync: $MAX_DONE bytes"
node_stop A
node_stop B
assert_bytes_equal "$A_IMG" "$B_IMG" "$SIZE" "images after the thaw and resync"
verify_acked "$TEST_DIR/ack.log" "$A_IMG" "$B_IMG"
