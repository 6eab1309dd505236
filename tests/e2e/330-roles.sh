#!/usr/bin/env bash
# Roles and the data they may serve.
#   1. Unrelated data is never replicated:
#      (a) two independently created volumes with the same name: refused,
#          UUID;
#      (b) a volume and one made with `repvol create --uuid` of it, each
#          written standalone (so their generations share no history):
#          refused, GENERATION ("unrelated data").
#      Peer state "refused" on both nodes, reason in last_refusal, data
#      regions unchanged.
#   2. An Inconsistent copy (B killed midway through a resync rate-limited
#      with --resync-rate 5M) started alone is not promoted by `repvol
#      primary` (the message says Inconsistent; role, disk state, data and
#      the closed export unchanged); `repvol primary --force` (on a copy of
#      that image) does promote it.  The resync then completes.
#   3. Demotion with an NBD client connected is refused (the client keeps
#      working); `repvol secondary --force` disconnects it.  The demoted
#      node refuses NBD clients, like every secondary; B, promoted, accepts
#      them and replicates to A.
# Ends comparing both images byte for byte.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_python_nbd

SIZE=$((64 << 20))
MiB=$((1 << 20))
PEER_ARGS=(--peer-timeout 2000)
repl_setup

info_field() { "$REPVOL" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

# standalone_write IMG OFFSET FILE: serve IMG alone (no peer) and write.
# standalone_write IMG OFFSET FILE [DAEMON ARGS]: write FILE at OFFSET with a
# standalone daemon (an empty mirror needs --force-primary for that).
standalone_write() {
    local img=$1 off=$2 file=$3
    shift 3
    start_repvold "$img" "$TEST_DIR/standalone.sock" "$@"
    nbd_write "$REPVOLD_URI" "$off" "$file"
    stop_repvold
}

# wait_log LOG REGEX [SECS]
wait_log() {
    local i
    for ((i = 0; i < $(tscale "${3:-15}") * 10; i++)); do
        grep -qE -- "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}

# expect_refused N REASON: node N shows peer state "refused" and
# last_refusal starting with REASON.
expect_refused() {
    local n=$1 reason=$2 r
    node_wait_peer_state "$n" refused 20
    r=$(status_field "$n" 'd["peer"]["last_refusal"]')
    info "node $n: refused: $r"
    case $r in "$reason: "*) ;; *) fail "node $n: last_refusal '$r' does not start with '$reason: '" ;; esac
    node_alive "$n" || fail "node $n died"
}

# refusal_case NAME REASON IMG_A IMG_B: A primary, B secondary must refuse
# each other with REASON; neither data region changes.
refusal_case() {
    local name=$1 reason=$2 a=$3 b=$4 sa sb
    step "$name: refused with $reason"
    sa=$(data_sha "$a" "$SIZE")
    sb=$(data_sha "$b" "$SIZE")
    node_start B "$b" secondary "${PEER_ARGS[@]}"
    node_start A "$a" primary "${PEER_ARGS[@]}"
    expect_refused A "$reason"
    expect_refused B "$reason"
    sleep 1
    assert_eq "$(node_peer_state A)" refused "$name: A's peer state a second later"
    grep -q 'connected to peer node' "${NODE_LOG[A]}" "${NODE_LOG[B]}" && fail "$name: the nodes connected"
    expect_fail nbdinfo --size "${NODE_URI[B]}"
    node_stop A
    node_stop B
    assert_eq "$(data_sha "$a" "$SIZE")" "$sa" "$name: A's data region changed"
    assert_eq "$(data_sha "$b" "$SIZE")" "$sb" "$name: B's data region changed"
}

