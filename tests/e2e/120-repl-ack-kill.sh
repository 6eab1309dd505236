#!/usr/bin/env bash
# Every acknowledged write is on both nodes (protocol C): ack-checker writes
# self-describing 4 KiB blocks through primary A, many in flight, and logs a
# block only once A has acknowledged it; after a random delay A is killed
# with SIGKILL; secondary B is stopped cleanly; every logged block must be in
# B's image, byte for byte (and in A's: the page cache survives a process
# kill).  Three rounds with fresh images and different delays.
#
# The last round runs over a rate-limited link (netns mode, tc tbf), so A
# dies with the link full: frames half sent, the secondary in the middle of a
# WRITE's payload.
#
#   ACK_KILL_ROUNDS=N   rounds (default 3)
#   ACK_KILL_TC=QDISC   the last round's qdisc on A's end of the veth
#                       (default "tbf rate 20mbit burst 64kb latency 500ms";
#                       "none": no slow round).  With a slow link and
#                       REPVOLD_EXTRA_ARGS="--protocol A" this test is expected
#                       to fail (mode A acks writes only queued for the peer).
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"

SIZE=$((384 << 20))
ROUNDS=${ACK_KILL_ROUNDS:-3}
repl_setup
SLOW_QDISC=()
if [ "${ACK_KILL_TC:-}" != none ] && [ "$REPL_NET" = netns ] && command -v tc >/dev/null; then
    read -r -a SLOW_QDISC <<<"${ACK_KILL_TC:-tbf rate 20mbit burst 64kb latency 500ms}"
fi

# Random kill delays of 0.3-2 s, one from each of ROUNDS equal slices of that
# range (so they differ), in random order.
DELAYS=()
for ((r = 0; r < ROUNDS; r++)); do
    lo=$((300 + r * 1700 / ROUNDS))
    hi=$((300 + (r + 1) * 1700 / ROUNDS - 1))
    DELAYS+=($((lo + RANDOM % (hi - lo + 1))))
done
mapfile -t DELAYS < <(printf '%s\n' "${DELAYS[@]}" | shuf)
info "kill delays (ms): ${DELAYS[*]}"

verify() {
    local log=$1 img=$2 out=$3 rc=0
    tmo 60 "$ACK_CHECKER" verify --log "$log" --image "$img" >"$out" 2>&1 || rc=$?
    sed 's/^/    /' "$out"
    return "$rc"
}

for ((round = 1; round <= ROUNDS; round++)); do
    D=$TEST_DIR/round$round
    mkdir "$D"
    delay_ms=${DELAYS[round - 1]}
    link="veth"
    if [ "$round" -eq "$ROUNDS" ] && [ ${#SLOW_QDISC[@]} -gt 0 ]; then
        if tc -n "${NODE_NS[A]}" qdisc add dev "rv$$va" root "${SLOW_QDISC[@]}"; then
            link="veth with ${SLOW_QDISC[*]}"
        else
            info "tc qdisc ${SLOW_QDISC[*]} not available here: a plain link this round too"
        fi
    fi
    step "round $round: fresh pair over $link, ack-checker through A, SIGKILL A after $delay_ms ms"
    # Both images fully allocated (same uuid and generation, so "in sync"):
    # the writes land in place instead of allocating thousands of scattered
    # 4 KiB extents, which a file system mounted with 'discard' takes many
    # seconds to free again.
    create_volume "$D/new.img" "$SIZE" >/dev/null
    cp --sparse=never "$D/new.img" "$D/a.img"
    cp --sparse=never "$D/new.img" "$D/b.img"
    rm -f "$D/new.img"
    node_start B "$D/b.img" secondary
    node_start A "$D/a.img" primary
    node_wait_peer_state A connected
    node_wait_peer_state B connected
    for ((i = 0; i < $(tscale 10) * 10; i++)); do
        timeout 5 nbdinfo --size "${NODE_URI[A]}" >/dev/null 2>&1 && break
        sleep 0.1
    done

    # The region is the whole volume: at the rates seen here the checker
    # can't use it up within 2 s, so A always dies with writes in flight.
    "$ACK_CHECKER" write --uri "${NODE_URI[A]}" --log "$D/ack.log" --region-mb $((SIZE >> 20)) \
        --depth $((16 << (round % 3))) --seconds 60 --seed "$RANDOM" >"$D/checker.out" 2>&1 &
    CHECKER=$!
    track_pid "$CHECKER"
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    pid_alive "$CHECKER" || { cat "$D/checker.out" >&2; fail "ack-checker ended before A was killed"; }
    node_alive A || fail "node A died before it was killed"
    node_kill A
    rc=0
    wait_bounded "$CHECKER" 30 || rc=$?
    sed 's/^/    /' "$D/checker.out"
    [ "$rc" -eq 0 ] || fail "ack-checker write exited with status $rc"
    grep -q 'the connection died' "$D/checker.out" || fail "ack-checker did not see the connection die"
    acked=$(grep -vc '^#' "$D/ack.log" || true)
    summary=$(sed -n 's/.* \([0-9]*\) acknowledged,.*/\1/p' "$D/checker.out")
    assert_eq "$acked" "$summary" "acknowledged writes in the log vs. the checker's summary"
    [ "$acked" -gt 0 ] || fail "no write was acknowledged before the kill"
    info "$acked writes acknowledged before A died"

    node_alive B || fail "node B died when its primary was killed"
    # On the shaped round the FIN waits behind queued data: bounded wait.
    for ((i = 0; i < $(tscale 15) * 10; i++)); do
        grep -q 'lost peer' "${NODE_LOG[B]}" && break
        sleep 0.1
    done
    grep -q 'lost peer' "${NODE_LOG[B]}" || fail "node B did not notice the primary's death"
    node_stop B

    step "round $round: every acknowledged write is in B's image"
    verify "$D/ack.log" "$D/b.img" "$D/verify-b.out" ||
        fail "round $round: acknowledged writes missing on the secondary (see above)"
    grep -q "^$acked acknowledged writes checked, 0 missing/corrupt" "$D/verify-b.out" ||
        fail "round $round: verify did not check all $acked writes"
    step "round $round: ... and in A's image"
    verify "$D/ack.log" "$D/a.img" "$D/verify-a.out" ||
        fail "round $round: acknowledged writes missing on the killed primary (see above)"

    if [ "$round" -eq 1 ]; then
        step "self-check: verify fails against an image without the writes"
        create_volume "$D/empty.img" "$SIZE" >/dev/null
        rc=0
        tmo 60 "$ACK_CHECKER" verify --log "$D/ack.log" --image "$D/empty.img" >"$D/verify-empty.out" 2>&1 || rc=$?
        [ "$rc" -eq 1 ] || { cat "$D/verify-empty.out" >&2; fail "verify against an empty image exited $rc, expected 1"; }
        grep -q "^$acked acknowledged writes checked, $acked missing/corrupt" "$D/verify-empty.out" ||
            { cat "$D/verify-empty.out" >&2; fail "verify against an empty image did not flag every write"; }
        info "verify against an empty image: $(tail -n 1 "$D/verify-empty.out")"
    fi
    rm -f "$D"/*.img
done
echo "PASS: $TEST_NAME"
