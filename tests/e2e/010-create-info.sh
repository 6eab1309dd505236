#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2119 # stop_repvold: optional args
# repvol create / info: metadata, refusals, sparseness, fresh volume reads
# as zeroes through the daemon, corrupt images are refused.
. "$(dirname "$0")/functions.sh"

require_cmd nbdinfo libnbd-bin
require_cmd nbdcopy libnbd-bin
require_cmd python3 python3
require_binaries

SIZE=$((64 << 20))
IMG=$TEST_DIR/vol.img
SOCK=$TEST_DIR/nbd.sock
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# json_field FILE KEY...: first of KEYs present in the JSON object in FILE.
json_field() {
    python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    if k in d:
        v = d[k]
        print(str(v).lower() if isinstance(v, bool) else v)
        sys.exit(0)
sys.exit("none of %s in %s" % (sys.argv[2:], sorted(d)))
EOF
}

step "create a 64 MiB volume"
create_volume "$IMG" "$SIZE" --name e2evol
FILE_SIZE=$(stat -c %s "$IMG")
info "file size $FILE_SIZE, allocated $(allocated_bytes "$IMG")"
[ "$FILE_SIZE" -le $((SIZE + (16 << 20))) ] ||
    fail "metadata tail is unreasonably large: file $FILE_SIZE for data $SIZE"

step "the image is sparse"
ALLOC=$(allocated_bytes "$IMG")
[ "$ALLOC" -le $((4 << 20)) ] ||
    fail "fresh 64 MiB image allocates $ALLOC bytes; expected a sparse file"

step "info --json"
tmo 10 "$REPVOL" info --json "$IMG" >"$TEST_DIR/info.json" || fail "repvol info --json failed"
cat "$TEST_DIR/info.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d, dict)' "$TEST_DIR/info.json" ||
    fail "repvol info --json did not print a JSON object"
assert_eq "$(json_field "$TEST_DIR/info.json" size data_size)" "$SIZE" "info --json size"
UUID=$(json_field "$TEST_DIR/info.json" uuid)
[[ $UUID =~ $UUID_RE ]] || fail "uuid '$UUID' is not a canonical lower-case UUID"
assert_eq "$(json_field "$TEST_DIR/info.json" name)" e2evol "info --json name"

step "info (text)"
tmo 10 "$REPVOL" info "$IMG" >"$TEST_DIR/info.txt" || fail "repvol info failed"
cat "$TEST_DIR/info.txt"
grep -qF "$UUID" "$TEST_DIR/info.txt" || fail "text info does not show the uuid $UUID"
grep -qF e2evol "$TEST_DIR/info.txt" || fail "text info does not show the name"
grep -qE "\b$SIZE\b|\b64 ?(M|MiB)\b|\b64\.0 ?(M|MiB)\b" "$TEST_DIR/info.txt" ||
    fail "text info does not show the size (64 MiB / $SIZE)"

step "a second volume gets another uuid; --name is optional"
create_volume "$TEST_DIR/other.img" $((128 << 20))
tmo 10 "$REPVOL" info --json "$TEST_DIR/other.img" >"$TEST_DIR/other.json" || fail "info other.img"
UUID2=$(json_field "$TEST_DIR/other.json" uuid)
[[ $UUID2 =~ $UUID_RE ]] || fail "uuid '$UUID2' is not a canonical UUID"
[ "$UUID2" != "$UUID" ] || fail "two volumes share the uuid $UUID"
assert_eq "$(json_field "$TEST_DIR/other.json" size data_size)" $((128 << 20)) "size of the 128 MiB volume"
json_field "$TEST_DIR/other.json" name >/dev/null || fail "info --json has no name key"

step "create refuses to overwrite"
SHA_BEFORE=$(file_sha "$IMG")
expect_fail "$REPVOL" create --size 64M "$IMG"
[ -s "$TEST_DIR/expect_fail.err" ] || fail "overwrite refusal printed no message"
assert_eq "$(file_sha "$IMG")" "$SHA_BEFORE" "existing image modified by a refused create"
assert_eq "$(stat -c %s "$IMG")" "$FILE_SIZE" "existing image size changed"
printf 'precious data\n' >"$TEST_DIR/precious.txt"
expect_fail "$REPVOL" create --size 64M "$TEST_DIR/precious.txt"
assert_eq "$(cat "$TEST_DIR/precious.txt")" "precious data" "create clobbered an existing file"

