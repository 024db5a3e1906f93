//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * memcg_agent_ops: the AgentCgroup memory policy as a memcg_bpf_ops
 * struct_ops (our kernel patch series in vmimages/patches).
 *
 * get_high_delay_ms: the kernel asks once per return to user space while a
 *   step is above memory.high, and our answer is the whole throttle: 0 is
 *   no sleep at all, anything else a sleep of that many ms instead of the
 *   stock penalty and its reclaim retries. We answer 0 while the overage
 *   fits in the step's memory burst credit, else A * (over/high)^k ms
 *   clamped to the step's maximum (so an interactive step's small A is
 *   gentler than stock), and record the event in step_pressure for the
 *   scheduler. Cgroups that are not steps, steps without a memory.high of
 *   their own, and steps with no curve (A = 0) get MAO_DELAY_STOCK: the
 *   kernel's stock penalty, as with nothing attached.
 * below_low / below_min: reclaim asks whether a cgroup is protected. We say
 *   yes for steps flagged AGC_POLICY_PROTECT_MEM, for at most their
 *   protection budget, and stop for good once the step's own memory.events
 *   max or oom, or its parent's oom_kill, rises after protection began.
 *   below_min (which reclaim never overrides) is only granted when the
 *   loader enables it.
 * handle_cgroup_online / offline: create and drop per-cgroup state.
 *
 * All maps are keyed by the cgroup id (kn->id), like every AgentCgroup map.
 */
#include "vmlinux.h"
#include "../include/agc_bpf.h"
#include "../include/agentcgroup.h"
#include "memcg_agent_ops.h"

char LICENSE[] SEC("license") = "GPL";

/* Kernel kfuncs from mm/bpf_memcontrol.c; names are unique in 7.x BTF. */
extern unsigned long bpf_mem_cgroup_usage(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_memory_events(struct mem_cgroup *memcg,
						  enum memcg_memory_event event) __ksym;
extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern struct cgroup *bpf_cgroup_from_id(__u64 cgid) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, struct step_policy);
} step_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, struct step_pressure);
} step_pressures SEC(".maps");

/* Every online memory cgroup, steps or not; sized well above the steps. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, struct mao_cgroup);
} cgroup_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mao_stats);
} ops_stats SEC(".maps");

/*
 * Set by the loader before load. By enum agc_class: a gentler curve than
 * the stock penalty for the classes a policy protects (interactive,
 * tool_burst); none for background, whose steps keep the stock penalty
 * and its reclaim retries unless their profile sets a curve: a default
 * below stock would let a runaway neighbour grow faster than with no
 * policy at all.
 */
volatile const __u32 class_delay_a_ms[4] = { 0, 50, 500, 0 };
volatile const __u32 default_delay_k = 2;
volatile const __u32 default_protect_budget_ms = 30000;
volatile const __u32 protect_min = 0;

AGC_PRESSURE_BTF;

#define PAGE_BYTES 4096ULL
#define PAGE_COUNTER_UNLIMITED (0x7fffffffffffffffULL / PAGE_BYTES)
#define Q 16                        /* fixed point: 1.0 == 1 << Q */
#define RATIO_CAP (16ULL << Q)      /* over/high beyond 16 counts as 16 */
#define GRANT_GAP_CAP_NS (100ULL * 1000 * 1000)

static __always_inline struct mao_stats *stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ops_stats, &zero);
}

#define STAT_ADD(field, v)                                      \
	do {                                                    \
		struct mao_stats *__s = stats();                \
		if (__s)                                        \
			__sync_fetch_and_add(&__s->field, (v)); \
	} while (0)

static __always_inline __u64 memcg_cgid(struct mem_cgroup *memcg)
{
	return memcg->css.cgroup->kn->id;
}

static struct mao_cgroup *state_of(__u64 cgid, __u64 now)
{
	struct mao_cgroup *st, fresh = { .online_ns = now };

	st = bpf_map_lookup_elem(&cgroup_state, &cgid);
	if (st)
		return st;
	bpf_map_update_elem(&cgroup_state, &cgid, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&cgroup_state, &cgid);
}

/* A of the step's delay curve: its own, else its class default; 0: none. */
static __u64 policy_delay_a(const struct step_policy *pol)
{
	__u32 cls = pol->class;

	if (pol->mem_delay_a_ms)
		return pol->mem_delay_a_ms;
	return cls < 4 ? class_delay_a_ms[cls] : 0;
}

