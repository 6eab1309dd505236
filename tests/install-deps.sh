#!/usr/bin/env bash
# tests/install-deps.sh - install everything repvol needs on Debian 12
# (bookworm): build, unit and end-to-end tests, the quickstart demo and the
# benchmark.  Idempotent: packages already installed are skipped, so a rerun
# does no apt work at all and takes well under a second.
#
#   sudo bash tests/install-deps.sh            # install what is missing
#   bash tests/install-deps.sh --check         # only list what is missing (exit 1 if any)
#   bash tests/install-deps.sh --list          # print the package list
#
# Environment:
#   REPVOL_DEPS_NO_UPDATE=1   never run 'apt-get update' (use the lists as they are)
set -euo pipefail

# Build: compiler, autotools, libraries and headers.
BUILD_PKGS=(
    build-essential autoconf automake libtool pkg-config
    liburing-dev libnbd-dev libssl-dev libcunit1-dev
)
# Run, test, demo, benchmark: NBD clients (nbdinfo, nbdcopy, nbdfuse, nbdsh),
# a reference NBD server, qemu-img, fio, mkfs/e2fsck, FUSE, losetup, ...
RUNTIME_PKGS=(
    libnbd-bin nbdkit qemu-utils fio e2fsprogs fuse3 python3 python3-libnbd
    valgrind util-linux procps iproute2 nftables coreutils
)
# Kernel-guest tests (tests/vm, make check-vm): qemu boots a Debian kernel
# with ublk_drv and nbd; the guest gets busybox-static, the kernel's NBD
# client and e2fsprogs from the host (tests/vm/run-kernel-test.sh).
VM_PKGS=(
    qemu-system-x86 busybox-static nbd-client xz-utils
)
# Later work: clang + sanitizer/fuzzer runtimes (libFuzzer), the SPIN model
# checker for the replication protocol model.
LATER_PKGS=(
    clang libclang-rt-14-dev spin resource-agents
)
ALL_PKGS=("${BUILD_PKGS[@]}" "${RUNTIME_PKGS[@]}" "${VM_PKGS[@]}" "${LATER_PKGS[@]}")

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

mode=install
case "${1:-}" in
"") ;;
--check) mode=check ;;
--list) printf '%s\n' "${ALL_PKGS[@]}"; exit 0 ;;
-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (try --help)" ;;
esac

command -v dpkg-query >/dev/null 2>&1 || die "this script is for Debian 12 (no dpkg-query found)"

if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
        say "warning: written for Debian 12, this is ${PRETTY_NAME:-unknown}; trying anyway"
    fi
fi

is_installed() {
    # "ii " = wanted install, status installed, no errors.
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=()
for p in "${ALL_PKGS[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#ALL_PKGS[@]} packages already installed"
    exit 0
fi
say "missing ${#missing[@]} of ${#ALL_PKGS[@]} packages: ${missing[*]}"
[ "$mode" = check ] && exit 1

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        say "not root: re-running with sudo"
        exec sudo -E bash "$0" "$@"
    fi
    die "must run as root (or have sudo) to install packages"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)

# Run 'apt-get update' at most once, and only when needed: when the package
# lists are missing or older than a day, or when a missing package has no
# installation candidate in the lists we have.
need_update=no
if [ "${REPVOL_DEPS_NO_UPDATE:-0}" != 1 ]; then
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        need_update=yes
    elif [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit)" ]; then
        need_update=yes
    else
        for p in "${missing[@]}"; do
            cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
            if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
                need_update=yes
                break
            fi
        done
    fi
fi
if [ "$need_update" = yes ]; then
    say "apt-get update"
    apt-get "${APT_OPTS[@]}" update -q
fi

install_missing() {
    apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${missing[@]}"
}
say "apt-get install ${missing[*]}"
if ! install_missing; then
    # Stale lists give 404s for superseded versions: refresh once and retry.
    if [ "$need_update" = yes ] || [ "${REPVOL_DEPS_NO_UPDATE:-0}" = 1 ]; then
        die "apt-get install failed"
    fi
    say "install failed; apt-get update and one retry"
    apt-get "${APT_OPTS[@]}" update -q
    install_missing || die "apt-get install failed"
fi

still=()
for p in "${missing[@]}"; do
    is_installed "$p" || still+=("$p")
done
[ ${#still[@]} -eq 0 ] || die "not installed after apt-get: ${still[*]}"
say "done: installed ${#missing[@]} package(s)"
