//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * scx_agent_flatcg: a sched_ext scheduler with flattened cgroup weights and
 * per-step agent policy.
 *
 * Scheduling model
 * - Every cgroup that has the cpu controller gets a slot in the `cgroups`
 *   array and its own vtime-ordered DSQ. Tasks are ordered by task vtime
 *   inside their cgroup's DSQ.
 * - A cgroup's hierarchical weight (hweight) is the product, over its
 *   ancestry, of weight / (sum of weights of active siblings). A cgroup that
 *   has runnable tasks of its own takes part among its children with a
 *   pseudo weight (FCG_SELF_WEIGHT), which is how the root's tasks compete
 *   with top-level cgroups. "Active" means something in the subtree is
 *   runnable; the counts are maintained with atomics in runnable/quiescent
 *   and only walk up the tree on 0<->1 transitions.
 * - Running a task for `used` ns advances its cgroup's vtime by
 *   used / hweight. ops.dispatch moves the first task of the cgroup with the
 *   lowest cgroup vtime to the local DSQ: over time every active cgroup gets
 *   CPU in proportion to its hweight, i.e. the hierarchy is flattened.
 * - Waits are bounded whatever the shares, as the sched_ext watchdog
 *   requires: a cgroup's slice shrinks with its share and its vtime may not
 *   lead the latest dispatch by more than max_lead_ns; a cgroup whose queued
 *   tasks have had no turn for starve_ns goes next; within a cgroup a task
 *   that waited max_lead_ns goes before lower task vtimes.
 *
 * Agent policy (step_policy / step_pressure maps, keyed by cgroup id)
 * - slice from the policy; weight multiplier scales the charge rate;
 * - interactive steps with CPU burst credit get their cgroup vtime pulled
 *   ahead of the current cgroup vtime by at most boost_ns on wakeup and may
 *   preempt a CPU; credit is charged in stopping and refilled by rate;
 * - a fresh thrash_score at or above the step's penalty_score (0: the
 *   loader's thrash_threshold) cuts the effective weight by
 *   thrash_penalty_q8/256, shortens the slice and disables the boost; the
 *   CPU time charged meanwhile is counted in penalized_ns.
 *
 * cpu.max: ops.cgroup_set_bandwidth records quota/period; runtime is charged
 * in tick and stopping; a cgroup over quota is parked (dispatch skips it)
 * and a BPF timer refills quotas each period and wakes idle CPUs.
 */
#include "vmlinux.h"
#include "agc_bpf.h"
#include "agentcgroup.h"
#include "flatcg.h"

char LICENSE[] SEC("license") = "GPL";

#define FCG_SELF_WEIGHT 100
#define FCG_HW_ONE (1ULL << 20) /* hweight fixed point: 1.0 */
#define FCG_NSEC_PER_SEC 1000000000ULL
#define FCG_BW_IDLE_TICK_NS (100ULL * 1000 * 1000)

/* Tunables, set by the loader before load. */
const volatile u64 slice_ns = 20ULL * 1000 * 1000;
const volatile u64 short_slice_ns = 1ULL * 1000 * 1000;
const volatile u64 min_slice_ns = 200ULL * 1000;
const volatile u64 boost_ns = 5ULL * 1000 * 1000;
const volatile u64 wake_lag_ns = 20ULL * 1000 * 1000;
const volatile u64 max_lead_ns = 250ULL * 1000 * 1000;
const volatile u64 starve_ns = 500ULL * 1000 * 1000;
const volatile u64 wake_preempt_ns = 1ULL * 1000 * 1000; /* 0: never */
const volatile u64 bw_tick_ns = 5ULL * 1000 * 1000;
const volatile u32 thrash_threshold = AGC_PRESSURE_PENALTY;
const volatile u32 thrash_penalty_q8 = 64;

/* State readable (and, for test_error_trigger, writable) from user space. */
u32 slot_hwm;           /* slots [0, slot_hwm) may be in use */
u32 root_slot = FCG_NO_SLOT;
u64 cvtime_now;         /* cgroup vtime of the latest dispatch */
u32 test_error_trigger; /* tests set this to force a scheduler error */
/* scheduler-wide event counters, read by the loader */
u64 nr_wake_prev, nr_wake_other, nr_direct, nr_dispatched, nr_kept, nr_wake_preempt, nr_wake_sync;
u64 nr_charge_capped, charge_dropped_ns;
/*
 * Queue waits, from insertion into a DSQ to ops.running: the longest seen,
 * its task and cgroup, and how many exceeded FCG_LONG_WAIT_NS.
 */
u64 max_wait_ns, max_wait_cgid, nr_long_waits;
/*
 * Runnable accounting that went wrong: a deactivation that found nothing
 * active, and cgroups that went away while still counted active.
 */
u64 nr_acct_underflow, nr_exit_active;
/* charges cut at max_lead_ns, and the cgroup vtime they did not add */
u64 nr_lead_capped, lead_dropped_ns;
/* dispatches that ran a cgroup's longest-waiting task ahead of its turn order */
u64 nr_aged;
/* dispatches of a cgroup that had waited starve_ns, out of vtime order */
u64 nr_starved;
u32 max_wait_pid;
/* the kernel's debug dump at an error exit (ops.dump_task adds our view) */
char exit_dump[FCG_EXIT_DUMP_LEN];

#define FCG_MAX_CPUS 1024
/* slot of the cgroup whose task runs on each CPU, FCG_NO_SLOT when none */
u32 cpu_run_slot[FCG_MAX_CPUS];
u64 cpu_run_start[FCG_MAX_CPUS]; /* when that task last started running */
struct fcg_exit_info exit_info;

AGC_PRESSURE_BTF;

struct fcg_task {
	u32 slot;       /* cgroup the task belongs to */
	u32 acct_slot;  /* cgroup its runnable state is counted in */
	u64 charged_at; /* runtime charged up to here while running */
	u64 run_start;  /* when it last started running (ops.running) */
	u64 queued_at;  /* when it was last inserted into a DSQ, 0: not queued */
	u8 accounted;
	u8 wake_idle;   /* select_cpu found an idle CPU for this wakeup */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FCG_MAX_CGROUPS);
	__type(key, u32);
	__type(value, struct fcg_cgroup);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u32);
} cgroup_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fcg_task);
} task_ctx SEC(".maps");

