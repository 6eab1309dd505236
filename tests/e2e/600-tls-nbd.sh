#!/usr/bin/env bash
# 600-tls-nbd: the NBD export over TLS (NBD_OPT_STARTTLS), as libnbd's
# nbdinfo/nbdcopy use it.
#
#  - PSK (nbdkit's username:hexkey file), --tls require: nbdcopy through
#    nbds:// round-trips data (cmp, and the image itself after the stop);
#    a wrong key, an unknown user and a plaintext client are refused and
#    write nothing; the daemon keeps serving good clients.
#  - Hostile byte streams: plaintext injected after STARTTLS, a TLS record
#    cut short, garbage instead of a ClientHello: the connection is dropped,
#    the daemon lives.
#  - --tls on: plaintext and TLS clients both served.
#  - X.509 (a test CA made with openssl): a client certificate from the CA
#    works; one from another CA, an expired one, and none at all are refused.
#  - Key files readable by others are refused at start-up; the key never
#    appears in the log or in `repvol status`; a non-loopback NBD or
#    replication address without TLS is refused unless --insecure.
. "$(dirname "$0")/functions.sh"

require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd openssl openssl
require_cmd python3 python3
require_python_nbd

SIZE=$((64 * 1024 * 1024))
IMG=$TEST_DIR/vol.img
create_volume "$IMG" "$SIZE"
umask 077
KEY=$(openssl rand -hex 32)
echo "alice:$KEY" >"$TEST_DIR/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$TEST_DIR/wrong.psk"
echo "mallory:$(openssl rand -hex 32)" >"$TEST_DIR/mallory.psk"
umask 022

PORT=$(free_tcp_port)
SOCK=$TEST_DIR/tls.sock
URI_PSK="nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$TEST_DIR/keys.psk"

# start_tls_daemon ARGS...: like start_repvold, but the readiness probe
# speaks TLS (a plaintext probe is refused under --tls require).
start_tls_daemon() {
    local probe=$1 i
    shift
    _e2e_ndaemons=$((_e2e_ndaemons + 1))
    REPVOLD_LOG=$TEST_DIR/repvold.$_e2e_ndaemons.log
    REPVOLD_CTL=$TEST_DIR/repvold.$_e2e_ndaemons.ctl
    _e2e_daemon_logs+=("$REPVOLD_LOG")
    local -a wrapper=() extra=()
    read -r -a wrapper <<<"${REPVOLD_WRAPPER:-}"
    read -r -a extra <<<"${REPVOLD_EXTRA_ARGS:-}"
    info "start: $REPVOLD --volume $IMG --control $REPVOLD_CTL --no-mlock ${extra[*]} $*"
    "${wrapper[@]}" "$REPVOLD" --volume "$IMG" --control "$REPVOLD_CTL" --no-mlock "${extra[@]}" "$@" \
        </dev/null >"$REPVOLD_LOG" 2>&1 &
    REPVOLD_PID=$!
    _e2e_daemon_pids+=("$REPVOLD_PID")
    for ((i = 0; i < $(tscale 10) * 10; i++)); do
        pid_alive "$REPVOLD_PID" || { cat "$REPVOLD_LOG" >&2; fail "repvold exited during start-up"; }
        timeout 5 nbdinfo --size "$probe" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$REPVOLD_LOG" >&2
    fail "repvold not serving $probe after $(tscale 10) s"
}

# ---------------------------------------------------------------- PSK
step "PSK, --tls require: nbdcopy round trip over nbds://"
start_tls_daemon "$URI_PSK" --listen "tcp:127.0.0.1:$PORT" --listen "unix:$SOCK" \
    --tls require --tls-psk "$TEST_DIR/keys.psk"
random_file "$TEST_DIR/good" $((4 * 1024 * 1024))
tmo 60 nbdcopy "$TEST_DIR/good" "$URI_PSK" || fail "nbdcopy to $URI_PSK failed"
tmo 60 nbdcopy "$URI_PSK" "$TEST_DIR/back" || fail "nbdcopy from $URI_PSK failed"
assert_bytes_equal "$TEST_DIR/good" "$TEST_DIR/back" $((4 * 1024 * 1024)) "data read back over TLS"
# The Unix socket requires TLS too (nbds+unix).
tmo 30 nbdinfo --size "nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$TEST_DIR/keys.psk" >/dev/null ||
    fail "TLS over the Unix socket failed"

