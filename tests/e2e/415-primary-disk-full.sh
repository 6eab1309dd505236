#!/usr/bin/env bash
# The primary's own file system fills up while its peer has room (mode C).
# A's image (64 MiB, sparse) sits on a tmpfs limited to 10 MiB, B's has room.
# A client writes 16 MiB through A in 256 KiB requests: the writes A cannot
# store fail with ENOSPC (B stored them: the peer leg succeeded).  Those
# ranges now differ between the copies (A has old or partial data, B the
# new), and both copies carry the same data generation, so nothing would
# ever resync them: a failover would change what reads return.
# Expected: A records the ranges and drops the link (status: the reason),
# reconnects as the resync source, and the copies end up identical; every
# acknowledged write is on both; B stays UpToDate.
# Part 2, the file system still full: the link is cut, and the client
# overwrites blocks it wrote before (already allocated: they fit).  A must
# record them in its bitmap, which lives in the image's metadata area - a
# hole in a sparse image unless the daemon allocated it at start: those
# overwrites must succeed, and new blocks fail with ENOSPC (never EIO).
# Space freed, link back: resync, identical copies holding every
# acknowledged write.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_root
require_binaries
require_python_nbd
require_cmd cmp diffutils

SIZE=$((64 << 20))
small_tmpfs 10m
A_IMG=$MNT/a.img
B_IMG=$TEST_DIR/b.img
create_volume "$A_IMG" "$SIZE" >/dev/null
cp --sparse=always "$A_IMG" "$B_IMG"
repl_setup
node_start B "$B_IMG" secondary --peer-timeout 2000
node_start A "$A_IMG" primary --cache buffered --peer-timeout 2000
node_wait_peer_state A connected
node_wait_peer_state B connected

