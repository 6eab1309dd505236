#!/usr/bin/env bash
# Two nodes over a veth pair: writes through the primary (nbdcopy, then fio
# randwrite with verify) land byte-identically on both images.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd nbdcopy libnbd-bin
require_cmd fio fio

SIZE=$((128 << 20))
create_volume "$TEST_DIR/a.img" "$SIZE"
cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
repl_setup
node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary
node_wait_peer_state A connected

step "the secondary refuses NBD clients"
expect_fail nbdinfo --size "${NODE_URI[B]}"

step "nbdcopy 32 MiB through the primary"
random_file "$TEST_DIR/src" $((32 << 20))
tmo 60 nbdcopy "$TEST_DIR/src" "${NODE_URI[A]}"

step "fio randwrite with verify through the primary"
tmo 120 fio --name=repl --ioengine=nbd --uri="${NODE_URI[A]}" --rw=randwrite --bs=4k --iodepth=32 \
    --offset=32M --size=64M --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$TEST_DIR/fio.out" \
    || { cat "$TEST_DIR/fio.out"; fail "fio verify failed"; }

node_status_json A >"$TEST_DIR/status.json"
python3 - "$TEST_DIR/status.json" <<'PY' || fail "status counters wrong"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["peer"]
assert p["state"] == "connected", p
assert p["bytes_replicated"] >= 96 << 20, p
assert p["nacks"] == 0, p
print("    replicated", p["bytes_replicated"], "bytes in", p["frames_sent"], "frames")
PY

node_stop A
node_stop B
step "compare the two images"
assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "primary and secondary images differ"
assert_bytes_equal "$TEST_DIR/src" "$TEST_DIR/b.img" $((32 << 20)) "secondary lacks the nbdcopy data"
echo "PASS: $TEST_NAME"
