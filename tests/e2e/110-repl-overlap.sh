#!/usr/bin/env bash
# Overlapping writes, many in flight, replicated: two fio jobs on two NBD
# connections hammer the same 1 MiB of the primary with random writes
# (iodepth 64 each): 4 KiB writes; then mixed sizes (3.5..64 KiB) at 512-byte
# offsets; then mixed writes racing trims.  The primary orders overlapping
# writes, so both nodes apply every pair of overlapping writes in the same
# order: afterwards the two images, and what the primary served, are
# byte-identical.  The primary's stats.ordered_waits shows that overlapping
# requests really met.
#
# Mode C always; OVERLAP_MODES (default "C B A") adds the mixed phase in
# modes B and A, where the peer acknowledges on receipt (B) or not at all
# before the client's answer (A), so the secondary's ordering counts too.
# OVERLAP_RUNTIME: seconds per fio phase (default 3).
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd nbdcopy libnbd-bin
require_cmd cmp diffutils

SIZE=$((64 << 20))
REGION_OFF=$((4 << 20))     # the hot region: 1 MiB at 4 MiB
REGION_LEN=$((1 << 20))
RUNTIME=${OVERLAP_RUNTIME:-3}
MODES=${OVERLAP_MODES:-C B A}
repl_setup

# status_field N EXPR: a value from node N's `repvol status --json` (d).
status_field() {
    node_status_json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}

# fio_file NAME: run $TEST_DIR/NAME.fio, bounded; fio must report no error.
fio_file() {
    local name=$1 rc=0
    tmo $((RUNTIME + 40)) fio --output="$TEST_DIR/$name.out" "$TEST_DIR/$name.fio" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$TEST_DIR/$name.out" >&2; fail "fio $name exited with status $rc"; }
    if grep -qE 'err= *[1-9]' "$TEST_DIR/$name.out"; then
        cat "$TEST_DIR/$name.out" >&2
        fail "fio $name reported errors"
    fi
    info "$name: $(grep -E '^ +(WRITE|TRIM):' "$TEST_DIR/$name.out" | sed 's/^ *//; s/ (.*, io=/ io=/; s/, run=.*//' | tr '\n' ' ')"
}

# fio_global: the [global] section every phase shares.
fio_global() {
    cat <<EOF
[global]
ioengine=nbd
uri=${NODE_URI[A]}
offset=$REGION_OFF
size=$REGION_LEN
time_based=1
runtime=$RUNTIME
norandommap=1
randrepeat=0
refill_buffers=1
thread=1
group_reporting=1
EOF
}

# run_fio NAME JOBOPTS...: two jobs = two NBD connections, iodepth 64 each,
# random writes on the region.
run_fio() {
    local name=$1
    shift
    {
        fio_global
        printf '%s\n' rw=randwrite iodepth=64 numjobs=2 "$@" "[$name]"
    } >"$TEST_DIR/$name.fio"
    fio_file "$name"
}

start_pair() { # MODE
    rm -f "$TEST_DIR/a.img" "$TEST_DIR/b.img"
    create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
    cp --sparse=always "$TEST_DIR/a.img" "$TEST_DIR/b.img"
    node_start B "$TEST_DIR/b.img" secondary --protocol "$1"
    node_start A "$TEST_DIR/a.img" primary --protocol "$1"
    node_wait_peer_state A connected
}

# check_pair TAG: the run really overlapped and stayed replicated; read the
# volume back through the primary, stop both nodes cleanly, compare: image A
# = image B = what the primary served.
check_pair() {
    local tag=$1 waits nz
    waits=$(status_field A 'd["stats"]["ordered_waits"]')
    info "$tag: primary: ordered_waits=$waits writes=$(status_field A 'd["stats"]["writes"]')" \
        "trims=$(status_field A 'd["stats"]["trims"]') peer=$(node_peer_state A);" \
        "secondary: ordered_waits=$(status_field B 'd["stats"]["ordered_waits"]')"
    [ "$waits" -gt 0 ] || fail "$tag: stats.ordered_waits is $waits: no overlapping requests met"
    [ "$(node_peer_state A)" = connected ] || fail "$tag: the peer link dropped during the run"
    [ "$(status_field A 'd["peer"]["nacks"]')" = 0 ] || fail "$tag: the peer NACKed writes"
    [ "$(status_field A 'd["stats"]["local_only_writes"]')" = 0 ] || fail "$tag: writes were made without the peer"
    [ "$(status_field A 'd["stats"]["errors"]')" = 0 ] || fail "$tag: the primary counted request errors"
    tmo 30 nbdcopy "${NODE_URI[A]}" "$TEST_DIR/served-$tag" || fail "$tag: reading the volume back failed"
    node_stop A
    node_stop B
    assert_bytes_equal "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" "$tag: primary and secondary images differ"
    assert_bytes_equal "$TEST_DIR/served-$tag" "$TEST_DIR/a.img" "$SIZE" "$tag: primary image differs from what it served"
    # The region really holds written data (not two equal empty images).
    nz=$(head -c $((REGION_OFF + REGION_LEN)) "$TEST_DIR/a.img" | tail -c "$REGION_LEN" | tr -d '\0' | wc -c)
    [ "$nz" -gt $((REGION_LEN / 4)) ] || fail "$tag: the hot region has only $nz nonzero bytes"
    info "$tag: images byte-identical (data sha256 $(data_sha "$TEST_DIR/a.img" "$SIZE" | cut -c1-16)...)"
}

# Sizes that are not 4 KiB multiples, at 512-byte offsets, up to 64 KiB.
MIXED=("bssplit=4k/30:3584/10:7680/10:12800/10:33280/15:64k/25" "blockalign=512")

step "mode C: 4 KiB random writes, 2 connections x iodepth 64 on 1 MiB (${RUNTIME}s)"
start_pair C
run_fio c-4k bs=4k
step "mode C: mixed sizes 3.5..64 KiB at 512-byte offsets (${RUNTIME}s)"
run_fio c-mixed "${MIXED[@]}"
step "mode C: mixed-size writes racing 8 KiB trims on the same 1 MiB (${RUNTIME}s)"
{
    fio_global
    printf '%s\n' "[w]" rw=randwrite iodepth=64 "${MIXED[@]}" "[t]" rw=randtrim bs=8k iodepth=8
} >"$TEST_DIR/c-trim.fio"
fio_file c-trim
check_pair C

for m in $MODES; do
    [ "$m" != C ] || continue
    step "mode $m: mixed sizes at 512-byte offsets, 2 connections x iodepth 64 on 1 MiB (${RUNTIME}s)"
    start_pair "$m"
    pace=()
    # Mode A answers at local speed and drops a peer that falls behind by
    # its send buffer: write in bursts of 64 (still overlapping) with pauses
    # the peer can catch up in.
    [ "$m" != A ] || pace=(thinktime=20000 thinktime_blocks=64)
    run_fio "$m-mixed" "${MIXED[@]}" "${pace[@]}"
    check_pair "$m"
done
