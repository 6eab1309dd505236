#!/usr/bin/env bash
# Automatic split-brain policies (repvold --split-brain-policy, the same on
# both nodes).  Each case: a fresh pair in sync with some data; the link is
# cut (for longer than the peer timeout, so both notice); B is promoted;
# each side writes what the case says (or nothing); one node is demoted;
# the link comes back and the primary dials.
#   - Where the policy applies, the side it picks is resynced from the other
#     (using both bitmaps) without anyone typing a command: afterwards both
#     data regions equal the survivor's, which did not change.
#   - Where it must not apply (both wrote, for discard-zero-changes; equal
#     amounts, for discard-least-changes; the side it would pick is a
#     primary; the default policy "disconnect"), both nodes refuse: peer
#     state split-brain on both, for good, and neither data region changes.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd python3 python3
require_python_nbd

SIZE=$((64 << 20))
MiB=$((1 << 20))
PEER_ARGS=(--peer-timeout 1000)

repl_setup
[ "$REPL_NET" = netns ] || skip "cutting the link needs network namespaces (root and iproute2)"

# write_list N "OFF:LEN ..." (MiB): random data at each range through node N.
write_list() {
    local n=$1 r off len
    for r in $2; do
        off=${r%%:*}
        len=${r##*:}
        random_file "$TEST_DIR/w" $((len * MiB))
        nbd_write "${NODE_URI[$n]}" $((off * MiB)) "$TEST_DIR/w"
    done
}

connects() { grep -c 'connected to peer node' "${NODE_LOG[$1]}" || true; }
other() { if [ "$1" = A ]; then echo B; else echo A; fi; }

# sb_case NAME POLICY A_WRITES B_WRITES DEMOTE EXPECT
#   POLICY    --split-brain-policy for both nodes ("" = the default)
#   *_WRITES  "OFF:LEN ..." in MiB written during the split ("" = nothing)
#   DEMOTE    the node made secondary again before the link comes back
#   EXPECT    split: both must refuse; A or B: the survivor, whose data
#             the other node must take automatically
sb_case() {
    local name=$1 policy=$2 aw=$3 bw=$4 demote=$5 expect=$6
    local -a pargs=("${PEER_ARGS[@]}")
    [ -n "$policy" ] && pargs+=(--split-brain-policy "$policy")
    step "$name"
    local t0=$SECONDS
    rm -f "$TEST_DIR/a.img" "$TEST_DIR/b.img"
    create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
    cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
    node_start B "$TEST_DIR/b.img" secondary "${pargs[@]}"
    node_start A "$TEST_DIR/a.img" primary "${pargs[@]}"
    node_wait_peer_state A connected
    node_wait_peer_state B connected
    random_file "$TEST_DIR/base" $((8 * MiB))
    nbd_write "${NODE_URI[A]}" 0 "$TEST_DIR/base"
    local base
    base=$(status_field A 'd["generation"]["current"]')

    local t1=$SECONDS
    link_down
    wait_not_connected A 15
    wait_not_connected B 15
    local out
    out=$(tmo 30 "$REPVOL" primary --control "${NODE_CTL[B]}" 2>&1) || fail "$name: promoting B: $out"
    write_list A "$aw"
    write_list B "$bw"
    # No --force: the writers have disconnected (the daemon may take a
    # moment to see a client's close: retry briefly while it says so).
    local i
    for ((i = 0; ; i++)); do
        out=$(tmo 30 "$REPVOL" secondary --control "${NODE_CTL[$demote]}" 2>&1) && break
        if [[ $out != *"client(s) are connected"* ]] || [ "$i" -ge 20 ]; then
            fail "$name: demoting $demote: $out"
        fi
        sleep 0.1
    done
    assert_eq "$(status_field "$demote" 'd["role"]')" secondary "$name: role of $demote"
    assert_eq "$(status_field "$(other "$demote")" 'd["role"]')" primary "$name: role of $(other "$demote")"
    local n ga gb ba bb da db
    read -r ga ba da <<<"$(status_field A 'd["generation"]["current"], d["generation"]["bitmap"], d["peer"]["sync"]["bytes_left"]')"
    read -r gb bb db <<<"$(status_field B 'd["generation"]["current"], d["generation"]["bitmap"], d["peer"]["sync"]["bytes_left"]')"
    info "split: A at $ga ($da bytes changed), B at $gb ($db bytes changed), both based on $base"
    assert_eq "$ba" "$base" "$name: A's base generation"
    assert_eq "$bb" "$base" "$name: B's base generation"
    [ "$ga" != "$gb" ] || fail "$name: A and B at the same generation after the split"
    for n in A B; do node_alive "$n" || fail "$name: node $n died during the split"; done
    local sha_a sha_b ca cb
    sha_a=$(data_sha "$TEST_DIR/a.img" "$SIZE")
    sha_b=$(data_sha "$TEST_DIR/b.img" "$SIZE")
    cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/a.split"
    cp --sparse=always "$TEST_DIR/b.img" "$TEST_DIR/b.split"
    ca=$(connects A)
    cb=$(connects B)

    local t2=$SECONDS
    link_up
    if [ "$expect" = split ]; then
        node_wait_peer_state A split-brain 30
        node_wait_peer_state B split-brain 15
        sleep 2
        for n in A B; do
            assert_eq "$(node_peer_state "$n")" split-brain "$name: node $n's peer state 2 s later"
            case $(status_field "$n" 'd["peer"]["last_refusal"]') in
            *"SPLIT BRAIN"*) ;;
            *) fail "$name: node $n's last_refusal does not say SPLIT BRAIN" ;;
            esac
        done
        assert_eq "$(connects A)" "$ca" "$name: connections made by A after the split"
        assert_eq "$(connects B)" "$cb" "$name: connections made by B after the split"
        grep -q 'resolved by' "${NODE_LOG[A]}" "${NODE_LOG[B]}" && fail "$name: a node claims the split brain was resolved"
        info "both nodes refuse: split-brain"
    else
        local s=$expect v
        v=$(other "$expect")
        local sgen
        sgen=$(status_field "$s" 'd["generation"]["current"]')
        for ((i = 0; ; i++)); do
            local sps sss sleft vps vds vgen
            read -r sps sss sleft <<<"$(status_field "$s" 'd["peer"]["state"], d["peer"]["sync"]["state"], d["peer"]["sync"]["bytes_left"]')"
            read -r vps vds vgen <<<"$(status_field "$v" 'd["peer"]["state"], d["disk_state"], d["generation"]["current"]')"
            [ "$sps" = connected ] && [ "$sss" = none ] && [ "$sleft" = 0 ] && [ "$vps" = connected ] &&
                [ "$vds" = UpToDate ] && [ "$vgen" = "$sgen" ] && break
            [ "$i" -lt $(($(tscale 30) * 5)) ] ||
                fail "$name: $v did not take $s's data within $(tscale 30) s: $s $sps/$sss/$sleft left; $v $vps/$vds at $vgen"
            sleep 0.2
        done
        grep -q "resolved by policy $policy" "${NODE_LOG[$s]}" || fail "$name: $s did not log the $policy resolution"
        grep -q "resolved by policy $policy" "${NODE_LOG[$v]}" || fail "$name: $v did not log the $policy resolution"
        info "$(grep -o "resolved by policy.*" "${NODE_LOG[$s]}" | tail -n 1)"
    fi
    local t3=$SECONDS
    node_stop A
    node_stop B
    info "timing: setup $((t1 - t0)) s, split $((t2 - t1)) s, after the link came back $((t3 - t2)) s, total $((SECONDS - t0)) s"
    case $expect in
    split)
        assert_eq "$(data_sha "$TEST_DIR/a.img" "$SIZE")" "$sha_a" "$name: A's data region changed"
        assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$sha_b" "$name: B's data region changed"
        ;;
    *)
        local sl vl
        sl=$(tr AB ab <<<"$expect")
        vl=$(tr AB ab <<<"$(other "$expect")")
        assert_bytes_equal "$TEST_DIR/$sl.split" "$TEST_DIR/$sl.img" "$SIZE" "$name: the survivor $expect's data changed"
        assert_bytes_equal "$TEST_DIR/$sl.img" "$TEST_DIR/$vl.img" "$SIZE" "$name: $(other "$expect") does not hold $expect's data"
        ;;
    esac
}

sb_case "default policy (disconnect): B changed nothing, still refused" \
    "" "16:4" "" B split
sb_case "discard-zero-changes: B changed nothing -> B takes A's data" \
    discard-zero-changes "16:4 40:1" "" B A
sb_case "discard-zero-changes: both changed -> refused" \
    discard-zero-changes "16:4" "24:1" B split
sb_case "discard-least-changes: B changed less -> B takes A's data" \
    discard-least-changes "16:4 40:1" "20:1 48:1" B A
sb_case "discard-least-changes: A changed less -> A takes B's data" \
    discard-least-changes "16:1" "20:2 48:2" A B
sb_case "discard-least-changes: equal changes -> refused" \
    discard-least-changes "16:2" "32:2" B split
sb_case "discard-least-changes: the side with fewer changes (B) is primary -> refused" \
    discard-least-changes "16:4" "24:1" A split
echo "PASS: $TEST_NAME"
