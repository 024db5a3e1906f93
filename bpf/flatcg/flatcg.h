/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layouts the scx_agent_flatcg BPF program shares with its Go loader. The Go
 * side uses bpf2go's generated types for these (never hand-written offsets).
 */
#ifndef __AGC_FLATCG_H
#define __AGC_FLATCG_H

#define FCG_MAX_CGROUPS 4096 /* cgroup slots; matches AGC_MAX_STEPS */
#define FCG_MAX_DEPTH 16     /* deepest cgroup level we flatten */
#define FCG_NO_SLOT 0xffffffffu
#define FCG_DSQ_BASE 0x1000ULL /* DSQ id of slot N is FCG_DSQ_BASE + N */
#define FCG_EXIT_DUMP_LEN 32768
#define FCG_LONG_WAIT_NS (1000ULL * 1000 * 1000) /* a queue wait counted as long */

/* Per-cgroup counters, cumulative since the cgroup was first seen. */
struct fcg_stats {
	__u64 runtime_ns;   /* CPU time charged to the cgroup's own tasks */
	__u64 enqueues;
	__u64 boosts;       /* wakeups that got the interactive vtime boost */
	__u64 penalties;    /* enqueues made while the thrash penalty applied */
	__u64 penalized_ns; /* CPU time charged while the thrash penalty applied */
	__u64 throttled_ns; /* time spent parked by the cpu.max equivalent */
	__u64 throttles;    /* number of times the cgroup was parked */
	__u64 max_wait_ns;  /* longest wait of its tasks from enqueue to running */
};

/*
 * One cgroup (with the cpu controller) as the scheduler sees it. Lives in an
 * array indexed by slot; the slot's DSQ holds the cgroup's queued tasks.
 */
struct fcg_cgroup {
	__u64 cgid;          /* cgroup id (kn->id); 0 means the slot is free */
	__u32 parent;        /* parent's slot, FCG_NO_SLOT for the root */
	__u32 level;
	__u32 weight;        /* cpu.weight, 1..10000 */
	__u32 throttled;     /* parked by the bandwidth limit */
	__s64 nr_active;     /* own runnable tasks + active child cgroups */
	__s64 nr_self;       /* own runnable tasks */
	__s64 child_wsum;    /* weights of active children, plus FCG_SELF_WEIGHT
			      * while own tasks are runnable */
	__u64 cvtime;        /* cgroup virtual time */
	__u64 tvtime_floor;  /* vtime of the latest task started in the cgroup */
	__u64 credit_ns;     /* interactive CPU burst credit left */
	__u64 credit_at;     /* last refill, 0 = bucket not yet filled */
	__u64 quota_ns;      /* cpu.max quota per period, 0 = unlimited */
	__u64 period_ns;
	__u64 period_start;
	__s64 bw_used;       /* runtime charged in the current period */
	__u64 throttled_at;
	__u64 active_at;     /* when its own tasks last became runnable (0 -> 1) */
	__u64 served_at;     /* when one of its tasks last started running */
	struct fcg_stats stats;
};

/*
 * Scheduler-wide counters kept per CPU (a shared counter on this path
 * would bounce one cache line between CPUs at every charge and enqueue).
 */
struct fcg_pcpu_stats {
	__u64 policy_lookups;  /* step_policy lookups for a cgroup's task */
	__u64 policy_hits;     /* ... that found an entry */
};

/* What ops.exit saw; kind is written last so a non-zero kind is complete. */
struct fcg_exit_info {
	__s32 kind;          /* enum scx_exit_kind */
	__s32 _pad;
	__s64 exit_code;
	char reason[128];
	char msg[1024];
};

#endif /* __AGC_FLATCG_H */