/* Shared with agentcgroupd; the loader may replace both with pinned maps. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, u64);
	__type(value, struct step_policy);
} step_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, u64);
	__type(value, struct step_pressure);
} step_pressures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct fcg_pcpu_stats);
} pcpu_stats SEC(".maps");

/*
 * ops.exit writes one record here after exit_info: the loader sleeps on
 * this ring buffer instead of polling exit_info.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} exit_events SEC(".maps");

static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) =
	(void *)BPF_FUNC_ringbuf_output;

struct bw_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct bw_timer);
} bw_timers SEC(".maps");

#define fcg_error(fmt, v)                                                     \
	({                                                                    \
		static char ___fmt[] = fmt;                                   \
		unsigned long long ___data[1] = { (unsigned long long)(v) };  \
		scx_bpf_error_bstr((char *)___fmt, ___data, sizeof(___data)); \
	})

static __always_inline struct fcg_cgroup *cg_at(u32 slot)
{
	return bpf_map_lookup_elem(&cgroups, &slot);
}

static __always_inline u64 cg_dsq(u32 slot)
{
	return FCG_DSQ_BASE + slot;
}

static __always_inline struct fcg_task *task_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctx, p, NULL, 0);
}

static u32 slot_of_cgroup(struct cgroup *cgrp)
{
	u32 *slot = bpf_cgrp_storage_get(&cgroup_slot, cgrp, NULL, 0);

	return slot ? *slot : READ_ONCE(root_slot);
}

/* The step's policy, counting lookups and hits for the loader. */
static struct step_policy *policy_of(u64 cgid)
{
	struct step_policy *pol = bpf_map_lookup_elem(&step_policies, &cgid);
	struct fcg_pcpu_stats *st;
	u32 zero = 0;

	st = bpf_map_lookup_elem(&pcpu_stats, &zero);
	if (st) {
		st->policy_lookups++;
		if (pol)
			st->policy_hits++;
	}
	return pol;
}

/*
 * thrash_score counts only while fresh (see AGC_PRESSURE_STALE_NS); the
 * step's own penalty_score wins over the loader's default.
 */
static bool thrash_penalized(u64 cgid, struct step_policy *pol, u64 now)
{
	struct step_pressure *pr;
	u32 thr = thrash_threshold;
	u64 last;

	if (pol) {
		if (pol->flags & AGC_POLICY_NO_THRASH_PENALTY)
			return false;
		if (pol->penalty_score)
			thr = pol->penalty_score;
	}
	pr = bpf_map_lookup_elem(&step_pressures, &cgid);
	if (!pr)
		return false;
	last = READ_ONCE(pr->last_update_ns);
	if (!last || (now > last && now - last > AGC_PRESSURE_STALE_NS))
		return false;
	return READ_ONCE(pr->thrash_score) >= thr;
}

/* Refill the interactive CPU credit by rate, capped at the bucket size. */
static u64 credit_refill(struct fcg_cgroup *c, struct step_policy *pol, u64 now)
{
	u64 cap = pol->cpu_burst_credit_ns, dt, add, credit;

	if (!cap)
		return 0;
	if (!c->credit_at) {
		c->credit_ns = cap;
		c->credit_at = now;
		return cap;
	}
	dt = now > c->credit_at ? now - c->credit_at : 0;
	dt = agc_min(dt, 100 * FCG_NSEC_PER_SEC);
	/* microsecond resolution keeps the product far from overflow */
	add = (dt / 1000) * pol->cpu_refill_ns_per_s / 1000000;
	credit = agc_min(cap, c->credit_ns + add);
	c->credit_ns = credit;
	c->credit_at = now;
	return credit;
}

/*
 * hweight of the cgroup's own tasks, FCG_HW_ONE == the whole machine. The
 * walk up the hierarchy uses the open-coded iterator: as a plain bounded
 * loop the verifier walked all FCG_MAX_DEPTH levels in every program that
 * charges runtime (dispatch, tick, stopping), most of the scheduler's
 * verification time at load.
 */
static u64 cg_hweight(u32 slot)
{
	struct fcg_cgroup *c = cg_at(slot), *pc;
	struct bpf_iter_num it;
	u64 hw = FCG_HW_ONE;
	s64 wsum;
	int *v;

	if (!c)
		return hw;
	wsum = READ_ONCE(c->child_wsum);
	if (wsum > FCG_SELF_WEIGHT)
		hw = hw * FCG_SELF_WEIGHT / wsum;
	bpf_iter_num_new(&it, 0, FCG_MAX_DEPTH);
	while ((v = bpf_iter_num_next(&it))) {
		u64 w;

		if (c->parent == FCG_NO_SLOT)
			break;
		pc = cg_at(c->parent);
		if (!pc)
			break;
		w = c->weight ?: 1;
		wsum = READ_ONCE(pc->child_wsum);
		if (wsum < (s64)w)
			wsum = w;
		hw = hw * w / wsum;
		c = pc;
	}
	bpf_iter_num_destroy(&it);
	return hw ?: 1;
}

/* A reactivated cgroup starts no further back than wake_lag_ns. */
static __always_inline void cg_clamp_vtime(struct fcg_cgroup *c, u64 lag)
{
	u64 vnow = READ_ONCE(cvtime_now);

	if (vnow > lag && c->cvtime < vnow - lag)
		c->cvtime = vnow - lag;
}

static void cg_activate(u32 slot)
{
	struct fcg_cgroup *c = cg_at(slot), *pc;
	u32 d;

	if (!c)
		return;
	/*
	 * cvtime is charged and compared only for the cgroup's own tasks, so
	 * it is their first wakeup that must not bring back credit banked
	 * while they slept. Clamping when the whole subtree first became
	 * active instead left a cgroup whose children kept it active (the
	 * root with its own tasks) with a vtime seconds behind everyone's:
	 * its tasks then took every dispatch they wanted for seconds.
	 */
	if (__sync_fetch_and_add(&c->nr_self, 1) == 0) {
		__sync_fetch_and_add(&c->child_wsum, FCG_SELF_WEIGHT);
		cg_clamp_vtime(c, wake_lag_ns);
		WRITE_ONCE(c->active_at, bpf_ktime_get_ns());
	}
	for (d = 0; d < FCG_MAX_DEPTH; d++) {
		if (__sync_fetch_and_add(&c->nr_active, 1) != 0)
			break;
		if (c->parent == FCG_NO_SLOT)
			break;
		pc = cg_at(c->parent);
		if (!pc)
			break;
		__sync_fetch_and_add(&pc->child_wsum, (s64)c->weight);
		c = pc;
	}
}

static void cg_deactivate(u32 slot)
{
	struct fcg_cgroup *c = cg_at(slot), *pc;
	u32 d;

	if (!c)
		return;
	{
		s64 old = __sync_fetch_and_add(&c->nr_self, -1);

		if (old == 1)
			__sync_fetch_and_add(&c->child_wsum, -FCG_SELF_WEIGHT);
		else if (old <= 0)
			__sync_fetch_and_add(&nr_acct_underflow, 1);
	}
	for (d = 0; d < FCG_MAX_DEPTH; d++) {
		if (__sync_fetch_and_add(&c->nr_active, -1) != 1)
			break;
		if (c->parent == FCG_NO_SLOT)
			break;
		pc = cg_at(c->parent);
		if (!pc)
			break;
		__sync_fetch_and_add(&pc->child_wsum, -(s64)c->weight);
		c = pc;
	}
}

