#!/usr/bin/env bash
# The OCF resource agent client/ocf/repvol (a promotable clone, like
# ocf:linbit:drbd) with real daemons, no cluster:
#  - its meta-data is valid XML for ra-api-1.dtd and metadata.rng (both from
#    Debian's resource-agents), with every parameter and action declared;
#  - ocf-tester (resource-agents) passes: start/stop/monitor/promote/demote/
#    notify, idempotence, probes without binaries;
#  - by hand: monitor 7 -> start -> 0 -> promote -> 8 -> demote -> 0 ->
#    stop -> 7, validate-all errors, promotion scores through a stub
#    crm_attribute (UpToDate 1000 / 10000 connected, Outdated 100,
#    Inconsistent none);
#  - two agent-managed nodes on 127.0.0.1 (one configured through "nodes",
#    the other with swapped explicit addresses): the primary connects, a
#    full sync fills the empty mirror, data written through the primary's
#    NBD export lands on the secondary (images compared after stop); an
#    Outdated copy is refused promotion.
. "$(dirname "$0")/functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3

AGENT_SRC=$abs_top_srcdir/client/ocf/repvol
[ -f "$AGENT_SRC" ] || fail "agent $AGENT_SRC missing"
[ -x "$AGENT_SRC" ] || fail "agent $AGENT_SRC is not executable (mode 755 expected)"

export OCF_ROOT=/usr/lib/ocf
SHELLFUNCS=$OCF_ROOT/lib/heartbeat/ocf-shellfuncs
RA_DATA=/usr/share/resource-agents

# ------------------------------------------------------------ resource-agents

have_resource_agents() {
    [ -x /usr/sbin/ocf-tester ] && [ -r "$SHELLFUNCS" ] && [ -r "$RA_DATA/ra-api-1.dtd" ]
}
if ! have_resource_agents; then
    step "install resource-agents (ocf-tester, ocf-shellfuncs, ra-api-1.dtd)"
    [ "$(id -u)" -eq 0 ] || skip "resource-agents is not installed and this is not root: apt-get install resource-agents"
    command -v apt-get >/dev/null 2>&1 || skip "resource-agents is not installed and there is no apt-get"
    apt_opts=(-o DPkg::Lock::Timeout=120 -o Acquire::Retries=2 -y -q --no-install-recommends)
    if ! DEBIAN_FRONTEND=noninteractive tmo 600 apt-get "${apt_opts[@]}" install resource-agents \
        >"$TEST_DIR/apt.log" 2>&1; then
        # Stale package lists: refresh once and retry.
        tmo 300 apt-get -q -o DPkg::Lock::Timeout=120 update >>"$TEST_DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive tmo 600 apt-get "${apt_opts[@]}" install resource-agents \
            >>"$TEST_DIR/apt.log" 2>&1 || {
            tail -n 5 "$TEST_DIR/apt.log" >&2
            skip "resource-agents could not be installed (apt-get failed; see above)"
        }
    fi
    have_resource_agents || fail "resource-agents installed but ocf-tester/ocf-shellfuncs/ra-api-1.dtd missing"
fi
command -v xmllint >/dev/null 2>&1 || info "xmllint not found (libxml2-utils): DTD/RELAX NG checks skipped"

# ocf-tester checks the agent runs as 'nobody': it must reach a world-
# readable copy (the temp dir is private, the source tree may be too).
chmod 755 "$TEST_DIR"
mkdir -m 755 "$TEST_DIR/ra"
AGENT=$TEST_DIR/ra/repvol
install -m 755 "$AGENT_SRC" "$AGENT"

# ------------------------------------------------------------ meta-data

step "meta-data: well-formed OCF 1.1 XML with every parameter and action"
tmo 10 "$AGENT" meta-data >"$TEST_DIR/meta.xml" || fail "meta-data action failed"
python3 - "$TEST_DIR/meta.xml" <<'PY' || fail "meta-data content check failed"
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "resource-agent" and root.get("name") == "repvol", root.attrib
assert root.findtext("version") == "1.1", root.findtext("version")
for tag in ("longdesc", "shortdesc"):
    el = root.find(tag)
    assert el is not None and el.get("lang") == "en" and el.text.strip(), tag
