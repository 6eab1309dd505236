#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# nbdinfo over unix and tcp: exact size, flags, block sizes, export list,
# allocation map (hole on a fresh volume, data after a write), --readonly,
# --pidfile, export names.
. "$(dirname "$0")/functions.sh"

require_cmd nbdinfo libnbd-bin
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_binaries

SIZE=$((64 << 20))
NAME=infovol
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
PORT=$(free_tcp_port)
TCP_URI=$(nbd_tcp_uri "$PORT")

create_volume "$IMG" "$SIZE" --name "$NAME"

# check_info JSON-FILE READONLY(true|false): size, flags and block sizes.
check_info() {
    python3 - "$1" "$SIZE" "$2" <<'EOF' || fail "nbdinfo --json: unexpected export properties (see above)"
import json, sys
j = json.load(open(sys.argv[1]))
size, ro = int(sys.argv[2]), sys.argv[3] == "true"
bad = []
def want(cond, msg):
    if not cond:
        bad.append(msg)
want(j.get("protocol") == "newstyle-fixed", "protocol %r" % j.get("protocol"))
want(j.get("structured") is True, "structured replies not negotiated")
e = j["exports"]
want(len(e) == 1, "%d exports" % len(e))
e = e[0]
want(e.get("export-size") == size, "export-size %r != %d" % (e.get("export-size"), size))
want(e.get("is_read_only") is ro, "is_read_only %r" % e.get("is_read_only"))
want("base:allocation" in e.get("contexts", []), "no base:allocation context: %r" % e.get("contexts"))
for k in ["can_multi_conn", "can_df"]:
    want(e.get(k) is True, "%s is %r" % (k, e.get(k)))
for k in ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero"]:
    # A read-only export may or may not advertise these; a writable one must.
    want(ro or e.get(k) is True, "%s is %r" % (k, e.get(k)))
mn, pref, mx = e.get("block_size_minimum"), e.get("block_size_preferred"), e.get("block_size_maximum")
want(mn in (1, 512), "block_size_minimum %r" % mn)
want(pref == 4096, "block_size_preferred %r" % pref)
want(mx == 32 << 20, "block_size_maximum %r" % mx)
for b in bad:
    print("  bad:", b, file=sys.stderr)
if bad:
    json.dump(j, sys.stderr, indent=1)
    sys.exit(1)
EOF
}

# check_map MAP-JSON REFERENCE-FILE: the extents tile [0, SIZE) and every
# extent reported as zero reads as zeroes in the reference.  Prints the total
# length of "data" (type bit 0 clear) and of "hole" extents.
check_map() {
    python3 - "$1" "$2" "$SIZE" <<'EOF' || fail "nbdinfo --map: inconsistent allocation map"
import json, sys
m = json.load(open(sys.argv[1]))
ref = open(sys.argv[2], "rb")
size = int(sys.argv[3])
pos = 0
data = hole = 0
for x in m:
    off, ln, t = x["offset"], x["length"], x["type"]
    assert off == pos, "extent at %d, expected %d: %r" % (off, pos, x)
    assert ln > 0, "empty extent %r" % x
    if t & 2:   # zero
        ref.seek(off)
        left = ln
        while left:
            b = ref.read(min(left, 1 << 20))
            assert b and b.count(0) == len(b), "extent %r reported zero but holds data" % x
            left -= len(b)
    if t & 1:
        hole += ln
    else:
        data += ln
    pos += ln
assert pos == size, "map ends at %d, size %d" % (pos, size)
print(data, hole)
EOF
}

step "start with unix and tcp listeners and a pidfile"
start_repvold "$IMG" "$SOCK" --listen "tcp:127.0.0.1:$PORT" --pidfile "$TEST_DIR/repvold.pid"
[ -s "$TEST_DIR/repvold.pid" ] || fail "no pidfile written"
assert_eq "$(tr -d ' \n' <"$TEST_DIR/repvold.pid")" "$REPVOLD_PID" "pid in the pidfile"

for uri in "$REPVOLD_URI" "$TCP_URI"; do
    step "nbdinfo $uri"
    assert_eq "$(tmo 10 nbdinfo --size "$uri")" "$SIZE" "nbdinfo --size"
    tmo 10 nbdinfo --json "$uri" >"$TEST_DIR/info.json" || fail "nbdinfo --json $uri"
    check_info "$TEST_DIR/info.json" false
    for cap in flush fua trim zero fast-zero multi-conn df write; do
        tmo 10 nbdinfo --can "$cap" "$uri" || fail "nbdinfo --can $cap: not advertised on $uri"
    done
    rc=0
    tmo 10 nbdinfo --is read-only "$uri" || rc=$?
    assert_eq "$rc" 2 "nbdinfo --is read-only exit status (2 = false)"

    step "nbdinfo --list $uri"
    tmo 10 nbdinfo --list --json "$uri" >"$TEST_DIR/list.json" || fail "nbdinfo --list $uri"
    python3 - "$TEST_DIR/list.json" "$NAME" "$SIZE" <<'EOF' || fail "nbdinfo --list: export not listed correctly"
