#!/usr/bin/env bash
# Fencing hook: a mode-C primary that loses its peer holds the writes the
# peer lacks until the fence-peer handler exits 0; a failing handler keeps
# them held until `repvol resume-io`.  Held writes are still written and
# land once released.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin

SIZE=$((64 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"

# The handler records its environment, then waits for the test to release
# it (bounded), then exits with the code the test asks for.
cat >"$TEST_DIR/fence.sh" <<HANDLER
#!/bin/sh
env | grep '^REPVOL_' | sort >"$TEST_DIR/fence.env"
i=0
while [ ! -e "$TEST_DIR/release" ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
exit "\$(cat "$TEST_DIR/exitcode" 2>/dev/null || echo 0)"
HANDLER
chmod +x "$TEST_DIR/fence.sh"

repl_setup
round() {   # round EXITCODE
    rm -f "$TEST_DIR/release" "$TEST_DIR/fence.env"
    echo "$1" >"$TEST_DIR/exitcode"
    node_start B "$TEST_DIR/b.img" secondary
    node_start A "$TEST_DIR/a.img" primary --fence-peer-handler "$TEST_DIR/fence.sh"
    node_wait_peer_state A connected
    node_kill B
    node_wait_peer_state A disconnected 15
    random_file "$TEST_DIR/data$1" $((1 << 20))
    nbdcopy "$TEST_DIR/data$1" "${NODE_URI[A]}" &
    local writer=$!
    track_pid "$writer"
    sleep 1.5
    pid_alive "$writer" || fail "a write was acknowledged while the fence-peer handler was running"
    [ -s "$TEST_DIR/fence.env" ] || fail "the fence-peer handler did not run"
    grep -q '^REPVOL_VOLUME=a$' "$TEST_DIR/fence.env" || fail "handler env lacks REPVOL_VOLUME: $(cat "$TEST_DIR/fence.env")"
    grep -q '^REPVOL_PEER=' "$TEST_DIR/fence.env" || fail "handler env lacks REPVOL_PEER"
    touch "$TEST_DIR/release"
    if [ "$1" != 0 ]; then
        sleep 1
        pid_alive "$writer" || fail "writes were released although the fence-peer handler failed"
        grep -q "fence-peer handler .* failed" "${NODE_LOG[A]}" || fail "no log line for the failed handler"
        "$REPVOL" resume-io --control "${NODE_CTL[A]}" >/dev/null
    fi
    wait_bounded "$writer" 20 || fail "the held write did not complete after release"
    node_stop A
    assert_bytes_equal "$TEST_DIR/data$1" "$TEST_DIR/a.img" $((1 << 20)) "the held write is not in the image"
}

step "handler succeeds: writes held until it exits 0"
round 0
step "handler fails: writes held until 'repvol resume-io'"
round 1
echo "PASS: $TEST_NAME"
