#!/usr/bin/env bash
# Where the kernel has no ublk driver (/dev/ublk-control missing, as on the
# development machines): repvold --ublk says so in one line and exits 1,
# before touching the image, even when NBD listeners were given too (an
# explicit request for a block device is not half-served); everything else
# works as before; 'repvol attach --ublk' fails with the same explanation
# and leaves the daemon serving NBD.  The ublk device itself is tested in
# the kernel guest (tests/vm/).
. "$(dirname "$0")/functions.sh"
require_binaries
[ ! -e /dev/ublk-control ] || skip "this kernel has ublk_drv (/dev/ublk-control exists); the no-driver path cannot be shown here"

SIZE=$((16 << 20))
create_volume "$TEST_DIR/v.img" "$SIZE"
before=$("$REPVOL" info "$TEST_DIR/v.img")

step "--ublk alone: one clear line, exit 1"
expect_fail "$REPVOLD" --volume "$TEST_DIR/v.img" --ublk --control "$TEST_DIR/c1.ctl"
assert_eq "$EXPECT_FAIL_RC" 1 "exit status of repvold --ublk without ublk_drv"
err=$(cat "$TEST_DIR/expect_fail.err")
info "stderr: $err"
assert_eq "$(wc -l <"$TEST_DIR/expect_fail.err")" 1 "number of lines on stderr"
[[ $err == *"/dev/ublk-control"* ]] || fail "message does not name /dev/ublk-control: $err"
[[ $err == *ublk_drv* ]] || fail "message does not name ublk_drv: $err"
[[ $err == *"--listen"* ]] || fail "message does not point to the NBD frontend (--listen): $err"
[ ! -s "$TEST_DIR/expect_fail.out" ] || fail "repvold printed a device path on stdout: $(cat "$TEST_DIR/expect_fail.out")"

step "--ublk with --listen: refused the same way, nothing listening"
expect_fail "$REPVOLD" --volume "$TEST_DIR/v.img" --ublk --listen "unix:$TEST_DIR/n.sock" --control "$TEST_DIR/c2.ctl"
assert_eq "$EXPECT_FAIL_RC" 1 "exit status of repvold --ublk --listen without ublk_drv"
[ ! -S "$TEST_DIR/n.sock" ] || fail "an NBD socket was left behind"
assert_eq "$("$REPVOL" info "$TEST_DIR/v.img")" "$before" "the image metadata changed (opened before the check?)"

step "the NBD frontend is unaffected; attach --ublk fails and leaves it serving"
start_repvold "$TEST_DIR/v.img" "$TEST_DIR/nbd.sock"
random_file "$TEST_DIR/data" $((1 << 20))
tmo 30 nbdcopy "$TEST_DIR/data" "$REPVOLD_URI"
expect_fail "$REPVOL" attach --ublk --control "$REPVOLD_CTL"
[[ $(cat "$TEST_DIR/expect_fail.err") == *"/dev/ublk-control"* ]] || fail "attach: unclear error: $(cat "$TEST_DIR/expect_fail.err")"
expect_fail "$REPVOL" attach --control "$REPVOLD_CTL"
assert_eq "$EXPECT_FAIL_RC" 2 "attach without --ublk is a usage error"
expect_fail "$REPVOL" detach --control "$REPVOLD_CTL"
[[ $(cat "$TEST_DIR/expect_fail.err") == *"no ublk device"* ]] || fail "detach: unclear error: $(cat "$TEST_DIR/expect_fail.err")"
expect_fail "$REPVOL" detach --id 0
[[ $(cat "$TEST_DIR/expect_fail.err") == *"ublk_drv"* ]] || fail "detach --id: unclear error: $(cat "$TEST_DIR/expect_fail.err")"
tmo 30 nbdcopy "$REPVOLD_URI" "$TEST_DIR/back"
assert_bytes_equal "$TEST_DIR/data" "$TEST_DIR/back" $((1 << 20)) "data read back over NBD after the failed attach"
repvold_alive || fail "the daemon died after a failed attach"
stop_repvold
grep -q "ublk" "$REPVOLD_LOG" || fail "the daemon's log does not mention the failed attach"
echo "PASS: $TEST_NAME"