/*
 * Charge delta against the cgroup's cpu.max quota. delta is the time as the
 * kernel counts it in cpu.stat, stopped vCPU included (charge() does not cap
 * it for bandwidth): cpu.max is a promise about that number. The debt is
 * bounded instead, at one period's quota past the quota, so a long stop
 * costs the cgroup at most one extra throttled period rather than a wait
 * long enough for the sched_ext watchdog.
 */
static void bw_charge(struct fcg_cgroup *c, u64 delta, u64 now)
{
	s64 used, lim;

	if (!c->quota_ns || !delta)
		return;
	used = __sync_fetch_and_add(&c->bw_used, (s64)delta) + (s64)delta;
	lim = 2 * (s64)c->quota_ns;
	if (used > lim) {
		WRITE_ONCE(c->bw_used, lim);
		used = lim;
	}
	if (used >= (s64)c->quota_ns && !c->throttled) {
		c->throttled_at = now;
		c->throttled = 1;
		__sync_fetch_and_add(&c->stats.throttles, 1);
	}
}

static void bw_unthrottle(struct fcg_cgroup *c, u64 now)
{
	if (!c->throttled)
		return;
	c->throttled = 0;
	if (now > c->throttled_at)
		__sync_fetch_and_add(&c->stats.throttled_ns, now - c->throttled_at);
	cg_clamp_vtime(c, wake_lag_ns);
}

static int bw_timer_fn(void *map, int *key, struct bpf_timer *timer)
{
	u64 now = bpf_ktime_get_ns();
	struct bpf_iter_num it;
	bool kick = false, any = false;
	int *v;

	bpf_iter_num_new(&it, 0, agc_min(READ_ONCE(slot_hwm), FCG_MAX_CGROUPS));
	while ((v = bpf_iter_num_next(&it))) {
		struct fcg_cgroup *c = cg_at(*v);
		u64 n;

		if (!c || !c->cgid || !c->quota_ns || !c->period_ns)
			continue;
		any = true;
		if (now < c->period_start + c->period_ns)
			continue;
		/* advance by whole periods so the average period stays exact */
		n = (now - c->period_start) / c->period_ns;
		c->period_start += n * c->period_ns;
		if (__sync_fetch_and_add(&c->bw_used, -(s64)(n * c->quota_ns)) <
		    (s64)(n * c->quota_ns))
			c->bw_used = 0;
		if (c->throttled && c->bw_used < (s64)c->quota_ns) {
			bw_unthrottle(c, now);
			kick = true;
		}
	}
	bpf_iter_num_destroy(&it);

	if (kick) {
		u32 nr = scx_bpf_nr_cpu_ids();

		bpf_iter_num_new(&it, 0, agc_min(nr, 1024));
		while ((v = bpf_iter_num_next(&it)))
			scx_bpf_kick_cpu(*v, SCX_KICK_IDLE);
		bpf_iter_num_destroy(&it);
	}
	/* with no cpu.max anywhere, tick slowly rather than wake idle CPUs */
	bpf_timer_start(timer, any ? bw_tick_ns : FCG_BW_IDLE_TICK_NS, 0);
	return 0;
}

/* hweight scaled by the step's weight multiplier and the thrash penalty */
static u64 cg_hweight_eff(u32 slot, struct step_policy *pol, bool penal)
{
	u64 hw = cg_hweight(slot);

	if (pol && pol->weight_mul_q8)
		hw = hw * pol->weight_mul_q8 / 256;
	if (penal)
		hw = hw * thrash_penalty_q8 / 256;
	return hw ?: 1;
}

/*
 * Slice from the policy, shortened by the thrash penalty, by the cgroup's
 * share and by the quota left.
 *
 * A cgroup that runs for `slice` moves slice / hweight ahead in cgroup
 * vtime and then waits until every other runnable cgroup has caught up:
 * about slice / hweight * (sum of the others' hweights) / nr_cpus. With a
 * full slice, a cgroup of small share (a session's driver among many busy
 * steps, say 1/100 of the machine) would wait seconds between turns, and
 * longer still once its charges include host steal, past the sched_ext
 * watchdog. So the slice is cut to hweight * max_lead_ns / 2: the lead
 * taken per turn stays within half of max_lead_ns, the cgroup runs as much
 * in total but more often. The other half is room for a turn that overruns
 * its slice until the next tick: were the slice the whole max_lead_ns, that
 * overrun would hit charge()'s cap on every turn and a small share would get
 * about a tick per turn more than its weight (a 1/8 share measured 0.14).
 * Below min_slice_ns charge() caps the lead instead.
 */
static u64 task_slice(u32 slot, struct fcg_cgroup *c, struct step_policy *pol, bool penal)
{
	u64 slice = (pol && pol->slice_ns) ? pol->slice_ns : slice_ns;
	u64 hw;

	if (penal)
		slice = agc_min(slice, short_slice_ns);
	hw = cg_hweight_eff(slot, pol, penal);
	if (hw < FCG_HW_ONE) {
		u64 share = hw * (max_lead_ns / 2) / FCG_HW_ONE;

		if (share < slice)
			slice = share > min_slice_ns ? share : min_slice_ns;
	}
	if (c->quota_ns) {
		s64 left = (s64)c->quota_ns - READ_ONCE(c->bw_used);

		if (left < (s64)slice)
			slice = left > (s64)min_slice_ns ? (u64)left : min_slice_ns;
	}
	return slice;
}

/*
 * Charge the time p ran since the last charge: task vtime, cgroup vtime at
 * the cgroup's effective hweight, stats, interactive credit and bandwidth.
 * Called from tick, from dispatch for the outgoing task (dispatch runs before
 * stopping, and picking with an uncharged cgroup vtime would favour it) and
 * from stopping.
 */
