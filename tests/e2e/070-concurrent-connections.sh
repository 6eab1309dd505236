#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# Several clients at once, on unix and tcp listeners at the same time: three
# writers (libnbd, 16 requests in flight each, shuffled chunks, some FUA,
# some WRITE_ZEROES) on disjoint ranges while a fourth connection keeps
# re-reading and checking a fourth range; then two connections write
# disjoint unaligned pieces of the same blocks of that fourth range (a
# read-modify-write must lose neither); then read everything back over
# both listeners at once and from the image file.
. "$(dirname "$0")/functions.sh"

require_cmd nbdcopy libnbd-bin
require_python_nbd
require_binaries

SIZE=$((64 << 20))
RANGE=$((SIZE / 4))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
PORT=$(free_tcp_port)
TCP_URI=$(nbd_tcp_uri "$PORT")

cat >"$TEST_DIR/writer.py" <<'EOF'
# writer.py URI SRC OFFSET SEED: write SRC at OFFSET in shuffled 512-aligned
# chunks, up to 16 in flight, then flush and read the range back.
import nbd, random, sys, time
uri, src, base, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(src, "rb").read()
rnd = random.Random(seed)
# Runs of all-zero and non-zero 512-byte sectors; zero runs of 4 KiB or
# more go out as WRITE_ZEROES, the rest as WRITEs of random sizes.
zsec = bytes(512)
runs, pos = [], 0
while pos < len(data):
    z = data[pos:pos + 512] == zsec
    end = pos + 512
    while end < len(data) and (data[end:end + 512] == zsec) == z:
        end += 512
    runs.append((pos, end - pos, z and end - pos >= 4096))
    pos = end
chunks = []
for pos, length, z in runs:
    while length:
        n = min(rnd.randrange(1, 257) * 512, length)
        chunks.append((pos, n, z))
        pos += n
        length -= n
rnd.shuffle(chunks)
h = nbd.NBD()
h.connect_uri(uri)
deadline = time.monotonic() + float(sys.argv[5])
inflight = []   # (cookie, buffer)
nzero = nfua = 0
def reap(block):
    global inflight
    while inflight:
        if block and len(inflight) >= 16:
            h.poll(1000)
        done = [c for c in inflight if h.aio_command_completed(c[0])]
        inflight = [c for c in inflight if c not in done]
        if not block or len(inflight) < 16:
            return
for i, (off, n, z) in enumerate(chunks):
    if time.monotonic() > deadline:
        sys.exit("writer %s: out of time" % src)
    piece = data[off:off + n]
    flags = nbd.CMD_FLAG_FUA if i % 7 == 0 else 0
    nfua += bool(flags)
    if z:
        inflight.append((h.aio_zero(n, base + off, flags=flags), None))
        nzero += 1
    else:
        buf = nbd.Buffer.from_bytearray(bytearray(piece))
        inflight.append((h.aio_pwrite(buf, base + off, flags=flags), buf))
    reap(True)
while inflight:
    h.poll(1000)
    reap(False)
    if time.monotonic() > deadline:
        sys.exit("writer %s: out of time waiting for replies" % src)
h.flush()
for off in range(0, len(data), 1 << 20):
    got = h.pread(min(1 << 20, len(data) - off), base + off)
    if got != data[off:off + len(got)]:
        sys.exit("writer %s: read-back mismatch in [%d, +1MiB)" % (src, base + off))
h.shutdown()
print("    writer %s: %d requests (%d zero, %d FUA), read back OK" % (src, len(chunks), nzero, nfua))
EOF