/* delay = A * (over/high)^k ms, clamped to max. */
static __u64 policy_delay_ms(const struct step_policy *pol, __u64 over, __u64 high)
{
	__u64 a, k, max, ratio, acc = 1ULL << Q, d;
	int i;

	a = policy_delay_a(pol);
	k = pol->mem_delay_k ? pol->mem_delay_k : default_delay_k;
	if (k > 4)
		k = 4;
	max = pol->mem_delay_max_ms;
	if (!max || max > MAO_KERNEL_MAX_DELAY_MS)
		max = MAO_KERNEL_MAX_DELAY_MS;

	ratio = (over << Q) / high;
	if (ratio > RATIO_CAP)
		ratio = RATIO_CAP;
	for (i = 0; i < 4; i++) {
		if (i >= k)
			break;
		acc = (acc * ratio) >> Q;
	}
	/* acc <= 16^4 in Q16 (2^32) and a < 2^32: the product fits 64 bits. */
	d = (a * acc) >> Q;
	return d > max ? max : d;
}

static void record_pressure(__u64 cgid, __u64 delay_ms, __u64 now)
{
	struct step_pressure *p, zero = {};
	__u64 delay_ns = delay_ms * 1000 * 1000, ewma, score;
	bool stale;

	p = bpf_map_lookup_elem(&step_pressures, &cgid);
	if (!p) {
		bpf_map_update_elem(&step_pressures, &cgid, &zero, BPF_NOEXIST);
		p = bpf_map_lookup_elem(&step_pressures, &cgid);
		if (!p)
			return;
	}
	/*
	 * A first event, or the first after a quiet spell, starts a new
	 * episode: the EWMA restarts from this delay instead of carrying
	 * what the step suffered before it went quiet.
	 */
	stale = !p->last_update_ns || now - p->last_update_ns > AGC_PRESSURE_STALE_NS;
	if (now / AGC_PRESSURE_WINDOW_NS != p->last_update_ns / AGC_PRESSURE_WINDOW_NS)
		p->recent_events = 0;
	__sync_fetch_and_add(&p->recent_events, 1);
	__sync_fetch_and_add(&p->total_events, 1);
	__sync_fetch_and_add(&p->total_delay_ns, delay_ns);
	/* EWMA with alpha 1/4 */
	ewma = stale ? delay_ns : (3 * p->delay_ewma_ns + delay_ns) / 4;
	p->delay_ewma_ns = ewma;
	score = ewma / AGC_PRESSURE_UNIT_NS;
	if (score > AGC_PRESSURE_MAX)
		score = AGC_PRESSURE_MAX;
	/* Visible as "throttled" from the first event, even at 0 ms. */
	p->thrash_score = score ? score : 1;
	p->last_update_ns = now;
}

SEC("struct_ops/mao_get_high_delay_ms")
unsigned int mao_get_high_delay_ms(unsigned long long *ctx)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)ctx[0];
	struct step_policy *pol;
	struct mao_cgroup *st;
	__u64 cgid, usage, high, over, d, now;

	STAT_ADD(delay_calls, 1);
	cgid = memcg_cgid(memcg);
	pol = bpf_map_lookup_elem(&step_policies, &cgid);
	if (!pol)
		return MAO_DELAY_STOCK; /* not a step: the stock penalty */
	STAT_ADD(delay_policy, 1);

	high = memcg->memory.high;
	if (!high || high >= PAGE_COUNTER_UNLIMITED)
		return MAO_DELAY_STOCK; /* no high of its own: an ancestor is over */
	high *= PAGE_BYTES;
	usage = bpf_mem_cgroup_usage(memcg);
	over = usage > high ? usage - high : 0;
	now = bpf_ktime_get_ns();

	if (over <= pol->mem_burst_credit_bytes) {
		d = 0; /* within the credit: no throttle at all */
		STAT_ADD(delay_credit, 1);
	} else if (!policy_delay_a(pol)) {
		return MAO_DELAY_STOCK; /* no curve of its own or its class */
	} else {
		d = policy_delay_ms(pol, over, high);
	}
	if (d) {
		STAT_ADD(delay_nonzero, 1);
		STAT_ADD(delay_ms_sum, d);
	}
	record_pressure(cgid, d, now);
	st = state_of(cgid, now);
	if (st) {
		st->delay_events++;
		st->last_delay_ms = d;
	}
	return d;
}

/*
 * oom_kill count of the cgroup's parent, or 0 at the top level. The
 * cgroup is looked up by id: a pointer walked from the memcg argument is
 * not trusted, and the kfuncs below need trusted (acquired) pointers.
 */
