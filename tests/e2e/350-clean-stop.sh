#!/usr/bin/env bash
# 350-clean-stop: a planned stop is not a failure.
#
# A secondary stopped with SIGTERM finishes the primary's requests it has,
# marks its copy Outdated durably and says GOODBYE: the primary logs a clean
# stop, runs no fence-peer handler, holds no write, and the stopped copy
# refuses promotion without --force-primary (it is behind).  Restarted, it
# resyncs and is UpToDate again, byte-identical.  The contrast: kill -9 of
# the secondary (no GOODBYE) does run the handler.  A primary stopped with
# SIGTERM leaves its secondary UpToDate (every write was answered).
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_python_nbd

SIZE=$((64 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
cat >"$TEST_DIR/fence.sh" <<HANDLER
#!/bin/sh
echo ran >>"$TEST_DIR/fence.ran"
exit 0
HANDLER
chmod +x "$TEST_DIR/fence.sh"
disk_state() { "$REPVOL" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk_state"])'; }

repl_setup
node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary --fence-peer-handler "$TEST_DIR/fence.sh"
node_wait_peer_state A connected
random_file "$TEST_DIR/d1" $((4 << 20))
nbd_write "${NODE_URI[A]}" 0 "$TEST_DIR/d1"

step "SIGTERM the secondary: GOODBYE, Outdated, no fencing"
node_stop B
node_wait_peer_state A disconnected 10
grep -q "is stopping cleanly (its copy is now marked Outdated)" "${NODE_LOG[A]}" ||
    fail "the primary did not hear GOODBYE"
status_field A 'd["peer"]["last_error"]' | grep -q "stopped cleanly" ||
    fail "status does not say the peer stopped cleanly: $(status_field A 'd["peer"]["last_error"]')"
assert_eq "$(disk_state "$TEST_DIR/b.img")" Outdated "the stopped secondary's disk state"
# Writes go on at once: nothing held for a fence handler.
random_file "$TEST_DIR/d2" $((4 << 20))
t0=$SECONDS
nbd_write "${NODE_URI[A]}" $((8 << 20)) "$TEST_DIR/d2"
[ $((SECONDS - t0)) -le 3 ] || fail "a write after the clean stop took $((SECONDS - t0)) s"
[ ! -e "$TEST_DIR/fence.ran" ] || fail "the fence-peer handler ran for a clean stop"

step "the Outdated copy refuses to be promoted without --force-primary"
expect_fail "$REPVOLD" --volume "$TEST_DIR/b.img" --listen "unix:$TEST_DIR/x.sock" --control "$TEST_DIR/x.ctl" \
    --role primary --no-mlock
grep -q "refusing to serve an Outdated copy" "$TEST_DIR/expect_fail.err" ||
    fail "no clear refusal: $(cat "$TEST_DIR/expect_fail.err")"

step "restarted, the secondary resyncs and is UpToDate"
node_start B "$TEST_DIR/b.img" secondary
wait_resync_done 0 60
assert_eq "$(status_field B 'd["disk_state"]')" UpToDate "secondary after its resync"

step "kill -9 of the secondary: no GOODBYE, the fence-peer handler runs"
node_kill B
node_wait_peer_state A disconnected 15
random_file "$TEST_DIR/d3" $((1 << 20))
nbd_write "${NODE_URI[A]}" $((16 << 20)) "$TEST_DIR/d3"
[ -e "$TEST_DIR/fence.ran" ] || fail "the fence-peer handler did not run after kill -9"
node_start B "$TEST_DIR/b.img" secondary
wait_resync_done 1 60

step "SIGTERM the primary: its secondary stays UpToDate"
node_stop A
wait_not_connected B 10
grep -q "is stopping cleanly" "${NODE_LOG[B]}" || fail "the secondary did not hear the primary's GOODBYE"
assert_eq "$(status_field B 'd["disk_state"]')" UpToDate "secondary after the primary's clean stop"
node_stop B
assert_eq "$(disk_state "$TEST_DIR/b.img")" UpToDate "secondary's recorded state"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ"
echo "PASS: $TEST_NAME"