cat >"$TEST_DIR/reader.py" <<'EOF'
# reader.py URI REF OFFSET STOPFILE SECONDS: re-read REF's range until
# STOPFILE exists; every pass must match.
import nbd, os, sys, time
uri, ref, base, stop, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
data = open(ref, "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
t_end = time.monotonic() + secs
passes = 0
while passes < 10000:
    for off in range(0, len(data), 256 << 10):
        n = min(256 << 10, len(data) - off)
        if h.pread(n, base + off) != data[off:off + n]:
            sys.exit("reader: mismatch at %d on pass %d" % (base + off, passes))
    passes += 1
    if os.path.exists(stop) or time.monotonic() > t_end:
        break
h.shutdown()
print("    reader: %d passes OK" % passes)
EOF

cat >"$TEST_DIR/interleave.py" <<'EOF'
# interleave.py URI SRC OFFSET PART: of every 4 KiB block of SRC, write
# bytes [0, 1000) (PART 0) or [1000, 4096) (PART 1) - unaligned pieces that
# share blocks with the other connection's writes; 32 requests in flight.
import nbd, sys
uri, src, base, part = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(src, "rb").read()
CUT = 1000
h = nbd.NBD()
h.connect_uri(uri)
inflight = {}
def reap():
    for c in [c for c in inflight if h.aio_command_completed(c)]:
        del inflight[c]
for blk in range(len(data) // 4096):
    lo, hi = (0, CUT) if part == 0 else (CUT, 4096)
    buf = nbd.Buffer.from_bytearray(bytearray(data[blk * 4096 + lo:blk * 4096 + hi]))
    inflight[h.aio_pwrite(buf, base + blk * 4096 + lo)] = buf
    while len(inflight) >= 32:
        h.poll(1000)
        reap()
while inflight:
    h.poll(1000)
    reap()
h.flush()
h.shutdown()
print("    interleave part %d: %d writes OK" % (part, len(data) // 4096))
EOF

create_volume "$IMG" "$SIZE"
start_repvold "$IMG" "$SOCK" --listen "tcp:127.0.0.1:$PORT"

step "fill the volume with old random data"
random_file "$TEST_DIR/old.raw" "$SIZE"
tmo 60 nbdcopy --flush "$TEST_DIR/old.raw" "$REPVOLD_URI" || fail "nbdcopy old data in"

step "expected contents: new data in ranges 0-2 (with zero runs), old data in range 3"
cp "$TEST_DIR/old.raw" "$TEST_DIR/expected.raw"
for r in 0 1 2; do
    random_file "$TEST_DIR/new$r.raw" "$RANGE"
    for z in 3 77 200; do # 64 KiB zero runs, some unaligned to chunk edges
        dd if=/dev/zero of="$TEST_DIR/new$r.raw" bs=512 seek=$((z * 160 + r)) count=128 conv=notrunc status=none
    done
    dd if="$TEST_DIR/new$r.raw" of="$TEST_DIR/expected.raw" bs=1M seek=$((r * RANGE >> 20)) conv=notrunc status=none
done
tail -c "$RANGE" "$TEST_DIR/old.raw" >"$TEST_DIR/old3.raw"

step "three writers (unix, unix, tcp) and a reader (tcp) at once"
T=$(tscale 45)
tmo 60 "$PYTHON_NBD" "$TEST_DIR/writer.py" "$REPVOLD_URI" "$TEST_DIR/new0.raw" 0 1 "$T" &
W0=$!
tmo 60 "$PYTHON_NBD" "$TEST_DIR/writer.py" "$REPVOLD_URI" "$TEST_DIR/new1.raw" "$RANGE" 2 "$T" &
W1=$!
tmo 60 "$PYTHON_NBD" "$TEST_DIR/writer.py" "$TCP_URI" "$TEST_DIR/new2.raw" $((2 * RANGE)) 3 "$T" &
W2=$!
tmo 60 "$PYTHON_NBD" "$TEST_DIR/reader.py" "$TCP_URI" "$TEST_DIR/old3.raw" $((3 * RANGE)) "$TEST_DIR/stop" "$T" &
RD=$!
for p in $W0 $W1 $W2 $RD; do track_pid "$p"; done
for p in $W0 $W1 $W2; do
    rc=0
    wait_bounded "$p" 70 || rc=$?
    [ "$rc" -eq 0 ] || fail "a writer failed (status $rc)"
done
touch "$TEST_DIR/stop"
rc=0
wait_bounded "$RD" 70 || rc=$?
[ "$rc" -eq 0 ] || fail "the concurrent reader failed (status $rc)"
repvold_alive || fail "daemon died"

step "two connections (unix, tcp) write disjoint unaligned pieces of the same 4 KiB blocks"
random_file "$TEST_DIR/new3.raw" "$RANGE"
dd if="$TEST_DIR/new3.raw" of="$TEST_DIR/expected.raw" bs=1M seek=$((3 * RANGE >> 20)) conv=notrunc status=none
tmo 60 "$PYTHON_NBD" "$TEST_DIR/interleave.py" "$REPVOLD_URI" "$TEST_DIR/new3.raw" $((3 * RANGE)) 0 &
I0=$!
tmo 60 "$PYTHON_NBD" "$TEST_DIR/interleave.py" "$TCP_URI" "$TEST_DIR/new3.raw" $((3 * RANGE)) 1 &
I1=$!
track_pid "$I0"
track_pid "$I1"
for p in $I0 $I1; do
    rc=0
    wait_bounded "$p" 70 || rc=$?
    [ "$rc" -eq 0 ] || fail "an interleaving writer failed (status $rc)"
done

step "read everything back over unix and tcp at the same time"
rm -f "$TEST_DIR/out-unix.raw" "$TEST_DIR/out-tcp.raw"
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/out-unix.raw" &
C1=$!
tmo 60 nbdcopy "$TCP_URI" "$TEST_DIR/out-tcp.raw" &
C2=$!
track_pid "$C1"
track_pid "$C2"
rc=0
wait_bounded "$C1" 70 || rc=$?
[ "$rc" -eq 0 ] || fail "nbdcopy over unix failed ($rc)"
wait_bounded "$C2" 70 || rc=$?
[ "$rc" -eq 0 ] || fail "nbdcopy over tcp failed ($rc)"
for r in 0 1 2 3; do
    for how in unix tcp; do
        cmp -i "$((r * RANGE)):$((r * RANGE))" -n "$RANGE" "$TEST_DIR/out-$how.raw" "$TEST_DIR/expected.raw" ||
            fail "range $r read over $how differs from what was written"
    done
done
assert_bytes_equal "$TEST_DIR/out-unix.raw" "$TEST_DIR/expected.raw" "whole volume (unix)"
assert_bytes_equal "$TEST_DIR/out-tcp.raw" "$TEST_DIR/expected.raw" "whole volume (tcp)"
stop_repvold

step "image data region"
for r in 0 1 2 3; do
    cmp -i "$((r * RANGE)):$((r * RANGE))" -n "$RANGE" "$IMG" "$TEST_DIR/expected.raw" ||
        fail "range $r of the image file differs"
done
assert_bytes_equal "$IMG" "$TEST_DIR/expected.raw" "$SIZE" "image data region"