step "refused: wrong key, unknown user, plaintext client (nothing written)"
random_file "$TEST_DIR/evil" $((1024 * 1024))
# Written, if at all, at 8 MiB: nbdcopy to a subrange through --offset is
# not available, so a python libnbd client writes there.
cat >"$TEST_DIR/evil_write.py" <<'EOF'
import sys, nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(), 8 << 20)
h.flush()
h.shutdown()
EOF
expect_fail "$PYTHON_NBD" "$TEST_DIR/evil_write.py" "nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$TEST_DIR/wrong.psk" "$TEST_DIR/evil"
expect_fail "$PYTHON_NBD" "$TEST_DIR/evil_write.py" "nbds://mallory@127.0.0.1:$PORT/?tls-psk-file=$TEST_DIR/mallory.psk" "$TEST_DIR/evil"
expect_fail "$PYTHON_NBD" "$TEST_DIR/evil_write.py" "nbd://127.0.0.1:$PORT/" "$TEST_DIR/evil"
grep -qi "tls" "$TEST_DIR/expect_fail.err" ||
    fail "the plaintext client was not told TLS is required: $(cat "$TEST_DIR/expect_fail.err")"
expect_fail "$PYTHON_NBD" "$TEST_DIR/evil_write.py" "nbd+unix:///?socket=$SOCK" "$TEST_DIR/evil"
grep -q "key for PSK identity 'alice' is wrong" "$REPVOLD_LOG" || fail "the log does not say the key was wrong"
grep -q "unknown PSK identity 'mallory'" "$REPVOLD_LOG" || fail "the log does not name the unknown identity"

step "hostile streams after STARTTLS: injected plaintext, cut record, garbage"
python3 - "$PORT" <<'EOF'
import socket, struct, sys, time
port = int(sys.argv[1])
IHAVEOPT = 0x49484156454F5054
def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    g = b""
    while len(g) < 18:
        g += s.recv(18 - len(g))
    assert g[:8] == b"NBDMAGIC", g
    s.sendall(struct.pack(">I", 3))          # fixed newstyle, no zeroes
    return s
def read_reply(s):
    h = b""
    while len(h) < 20:
        c = s.recv(20 - len(h))
        if not c:
            return None
        h += c
    magic, o, typ, ln = struct.unpack(">QIII", h)
    d = b""
    while len(d) < ln:
        d += s.recv(ln - len(d))
    return typ
def closed(s):
    s.settimeout(10)
    try:
        while True:
            c = s.recv(4096)
            if not c:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
# 1. STARTTLS with a plaintext option right behind it (CVE-2021-3716 style)
s = connect()
s.sendall(opt(5) + opt(3))                   # STARTTLS, LIST
assert read_reply(s) == 1, "STARTTLS not acknowledged"
assert closed(s), "injected plaintext after STARTTLS was not refused"
# 2. a TLS handshake record cut short, then EOF
s = connect(); s.sendall(opt(5)); assert read_reply(s) == 1
s.sendall(bytes([0x16, 3, 1, 0x02, 0x00]) + b"\x01\x00\x01\xfc" + b"\x03\x03" + b"\x00" * 20)
s.shutdown(socket.SHUT_WR)
assert closed(s), "cut TLS record: connection not closed"
# 3. garbage instead of a ClientHello
s = connect(); s.sendall(opt(5)); assert read_reply(s) == 1
s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
assert closed(s), "garbage instead of TLS: connection not closed"
# 4. connect, STARTTLS, then silence while others are served: just leave it open
print("hostile streams handled")
EOF
repvold_alive || fail "the daemon died on hostile TLS input"
tmo 30 nbdinfo --size "$URI_PSK" >/dev/null || fail "good TLS client refused after the hostile ones"