params = {p.get("name"): p for p in root.find("parameters")}
want = ["volume", "listen", "repl_listen", "peer", "node_id", "nodes", "control", "protocol",
        "pidfile", "logfile", "repvold", "repvol", "extra_args", "repl_tls_psk"]
missing = [w for w in want if w not in params]
assert not missing, "missing parameters: %s" % missing
assert params["volume"].get("required") == "1" and params["volume"].get("unique") == "1"
for name, p in params.items():
    assert p.find("longdesc") is not None and p.find("shortdesc") is not None, name
    c = p.find("content")
    assert c is not None and c.get("type") in ("string", "integer", "boolean"), name
acts = root.find("actions")
names = [a.get("name") for a in acts]
for a in ("start", "stop", "monitor", "promote", "demote", "notify", "meta-data", "validate-all"):
    assert a in names, "action %s missing" % a
for a in acts:
    assert a.get("timeout", "").endswith("s"), a.attrib
mons = {a.get("role"): a.get("interval") for a in acts if a.get("name") == "monitor"}
assert set(mons) == {"Promoted", "Unpromoted"}, mons
assert mons["Promoted"] != mons["Unpromoted"], "the two monitors need different intervals"
print("    %d parameters, actions: %s" % (len(params), " ".join(names)))
PY
if command -v xmllint >/dev/null 2>&1; then
    xmllint --noout "$TEST_DIR/meta.xml" || fail "xmllint: meta-data not well-formed"
    # The DOCTYPE names ra-api-1.dtd relative to the document: validate from
    # resource-agents' data directory, as ocf-tester does.
    (cd "$RA_DATA" && xmllint --noout --valid - <"$TEST_DIR/meta.xml") ||
        fail "meta-data does not conform to ra-api-1.dtd"
    (cd "$RA_DATA" && xmllint --noout --relaxng metadata.rng - <"$TEST_DIR/meta.xml") ||
        fail "meta-data does not conform to metadata.rng"
    info "xmllint: well-formed, valid for ra-api-1.dtd and metadata.rng"
fi
# The agent must work without the resource-agents library too.
OCF_ROOT=$TEST_DIR/no-ocf-root tmo 10 "$AGENT" meta-data >"$TEST_DIR/meta-nolib.xml" ||
    fail "meta-data without ocf-shellfuncs failed"
cmp -s "$TEST_DIR/meta.xml" "$TEST_DIR/meta-nolib.xml" || fail "meta-data differs without ocf-shellfuncs"

# ------------------------------------------------------------ helpers

SIZE=$((64 << 20))

# Per-node agent environments.  A stub crm_attribute records the promotion
# scores the agent sets (as a promotable clone, feature set >= 3.10 makes
# ocf_promotion_score use `crm_attribute -p`).
mkdir "$TEST_DIR/sbin"
cat >"$TEST_DIR/sbin/crm_attribute" <<'EOF'
#!/bin/sh
echo "$*" >>"${SCORE_LOG:?}"
EOF
chmod 755 "$TEST_DIR/sbin/crm_attribute"

declare -a ENV_A ENV_B ENV_T
RA_RC=0

# ra NODE ACTION [VAR=VALUE...]: run the agent with NODE's environment
# (bounded); RA_RC is its exit status, its output goes to agent.NODE.log.
ra() {
    local node=$1 action=$2
    shift 2
    local -n envref="ENV_$node"
    RA_RC=0
    {
        printf -- '--- %s %s %s\n' "$node" "$action" "$*"
        env "${envref[@]}" "$@" timeout -k 5 "$(tscale 120)" "$AGENT" "$action"
    } >>"$TEST_DIR/agent.$node.log" 2>&1 </dev/null || RA_RC=$?
    case $RA_RC in 124 | 137) fail "agent $action on node $node timed out" ;; esac
}

# expect_rc NODE ACTION WANT [VAR=VALUE...]
expect_rc() {
    local node=$1 action=$2 want=$3
    shift 3
    ra "$node" "$action" "$@"
    if [ "$RA_RC" != "$want" ]; then
        tail -n 40 "$TEST_DIR/agent.$node.log" >&2
        fail "agent $action on node $node: exit status $RA_RC, expected $want"
    fi
    info "node $node: $action -> $RA_RC"
}

