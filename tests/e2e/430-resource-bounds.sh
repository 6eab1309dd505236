#!/usr/bin/env bash
# Clients that hold resources without making progress (tests/helpers/nbd-hog.py).
# The daemon runs with --max-connections 64 --handshake-timeout 3
# --send-timeout 8 and the default 64M buffer budget.
#   1. 200 idle connections (never a byte): 64 take every place and are
#      closed by the handshake timeout (3 s); the other 136 are refused at
#      once (closed, a log line naming --max-connections).  A good client
#      meanwhile is refused promptly (no hang); once the idle ones are gone
#      it is served.
#   2. Two clients pipeline 1 MiB READs and two pipeline 1 MiB WRITEs, and
#      none reads a reply.  While they sit there a good client writes 16 MiB,
#      reads it back and compares, well before the send timeout (a READ hog
#      holds at most a quarter of the buffer pool; a WRITE's buffer is
#      released when the write is done).  After --send-timeout the READ
#      hogs are closed by the daemon (the WRITE hogs' small replies fit in
#      their socket buffers: nothing stalls, nothing is held).
#   3. Bounds: repvold's VmHWM stays below the stated bound (RSS at start +
#      32 MiB: the pool is preallocated and locked at start, each connection
#      adds a fixed ~200 KiB: 128 KiB receive buffer plus its slots, and
#      64 connections at most); its fd count returns to the baseline once
#      the clients are gone; it still serves and exits 0 on SIGTERM.
. "$(dirname "$0")/functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_cmd cmp diffutils
HOG="python3 $abs_top_srcdir/tests/helpers/nbd-hog.py"

SIZE=$((128 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
HS_TMO=3
SEND_TMO=8
create_volume "$IMG" "$SIZE" >/dev/null
start_repvold "$IMG" "$SOCK" --max-connections 64 --handshake-timeout "$HS_TMO" --send-timeout "$SEND_TMO"
PID=$REPVOLD_PID

vm() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }       # kB
nfds() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
RSS0=$(vm VmRSS)
FD0=$(nfds)
BOUND_KB=$((RSS0 + 32 * 1024))
if nm -D "$REPVOLD" 2>/dev/null | grep -q __asan_init; then
    BOUND_KB=$((RSS0 + 64 * 1024))    # ASan: shadow memory and quarantine
fi
info "baseline: VmRSS $((RSS0 / 1024)) MiB, $FD0 fds; bound on VmHWM: $((BOUND_KB / 1024)) MiB"
MAX_RSS=$RSS0
sample() { local r; r=$(vm VmRSS); [ "$r" -le "$MAX_RSS" ] || MAX_RSS=$r; }

# wait_fds_baseline SECS: the daemon's fd count is back to FD0.
wait_fds_baseline() {
    local i n
    for ((i = 0; i < $(tscale "$1") * 10; i++)); do
        n=$(nfds)
        [ "$n" -le "$FD0" ] && return 0
        sleep 0.1
    done
    ls -l "/proc/$PID/fd" >&2
    fail "repvold has $n fds, $FD0 at start"
}

# good_client OFF SECS: write 16 MiB at OFF (1 MiB requests), read it back,
# compare, each part within SECS.
random_file "$TEST_DIR/good" $((16 << 20))
good_client() {
    local off=$1 secs=$2 t0=$SECONDS
    tmo "$secs" "$PYTHON_NBD" - "$REPVOLD_URI" "$off" "$TEST_DIR/good" <<'PY' || return 1
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1]); off = int(sys.argv[2])
data = open(sys.argv[3], "rb").read()
for i in range(0, len(data), 1 << 20):
    h.pwrite(data[i:i + (1 << 20)], off + i)
h.flush(); h.shutdown()
PY
    tmo "$secs" "$PYTHON_NBD" - "$REPVOLD_URI" "$off" "$TEST_DIR/back" <<'PY' || return 1
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1]); off = int(sys.argv[2])
with open(sys.argv[3], "wb") as f:
    for i in range(16):
        f.write(h.pread(1 << 20, off + (i << 20)))
h.shutdown()
PY
    cmp "$TEST_DIR/good" "$TEST_DIR/back" || return 1
    GOOD_SECS=$((SECONDS - t0))
}
require_python_nbd

