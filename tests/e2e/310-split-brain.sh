#!/usr/bin/env bash
# Split brain and its manual recovery.
#   1. A primary, B secondary, in sync with some data.  The link is cut; both
#      notice; B is promoted; each node writes different data (partly the
#      same region, partly regions only one side touched).
#      The partition lasts a while (longer than the peer timeout and the
#      5 s connect timeout): both primaries keep dialing a silent peer and
#      keep serving.
#   2. The link is restored.  Both nodes refuse each other: peer state
#      "split-brain" on both (last_refusal says SPLIT BRAIN, the text status
#      too), and it stays that way (no retry connects them); neither
#      image's data region changed by a single byte.
#   3. Recovery on B: `repvol connect --discard-my-data` is refused while B
#      is primary; `repvol secondary --force`, then `repvol connect
#      --discard-my-data`: B dials A, takes A's data, resyncing the union of
#      both sides' changes (B's own blocks must go too, not only A's).
#   4. Both stopped: B's data region equals A's, and A's is exactly what it
#      was before the link came back.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_python_nbd

SIZE=$((128 << 20))
MiB=$((1 << 20))
PEER_ARGS=(--peer-timeout 2000)
PARTITION_SECS=7                # how long the cut lasts after B's promotion

repl_setup
[ "$REPL_NET" = netns ] || skip "cutting the link needs network namespaces (root and iproute2)"

connects() { grep -c 'connected to peer node' "${NODE_LOG[$1]}" || true; }

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
node_wait_peer_state A connected
node_wait_peer_state B connected

step "common data: 32 MiB through A, replicated"
random_file "$TEST_DIR/base" $((32 * MiB))
tmo 60 nbdcopy "$TEST_DIR/base" "${NODE_URI[A]}"
BASE_GEN=$(status_field A 'd["generation"]["current"]')

step "cut the link; promote B; different writes on each side"
link_down
wait_not_connected A 15
wait_not_connected B 15
out=$(tmo 30 "$REPVOL" primary --control "${NODE_CTL[B]}" 2>&1) || fail "promoting B with the link cut failed: $out"
assert_eq "$(status_field B 'd["role"]')" primary "B's role"
random_file "$TEST_DIR/xa" $((8 * MiB))     # A: 8-16 MiB
random_file "$TEST_DIR/ya" $((2 * MiB))     # A: 100-102 MiB (only A)
random_file "$TEST_DIR/xb" $((4 * MiB))     # B: 12-16 MiB (inside A's 8-16)
random_file "$TEST_DIR/yb" $((3 * MiB))     # B: 64-67 MiB (only B)
nbd_write "${NODE_URI[A]}" $((8 * MiB)) "$TEST_DIR/xa"
nbd_write "${NODE_URI[A]}" $((100 * MiB)) "$TEST_DIR/ya"
nbd_write "${NODE_URI[B]}" $((12 * MiB)) "$TEST_DIR/xb"
nbd_write "${NODE_URI[B]}" $((64 * MiB)) "$TEST_DIR/yb"
read -r ga ba <<<"$(status_field A 'd["generation"]["current"], d["generation"]["bitmap"]')"
read -r gb bb <<<"$(status_field B 'd["generation"]["current"], d["generation"]["bitmap"]')"
info "A: generation $ga based on $ba; B: generation $gb based on $bb"
[ "$ga" != "$gb" ] || fail "A and B are at the same generation after writing apart"
assert_eq "$ba" "$BASE_GEN" "A's base generation"
assert_eq "$bb" "$BASE_GEN" "B's base generation"
step "the partition lasts $PARTITION_SECS s: both primaries keep serving"
for ((t = 0; t < PARTITION_SECS; t++)); do
    sleep 1
    for n in A B; do
        node_alive "$n" || { tail -20 "${NODE_LOG[$n]}" >&2; fail "node $n died during the partition"; }
    done
done
for n in A B; do
    tmo 10 nbdinfo --size "${NODE_URI[$n]}" >/dev/null || fail "node $n's export stopped answering during the partition"
done
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/a.split"
cp --sparse=always "$TEST_DIR/b.img" "$TEST_DIR/b.split"
SHA_A=$(data_sha "$TEST_DIR/a.img" "$SIZE")
SHA_B=$(data_sha "$TEST_DIR/b.img" "$SIZE")
[ "$SHA_A" != "$SHA_B" ] || fail "the two sides' data regions are equal: nothing to split"
CA=$(connects A)
CB=$(connects B)

