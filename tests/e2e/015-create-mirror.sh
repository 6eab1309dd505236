#!/bin/bash
# repvol create --uuid / --node-id: an empty mirror of an existing volume
# (same UUID, Inconsistent, no data generation) and the node id stored in the
# metadata; invalid values are refused without leaving files behind.
. "$(dirname "$0")/functions.sh"

require_cmd python3 python3
[ -x "$REPVOL" ] || fail "$REPVOL not built (set abs_top_builddir)"

SIZE=$((64 << 20))
ZERO_GEN=0000000000000000

# info_json IMG OUT: `repvol info --json IMG` into OUT, asserting success.
info_json() {
    tmo 10 "$REPVOL" info --json "$1" >"$2" || fail "repvol info --json $1 failed"
}

# json_field FILE KEY: one field of the JSON object in FILE (booleans as
# true/false, lists space-separated).
json_field() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
k = sys.argv[2]
if k not in d:
    sys.exit("no key %r in %s" % (k, sorted(d)))
v = d[k]
if isinstance(v, bool):
    print(str(v).lower())
elif isinstance(v, list):
    print(" ".join(str(x) for x in v))
else:
    print(v)
EOF
}

# no_leftovers: nothing but the expected images in TEST_DIR (no working
# files from a failed or finished create).
no_leftovers() {
    local stray
    stray=$(find "$TEST_DIR" -maxdepth 1 -name '*.creating.*' -print)
    [ -z "$stray" ] || fail "create left working files behind: $stray"
}

step "create --help documents --uuid and --node-id"
tmo 10 "$REPVOL" create --help >"$TEST_DIR/help.txt" || fail "repvol create --help failed"
for word in --uuid --node-id Inconsistent "full sync" 0-31; do
    grep -qF -- "$word" "$TEST_DIR/help.txt" || fail "create --help does not mention '$word'"
done

step "a plain volume: random uuid, UpToDate, node 0, a data generation"
create_volume "$TEST_DIR/primary.img" "$SIZE" --name mirrored
info_json "$TEST_DIR/primary.img" "$TEST_DIR/primary.json"
UUID=$(json_field "$TEST_DIR/primary.json" uuid)
assert_eq "$(json_field "$TEST_DIR/primary.json" disk_state)" UpToDate "plain volume disk_state"
assert_eq "$(json_field "$TEST_DIR/primary.json" node_id)" 0 "plain volume node_id (default)"
[ "$(json_field "$TEST_DIR/primary.json" current_gen)" != "$ZERO_GEN" ] ||
    fail "plain volume has current_gen 0"

step "create --uuid: an empty mirror of that volume"
create_volume "$TEST_DIR/mirror.img" "$SIZE" --name mirrored --uuid "$UUID" --node-id 1 \
    >"$TEST_DIR/create.out"
cat "$TEST_DIR/create.out"
grep -qF "$UUID" "$TEST_DIR/create.out" || fail "create output does not show the uuid"
grep -qF Inconsistent "$TEST_DIR/create.out" || fail "create output does not say Inconsistent"
info_json "$TEST_DIR/mirror.img" "$TEST_DIR/mirror.json"
cat "$TEST_DIR/mirror.json"
J=$TEST_DIR/mirror.json
assert_eq "$(json_field "$J" uuid)" "$UUID" "mirror uuid"
assert_eq "$(json_field "$J" disk_state)" Inconsistent "mirror disk_state"
assert_eq "$(json_field "$J" current_gen)" "$ZERO_GEN" "mirror current_gen"
assert_eq "$(json_field "$J" bitmap_gen)" "$ZERO_GEN" "mirror bitmap_gen"
assert_eq "$(json_field "$J" history_gen)" "$ZERO_GEN $ZERO_GEN" "mirror history_gen"
assert_eq "$(json_field "$J" node_id)" 1 "mirror node_id"
assert_eq "$(json_field "$J" role)" secondary "mirror role"
assert_eq "$(json_field "$J" clean)" true "mirror clean flag"
assert_eq "$(json_field "$J" name)" mirrored "mirror name"
# Same geometry as the original, so the two can pair.
python3 - "$TEST_DIR/primary.json" "$J" <<'EOF' || fail "mirror geometry differs from the original"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
keys = ["data_size", "block_size", "bitmap_granularity", "bitmap_offset",
        "bitmap_length", "superblock_offset", "file_size", "format_version"]
bad = [(k, a[k], b[k]) for k in keys if a[k] != b[k]]
if bad:
    sys.exit("differs: %s" % bad)
EOF
assert_eq "$(stat -c %s "$TEST_DIR/mirror.img")" "$(stat -c %s "$TEST_DIR/primary.img")" \
    "mirror file size"
ALLOC=$(allocated_bytes "$TEST_DIR/mirror.img")
[ "$ALLOC" -le $((4 << 20)) ] || fail "mirror image is not sparse ($ALLOC bytes allocated)"
assert_bytes_equal "$TEST_DIR/mirror.img" /dev/zero "$SIZE" "mirror data region is not zero"
tmo 10 "$REPVOL" info "$TEST_DIR/mirror.img" >"$TEST_DIR/mirror.txt" || fail "repvol info (text)"
grep -qE '^disk state: +Inconsistent' "$TEST_DIR/mirror.txt" || fail "text info: disk state"
grep -qE '^node id: +1$' "$TEST_DIR/mirror.txt" || fail "text info: node id"
no_leftovers

