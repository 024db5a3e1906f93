package memcgops

// vmlinux.h comes from the patched guest kernel's BTF (gitignored): only
// that kernel defines struct memcg_bpf_ops.
//go:generate sh ../../scripts/build-kernel-vmlinux-h.sh vmlinux.h
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -fms-extensions -Wno-microsoft-anon-tag" -no-global-types -type step_policy -type step_pressure -type mao_cgroup -type mao_stats -type agc_pressure mao memcg_agent_ops.bpf.c -- -I.
