#!/usr/bin/env bash
# 610-tls-repl: the replication link over TLS 1.3 between two namespaces.
#
#  - PSK: fio randwrite with verify through the primary; the link says TLS
#    in `repvol status`; both images identical after the stop (cmp).
#  - Strangers at the secondary's replication port while the pair runs: a
#    TLS client with the wrong key, a plaintext one (a HELLO-shaped
#    frame), a cut TLS record: all refused or dropped, nothing written, the
#    pair stays connected and keeps replicating.
#  - A node without TLS cannot join a TLS node; once it has the key it
#    connects and resyncs what it missed.
#  - X.509: certificates naming each node's address (the dialer checks the
#    acceptor's, the acceptor the dialer's); a node whose certificate names
#    another address is refused.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd openssl openssl
require_cmd python3 python3
require_python_nbd

SIZE=$((64 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
umask 077
KEY=$(openssl rand -hex 32)
echo "pair:$KEY" >"$TEST_DIR/link.psk"
echo "pair:$(openssl rand -hex 32)" >"$TEST_DIR/wrong.psk"
umask 022
repl_setup
in_ns() { # NODE CMD...: run CMD in that node's namespace (or here, in loopback mode)
    local n=$1
    shift
    if [ "$REPL_NET" = netns ]; then ip netns exec "${NODE_NS[$n]}" "$@"; else "$@"; fi
}

export REPL_SECURITY="--repl-tls-psk $TEST_DIR/link.psk"
node_start B "$TEST_DIR/b.img" secondary --peer-timeout 2000
node_start A "$TEST_DIR/a.img" primary --peer-timeout 2000
node_wait_peer_state A connected

step "the link runs TLS with PSK"
assert_eq "$(status_field A 'd["peer"]["tls"]')" PSK "primary's link security"
assert_eq "$(status_field B 'd["peer"]["tls_peer"]')" pair "identity the secondary authenticated"
"$REPVOL" status --control "${NODE_CTL[A]}" | grep -q "TLS 1.3 (PSK), peer authenticated as 'pair'" ||
    fail "repvol status does not show the TLS link"

step "fio randwrite with verify through the primary, over TLS"
tmo 120 fio --name=tls --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=4k --iodepth=32 \
    --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$TEST_DIR/fio.out" ||
    { cat "$TEST_DIR/fio.out"; fail "fio verify failed"; }
connects0=$(status_field A 'd["peer"]["connects"]')

step "strangers at the secondary's replication port"
B_PORT="${NODE_ADDR[B]}:${REPL_PORT[B]}"
# A TLS client with the wrong key (OpenSSL's s_client, TLS 1.3 external PSK).
in_ns A timeout 10 openssl s_client -connect "$B_PORT" -tls1_3 -psk_identity pair \
    -psk "$(cut -d: -f2 "$TEST_DIR/wrong.psk")" -ciphersuites TLS_AES_128_GCM_SHA256 \
    </dev/null >"$TEST_DIR/s_client.out" 2>&1 || true
grep -q "key for PSK identity 'pair' is wrong" "${NODE_LOG[B]}" ||
    fail "the secondary did not log the wrong key: $(tail -3 "${NODE_LOG[B]}")"
# Plaintext: a replication-looking frame, then a cut TLS record.
in_ns A python3 - "${NODE_ADDR[B]}" "${REPL_PORT[B]}" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
def closes(payload):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()
closes(b"RVREPL01" + b"\x00" * 200)                      # plaintext HELLO-ish bytes
closes(bytes([0x16, 3, 1, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]))   # ClientHello cut short
closes(b"")                                              # connect and hang up
print("    plaintext and cut streams dropped")
EOF
# Silent callers: connect and never start TLS.  Each is dropped within the
# handshake timeout (--peer-timeout), however many there are.
fds0=$(ls "/proc/${NODE_PID[B]}/fd" | wc -l)
in_ns A python3 - "${NODE_ADDR[B]}" "${REPL_PORT[B]}" <<'EOF' &
import socket, sys, time
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) for _ in range(20)]
time.sleep(6)
EOF
silent=$!
sleep 1
fds1=$(ls "/proc/${NODE_PID[B]}/fd" | wc -l)
info "secondary's descriptors: $fds0 before, $fds1 with 20 silent callers"
sleep 3.5
fds2=$(ls "/proc/${NODE_PID[B]}/fd" | wc -l)
info "secondary's descriptors after the handshake timeout: $fds2"
[ "$fds2" -le "$fds0" ] || fail "silent callers still hold descriptors ($fds0 -> $fds2)"
wait "$silent" || true
node_alive B || fail "the secondary died on hostile input"
node_alive A || fail "the primary died"
assert_eq "$(node_peer_state A)" connected "the pair's link after the strangers"
assert_eq "$(status_field A 'd["peer"]["connects"]')" "$connects0" "the pair's link was not re-established"
grep -q "$KEY" "${NODE_LOG[A]}" "${NODE_LOG[B]}" && fail "the PSK appears in a log"
"$REPVOL" status --json --control "${NODE_CTL[B]}" | grep -q "$KEY" && fail "the PSK appears in status"