import json, sys
j = json.load(open(sys.argv[1]))
names = [e.get("export-name") for e in j["exports"]]
print("   exports:", names)
assert sys.argv[2] in names, "volume name %r not in %r" % (sys.argv[2], names)
for e in j["exports"]:
    assert e.get("export-size") == int(sys.argv[3]), e
EOF
done

step "the volume name works as export name, a wrong one is refused"
assert_eq "$(tmo 10 nbdinfo --size "$(nbd_uri "$SOCK" "$NAME")")" "$SIZE" "size via export name $NAME"
assert_eq "$(tmo 10 nbdinfo --size "$(nbd_tcp_uri "$PORT" "$NAME")")" "$SIZE" "size via tcp export name $NAME"
expect_fail nbdinfo --size "$(nbd_uri "$SOCK" no-such-export)"

step "map of a fresh volume is one hole"
ZERO_REF=$TEST_DIR/zero.ref
truncate -s "$SIZE" "$ZERO_REF"
tmo 10 nbdinfo --map --json "$REPVOLD_URI" >"$TEST_DIR/map0.json" || fail "nbdinfo --map"
tmo 10 nbdinfo --map "$REPVOLD_URI"
read -r data hole < <(check_map "$TEST_DIR/map0.json" "$ZERO_REF")
assert_eq "$data" 0 "bytes mapped as data on a fresh volume"
assert_eq "$hole" "$SIZE" "bytes mapped as hole on a fresh volume"

step "map after writing 1 MiB at 8 MiB and 4 KiB at 40 MiB shows data there"
cp --sparse=always "$ZERO_REF" "$TEST_DIR/ref"
random_file "$TEST_DIR/chunk1" $((1 << 20))
random_file "$TEST_DIR/chunk2" 4096
dd if="$TEST_DIR/chunk1" of="$TEST_DIR/ref" bs=1M seek=8 conv=notrunc,sparse status=none
dd if="$TEST_DIR/chunk2" of="$TEST_DIR/ref" bs=4096 seek=$((40 * 256)) conv=notrunc,sparse status=none
tmo 30 nbdcopy "$TEST_DIR/ref" "$REPVOLD_URI" || fail "nbdcopy into the export"
tmo 10 nbdinfo --map --json "$REPVOLD_URI" >"$TEST_DIR/map1.json" || fail "nbdinfo --map"
tmo 10 nbdinfo --map "$REPVOLD_URI"
read -r data hole < <(check_map "$TEST_DIR/map1.json" "$TEST_DIR/ref")
[ "$data" -ge $(((1 << 20) + 4096)) ] || fail "only $data bytes mapped as data after writing 1 MiB + 4 KiB"
[ "$hole" -ge $((SIZE / 2)) ] || fail "only $hole bytes still mapped as hole"
python3 - "$TEST_DIR/map1.json" <<'EOF' || fail "written ranges not reported as data"
import json, sys
m = json.load(open(sys.argv[1]))
def covered_as_data(lo, hi):
    for x in m:
        a, b = x["offset"], x["offset"] + x["length"]
        if a < hi and b > lo and x["type"] & 1:
            return False
    return True
assert covered_as_data(8 << 20, 9 << 20), "8M..9M"
assert covered_as_data(40 << 20, (40 << 20) + 4096), "40M+4K"
EOF
tmo 30 nbdcopy "$REPVOLD_URI" "$TEST_DIR/back.raw" || fail "nbdcopy out of the export"
assert_bytes_equal "$TEST_DIR/back.raw" "$TEST_DIR/ref" "data read back"
stop_repvold

step "image data region matches"
assert_bytes_equal "$IMG" "$TEST_DIR/ref" "$SIZE" "image data region"
SHA=$(data_sha "$IMG" "$SIZE")

step "--readonly: flags say read-only, writes are refused, image unchanged"
start_repvold "$IMG" "$SOCK" --readonly
tmo 10 nbdinfo --json "$REPVOLD_URI" >"$TEST_DIR/info-ro.json" || fail "nbdinfo --json (readonly)"
check_info "$TEST_DIR/info-ro.json" true
tmo 10 nbdinfo --is read-only "$REPVOLD_URI" || fail "--readonly export does not say read-only"
random_file "$TEST_DIR/junk" $((1 << 20))
expect_fail nbdcopy "$TEST_DIR/junk" "$REPVOLD_URI"
tmo 30 nbdcopy "$REPVOLD_URI" "$TEST_DIR/back-ro.raw" || fail "reading a read-only export"
assert_bytes_equal "$TEST_DIR/back-ro.raw" "$TEST_DIR/ref" "data read from the read-only export"
stop_repvold
assert_eq "$(data_sha "$IMG" "$SIZE")" "$SHA" "image changed while exported read-only"
