#!/bin/sh
# Generate bpf/include/vmlinux.h from the BTF of the pinned stock guest kernel.
#
#   scripts/gen-vmlinux-h.sh            # boot a guest once and copy its BTF
#   scripts/gen-vmlinux-h.sh FILE       # use a raw BTF file or a vmlinux ELF
#
# The BTF must hash to bpf/include/vmlinux.btf.sha256, so the header (and the
# BPF objects built from it) only change when the kernel pin is moved on
# purpose. When the header already matches the recorded hash of a previous
# run, nothing is done. Needs bpftool; without a FILE it boots a guest with
# `agentbench vm exec` (needs qemu and the fetched kernel: make kernels).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
inc="$root/bpf/include"
want=$(cut -d' ' -f1 "$inc/vmlinux.btf.sha256")
stamp="$inc/vmlinux.h.btf-sha256"

if [ $# -eq 0 ] && [ -f "$inc/vmlinux.h" ] && [ -f "$stamp" ] &&
	[ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

command -v bpftool >/dev/null 2>&1 ||
	{ echo "gen-vmlinux-h: bpftool not found: run make setup-bpf" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ $# -ge 1 ]; then
	src=$1
	[ -r "$src" ] || { echo "gen-vmlinux-h: cannot read $src" >&2; exit 1; }
else
	echo "gen-vmlinux-h: booting the stock guest to copy /sys/kernel/btf/vmlinux" >&2
	(cd "$root" && AGENTBENCH_GUEST_CMDS="${AGENTBENCH_GUEST_CMDS:-agentinit}" \
		go run ./cmd/agentbench vm exec --kernel stock --out "$tmp/out" -- \
		cp /sys/kernel/btf/vmlinux /out/vmlinux.btf)
	src=$tmp/out/vmlinux.btf
fi

# A vmlinux ELF carries its BTF in a .BTF section; bpftool reads both forms.
got=$(bpftool btf dump file "$src" format raw 2>/dev/null | sha256sum | cut -d' ' -f1)
raw_sha=$(sha256sum "$src" | cut -d' ' -f1)
if [ "$raw_sha" != "$want" ]; then
	# an ELF differs from the raw BTF file; compare what bpftool decodes
	wantdump=$(cut -d' ' -f2 "$inc/vmlinux.btf.sha256" | sed -n 's/^dump=//p')
	if [ -z "$wantdump" ] || [ "$got" != "$wantdump" ]; then
		echo "gen-vmlinux-h: $src does not match the pinned kernel's BTF" >&2
		echo "  (sha256 $raw_sha, expected $want). If the kernel pin moved on purpose," >&2
		echo "  update bpf/include/vmlinux.btf.sha256 and commit the regenerated objects." >&2
		exit 1
	fi
fi

bpftool btf dump file "$src" format c >"$tmp/vmlinux.h"
mv "$tmp/vmlinux.h" "$inc/vmlinux.h"
echo "$want" >"$stamp"
echo "gen-vmlinux-h: wrote bpf/include/vmlinux.h" >&2
