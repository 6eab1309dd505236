#!/usr/bin/env bash
# Model finding 1 (tests/model/README.md): a mode-C primary that never
# reached its peer since it started (a restart after a crash, the peer's
# link down) must fence before it acknowledges a write the peer lacks.
# Fencing only on the loss of a live link let such a write be acknowledged
# while the peer, still UpToDate, could be promoted without it.
# Then: once fenced, further local-only writes go straight through; a new
# connection (and separation) fences again.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin

SIZE=$((64 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"

# The handler counts its runs, then waits for the test to release it
# (bounded) and exits 0.
cat >"$TEST_DIR/fence.sh" <<HANDLER
#!/bin/sh
echo run >>"$TEST_DIR/fence.runs"
i=0
while [ ! -e "$TEST_DIR/release" ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
exit 0
HANDLER
chmod +x "$TEST_DIR/fence.sh"
runs() { [ -f "$TEST_DIR/fence.runs" ] && wc -l <"$TEST_DIR/fence.runs" || echo 0; }

repl_setup
step "primary starts with its peer down: the first local-only write waits for the handler"
node_start A "$TEST_DIR/a.img" primary --fence-peer-handler "$TEST_DIR/fence.sh"
random_file "$TEST_DIR/data1" $((1 << 20))
nbdcopy "$TEST_DIR/data1" "${NODE_URI[A]}" &
writer=$!
track_pid "$writer"
sleep 1.5
pid_alive "$writer" || fail "a write the peer lacks was acknowledged without fencing the never-connected peer"
assert_eq "$(runs)" 1 "fence-peer handler runs"
assert_eq "$(node_peer_state A)" disconnected "peer state"
touch "$TEST_DIR/release"
wait_bounded "$writer" 20 || fail "the held write did not complete after the handler succeeded"

step "fenced: more local-only writes are acknowledged without another handler run"
random_file "$TEST_DIR/data2" $((1 << 20))
timeout "$(tscale 20)" nbdcopy "$TEST_DIR/data2" "$(nbd_uri "${NODE_SOCK[A]}")" ||
    fail "a local-only write after a successful fence did not complete"
assert_eq "$(runs)" 1 "fence-peer handler runs"

step "the peer comes up, resyncs, and is UpToDate; a new separation fences again"
rm -f "$TEST_DIR/release"
node_start B "$TEST_DIR/b.img" secondary
node_wait_peer_state A connected 30
for ((i = 0; i < $(tscale 30) * 10; i++)); do
    [ "$(status_field B 'd["disk_state"]' 2>/dev/null)" = UpToDate ] &&
        [ "$(status_field A 'd["peer"]["sync"]["state"]' 2>/dev/null)" = none ] && break
    sleep 0.1
done
assert_eq "$(status_field B 'd["disk_state"]')" UpToDate "B's disk state after the resync"
node_kill B
node_wait_peer_state A disconnected 15
random_file "$TEST_DIR/data3" $((1 << 20))
nbdcopy "$TEST_DIR/data3" "${NODE_URI[A]}" &
writer=$!
track_pid "$writer"
sleep 1.5
pid_alive "$writer" || fail "a write after a new separation was acknowledged without fencing"
assert_eq "$(runs)" 2 "fence-peer handler runs"
touch "$TEST_DIR/release"
wait_bounded "$writer" 20 || fail "the held write did not complete after release"
node_stop A
assert_bytes_equal "$TEST_DIR/data3" "$TEST_DIR/a.img" $((1 << 20)) "the held write is not in the image"
echo "PASS: $TEST_NAME"
