#!/usr/bin/env bash
# A bitmap resync with the volume in use: the secondary is killed, 96 MiB of
# distinct 64 KiB blocks scattered over a 1 GiB volume are written through
# the degraded primary, the secondary is restarted and the primary resyncs
# at --resync-rate 20M (~5 s), while fio writes through the primary at the
# same time (32 MiB of 4K and 64K random writes, write rate capped at 8 MB/s
# so they span ~4 s of the resync, all over the volume: into ranges still
# dirty, being resynced and already resynced), then reads everything back
# with verify=crc32c.  The test asserts that fio's writes really overlapped
# the resync, that fio's verify passes, that the resync completes, and that
# both images' data regions are then byte-identical.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd python3 python3

SIZE=$((1024 << 20))
DIRTY=$((96 << 20))
RATE=20M
PEER_ARGS=(--peer-timeout 2000)

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}" --resync-rate "$RATE"
node_wait_peer_state A connected
node_wait_peer_state B connected
read -r _ _ _ _ _ RUNS0 _ <<<"$(sync_fields A)"

step "SIGKILL the secondary; write 96 MiB scattered through the degraded primary"
node_kill B
tmo 60 fio --name=scatter --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=64k --iodepth=16 \
    --size="$SIZE" --io_size="$DIRTY" --randrepeat=0 --norandommap=0 --output="$TEST_DIR/fio-degraded.out" ||
    { cat "$TEST_DIR/fio-degraded.out" >&2; fail "fio randwrite through the degraded primary failed"; }
wait_not_connected A 15
read -r _ _ _ _ left _ _ <<<"$(sync_fields A)"
info "primary degraded: $left bytes dirty"
[ "$left" -ge "$DIRTY" ] || fail "primary records only $left dirty bytes after writing $DIRTY while degraded"

step "restart the secondary: resync at $RATE/s"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
deadline=$((SECONDS + $(tscale 30)))
while :; do
    read -r ps ss pct _ _ _ _ <<<"$(sync_fields A)"
    [ "$ss" = source ] && break
    [ "$SECONDS" -lt "$deadline" ] || fail "primary not resyncing 30 s after the secondary's restart (peer $ps, sync $ss)"
    sleep 0.05
done
[ "${pct%.*}" -lt 50 ] || fail "resync already ${pct}% done when first seen: the rate limit did not hold"

step "fio randwrite + verify through the primary during the resync (started at ${pct}%)"
fio --name=load --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bssplit=4k/50:64k/50 --iodepth=16 \
    --size="$SIZE" --io_size=32m --rate=,8m --randrepeat=0 --norandommap=0 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=1 \
    --output="$TEST_DIR/fio-load.out" </dev/null &
FIO=$!
track_pid "$FIO"
overlap=0 samples=0 deadline=$((SECONDS + $(tscale 60)))
while pid_alive "$FIO"; do
    read -r ps ss pct _ _ _ _ <<<"$(sync_fields A)"
    samples=$((samples + 1))
    [ "$ss" = source ] && overlap=$((overlap + 1))
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.1
done
rc=0
wait_bounded "$FIO" 10 || rc=$?
[ "$rc" -eq 0 ] || { cat "$TEST_DIR/fio-load.out" >&2; fail "fio with verify failed during the resync (status $rc)"; }
grep -q 'err= 0' "$TEST_DIR/fio-load.out" || { cat "$TEST_DIR/fio-load.out" >&2; fail "fio reported errors"; }
info "fio done; the resync was running in $overlap of $samples polls during fio (now sync $ss at ${pct}%)"
[ "$overlap" -ge 3 ] || fail "fio and the resync hardly overlapped ($overlap of $samples polls): the test proved nothing"

wait_resync_done "$RUNS0" 60
read -r _ _ _ ndone _ runs _ <<<"$FINAL"
info "resync done: bytes_done $ndone (max seen $MAX_DONE), run $runs"
[ "$MAX_DONE" -gt "$ndone" ] && ndone=$MAX_DONE
[ "$ndone" -ge $((DIRTY * 9 / 10)) ] || fail "resync moved $ndone bytes: less than the $DIRTY changed"
[ "$ndone" -lt $((2 * DIRTY)) ] || fail "resync moved $ndone bytes for $DIRTY changed"

node_stop A
node_stop B
step "compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ after a resync under load"
