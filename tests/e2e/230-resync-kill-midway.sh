#!/usr/bin/env bash
# An interrupted resync resumes.  The primary runs with --resync-rate 10M.
# Round 1: the secondary is killed, 64 MiB of distinct 64 KiB blocks
# scattered over a 1 GiB volume are written through the degraded primary,
# the secondary is restarted, and once the resync is between 10% and 90%
# the secondary is killed with SIGKILL again (it holds part of the data and
# is Inconsistent); restarted, it must get the rest: the resync completes,
# and the bytes moved by both runs together are at least what changed and
# less than twice that.  Round 2: the same, but it is the primary (the sync
# source) that is killed midway and restarted as primary (without a rate
# limit: after a crash it resyncs whole activity-log extents).  After each
# round both images' data regions must be byte-identical.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd python3 python3

SIZE=$((1024 << 20))
DIRTY=$((64 << 20))
RATE=10M
PEER_ARGS=(--peer-timeout 2000)

# degraded_write TAG: SIGKILL the secondary, write DIRTY bytes scattered
# through the primary.
degraded_write() {
    node_kill B
    wait_not_connected A 15
    tmo 60 fio --name="$1" --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=64k --iodepth=16 \
        --size="$SIZE" --io_size="$DIRTY" --randrepeat=0 --norandommap=0 --output="$TEST_DIR/fio-$1.out" ||
        { cat "$TEST_DIR/fio-$1.out" >&2; fail "fio randwrite through the degraded primary failed"; }
    local left
    read -r _ _ _ _ left _ _ <<<"$(sync_fields A)"
    info "primary degraded: $left bytes dirty"
    [ "$left" -ge "$DIRTY" ] || fail "primary records only $left dirty bytes after writing $DIRTY while degraded"
}

# wait_midway: until A's resync is between 10% and 90%; sets MID_DONE.
wait_midway() {
    local ps ss pct ndone deadline=$((SECONDS + $(tscale 30)))
    while [ "$SECONDS" -lt "$deadline" ]; do
        read -r ps ss pct ndone _ _ _ <<<"$(sync_fields A)"
        if [ "$ss" = source ] && [ "${pct%.*}" -ge 10 ]; then
            [ "${pct%.*}" -lt 90 ] || fail "resync already at ${pct}% when first seen past 10%: the rate limit did not hold"
            MID_DONE=$ndone
            info "resync at ${pct}% ($ndone bytes done)"
            return 0
        fi
        [ "$ss" = none ] && [ "$ps" = connected ] && [ "$ndone" -gt 0 ] && fail "resync finished before it could be interrupted"
        sleep 0.05
    done
    fail "resync did not reach 10% within $(tscale 30) s (peer $ps, sync $ss at $pct%)"
}

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}" --resync-rate "$RATE"
node_wait_peer_state A connected
node_wait_peer_state B connected

step "round 1: degraded writes, resync at $RATE/s, SIGKILL the secondary midway"
degraded_write round1
read -r _ _ _ _ _ RUNS0 _ <<<"$(sync_fields A)"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
wait_midway
done1=$MID_DONE
node_kill B
wait_not_connected A 15
read -r _ ss _ ndone _ _ _ <<<"$(sync_fields A)"
# Chunks answered between the poll and the kill count too.
[ "$ndone" -gt "$done1" ] && done1=$ndone
read -r _ _ _ _ left _ _ <<<"$(sync_fields A)"
info "secondary killed: $done1 bytes were synced, $left left"
[ "$left" -gt 0 ] || fail "nothing left to sync after killing the secondary midway"
[ "$(python3 -c 'import sys,json; print(json.load(sys.stdin)["disk_state"])' < <("$REPVOL" info --json "$TEST_DIR/b.img"))" = Inconsistent ] ||
    fail "the secondary killed midway through a resync is not Inconsistent on disk"

step "round 1: restart the secondary: the resync resumes"
read -r _ _ _ _ _ RUNS0 _ <<<"$(sync_fields A)"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
wait_resync_done "$RUNS0" 30
read -r _ _ _ done2 _ runs _ <<<"$FINAL"
[ "$MAX_DONE" -gt "$done2" ] && done2=$MAX_DONE
total=$((done1 + done2))
info "resumed resync done: $done2 bytes (run $runs); both runs: $total"
[ "$done2" -lt "$DIRTY" ] || fail "the resumed resync moved $done2 bytes: it started over instead of resuming"
[ "$total" -ge $((DIRTY * 9 / 10)) ] || fail "the two runs moved $total bytes: less than the $DIRTY changed"
[ "$total" -lt $((2 * DIRTY)) ] || fail "the two runs moved $total bytes for $DIRTY changed"
node_stop B
node_stop A
step "round 1: compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ after a resync interrupted by the secondary's death"

step "round 2: degraded writes, resync at $RATE/s, SIGKILL the primary midway"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}" --resync-rate "$RATE"
node_wait_peer_state A connected
degraded_write round2
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
wait_midway
node_kill A
wait_not_connected B 15
read -r _ _ _ _ _ _ ds <<<"$(sync_fields B)"
info "primary killed; the secondary is $ds"
[ "$ds" = Inconsistent ] || fail "the secondary is $ds after losing its sync source midway (expected Inconsistent)"

step "round 2: restart the primary (no rate limit): the resync resumes"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
grep -q 'was not shut down cleanly' "${NODE_LOG[A]}" || fail "the restarted primary did not notice its crash"
wait_resync_done 0 30
read -r _ _ _ ndone _ runs _ <<<"$FINAL"
info "resumed resync done: $ndone bytes (run $runs)"
node_stop A
node_stop B
step "round 2: compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ after a resync interrupted by the primary's death"