step "the key never shows: log, status"
grep -qi "$KEY" "$REPVOLD_LOG" && fail "the PSK appears in the daemon log"
"$REPVOL" status --control "$REPVOLD_CTL" >"$TEST_DIR/status.txt" || fail "repvol status failed"
"$REPVOL" status --json --control "$REPVOLD_CTL" >>"$TEST_DIR/status.txt" || fail "repvol status --json failed"
grep -qi "$KEY" "$TEST_DIR/status.txt" && fail "the PSK appears in repvol status"
grep -q "^nbd: .*TLS required" "$TEST_DIR/status.txt" || fail "repvol status does not show that TLS is required"
grep -q -- "$KEY" "/proc/$REPVOLD_PID/cmdline" && fail "the PSK appears in the daemon's arguments"
stop_repvold
check_log_clean "$REPVOLD_LOG"

step "the image holds the good data and nothing from the refused clients"
head -c $((4 * 1024 * 1024)) "$IMG" >"$TEST_DIR/img-head"
assert_bytes_equal "$TEST_DIR/good" "$TEST_DIR/img-head" "image data region (first 4 MiB)"
head -c $((1024 * 1024)) /dev/zero >"$TEST_DIR/zeros"
dd if="$IMG" of="$TEST_DIR/img-evil" bs=1M skip=8 count=1 status=none
assert_bytes_equal "$TEST_DIR/zeros" "$TEST_DIR/img-evil" "region the refused clients tried to write"

# ---------------------------------------------------------------- --tls on
step "--tls on: plaintext and TLS clients both served"
start_tls_daemon "$URI_PSK" --listen "tcp:127.0.0.1:$PORT" --tls on --tls-psk "$TEST_DIR/keys.psk"
tmo 30 nbdcopy "nbd://127.0.0.1:$PORT/" "$TEST_DIR/plain-back" || fail "plaintext client refused under --tls on"
head -c $((4 * 1024 * 1024)) "$TEST_DIR/plain-back" >"$TEST_DIR/plain-head"
assert_bytes_equal "$TEST_DIR/good" "$TEST_DIR/plain-head" "plaintext read under --tls on"
stop_repvold

# ---------------------------------------------------------------- X.509
step "X.509: a test CA, server and client certificates"
PKI=$TEST_DIR/pki
mkdir -p "$PKI/server" "$PKI/client" "$PKI/rogue" "$PKI/expired" "$PKI/nocert"
mkcert() { # DIR NAME CA_KEY CA_CERT DAYS [EXT]
    local d=$1 name=$2 cakey=$3 cacert=$4 days=$5 ext=${6:-}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$name-key.pem" \
        -out "$d/$name.csr" -subj "/CN=$name" 2>/dev/null || fail "openssl req $name"
    local -a extargs=()
    if [ -n "$ext" ]; then
        printf '%s\n' "$ext" >"$d/$name.ext"
        extargs=(-extfile "$d/$name.ext")
    fi
    openssl x509 -req -in "$d/$name.csr" -CA "$cacert" -CAkey "$cakey" -CAcreateserial \
        -out "$d/$name-cert.pem" -days "$days" "${extargs[@]}" 2>/dev/null || fail "openssl x509 $name"
    chmod 600 "$d/$name-key.pem"
    rm -f "$d/$name.csr"
}
mkca() { # DIR
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/ca-key.pem" \
        -out "$1/ca-cert.pem" -subj "/CN=repvol test CA $(basename "$1")" -days 30 2>/dev/null || fail "openssl CA"
    chmod 600 "$1/ca-key.pem"
}
mkca "$PKI/server"
mkca "$PKI/rogue"
mkcert "$PKI/server" server "$PKI/server/ca-key.pem" "$PKI/server/ca-cert.pem" 30 \
    "subjectAltName=IP:127.0.0.1,DNS:localhost"
