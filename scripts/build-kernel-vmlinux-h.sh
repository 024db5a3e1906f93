#!/bin/sh
# Writes a vmlinux.h from the patched guest kernel's BTF (the kernel built
# from vmimages/patches), for BPF programs that use memcg_bpf_ops.
# Usage: build-kernel-vmlinux-h.sh OUT
# AGC_PATCHED_VMLINUX=path/to/vmlinux skips the (cached) kernel build.
set -eu
out=${1:?usage: build-kernel-vmlinux-h.sh OUT}
vml=${AGC_PATCHED_VMLINUX:-}
if [ -z "$vml" ]; then
	root=$(git rev-parse --show-toplevel)
	# Prints "name<TAB>release<TAB>dir"; builds the kernel if not cached.
	line=$(cd "$root" && go run ./cmd/agentbench kernel fetch patched | tail -n 1)
	dir=$(printf '%s\n' "$line" | cut -f3)
	vml=$dir/vmlinux
fi
if [ ! -f "$vml" ]; then
	echo "build-kernel-vmlinux-h: $vml not found (build the patched kernel: make kernel-patched)" >&2
	exit 1
fi
command -v bpftool >/dev/null || { echo "build-kernel-vmlinux-h: bpftool missing: sudo apt-get install bpftool" >&2; exit 1; }
bpftool btf dump file "$vml" format c > "$out.tmp"
if ! grep -q '^struct memcg_bpf_ops {' "$out.tmp"; then
	rm -f "$out.tmp"
	echo "build-kernel-vmlinux-h: $vml has no struct memcg_bpf_ops: not the patched kernel" >&2
	exit 1
fi
mv "$out.tmp" "$out"
