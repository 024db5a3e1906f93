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
	/* thrash_score (enum agc_pressure scale) at or above which the
	 * scheduler applies its CPU penalty; 0: the scheduler's default */
	__u32 penalty_score;
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

/*
 * The pressure scale: the one unit every writer and reader of thrash_score
 * uses, with the default thresholds of every consumer.
 *
 * thrash_score = delay EWMA / AGC_PRESSURE_UNIT_NS, capped at
 * AGC_PRESSURE_MAX: one point is 100 us of exponentially weighted (alpha
 * 1/4) per-event memory.high throttle delay, so 1000 means an event costs
 * the step 100 ms or more. An "event" is one trip through the kernel's
 * over-high handler; its delay is the time the task spent there (reclaim
 * plus penalty sleep) as the mainline probe measures it, or the sleep
 * memcg_agent_ops asked for on the patched kernel. Any event makes the
 * score at least 1, so a fresh non-zero score means "being throttled".
 *
 * Freshness: an entry whose last_update_ns is older than
 * AGC_PRESSURE_STALE_NS is stale. Readers treat a stale entry as score 0;
 * writers restart the EWMA from the new event's delay when an event
 * arrives for a stale entry, so a step that thrashed long ago starts its
 * next episode at its new delay, not its old score.
 *
 * Thresholds are "at or above" and chosen from measured distributions
 * (method, table and rationale: docs/PRESSURE.md):
 *  - THROTTLE: the daemon marks a step THROTTLED (escalation.throttle_score);
 *  - PENALTY: the scheduler cuts a step's CPU weight and slice (its
 *    -thrash-threshold, or step_policy.penalty_score per step);
 *  - FREEZE: sustained for freeze_after, the daemon freezes the step
 *    (escalation.freeze_score).
 *
 * An enum rather than #defines so bpf2go -type carries the values into Go;
 * AGC_PRESSURE_BTF puts the type into a program's BTF for that.
 */
enum agc_pressure {
	AGC_PRESSURE_UNIT_NS = 100 * 1000,
	AGC_PRESSURE_MAX = 1000,
	AGC_PRESSURE_STALE_NS = 500 * 1000 * 1000,
	AGC_PRESSURE_WINDOW_NS = 100 * 1000 * 1000, /* recent_events window */
	AGC_PRESSURE_THROTTLE = 10,
	AGC_PRESSURE_PENALTY = 20,
	AGC_PRESSURE_FREEZE = 20,
};

/*
 * clang writes a type into BTF only when a global uses it, and bpf2go can
 * only generate what is in BTF: a program whose Go side needs the scale
 * says AGC_PRESSURE_BTF; once at file scope.
 */
#define AGC_PRESSURE_BTF \
	const volatile enum agc_pressure agc_pressure_scale = AGC_PRESSURE_MAX

/* Written by the memory side; read by the scheduler and the daemon. */
struct step_pressure {
	__u64 delay_ewma_ns;      /* EWMA (alpha 1/4) of per-event throttle delay */
	__u64 last_update_ns;     /* bpf_ktime_get_ns() of the last event */
	__u64 total_events;       /* memory.high throttle events seen */
	__u64 total_delay_ns;     /* sum of throttle delays */
	__u32 recent_events;      /* events in the current AGC_PRESSURE_WINDOW_NS */
	__u32 thrash_score;       /* enum agc_pressure scale, 0..AGC_PRESSURE_MAX */
};

#endif /* __AGENTCGROUP_H */
