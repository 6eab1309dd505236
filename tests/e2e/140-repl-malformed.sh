#!/usr/bin/env bash
# shellcheck disable=SC2119 # stop_repvold takes optional arguments
# A misbehaving replication peer (tests/helpers/repl-bad-peer) against the
# secondary B's replication port, every scenario: B answers as the protocol
# says (a REFUSE with the right reason, or it closes the link), survives,
# and writes nothing (also not past the data: bitmap, superblock); a WRITE
# larger than B's --max-request gets a NACK or a close, not a stall.  Then a third node barging in on a live pair is
# refused BUSY without disturbing the pair, a lone primary refuses a second
# primary (BOTH_PRIMARY), and at the end the real primary A still connects
# and replicates a write: both data regions are exactly what A's client
# wrote.
#
# In netns mode the helper runs in A's namespace (10.77.0.1 -> 10.77.0.2);
# REPL_FORCE_LOOPBACK=1 runs everything on 127.0.0.1.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
REPL_BAD_PEER=$abs_top_builddir/tests/helpers/repl-bad-peer
[ -x "$REPL_BAD_PEER" ] || fail "$REPL_BAD_PEER not built (make check builds it)"

SIZE=$((64 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/pristine.img"
"$REPVOL" info --json "$TEST_DIR/a.img" >"$TEST_DIR/info.json"
read -r UUID GEN < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["uuid"], d["current_gen"])' "$TEST_DIR/info.json")
ZERO_SHA=$(data_sha "$TEST_DIR/a.img" "$SIZE")
repl_setup

# bad_peer NODE OUT SCENARIO [ARGS...]: the helper against NODE's
# replication port (from A's namespace in netns mode), describing this
# volume as node 7; output in OUT.  Returns the helper's status.
bad_peer() {
    local n=$1 out=$2 rc=0
    shift 2
    local -a ns=()
    [ "$REPL_NET" = netns ] && ns=(ip netns exec "${NODE_NS[A]}")
    tmo 30 "${ns[@]}" "$REPL_BAD_PEER" --connect "${NODE_ADDR[$n]}:${REPL_PORT[$n]}" \
        --uuid "$UUID" --size "$SIZE" --gen "$GEN" --node-id 7 "$@" >"$out" 2>&1 || rc=$?
    sed 's/^/    /' "$out"
    return "$rc"
}

json_peer() {
    node_status_json "$1" | python3 -c 'import json,sys; p=json.load(sys.stdin)["peer"]; print(p[sys.argv[1]])' "$2"
}

FAILURES=()
failed() {
    printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2
    FAILURES+=("$*")
}

# scenario -> the reason B must log ("" = it just closes the link)
declare -A REASON=(
    [hello-wrong-version]=VERSION [hello-proto-2]=VERSION [hello-wrong-uuid]=UUID
    [hello-wrong-size]=SIZE [hello-secondary]=NO_PRIMARY [hello-short-body]=PROTOCOL
    [truncated-header]='' [length-past-bound]='' [unknown-type]=PROTOCOL
    [unknown-type-after-hello]='' [write-past-end]='' [trim-past-end]='' [truncated-write]=''
    [garbage]=PROTOCOL
    [write-before-hello]=PROTOCOL
)
SCENARIOS="hello-wrong-version hello-proto-2 hello-wrong-uuid hello-wrong-size hello-secondary
hello-short-body truncated-header length-past-bound unknown-type unknown-type-after-hello
write-past-end trim-past-end truncated-write garbage write-before-hello"

node_start B "$TEST_DIR/b.img" secondary
for sc in $SCENARIOS; do
    step "bad peer -> secondary B: $sc"
    lines_before=$(wc -l <"${NODE_LOG[B]}")
    rc=0
    bad_peer B "$TEST_DIR/$sc.out" "$sc" || rc=$?
    [ "$rc" -eq 0 ] || failed "$sc: B's reaction was not the expected one (repl-bad-peer exit $rc)"
    # Give B a moment to finish tearing the connection down, then it must
    # still answer on its control socket.
    sleep 0.2
    if ! node_status_json B >/dev/null 2>&1 || ! node_alive B; then
        failed "DAEMON BUG: secondary B died after the bad peer's '$sc' (log ${NODE_LOG[B]})"
        tail -n 40 "${NODE_LOG[B]}" | sed 's/^/    | /' >&2
        node_kill B
        node_start B "$TEST_DIR/b.img" secondary     # go on with the other scenarios
        continue
    fi
    r=${REASON[$sc]}
    if [ -n "$r" ]; then
        tail -n +"$((lines_before + 1))" "${NODE_LOG[B]}" | grep -E "refusing peer .*: $r: " |
            sed 's/^/    B: /' | grep . >/dev/null ||
            failed "$sc: B's log has no refusal naming $r"
        grep -q "REFUSE $r " "$TEST_DIR/$sc.out" || failed "$sc: the bad peer did not get a REFUSE $r"
    fi
    check_log_clean "${NODE_LOG[B]}"
done
grep -E 'refusing peer|lost peer|closed:' "${NODE_LOG[B]}" | sed 's/^/    B: /' | tail -n 20

step "bad peer -> B with --max-request 1M: write-oversized (a legal 2 MiB WRITE B can't take)"
node_stop B
node_start B "$TEST_DIR/b.img" secondary --max-request 1M
rc=0
bad_peer B "$TEST_DIR/write-oversized.out" write-oversized || rc=$?
[ "$rc" -eq 0 ] || failed "DAEMON BUG: a WRITE above the secondary's --max-request got neither a NACK nor a close within 5 s (the link stalls until --peer-timeout)"
sleep 0.2
if node_alive B; then
    node_stop B
else
    failed "DAEMON BUG: secondary B died after write-oversized"
    node_kill B
fi
node_start B "$TEST_DIR/b.img" secondary

step "B's data region is untouched"
assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$ZERO_SHA" "B's data region after the bad peers"

step "the real primary A connects"
node_start A "$TEST_DIR/a.img" primary
node_wait_peer_state A connected
node_wait_peer_state B connected

step "a third node barging in on the live pair is refused BUSY by both"
bad_peer B "$TEST_DIR/busy-b.out" hello-both-primary --expect refuse:BUSY ||
    failed "B did not refuse a second connection with BUSY"
bad_peer A "$TEST_DIR/busy-a.out" hello-both-primary --expect refuse:BUSY ||
    failed "A did not refuse a second connection with BUSY"
bad_peer B "$TEST_DIR/busy-b2.out" truncated-write --expect refuse:BUSY ||
    failed "B did not refuse a second connection with BUSY (truncated-write)"
sleep 0.2
node_alive A || failed "DAEMON BUG: A died after a refused third node"
node_alive B || failed "DAEMON BUG: B died after a refused third node"
assert_eq "$(node_peer_state A)" connected "A's link after the third node"
assert_eq "$(json_peer A connects)/$(json_peer A disconnects)" 1/0 "A's connects/disconnects"

step "a lone primary refuses a second primary (BOTH_PRIMARY)"
P=$(free_tcp_port)
start_repvold "$TEST_DIR/pristine.img" "$TEST_DIR/c.sock" --repl-listen "127.0.0.1:$P" --node-id 3 \
    --role primary --no-mlock
tmo 30 "$REPL_BAD_PEER" --connect "127.0.0.1:$P" --uuid "$UUID" --size "$SIZE" --gen "$GEN" --node-id 7 \
    hello-both-primary >"$TEST_DIR/both.out" 2>&1 || { cat "$TEST_DIR/both.out" >&2; failed "no BOTH_PRIMARY from a primary"; }
sed 's/^/    /' "$TEST_DIR/both.out"
grep -qE 'refusing peer .*: BOTH_PRIMARY: ' "$REPVOLD_LOG" || failed "the primary's log has no BOTH_PRIMARY refusal"
stop_repvold

step "A still replicates: 4 MiB through A"
random_file "$TEST_DIR/src" $((4 << 20))
tmo 60 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}" || fail "nbdcopy through A"
node_status_json A >"$TEST_DIR/status.json"
python3 - "$TEST_DIR/status.json" <<'PY' || failed "A's replication counters"
import json, sys
p = json.load(open(sys.argv[1]))["peer"]
assert p["state"] == "connected", p
assert p["bytes_replicated"] >= 4 << 20, p
assert p["nacks"] == 0, p
PY
node_stop A
node_stop B

step "compare: both data regions are exactly A's client's writes"
cp "$TEST_DIR/src" "$TEST_DIR/expected"
truncate -s "$SIZE" "$TEST_DIR/expected"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ"
assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$(file_sha "$TEST_DIR/expected")" "B's data region"
assert_eq "$(data_sha "$TEST_DIR/pristine.img" "$SIZE")" "$ZERO_SHA" "the lone primary's data region"
"$REPVOL" info --json "$TEST_DIR/b.img" >"$TEST_DIR/info-b.json" || fail "B's superblock no longer reads"
grep -q "\"uuid\": \"$UUID\"" "$TEST_DIR/info-b.json" || fail "B's superblock lost its uuid"

if [ ${#FAILURES[@]} -gt 0 ]; then
    printf '    %s\n' "${FAILURES[@]}" >&2
    fail "${#FAILURES[@]} check(s) failed (listed above)"
fi
echo "PASS: $TEST_NAME"