node_ctl() {
    local -n envref="ENV_$1"
    local kv
    for kv in "${envref[@]}"; do
        if [[ $kv == OCF_RESKEY_control=* ]]; then echo "${kv#*=}"; fi
    done
}

# status_field NODE EXPR: a field of `repvol status --json` (python expression on d).
status_field() {
    tmo 10 "$REPVOL" status --json --control "$(node_ctl "$1")" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null || echo unknown
}

# wait_status NODE EXPR WANT [SECS]
wait_status() {
    local node=$1 expr=$2 want=$3 secs=${4:-30} i v=
    for ((i = 0; i < $(tscale "$secs") * 10; i++)); do
        v=$(status_field "$node" "$expr")
        [ "$v" = "$want" ] && return 0
        sleep 0.1
    done
    tail -n 20 "$TEST_DIR/repvold.$node.log" >&2
    fail "node $node: $expr is '$v', expected '$want' within $(tscale "$secs") s"
}

# assert_score NODE WANT: the last promotion score the agent set on NODE
# (a number, or "none" for a deleted score).
assert_score() {
    local last
    last=$(tail -n 1 "$TEST_DIR/score.$1" 2>/dev/null || true)
    case $last in
    *-D*) last=none ;;
    *-v\ *) last=${last##*-v } && last=${last%% *} ;;
    *) last="(nothing: '$last')" ;;
    esac
    [ "$last" = "$2" ] || fail "node $1: promotion score $last, expected $2"
    info "node $1: promotion score $last"
}

# track NODE: make sure the daemon the agent started is gone at exit.
track() {
    local pf=$TEST_DIR/repvold.$1.pid pid
    pid=$(cat "$pf" 2>/dev/null) || fail "node $1: no pid file $pf after start"
    track_pid "$pid"
}

_ocf_cleanup() {
    local pf pid
    for pf in "$TEST_DIR"/repvold.*.pid; do
        [ -f "$pf" ] || continue
        pid=$(cat "$pf" 2>/dev/null) || continue
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
}
on_exit _ocf_cleanup

clean_stop() {   # clean_stop NODE: the daemon's log ends with a clean stop
    grep -q 'stopped cleanly' "$TEST_DIR/repvold.$1.log" || {
        tail -n 20 "$TEST_DIR/repvold.$1.log" >&2
        fail "node $1: repvold did not stop cleanly"
    }
}

# The pair's link runs over TLS (repl_tls_psk passed through by the agent).
(umask 077 && echo "r0:$(openssl rand -hex 32)" >"$TEST_DIR/r0.psk")
# common_env NODE: parameters every node gets.
common_env() {
    local n=$1
    printf '%s\n' \
        "OCF_RESKEY_repl_tls_psk=$TEST_DIR/r0.psk" \
        "OCF_ROOT=$OCF_ROOT" \
        "OCF_RESKEY_listen=unix:$TEST_DIR/$n.sock" \
        "OCF_RESKEY_control=$TEST_DIR/$n.ctl" \
        "OCF_RESKEY_pidfile=$TEST_DIR/repvold.$n.pid" \
        "OCF_RESKEY_logfile=$TEST_DIR/repvold.$n.log" \
        "OCF_RESKEY_repvold=$REPVOLD" \
        "OCF_RESKEY_repvol=$REPVOL" \
        "OCF_RESKEY_extra_args=--no-mlock --buffer-mem 16M --peer-timeout 2000 ${REPVOLD_EXTRA_ARGS:-}" \
        "OCF_RESKEY_CRM_meta_timeout=$(($(tscale 60) * 1000))"
}

PORT_A=$(free_tcp_port)
PORT_B=$(free_tcp_port)
while [ "$PORT_B" = "$PORT_A" ]; do PORT_B=$(free_tcp_port); done
PORT_T=$(free_tcp_port)
PORT_NONE=$(free_tcp_port)   # nothing listens here

# ------------------------------------------------------------ ocf-tester

