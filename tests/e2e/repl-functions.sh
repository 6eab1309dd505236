# shellcheck shell=bash disable=SC2034
# tests/e2e/repl-functions.sh - two replicating nodes for end-to-end tests.
# Source after functions.sh.
#
# The two "hosts" are two network namespaces joined by a veth pair, created
# here and removed by the EXIT trap (addresses 10.77.0.1 and 10.77.0.2 exist
# only inside those namespaces).  Where namespaces can't be made (no root,
# no iproute2), both nodes run on 127.0.0.1 with different ports.
# NBD and control sockets are Unix sockets in $TEST_DIR, reachable from the
# test's own namespace.
#
#   repl_setup                          -> REPL_NET (netns|loopback), NODE_ADDR[A|B], REPL_PORT[A|B]
#   node_start N IMG ROLE [ARGS...]     start node N (A or B); ROLE primary|secondary;
#                                       the primary gets --listen unix:NODE_SOCK[N]
#   node_stop N [SIGNAL] [SECS]         stop, assert exit 0 and a clean log (TERM/INT)
#   node_kill N                         kill -9 and reap
#   node_alive N
#   node_status_json N                  `repvol status --json` of node N
#   node_peer_state N                   e.g. connected, disconnected, refused
#   node_wait_peer_state N STATE [SECS] poll until the peer link is in STATE
#   wait_export N                       node N's NBD export answers (bounded)
#   link_down / link_up                 cut / restore the veth (netns mode only)
#   sync_fields N / wait_resync_done RUNS0 SECS / wait_not_connected N SECS
#                                       resync progress (see below)
#   status_field N EXPR                 EXPR over d = node N's status JSON
#   nbd_write URI OFFSET FILE           write FILE at OFFSET (python3-libnbd), flush
#   REPL_SECURITY                       daemon options for the link's security
#                                       (default --insecure: plain TCP)
#   NODE_PID[N] NODE_LOG[N] NODE_CTL[N] NODE_SOCK[N] NODE_URI[N] NODE_NS[N]

declare -A NODE_PID=() NODE_LOG=() NODE_CTL=() NODE_SOCK=() NODE_URI=() NODE_NS=() NODE_ADDR=() REPL_PORT=()
REPL_NET=
_repl_nstarts=0

_repl_cleanup() {
    local n
    for n in A B; do
        if [ -n "${NODE_PID[$n]:-}" ] && pid_alive "${NODE_PID[$n]}"; then
            kill -KILL "${NODE_PID[$n]}" 2>/dev/null || true
            wait "${NODE_PID[$n]}" 2>/dev/null || true
        fi
    done
    if [ "$REPL_NET" = netns ]; then
        ip netns del "${NODE_NS[A]}" 2>/dev/null || true
        ip netns del "${NODE_NS[B]}" 2>/dev/null || true
    fi
}

