#!/usr/bin/env bash
# Replication modes B and A (--protocol on both nodes): nbdcopy 32 MiB and
# fio random writes with verify through the primary; both nodes stop
# cleanly; the two images are byte-identical.  Then a mode mismatch between
# the nodes: refused on both sides with reason MODE, no data moves, both
# still stop cleanly.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd fio fio
require_cmd cmp diffutils

SIZE=$((96 << 20))
COPY=$((32 << 20))
repl_setup
random_file "$TEST_DIR/src" "$COPY"

status_field() { # N EXPR over d = `repvol status --json`
    node_status_json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}

new_pair() {
    rm -f "$TEST_DIR/a.img" "$TEST_DIR/b.img"
    create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
    cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
}

for mode in B A; do
    step "mode $mode: both nodes with --protocol $mode"
    new_pair
    node_start B "$TEST_DIR/b.img" secondary --protocol "$mode"
    node_start A "$TEST_DIR/a.img" primary --protocol "$mode"
    node_wait_peer_state A connected
    node_wait_peer_state B connected
    assert_eq "$(status_field A 'd["peer"]["mode"]')" "$mode" "primary's replication mode"
    assert_eq "$(status_field B 'd["peer"]["mode"]')" "$mode" "secondary's replication mode"
    grep -q "mode $mode" "${NODE_LOG[A]}" || fail "primary's log does not name mode $mode"

    step "mode $mode: nbdcopy 32 MiB through the primary"
    tmo 60 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}" || fail "nbdcopy into the primary failed"

    step "mode $mode: fio randwrite 4k QD32 with verify through the primary"
    tmo 90 fio --name="mode$mode" --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=4k \
        --iodepth=32 --offset=32M --size=48M --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output="$TEST_DIR/fio-$mode.out" ||
        { cat "$TEST_DIR/fio-$mode.out" >&2; fail "mode $mode: fio randwrite/verify failed"; }
    if grep -qE 'err= *[1-9]' "$TEST_DIR/fio-$mode.out"; then
        cat "$TEST_DIR/fio-$mode.out" >&2
        fail "mode $mode: fio reported errors"
    fi
    info "$(grep -E '^ +WRITE:' "$TEST_DIR/fio-$mode.out" | sed 's/^ *//; s/, run=.*//')"

    node_status_json A >"$TEST_DIR/status-$mode.json"
    python3 - "$TEST_DIR/status-$mode.json" "$COPY" <<'PY' || fail "mode $mode: primary's counters are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
p, s = d["peer"], d["stats"]
assert p["state"] == "connected", p
assert p["bytes_replicated"] >= int(sys.argv[2]) + (48 << 20), p
assert p["nacks"] == 0 and p["disconnects"] == 0, p
assert s["local_only_writes"] == 0 and s["errors"] == 0, s
print("    replicated %d bytes in %d frames, %d acks" % (p["bytes_replicated"], p["frames_sent"], p["acks"]))
PY

    step "mode $mode: stop both cleanly, compare the images"
    node_stop A
    node_stop B
    grep -q "lost peer" "${NODE_LOG[A]}" && fail "mode $mode: the primary lost its peer during the run"
    assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "mode $mode: primary and secondary images differ"
    assert_bytes_equal "$TEST_DIR/src" "$TEST_DIR/b.img" "$COPY" "mode $mode: the secondary lacks the nbdcopy data"
    info "mode $mode: images identical"
done

step "mode mismatch: primary --protocol B, secondary --protocol A: refused"
new_pair
node_start B "$TEST_DIR/b.img" secondary --protocol A
node_start A "$TEST_DIR/a.img" primary --protocol B
node_wait_peer_state A refused 15
node_wait_peer_state B refused 15
for n in A B; do
    grep -E 'MODE' "${NODE_LOG[$n]}" >/dev/null ||
        { cat "${NODE_LOG[$n]}" >&2; fail "node $n: no MODE refusal in its log"; }
done
info "A: $(grep -m1 MODE "${NODE_LOG[A]}" | sed 's/^[^ ]* //')"
info "B: $(grep -m1 MODE "${NODE_LOG[B]}" | sed 's/^[^ ]* //')"
grep -qi 'connected to peer' "${NODE_LOG[A]}" "${NODE_LOG[B]}" && fail "mismatched modes connected"
# The primary keeps retrying; the refusal is logged once, repeats at debug level.
sleep 2
nref=$(grep -c 'MODE' "${NODE_LOG[A]}" || true)
[ "$nref" -le 2 ] || fail "the primary logged the MODE refusal $nref times (repeats should be quiet)"
assert_eq "$(node_peer_state A)" refused "primary's peer state after retries"
# Writes on the refused primary still work (locally); nothing reached B.
tmo 30 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}" || fail "nbdcopy into the refused primary failed"
assert_eq "$(status_field A 'd["peer"]["bytes_replicated"]')" 0 "bytes replicated while refused"
node_stop A
node_stop B
cmp -s -n "$COPY" "$TEST_DIR/src" "$TEST_DIR/b.img" && fail "data reached the secondary despite the refusal"
info "refused both ways, nothing replicated, both stopped cleanly"
