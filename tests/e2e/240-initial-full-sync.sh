#!/usr/bin/env bash
# Initial full sync of an empty mirror: a sparse 4 GiB primary image holds
# ~100 MiB of data at scattered places (80 random 1 MiB pieces written into
# the raw data region before any daemon runs, then 20 MiB of 64 KiB blocks
# written through a standalone repvold); an empty mirror is made with
# `repvol create --uuid <A's uuid> --size 4G` (generation 0, Inconsistent).
# Both nodes are started, the primary with --resync-rate 20M so the sync
# can be watched: while it runs the mirror must say disk Inconsistent and
# sync target; afterwards it is UpToDate at the primary's generation.  Only
# allocated data travels: the sync's bytes_done is at least what was
# written and less than twice that (a 4 GiB copy would be caught), the
# mirror's image stays sparse, and both data regions are byte-identical.
. "$(dirname "$0")/functions.sh"
. "$_e2e_here/repl-functions.sh"
require_binaries
require_cmd fio fio
require_cmd python3 python3

SIZE=$((4096 << 20))
PIECES=80                       # 1 MiB pieces written into the raw image
THROUGH=$((20 << 20))           # written through a standalone daemon
WRITTEN=$((PIECES * (1 << 20) + THROUGH))
RATE=20M

json_field() { # FILE-or-- KEY
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]) if sys.argv[1] != "-" else sys.stdin)[sys.argv[2]])' "$@"
}

step "sparse 4 GiB primary image: $PIECES random 1 MiB pieces at scattered offsets, written raw"
create_volume "$TEST_DIR/a.img" "$SIZE" >/dev/null
python3 - "$TEST_DIR/a.img" "$PIECES" "$SIZE" <<'PY'
import os, random, sys
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
slots = random.sample(range(size >> 20), n)
fd = os.open(path, os.O_WRONLY)
for s in slots:
    os.pwrite(fd, os.urandom(1 << 20), s << 20)
os.fsync(fd)
os.close(fd)
PY

step "20 MiB of 64 KiB blocks scattered through a standalone repvold"
start_repvold "$TEST_DIR/a.img" "$TEST_DIR/standalone.sock"
tmo 60 fio --name=standalone --ioengine=nbd --uri="$REPVOLD_URI" --rw=randwrite --bs=64k --iodepth=16 \
    --size="$SIZE" --io_size="$THROUGH" --randrepeat=0 --norandommap=0 --output="$TEST_DIR/fio.out" ||
    { cat "$TEST_DIR/fio.out" >&2; fail "fio through the standalone daemon failed"; }
stop_repvold
# Allocated bytes of a data region [0, SIZE) (SEEK_DATA/SEEK_HOLE).
data_allocated() {
    python3 - "$1" "$SIZE" <<'PY'
import os, sys
fd, size, off, total = os.open(sys.argv[1], os.O_RDONLY), int(sys.argv[2]), 0, 0
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    if d >= size:
        break
    h = min(os.lseek(fd, d, os.SEEK_HOLE), size)
    total += h - d
    off = h
print(total)
PY
}
alloc_a=$(data_allocated "$TEST_DIR/a.img")
info "primary's data region: $alloc_a bytes allocated ($WRITTEN written, some of it twice)"
if [ "$alloc_a" -lt $((WRITTEN * 3 / 4)) ] || [ "$alloc_a" -gt "$WRITTEN" ]; then
    fail "the primary's data region has $alloc_a bytes allocated after $WRITTEN were written (file system without SEEK_DATA?)"
fi

step "empty mirror: repvol create --uuid"
"$REPVOL" info --json "$TEST_DIR/a.img" >"$TEST_DIR/a.info"
UUID=$(json_field "$TEST_DIR/a.info" uuid)
tmo 30 "$REPVOL" create --uuid "$UUID" --size 4G "$TEST_DIR/b.img" >/dev/null ||
    fail "repvol create --uuid $UUID --size 4G failed"
"$REPVOL" info --json "$TEST_DIR/b.img" >"$TEST_DIR/b.info"
assert_eq "$(json_field "$TEST_DIR/b.info" uuid)" "$UUID" "the mirror's uuid"
assert_eq "$(json_field "$TEST_DIR/b.info" disk_state)" Inconsistent "the empty mirror's disk state"
assert_eq "$(json_field "$TEST_DIR/b.info" current_gen)" 0000000000000000 "the empty mirror's generation"

