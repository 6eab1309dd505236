#!/usr/bin/env bash
# Failover: primary A dies, secondary B takes over, A comes back as the
# secondary and is brought up to date from B.
#   1. A primary, B secondary.  ack-checker writes self-describing 4 KiB
#      blocks through A (many in flight) and logs a block only once A has
#      acknowledged it; A is killed with SIGKILL at a random moment.
#   2. B is promoted (`repvol primary`): every acknowledged write is readable
#      through B's NBD export (nbdcopy of the whole export to a file,
#      `ack-checker verify` against that file).
#   3. More writes through B (a second ack-checker run, appended to the same
#      log: where both runs wrote an offset the later block is expected).
#   4. A's image gets one block that B never saw, inside what A's activity
#      log marked hot when it died: the stand-in for a write that reached
#      A's disk but not B's before the crash.  Only A's crash bits cover it,
#      so the resync must merge them (B's own bitmap knows nothing of it).
#   5. A is restarted as secondary: B (the new primary) dials it, takes A's
#      bitmap, resyncs the union.  Both stopped: data regions identical, and
#      every acknowledged block of both runs is in both images.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"

SIZE=$((256 << 20))
RUN2_MB=64                      # the second run (through B) writes only the first 64 MiB
PEER_ARGS=(--peer-timeout 2000)

# sync_fields N: "PEER_STATE SYNC_STATE BYTES_DONE BYTES_LEFT RUNS DISK_STATE ROLE"
sync_fields() {
    node_status_json "$1" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d.get("peer") or {}
s = p.get("sync") or {}
print(p.get("state", "none"), s.get("state", "none"), s.get("bytes_done", 0), s.get("bytes_left", 0),
      s.get("runs", 0), d.get("disk_state", "?"), d.get("role", "?"))' 2>/dev/null ||
        echo "unknown unknown 0 0 0 unknown unknown"
}