step "ocf-tester on a standalone-capable node (peer 127.0.0.1:$PORT_NONE: nobody there)"
create_volume "$TEST_DIR/t.img" $((16 << 20))
mapfile -t ENV_T < <(common_env T)
_e2e_daemon_logs+=("$TEST_DIR/repvold.T.log")
tester_args=(-n r_tester
    -o "volume=$TEST_DIR/t.img"
    -o "listen=unix:$TEST_DIR/T.sock"
    -o "repl_listen=127.0.0.1:$PORT_T"
    -o "peer=127.0.0.1:$PORT_NONE"
    -o "node_id=1"
    -o "control=$TEST_DIR/T.ctl"
    -o "pidfile=$TEST_DIR/repvold.T.pid"
    -o "logfile=$TEST_DIR/repvold.T.log"
    -o "repvold=$REPVOLD"
    -o "repvol=$REPVOL"
    -o "extra_args=--no-mlock --buffer-mem 16M ${REPVOLD_EXTRA_ARGS:-}")
rc=0
tmo 300 ocf-tester "${tester_args[@]}" "$AGENT" >"$TEST_DIR/ocf-tester.out" 2>&1 || rc=$?
sed 's/^/    | /' "$TEST_DIR/ocf-tester.out" | grep -v -e ' INFO: ' -e '^    | usage: ' -e 'Expects to have' -e '^    | $' || true
[ "$rc" -eq 0 ] || fail "ocf-tester failed with status $rc"
grep -q 'passed all tests' "$TEST_DIR/ocf-tester.out" || fail "ocf-tester did not report 'passed all tests'"
if grep -q '^\* rc=' "$TEST_DIR/ocf-tester.out"; then fail "ocf-tester reported failed checks"; fi
grep -q 'partially supports promotable' "$TEST_DIR/ocf-tester.out" && fail "ocf-tester: promotable support incomplete"
# It started the daemon twice and stopped it each time, cleanly.
[ "$(grep -c 'stopped cleanly' "$TEST_DIR/repvold.T.log")" -ge 2 ] || {
    cat "$TEST_DIR/repvold.T.log" >&2
    fail "ocf-tester's daemons did not stop cleanly twice"
}
[ ! -e "$TEST_DIR/repvold.T.pid" ] || fail "pid file left behind after ocf-tester"
expect_fail "$REPVOL" status --control "$TEST_DIR/T.ctl"

# ------------------------------------------------------------ by hand

step "validate-all: configuration and installation errors"
ENV_T+=("OCF_RESOURCE_INSTANCE=r_tester" "OCF_RESKEY_volume=$TEST_DIR/t.img"
    "OCF_RESKEY_repl_listen=127.0.0.1:$PORT_T" "OCF_RESKEY_peer=127.0.0.1:$PORT_NONE")
expect_rc T validate-all 0
expect_rc T validate-all 6 OCF_RESKEY_protocol=D
expect_rc T validate-all 6 OCF_RESKEY_node_id=32
expect_rc T validate-all 6 OCF_RESKEY_peer=nocolon
expect_rc T validate-all 6 OCF_RESKEY_listen=bogus:/x
expect_rc T validate-all 6 OCF_RESKEY_volume=
expect_rc T validate-all 6 "OCF_RESKEY_nodes=alice=127.0.0.1:1 bob=127.0.0.1:2" OCF_RESKEY_CRM_meta_on_node=carol
expect_rc T validate-all 5 "OCF_RESKEY_volume=$TEST_DIR/missing.img"
expect_rc T validate-all 5 "OCF_RESKEY_repvold=$TEST_DIR/no-such-repvold"
# A probe (monitor, interval 0) on a node without the image: not running.
expect_rc T monitor 7 "OCF_RESKEY_volume=$TEST_DIR/missing.img" OCF_RESKEY_CRM_meta_interval=0
expect_rc T stop 0 "OCF_RESKEY_volume=$TEST_DIR/missing.img"