static void charge(struct task_struct *p, struct fcg_task *t, u64 now)
{
	struct step_policy *pol;
	struct fcg_cgroup *c;
	u64 used, raw, hw, cgid, tw, cv, lim;
	bool penal;

	if (now <= t->charged_at)
		return;
	used = raw = now - t->charged_at;
	t->charged_at = now;
	/*
	 * A running task is charged at every tick, so on a live CPU no charge
	 * spans more than a few ms. A longer one means the (virtual) CPU
	 * itself was stopped, e.g. a vCPU thread preempted on the host: the
	 * task did not get that time. Charging it would push the cgroup's
	 * vtime so far ahead that the cgroup could starve for seconds, long
	 * enough to trip the sched_ext watchdog. cpu.max is charged the raw
	 * span, with its debt bounded in bw_charge().
	 */
	if (used > slice_ns) {
		__sync_fetch_and_add(&nr_charge_capped, 1);
		__sync_fetch_and_add(&charge_dropped_ns, used - slice_ns);
		used = slice_ns;
	}
	c = cg_at(t->slot);
	if (!c)
		return;
	tw = p->scx.weight ?: 1;
	p->scx.dsq_vtime += used * 100 / tw;

	cgid = c->cgid;
	pol = policy_of(cgid);
	penal = thrash_penalized(cgid, pol, now);
	if (penal)
		__sync_fetch_and_add(&c->stats.penalized_ns, used);
	hw = cg_hweight_eff(t->slot, pol, penal);
	cv = __sync_fetch_and_add(&c->cvtime, used * FCG_HW_ONE / hw) + used * FCG_HW_ONE / hw;
	/*
	 * Bound the lead over the latest dispatched cgroup vtime, so that the
	 * wait for the next turn stays about max_lead_ns * (sum of the other
	 * runnable cgroups' hweights) / nr_cpus, whatever this cgroup's share:
	 * the sched_ext watchdog ends the scheduler if any runnable task waits
	 * timeout_ms. task_slice() keeps per-turn leads under this for all but
	 * the smallest shares; what still hits the cap is a turn that ran
	 * past its slice (slices end at a tick) or a charge inflated by a
	 * stopped vCPU. Such a cgroup gets a little more than its share, at
	 * most a tick per max_lead_ns-bounded round.
	 */
	lim = READ_ONCE(cvtime_now) + max_lead_ns;
	if ((s64)(cv - lim) > 0) {
		WRITE_ONCE(c->cvtime, lim);
		__sync_fetch_and_add(&nr_lead_capped, 1);
		__sync_fetch_and_add(&lead_dropped_ns, cv - lim);
	}
	__sync_fetch_and_add(&c->stats.runtime_ns, used);

	if (pol && pol->class == AGC_CLASS_INTERACTIVE && pol->cpu_burst_credit_ns) {
		u64 credit = credit_refill(c, pol, now);

		c->credit_ns = credit > used ? credit - used : 0;
	}
	bw_charge(c, raw, now);
}

extern bool scx_bpf_test_and_clear_cpu_idle(s32 cpu) __ksym;

/* Only the idle task runs as pid 0 (one per CPU). */
static struct task_struct *(*bpf_get_current_task_btf)(void) =
	(void *)BPF_FUNC_get_current_task_btf;

#define AGC_PF_EXITING 0x00000004 /* include/linux/sched.h; macros are not in BTF */

/*
 * A sync wakeup (pipe, socket or futex handoff) from a task of p's own
 * cgroup that has only just started running: the waker is about to block,
 * so p can run right after it on this CPU, as the fair class's wake_affine
 * arranges. Waking another, idle CPU instead costs an IPI, which under
 * emulation is dearer than the handoff itself. Same cgroup only, so no
 * cgroup gains CPU by it; a waker that has run for min_slice_ns already is
 * more likely a producer that keeps running, and its wakee goes elsewhere.
 */
static bool sync_wake_here(struct task_struct *p, struct fcg_task *t, u64 wake_flags, u64 now)
{
	struct task_struct *cur;
	struct fcg_task *ct;

	if (!(wake_flags & SCX_WAKE_SYNC))
		return false;
	cur = bpf_get_current_task_btf();
	if (cur->pid == 0 || (cur->flags & AGC_PF_EXITING) ||
	    !bpf_cpumask_test_cpu(bpf_get_smp_processor_id(), p->cpus_ptr))
		return false;
	ct = task_of(cur);
	if (!ct || ct->slot != t->slot || now - ct->run_start > min_slice_ns)
		return false;
	return scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL) == 0;
}

/*
 * Put p on the local DSQ of the CPU ops.select_cpu returns, with its slice
 * from the policy; ops.enqueue will not run for this wakeup.
 */
static void insert_local(struct task_struct *p, struct fcg_task *t, struct fcg_cgroup *c, u64 now)
{
	u64 cgid = c->cgid;
	struct step_policy *pol = policy_of(cgid);

	scx_bpf_dsq_insert___v2(p, SCX_DSQ_LOCAL,
				task_slice(t->slot, c, pol, thrash_penalized(cgid, pol, now)), 0);
	t->queued_at = now;
	__sync_fetch_and_add(&c->stats.enqueues, 1);
	t->wake_idle = 0;
}

SEC("struct_ops/fcg_select_cpu")
s32 fcg_select_cpu(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	s32 prev_cpu = ctx[1];
	u64 wake_flags = ctx[2];
	struct fcg_task *t = task_of(p);
	struct fcg_cgroup *c;
	bool idle = false;
	u64 now = bpf_ktime_get_ns();
	s32 cpu;

	/* before select_cpu_dfl, which would claim an idle CPU we then skip */
	if (t && sync_wake_here(p, t, wake_flags, now)) {
		c = cg_at(t->slot);
		if (c && !c->throttled) {
			insert_local(p, t, c, now);
			__sync_fetch_and_add(&nr_wake_sync, 1);
			return bpf_get_smp_processor_id();
		}
	}
	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &idle);
	if (cpu == prev_cpu)
		__sync_fetch_and_add(&nr_wake_prev, 1);
	else
		__sync_fetch_and_add(&nr_wake_other, 1);
	if (!t)
		return cpu;
	t->wake_idle = idle;
	if (!idle)
		return cpu;
	/*
	 * For a sync wakeup the kernel may offer the waker's own CPU as
	 * "idle" while the waker still runs there: that one goes through the
	 * cgroup DSQs like any contended wakeup.
	 */
	if (cpu == (s32)bpf_get_smp_processor_id() && bpf_get_current_task_btf()->pid != 0)
		return cpu;
	c = cg_at(t->slot);
	if (!c || c->throttled)
		return cpu;
	/*
	 * The CPU is idle and now claimed for p: put p straight on its local
	 * DSQ. Through the shared cgroup DSQ another CPU that happens to
	 * dispatch first would take p, and the CPU woken for it would find
	 * nothing; each such migration costs a cross-CPU wakeup, which under
	 * emulation (TCG) is the largest part of wakeup latency. Inserting
	 * into a local DSQ reschedules that CPU's idle task by itself, so no
	 * kick is needed either.
	 */
	insert_local(p, t, c, now);
	__sync_fetch_and_add(&nr_direct, 1);
	return cpu;
}

/*
 * p is being enqueued on this CPU, which runs its idle task and has nothing
 * queued locally: p can simply run here. The idle bit is claimed so that
 * ops.select_cpu elsewhere does not pick this CPU for another task too.
 */
static bool wake_onto_idle_self(struct task_struct *p)
{
	s32 cpu = bpf_get_smp_processor_id();

	if (scx_bpf_task_cpu(p) != cpu || bpf_get_current_task_btf()->pid != 0)
		return false;
	if (scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL) > 0)
		return false;
	scx_bpf_test_and_clear_cpu_idle(cpu);
	return true;
}

