#!/bin/sh
# Installs the host packages the harness needs, from the host's own apt
# sources only. Guest kernels never come from here (see harness/kernel).
#   scripts/setup-host.sh          runtime: qemu, busybox-static
#   scripts/setup-host.sh --bpf    also the BPF toolchain (make generate)
#   scripts/setup-host.sh --kernel also what building a guest kernel needs
#                                  (make test and make kernel-patched run this)
set -eu

pkgs="qemu-system-x86 busybox-static debian-archive-keyring apt cpio xz-utils"
for arg in "$@"; do
	case "$arg" in
	--bpf) pkgs="$pkgs clang-19 llvm-19 bpftool" ;;
	--kernel) pkgs="$pkgs build-essential bc bison flex libelf-dev libssl-dev pahole ccache patch python3" ;;
	*) echo "setup-host: unknown option $arg (want --bpf or --kernel)" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "setup-host: missing host packages:$missing" >&2
	echo "setup-host: install them with: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "setup-host: installing$missing"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing; then
	apt-get update
	apt-get install -y --no-install-recommends $missing
fi
