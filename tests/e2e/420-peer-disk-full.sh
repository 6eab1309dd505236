#!/usr/bin/env bash
# The secondary's disk fills up (mode C).
#   B's image (64 MiB, sparse) sits on a tmpfs limited to 10 MiB; A's has room.
#   1. 4 MiB through A: both nodes store it.
#   2. ack-checker writes random 4 KiB blocks through A until B's file system
#      is full: B answers the write it cannot store with a NACK, A drops the
#      link and reports the peer's failure (status: peer not connected,
#      nacks >= 1, the reason in last_error); B names ENOSPC in its status;
#      the client sees no error (A stored every write).
#   3. Mode C's promise, checked on the stopped images: every write A
#      acknowledged is either in B's image or marked in A's dirty bitmap
#      (A never acknowledged as replicated a write B did not store).  B is
#      not UpToDate: it marked itself Outdated before its NACK went out (and
#      became a resync target, Inconsistent, when A redialled: that resync
#      fails too while the disk is full).
#   4. Space freed, both restarted: the resync from A's bitmap makes the
#      images identical, and every acknowledged write is in both.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_root
require_binaries
require_cmd cmp diffutils
require_cmd python3 python3
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"

SIZE=$((64 << 20))
small_tmpfs 10m
A_IMG=$TEST_DIR/a.img
B_IMG=$MNT/b.img
create_volume "$A_IMG" "$SIZE" >/dev/null
cp --sparse=always "$A_IMG" "$B_IMG"

repl_setup
node_start B "$B_IMG" secondary --cache buffered --peer-timeout 2000
node_start A "$A_IMG" primary --peer-timeout 2000
node_wait_peer_state A connected
node_wait_peer_state B connected

step "1: 4 MiB through A (at 60 MiB) while B has room"
require_python_nbd
random_file "$TEST_DIR/first" $((4 << 20))
nbd_write "${NODE_URI[A]}" $((60 << 20)) "$TEST_DIR/first"
[ "$(node_peer_state A)" = connected ] || fail "the link dropped while B had room"

step "2: random 4 KiB writes through A until B's file system is full"
rc=0
tmo 60 "$ACK_CHECKER" write --uri "${NODE_URI[A]}" --log "$TEST_DIR/ack.log" --region-mb 60 \
    --depth 16 --seconds 8 --seed 42 >"$TEST_DIR/checker.out" 2>&1 || rc=$?
sed 's/^/    /' "$TEST_DIR/checker.out"
[ "$rc" -eq 0 ] || fail "ack-checker exited with status $rc"
grep -q ' acknowledged, 0 failed, 0 unanswered' "$TEST_DIR/checker.out" ||
    fail "the client saw failed writes (A's own disk has room)"
ACKED=$(grep -vc '^#' "$TEST_DIR/ack.log" || true)
wait_not_connected A 10
node_status_json A >"$TEST_DIR/a-status.json"
python3 - "$TEST_DIR/a-status.json" <<'PY' || fail "A's status does not report the failed peer"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["peer"]
print("    A: peer %s, nacks %d, local-only writes %d, peer error: %s"
      % (p["state"], p["nacks"], d["stats"]["local_only_writes"], p["last_error"]))
assert p["state"] != "connected", p["state"]
assert p["nacks"] >= 1, p
assert "failed to store" in p["last_error"] and "No space" in p["last_error"], p["last_error"]
assert d["stats"]["errors"] == 0, d["stats"]
PY
"$REPVOL" status --control "${NODE_CTL[A]}" | grep -q '^peer error: .*failed to store a write' ||
    fail "repvol status on A does not show the peer's failure"
node_alive B || fail "B died when its disk filled up"
b_err=$(status_field B 'd["last_error"]')
info "B: last error: $b_err"
[[ $b_err == *"No space left"* ]] || fail "B's status does not name ENOSPC"
grep -q 'this copy missed a write of its primary: marking it Outdated' "${NODE_LOG[B]}" ||
    fail "B failed a write of its primary without marking its copy Outdated"

step "3: every write A acknowledged is in B's image or in A's dirty bitmap"
node_stop A
node_stop B
python3 - "$REPVOL" "$A_IMG" "$B_IMG" "$TEST_DIR/ack.log" <<'PY' || fail "an acknowledged write is neither on B nor marked for resync"
import json, subprocess, sys
repvol, a_img, b_img, log = sys.argv[1:5]
info = json.loads(subprocess.check_output([repvol, "info", "--json", a_img]))
gran = info["bitmap_granularity"]
with open(a_img, "rb") as f:
    f.seek(info["bitmap_offset"])
    bm = f.read(info["bitmap_length"])
marked = lambda off: (bm[(off // gran) >> 3] >> ((off // gran) & 7)) & 1
a, b = open(a_img, "rb"), open(b_img, "rb")
on_b = in_bm = lost = 0
for line in open(log):
    if line.startswith("#"):
        continue
    off = int(line.split()[0])
    a.seek(off); b.seek(off)
    blk = a.read(4096)
    if b.read(4096) == blk:
        on_b += 1
    elif marked(off):
        in_bm += 1
    else:
        lost += 1
        if lost <= 5:
            print("    NOT on B and not marked: offset %d" % off)
print("    acknowledged writes: %d on B, %d missing on B but marked in A's bitmap, %d unaccounted"
      % (on_b, in_bm, lost))
assert in_bm > 0, "B stored everything: its disk never filled up?"
sys.exit(1 if lost else 0)
PY
b_state=$("$REPVOL" info --json "$B_IMG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk_state"])')
info "B's disk state after failing a write: $b_state"
[ "$b_state" != UpToDate ] || fail "B failed to store writes of its primary but calls itself UpToDate"

step "4: space freed; both restarted; resync makes the images identical"
mount -o remount,size=96m "$MNT" || fail "cannot grow the tmpfs"
node_start B "$B_IMG" secondary --cache buffered --peer-timeout 2000
node_start A "$A_IMG" primary --peer-timeout 2000
wait_resync_done 0 60
info "resync: $MAX_DONE bytes; A: $FINAL"
node_stop A
node_stop B
assert_bytes_equal "$A_IMG" "$B_IMG" "$SIZE" "images after the resync"
verify_acked "$TEST_DIR/ack.log" "$A_IMG" "$B_IMG"
cmp -n $((4 << 20)) "$TEST_DIR/first" "$B_IMG" 0 $((60 << 20)) || fail "B lost the first 4 MiB"
info "$ACKED acknowledged writes on both nodes; images identical"
