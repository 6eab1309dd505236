#!/usr/bin/env bash
# A peer that stops reading (mode C), twice over.
# The secondary B is frozen with SIGSTOP while a client writes through the
# primary A: B's kernel keeps the TCP connection up and its receive window
# fills, so A's sends to it stall, and B answers nothing.  Each time:
#   - A declares the peer dead within --peer-timeout (2000 ms) plus slack and
#     goes on acknowledging writes (recorded in its bitmap): the client sees
#     no failed write;
#   - after SIGCONT, B reconnects and is resynced.
# Bounds on A: VmHWM stays below its RSS at start + 32 MiB (the request
# buffer pool is preallocated at start; a stalled peer ties up at most the
# requests in flight, bounded by the client's queue depth, plus the socket
# buffers), and after each reconnect A's fd count is what it was at the
# start (no fd leaked per dropped link).  At the end both images are
# identical and every acknowledged write is in both.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd python3 python3
require_cmd cmp diffutils
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"

SIZE=$((64 << 20))
CYCLES=2
create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary --peer-timeout 2000
node_start A "$TEST_DIR/a.img" primary --peer-timeout 2000
node_wait_peer_state A connected
node_wait_peer_state B connected
PID=${NODE_PID[A]}
vm() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
nfds() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
RSS0=$(vm VmRSS)
FD0=$(nfds)
BOUND_KB=$((RSS0 + 32 * 1024))
if nm -D "$REPVOLD" 2>/dev/null | grep -q __asan_init; then BOUND_KB=$((RSS0 + 64 * 1024)); fi
info "A at start: VmRSS $((RSS0 / 1024)) MiB, $FD0 fds; bound on VmHWM $((BOUND_KB / 1024)) MiB"

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    step "cycle $cycle/$CYCLES: B stops reading while a client writes through A"
    runs0=$(status_field A 'd["peer"]["sync"]["runs"]')
    lost0=$(grep -c 'lost peer' "${NODE_LOG[A]}" || true)
    "$ACK_CHECKER" write --uri "${NODE_URI[A]}" --log "$TEST_DIR/ack.log" --region-mb 48 --depth 16 \
        --rate 1500 --seconds 7 --seed "$RANDOM" >"$TEST_DIR/checker.$cycle.out" 2>&1 &
    CHECKER=$!
    track_pid "$CHECKER"
    sleep 1
    kill -STOP "${NODE_PID[B]}"
    on_exit "kill -CONT ${NODE_PID[B]}"
    t0=$SECONDS
    for ((i = 0; i < $(tscale 6) * 10; i++)); do
        [ "$(grep -c 'lost peer' "${NODE_LOG[A]}" || true)" -gt "$lost0" ] && break
        sleep 0.1
    done
    [ "$(grep -c 'lost peer' "${NODE_LOG[A]}" || true)" -gt "$lost0" ] ||
        fail "A did not give up on a peer that stopped reading within $(tscale 6) s"
    info "A: $(grep 'lost peer' "${NODE_LOG[A]}" | tail -n 1 | sed 's/^[^ ]* //') (after ~$((SECONDS - t0)) s)"
    sleep 1
    info "A while B is frozen: VmRSS $(($(vm VmRSS) / 1024)) MiB, $(nfds) fds, peer $(node_peer_state A)"
    rc=0
    wait_bounded "$CHECKER" 40 || rc=$?
    sed 's/^/    /' "$TEST_DIR/checker.$cycle.out"
    [ "$rc" -eq 0 ] || fail "ack-checker exited with status $rc"
    grep -q ' 0 failed, 0 unanswered; stopped after .*: \(time is up\|region used up\)' "$TEST_DIR/checker.$cycle.out" ||
        fail "writes through A failed or stalled while the peer was frozen"
    kill -CONT "${NODE_PID[B]}"
    wait_resync_done "$runs0" 60
    info "B thawed, reconnected and resynced ($MAX_DONE bytes)"
    n=$(nfds)
    [ "$n" -le "$FD0" ] || { ls -l "/proc/$PID/fd" >&2; fail "A has $n fds after cycle $cycle, $FD0 at start"; }
done

HWM=$(vm VmHWM)
info "A: VmHWM $((HWM / 1024)) MiB (start $((RSS0 / 1024)) MiB, bound $((BOUND_KB / 1024)) MiB); fds $(nfds) (start $FD0)"
[ "$HWM" -le "$BOUND_KB" ] || fail "A's VmHWM $HWM kB is above the bound $BOUND_KB kB"
node_stop A
node_stop B
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images after $CYCLES freeze/thaw cycles"
verify_acked "$TEST_DIR/ack.log" "$TEST_DIR/a.img" "$TEST_DIR/b.img"