step "start both nodes: full sync at $RATE/s"
repl_setup
node_start B "$TEST_DIR/b.img" secondary
node_start A "$TEST_DIR/a.img" primary --resync-rate "$RATE"
seen_target=0 seen_bad=
deadline=$((SECONDS + $(tscale 60)))
MAX_DONE=0
while :; do
    read -r psa ssa pcta donea lefta runsa _ <<<"$(sync_fields A)"
    read -r psb ssb _ _ _ _ dsb <<<"$(sync_fields B)"
    [ "$donea" -gt "$MAX_DONE" ] && MAX_DONE=$donea
    if [ "$ssb" = target ]; then
        seen_target=$((seen_target + 1))
        [ "$dsb" = Inconsistent ] || seen_bad="B is $dsb while a sync target at ${pcta}%"
    fi
    if [ "$psa" = connected ] && [ "$ssa" = none ] && [ "$runsa" -gt 0 ] && [ "$lefta" -eq 0 ] &&
        [ "$psb" = connected ] && [ "$ssb" = none ]; then
        break
    fi
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "full sync not done within $(tscale 60) s: A: $psa $ssa ${pcta}% done $donea left $lefta; B: $psb $ssb $dsb"
    sleep 0.1
done
[ -z "$seen_bad" ] || fail "$seen_bad"
[ "$seen_target" -ge 2 ] || fail "the mirror was seen as a sync target only $seen_target times: the sync was not watched"
info "B was seen Inconsistent as a sync target in $seen_target polls"
ndone=$donea
[ "$MAX_DONE" -gt "$ndone" ] && ndone=$MAX_DONE
info "full sync done: bytes_done $ndone for $alloc_a bytes of data ($WRITTEN written)"
[ "$ndone" -ge "$alloc_a" ] || fail "the full sync moved $ndone bytes, less than the primary's $alloc_a bytes of data"
[ "$ndone" -lt $((2 * WRITTEN)) ] || fail "the full sync moved $ndone bytes for $WRITTEN written: holes were copied"
grep -q 'full sync' "${NODE_LOG[A]}" || fail "the primary did not log a full sync"

node_status_json B >"$TEST_DIR/b.status"
node_status_json A >"$TEST_DIR/a.status"
assert_eq "$(json_field "$TEST_DIR/b.status" disk_state)" UpToDate "the mirror's disk state after the full sync"
gen_a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"]["current"])' "$TEST_DIR/a.status")
gen_b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"]["current"])' "$TEST_DIR/b.status")
assert_eq "$gen_b" "$gen_a" "the mirror's data generation after the full sync"

node_stop A
node_stop B
alloc_b=$(data_allocated "$TEST_DIR/b.img")
info "mirror's data region: $alloc_b bytes allocated"
[ "$alloc_b" -lt $((2 * WRITTEN)) ] || fail "the mirror has $alloc_b bytes allocated for $WRITTEN written: holes were written"
assert_eq "$(json_field - disk_state < <("$REPVOL" info --json "$TEST_DIR/b.img"))" UpToDate "the mirror's disk state on disk"
step "compare the two images' data regions"
# cmp over every range where either image has data (SEEK_DATA/SEEK_HOLE,
# merged); elsewhere both are holes, i.e. zeroes.  Reading 2 x 4 GiB of
# holes would take cmp half a minute on a loaded machine.
python3 - "$TEST_DIR/a.img" "$TEST_DIR/b.img" "$SIZE" >"$TEST_DIR/ranges" <<'PY'
import os, sys
size = int(sys.argv[3])
def extents(path):
    fd, off, out = os.open(path, os.O_RDONLY), 0, []
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        if d >= size:
            break
        h = min(os.lseek(fd, d, os.SEEK_HOLE), size)
        out.append((d, h))
        off = h
    return out
merged = []
for d, h in sorted(extents(sys.argv[1]) + extents(sys.argv[2])):
    if merged and d <= merged[-1][1] + (1 << 20):
        merged[-1][1] = max(merged[-1][1], h)
    else:
        merged.append([d, h])
for d, h in merged:
    print(d, min(h, size) - d)
PY
nranges=0 nbytes=0
while read -r off len; do
    out=$(cmp -i "$off" -n "$len" -- "$TEST_DIR/a.img" "$TEST_DIR/b.img" 2>&1) ||
        fail "primary and mirror differ after the full sync, in the $len bytes at offset $off: $out"
    nranges=$((nranges + 1)) nbytes=$((nbytes + len))
done <"$TEST_DIR/ranges"
info "cmp: $nranges ranges with data, $nbytes bytes, identical; the rest is holes in both"
[ "$nbytes" -ge "$alloc_a" ] || fail "compared only $nbytes bytes, but the primary has $alloc_a bytes of data"