step "--uuid accepts upper case and stores the canonical form"
UPPER=$(printf '%s' "$UUID" | tr a-f A-F)
create_volume "$TEST_DIR/upper.img" "$SIZE" --uuid "$UPPER" >/dev/null
info_json "$TEST_DIR/upper.img" "$TEST_DIR/upper.json"
assert_eq "$(json_field "$TEST_DIR/upper.json" uuid)" "$UUID" "uuid given in upper case"
assert_eq "$(json_field "$TEST_DIR/upper.json" node_id)" 0 "node_id defaults to 0 with --uuid"
assert_eq "$(json_field "$TEST_DIR/upper.json" disk_state)" Inconsistent "upper-case mirror state"

step "--node-id without --uuid: a normal new volume with that node id"
create_volume "$TEST_DIR/node5.img" "$SIZE" --node-id 5 >/dev/null
info_json "$TEST_DIR/node5.img" "$TEST_DIR/node5.json"
assert_eq "$(json_field "$TEST_DIR/node5.json" node_id)" 5 "--node-id 5"
assert_eq "$(json_field "$TEST_DIR/node5.json" disk_state)" UpToDate "--node-id only: disk_state"
[ "$(json_field "$TEST_DIR/node5.json" uuid)" != "$UUID" ] || fail "--node-id only reused a uuid"
[ "$(json_field "$TEST_DIR/node5.json" current_gen)" != "$ZERO_GEN" ] ||
    fail "--node-id only: current_gen is 0"
create_volume "$TEST_DIR/node31.img" "$SIZE" --node-id 31 >/dev/null
info_json "$TEST_DIR/node31.img" "$TEST_DIR/node31.json"
assert_eq "$(json_field "$TEST_DIR/node31.json" node_id)" 31 "--node-id 31 (the largest)"
create_volume "$TEST_DIR/node0.img" "$SIZE" --node-id 0 >/dev/null
info_json "$TEST_DIR/node0.img" "$TEST_DIR/node0.json"
assert_eq "$(json_field "$TEST_DIR/node0.json" node_id)" 0 "--node-id 0"
no_leftovers

step "bad --node-id values are refused"
for bad in 32 100 -1 abc 1x " 1" "" 4294967297 0x1; do
    expect_fail "$REPVOL" create --size 64M --node-id "$bad" "$TEST_DIR/bad.img"
    info "--node-id '$bad': $(head -n1 "$TEST_DIR/expect_fail.err")"
    grep -qF -- --node-id "$TEST_DIR/expect_fail.err" || fail "--node-id '$bad': unclear message"
    [ ! -e "$TEST_DIR/bad.img" ] || fail "--node-id '$bad' left $TEST_DIR/bad.img behind"
done

step "bad --uuid values are refused"
for bad in not-a-uuid "" "${UUID}0" "${UUID:1}" "${UUID//-/}" "${UUID/-/_}" \
    "g${UUID:1}" "{$UUID}" 00000000-0000-0000-0000-000000000000; do
    expect_fail "$REPVOL" create --size 64M --uuid "$bad" "$TEST_DIR/bad.img"
    info "--uuid '$bad': $(head -n1 "$TEST_DIR/expect_fail.err")"
    grep -qiF uuid "$TEST_DIR/expect_fail.err" || fail "--uuid '$bad': unclear message"
    [ ! -e "$TEST_DIR/bad.img" ] || fail "--uuid '$bad' left $TEST_DIR/bad.img behind"
done
grep -qi nil "$TEST_DIR/expect_fail.err" || fail "nil uuid refusal does not say why"
no_leftovers

step "--uuid never overwrites an existing file"
SHA=$(file_sha "$TEST_DIR/primary.img")
expect_fail "$REPVOL" create --size 64M --uuid "$UUID" "$TEST_DIR/primary.img"
grep -qiE 'exists|overwrite' "$TEST_DIR/expect_fail.err" || fail "overwrite refusal: unclear message"
assert_eq "$(file_sha "$TEST_DIR/primary.img")" "$SHA" "existing image modified by create --uuid"
printf 'precious data\n' >"$TEST_DIR/precious.txt"
expect_fail "$REPVOL" create --size 64M --uuid "$UUID" --node-id 2 "$TEST_DIR/precious.txt"
assert_eq "$(cat "$TEST_DIR/precious.txt")" "precious data" "create --uuid clobbered a file"
ln -s "$TEST_DIR/nowhere" "$TEST_DIR/dangling.img"
expect_fail "$REPVOL" create --size 64M --uuid "$UUID" "$TEST_DIR/dangling.img"
[ ! -e "$TEST_DIR/nowhere" ] || fail "create --uuid followed a dangling symlink"
no_leftovers

step "create --uuid into a missing directory fails cleanly"
expect_fail "$REPVOL" create --size 64M --uuid "$UUID" "$TEST_DIR/no/such/dir/m.img"
grep -qiE 'no such file|directory' "$TEST_DIR/expect_fail.err" ||
    fail "missing directory: unclear message"
