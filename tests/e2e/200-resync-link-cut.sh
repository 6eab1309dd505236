#!/usr/bin/env bash
# Bitmap resync after a cut link: with the two nodes connected, the link is
# cut (netns mode: the veth goes down; loopback mode: the secondary is
# killed with SIGKILL instead, since there is no link to cut), 64 MiB of
# distinct 64 KiB blocks scattered over a 1 GiB volume are written through
# the primary (fio nbd randwrite; the first ones while the primary still
# believes the peer is there), the link is restored (veth up / secondary
# restarted), and the primary must resync exactly the dirty ranges: the
# resync's bytes_done is at least ~what changed and well below twice that
# (the volume is 16x larger: a full copy would be caught), and both images'
# data regions are byte-identical afterwards.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd python3 python3

SIZE=$((1024 << 20))
DIRTY=$((64 << 20))
# Declare a silent peer dead quickly (the link cut is only seen that way).
PEER_ARGS=(--peer-timeout 2000)

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
node_wait_peer_state A connected
node_wait_peer_state B connected
read -r _ _ _ _ _ RUNS0 _ <<<"$(sync_fields A)"

if [ "$REPL_NET" = netns ]; then
    step "cut the link (veth down)"
    link_down
else
    step "loopback mode: no link to cut; SIGKILL the secondary instead"
    node_kill B
fi

step "write 64 MiB (1024 distinct 64 KiB blocks) scattered over 1 GiB through the primary"
tmo 60 fio --name=scatter --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=64k --iodepth=16 \
    --size="$SIZE" --io_size="$DIRTY" --randrepeat=0 --norandommap=0 \
    --output-format=json --output="$TEST_DIR/fio.json" ||
    { cat "$TEST_DIR/fio.json" >&2; fail "fio randwrite through the degraded primary failed"; }
written=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); d=json.loads(t[t.index("{"):]); print(d["jobs"][0]["write"]["io_bytes"])' "$TEST_DIR/fio.json")
assert_eq "$written" "$DIRTY" "bytes fio wrote"
wait_not_connected A 15
read -r _ _ _ _ left _ _ <<<"$(sync_fields A)"
info "primary degraded: $left bytes dirty"
[ "$left" -ge "$DIRTY" ] || fail "primary records only $left dirty bytes after writing $DIRTY while degraded"
[ "$left" -lt $((2 * DIRTY)) ] || fail "primary records $left dirty bytes for $DIRTY written"

if [ "$REPL_NET" = netns ]; then
    step "restore the link (veth up)"
    wait_not_connected B 15
    link_up
else
    step "restart the secondary"
    node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
fi
wait_resync_done "$RUNS0" 60
read -r _ _ _ ndone _ runs _ <<<"$FINAL"
info "resync done: bytes_done $ndone (max seen $MAX_DONE), run $runs"
[ "$MAX_DONE" -gt "$ndone" ] && ndone=$MAX_DONE
[ "$ndone" -ge $((DIRTY * 9 / 10)) ] || fail "resync moved $ndone bytes: less than the $DIRTY changed"
[ "$ndone" -lt $((2 * DIRTY)) ] || fail "resync moved $ndone bytes for $DIRTY changed (not a bitmap resync?)"
grep -q 'resync complete' "${NODE_LOG[A]}" || fail "primary did not log the resync's completion"

node_stop A
node_stop B
step "compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ after the resync"