step "more writes after the strangers, then compare"
random_file "$TEST_DIR/tail" $((8 << 20))
nbd_write "${NODE_URI[A]}" $((40 << 20)) "$TEST_DIR/tail"
node_stop A
node_stop B
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ"
dd if="$TEST_DIR/b.img" of="$TEST_DIR/b-tail" bs=1M skip=40 count=8 status=none
assert_bytes_equal "$TEST_DIR/tail" "$TEST_DIR/b-tail" "secondary lacks the last write"

step "a node without TLS cannot join; with the key it connects and resyncs"
REPL_SECURITY="--insecure" node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary
random_file "$TEST_DIR/degraded" $((4 << 20))
nbd_write "${NODE_URI[A]}" $((48 << 20)) "$TEST_DIR/degraded"   # written while the peer is kept out
sleep 1
[ "$(node_peer_state A)" != connected ] || fail "a plaintext secondary joined a TLS primary"
grep -q "TLS" "${NODE_LOG[A]}" || fail "the primary's log does not mention the TLS failure"
node_stop B
node_start B "$TEST_DIR/b.img" secondary
node_wait_peer_state A connected 30
wait_resync_done 0 60
node_stop A
node_stop B
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ after the TLS resync"

if [ "$REPL_NET" = netns ]; then
    step "X.509: certificates name the nodes' addresses"
    PKI=$TEST_DIR/pki
    mkdir -p "$PKI/A" "$PKI/B" "$PKI/Bwrong"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/ca-key.pem" \
        -out "$PKI/ca-cert.pem" -subj "/CN=repvol link CA" -days 30 2>/dev/null || fail "openssl CA"
    nodecert() { # DIR IP
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/server-key.pem" \
            -out "$1/req.csr" -subj "/CN=node $2" 2>/dev/null || fail "openssl req"
        printf 'subjectAltName=IP:%s\n' "$2" >"$1/ext"
        openssl x509 -req -in "$1/req.csr" -CA "$PKI/ca-cert.pem" -CAkey "$PKI/ca-key.pem" -CAcreateserial \
            -out "$1/server-cert.pem" -days 30 -extfile "$1/ext" 2>/dev/null || fail "openssl x509"
        chmod 600 "$1/server-key.pem"
        cp "$1/server-cert.pem" "$1/client-cert.pem"
        cp -p "$1/server-key.pem" "$1/client-key.pem"
        cp "$PKI/ca-cert.pem" "$1/"
    }
    nodecert "$PKI/A" "${NODE_ADDR[A]}"
    nodecert "$PKI/B" "${NODE_ADDR[B]}"
    nodecert "$PKI/Bwrong" 10.77.0.99
    REPL_SECURITY="--repl-tls-certificates $PKI/B" node_start B "$TEST_DIR/b.img" secondary
    REPL_SECURITY="--repl-tls-certificates $PKI/A" node_start A "$TEST_DIR/a.img" primary
    node_wait_peer_state A connected 30
    assert_eq "$(status_field A 'd["peer"]["tls"]')" X.509 "link security with certificates"
    random_file "$TEST_DIR/x509" $((4 << 20))
    nbd_write "${NODE_URI[A]}" $((20 << 20)) "$TEST_DIR/x509"
    node_stop B
    REPL_SECURITY="--repl-tls-certificates $PKI/Bwrong" node_start B "$TEST_DIR/b.img" secondary
    sleep 2
    [ "$(node_peer_state A)" != connected ] || fail "a node with a certificate for another address joined"
    grep -q "10.77.0.99\|does not match\|name" "${NODE_LOG[A]}" ||
        fail "the primary does not say the peer's certificate names another host"
    random_file "$TEST_DIR/x509b" $((2 << 20))
    nbd_write "${NODE_URI[A]}" $((28 << 20)) "$TEST_DIR/x509b"     # missed by B: resynced below
    node_stop B
    REPL_SECURITY="--repl-tls-certificates $PKI/B" node_start B "$TEST_DIR/b.img" secondary
    node_wait_peer_state A connected 30
    wait_resync_done 0 60
    node_stop A
    node_stop B
    assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "images differ after the X.509 run"
fi
echo "PASS: $TEST_NAME"
