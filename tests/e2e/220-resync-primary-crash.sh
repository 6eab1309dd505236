#!/usr/bin/env bash
# The dirty bitmap survives a crash of the primary: with the secondary
# stopped, 64 MiB of distinct 64 KiB blocks scattered over a 1 GiB volume
# are written through the degraded primary; then more writes are started
# and the primary is killed with SIGKILL in the middle of them (requests in
# flight, bitmap bits set in memory only; the activity log must cover them).
# The primary is restarted on the same image as primary (it must say it
# "was not shut down cleanly"), the secondary is started, and the primary's
# resync must bring the secondary up to date: the resync moves at least
# what was written (more is fine: after a crash whole 4 MiB activity-log
# extents are resynced), and both images' data regions are byte-identical
# afterwards (whatever of the interrupted writes reached the primary's
# image must have reached the secondary's too).
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd python3 python3

SIZE=$((1024 << 20))
DIRTY=$((64 << 20))
PEER_ARGS=(--peer-timeout 2000)

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
node_wait_peer_state A connected
node_wait_peer_state B connected

step "stop the secondary; write 64 MiB scattered through the degraded primary"
node_stop B
wait_not_connected A 15
tmo 60 fio --name=scatter --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=64k --iodepth=16 \
    --size="$SIZE" --io_size="$DIRTY" --randrepeat=0 --norandommap=0 --output="$TEST_DIR/fio-degraded.out" ||
    { cat "$TEST_DIR/fio-degraded.out" >&2; fail "fio randwrite through the degraded primary failed"; }
read -r _ _ _ _ left _ _ <<<"$(sync_fields A)"
info "primary degraded: $left bytes dirty"
[ "$left" -ge "$DIRTY" ] || fail "primary records only $left dirty bytes after writing $DIRTY while degraded"

step "more writes (4K and 64K, QD32), SIGKILL the primary in the middle of them"
fio --name=crash --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bssplit=4k/50:64k/50 --iodepth=32 \
    --size="$SIZE" --io_size=2g --randrepeat=0 --norandommap=1 \
    --output="$TEST_DIR/fio-crash.out" </dev/null &
FIO=$!
track_pid "$FIO"
writes() { node_status_json A 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["writes"])' 2>/dev/null || echo 0; }
w0=$(writes)
deadline=$((SECONDS + $(tscale 20)))
while [ "$(writes)" -lt $((w0 + 2000)) ]; do
    pid_alive "$FIO" || { cat "$TEST_DIR/fio-crash.out" >&2; fail "fio stopped before the primary was killed"; }
    [ "$SECONDS" -lt "$deadline" ] || fail "fio's writes did not get going within $(tscale 20) s"
    sleep 0.1
done
pid_alive "$FIO" || { cat "$TEST_DIR/fio-crash.out" >&2; fail "fio finished before the primary was killed"; }
node_kill A
wait_bounded "$FIO" 30 || true
grep -q 'write: IOPS' "$TEST_DIR/fio-crash.out" || cat "$TEST_DIR/fio-crash.out" >&2
crash_ios=$(sed -n 's/.*issued rwts: total=[0-9]*,\([0-9]*\),.*/\1/p' "$TEST_DIR/fio-crash.out" | head -1)
info "fio had issued ${crash_ios:-?} writes when the primary died"

step "restart the primary on the same image"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
grep -q 'was not shut down cleanly' "${NODE_LOG[A]}" ||
    { cat "${NODE_LOG[A]}" >&2; fail "the restarted primary did not log that it was not shut down cleanly"; }
read -r ps _ _ _ left RUNS0 ds <<<"$(sync_fields A)"
info "restarted primary: peer $ps, disk $ds, $left bytes dirty"
[ "$left" -ge "$DIRTY" ] || fail "after the crash the primary records only $left dirty bytes (>= $DIRTY were written)"

step "start the secondary: resync"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
wait_resync_done "$RUNS0" 60
read -r _ _ _ ndone _ runs _ <<<"$FINAL"
info "resync done: bytes_done $ndone (max seen $MAX_DONE), run $runs"
[ "$MAX_DONE" -gt "$ndone" ] && ndone=$MAX_DONE
[ "$ndone" -ge "$DIRTY" ] || fail "resync moved $ndone bytes: less than the $DIRTY written"
[ "$ndone" -le "$SIZE" ] || fail "resync moved $ndone bytes, more than the volume"

node_stop A
node_stop B
step "compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ after the primary's crash and resync"
