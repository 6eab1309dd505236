#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# Misbehaving clients (tests/helpers/nbd-bad-client, every scenario, over
# unix and tcp) with good clients working in between; idle and half-open
# connections stay around; the data equals exactly what the good clients
# wrote; the daemon survives and still exits 0 on SIGTERM.
. "$(dirname "$0")/functions.sh"

require_cmd nbdcopy libnbd-bin
require_cmd nbdinfo libnbd-bin
require_cmd qemu-io qemu-utils
require_cmd python3 python3
require_binaries
[ -x "$NBD_BAD_CLIENT" ] || fail "$NBD_BAD_CLIENT not built (make check builds it)"

SCENARIOS="garbage-handshake bad-option-magic unknown-option huge-option read-past-end
write-past-end oversized-read bad-request-magic unknown-command truncated-write
flags-not-negotiated"

SIZE=$((64 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
PORT=$(free_tcp_port)
TCP_URI=$(nbd_tcp_uri "$PORT")
EXPECTED=$TEST_DIR/expected.raw

create_volume "$IMG" "$SIZE"
start_repvold "$IMG" "$SOCK" --listen "tcp:127.0.0.1:$PORT"

step "good client writes random data"
random_file "$EXPECTED" "$SIZE"
tmo 60 nbdcopy --flush "$EXPECTED" "$REPVOLD_URI" || fail "nbdcopy in"
EXPECTED_SHA=$(file_sha "$EXPECTED")

step "idle connections: one that never says anything, one that stops mid-handshake"
cat >"$TEST_DIR/idle.py" <<'EOF'
import socket, sys, time
kind, addr, mode, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if kind == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.connect(addr)
else:
    s = socket.create_connection(("127.0.0.1", int(addr)))
s.settimeout(secs)
if mode == "half":
    hello = s.recv(18)          # NBDMAGIC IHAVEOPT flags
    assert hello[:8] == b"NBDMAGIC", hello
    s.sendall(b"\0\0\0\3")      # client flags: fixed newstyle, no zeroes
    s.sendall(b"IHAVEOPT")      # ... and then nothing more
t_end = time.monotonic() + secs
try:
    while time.monotonic() < t_end:
        if not s.recv(4096):
            break               # server closed: fine
except (socket.timeout, ConnectionResetError):
    pass
EOF
python3 "$TEST_DIR/idle.py" unix "$SOCK" silent "$(tscale 120)" &
IDLE1=$!
python3 "$TEST_DIR/idle.py" tcp "$PORT" half "$(tscale 120)" &
IDLE2=$!
track_pid "$IDLE1"
track_pid "$IDLE2"

n=0
# good_client_round N URI: the export still answers, a new write lands and
# reads back, and now and then the whole volume reads as expected.
good_client_round() {
    local n=$1 uri=$2 off pat
    assert_eq "$(tmo 10 nbdinfo --size "$uri")" "$SIZE" "export size after bad client #$n"
    off=$(((n * 1237 % 240) * 262144 + (n % 7) * 4096))
    pat=$(((n * 37 + 11) % 256))
    tmo 30 qemu-io -f raw -c "write -P $pat $off 65536" -c "read -P $pat $off 65536" "$uri" >/dev/null ||
        fail "good client write/read at $off after bad client #$n"
    python3 -c 'import sys; sys.stdout.buffer.write(bytes([int(sys.argv[1])]) * 65536)' "$pat" |
        dd of="$EXPECTED" bs=4096 oflag=seek_bytes seek="$off" conv=notrunc status=none
    if [ $((n % 4)) -eq 0 ]; then
        tmo 60 nbdcopy "$uri" - | cmp - "$EXPECTED" ||
            fail "volume contents wrong after bad client #$n"
    fi
}

for scenario in $SCENARIOS; do
    for transport in unix tcp; do
        n=$((n + 1))
        step "bad client #$n: $scenario over $transport"
        if [ "$transport" = unix ]; then
            args=(--unix "$SOCK")
            uri=$REPVOLD_URI
        else
            args=(--tcp "127.0.0.1:$PORT")
            uri=$TCP_URI
        fi
        rc=0
        tmo 30 "$NBD_BAD_CLIENT" "${args[@]}" "$scenario" >"$TEST_DIR/bad.out" 2>&1 || rc=$?
        sed 's/^/    | /' "$TEST_DIR/bad.out" | tail -n 20
        [ "$rc" -eq 0 ] || fail "nbd-bad-client $scenario over $transport: status $rc (server misbehaved)"
        repvold_alive || fail "daemon died after bad client $scenario over $transport"
        good_client_round "$n" "$uri"
    done
done

step "daemon alive, contents exactly what the good clients wrote"
kill -0 "$REPVOLD_PID" || fail "daemon gone"
pid_alive "$IDLE1" || info "the silent connection was closed by the server"
pid_alive "$IDLE2" || info "the half-open connection was closed by the server"
tmo 60 nbdcopy "$TCP_URI" - | cmp - "$EXPECTED" || fail "final read over tcp differs"
tmo 60 nbdcopy "$REPVOLD_URI" - | cmp - "$EXPECTED" || fail "final read over unix differs"

step "SIGTERM with idle connections still open"
stop_repvold TERM 15
assert_eq "$(data_sha "$IMG" "$SIZE")" "$(file_sha "$EXPECTED")" "image data region after the bad clients"
[ "$(file_sha "$EXPECTED")" != "$EXPECTED_SHA" ] || fail "good-client writes had no effect on the model"