step "create refuses bad sizes"
for bad in 0 1000 abc -64M ""; do
    expect_fail "$REPVOL" create --size "$bad" "$TEST_DIR/bad.img"
    [ -s "$TEST_DIR/expect_fail.err" ] || fail "--size '$bad' refused without a message"
    info "--size '$bad': $(head -n1 "$TEST_DIR/expect_fail.err")"
    [ ! -e "$TEST_DIR/bad.img" ] || fail "--size '$bad' left $TEST_DIR/bad.img behind"
done

step "info on non-images fails with a clear message"
random_file "$TEST_DIR/garbage.img" $((1 << 20))
: >"$TEST_DIR/empty.img"
head -c 100 /dev/urandom >"$TEST_DIR/tiny.img"
for f in garbage.img empty.img tiny.img; do
    expect_fail "$REPVOL" info "$TEST_DIR/$f"
    info "$f: $(head -n1 "$TEST_DIR/expect_fail.err")"
    grep -qiE 'magic|superblock|not a repvol|invalid|corrupt|unrecogni|bad|too small|short|truncated' \
        "$TEST_DIR/expect_fail.err" || fail "info $f: unclear error message"
    expect_fail "$REPVOL" info --json "$TEST_DIR/$f"
done
expect_fail "$REPVOL" info "$TEST_DIR/does-not-exist.img"
grep -qiE 'no such file|not found|does-not-exist' "$TEST_DIR/expect_fail.err" ||
    fail "info on a missing file: unclear error message"

step "a corrupt superblock is refused by info and by the daemon"
cp --sparse=always "$IMG" "$TEST_DIR/corrupt.img"
head -c 4096 /dev/urandom |
    dd of="$TEST_DIR/corrupt.img" bs=4096 oflag=seek_bytes seek=$((FILE_SIZE - 4096)) conv=notrunc status=none
expect_fail "$REPVOL" info "$TEST_DIR/corrupt.img"
expect_fail "$REPVOLD" --volume "$TEST_DIR/corrupt.img" --listen "unix:$TEST_DIR/corrupt.sock"
info "repvold: $(tail -n1 "$TEST_DIR/expect_fail.err")"
[ -s "$TEST_DIR/expect_fail.err" ] || fail "daemon refused a corrupt image without a message"
expect_fail "$REPVOLD" --volume "$TEST_DIR/garbage.img" --listen "unix:$TEST_DIR/garbage.sock"
expect_fail "$REPVOLD" --volume "$TEST_DIR/does-not-exist.img" --listen "unix:$TEST_DIR/missing.sock"

step "a fresh volume reads as zeroes through the daemon"
start_repvold "$IMG" "$SOCK"
assert_eq "$(tmo 10 nbdinfo --size "$REPVOLD_URI")" "$SIZE" "export size"
tmo 30 nbdcopy "$REPVOLD_URI" "$TEST_DIR/read.raw" || fail "nbdcopy out of the export failed"
assert_eq "$(stat -c %s "$TEST_DIR/read.raw")" "$SIZE" "bytes read from the export"
assert_bytes_equal "$TEST_DIR/read.raw" /dev/zero "$SIZE" "fresh volume is not all zeroes"
stop_repvold

step "after a clean daemon run the image is still valid, unchanged and sparse"
tmo 10 "$REPVOL" info --json "$IMG" >"$TEST_DIR/info2.json" || fail "info after daemon run"
assert_eq "$(json_field "$TEST_DIR/info2.json" uuid)" "$UUID" "uuid after daemon run"
assert_eq "$(json_field "$TEST_DIR/info2.json" size data_size)" "$SIZE" "size after daemon run"
assert_eq "$(stat -c %s "$IMG")" "$FILE_SIZE" "file size after daemon run"
assert_bytes_equal "$IMG" /dev/zero "$SIZE" "data region of the image after a read-only session"
ALLOC=$(allocated_bytes "$IMG")
[ "$ALLOC" -le $((4 << 20)) ] || fail "daemon run allocated the image ($ALLOC bytes)"
