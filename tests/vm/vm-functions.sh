# shellcheck shell=bash
# tests/vm/vm-functions.sh - sourced by the kernel-guest tests (tests/vm/NNN-*.sh).
#
# The development machines' kernel has neither ublk_drv nor nbd, so these
# tests boot a stock Debian 6.12 kernel that has both in qemu
# (run-kernel-test.sh, vendored from the shared runner: cached kernel, no
# guest networking, exit status from the guest) and run a guest script there
# with the freshly built repvold/repvol, fio and the e2fsprogs/nbd-client
# tools.  A test is skipped (exit 77, reason printed) only when qemu or the
# kernel package cannot be had; everything else that goes wrong fails it.
#
#   vm_run GUEST-SCRIPT [runner options...]   boot, run, return the guest's status
#
# Environment: abs_top_builddir / abs_top_srcdir (set by make), VMTEST_DIR
# (kernel cache, default /tmp/vmtest), VM_TIMEOUT (default 300 s per boot),
# VM_KERNEL_PKG (Debian kernel package, default the runner's 6.12 cloud
# kernel).  Console logs: build/tests/vm/NAME.console.log.
set -uo pipefail
export LC_ALL=C

VM_TEST_NAME=$(basename "$0" .sh)
_vm_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${abs_top_srcdir:=$(cd "$_vm_here/../.." && pwd)}"
if [ -z "${abs_top_builddir:-}" ]; then
    if [ -x "$abs_top_srcdir/build/repvold" ]; then abs_top_builddir=$abs_top_srcdir/build; else abs_top_builddir=$PWD; fi
fi
VM_RUNNER=$_vm_here/run-kernel-test.sh
VM_TIMEOUT=${VM_TIMEOUT:-300}
export VMTEST_DIR=${VMTEST_DIR:-/tmp/vmtest}

vm_skip() { printf 'SKIP: %s: %s\n' "$VM_TEST_NAME" "$*"; exit 77; }
vm_fail() { printf 'FAIL: %s: %s\n' "$VM_TEST_NAME" "$*"; exit 1; }

vm_require() {
    [ -x "$abs_top_builddir/repvold" ] || vm_fail "$abs_top_builddir/repvold not built"
    [ -x "$abs_top_builddir/repvol" ] || vm_fail "$abs_top_builddir/repvol not built"
    [ "$(id -u)" = 0 ] || vm_skip "needs root: the runner installs qemu and downloads the kernel package with apt"
    command -v fio >/dev/null || vm_fail "fio not installed (tests/install-deps.sh)"
}

# vm_run GUEST-SCRIPT [runner options...]
vm_run() {
    local script=$1 rc=0 log
    shift
    vm_require
    log=$abs_top_builddir/tests/vm/$VM_TEST_NAME.console.log
    mkdir -p "$(dirname "$log")"
    local -a files=(
        -f "$abs_top_builddir/repvold:/usr/bin/repvold"
        -f "$abs_top_builddir/repvol:/usr/bin/repvol"
        -f "$(command -v fio):/usr/bin/fio"
        -f "$_vm_here/guest-lib.sh:/vmtest/guest-lib.sh"
    )
    [ -x /usr/sbin/blkdiscard ] && files+=(-f /usr/sbin/blkdiscard:/usr/sbin/blkdiscard)
    [ -x /usr/sbin/losetup ] && files+=(-f /usr/sbin/losetup:/usr/sbin/losetup)
    [ -n "${VM_KERNEL_PKG:-}" ] && files+=(--kernel-pkg "$VM_KERNEL_PKG")
    local attempt
    for attempt in 1 2; do
        rc=0
        printf '=== %s: booting the 6.12 kernel guest (TCG; timeout %ss)\n' "$VM_TEST_NAME" "$VM_TIMEOUT"
        VMTEST_LOG=$log bash "$VM_RUNNER" --nbd-tools --timeout "$VM_TIMEOUT" "${files[@]}" "$@" -s "$script" \
            2>"$log.runner" || rc=$?
        cat "$log.runner"
        # A guest kernel that dies before reaching /init (seen once: an int3
        # oops in the idle loop of a secondary vCPU under TCG) never ran the
        # test: boot once more, and say so.  Anything later counts.
        if [ "$rc" = 125 ] && [ "$attempt" = 1 ] && ! grep -q '@@VMTEST_[0-9]*_BOOTED' "$log"; then
            cp "$log" "$log.boot-failure"
            printf '=== %s: the guest kernel failed before /init (emulation); booting again (log: %s)\n' \
                "$VM_TEST_NAME" "$log.boot-failure"
            continue
        fi
        break
    done
    case $rc in
    0) return 0 ;;
    126)
        # Host-side setup: only a missing qemu / kernel package is a skip.
        if grep -qE "apt-get (install|download)|kernel package .* not found|no vmlinuz|qemu-system" "$log.runner"; then
            vm_skip "qemu or the kernel package cannot be had: $(grep -m1 ERROR "$log.runner")"
        fi
        vm_fail "runner setup error (exit 126)" ;;
    124) vm_fail "guest timed out after ${VM_TIMEOUT}s (console log: $log)" ;;
    125) vm_fail "guest never reported a status (panic/boot failure; console log: $log)" ;;
    *) vm_fail "guest command exited $rc (console log: $log)" ;;
    esac
}