for d in client expired nocert; do cp "$PKI/server/ca-cert.pem" "$PKI/$d/"; done
mkcert "$PKI/client" client "$PKI/server/ca-key.pem" "$PKI/server/ca-cert.pem" 30
mkcert "$PKI/expired" client "$PKI/server/ca-key.pem" "$PKI/server/ca-cert.pem" -1
mkcert "$PKI/rogue" client "$PKI/rogue/ca-key.pem" "$PKI/rogue/ca-cert.pem" 30
cp "$PKI/server/ca-cert.pem" "$PKI/rogue/ca-cert.pem"      # trusts the server, offers a rogue cert
rm -f "$PKI/server/ca-key.pem"                            # the server needs no CA key
URI_X="nbds://127.0.0.1:$PORT/?tls-certificates=$PKI/client"
start_tls_daemon "$URI_X" --listen "tcp:127.0.0.1:$PORT" --tls require --tls-certificates "$PKI/server"
random_file "$TEST_DIR/good2" $((2 * 1024 * 1024))
tmo 60 nbdcopy "$TEST_DIR/good2" "$URI_X" || fail "nbdcopy with a good client certificate failed"
tmo 60 nbdcopy "$URI_X" "$TEST_DIR/back2" || fail "nbdcopy back with a good client certificate failed"
assert_bytes_equal "$TEST_DIR/good2" "$TEST_DIR/back2" $((2 * 1024 * 1024)) "data read back over X.509 TLS"
for bad in rogue expired nocert; do
    expect_fail "$PYTHON_NBD" "$TEST_DIR/evil_write.py" "nbds://127.0.0.1:$PORT/?tls-certificates=$PKI/$bad" "$TEST_DIR/evil"
    info "$bad: refused ($(tail -n 1 "$TEST_DIR/expect_fail.err"))"
done
grep -q "expired" "$REPVOLD_LOG" || fail "the log does not say the client certificate expired"
repvold_alive || fail "daemon died"
tmo 30 nbdinfo --size "$URI_X" >/dev/null || fail "good client refused after the bad ones"
stop_repvold
check_log_clean "$REPVOLD_LOG"
head -c $((2 * 1024 * 1024)) "$IMG" >"$TEST_DIR/img-head2"
assert_bytes_equal "$TEST_DIR/good2" "$TEST_DIR/img-head2" "image after the X.509 run"
dd if="$IMG" of="$TEST_DIR/img-evil" bs=1M skip=8 count=1 status=none
assert_bytes_equal "$TEST_DIR/zeros" "$TEST_DIR/img-evil" "region the refused X.509 clients tried to write"

# ---------------------------------------------------------------- start-up refusals
step "start-up refusals: loose key file, non-loopback without TLS"
cp "$TEST_DIR/keys.psk" "$TEST_DIR/loose.psk"
chmod 644 "$TEST_DIR/loose.psk"
expect_fail "$REPVOLD" --volume "$IMG" --listen "tcp:127.0.0.1:$PORT" --control "$TEST_DIR/x.ctl" \
    --tls require --tls-psk "$TEST_DIR/loose.psk" --no-mlock
grep -q "has mode 0644.*chmod 600" "$TEST_DIR/expect_fail.err" ||
    fail "loose key file: no clear error: $(cat "$TEST_DIR/expect_fail.err")"
grep -qi "$KEY" "$TEST_DIR/expect_fail.err" && fail "the key appears in the error message"
expect_fail "$REPVOLD" --volume "$IMG" --listen "tcp::$PORT" --control "$TEST_DIR/x.ctl" --no-mlock
grep -q "refusing to serve NBD on tcp::$PORT without TLS" "$TEST_DIR/expect_fail.err" ||
    fail "NBD on all interfaces without TLS: no clear refusal: $(cat "$TEST_DIR/expect_fail.err")"
expect_fail "$REPVOLD" --volume "$IMG" --listen "unix:$SOCK" --repl-listen "0.0.0.0:$PORT" --node-id 1 \
    --control "$TEST_DIR/x.ctl" --no-mlock
grep -q "refusing to replicate over 0.0.0.0:$PORT without TLS" "$TEST_DIR/expect_fail.err" ||
    fail "replication on all interfaces without TLS: no clear refusal: $(cat "$TEST_DIR/expect_fail.err")"
expect_fail "$REPVOLD" --volume "$IMG" --listen "unix:$SOCK" --tls on --control "$TEST_DIR/x.ctl" --no-mlock
grep -q "needs credentials" "$TEST_DIR/expect_fail.err" || fail "--tls on without credentials: no clear error"

echo "PASS: $TEST_NAME"
