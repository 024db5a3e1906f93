/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layouts memcg_agent_ops shares with its Go loader (bpf2go generates the Go
 * types from these; no hand-copied offsets).
 */
#ifndef __AGC_MEMCG_AGENT_OPS_H
#define __AGC_MEMCG_AGENT_OPS_H

/* Per-cgroup state, created when a cgroup comes online. */
struct mao_cgroup {
	__u64 online_ns;          /* when handle_cgroup_online saw it */
	__u64 protect_used_ns;    /* protection time granted so far */
	__u64 last_grant_ns;      /* last below_low/below_min that said yes */
	__u64 base_max_events;    /* own memory.events max at first grant */
	__u64 base_oom_events;    /* own memory.events oom at first grant */
	__u64 base_parent_oom;    /* parent's oom_kill at first grant */
	__u64 low_grants;
	__u64 min_grants;
	__u64 delay_events;       /* get_high_delay_ms calls with a policy */
	__u32 last_delay_ms;
	__u32 revoked;            /* enum mao_revoke_reason, 0 = protecting */
};

enum mao_revoke_reason {
	MAO_REVOKED_NONE = 0,
	MAO_REVOKED_BUDGET = 1,   /* protection time budget used up */
	MAO_REVOKED_MAX = 2,      /* own memory.events max rose */
	MAO_REVOKED_OOM = 3,      /* own oom, or the parent's oom_kill, rose */
};

/* Global counters (one array slot), for tests and metrics. */
struct mao_stats {
	__u64 online;
	__u64 offline;
	__u64 delay_calls;        /* every get_high_delay_ms call */
	__u64 delay_policy;       /* ... for a cgroup with a step_policy */
	__u64 delay_nonzero;      /* ... that returned a delay */
	__u64 delay_credit;       /* ... that returned 0 inside the burst credit */
	__u64 delay_ms_sum;       /* sum of returned delays */
	__u64 low_calls;
	__u64 low_grants;
	__u64 min_calls;
	__u64 min_grants;
	__u64 revoked_budget;
	__u64 revoked_max;
	__u64 revoked_oom;
};

/* The kernel's own bound on the delay (MEMCG_BPF_MAX_HIGH_DELAY_MS). */
#define MAO_KERNEL_MAX_DELAY_MS 2000
/*
 * get_high_delay_ms's "no answer" (MEMCG_BPF_HIGH_DELAY_STOCK): the kernel
 * applies its stock penalty. Any other value, 0 included, is the delay.
 */
#define MAO_DELAY_STOCK 0xffffffffU

#endif /* __AGC_MEMCG_AGENT_OPS_H */
