#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# fio (nbd engine) random writes with crc32c verification, two concurrent
# jobs (4 KiB and 64 KiB blocks, iodepth 16) on disjoint halves; then a
# fresh daemon: fio verify_only still passes, and what it serves equals the
# image file's data region.
. "$(dirname "$0")/functions.sh"

require_cmd fio fio
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_binaries
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine (Debian's fio package has it)"

SIZE=$((64 << 20))
HALF=$((SIZE / 2))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock

create_volume "$IMG" "$SIZE"

# Two jobs in one fio run = two NBD connections writing at the same time.
write_jobfile() {
    local verify_only=$1 uri=$2
    cat >"$TEST_DIR/verify.fio" <<EOF
[global]
ioengine=nbd
uri=$uri
rw=randwrite
iodepth=16
size=$HALF
verify=crc32c
do_verify=1
verify_fatal=1
verify_only=$verify_only
verify_state_save=0
randrepeat=1
runtime=$(tscale 40)
group_reporting=0

[bs4k]
bs=4k
offset=0
randseed=1234

[bs64k]
bs=64k
offset=$HALF
randseed=5678
EOF
}

# check_fio_json FILE WRITE_BYTES_EXPECTED
check_fio_json() {
    python3 - "$1" "$2" <<'EOF' || fail "fio reported errors or did too little I/O"
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])
want = int(sys.argv[2])
ok = True
for job in j["jobs"]:
    w, r = job["write"]["io_bytes"], job["read"]["io_bytes"]
    print("    %-6s error=%s written=%d read(verify)=%d" % (job["jobname"], job["error"], w, r))
    if job["error"] != 0:
        ok = False
    if w != want:
        print("    %s wrote %d bytes, expected %d" % (job["jobname"], w, want))
        ok = False
    if r != want:
        print("    %s verified only %d bytes" % (job["jobname"], r))
        ok = False
sys.exit(0 if ok else 1)
EOF
}

step "fio randwrite + crc32c verify (4k and 64k, iodepth 16)"
start_repvold "$IMG" "$SOCK"
write_jobfile 0 "$REPVOLD_URI"
rc=0
tmo 90 fio --output-format=json --output="$TEST_DIR/fio1.json" "$TEST_DIR/verify.fio" || rc=$?
[ "$rc" -eq 0 ] || { cat "$TEST_DIR/fio1.json" >&2; fail "fio write+verify failed (status $rc)"; }
check_fio_json "$TEST_DIR/fio1.json" "$HALF"
stop_repvold

step "fresh daemon: fio verify_only on the persisted data"
SHA=$(data_sha "$IMG" "$SIZE")
start_repvold "$IMG" "$SOCK"
write_jobfile 1 "$REPVOLD_URI"
rc=0
tmo 90 fio --output-format=json --output="$TEST_DIR/fio2.json" "$TEST_DIR/verify.fio" || rc=$?
[ "$rc" -eq 0 ] || { cat "$TEST_DIR/fio2.json" >&2; fail "fio verify_only after restart failed (status $rc)"; }
python3 - "$TEST_DIR/fio2.json" "$HALF" <<'EOF' || fail "fio verify_only read too little"
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])
for job in j["jobs"]:
    print("    %-6s error=%s verified=%d" % (job["jobname"], job["error"], job["read"]["io_bytes"]))
    assert job["error"] == 0
    assert job["read"]["io_bytes"] == int(sys.argv[2]), "verified %d bytes" % job["read"]["io_bytes"]
EOF

step "what the fresh daemon serves equals the image's data region"
rm -f "$TEST_DIR/out.raw"
tmo 60 nbdcopy "$REPVOLD_URI" "$TEST_DIR/out.raw" || fail "nbdcopy out"
stop_repvold
assert_bytes_equal "$TEST_DIR/out.raw" "$IMG" "$SIZE" "served data vs image data region"
assert_eq "$(data_sha "$IMG" "$SIZE")" "$SHA" "image changed during a verify-only run"
# fio wrote every block: no block of the volume may still be all zero.
python3 - "$IMG" "$SIZE" <<'EOF' || fail "blocks fio should have written are still zero"
import sys
f = open(sys.argv[1], "rb")
size = int(sys.argv[2])
zero = bytes(4096)
for off in range(0, size, 4096):
    if f.read(4096) == zero:
        sys.exit("block at %d is all zero" % off)
EOF