# ---------------------------------------------------------------- 1
mkdir "$TEST_DIR/a" "$TEST_DIR/b" "$TEST_DIR/m"
create_volume "$TEST_DIR/a/vol.img" "$SIZE" >/dev/null
create_volume "$TEST_DIR/b/vol.img" "$SIZE" >/dev/null
assert_eq "$(info_field "$TEST_DIR/a/vol.img" name)" "$(info_field "$TEST_DIR/b/vol.img" name)" "the two volumes' names"
random_file "$TEST_DIR/da" $((2 * MiB))
random_file "$TEST_DIR/db" $((2 * MiB))
standalone_write "$TEST_DIR/a/vol.img" $((4 * MiB)) "$TEST_DIR/da"
standalone_write "$TEST_DIR/b/vol.img" $((4 * MiB)) "$TEST_DIR/db"
refusal_case "(1a) same name, different volumes" UUID "$TEST_DIR/a/vol.img" "$TEST_DIR/b/vol.img"

UUID=$(info_field "$TEST_DIR/a/vol.img" uuid)
create_volume "$TEST_DIR/m/vol.img" "$SIZE" --uuid "$UUID" >/dev/null
assert_eq "$(info_field "$TEST_DIR/m/vol.img" uuid)" "$UUID" "the mirror's uuid"
random_file "$TEST_DIR/da2" $((1 * MiB))
standalone_write "$TEST_DIR/a/vol.img" $((8 * MiB)) "$TEST_DIR/da2"
step "(1b) an empty mirror is not served as primary without --force-primary"
expect_fail "$REPVOLD" --volume "$TEST_DIR/m/vol.img" --listen "unix:$TEST_DIR/refused.sock" \
    --control "$TEST_DIR/refused.ctl" --no-mlock
grep -q "refusing to serve an Inconsistent copy as primary" "$TEST_DIR/expect_fail.err" ||
    fail "no clear refusal for serving an empty mirror: $(cat "$TEST_DIR/expect_fail.err")"
standalone_write "$TEST_DIR/m/vol.img" $((4 * MiB)) "$TEST_DIR/db" --force-primary
info "generations: A $(info_field "$TEST_DIR/a/vol.img" current_gen), mirror $(info_field "$TEST_DIR/m/vol.img" current_gen)"
refusal_case "(1b) same uuid, unrelated generations" GENERATION "$TEST_DIR/a/vol.img" "$TEST_DIR/m/vol.img"
grep -q 'unrelated data' "${NODE_LOG[A]}" || fail "(1b): A's log does not call the data unrelated"

# ---------------------------------------------------------------- 2
step "(2) B killed midway through a resync at 5M/s"
create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}" --resync-rate 5M
node_wait_peer_state A connected
node_wait_peer_state B connected
node_stop B
random_file "$TEST_DIR/src" $((24 * MiB))
tmo 60 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}" || fail "nbdcopy through the degraded primary"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
for ((i = 0; ; i++)); do
    read -r ss pct <<<"$(status_field A 'd["peer"]["sync"]["state"], int(d["peer"]["sync"]["percent"])')"
    [ "$ss" = source ] && [ "$pct" -ge 10 ] && break
    [ "$i" -lt $(($(tscale 20) * 20)) ] || fail "the resync did not reach 10% within $(tscale 20) s ($ss at $pct%)"
    sleep 0.05
done
[ "$pct" -lt 90 ] || fail "the resync was at $pct% when first seen past 10%: the rate limit did not hold"
node_kill B
info "B killed with the resync at $pct%"
node_stop A
assert_eq "$(info_field "$TEST_DIR/b.img" disk_state)" Inconsistent "B's disk state on disk after dying midway"

