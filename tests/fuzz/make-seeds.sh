#!/usr/bin/env bash
# tests/fuzz/make-seeds.sh - regenerate the seed corpora in tests/fuzz/corpus/.
#
#   make-seeds.sh [--no-capture]
#
# 1. Constructed seeds: gen-seeds.c, built here against the real encoders of
#    librepvol-core, writes byte-exact requests, handshakes, replication
#    frames and superblocks (see the comments in gen-seeds.c).
# 2. Captured seeds (unless --no-capture, or nbdkit/nbdinfo/python3 are
#    missing): real NBD clients (nbdinfo, nbdinfo --list, nbdinfo --map,
#    nbdcopy, qemu-img) talk to 'nbdkit memory' through a small proxy that
#    records what the client sends; each recording, behind the handshake
#    harness's 8-byte control prefix, becomes corpus/fuzz-nbd-handshake/
#    capture-<client>.  The bytes depend on the client versions, so a
#    regeneration may change them; review with 'git diff --stat'.
#
# Existing files of the same name are overwritten; other files (e.g. seeds
# added by hand) are left alone.  Needs: cc (or $CC); for captures nbdkit,
# libnbd-bin, qemu-utils, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
corpus=$here/corpus
capture=1
case "${1:-}" in
"") ;;
--no-capture) capture=0 ;;
-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "make-seeds: unknown argument '$1'" >&2; exit 2 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/repvol-seeds.XXXXXX")
nbdkit_pid=""
cleanup() {
    [ -n "$nbdkit_pid" ] && kill "$nbdkit_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# ------------------------------------------------------------ constructed
cc=${CC:-cc}
libs=$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)
# shellcheck disable=SC2086
"$cc" -std=gnu11 -O1 -D_GNU_SOURCE -I"$srcdir/include" -o "$tmp/gen-seeds" \
    "$here/gen-seeds.c" "$srcdir"/server/{util,crc32c,meta_format,nbd_proto,repl_proto}.c \
    $libs -lpthread
mkdir -p "$corpus"
"$tmp/gen-seeds" "$corpus"
echo "make-seeds: constructed seeds written to $corpus"

# ---------------------------------------------------------------- captured
if [ $capture = 0 ]; then exit 0; fi
for t in nbdkit nbdinfo python3; do
    if ! command -v $t >/dev/null 2>&1; then
        echo "make-seeds: no $t: skipping captured handshakes"
        exit 0
    fi
done

# The proxy: accept one connection on argv[1], connect to argv[2], copy both
# ways, record the client's bytes (at most 8 KiB) in argv[3].
cat >"$tmp/proxy.py" <<'EOF'
import os, select, socket, sys
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lsock.bind(sys.argv[1]); lsock.listen(8)
open(sys.argv[1] + ".ready", "w").close()
lsock.settimeout(20)
c, _ = lsock.accept()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[2])
rec = bytearray()
peers = {c: s, s: c}
try:
    while True:
        r, _, _ = select.select([c, s], [], [], 20)
        if not r: break
        done = False
        for x in r:
            d = x.recv(65536)
            if not d: done = True; break
            if x is c and len(rec) < 8192: rec += d[:8192 - len(rec)]
            peers[x].sendall(d)
        if done: break
finally:
    with open(sys.argv[3], "wb") as f: f.write(rec)
EOF

nbdkit -U "$tmp/nbd.sock" --pidfile "$tmp/nbdkit.pid" memory 1M
for _ in $(seq 50); do [ -s "$tmp/nbdkit.pid" ] && break; sleep 0.1; done
nbdkit_pid=$(cat "$tmp/nbdkit.pid")

# Control prefix: export like repvold's ("vol0", a description, block sizes
# 1/4096/1M, 1 GiB), its transmission flags, no shutdown, fed in one piece.
prefix='\x3a\x09\xed\x00\x00\x00\x00\x00'

record() {   # name command... (the command gets the URI as its last argument)
    local name=$1
    shift
    local sock=$tmp/p-$name.sock
    rm -f "$sock" "$sock.ready"
    python3 "$tmp/proxy.py" "$sock" "$tmp/nbd.sock" "$tmp/$name.bin" &
    local ppid=$!
    for _ in $(seq 50); do [ -e "$sock.ready" ] && break; sleep 0.1; done
    if timeout 20 "$@" "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then :; else
        echo "make-seeds: '$*' failed (capture kept if any)"
    fi
    wait "$ppid" 2>/dev/null || true
    if [ -s "$tmp/$name.bin" ]; then
        { printf "$prefix"; cat "$tmp/$name.bin"; } >"$corpus/fuzz-nbd-handshake/capture-$name"
        echo "make-seeds: captured $name ($(stat -c %s "$tmp/$name.bin") bytes)"
    fi
}

record nbdinfo nbdinfo
record nbdinfo-list nbdinfo --list
record nbdinfo-map nbdinfo --map
if command -v nbdcopy >/dev/null 2>&1; then
    # One connection (-C 1) so a single recording holds the whole session.
    record nbdcopy sh -c 'exec nbdcopy -C 1 "$0" null:'
fi
if command -v qemu-img >/dev/null 2>&1; then
    record qemu-img-map sh -c 'exec qemu-img map --output=json "$0"'
fi
