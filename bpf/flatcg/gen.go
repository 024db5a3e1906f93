package flatcg

// vmlinux.h comes from the pinned guest kernel's BTF (gitignored); the
// script skips the VM boot when the header already matches the pinned BTF.
//go:generate sh ../../scripts/gen-vmlinux-h.sh
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -fms-extensions -Wno-microsoft-anon-tag" -no-global-types -type fcg_cgroup -type fcg_stats -type fcg_pcpu_stats -type fcg_exit_info -type step_policy -type step_pressure -type agc_pressure flatcg flatcg.bpf.c -- -I../include