info_field() { "$REPVOL" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

# wait_log LOG REGEX [SECS]
wait_log() {
    local i
    for ((i = 0; i < $(tscale "${3:-15}") * 10; i++)); do
        grep -qE -- "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}

# verify LOG FILE OUT: ack-checker verify; prints its report indented.
verify() {
    local rc=0
    tmo 60 "$ACK_CHECKER" verify --log "$1" --image "$2" >"$3" 2>&1 || rc=$?
    sed 's/^/    /' "$3"
    return "$rc"
}

acked_lines() { grep -vc '^#' "$1" || true; }
# Distinct offsets in the log: what verify checks (a later entry supersedes).
acked_offsets() { grep -v '^#' "$1" | cut -d' ' -f1 | sort -u | wc -l; }

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
node_wait_peer_state A connected
node_wait_peer_state B connected
wait_export A
GEN0=$(node_status_json A | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"]["current"])')

delay_ms=$((300 + RANDOM % 1700))
step "ack-checker through primary A; SIGKILL A after $delay_ms ms"
"$ACK_CHECKER" write --uri "${NODE_URI[A]}" --log "$TEST_DIR/ack.log" --region-mb $((SIZE >> 20)) \
    --depth 32 --seconds 60 --seed "$RANDOM" >"$TEST_DIR/checker1.out" 2>&1 &
CHECKER=$!
track_pid "$CHECKER"
sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
pid_alive "$CHECKER" || { cat "$TEST_DIR/checker1.out" >&2; fail "ack-checker ended before A was killed"; }
node_alive A || fail "node A died before it was killed"
node_kill A
rc=0
wait_bounded "$CHECKER" 30 || rc=$?
sed 's/^/    /' "$TEST_DIR/checker1.out"
[ "$rc" -eq 0 ] || fail "ack-checker write exited with status $rc"
grep -q 'the connection died' "$TEST_DIR/checker1.out" || fail "ack-checker did not see the connection die"
ACKED1=$(acked_lines "$TEST_DIR/ack.log")
[ "$ACKED1" -gt 0 ] || fail "no write was acknowledged before the kill"
info "$ACKED1 writes acknowledged by A before it died"

step "promote B"
node_alive B || fail "node B died with its primary"
node_wait_peer_state B disconnected 15
out=$(tmo 30 "$REPVOL" primary --control "${NODE_CTL[B]}" 2>&1) || fail "repvol primary on B failed: $out"
info "repvol primary: $out"
read -r _ _ _ _ _ ds role <<<"$(sync_fields B)"
assert_eq "$role" primary "B's role after promotion"
assert_eq "$ds" UpToDate "B's disk state after promotion"
wait_export B
wait_log "${NODE_LOG[B]}" 'promoted to primary' 5 || fail "B did not log its promotion"

step "every acknowledged write is readable through B's export"
tmo 60 nbdcopy "${NODE_URI[B]}" "$TEST_DIR/b-export.raw" || fail "nbdcopy of B's export failed"
assert_eq "$(stat -c %s "$TEST_DIR/b-export.raw")" "$SIZE" "size of B's export"
verify "$TEST_DIR/ack.log" "$TEST_DIR/b-export.raw" "$TEST_DIR/verify-export.out" ||
    fail "acknowledged writes are missing from B's export after failover"
grep -q "^$ACKED1 acknowledged writes checked, 0 missing/corrupt" "$TEST_DIR/verify-export.out" ||
    fail "verify of B's export did not check all $ACKED1 writes"
rm -f "$TEST_DIR/b-export.raw"

step "more writes through B (second ack-checker run, first $RUN2_MB MiB)"
rc=0
tmo 60 "$ACK_CHECKER" write --uri "${NODE_URI[B]}" --log "$TEST_DIR/ack.log" --region-mb "$RUN2_MB" \
    --depth 16 --seconds 2 --seed "$RANDOM" >"$TEST_DIR/checker2.out" 2>&1 || rc=$?
sed 's/^/    /' "$TEST_DIR/checker2.out"
[ "$rc" -eq 0 ] || fail "ack-checker write through B exited with status $rc"
grep -q 'the connection died' "$TEST_DIR/checker2.out" && fail "B's export dropped the second run's connection"
grep -q ' acknowledged, 0 failed, 0 unanswered' "$TEST_DIR/checker2.out" || fail "writes through B failed"
ACKED=$(acked_lines "$TEST_DIR/ack.log")
[ "$ACKED" -gt "$ACKED1" ] || fail "no write through B was acknowledged"
info "$((ACKED - ACKED1)) writes acknowledged by B"
read -r _ _ _ b_dirty _ _ _ <<<"$(sync_fields B)"
[ "$b_dirty" -gt 0 ] || fail "B records no dirty bytes after writing without its peer"
[ "$b_dirty" -le $((RUN2_MB << 20)) ] || fail "B records $b_dirty dirty bytes, more than the $RUN2_MB MiB it wrote to"
GEN_B=$(node_status_json B | python3 -c 'import json,sys; g=json.load(sys.stdin)["generation"]; print(g["current"], g["bitmap"])')
read -r gen_b base_b <<<"$GEN_B"
info "B: generation $gen_b based on $base_b, $b_dirty bytes dirty"
[ "$gen_b" != "$GEN0" ] || fail "B kept generation $GEN0 after writing as primary without its peer"
assert_eq "$base_b" "$GEN0" "B's bitmap generation (the data A still has)"

step "A's image: the crash left it unclean with activity-log bits; plant a block B never saw"
assert_eq "$(info_field "$TEST_DIR/a.img" clean)" False "A's image clean flag after SIGKILL"
# An acknowledged block of the first run beyond the second run's region,
# whose granule A's on-disk bitmap marks: overwrite it with junk.
POKE=$(python3 - "$REPVOL" "$TEST_DIR/a.img" "$TEST_DIR/ack.log" "$RUN2_MB" <<'PY'
import json, subprocess, sys
repvol, img, log, run2_mb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
info = json.loads(subprocess.check_output([repvol, "info", "--json", img]))
gran = info["bitmap_granularity"]
with open(img, "rb") as f:
    f.seek(info["bitmap_offset"])
    bm = f.read(info["bitmap_length"])
def marked(off):
    g = off // gran
    return (bm[g >> 3] >> (g & 7)) & 1
set_bits = sum(bin(b).count("1") for b in bm)
cands = []
for line in open(log):
    if line.startswith("#"):
        continue
    off = int(line.split()[0])
    if off >= run2_mb << 20 and marked(off):
        cands.append(off)
print(set_bits, cands[len(cands) // 2] if cands else -1)
PY
) || fail "reading A's bitmap failed"
read -r a_bits poke_off <<<"$POKE"
info "A's on-disk bitmap: $a_bits granules marked"
[ "$a_bits" -gt 0 ] || fail "A's image has no dirty bits after dying with writes in flight (activity log)"
[ "$poke_off" -ge 0 ] || fail "no acknowledged block beyond ${RUN2_MB} MiB is covered by A's activity log"
random_file "$TEST_DIR/junk" 4096
dd if="$TEST_DIR/junk" of="$TEST_DIR/a.img" bs=4096 seek=$((poke_off / 4096)) count=1 conv=notrunc status=none
info "junk planted at offset $poke_off of A's image"

step "restart A as secondary: it resyncs from B"
read -r _ _ _ _ RUNS0 _ _ <<<"$(sync_fields B)"
node_start A "$TEST_DIR/a.img" secondary "${PEER_ARGS[@]}"
grep -q 'was not shut down cleanly' "${NODE_LOG[A]}" || fail "the restarted A did not notice its crash"
t0=$SECONDS
for ((i = 0; ; i++)); do
    read -r ps ss moved left runs ds role <<<"$(sync_fields B)"
    if [ "$ps" = connected ] && [ "$ss" = none ] && [ "$left" -eq 0 ] && [ "$runs" -gt "$RUNS0" ]; then
        read -r aps ass _ _ _ ads arole <<<"$(sync_fields A)"
        [ "$aps" = connected ] && [ "$ass" = none ] && [ "$ads" = UpToDate ] && break
    fi
    [ "$i" -lt $(($(tscale 45) * 5)) ] || {
        tail -20 "${NODE_LOG[A]}" >&2
        fail "resync B -> A not finished within $(tscale 45) s: B: $(sync_fields B); A: $(sync_fields A)"
    }
    sleep 0.2
done
info "resync done $((SECONDS - t0)) s after A's restart (B: $moved bytes moved, run $runs)"
assert_eq "$role" primary "B's role after the resync"
assert_eq "$arole" secondary "A's role after the resync"
grep -q "waiting for the peer's dirty bitmap" "${NODE_LOG[B]}" ||
    fail "B did not wait for A's bitmap (A's crash bits were not offered)"
merged=$(sed -n "s/.*peer's bitmap merged: \([0-9]*\) bytes to resync in all.*/\1/p" "${NODE_LOG[B]}" | tail -n 1)
[ -n "$merged" ] || fail "B did not log merging A's bitmap"
info "B merged A's bitmap: $merged bytes to resync (B alone: $b_dirty)"
[ "$merged" -gt "$b_dirty" ] || fail "after merging A's bitmap B resyncs $merged bytes, no more than its own $b_dirty"
[ "$moved" -ge "$merged" ] || fail "the resync moved $moved bytes, less than the $merged merged"
grep -q 'resync target (from the peer' "${NODE_LOG[A]}" || fail "A did not become a bitmap resync target"

node_stop B
node_stop A
step "compare the two images"
NOFF=$(acked_offsets "$TEST_DIR/ack.log")
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "A and B differ after failover and resync"
cmp -s -n 4096 "$TEST_DIR/junk" <(tail -c +$((poke_off + 1)) "$TEST_DIR/a.img") &&
    fail "the junk block planted in A's image survived the resync"
for n in a b; do
    verify "$TEST_DIR/ack.log" "$TEST_DIR/$n.img" "$TEST_DIR/verify-$n.out" ||
        fail "acknowledged writes missing from $n.img after failover and resync"
    grep -q "^$NOFF acknowledged writes checked, 0 missing/corrupt" "$TEST_DIR/verify-$n.out" ||
        fail "verify of $n.img did not check all $NOFF acknowledged offsets"
done
echo "PASS: $TEST_NAME"
