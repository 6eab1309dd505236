#!/usr/bin/env bash
# tests/chaos/soak.sh - chaos soak of a replicated pair (mode C).
#
#   sudo bash tests/chaos/soak.sh [--duration SECS] [--seed N] [--max-faults N]
#
# Two nodes in network namespaces (tests/e2e/repl-functions.sh).  Epoch after
# epoch a client writes through the current primary with the acknowledged-
# writes checker (tests/helpers/ack-checker, one run per epoch, all runs
# appended to one log) and, when the fault leaves the primary alone, fio with
# verification on a separate region; meanwhile the driver injects one fault
# chosen at random (reproducible with --seed):
#
#   link-down         ip link set down on the veth for 0.5-3 s
#   nft-drop          nftables drops every packet on the veth for 0.5-3 s
#                     (the link stays up: a silent partition)
#   kill-secondary    kill -9 the secondary, restart it after 0-2 s
#   restart-secondary SIGTERM (must exit 0) and restart the secondary
#   kill-primary      (only with the pair connected and in sync) kill -9 the
#                     primary, promote the secondary (`repvol primary`), the
#                     old primary comes back as secondary: roles swap
#   restart-primary   SIGTERM (must exit 0) and restart the primary
#   kill-both         kill -9 both nodes at once (a power cut without losing
#                     the page cache), restart both in the same roles
#
# After each epoch the pair is given time to reconnect and resync (always
# before a kill-primary; otherwise at random, so faults also hit a resync
# in progress).  At the end: the pair connected and in sync, a last fio
# write+verify pass through the primary, both nodes stopped cleanly, the
# two images byte for byte identical (cmp), and every acknowledged write
# of every run on the final primary's image (ack-checker verify; a block
# that holds a later run's unacknowledged write instead is "in doubt", not
# lost); likewise right after every promotion and every restart after
# kill-both, through the primary's export, for everything acknowledged
# until then.  A summary table follows: faults by kind, writes acknowledged and
# verified, losses (must be 0), bytes resynced.
#
# Bounded: the fault loop stops at --duration (default 180 s) or after
# --max-faults (default duration/2) faults; every wait has a limit.
# Network namespaces, veth, nftables tables and processes go away on any
# exit (the e2e harness's EXIT trap).  Exit 0 pass, 1 fail, 77 skip.
DURATION=180
SEED=
MAX_FAULTS=
while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --max-faults) MAX_FAULTS=$2; shift 2 ;;
    -h | --help) sed -n '2,/^DURATION=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (--duration SECS, --seed N, --max-faults N)" >&2; exit 2 ;;
    esac
done
case $DURATION in '' | *[!0-9]*) echo "soak.sh: --duration must be a number of seconds" >&2; exit 2 ;; esac
[ -n "$SEED" ] || SEED=$(( $(date +%s) % 100000 ))
[ -n "$MAX_FAULTS" ] || MAX_FAULTS=$((DURATION / 2 + 1))

# The e2e harness: TEST_DIR, cleanup traps, node_* helpers.
. "$(dirname "$0")/../e2e/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_root
require_binaries
require_cmd python3 python3
require_cmd cmp diffutils
require_cmd ip iproute2
require_cmd nbdcopy libnbd-bin
ACK_CHECKER=$abs_top_builddir/tests/helpers/ack-checker
[ -x "$ACK_CHECKER" ] || fail "$ACK_CHECKER not built (make check builds it)"
HAVE_FIO=yes
command -v fio >/dev/null 2>&1 || HAVE_FIO=no
HAVE_NFT=yes
command -v nft >/dev/null 2>&1 || HAVE_NFT=no

RANDOM=$SEED
SIZE=$((64 << 20))
ACK_MB=48                       # ack-checker: the first 48 MiB
FIO_OFF=48M                     # fio: the last 16 MiB
PEER_ARGS=(--peer-timeout 2000)
LOG=$TEST_DIR/ack.log
T_START=$SECONDS
T_END=$((T_START + DURATION))

step "seed $SEED, duration ${DURATION} s, at most $MAX_FAULTS faults (fio: $HAVE_FIO, nft: $HAVE_NFT)"

repl_setup
[ "$REPL_NET" = netns ] || skip "the soak needs network namespaces (root + iproute2)"
VETH="rv$$va"                   # A's end of the veth (repl-functions.sh)

create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
declare -A IMG=([A]=$TEST_DIR/a.img [B]=$TEST_DIR/b.img)
P=A                             # current primary
S=B                             # current secondary

declare -A FAULTS=()
NFAULTS=0
EPOCHS=0
FIO_RUNS=0
FIO_WRITES=0
FIO_READS=0
IN_DOUBT=0