/*
 * Without this a woken task whose cgroup is far behind waits for the running
 * task's whole slice. Preempt the CPU (allowed for p) whose running cgroup is
 * furthest ahead of p's, if it leads by more than wake_preempt_ns of cgroup
 * vtime: the preempted cgroup is then ahead by that margin, so two busy
 * cgroups cannot take the CPU back and forth on every wakeup. A task that
 * has run for less than min_slice_ns (200us) is left alone, which bounds the
 * preemption rate per CPU when many sleepers wake (IPIs are dear under
 * emulation). Background steps never preempt.
 */
static void wake_preempt(struct task_struct *p, u32 slot, struct fcg_cgroup *c)
{
	struct bpf_iter_num it;
	u64 cv = READ_ONCE(c->cvtime), now = bpf_ktime_get_ns();
	s64 best_lead = (s64)wake_preempt_ns;
	s32 best = -1;
	int *v;

	if (!wake_preempt_ns)
		return;
	bpf_iter_num_new(&it, 0, agc_min(scx_bpf_nr_cpu_ids(), FCG_MAX_CPUS));
	while ((v = bpf_iter_num_next(&it))) {
		u32 cpu = *v, rs;
		struct fcg_cgroup *rc;
		s64 lead;

		if (cpu >= FCG_MAX_CPUS)
			break;
		rs = READ_ONCE(cpu_run_slot[cpu]);
		if (rs == FCG_NO_SLOT || rs == slot ||
		    now - READ_ONCE(cpu_run_start[cpu]) < min_slice_ns ||
		    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		rc = cg_at(rs);
		if (!rc)
			continue;
		lead = (s64)(READ_ONCE(rc->cvtime) - cv);
		if (lead > best_lead) {
			best_lead = lead;
			best = cpu;
		}
	}
	bpf_iter_num_destroy(&it);
	if (best >= 0) {
		scx_bpf_kick_cpu(best, SCX_KICK_PREEMPT);
		__sync_fetch_and_add(&nr_wake_preempt, 1);
	}
}

SEC("struct_ops/fcg_enqueue")
int fcg_enqueue(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	u64 enq_flags = ctx[1];
	struct fcg_task *t = task_of(p);
	struct step_policy *pol;
	struct fcg_cgroup *c;
	u64 now = bpf_ktime_get_ns(), slice, vtime, cgid;
	bool penal, boost = false, wake_idle;
	u32 slot;

	if (!t) {
		fcg_error("agent_flatcg: task %d has no context", p->pid);
		return 0;
	}
	slot = t->slot;
	c = cg_at(slot);
	if (!c) {
		fcg_error("agent_flatcg: bad cgroup slot %u", slot);
		return 0;
	}
	cgid = c->cgid;
	pol = policy_of(cgid);

	penal = thrash_penalized(cgid, pol, now);
	slice = task_slice(slot, c, pol, penal);
	wake_idle = t->wake_idle;
	t->wake_idle = 0;
	if ((enq_flags & SCX_ENQ_WAKEUP) && !wake_idle && !c->throttled &&
	    wake_onto_idle_self(p)) {
		/*
		 * A queued wakeup (SCX_OPS_ALLOW_QUEUED_WAKEUP) runs ops.enqueue
		 * on the wakee's CPU, here an idle one, sometimes without
		 * ops.select_cpu. Run it here: queueing it and kicking some
		 * other idle CPU would cost two more IPIs, and whichever CPU
		 * dispatches first would take it anyway.
		 */
		scx_bpf_dsq_insert___v2(p, SCX_DSQ_LOCAL, slice, enq_flags);
		t->queued_at = now;
		__sync_fetch_and_add(&c->stats.enqueues, 1);
		__sync_fetch_and_add(&nr_direct, 1);
		return 0;
	}
	if (penal)
		__sync_fetch_and_add(&c->stats.penalties, 1);
	else if (pol && pol->class == AGC_CLASS_INTERACTIVE &&
		 (enq_flags & SCX_ENQ_WAKEUP) && credit_refill(c, pol, now) > 0)
		boost = true;

	/* a sleeper may not bank more than one slice of task vtime */
	vtime = p->scx.dsq_vtime;
	if (c->tvtime_floor > slice && vtime < c->tvtime_floor - slice)
		vtime = c->tvtime_floor - slice;

	if (boost) {
		/*
		 * Place the cgroup ahead of any plain wakeup (which may start
		 * wake_lag_ns back), by at most boost_ns more.
		 */
		u64 vnow = READ_ONCE(cvtime_now), lead = wake_lag_ns + boost_ns;

		if (vnow > lead && c->cvtime > vnow - lead)
			c->cvtime = vnow - lead;
		__sync_fetch_and_add(&c->stats.boosts, 1);
	}

	scx_bpf_dsq_insert_vtime(p, cg_dsq(slot), slice, vtime, enq_flags);
	t->queued_at = now;
	__sync_fetch_and_add(&c->stats.enqueues, 1);

	if (c->throttled)
		return 0; /* parked until the refill timer releases the cgroup */
	if (enq_flags & SCX_ENQ_LAST) {
		/* the CPU is about to go idle with our task queued: redo dispatch */
		scx_bpf_kick_cpu(scx_bpf_task_cpu(p), 0);
		return 0;
	}
	if (wake_idle)
		return 0; /* the chosen idle CPU is woken by the wakeup itself */
	{
		s32 cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);

		if (cpu >= 0)
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		else if (boost)
			scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
		else if ((enq_flags & SCX_ENQ_WAKEUP) &&
			 !(pol && pol->class == AGC_CLASS_BACKGROUND))
			wake_preempt(p, slot, c);
	}
	return 0;
}

#define FCG_AGE_SCAN 16 /* queued tasks of a cgroup looked at for an aged one */

/*
 * Index, among the first FCG_AGE_SCAN tasks of the slot's DSQ that may run on
 * this CPU, of the one that has waited longest if that is over max_lead_ns
 * and it is not the first; -1 otherwise.
 *
 * Each turn of a cgroup runs one task, its lowest task vtime. A thread that
 * wakes often and runs little (a Go runtime's sysmon, say) is placed at the
 * cgroup's latest start vtime minus a slice on every wakeup, so it stays
 * ahead of a busy sibling for as many turns as it takes its tiny runs to add
 * up to one of the sibling's: in a cgroup with a small share, whose turns
 * come every few hundred ms, that left the busy thread unrun for longer than
 * the watchdog allows. A task aged past max_lead_ns takes the cgroup's next
 * turn instead.
 */
static s32 aged_index(u32 slot, s32 cpu, u64 now)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u64 best_wait = max_lead_ns;
	s32 best = -1, n = 0;
	u32 seen = 0;

	bpf_iter_scx_dsq_new(&it, cg_dsq(slot), 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		struct fcg_task *t;

		if (++seen > FCG_AGE_SCAN)
			break;
		if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		t = task_of(p);
		if (t && t->queued_at && now > t->queued_at && now - t->queued_at > best_wait) {
			best_wait = now - t->queued_at;
			best = n;
		}
		n++;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return best > 0 ? best : -1;
}