# ------------------------------------------------------------------ 1
step "1: 200 idle connections (64 places, --handshake-timeout $HS_TMO)"
$HOG --unix "$SOCK" idle --count 200 --hold $((HS_TMO + 5)) >"$TEST_DIR/idle.out" 2>&1 &
HOGPID=$!
track_pid "$HOGPID"
sleep 1
sample
info "with the idle connections: $(nfds) fds, VmRSS $(($(vm VmRSS) / 1024)) MiB"
t0=$SECONDS
rc=0
timeout 10 nbdinfo --size "$REPVOLD_URI" >/dev/null 2>"$TEST_DIR/refused.err" || rc=$?
[ "$rc" -ne 0 ] || fail "a 65th client was served while 64 idle connections held every place"
[ "$rc" -ne 124 ] || fail "a refused client hung instead of being told at once"
info "65th client refused in $((SECONDS - t0)) s: $(head -c 200 "$TEST_DIR/refused.err" | tr '\n' ' ')"
grep -q 'refusing .*--max-connections' "$REPVOLD_LOG" || fail "no log line says why clients are refused"
wait_bounded "$HOGPID" $((HS_TMO + 15)) || fail "nbd-hog (idle) failed"
grep '^SUMMARY' "$TEST_DIR/idle.out" | sed 's/^/    /'
python3 - "$TEST_DIR/idle.out" "$HS_TMO" <<'PY' || { cat "$TEST_DIR/idle.out" >&2; fail "idle connections not bounded as expected"; }
import re, sys
tmo = float(sys.argv[2])
closed = [float(m.group(1)) for m in re.finditer(r"closed by the server after ([0-9.]+) s", open(sys.argv[1]).read())]
still = open(sys.argv[1]).read().count("still open")
refused = sum(1 for t in closed if t < 1.5)
timed_out = sum(1 for t in closed if tmo - 0.5 <= t <= tmo + 2.5)
print("    %d refused at once, %d closed by the handshake timeout, %d still open" % (refused, timed_out, still))
assert still == 0, "connections left open"
assert refused == 136 and timed_out == 64, (refused, timed_out)
PY
grep -q 'option phase not finished within 3000 ms (--handshake-timeout)' "$REPVOLD_LOG" ||
    fail "the log does not say why idle connections were closed"
nbdline=$("$REPVOL" status --control "$REPVOLD_CTL" | grep '^nbd:' || true)
info "status: $nbdline"
[[ $nbdline == *"137 refused (--max-connections 64), 64 closed by --handshake-timeout"* ]] ||
    fail "repvol status does not count the refused and timed-out connections"
wait_fds_baseline 10
good_client $((64 << 20)) 30 || fail "good client not served after the idle connections"
info "good client served after the idle connections ($GOOD_SECS s); fds back to $FD0"

# ------------------------------------------------------------------ 2
step "2: clients that never read their replies (2 x READ, 2 x WRITE, 1 MiB x 128)"
for m in read read write write; do
    $HOG --unix "$SOCK" "$m" --requests 128 --size $((1 << 20)) --hold $((SEND_TMO + 10)) \
        >"$TEST_DIR/hog-$m-$RANDOM.out" 2>&1 &
    track_pid $!
    HOGS+=" $!"
done
sleep 2
sample
inflight=$("$REPVOL" status --json --control "$REPVOLD_CTL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inflight"])')
info "hogs connected: $(nfds) fds, VmRSS $(($(vm VmRSS) / 1024)) MiB, $inflight requests unanswered"
[ "$inflight" -gt 0 ] || fail "the hogs have no unanswered requests: the test does not test anything"
t_hogs=$SECONDS
good_client $((80 << 20)) $((SEND_TMO - 3)) ||
    fail "a good client was not served within $((SEND_TMO - 3)) s while clients sat on their replies"
sample
info "good client wrote, read back and compared 16 MiB in $GOOD_SECS s beside the hogs"
grep -q 'read none of its replies' "$REPVOLD_LOG" &&
    [ $((SECONDS - t_hogs)) -lt "$SEND_TMO" ] && fail "hogs were dropped before the good client ran: no test"
for p in $HOGS; do wait_bounded "$p" $((SEND_TMO + 20)) || fail "nbd-hog did not finish"; done
cat "$TEST_DIR"/hog-*.out | grep '^SUMMARY' | sed 's/^/    /'
n=$(cat "$TEST_DIR"/hog-read-*.out | grep -c 'closed by the server after' || true)
[ "$n" -eq 2 ] || { cat "$TEST_DIR"/hog-*.out >&2; fail "$n of 2 non-reading READ clients closed by the daemon"; }
# The WRITE hogs' 16-byte replies fit in their socket buffers: the daemon
# answered all 128 and holds nothing for them (no buffer, no slot).
n=$(cat "$TEST_DIR"/hog-write-*.out | grep -c 'sent 128 requests' || true)
[ "$n" -eq 2 ] || { cat "$TEST_DIR"/hog-*.out >&2; fail "the WRITE hogs could not send all their requests"; }
n=$(grep -c "read none of its replies for $((SEND_TMO * 1000)) ms" "$REPVOLD_LOG" || true)
[ "$n" -ge 2 ] || fail "the log does not show the send timeout closing the READ hogs ($n)"
nbdline=$("$REPVOL" status --control "$REPVOLD_CTL" | grep '^nbd:' || true)
info "status: $nbdline"
[[ $nbdline == *"by --send-timeout"* && $nbdline != *" 0 by --send-timeout"* ]] ||
    fail "repvol status does not count the send timeouts"
wait_fds_baseline 10

# ------------------------------------------------------------------ 3
step "3: bounds"
sample
HWM=$(vm VmHWM)
info "VmRSS max sampled $((MAX_RSS / 1024)) MiB, VmHWM $((HWM / 1024)) MiB (start $((RSS0 / 1024)) MiB, bound $((BOUND_KB / 1024)) MiB); fds $(nfds) (start $FD0)"
[ "$HWM" -le "$BOUND_KB" ] || fail "VmHWM $HWM kB above the bound $BOUND_KB kB"
good_client $((96 << 20)) 30 || fail "good client not served at the end"
repvold_alive || fail "repvold died"
stop_repvold
cmp -n $((16 << 20)) "$TEST_DIR/good" "$IMG" --ignore-initial=0:$((96 << 20)) || fail "image lacks the last good write"