rand() { echo $((RANDOM % ($2 - $1 + 1) + $1)); }                 # rand LO HI
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
elapsed() { echo $((SECONDS - T_START)); }
note() { info "[$(printf '%3d' "$(elapsed)") s] $*"; }

start_node() { node_start "$1" "${IMG[$1]}" "$2" "${PEER_ARGS[@]}"; }

# healthy: both nodes up, connected, nothing left to resync, S UpToDate.
healthy() {
    local ps ss left ds
    node_alive "$P" && node_alive "$S" || return 1
    read -r ps ss _ _ left _ ds <<<"$(sync_fields "$P")"
    [ "$ps" = connected ] && [ "$ss" = none ] && [ "$left" -eq 0 ] && [ "$ds" = UpToDate ] || return 1
    read -r ps ss _ _ left _ ds <<<"$(sync_fields "$S")"
    [ "$ps" = connected ] && [ "$ss" = none ] && [ "$ds" = UpToDate ]
}

# wait_healthy SECS
wait_healthy() {
    local deadline=$((SECONDS + $(tscale "$1")))
    while [ "$SECONDS" -lt "$deadline" ]; do
        healthy && return 0
        sleep 0.2
    done
    tail -n 15 "${NODE_LOG[$P]}" "${NODE_LOG[$S]}" >&2
    fail "pair not connected and in sync within $(tscale "$1") s: $P: $(sync_fields "$P"); $S: $(sync_fields "$S")"
}

# ---------------------------------------------------------------- client

CHECKER=
start_checker() {
    CHECKER_OUT=$TEST_DIR/checker.$EPOCHS.out
    "$ACK_CHECKER" write --uri "${NODE_URI[$P]}" --log "$LOG" --region-mb "$ACK_MB" \
        --depth 8 --rate 1500 --seconds "$1" --seed "$RANDOM" >"$CHECKER_OUT" 2>&1 &
    CHECKER=$!
    track_pid "$CHECKER"
}

finish_checker() {
    local rc=0
    wait_bounded "$CHECKER" 60 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$CHECKER_OUT" >&2; fail "ack-checker exited with status $rc (epoch $EPOCHS)"; }
    # An error reply to a write is never acceptable: the primary either
    # stores a write or the connection dies with it unanswered (libnbd then
    # fails what was in flight with ENOTCONN; those are not acknowledged).
    if ! grep -q ' 0 failed,' "$CHECKER_OUT" &&
        ! { grep -q 'the connection died' "$CHECKER_OUT" &&
            grep -q 'first failed write: Transport endpoint is not connected' "$CHECKER_OUT"; }; then
        cat "$CHECKER_OUT" >&2
        fail "the primary failed writes (epoch $EPOCHS)"
    fi
    CHECKER_LINE=$(grep -o '[0-9]* acknowledged, .*' "$CHECKER_OUT" | head -n 1)
}

FIO=
start_fio() {
    [ "$HAVE_FIO" = yes ] || return 0
    FIO_OUT=$TEST_DIR/fio.$EPOCHS.json
    fio --name=chaos --ioengine=nbd --uri="${NODE_URI[$P]}" --rw=randwrite --bs=4k --iodepth=8 \
        --offset="$FIO_OFF" --size=16M --time_based --runtime="$1" \
        --verify=crc32c --verify_backlog=512 --verify_fatal=1 --randseed="$RANDOM" \
        --output-format=json --output="$FIO_OUT" </dev/null 2>"$FIO_OUT.err" &
    FIO=$!
    track_pid "$FIO"
}