/* Move the idx-th task of the slot's DSQ that may run on this CPU to it. */
static bool move_nth_to_local(u32 slot, s32 cpu, s32 idx)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	bool moved = false;
	u32 seen = 0;
	s32 n = 0;

	bpf_iter_scx_dsq_new(&it, cg_dsq(slot), 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		if (++seen > FCG_AGE_SCAN)
			break;
		if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		if (n++ == idx) {
			moved = scx_bpf_dsq_move(&it, p, SCX_DSQ_LOCAL, 0);
			break;
		}
	}
	bpf_iter_scx_dsq_destroy(&it);
	return moved;
}

/*
 * Move the first task of the slot's DSQ that may run on this CPU to the local
 * DSQ, or one that has waited too long (see aged_index). Tasks ahead of it
 * that are pinned elsewhere (per-CPU kthreads) go to their own CPU's local
 * DSQ instead, so they are not stuck behind us.
 */
static bool move_first_to_local(u32 slot, s32 cpu)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	bool moved = false;
	u32 seen = 0;
	s32 aged;

	aged = aged_index(slot, cpu, bpf_ktime_get_ns());
	if (aged > 0 && move_nth_to_local(slot, cpu, aged)) {
		__sync_fetch_and_add(&nr_aged, 1);
		return true;
	}
	bpf_iter_scx_dsq_new(&it, cg_dsq(slot), 0);
	while ((p = bpf_iter_scx_dsq_next(&it))) {
		s32 tcpu;

		if (bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
			moved = scx_bpf_dsq_move(&it, p, SCX_DSQ_LOCAL, 0);
			break;
		}
		tcpu = scx_bpf_task_cpu(p);
		if (bpf_cpumask_test_cpu(tcpu, p->cpus_ptr) &&
		    scx_bpf_dsq_move(&it, p, SCX_DSQ_LOCAL_ON | tcpu, 0))
			scx_bpf_kick_cpu(tcpu, SCX_KICK_IDLE);
		if (++seen >= 8)
			break;
	}
	bpf_iter_scx_dsq_destroy(&it);
	return moved;
}

/*
 * Slot of the runnable, unthrottled cgroup with the lowest vtime, or of the
 * one that has waited longest for a turn if that is over starve_ns (then
 * *starving is set).
 *
 * Vtime order alone does not bound a wait: cvtime_now advances only when a
 * cgroup at or past it is dispatched, and interactive wakeups are placed
 * behind it again and again while their credit lasts (plain ones by up to
 * wake_lag_ns), so enough of them can take every CPU and hold cvtime_now
 * still while a cgroup just ahead of it waits indefinitely. A cgroup that
 * has had queued tasks and no task run for starve_ns goes first; its run
 * is charged as usual and moves cvtime_now on to it.
 */
static u32 pick_cgroup(bool *starving)
{
	struct bpf_iter_num it;
	u32 best = FCG_NO_SLOT, old = FCG_NO_SLOT;
	u64 best_v = 0, now = bpf_ktime_get_ns(), old_since = now;
	int *v;

	bpf_iter_num_new(&it, 0, agc_min(READ_ONCE(slot_hwm), FCG_MAX_CGROUPS));
	while ((v = bpf_iter_num_next(&it))) {
		u32 slot = *v;
		struct fcg_cgroup *c = cg_at(slot);
		u64 cv, since;

		if (!c || !c->cgid || READ_ONCE(c->nr_self) <= 0 || c->throttled)
			continue;
		since = READ_ONCE(c->served_at);
		if ((s64)(READ_ONCE(c->active_at) - since) > 0)
			since = READ_ONCE(c->active_at);
		if (now > since && now - since > starve_ns && (s64)(since - old_since) < 0 &&
		    scx_bpf_dsq_nr_queued(cg_dsq(slot)) > 0) {
			old = slot;
			old_since = since;
		}
		cv = READ_ONCE(c->cvtime);
		if (best != FCG_NO_SLOT && (s64)(cv - best_v) >= 0)
			continue;
		if (scx_bpf_dsq_nr_queued(cg_dsq(slot)) <= 0)
			continue;
		best = slot;
		best_v = cv;
	}
	bpf_iter_num_destroy(&it);
	*starving = old != FCG_NO_SLOT;
	return *starving ? old : best;
}

static __always_inline void note_dispatch(u32 slot)
{
	struct fcg_cgroup *c = cg_at(slot);
	u64 cv;

	if (!c)
		return;
	cv = READ_ONCE(c->cvtime);
	if ((s64)(cv - READ_ONCE(cvtime_now)) > 0)
		WRITE_ONCE(cvtime_now, cv);
}

/*
 * Keep running prev if it is still runnable and its cgroup is at least as
 * far behind as the best queued one: ops.dispatch runs before prev is
 * re-enqueued, so without this prev's cgroup would lose every such tie.
 */
static bool keep_prev(struct task_struct *prev, u32 best, bool starving)
{
	struct fcg_task *t;
	struct fcg_cgroup *c, *b;
	struct step_policy *pol;
	u64 cgid, now;
	bool penal;

	if (starving || !prev || !(prev->scx.flags & SCX_TASK_QUEUED))
		return false;
	t = task_of(prev);
	if (!t)
		return false;
	c = cg_at(t->slot);
	if (!c || c->throttled)
		return false;
	if (best != FCG_NO_SLOT) {
		b = cg_at(best);
		if (b && (s64)(READ_ONCE(c->cvtime) - READ_ONCE(b->cvtime)) > 0)
			return false;
	}
	cgid = c->cgid;
	now = bpf_ktime_get_ns();
	pol = policy_of(cgid);
	penal = thrash_penalized(cgid, pol, now);
	prev->scx.slice = task_slice(t->slot, c, pol, penal);
	note_dispatch(t->slot);
	__sync_fetch_and_add(&nr_kept, 1);
	return true;
}

SEC("struct_ops/fcg_dispatch")
int fcg_dispatch(unsigned long long *ctx)
{
	s32 cpu = ctx[0];
	struct task_struct *prev = (void *)ctx[1];
	bool starving;
	u32 slot;

	if (READ_ONCE(test_error_trigger)) {
		fcg_error("agent_flatcg: test-triggered error (code %u)", test_error_trigger);
		return 0;
	}
	if (prev) {
		struct fcg_task *t = task_of(prev);

		if (t)
			charge(prev, t, bpf_ktime_get_ns());
	}
	slot = pick_cgroup(&starving);
	if (keep_prev(prev, slot, starving))
		return 0;
	if (slot == FCG_NO_SLOT)
		return 0;
	if (move_first_to_local(slot, cpu)) {
		__sync_fetch_and_add(&nr_dispatched, 1);
		if (starving)
			__sync_fetch_and_add(&nr_starved, 1);
		note_dispatch(slot);
		return 0;
	}
	/* another CPU drained that DSQ first: one more try */
	slot = pick_cgroup(&starving);
	if (slot != FCG_NO_SLOT && move_first_to_local(slot, cpu))
		note_dispatch(slot);
	return 0;
}