static __u64 parent_oom_kills(__u64 cgid)
{
	struct cgroup *cg, *parent = NULL;
	struct mem_cgroup *pm;
	__u64 v = 0;
	int level;

	cg = bpf_cgroup_from_id(cgid);
	if (!cg)
		return 0;
	level = cg->level;
	if (level > 0)
		parent = bpf_cgroup_ancestor(cg, level - 1);
	bpf_cgroup_release(cg);
	if (!parent)
		return 0;
	pm = bpf_get_mem_cgroup(&parent->self);
	if (pm) {
		v = bpf_mem_cgroup_memory_events(pm, MEMCG_OOM_KILL);
		bpf_put_mem_cgroup(pm);
	}
	bpf_cgroup_release(parent);
	return v;
}

/* Shared by below_low and below_min: may this step be protected now? */
static bool protect(struct mem_cgroup *memcg, bool is_min)
{
	struct step_policy *pol;
	struct mao_cgroup *st;
	__u64 cgid, now, budget_ns, gap, max_ev, oom_ev, parent_oom;

	cgid = memcg_cgid(memcg);
	pol = bpf_map_lookup_elem(&step_policies, &cgid);
	if (!pol || !(pol->flags & AGC_POLICY_PROTECT_MEM))
		return false;
	now = bpf_ktime_get_ns();
	st = state_of(cgid, now);
	if (!st || st->revoked)
		return false;

	max_ev = bpf_mem_cgroup_memory_events(memcg, MEMCG_MAX);
	oom_ev = bpf_mem_cgroup_memory_events(memcg, MEMCG_OOM);
	parent_oom = parent_oom_kills(cgid);
	if (!st->last_grant_ns) {
		/* First grant: remember where the danger signals stood. */
		st->base_max_events = max_ev;
		st->base_oom_events = oom_ev;
		st->base_parent_oom = parent_oom;
	} else if (max_ev > st->base_max_events) {
		st->revoked = MAO_REVOKED_MAX;
		STAT_ADD(revoked_max, 1);
		return false;
	} else if (oom_ev > st->base_oom_events || parent_oom > st->base_parent_oom) {
		st->revoked = MAO_REVOKED_OOM;
		STAT_ADD(revoked_oom, 1);
		return false;
	}

	/*
	 * Charge the time since the previous grant against the budget; gaps
	 * longer than 100 ms are quiet periods and charge only 100 ms.
	 */
	if (st->last_grant_ns) {
		gap = now - st->last_grant_ns;
		st->protect_used_ns += gap > GRANT_GAP_CAP_NS ? GRANT_GAP_CAP_NS : gap;
	}
	budget_ns = (__u64)(pol->mem_protect_budget_ms ? pol->mem_protect_budget_ms
						       : default_protect_budget_ms) * 1000 * 1000;
	if (st->protect_used_ns >= budget_ns) {
		st->revoked = MAO_REVOKED_BUDGET;
		STAT_ADD(revoked_budget, 1);
		return false;
	}
	st->last_grant_ns = now;
	if (is_min)
		st->min_grants++;
	else
		st->low_grants++;
	return true;
}

SEC("struct_ops/mao_below_low")
bool mao_below_low(unsigned long long *ctx)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)ctx[0];

	STAT_ADD(low_calls, 1);
	if (!protect(memcg, false))
		return false;
	STAT_ADD(low_grants, 1);
	return true;
}

SEC("struct_ops/mao_below_min")
bool mao_below_min(unsigned long long *ctx)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)ctx[0];

	STAT_ADD(min_calls, 1);
	if (!protect_min || !protect(memcg, true))
		return false;
	STAT_ADD(min_grants, 1);
	return true;
}

SEC("struct_ops/mao_cgroup_online")
void mao_cgroup_online(unsigned long long *ctx)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)ctx[0];
	struct mao_cgroup fresh = { .online_ns = bpf_ktime_get_ns() };
	__u64 cgid = memcg_cgid(memcg);

	STAT_ADD(online, 1);
	/* Attach replays online for existing cgroups: keep what we have. */
	bpf_map_update_elem(&cgroup_state, &cgid, &fresh, BPF_NOEXIST);
}

SEC("struct_ops/mao_cgroup_offline")
void mao_cgroup_offline(unsigned long long *ctx)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)ctx[0];
	__u64 cgid = memcg_cgid(memcg);

	STAT_ADD(offline, 1);
	bpf_map_delete_elem(&cgroup_state, &cgid);
	bpf_map_delete_elem(&step_pressures, &cgid);
}

SEC(".struct_ops.link")
struct memcg_bpf_ops memcg_agent_ops = {
	.handle_cgroup_online = (void *)mao_cgroup_online,
	.handle_cgroup_offline = (void *)mao_cgroup_offline,
	.below_low = (void *)mao_below_low,
	.below_min = (void *)mao_below_min,
	.get_high_delay_ms = (void *)mao_get_high_delay_ms,
};