# finish_fio: fio ran through a fault that left the primary alone: it must
# finish by itself without a single error or verify failure.
finish_fio() {
    [ -n "$FIO" ] || return 0
    local rc=0 res
    wait_bounded "$FIO" 90 || rc=$?
    FIO=
    [ "$rc" -eq 0 ] || { cat "$FIO_OUT.err" "$FIO_OUT" >&2; fail "fio exited with status $rc (epoch $EPOCHS)"; }
    res=$(python3 - "$FIO_OUT" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
assert j["error"] == 0, "fio error %d" % j["error"]
print(j["write"]["total_ios"], j["read"]["total_ios"])
PY
) || { cat "$FIO_OUT" >&2; fail "fio reported an error (epoch $EPOCHS)"; }
    FIO_RUNS=$((FIO_RUNS + 1))
    FIO_WRITES=$((FIO_WRITES + ${res% *}))
    FIO_READS=$((FIO_READS + ${res#* }))
}

# ---------------------------------------------------------------- faults

nft_drop_on() {
    ip netns exec "${NODE_NS[A]}" nft -f - <<EOF
table inet rvchaos {
    chain in { type filter hook input priority 0; policy accept; iifname "$VETH" drop; }
    chain out { type filter hook output priority 0; policy accept; oifname "$VETH" drop; }
}
EOF
}
nft_drop_off() { ip netns exec "${NODE_NS[A]}" nft delete table inet rvchaos; }
on_exit "ip netns exec '${NODE_NS[A]}' nft delete table inet rvchaos"

# failover_check N: right after a promotion, before anything else is
# written, every write acknowledged so far (all runs) reads back through
# node N's export (a later unacknowledged write in its place is in doubt).
FAILOVER_CHECKS=0
FAILOVER_CHECKED=0
failover_check() {
    local rc=0 out=$TEST_DIR/failover.$EPOCHS.out
    tmo 60 nbdcopy "${NODE_URI[$1]}" "$TEST_DIR/export.raw" || fail "nbdcopy of $1's export failed"
    tmo 60 "$ACK_CHECKER" verify --unacked-later-ok --log "$LOG" --image "$TEST_DIR/export.raw" >"$out" 2>&1 || rc=$?
    rm -f "$TEST_DIR/export.raw"
    [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "acknowledged writes missing on $1 after failover (epoch $EPOCHS)"; }
    FAILOVER_CHECKS=$((FAILOVER_CHECKS + 1))
    FAILOVER_CHECKED=$((FAILOVER_CHECKED + $(sed -n 's/^\([0-9]*\) acknowledged writes checked.*/\1/p' "$out")))
    note "failover check: $(grep 'acknowledged writes checked' "$out" | cut -d'(' -f1)on $1's export"
}

promote() {
    local n=$1 i out
    wait_not_connected "$n" 10
    for ((i = 0; i < 20; i++)); do
        out=$(tmo 30 "$REPVOL" primary --control "${NODE_CTL[$n]}" 2>&1) && return 0
        sleep 0.25
    done
    fail "repvol primary on $n: $out"
}

pick_fault() {
    local -a kinds=(link-down link-down kill-secondary kill-secondary restart-secondary kill-primary
        kill-primary restart-primary kill-both)
    [ "$HAVE_NFT" = yes ] && kinds+=(nft-drop nft-drop)
    echo "${kinds[RANDOM % ${#kinds[@]}]}"
}

inject() {
    local kind=$1 d
    case $kind in
    link-down)
        d=$(rand 500 3000)
        note "fault: link down for $d ms"
        link_down
        msleep "$d"
        link_up
        ;;
    nft-drop)
        d=$(rand 500 3000)
        note "fault: nftables drops all replication traffic for $d ms"
        nft_drop_on
        msleep "$d"
        nft_drop_off
        ;;
    kill-secondary)
        d=$(rand 0 2000)
        note "fault: kill -9 secondary $S, restart after $d ms"
        node_kill "$S"
        msleep "$d"
        start_node "$S" secondary
        ;;
    restart-secondary)
        note "fault: restart secondary $S (SIGTERM)"
        node_stop "$S"
        start_node "$S" secondary
        ;;
    kill-primary)
        note "fault: kill -9 primary $P, promote $S, $P returns as secondary"
        node_kill "$P"
        promote "$S"
        wait_export "$S"
        failover_check "$S"
        local old=$P
        P=$S
        S=$old
        start_node "$S" secondary
        ;;
    kill-both)
        d=$(rand 0 1000)
        note "fault: kill -9 both nodes, restart both after $d ms"
        node_kill "$P"
        node_kill "$S"
        msleep "$d"
        start_node "$S" secondary
        start_node "$P" primary
        wait_export "$P"
        failover_check "$P"
        ;;
    restart-primary)
        note "fault: restart primary $P (SIGTERM)"
        node_stop "$P"
        start_node "$P" primary
        wait_export "$P"
        ;;
    esac
    FAULTS[$kind]=$((${FAULTS[$kind]:-0} + 1))
    NFAULTS=$((NFAULTS + 1))
}

# ---------------------------------------------------------------- run

start_node B secondary
start_node A primary
wait_healthy 30
wait_export A

while [ "$SECONDS" -lt "$T_END" ] && [ "$NFAULTS" -lt "$MAX_FAULTS" ]; do
    EPOCHS=$((EPOCHS + 1))
    kind=$(pick_fault)
    if [ "$kind" = kill-primary ] && ! healthy; then
        # A promoted secondary must have every acknowledged write: only
        # when the pair is connected and in sync (otherwise fencing would
        # be needed; tests/e2e/340-fence-peer.sh).
        wait_healthy 60
    fi
    delay=$(rand 500 2500)
    start_checker $((delay / 1000 + 6))
    case $kind in
    link-down | nft-drop | kill-secondary | restart-secondary) start_fio $((delay / 1000 + 5)) ;;
    esac
    msleep "$delay"
    inject "$kind"
    finish_checker
    finish_fio
    note "epoch $EPOCHS ($kind): $CHECKER_LINE; primary now $P"
    # Let the pair recover: always before the primary may die, else at random.
    if [ $((RANDOM % 2)) -eq 0 ]; then wait_healthy 60; fi
