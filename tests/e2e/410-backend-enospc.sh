#!/usr/bin/env bash
# The image's file system runs out of space (standalone daemon).
#   The image (64 MiB, sparse) sits on a tmpfs limited to 12 MiB.
#   1. 4 MiB of random data written and flushed: fine.
#   2. A client writes 16 MiB more elsewhere, 256 KiB at a time: the writes
#      that do not fit fail with ENOSPC (each request answered, none lost in
#      silence); those answered OK are on disk (read back and compared).
#   3. The daemon is still running: the first 4 MiB read back unchanged
#      through a new connection, `repvol status` names ENOSPC as the last
#      error, and a second client can still read the whole export.
#   4. Space is freed (tmpfs grown): a retry of the failed writes succeeds,
#      and after a clean stop the image holds exactly what was acknowledged.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"    # nbd_write
require_root
require_binaries
require_python_nbd
require_cmd nbdcopy libnbd-bin
require_cmd cmp diffutils

SIZE=$((64 << 20))
small_tmpfs 12m
IMG=$MNT/vol.img
SOCK=$TEST_DIR/nbd.sock
create_volume "$IMG" "$SIZE" >/dev/null
start_repvold "$IMG" "$SOCK" --cache buffered

# What the volume must hold: zeros, then what was acknowledged.
EXPECTED=$TEST_DIR/expected.raw
truncate -s "$SIZE" "$EXPECTED"

step "1: 4 MiB written and flushed while there is room"
random_file "$TEST_DIR/first" $((4 << 20))
nbd_write "$REPVOLD_URI" 0 "$TEST_DIR/first"
dd if="$TEST_DIR/first" of="$EXPECTED" conv=notrunc status=none

step "2: 16 MiB more at 16 MiB, 256 KiB per request: the file system fills up"
random_file "$TEST_DIR/second" $((16 << 20))
# Prints "OK N" / "ENOSPC N" per 256 KiB chunk (N = chunk index).
tmo 60 "$PYTHON_NBD" - "$REPVOLD_URI" "$TEST_DIR/second" $((16 << 20)) >"$TEST_DIR/results" <<'PY' ||
import errno, nbd, sys
uri, path, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
CH = 256 << 10
for i in range(len(data) // CH):
    try:
        h.pwrite(data[i * CH:(i + 1) * CH], base + i * CH)
        print("OK", i)
    except nbd.Error as e:
        print("ENOSPC" if e.errnum == errno.ENOSPC else "ERR%s" % e.errnum, i, flush=True)
try:
    h.flush()
    print("FLUSH ok")
except nbd.Error as e:
    print("FLUSH", e.errno)
h.shutdown()
PY
    fail "the writing client failed or hung"
nok=$(grep -c '^OK ' "$TEST_DIR/results" || true)
nenospc=$(grep -c '^ENOSPC ' "$TEST_DIR/results" || true)
nother=$(grep -c '^ERR' "$TEST_DIR/results" || true)
info "256 KiB writes: $nok acknowledged, $nenospc failed with ENOSPC, $nother other errors; $(grep FLUSH "$TEST_DIR/results")"
[ "$nenospc" -gt 0 ] || fail "no write failed with ENOSPC on a full file system"
[ "$nother" -eq 0 ] || fail "writes failed with errors other than ENOSPC: $(grep '^ERR' "$TEST_DIR/results" | head -3)"
[ $((nok + nenospc)) -eq 64 ] || fail "not every write was answered"
[ "$nok" -gt 0 ] || fail "not even the writes that fitted were acknowledged"
while read -r what i; do
    [ "$what" = OK ] || continue
    dd if="$TEST_DIR/second" of="$EXPECTED" bs=256K skip="$i" seek=$((64 + i)) count=1 conv=notrunc status=none
done <"$TEST_DIR/results"

step "3: the daemon still serves; earlier data intact; status says why"
repvold_alive || fail "repvold died when the file system filled up"
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/served1.raw" || fail "reading the export after ENOSPC failed"
# A failed write may have stored part of its data (NBD leaves a failed
# write's range unspecified): in a failed chunk each 4 KiB block holds
# either the old or the new data; everything else is exactly as expected.
check_served() {
    python3 - "$1" "$EXPECTED" "$TEST_DIR/second" "$TEST_DIR/results" <<'PY'
import sys
served, exp, new = (open(p, "rb").read() for p in sys.argv[1:4])
failed = [int(l.split()[1]) for l in open(sys.argv[4]) if l.startswith("ENOSPC")]
CH, BASE, B = 256 << 10, 16 << 20, 4096
mask = bytearray(len(exp))
partial = 0
for i in failed:
    for b in range(BASE + i * CH, BASE + (i + 1) * CH, B):
        s = served[b:b + B]
        if s == new[b - BASE:b - BASE + B] and s != exp[b:b + B]:
            partial += 1
        elif s != exp[b:b + B]:
            sys.exit("failed chunk %d: block at %d is neither the old nor the new data" % (i, b))
        mask[b:b + B] = b"\1" * B
bad = next((o for o in range(0, len(exp), B) if not mask[o] and served[o:o + B] != exp[o:o + B]), None)
if bad is not None:
    sys.exit("block at %d differs from what was acknowledged" % bad)
print("    export matches: %d acknowledged chunks exact, %d failed chunks hold old data (%d blocks new)"
      % (64 - len(failed), len(failed), partial))
PY
}
check_served "$TEST_DIR/served1.raw" || fail "export contents after ENOSPC"
# A second client, while the first reads too.
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/served2.raw" &
cp2=$!
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/served3.raw" || fail "a concurrent reader failed"
wait_bounded "$cp2" 60 || fail "a concurrent reader failed"
check_served "$TEST_DIR/served2.raw" >/dev/null || fail "a second client read wrong data"
cmp "$TEST_DIR/served2.raw" "$TEST_DIR/served3.raw" || fail "two concurrent readers saw different data"
"$REPVOL" status --control "$REPVOLD_CTL" >"$TEST_DIR/status.txt"
sed 's/^/    /' "$TEST_DIR/status.txt"
grep -q '^last error: .*No space left on device' "$TEST_DIR/status.txt" ||
    fail "repvol status does not name ENOSPC as the last error"
errs=$("$REPVOL" status --json --control "$REPVOLD_CTL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["errors"])')
[ "$errs" -ge "$nenospc" ] || fail "status counts $errs errors, $nenospc writes failed"

step "4: space freed: the failed writes succeed on retry"
mount -o remount,size=96m "$MNT" || fail "cannot grow the tmpfs"
while read -r what i; do
    [ "$what" = ENOSPC ] || continue
    dd if="$TEST_DIR/second" of="$TEST_DIR/chunk" bs=256K skip="$i" count=1 status=none
    nbd_write "$REPVOLD_URI" $(((16 << 20) + i * (256 << 10))) "$TEST_DIR/chunk"
    dd if="$TEST_DIR/chunk" of="$EXPECTED" bs=256K seek=$((64 + i)) count=1 conv=notrunc status=none
done <"$TEST_DIR/results"
stop_repvold
assert_bytes_equal "$IMG" "$EXPECTED" "$SIZE" "image after the retries"
info "image holds the first 4 MiB and all 16 MiB of the second write"
