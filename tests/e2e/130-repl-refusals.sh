#!/usr/bin/env bash
# Two real daemons that must not replicate refuse each other, clearly: for
# each mismatch the reason is named in both nodes' logs, `repvol status
# --json` shows the peer link "refused" (with the reason in last_refusal),
# neither data region changes, and both daemons still stop cleanly.
#   (a) different volumes (separately created)          UUID
#   (b) same uuid, other size (repvol create --uuid)    SIZE
#   (c) both started as primary                         BOTH_PRIMARY
#   (d) a peer speaking another frame / protocol
#       version (tests/helpers/repl-bad-peer vs B)      VERSION
#   (e) same node id on both                            NODE_ID
#   (f) different replication modes (--protocol)        MODE
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd python3 python3
REPL_BAD_PEER=$abs_top_builddir/tests/helpers/repl-bad-peer
[ -x "$REPL_BAD_PEER" ] || fail "$REPL_BAD_PEER not built (make check builds it)"

SIZE=$((32 << 20))
repl_setup

info_field() { "$REPVOL" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
img_sha() { data_sha "$1" "$(info_field "$1" data_size)"; }
last_refusal() {
    node_status_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer"]["last_refusal"])'
}

# wait_log LOG REGEX [SECS]: until LOG has a line matching REGEX (bounded).
wait_log() {
    local log=$1 re=$2 secs=${3:-15} i
    for ((i = 0; i < $(tscale "$secs") * 10; i++)); do
        grep -qE -- "$re" "$log" && return 0
        sleep 0.1
    done
    return 1
}

# expect_refused N REASON: node N logged a refusal naming REASON (given or
# received), shows state "refused" and the reason in last_refusal.
expect_refused() {
    local n=$1 reason=$2 line
    wait_log "${NODE_LOG[$n]}" "(refusing peer|refused by peer) .*: $reason: " ||
        fail "node $n: no refusal naming $reason in its log"
    line=$(grep -E "(refusing peer|refused by peer) .*: $reason: " "${NODE_LOG[$n]}" | head -n 1)
    info "node $n: ${line#* }"
    node_wait_peer_state "$n" refused
    case $(last_refusal "$n") in
    "$reason: "*) ;;
    *) fail "node $n: last_refusal is '$(last_refusal "$n")', expected it to start with '$reason: '" ;;
    esac
    node_alive "$n" || fail "node $n died"
}

# pair_case NAME REASON IMG_A ROLE_A IMG_B ROLE_B [A_ARGS...] [-- B_ARGS...]
pair_case() {
    local name=$1 reason=$2 a=$3 arole=$4 b=$5 brole=$6
    shift 6
    local -a aargs=() bargs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do aargs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    bargs=("$@")
    step "$name: expect $reason on both nodes"
    local sa sb
    sa=$(img_sha "$a")
    sb=$(img_sha "$b")
    node_start B "$b" "$brole" "${bargs[@]}"
    node_start A "$a" "$arole" "${aargs[@]}"
    expect_refused A "$reason"
    expect_refused B "$reason"
    if grep -q 'connected to peer' "${NODE_LOG[A]}" "${NODE_LOG[B]}"; then
        fail "$name: the nodes connected although they must refuse each other"
    fi
    node_stop A
    node_stop B
    assert_eq "$(img_sha "$a")" "$sa" "$name: A's data region changed"
    assert_eq "$(img_sha "$b")" "$sb" "$name: B's data region changed"
}

# Images with some data, so "unchanged" means something.
random_file "$TEST_DIR/seed" $((1 << 20))
new_volume() {
    create_volume "$1" "$2" "${@:3}" >/dev/null
    dd if="$TEST_DIR/seed" of="$1" bs=1M count=1 seek=1 conv=notrunc status=none
}

new_volume "$TEST_DIR/a.img" "$SIZE"
UUID=$(info_field "$TEST_DIR/a.img" uuid)
GEN=$(info_field "$TEST_DIR/a.img" current_gen)

# (a) different volumes
new_volume "$TEST_DIR/other.img" "$SIZE"
pair_case "(a) different uuid" UUID "$TEST_DIR/a.img" primary "$TEST_DIR/other.img" secondary

# (b) same uuid, twice the size
create_volume "$TEST_DIR/big.img" $((2 * SIZE)) --uuid "$UUID" >/dev/null
pair_case "(b) different size" SIZE "$TEST_DIR/a.img" primary "$TEST_DIR/big.img" secondary

# (c) both primary, otherwise a perfect pair
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
pair_case "(c) both primary" BOTH_PRIMARY "$TEST_DIR/a.img" primary "$TEST_DIR/b.img" primary

# (d) wrong frame version / protocol version, against B
step "(d) a peer with another frame version, then another protocol version: VERSION"
sb=$(img_sha "$TEST_DIR/b.img")
node_start B "$TEST_DIR/b.img" secondary
ns=()
[ "$REPL_NET" = netns ] && ns=(ip netns exec "${NODE_NS[A]}")
for sc in hello-wrong-version hello-proto-2; do
    rc=0
    tmo 30 "${ns[@]}" "$REPL_BAD_PEER" --connect "${NODE_ADDR[B]}:${REPL_PORT[B]}" --uuid "$UUID" --size "$SIZE" \
        --gen "$GEN" --node-id 1 --expect refuse:VERSION "$sc" >"$TEST_DIR/$sc.out" 2>&1 || rc=$?
    sed 's/^/    /' "$TEST_DIR/$sc.out"
    [ "$rc" -eq 0 ] || fail "$sc: B did not refuse with VERSION"
done
wait_log "${NODE_LOG[B]}" "refusing peer .*: VERSION: .*frame version 2" || fail "B's log: no VERSION refusal for frame version 2"
wait_log "${NODE_LOG[B]}" "refusing peer .*: VERSION: .*2\.\.2" || fail "B's log: no VERSION refusal for protocol 2..2"
expect_refused B VERSION
node_stop B
assert_eq "$(img_sha "$TEST_DIR/b.img")" "$sb" "(d): B's data region changed"

# (e) same node id: B also claims node 1
pair_case "(e) same node id" NODE_ID "$TEST_DIR/a.img" primary "$TEST_DIR/b.img" secondary -- --node-id 1

# (f) A in mode B, B in mode C
pair_case "(f) different modes" MODE "$TEST_DIR/a.img" primary "$TEST_DIR/b.img" secondary --protocol B

step "after all that, A and B still pair up and replicate"
node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary
node_wait_peer_state A connected
node_wait_peer_state B connected
tmo 30 nbdcopy "$TEST_DIR/seed" "${NODE_URI[A]}" || fail "nbdcopy through A"
node_stop A
node_stop B
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "A and B differ after replicating"
assert_bytes_equal "$TEST_DIR/seed" "$TEST_DIR/b.img" $((1 << 20)) "B lacks the replicated write"
echo "PASS: $TEST_NAME"