step "(2) B alone: 'repvol primary' refuses the Inconsistent copy"
sb=$(data_sha "$TEST_DIR/b.img" "$SIZE")
cp --sparse=always "$TEST_DIR/b.img" "$TEST_DIR/b-force.img"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
assert_eq "$(status_field B 'd["disk_state"], d["role"]')" "Inconsistent secondary" "B's state when started alone"
expect_fail "$REPVOL" primary --control "${NODE_CTL[B]}"
info "refused: $(cat "$TEST_DIR/expect_fail.err")"
grep -q 'Inconsistent' "$TEST_DIR/expect_fail.err" || fail "the refusal does not say the copy is Inconsistent"
assert_eq "$(status_field B 'd["disk_state"], d["role"]')" "Inconsistent secondary" "B's state after the refused promotion"
expect_fail nbdinfo --size "${NODE_URI[B]}"
node_stop B
assert_eq "$(data_sha "$TEST_DIR/b.img" "$SIZE")" "$sb" "B's data region after the refused promotion"
assert_eq "$(info_field "$TEST_DIR/b.img" disk_state)" Inconsistent "B's disk state on disk after the refused promotion"

step "(2) on a copy of that image, 'repvol primary --force' promotes it"
node_start B "$TEST_DIR/b-force.img" secondary "${PEER_ARGS[@]}"
out=$(tmo 30 "$REPVOL" primary --force --control "${NODE_CTL[B]}" 2>&1) || fail "repvol primary --force: $out"
assert_eq "$(status_field B 'd["disk_state"], d["role"]')" "UpToDate primary" "B's state after the forced promotion"
wait_log "${NODE_LOG[B]}" 'forced promotion of a Inconsistent copy|promoted to primary \(forced\)' 5 ||
    fail "the forced promotion is not logged as forced"
tmo 10 nbdinfo --size "${NODE_URI[B]}" >/dev/null || fail "the force-promoted copy does not serve NBD"
node_stop B
rm -f "$TEST_DIR/b-force.img"

step "(2) A and B together again: the resync completes"
node_start B "$TEST_DIR/b.img" secondary "${PEER_ARGS[@]}"
node_start A "$TEST_DIR/a.img" primary "${PEER_ARGS[@]}"
for ((i = 0; ; i++)); do
    read -r aps ass aleft <<<"$(status_field A 'd["peer"]["state"], d["peer"]["sync"]["state"], d["peer"]["sync"]["bytes_left"]')"
    read -r bps bds <<<"$(status_field B 'd["peer"]["state"], d["disk_state"]')"
    [ "$aps" = connected ] && [ "$ass" = none ] && [ "$aleft" = 0 ] && [ "$bps" = connected ] && [ "$bds" = UpToDate ] && break
    [ "$i" -lt $(($(tscale 30) * 5)) ] || fail "resync not finished within $(tscale 30) s: A $aps/$ass/$aleft; B $bps/$bds"
    sleep 0.2
done

# ---------------------------------------------------------------- 3
step "(3) the secondary refuses NBD clients"
expect_fail nbdinfo --size "${NODE_URI[B]}"

step "(3) demoting A with a client connected"
H=$TEST_DIR/holder
mkdir "$H"
random_file "$TEST_DIR/m1" 4096
random_file "$TEST_DIR/m2" 4096
"$PYTHON_NBD" - "${NODE_URI[A]}" "$H" "$TEST_DIR/m1" "$TEST_DIR/m2" $((40 * MiB)) >"$H/out" 2>&1 <<'PY' &
import nbd, os, sys, time
uri, d, m1, m2, off = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def wait_for(name):
    for _ in range(600):
        if os.path.exists(os.path.join(d, name)):
            return
        time.sleep(0.1)
    sys.exit("holder: no " + name + " within 60 s")
def report(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text + "\n")
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(open(m1, "rb").read(), off)
h.flush()
report("ready", "connected")
wait_for("go1")
try:
    b = open(m2, "rb").read()
    h.pwrite(b, off + 4096)
    h.flush()
    ok = h.pread(4096, off + 4096) == b
    report("r1", "ALIVE" if ok else "WRONG DATA")
except Exception as e:
    report("r1", "DEAD " + str(e))
wait_for("go2")
try:
    h.pread(4096, 0)
    report("r2", "ALIVE")
except Exception as e:
    report("r2", "DEAD " + str(e))