SEC("struct_ops/fcg_tick")
int fcg_tick(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct fcg_task *t = task_of(p);
	struct fcg_cgroup *c;

	if (READ_ONCE(test_error_trigger)) {
		fcg_error("agent_flatcg: test-triggered error (code %u)", test_error_trigger);
		return 0;
	}
	if (!t)
		return 0;
	charge(p, t, bpf_ktime_get_ns());
	c = cg_at(t->slot);
	if (c && c->throttled)
		p->scx.slice = 0; /* over quota: off the CPU now, not at slice end */
	return 0;
}

SEC("struct_ops/fcg_runnable")
int fcg_runnable(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct fcg_task *t = task_of(p);

	if (!t || t->accounted)
		return 0;
	t->acct_slot = t->slot;
	t->accounted = 1;
	cg_activate(t->acct_slot);
	return 0;
}

SEC("struct_ops/fcg_quiescent")
int fcg_quiescent(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct fcg_task *t = task_of(p);

	if (!t || !t->accounted)
		return 0;
	t->accounted = 0;
	cg_deactivate(t->acct_slot);
	return 0;
}

/* Racy maxima: these are diagnostics, an occasional lost update is fine. */
static void note_wait(struct task_struct *p, struct fcg_cgroup *c, u64 wait)
{
	if (wait > c->stats.max_wait_ns)
		c->stats.max_wait_ns = wait;
	if (wait >= FCG_LONG_WAIT_NS)
		__sync_fetch_and_add(&nr_long_waits, 1);
	if (wait > READ_ONCE(max_wait_ns)) {
		max_wait_ns = wait;
		max_wait_cgid = c->cgid;
		max_wait_pid = p->pid;
	}
}

SEC("struct_ops/fcg_running")
int fcg_running(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct fcg_task *t = task_of(p);
	struct fcg_cgroup *c;
	u64 now = bpf_ktime_get_ns();

	if (!t)
		return 0;
	t->charged_at = t->run_start = now;
	{
		s32 cpu = scx_bpf_task_cpu(p);

		if (cpu >= 0 && cpu < FCG_MAX_CPUS) {
			WRITE_ONCE(cpu_run_start[cpu], now);
			WRITE_ONCE(cpu_run_slot[cpu], t->slot);
		}
	}
	c = cg_at(t->slot);
	if (c && (s64)(p->scx.dsq_vtime - c->tvtime_floor) > 0)
		c->tvtime_floor = p->scx.dsq_vtime;
	if (c)
		WRITE_ONCE(c->served_at, now);
	if (t->queued_at && c)
		note_wait(p, c, now - t->queued_at);
	t->queued_at = 0;
	return 0;
}

SEC("struct_ops/fcg_stopping")
int fcg_stopping(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct fcg_task *t = task_of(p);

	s32 cpu = scx_bpf_task_cpu(p);

	if (cpu >= 0 && cpu < FCG_MAX_CPUS)
		WRITE_ONCE(cpu_run_slot[cpu], FCG_NO_SLOT);
	if (t)
		charge(p, t, bpf_ktime_get_ns());
	return 0;
}

SEC("struct_ops/fcg_init_task")
s32 fcg_init_task(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct scx_init_task_args *args = (void *)ctx[1];
	struct fcg_task *t;

	t = bpf_task_storage_get(&task_ctx, p, NULL, AGC_STORAGE_F_CREATE);
	if (!t)
		return -12; /* -ENOMEM */
	t->slot = slot_of_cgroup(args->cgroup);
	t->accounted = 0;
	return 0;
}

SEC("struct_ops/fcg_cgroup_move")
int fcg_cgroup_move(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];
	struct cgroup *to = (void *)ctx[2];
	struct fcg_task *t = task_of(p);

	if (t)
		t->slot = slot_of_cgroup(to);
	return 0;
}

static void bw_set(struct fcg_cgroup *c, u64 period_us, u64 quota_us, u64 now)
{
	/* "max" arrives as an all-ones (RUNTIME_INF) quota */
	if (!period_us || !quota_us || quota_us >= (1ULL << 40)) {
		c->quota_ns = 0;
		bw_unthrottle(c, now);
		return;
	}
	c->period_ns = period_us * 1000;
	c->quota_ns = quota_us * 1000;
	c->period_start = now;
	c->bw_used = 0;
	bw_unthrottle(c, now);
}

SEC("struct_ops.s/fcg_cgroup_init")
s32 fcg_cgroup_init(unsigned long long *ctx)
{
	struct cgroup *cgrp = (void *)ctx[0];
	struct scx_cgroup_init_args *args = (void *)ctx[1];
	u64 cgid = cgrp->kn->id, now = bpf_ktime_get_ns();
	u32 slot = FCG_NO_SLOT, parent = FCG_NO_SLOT, *stored;
	int level = cgrp->level;
	struct bpf_iter_num it;
	struct fcg_cgroup *c;
	s32 ret;
	int *v;

	/* cgroup_init calls are serialized by the cgroup core */
	bpf_iter_num_new(&it, 0, FCG_MAX_CGROUPS);
	while ((v = bpf_iter_num_next(&it))) {
		c = cg_at(*v);
		if (c && !c->cgid) {
			slot = *v;
			break;
		}
	}
	bpf_iter_num_destroy(&it);
	if (slot == FCG_NO_SLOT) {
		fcg_error("agent_flatcg: out of cgroup slots (max %d)", FCG_MAX_CGROUPS);
		return -28; /* -ENOSPC */
	}

	if (level > 0) {
		struct cgroup *anc = bpf_cgroup_ancestor(cgrp, level - 1);

		if (anc) {
			parent = slot_of_cgroup(anc);
			bpf_cgroup_release(anc);
		}
	}

	ret = scx_bpf_create_dsq(cg_dsq(slot), -1);
	if (ret)
		return ret;

	stored = bpf_cgrp_storage_get(&cgroup_slot, cgrp, NULL, AGC_STORAGE_F_CREATE);
	if (!stored) {
		scx_bpf_destroy_dsq(cg_dsq(slot));
		return -12;
	}
	*stored = slot;

	c = cg_at(slot);
	if (!c)
		return -22;
	__builtin_memset(c, 0, sizeof(*c));
	c->parent = parent;
	c->level = level;
	c->weight = args->weight ?: 100;
	c->cvtime = READ_ONCE(cvtime_now);
	bw_set(c, args->bw_period_us, args->bw_quota_us, now);
	c->cgid = cgid;
	if (level == 0)
		root_slot = slot;
	if (slot + 1 > slot_hwm)
		slot_hwm = slot + 1;
	return 0;
}

