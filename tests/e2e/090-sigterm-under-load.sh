#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# SIGTERM (then SIGINT) in the middle of a write load: the daemon exits 0
# within a bounded time, and every write it acknowledged is in the image.
#
# Writers (libnbd, 16 requests in flight each, some FUA, some flushes) write
# 4 KiB blocks that carry (block, sequence, writer) in a header and a
# payload derived from them.  Before a write is submitted "S block seq writer" goes
# to the writer's log; only after the server acknowledged it does
# "A block seq writer sha256" follow.  No two writes to one block are in flight at
# once, so afterwards each block must hold its last acknowledged version or
# a later submitted one; blocks never written must read as zeroes.
. "$(dirname "$0")/functions.sh"

require_python_nbd
require_cmd nbdcopy libnbd-bin
require_binaries

SIZE=$((128 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
PORT=$(free_tcp_port)
TCP_URI=$(nbd_tcp_uri "$PORT")
NWRITERS=3

cat >"$TEST_DIR/blockfmt.py" <<'EOF'
import hashlib, random, struct
BS = 4096
MAGIC = b"RVE2E090"
HDR = struct.Struct("<8sQQI")
def block(blk, seq, wid):
    h = HDR.pack(MAGIC, blk, seq, wid)
    return h + random.Random(blk * 1000003 + seq * 7919 + wid).randbytes(BS - len(h))
def parse(b):
    magic, blk, seq, wid = HDR.unpack_from(b)
    return (blk, seq, wid) if magic == MAGIC else None
def sha(b):
    return hashlib.sha256(b).hexdigest()
EOF

cat >"$TEST_DIR/writer.py" <<'EOF'
# writer.py URI LOG WID NWRITERS NBLOCKS SEQBASE SECONDS
import os, random, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[0]))
import nbd
from blockfmt import BS, block, sha
uri, logpath = sys.argv[1], sys.argv[2]
wid, nw, nblocks, seq, secs = (int(x) for x in sys.argv[3:8])
log = os.open(logpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
mine = [b for b in range(nblocks) if b % nw == wid]
rnd = random.Random(wid + seq)
h = nbd.NBD()
h.connect_uri(uri)
inflight = {}           # cookie -> (blk, seq, data, buffer) ; blk None = flush
busy = set()
acked = errors = 0
t_end = time.monotonic() + secs
reason = "time limit"
def reap():
    global acked, errors
    for c in list(inflight):
        try:
            done = h.aio_command_completed(c)
        except nbd.Error:
            blk, s, data, buf = inflight.pop(c)
            busy.discard(blk)
            errors += 1
            continue
        if done:
            blk, s, data, buf = inflight.pop(c)
            if blk is not None:
                busy.discard(blk)
                os.write(log, b"A %d %d %d %s\n" % (blk, s, wid, sha(data).encode()))
                acked += 1
try:
    n = 0
    while time.monotonic() < t_end and errors == 0:
        if len(inflight) >= 16:
            h.poll(1000)
            reap()
            continue
        blk = rnd.choice(mine)
        if blk in busy:
            continue
        seq += 1
        n += 1
        data = block(blk, seq, wid)
        os.write(log, b"S %d %d %d\n" % (blk, seq, wid))
        buf = nbd.Buffer.from_bytearray(bytearray(data))
        flags = nbd.CMD_FLAG_FUA if n % 5 == 0 else 0
        inflight[h.aio_pwrite(buf, blk * BS, flags=flags)] = (blk, seq, data, buf)
        busy.add(blk)
        if n % 64 == 0:
            inflight[h.aio_flush()] = (None, 0, None, None)
        reap()
    if errors:
        reason = "request error (server shutting down)"
    t_drain = time.monotonic() + 10
    while inflight and time.monotonic() < t_drain:
        h.poll(1000)
        reap()
except nbd.Error as e:
    reason = "connection: %s" % e
try:
    reap()
except nbd.Error:
    pass
print("    writer %d: %d acknowledged, %d failed, %d unanswered; stopped by %s"
      % (wid, acked, errors, len(inflight), reason), flush=True)
EOF

cat >"$TEST_DIR/verify.py" <<'EOF'
# verify.py IMG NBLOCKS LOG...: every acknowledged write is in IMG.
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from blockfmt import BS, block, parse, sha
img, nblocks, logs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
submitted, last_ack, ack_sha = {}, {}, {}
nack = 0
for path in logs:
    for line in open(path):
        f = line.split()
        if not line.endswith("\n") or len(f) < 4:
            continue        # a torn last line
        blk, seq, wid = int(f[1]), int(f[2]), int(f[3])
        if f[0] == "S":
            submitted.setdefault(blk, set()).add((seq, wid))
        elif f[0] == "A" and len(f) == 5:
            nack += 1
            assert (seq, wid) in submitted.get(blk, ()), "ack before submit: %s" % line
            if seq > last_ack.get(blk, (-1,))[0]:
                last_ack[blk] = (seq, wid)
                ack_sha[blk] = f[4]
zero = bytes(BS)
bad = []
with open(img, "rb") as fimg:
    for blk in range(nblocks):
        data = fimg.read(BS)
        subs = submitted.get(blk)
        if not subs:
            if data != zero:
                bad.append("block %d was never written but is not zero" % blk)
            continue
        if data == zero:
            if blk in last_ack:
                bad.append("block %d: acknowledged seq %d lost (block is zero)" % (blk, last_ack[blk][0]))
            continue
        p = parse(data)
        if p is None or p[0] != blk:
            bad.append("block %d: garbage or misplaced header %r" % (blk, p))
            continue
        _, seq, wid = p
        if (seq, wid) not in subs:
            bad.append("block %d holds seq %d, never submitted" % (blk, seq))
        elif data != block(blk, seq, wid):
            bad.append("block %d seq %d: payload torn/corrupt" % (blk, seq))
        elif blk in last_ack and seq < last_ack[blk][0]:
            bad.append("block %d: acknowledged seq %d lost, holds older seq %d" % (blk, last_ack[blk][0], seq))
        elif blk in last_ack and seq == last_ack[blk][0] and sha(data) != ack_sha[blk]:
            bad.append("block %d: sha differs from the acknowledged write" % blk)
for b in bad[:30]:
    print("    BAD:", b)
print("    verified %d blocks, %d acknowledged writes, %d blocks written: %d problems"
      % (nblocks, nack, len(submitted), len(bad)))
sys.exit(1 if bad else 0)
EOF

NBLOCKS=$((SIZE / 4096))
create_volume "$IMG" "$SIZE"
LOGS=()

# load_and_signal ROUND SIGNAL: start writers, signal the daemon mid-load.
load_and_signal() {
    local round=$1 sig=$2 w uri i acks pids=() rc
    start_repvold "$IMG" "$SOCK" --listen "tcp:127.0.0.1:$PORT"
    step "round $round: $NWRITERS writers, 16 writes in flight each"
    for ((w = 0; w < NWRITERS; w++)); do
        if [ "$w" -eq 2 ]; then uri=$TCP_URI; else uri=$REPVOLD_URI; fi
        LOGS+=("$TEST_DIR/log.$round.$w")
        : >"$TEST_DIR/log.$round.$w"
        "$PYTHON_NBD" "$TEST_DIR/writer.py" "$uri" "$TEST_DIR/log.$round.$w" "$w" "$NWRITERS" \
            "$NBLOCKS" $((round * 1000000000)) "$(tscale 40)" &
        pids+=($!)
        track_pid "$!"
    done
    # Wait (bounded) until the load is well under way.
    for ((i = 0; ; i++)); do
        acks=$(cat "$TEST_DIR"/log."$round".* | grep -c '^A ' || true)
        [ "$acks" -ge 3000 ] && break
        [ "$i" -lt $(($(tscale 20) * 10)) ] || fail "only $acks writes acknowledged after $(tscale 20) s"
        sleep 0.1
    done
    sleep 1
    for w in "${pids[@]}"; do
        pid_alive "$w" || fail "a writer finished before the signal: the load was not running"
    done
    acks=$(cat "$TEST_DIR"/log."$round".* | grep -c '^A ' || true)
    step "round $round: SIG$sig with $acks writes acknowledged so far"
    stop_repvold "$sig" 15
    for w in "${pids[@]}"; do
        rc=0
        wait_bounded "$w" 20 || rc=$?
        [ "$rc" -eq 0 ] || fail "writer exited with status $rc (did the daemon hang up badly?)"
    done
    step "round $round: every acknowledged write is in the image"
    tmo 60 "$PYTHON_NBD" "$TEST_DIR/verify.py" "$IMG" "$NBLOCKS" "${LOGS[@]}" ||
        fail "acknowledged writes missing or corrupt after SIG$sig"
}

load_and_signal 1 TERM
load_and_signal 2 INT

step "the image restarts cleanly and serves what is in the file"
start_repvold "$IMG" "$SOCK"
rm -f "$TEST_DIR/out.raw"
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/out.raw" || fail "nbdcopy out"
stop_repvold
assert_bytes_equal "$TEST_DIR/out.raw" "$IMG" "$SIZE" "served data vs image data region"