PY
HOLDER=$!
track_pid "$HOLDER"
wait_file() {
    local i
    for ((i = 0; i < $(tscale 30) * 10; i++)); do
        [ -e "$1" ] && return 0
        pid_alive "$HOLDER" || break
        sleep 0.1
    done
    [ -e "$1" ] || { cat "$H/out" >&2; fail "the NBD client holder gave no $(basename "$1")"; }
}
wait_file "$H/ready"
expect_fail "$REPVOL" secondary --control "${NODE_CTL[A]}"
info "refused: $(cat "$TEST_DIR/expect_fail.err")"
grep -q 'client' "$TEST_DIR/expect_fail.err" || fail "the refusal does not mention the connected client"
assert_eq "$(status_field A 'd["role"]')" primary "A's role after the refused demotion"
touch "$H/go1"
wait_file "$H/r1"
assert_eq "$(cat "$H/r1")" ALIVE "the client's writes after the refused demotion"

step "(3) 'repvol secondary --force' disconnects the client"
out=$(tmo 30 "$REPVOL" secondary --force --control "${NODE_CTL[A]}" 2>&1) || fail "repvol secondary --force on A: $out"
assert_eq "$(status_field A 'd["role"]')" secondary "A's role after the forced demotion"
touch "$H/go2"
wait_file "$H/r2"
case $(cat "$H/r2") in DEAD*) info "client after the forced demotion: $(cat "$H/r2")" ;;
*) fail "the client is still served after the forced demotion: $(cat "$H/r2")" ;; esac
wait_bounded "$HOLDER" 30 || { cat "$H/out" >&2; fail "the NBD client holder failed"; }
step "(3) the demoted A refuses NBD clients"
expect_fail nbdinfo --size "${NODE_URI[A]}"

step "(3) promote B: it accepts clients and replicates to A"
for ((i = 0; i < $(tscale 10) * 10; i++)); do
    [ "$(node_peer_state B)" != connected ] && break
    sleep 0.1
done
out=$(tmo 30 "$REPVOL" primary --control "${NODE_CTL[B]}" 2>&1) || fail "repvol primary on B: $out"
assert_eq "$(status_field B 'd["role"]')" primary "B's role after promotion"
tmo 10 nbdinfo --size "${NODE_URI[B]}" >/dev/null || fail "the promoted B does not serve NBD"
node_wait_peer_state B connected 30
node_wait_peer_state A connected 10
random_file "$TEST_DIR/viab" $((4 * MiB))
nbd_write "${NODE_URI[B]}" $((48 * MiB)) "$TEST_DIR/viab"
for ((i = 0; ; i++)); do
    read -r bps bss bleft <<<"$(status_field B 'd["peer"]["state"], d["peer"]["sync"]["state"], d["peer"]["sync"]["bytes_left"]')"
    [ "$bps" = connected ] && [ "$bss" = none ] && [ "$bleft" = 0 ] && break
    [ "$i" -lt $(($(tscale 30) * 5)) ] || fail "B not in sync with A within $(tscale 30) s: $bps/$bss/$bleft"
    sleep 0.2
done
node_stop B
node_stop A

step "compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "A and B differ"
cmp -s -n $((24 * MiB)) "$TEST_DIR/src" "$TEST_DIR/b.img" || fail "B lacks the data written through A while it was away"
cmp -s "$TEST_DIR/m1" <(tail -c +$((40 * MiB + 1)) "$TEST_DIR/b.img" | head -c 4096) || fail "B lacks the client's first block"
cmp -s "$TEST_DIR/m2" <(tail -c +$((40 * MiB + 4096 + 1)) "$TEST_DIR/b.img" | head -c 4096) ||
    fail "B lacks the block the client wrote after the refused demotion"
cmp -s "$TEST_DIR/viab" <(tail -c +$((48 * MiB + 1)) "$TEST_DIR/a.img" | head -c $((4 * MiB))) ||
    fail "A lacks the data written through the promoted B"
echo "PASS: $TEST_NAME"