step "node A by hand, as a promotable clone under a stub crm_attribute"
create_volume "$TEST_DIR/a.img" "$SIZE"
uuid=$(tmo 10 "$REPVOL" info --json "$TEST_DIR/a.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
# B: an empty mirror (same UUID, Inconsistent): it must never be promoted
# before a full sync.
tmo 30 "$REPVOL" create --size "$((SIZE >> 20))M" --uuid "$uuid" --node-id 2 "$TEST_DIR/b.img" >/dev/null ||
    fail "repvol create --uuid failed"

pm_env=(OCF_RESKEY_CRM_meta_promotable=true OCF_RESKEY_CRM_meta_clone_max=2 OCF_RESKEY_CRM_meta_promoted_max=1
    OCF_RESKEY_CRM_meta_notify=true OCF_RESKEY_crm_feature_set=3.16.2 "HA_SBIN_DIR=$TEST_DIR/sbin")
# A: addresses from "nodes" (its entry is chosen by the node name).
mapfile -t ENV_A < <(common_env A)
_e2e_daemon_logs+=("$TEST_DIR/repvold.A.log" "$TEST_DIR/repvold.B.log")
ENV_A+=("${pm_env[@]}" "SCORE_LOG=$TEST_DIR/score.A" OCF_RESOURCE_INSTANCE=r0:0 OCF_RESKEY_CRM_meta_on_node=alice
    "OCF_RESKEY_volume=$TEST_DIR/a.img"
    "OCF_RESKEY_nodes=alice=127.0.0.1:$PORT_A bob=127.0.0.1:$PORT_B")
# B: the same addresses swapped, given explicitly.
mapfile -t ENV_B < <(common_env B)
ENV_B+=("${pm_env[@]}" "SCORE_LOG=$TEST_DIR/score.B" OCF_RESOURCE_INSTANCE=r0:1 OCF_RESKEY_CRM_meta_on_node=bob
    "OCF_RESKEY_volume=$TEST_DIR/b.img"
    "OCF_RESKEY_repl_listen=127.0.0.1:$PORT_B" "OCF_RESKEY_peer=127.0.0.1:$PORT_A" OCF_RESKEY_node_id=2)

expect_rc A monitor 7 OCF_RESKEY_CRM_meta_interval=0
expect_rc A start 0
track A
[ "$(status_field A 'd["peer"]["listen"], d["peer"]["address"]')" = "('127.0.0.1:$PORT_A', '127.0.0.1:$PORT_B')" ] ||
    fail "node A: the 'nodes' map did not give repl_listen/peer: $(status_field A 'd["peer"]')"
[ "$(status_field A 'd["role"]')" = secondary ] || fail "node A did not start as secondary"
expect_fail nbdinfo --size "$(nbd_uri "$TEST_DIR/A.sock")"
expect_rc A monitor 0 OCF_RESKEY_CRM_meta_interval=0
expect_rc A monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score A 1000        # UpToDate, peer not connected
expect_rc A start 0        # idempotent
expect_rc A promote 0
expect_rc A monitor 8 OCF_RESKEY_CRM_meta_interval=10000
expect_rc A promote 0      # idempotent
tmo 10 nbdinfo --size "$(nbd_uri "$TEST_DIR/A.sock")" >/dev/null || fail "node A: primary does not serve NBD"
expect_rc A notify 0 OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=promote
expect_rc A demote 0
expect_rc A monitor 0 OCF_RESKEY_CRM_meta_interval=20000
expect_fail nbdinfo --size "$(nbd_uri "$TEST_DIR/A.sock")"
expect_rc A demote 0       # idempotent
expect_rc A stop 0
expect_rc A monitor 7 OCF_RESKEY_CRM_meta_interval=20000
assert_score A none        # stopped: no score
expect_rc A stop 0         # idempotent
expect_rc A promote 7      # not running
clean_stop A
# A daemon that died leaves its pid file: monitor says not running, and
# start replaces it.
expect_rc A start 0
track A
pid=$(cat "$TEST_DIR/repvold.A.pid")
kill -KILL "$pid"
for ((i = 0; i < 50; i++)); do pid_alive "$pid" || break; sleep 0.1; done
pid_alive "$pid" && fail "repvold (pid $pid) survived SIGKILL"
[ -e "$TEST_DIR/repvold.A.pid" ] || fail "expected a stale pid file after SIGKILL"
expect_rc A monitor 7 OCF_RESKEY_CRM_meta_interval=20000

# ------------------------------------------------------------ two nodes

step "two agent-managed nodes on 127.0.0.1 (ports $PORT_A, $PORT_B)"
expect_rc A start 0
track A
expect_rc B start 0
track B
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score B none        # Inconsistent: never promoted
expect_rc A monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score A 1000
# Notifications as Pacemaker sends them around a promotion of A.
notify_env=(OCF_RESKEY_CRM_meta_notify_operation=promote OCF_RESKEY_CRM_meta_notify_promote_uname=alice)
expect_rc A notify 0 OCF_RESKEY_CRM_meta_notify_type=pre "${notify_env[@]}"
expect_rc B notify 0 OCF_RESKEY_CRM_meta_notify_type=pre "${notify_env[@]}"
expect_rc A promote 0
expect_rc A notify 0 OCF_RESKEY_CRM_meta_notify_type=post "${notify_env[@]}"
expect_rc B notify 0 OCF_RESKEY_CRM_meta_notify_type=post "${notify_env[@]}"
wait_status A 'd["peer"]["state"]' connected 30
step "full sync into the empty mirror"
wait_status B 'd["disk_state"]' UpToDate 60
wait_status A 'd["peer"]["sync"]["state"]' none 30
expect_rc A monitor 8 OCF_RESKEY_CRM_meta_interval=10000
assert_score A 10000
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score B 10000
[ "$(status_field B 'd["peer"]["state"]')" = connected ] || fail "node B is not connected"
[ "$(status_field B 'd["peer"]["tls"], d["peer"]["tls_peer"]')" = "('PSK', 'r0')" ] || fail "node B: the link is not TLS with the r0 key: $(status_field B 'd["peer"]')"

step "the other node cannot be promoted while A is primary"
expect_rc B promote 1
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
expect_fail nbdinfo --size "$(nbd_uri "$TEST_DIR/B.sock")"

step "write through the primary's NBD export"
random_file "$TEST_DIR/src" $((8 << 20))
tmo 60 nbdcopy "$TEST_DIR/src" "$(nbd_uri "$TEST_DIR/A.sock")" || fail "nbdcopy to the primary failed"
random_file "$TEST_DIR/src2" $((1 << 20))
tmo 60 nbdcopy "$TEST_DIR/src2" "$(nbd_uri "$TEST_DIR/A.sock")" || fail "second nbdcopy failed"
expect_rc A monitor 8 OCF_RESKEY_CRM_meta_interval=10000
[ "$(status_field A 'd["peer"]["nacks"]')" = 0 ] || fail "node A: nacks from the peer"

step "stop the primary (the agent demotes it first), then the Outdated secondary"
expect_rc A stop 0
expect_rc A monitor 7 OCF_RESKEY_CRM_meta_interval=20000
clean_stop A
info_field() { tmo 10 "$REPVOL" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
[ "$(info_field "$TEST_DIR/a.img" role)" = secondary ] || fail "node A was not demoted before stopping"
[ "$(info_field "$TEST_DIR/a.img" clean)" = True ] || fail "node A's image is not marked clean after stop"
wait_status B 'd["peer"]["state"]' disconnected 20
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score B 1000        # UpToDate, alone
tmo 10 "$REPVOL" outdate --control "$TEST_DIR/B.ctl" >/dev/null || fail "repvol outdate on node B failed"
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
assert_score B 100         # Outdated
expect_rc B promote 1      # refused without --force
grep -q 'Outdated' "$TEST_DIR/agent.B.log" || fail "node B: the promote failure does not say Outdated"
expect_rc B monitor 0 OCF_RESKEY_CRM_meta_interval=20000
expect_rc B stop 0
expect_rc B monitor 7 OCF_RESKEY_CRM_meta_interval=20000
clean_stop B

step "compare the images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ"
assert_bytes_equal "$TEST_DIR/src2" "$TEST_DIR/b.img" $((1 << 20)) "the secondary lacks the data written last"
cmp -s -i $((1 << 20)) -n $((7 << 20)) "$TEST_DIR/src" "$TEST_DIR/b.img" ||
    fail "the secondary lacks the first nbdcopy's data"
