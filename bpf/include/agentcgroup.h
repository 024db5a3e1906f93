/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Map value layouts shared by every AgentCgroup BPF program and, through
 * bpf2go's generated types, by the Go side. One definition, no hand-copied
 * offsets. All maps are keyed by the cgroup id (__u64): the cgroup2
 * directory's inode number, which is cgrp->kn->id in the kernel and
 * stat(2).st_ino in user space.
 *
 * Ownership: user space (agentcgroupd, or a test) writes step_policy; the
 * memory side (the memory.high probe or memcg_agent_ops) writes
 * step_pressure; the scheduler only reads both. The daemon creates the maps
 * and pins them under /sys/fs/bpf/agentcgroup/ so every program shares one
 * instance (loaders accept map replacements).
 */
#ifndef __AGENTCGROUP_H
#define __AGENTCGROUP_H

#define AGC_MAX_STEPS 4096

enum agc_class {
	AGC_CLASS_DEFAULT = 0,    /* no policy: plain flattened weights */
	AGC_CLASS_INTERACTIVE = 1,
	AGC_CLASS_TOOL_BURST = 2,
	AGC_CLASS_BACKGROUND = 3,
};

enum agc_policy_flags {
	AGC_POLICY_NO_THRASH_PENALTY = 1 << 0, /* opt out of the CPU penalty */
	AGC_POLICY_PROTECT_MEM = 1 << 1,       /* below_low/below_min may protect */
};

/* Written by user space; read-only for BPF. */
struct step_policy {
	__u32 class;              /* enum agc_class */
	__u32 flags;              /* enum agc_policy_flags */
	__u32 weight_mul_q8;      /* weight multiplier, 256 == 1.0; 0 means 1.0 */
	__u32 _pad0;
	__u64 slice_ns;           /* 0: the scheduler's default slice */
	__u64 cpu_burst_credit_ns;  /* bucket size for the interactive boost */
	__u64 cpu_refill_ns_per_s;  /* credit refill rate */
	/* memory side (memcg_agent_ops): delay = A * (over/high)^k, <= max */
	__u64 mem_burst_credit_bytes; /* overage allowed with no delay */
	__u32 mem_delay_a_ms;
	__u32 mem_delay_k;        /* integer exponent, 1..4 */
	__u32 mem_delay_max_ms;
	__u32 mem_protect_budget_ms; /* total protection time below_low may grant */
};

/* Written by the memory side; read by the scheduler and the daemon. */
struct step_pressure {
	__u64 delay_ewma_ns;      /* EWMA (alpha 1/4) of per-event throttle delay */
	__u64 last_update_ns;     /* bpf_ktime_get_ns() of the last event */
	__u64 total_events;       /* memory.high throttle events seen */
	__u64 total_delay_ns;     /* sum of throttle delays */
	__u32 recent_events;      /* events in the current 100 ms window */
	__u32 thrash_score;       /* 0..1000, see below */
};

/*
 * thrash_score: 0 when the step is not being throttled; grows with the
 * delay EWMA (1 point per 100 us, capped at 1000) and is meant to decay to 0
 * once last_update_ns is older than AGC_PRESSURE_STALE_NS. Readers must treat
 * a stale entry as score 0 rather than trusting the writer to clear it.
 */
#define AGC_PRESSURE_STALE_NS (500ULL * 1000 * 1000)

#endif /* __AGENTCGROUP_H */