step "16 MiB through A in 256 KiB writes; A's file system fills up"
random_file "$TEST_DIR/data" $((16 << 20))
tmo 60 "$PYTHON_NBD" - "${NODE_URI[A]}" "$TEST_DIR/data" >"$TEST_DIR/results" <<'PY' || fail "the client failed or hung"
import errno, nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
d = open(sys.argv[2], "rb").read()
CH = 256 << 10
for i in range(len(d) // CH):
    try:
        h.pwrite(d[i * CH:(i + 1) * CH], (16 << 20) + i * CH)
        print("OK", i)
    except nbd.Error as e:
        print("ENOSPC" if e.errnum == errno.ENOSPC else "ERR%s" % e.errnum, i)
h.shutdown()
PY
nok=$(grep -c '^OK ' "$TEST_DIR/results" || true)
nfail=$(grep -c '^ENOSPC ' "$TEST_DIR/results" || true)
info "$nok writes acknowledged, $nfail failed with ENOSPC"
[ "$nfail" -gt 0 ] || fail "no write failed: A's file system did not fill up"
! grep -q '^ERR' "$TEST_DIR/results" || fail "writes failed with other errors: $(grep -m3 '^ERR' "$TEST_DIR/results")"

step "A records the difference, drops the link and resyncs B"
for ((i = 0; i < $(tscale 10) * 10; i++)); do
    grep -q 'this node failed a write the peer stored' "${NODE_LOG[A]}" && break
    sleep 0.1
done
grep -q 'this node failed a write the peer stored' "${NODE_LOG[A]}" ||
    fail "A kept the link although the copies differ where its own writes failed"
info "A: $(grep -m1 'lost peer' "${NODE_LOG[A]}" | sed 's/^[^ ]* //')"
perr=$(status_field A 'd["peer"]["last_error"]')
[[ $perr == *"failed a write the peer stored"* ]] || fail "A's status does not say why the link was dropped: '$perr'"
wait_resync_done 0 30
info "resync from A: $MAX_DONE bytes; A: $FINAL"
[ "$(status_field B 'd["disk_state"]')" = UpToDate ] || fail "B is not UpToDate after the resync"
tmo 60 nbdcopy "${NODE_URI[A]}" "$TEST_DIR/expected" || fail "reading A's export failed"
cmp -s "$TEST_DIR/expected" "$B_IMG" -n "$SIZE" || fail "B's copy differs from what A serves after the resync"
while read -r what i; do
    [ "$what" = OK ] || continue
    cmp -s -n $((256 << 10)) "$TEST_DIR/data" "$TEST_DIR/expected" $((i << 18)) $(((16 << 20) + (i << 18))) ||
        fail "acknowledged 256 KiB write #$i is not on the copies"
done <"$TEST_DIR/results"
info "copies identical; all $nok acknowledged writes on both"

step "2: link cut, file system still full: overwrites of allocated blocks succeed, new blocks get ENOSPC"
[ "$REPL_NET" = netns ] || { node_stop A; node_stop B; info "(part 2 needs network namespaces)"; exit 0; }
link_down
wait_not_connected A 10
random_file "$TEST_DIR/data2" $((16 << 20))
# Overwrite the acknowledged chunks (allocated), then try 4 MiB of new ones.
tmo 60 "$PYTHON_NBD" - "${NODE_URI[A]}" "$TEST_DIR/data2" "$TEST_DIR/results" >"$TEST_DIR/results2" <<'PY' ||
import errno, nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
d = open(sys.argv[2], "rb").read()
CH = 256 << 10
acked = [int(l.split()[1]) for l in open(sys.argv[3]) if l.startswith("OK ")]
for i in acked:
    try:
        h.pwrite(d[i * CH:(i + 1) * CH], (16 << 20) + i * CH)
        print("OK", i)
    except nbd.Error as e:
        print("OVERWRITE-FAILED", i, e.errnum)
for i in range(16):
    try:
        h.pwrite(d[i * CH:(i + 1) * CH], (48 << 20) + i * CH)
        print("NEW-OK", i)
    except nbd.Error as e:
        print("NEW-ENOSPC" if e.errnum == errno.ENOSPC else "NEW-ERR%s" % e.errnum, i)
h.shutdown()
PY
    fail "the client failed or hung"
info "overwrites: $(grep -c '^OK ' "$TEST_DIR/results2" || true) acknowledged, $(grep -c '^OVERWRITE-FAILED' "$TEST_DIR/results2" || true) failed; new blocks: $(grep -c '^NEW-OK' "$TEST_DIR/results2" || true) ok, $(grep -c '^NEW-ENOSPC' "$TEST_DIR/results2" || true) ENOSPC, $(grep -c '^NEW-ERR' "$TEST_DIR/results2" || true) other errors"
! grep -q '^OVERWRITE-FAILED' "$TEST_DIR/results2" ||
    fail "overwrites of allocated blocks failed without the peer (the bitmap could not be written?): $(grep -m1 '^OVERWRITE-FAILED' "$TEST_DIR/results2"); A: $(status_field A 'd["last_error"]')"
! grep -q '^NEW-ERR' "$TEST_DIR/results2" || fail "new blocks failed with something other than ENOSPC"
mount -o remount,size=96m "$MNT" || fail "cannot grow the tmpfs"
runs0=$(status_field A 'd["peer"]["sync"]["runs"]')
link_up
wait_resync_done "$runs0" 30
tmo 60 nbdcopy "${NODE_URI[A]}" "$TEST_DIR/expected" || fail "reading A's export failed"
node_stop A
node_stop B
assert_bytes_equal "$A_IMG" "$B_IMG" "$SIZE" "copies after the second resync"
cmp -s -n "$SIZE" "$TEST_DIR/expected" "$B_IMG" || fail "the copies differ from what A served"
while read -r what i; do
    [ "$what" = OK ] || continue
    cmp -s -n $((256 << 10)) "$TEST_DIR/data2" "$B_IMG" $((i << 18)) $(((16 << 20) + (i << 18))) ||
        fail "acknowledged overwrite #$i is not on the copies"
done <"$TEST_DIR/results2"
info "images identical; every acknowledged overwrite on both"