SEC("struct_ops/fcg_cgroup_exit")
int fcg_cgroup_exit(unsigned long long *ctx)
{
	struct cgroup *cgrp = (void *)ctx[0];
	u32 *stored = bpf_cgrp_storage_get(&cgroup_slot, cgrp, NULL, 0);
	struct fcg_cgroup *c;
	u32 slot;

	if (!stored)
		return 0;
	slot = *stored;
	c = cg_at(slot);
	if (!c)
		return 0;
	if (READ_ONCE(c->nr_active) != 0)
		__sync_fetch_and_add(&nr_exit_active, 1);
	scx_bpf_destroy_dsq(cg_dsq(slot));
	c->quota_ns = 0;
	c->throttled = 0;
	WRITE_ONCE(c->cgid, 0);
	return 0;
}

SEC("struct_ops/fcg_cgroup_set_weight")
int fcg_cgroup_set_weight(unsigned long long *ctx)
{
	struct cgroup *cgrp = (void *)ctx[0];
	u32 weight = ctx[1];
	struct fcg_cgroup *c = cg_at(slot_of_cgroup(cgrp)), *pc;
	u32 old;

	if (!c)
		return 0;
	old = c->weight;
	c->weight = weight;
	if (READ_ONCE(c->nr_active) > 0 && c->parent != FCG_NO_SLOT) {
		pc = cg_at(c->parent);
		if (pc)
			__sync_fetch_and_add(&pc->child_wsum, (s64)weight - (s64)old);
	}
	return 0;
}

SEC("struct_ops/fcg_cgroup_set_bandwidth")
int fcg_cgroup_set_bandwidth(unsigned long long *ctx)
{
	struct cgroup *cgrp = (void *)ctx[0];
	struct fcg_cgroup *c = cg_at(slot_of_cgroup(cgrp));

	if (c)
		bw_set(c, ctx[1], ctx[2], bpf_ktime_get_ns());
	return 0;
}

SEC("struct_ops.s/fcg_init")
s32 fcg_init(unsigned long long *ctx)
{
	u32 key = 0;
	struct bw_timer *bt = bpf_map_lookup_elem(&bw_timers, &key);
	long ret;

	if (!bt)
		return -2;
	{
		struct bpf_iter_num it;
		int *v;

		bpf_iter_num_new(&it, 0, FCG_MAX_CPUS);
		while ((v = bpf_iter_num_next(&it)))
			if (*v >= 0 && *v < FCG_MAX_CPUS)
				cpu_run_slot[*v] = FCG_NO_SLOT;
		bpf_iter_num_destroy(&it);
	}
	ret = bpf_timer_init(&bt->timer, &bw_timers, AGC_CLOCK_MONOTONIC);
	if (ret)
		return ret;
	ret = bpf_timer_set_callback(&bt->timer, bw_timer_fn);
	if (ret)
		return ret;
	return bpf_timer_start(&bt->timer, bw_tick_ns, 0);
}

/*
 * The kernel's debug dump (at an error exit, e.g. a watchdog stall) lists
 * the runnable tasks; add how this scheduler sees each one's cgroup: whether
 * it counts as runnable (nr_self), is parked, and how far its vtime is from
 * the latest dispatched one, which tells a task the picker skips from one
 * that merely waits its turn.
 */
SEC("struct_ops/fcg_dump_task")
int fcg_dump_task(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[1];
	struct fcg_task *t = task_of(p);
	struct fcg_cgroup *c;
	unsigned long long d[9];
	u64 now = bpf_ktime_get_ns();

	if (!t)
		return 0;
	c = cg_at(t->slot);
	if (!c)
		return 0;
	d[0] = t->slot;
	d[1] = c->cgid;
	d[2] = (u64)c->nr_self;
	d[3] = (u64)c->nr_active;
	d[4] = c->throttled;
	d[5] = (u64)scx_bpf_dsq_nr_queued(cg_dsq(t->slot));
	d[6] = READ_ONCE(c->cvtime) - READ_ONCE(cvtime_now);
	d[7] = cg_hweight(t->slot);
	d[8] = t->queued_at ? (now - t->queued_at) / 1000 : 0;
	{
		static char fmt[] = "fcg: slot=%u cgid=%llu nr_self=%lld nr_active=%lld throttled=%u "
				    "queued=%d cvtime-now=%lldns hw=%llu/1048576 waiting=%lluus";
		scx_bpf_dump_bstr(fmt, d, sizeof(d));
	}
	return 0;
}

SEC("struct_ops/fcg_exit")
int fcg_exit(unsigned long long *ctx)
{
	struct scx_exit_info *ei = (void *)ctx[0];

	if (ei->dump)
		bpf_probe_read_kernel_str(exit_dump, sizeof(exit_dump), ei->dump);

	bpf_probe_read_kernel_str(exit_info.reason, sizeof(exit_info.reason), ei->reason);
	bpf_probe_read_kernel_str(exit_info.msg, sizeof(exit_info.msg), ei->msg);
	exit_info.exit_code = ei->exit_code;
	WRITE_ONCE(exit_info.kind, ei->kind);
	bpf_ringbuf_output(&exit_events, &exit_info.kind, sizeof(exit_info.kind), BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC(".struct_ops.link")
struct sched_ext_ops agent_flatcg = {
	.select_cpu = (void *)fcg_select_cpu,
	.enqueue = (void *)fcg_enqueue,
	.dispatch = (void *)fcg_dispatch,
	.tick = (void *)fcg_tick,
	.runnable = (void *)fcg_runnable,
	.running = (void *)fcg_running,
	.stopping = (void *)fcg_stopping,
	.quiescent = (void *)fcg_quiescent,
	.init_task = (void *)fcg_init_task,
	.cgroup_init = (void *)fcg_cgroup_init,
	.cgroup_exit = (void *)fcg_cgroup_exit,
	.cgroup_move = (void *)fcg_cgroup_move,
	.cgroup_set_weight = (void *)fcg_cgroup_set_weight,
	.cgroup_set_bandwidth = (void *)fcg_cgroup_set_bandwidth,
	.init = (void *)fcg_init,
	.exit = (void *)fcg_exit,
	.dump_task = (void *)fcg_dump_task,
	/*
	 * ENQ_LAST: a throttled task must not keep running just because it is
	 * the only one on its CPU. ALLOW_QUEUED_WAKEUP: a wakeup onto an idle
	 * remote CPU is handed to that CPU (IPI + its own enqueue) instead of
	 * the waker locking the remote runqueue while the woken CPU spins on
	 * that lock; the fair class does the same. ops.enqueue copes with a
	 * wakeup whose ops.select_cpu was skipped (wake_idle stays 0). The
	 * loader patches flags and timeout_ms.
	 */
	.flags = SCX_OPS_ENQ_LAST | SCX_OPS_ALLOW_QUEUED_WAKEUP,
	.timeout_ms = 5000,
	.name = "agent_flatcg",
};