step "restore the link: both refuse, split brain on both"
link_up
node_wait_peer_state A split-brain 30
node_wait_peer_state B split-brain 15
for n in A B; do
    r=$(status_field "$n" 'd["peer"]["last_refusal"]')
    info "node $n: last_refusal: $r"
    case $r in *"SPLIT BRAIN"*) ;; *) fail "node $n: last_refusal does not say SPLIT BRAIN: '$r'" ;; esac
    "$REPVOL" status --control "${NODE_CTL[$n]}" | grep -q 'SPLIT BRAIN' ||
        fail "node $n: the text status does not say SPLIT BRAIN"
    assert_eq "$(status_field "$n" 'd["role"]')" primary "node $n's role during the split brain"
done
# It stays that way: neither side dials again on its own.
sleep 3
for n in A B; do
    assert_eq "$(node_peer_state "$n")" split-brain "node $n's peer state 3 s later"
done
assert_eq "$(connects A)" "$CA" "connections made by A after the split brain was found"
assert_eq "$(connects B)" "$CB" "connections made by B after the split brain was found"
assert_eq "$(data_sha "$TEST_DIR/a.img" "$SIZE")" "$SHA_A" "A's data region after the refusal"
assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$SHA_B" "B's data region after the refusal"

step "recovery: discard B's changes"
expect_fail "$REPVOL" connect --discard-my-data --control "${NODE_CTL[B]}"
grep -q 'primary' "$TEST_DIR/expect_fail.err" ||
    { cat "$TEST_DIR/expect_fail.err" >&2; fail "refusing --discard-my-data on a primary: the message does not say why"; }
info "discard on a primary refused: $(cat "$TEST_DIR/expect_fail.err")"
assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$SHA_B" "B's data region after the refused discard"
out=$(tmo 30 "$REPVOL" secondary --force --control "${NODE_CTL[B]}" 2>&1) || fail "repvol secondary --force on B: $out"
assert_eq "$(status_field B 'd["role"]')" secondary "B's role after demotion"
out=$(tmo 30 "$REPVOL" connect --discard-my-data --control "${NODE_CTL[B]}" 2>&1) ||
    fail "repvol connect --discard-my-data on B: $out"
info "connect --discard-my-data: $out"
for ((i = 0; ; i++)); do
    read -r aps ass aleft <<<"$(status_field A 'd["peer"]["state"], d["peer"]["sync"]["state"], d["peer"]["sync"]["bytes_left"]')"
    read -r bps bds bgen <<<"$(status_field B 'd["peer"]["state"], d["disk_state"], d["generation"]["current"]')"
    [ "$aps" = connected ] && [ "$ass" = none ] && [ "$aleft" = 0 ] && [ "$bps" = connected ] &&
        [ "$bds" = UpToDate ] && [ "$bgen" = "$ga" ] && break
    [ "$i" -lt $(($(tscale 30) * 5)) ] ||
        fail "recovery not finished within $(tscale 30) s: A: $aps/$ass/$aleft left; B: $bps/$bds at $bgen"
    sleep 0.2
done
grep -q 'resolved by discard-my-data' "${NODE_LOG[A]}" || fail "A did not log the discard-my-data resolution"
assert_eq "$(status_field A 'd["role"]')" primary "A's role after the recovery"
assert_eq "$(data_sha "$TEST_DIR/a.img" "$SIZE")" "$SHA_A" "the survivor A's data region after the recovery"

step "replication works again"
random_file "$TEST_DIR/after" $((1 * MiB))
nbd_write "${NODE_URI[A]}" $((120 * MiB)) "$TEST_DIR/after"
node_stop A
node_stop B

step "compare: B holds A's data"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "B's data region differs from the survivor A's"
dd if="$TEST_DIR/after" of="$TEST_DIR/a.split" bs=1M seek=120 conv=notrunc status=none
assert_bytes_equal "$TEST_DIR/a.split" "$TEST_DIR/b.img" "$SIZE" "B is not A's split-brain data plus the write made after recovery"
cmp -s -n "$SIZE" "$TEST_DIR/b.split" "$TEST_DIR/b.img" && fail "B's image still holds its own split-brain data"
echo "PASS: $TEST_NAME"