done

step "faults over after $(elapsed) s: waiting for the pair to be in sync"
wait_healthy 90
if [ "$HAVE_FIO" = yes ]; then
    step "a last fio write + verify pass through primary $P"
    tmo 120 fio --name=final --ioengine=nbd --uri="${NODE_URI[$P]}" --rw=randwrite --bs=64k --iodepth=8 \
        --offset="$FIO_OFF" --size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output-format=json --output="$TEST_DIR/fio.final.json" </dev/null 2>"$TEST_DIR/fio.final.err" ||
        { cat "$TEST_DIR/fio.final.err" "$TEST_DIR/fio.final.json" >&2; fail "final fio verify failed"; }
    FIO_RUNS=$((FIO_RUNS + 1))
    wait_healthy 30
fi
# Both stop cleanly (exit 0, no sanitizer report); the secondary last, so
# it has everything the primary sent.
node_stop "$P"
node_stop "$S"

step "final checks"
assert_bytes_equal "${IMG[A]}" "${IMG[B]}" "$SIZE" "the two images differ after the soak"
info "images identical (cmp of the ${SIZE}-byte data regions)"
rc=0
tmo 120 "$ACK_CHECKER" verify --unacked-later-ok --log "$LOG" --image "${IMG[$P]}" >"$TEST_DIR/verify.out" 2>&1 || rc=$?
sed 's/^/    /' "$TEST_DIR/verify.out"
[ "$rc" -le 1 ] || fail "ack-checker verify could not run (status $rc)"
read -r VERIFIED LOSSES <<<"$(sed -n 's/^\([0-9]*\) acknowledged writes checked, \([0-9]*\) missing.*/\1 \2/p' "$TEST_DIR/verify.out")"
IN_DOUBT=$(sed -n 's/^(\([0-9]*\) blocks hold a later run.*/\1/p' "$TEST_DIR/verify.out")
ACKED=$(grep -vc '^#' "$LOG" || true)
RUNS=$(grep -c '^# ack-checker run' "$LOG" || true)

# Bytes resynced: every completed resync, as the source logged it.
read -r RESYNCS RESYNC_BYTES <<<"$(cat "$TEST_DIR"/node*.log | python3 -c '
import re, sys
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
n = tot = 0
for m in re.finditer(r"resync complete: ([0-9.]+) (B|KiB|MiB|GiB) in", sys.stdin.read()):
    n += 1
    tot += float(m.group(1)) * units[m.group(2)]
print(n, int(tot))')"

{
    printf '\n==== chaos soak summary (seed %s) ====\n' "$SEED"
    printf '%-34s %s\n' "duration" "$(elapsed) s (fault loop ${DURATION} s budget), $EPOCHS epochs"
    printf '%-34s %s\n' "faults injected" "$NFAULTS"
    for k in link-down nft-drop kill-secondary restart-secondary kill-primary restart-primary kill-both; do
        printf '  %-32s %s\n' "$k" "${FAULTS[$k]:-0}"
    done
    printf '%-34s %s\n' "writes acknowledged (ack-checker)" "$ACKED in $RUNS runs"
    printf '%-34s %s\n' "writes verified on final primary" "${VERIFIED:-?} distinct blocks (${IN_DOUBT:-0} in doubt)"
    printf '%-34s %s\n' "crash checks (promotion, kill-both)" "$FAILOVER_CHECKS, $FAILOVER_CHECKED acknowledged writes checked, 0 missing"
    printf '%-34s %s\n' "losses" "${LOSSES:-?}"
    printf '%-34s %s\n' "fio runs (verify)" "$FIO_RUNS: $FIO_WRITES writes, $FIO_READS verify reads, 0 errors"
    printf '%-34s %s\n' "resyncs completed / bytes resynced" "$RESYNCS / $RESYNC_BYTES (~$((RESYNC_BYTES >> 20)) MiB)"
    printf '%-34s %s\n' "images" "identical (cmp)"
    printf '%-34s %s\n' "final primary" "$P"
} | tee "$TEST_DIR/summary.txt"
[ -n "${CHAOS_SUMMARY:-}" ] && cp "$TEST_DIR/summary.txt" "$CHAOS_SUMMARY"
[ "$rc" -eq 0 ] && [ "${LOSSES:-1}" -eq 0 ] || fail "${LOSSES:-?} acknowledged writes lost"
[ "$ACKED" -gt 0 ] || fail "no write was acknowledged: the soak tested nothing"