repl_setup() {
    local tag="rv$$"
    NODE_NS[A]="${tag}a"
    NODE_NS[B]="${tag}b"
    on_exit _repl_cleanup
    if [ "${REPL_FORCE_LOOPBACK:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null &&
        ip netns add "${NODE_NS[A]}" 2>/dev/null; then
        REPL_NET=netns
        ip netns add "${NODE_NS[B]}" || fail "ip netns add ${NODE_NS[B]}"
        ip link add "${tag}va" type veth peer name "${tag}vb" || fail "ip link add veth"
        ip link set "${tag}va" netns "${NODE_NS[A]}"
        ip link set "${tag}vb" netns "${NODE_NS[B]}"
        ip -n "${NODE_NS[A]}" addr add 10.77.0.1/24 dev "${tag}va"
        ip -n "${NODE_NS[B]}" addr add 10.77.0.2/24 dev "${tag}vb"
        ip -n "${NODE_NS[A]}" link set lo up
        ip -n "${NODE_NS[B]}" link set lo up
        ip -n "${NODE_NS[A]}" link set "${tag}va" up
        ip -n "${NODE_NS[B]}" link set "${tag}vb" up
        NODE_ADDR[A]=10.77.0.1
        NODE_ADDR[B]=10.77.0.2
        REPL_PORT[A]=7789
        REPL_PORT[B]=7789
        # A veth pair carries traffic as soon as both ends are up; the
        # daemons redial with backoff anyway.
        info "two nodes in network namespaces ${NODE_NS[A]} (10.77.0.1) and ${NODE_NS[B]} (10.77.0.2) over veth"
    else
        REPL_NET=loopback
        NODE_ADDR[A]=127.0.0.1
        NODE_ADDR[B]=127.0.0.1
        REPL_PORT[A]=$(free_tcp_port)
        REPL_PORT[B]=$(free_tcp_port)
        info "network namespaces unavailable: both nodes on 127.0.0.1 (ports ${REPL_PORT[A]}, ${REPL_PORT[B]})"
    fi
}

_repl_other() { if [ "$1" = A ]; then echo B; else echo A; fi; }

node_alive() { [ -n "${NODE_PID[$1]:-}" ] && pid_alive "${NODE_PID[$1]}"; }

node_start() {
    local n=$1 img=$2 role=$3 o
    shift 3
    o=$(_repl_other "$n")
    [ -x "$REPVOLD" ] || fail "$REPVOLD not built"
    node_alive "$n" && fail "node $n already running"
    _repl_nstarts=$((_repl_nstarts + 1))
    NODE_LOG[$n]=$TEST_DIR/node$n.$_repl_nstarts.log
    NODE_CTL[$n]=$TEST_DIR/node$n.ctl
    NODE_SOCK[$n]=$TEST_DIR/node$n.sock
    NODE_URI[$n]=$(nbd_uri "${NODE_SOCK[$n]}")
    local id=1
    [ "$n" = B ] && id=2
    local -a wrapper=() extra=()
    read -r -a wrapper <<<"${REPVOLD_WRAPPER:-}"
    read -r -a extra <<<"${REPVOLD_EXTRA_ARGS:-}"
    local -a args=(--volume "$img" --node-id "$id" --role "$role" --control "${NODE_CTL[$n]}"
        --repl-listen "${NODE_ADDR[$n]}:${REPL_PORT[$n]}" --peer "${NODE_ADDR[$o]}:${REPL_PORT[$o]}"
        --listen "unix:${NODE_SOCK[$n]}" --no-mlock)
    # The link runs between namespaces (not loopback): plain TCP needs
    # --insecure; REPL_SECURITY="--repl-tls-psk FILE ..." runs it over TLS.
    local -a sec=()
    read -r -a sec <<<"${REPL_SECURITY:---insecure}"
    args+=("${sec[@]}")
    info "node $n: ${wrapper[*]} $REPVOLD ${args[*]} ${extra[*]} $*"
    _e2e_daemon_logs+=("${NODE_LOG[$n]}")
    # Not through a shell function: $! must be the daemon itself.
    local -a ns=()
    [ "$REPL_NET" = netns ] && ns=(ip netns exec "${NODE_NS[$n]}")
    "${ns[@]}" "${wrapper[@]}" "$REPVOLD" "${args[@]}" "${extra[@]}" "$@" </dev/null >"${NODE_LOG[$n]}" 2>&1 &
    NODE_PID[$n]=$!
    local i
    for ((i = 0; i < $(tscale 10) * 10; i++)); do
        if ! node_alive "$n"; then
            cat "${NODE_LOG[$n]}" >&2
            NODE_PID[$n]=
            fail "node $n exited during start-up"
        fi
        [ -S "${NODE_CTL[$n]}" ] && "$REPVOL" status --control "${NODE_CTL[$n]}" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "node $n: no control socket after $(tscale 10) s"
}

node_stop() {
    local n=$1 sig=${2:-TERM} secs=${3:-20} rc=0 pid=${NODE_PID[$1]:-}
    [ -n "$pid" ] || fail "node_stop: node $n not running"
    kill -s "$sig" "$pid" 2>/dev/null || true
    wait_bounded "$pid" "$secs" || rc=$?
    NODE_PID[$n]=
    check_log_clean "${NODE_LOG[$n]}"
    [ "$rc" -ne 124 ] || fail "node $n did not exit within $(tscale "$secs") s of SIG$sig"
    [ "$rc" -eq 0 ] || { tail -20 "${NODE_LOG[$n]}" >&2; fail "node $n exited with status $rc after SIG$sig"; }
}

node_kill() {
    local n=$1 pid=${NODE_PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    NODE_PID[$n]=
}

node_status_json() { "$REPVOL" status --json --control "${NODE_CTL[$1]}"; }

node_peer_state() {
    node_status_json "$1" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print((d.get("peer") or {}).get("state","none"))' 2>/dev/null || echo unknown
}

node_wait_peer_state() {
    local n=$1 want=$2 secs=${3:-15} i s=
    for ((i = 0; i < $(tscale "$secs") * 10; i++)); do
        s=$(node_peer_state "$n")
        [ "$s" = "$want" ] && return 0
        sleep 0.1
    done
    tail -20 "${NODE_LOG[$n]}" >&2
    fail "node $n: peer state '$s', expected '$want' within $(tscale "$secs") s"
}

link_down() {
    [ "$REPL_NET" = netns ] || fail "link_down needs network namespaces"
    ip -n "${NODE_NS[A]}" link set "rv$$va" down
}

link_up() {
    [ "$REPL_NET" = netns ] || fail "link_up needs network namespaces"
    ip -n "${NODE_NS[A]}" link set "rv$$va" up
}

# wait_export N: node N's export answers a handshake (bounded).
wait_export() {
    local i
    for ((i = 0; i < $(tscale 10) * 10; i++)); do
        timeout 5 nbdinfo --size "${NODE_URI[$1]}" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "node $1's export does not answer"
}

# ------------------------------------------------------------ resync

# sync_fields N: "PEER_STATE SYNC_STATE PERCENT BYTES_DONE BYTES_LEFT RUNS DISK_STATE"
sync_fields() {
    node_status_json "$1" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d.get("peer") or {}
s = p.get("sync") or {}
print(p.get("state", "none"), s.get("state", "none"), s.get("percent", 0), s.get("bytes_done", 0),
      s.get("bytes_left", 0), s.get("runs", 0), d.get("disk_state", "?"))' 2>/dev/null ||
        echo "unknown unknown 0 0 0 0 unknown"
}

# wait_resync_done RUNS0 SECS: until primary A has run a resync after RUNS0
# runs and finished it (sync none, nothing left, peer connected on both
# sides).  Sets MAX_DONE (largest bytes_done seen), FINAL (A's fields).
wait_resync_done() {
    local runs0=$1 secs=$2 f
    local ps ss ndone left runs ds
    local deadline=$((SECONDS + $(tscale "$secs")))
    MAX_DONE=0
    while [ "$SECONDS" -lt "$deadline" ]; do
        f=$(sync_fields A)
        read -r ps ss _ ndone left runs ds <<<"$f"
        [ "$ndone" -gt "$MAX_DONE" ] && MAX_DONE=$ndone
        if [ "$ps" = connected ] && [ "$ss" = none ] && [ "$left" -eq 0 ] && [ "$runs" -gt "$runs0" ]; then
            read -r ps ss _ _ _ _ ds <<<"$(sync_fields B)"
            if [ "$ps" = connected ] && [ "$ss" = none ] && [ "$ds" = UpToDate ]; then
                FINAL=$f
                return 0
            fi
        fi
        sleep 0.2
    done
    tail -20 "${NODE_LOG[A]}" >&2
    fail "resync not finished within $(tscale "$secs") s: A: $f; B: $(sync_fields B)"
}

# wait_not_connected N SECS: node N has given up on its peer (disconnected,
# or redialling: "connecting" lasts while SYNs go unanswered).
wait_not_connected() {
    local s="" deadline=$((SECONDS + $(tscale "$2")))
    while [ "$SECONDS" -lt "$deadline" ]; do
        s=$(node_peer_state "$1")
        case $s in connected | handshake | unknown) ;; *) return 0 ;; esac
        sleep 0.1
    done
    fail "node $1: peer state still '$s' after $(tscale "$2") s"
}

# ------------------------------------------------------------ status and I/O

# status_field N EXPR: EXPR over d = `repvol status --json` of node N (a
# tuple prints space-separated).
status_field() {
    node_status_json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(" ".join(map(str, v)) if isinstance(v, tuple) else v)' "$2"
}

# nbd_write URI OFFSET FILE: write FILE at OFFSET through the export, flush.
nbd_write() {
    tmo 30 "$PYTHON_NBD" - "$@" <<'PY' || fail "writing $3 at $2 through $1 failed"
import nbd, sys
uri, off, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_uri(uri)
data = open(path, "rb").read()
for i in range(0, len(data), 1 << 20):
    h.pwrite(data[i:i + (1 << 20)], off + i)
h.flush()
h.shutdown()
PY
}
