// SPDX-License-Identifier: GPL-2.0
/*
 * In-kernel memory pressure signal for mainline kernels (no memcg_bpf_ops).
 *
 * The kernel throttles a task whose cgroup is over memory.high in
 * __mem_cgroup_handle_over_high() (mm/memcontrol.c): it reclaims, and if
 * reclaim cannot keep up it sleeps the task for a penalty of up to 2 s. The
 * function runs when the task returns to user space after a charge that
 * breached memory.high, or synchronously from try_charge_memcg() when the
 * task has gone a whole charge batch over. We trace entry and exit:
 *
 *  - entry counts the event at once, so a reader (the scheduler) sees the
 *    breach within the tick it happens, before any penalty sleep ends;
 *  - exit adds the time the task spent in the handler (reclaim + penalty
 *    sleep) to the delay EWMA and recomputes the thrash score.
 *
 * Entries are keyed by the task's cgroup2 id (the step). By default only
 * cgroups that user space registered in step_policy are tracked, so foreign
 * cgroups cannot fill the map; track_all lifts that for diagnostics.
 */
#include "bpf_defs.h"
#include "../../include/agentcgroup.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, AGC_BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, struct step_policy);
} step_policy SEC(".maps");

struct {
	__uint(type, AGC_BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, struct step_pressure);
} step_pressure SEC(".maps");

/* Where a task entered the handler, so exit can charge the right step. */
struct throttle_start {
	__u64 ts_ns;
	__u64 cgid;
};

struct {
	__uint(type, AGC_BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct throttle_start);
} throttle_start SEC(".maps");

/*
 * Start of the current pressure episode per cgroup: the time of the first
 * event after the entry was stale (or absent). Lets user space measure how
 * fast the kernel noticed a breach without polling step_pressure.
 */
struct {
	__uint(type, AGC_BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, __u64);
} pressure_onset SEC(".maps");

/*
 * One record per pressure onset, so user space wakes on the kernel's first
 * throttle of an episode instead of polling step_pressure.
 */
struct onset_event {
	__u64 cgid;
	__u64 ts_ns;
};

struct {
	__uint(type, AGC_BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} onset_events SEC(".maps");

/*
 * Tasks of a cgroup inside the throttle handler right now. The penalty
 * sleep lasts up to 2 s, longer than AGC_PRESSURE_STALE_NS, so a reader
 * that sees a stale entry with tasks in flight knows the step is still
 * being throttled rather than relieved.
 */
struct {
	__uint(type, AGC_BPF_MAP_TYPE_HASH);
	__uint(max_entries, AGC_MAX_STEPS);
	__type(key, __u64);
	__type(value, __u64);
} throttle_inflight SEC(".maps");

/* Set by the loader before load. */
volatile const __u32 track_all = 0;

AGC_PRESSURE_BTF;

static struct step_pressure *pressure_entry(__u64 cgid)
{
	struct step_pressure *p, zero = {};

	p = bpf_map_lookup_elem(&step_pressure, &cgid);
	if (p)
		return p;
	if (!track_all && !bpf_map_lookup_elem(&step_policy, &cgid))
		return 0;
	bpf_map_update_elem(&step_pressure, &cgid, &zero, AGC_BPF_NOEXIST);
	return bpf_map_lookup_elem(&step_pressure, &cgid);
}

static __u32 score_of(__u64 ewma_ns)
{
	__u64 s = ewma_ns / AGC_PRESSURE_UNIT_NS;

	return s > AGC_PRESSURE_MAX ? AGC_PRESSURE_MAX : (__u32)s;
}

SEC("fentry/__mem_cgroup_handle_over_high")
int agc_over_high_enter(void *ctx)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct throttle_start st = { .ts_ns = now, .cgid = cgid };
	struct step_pressure *p;

	p = pressure_entry(cgid);
	if (!p)
		return 0;
	if (!p->last_update_ns || now - p->last_update_ns > AGC_PRESSURE_STALE_NS) {
		struct onset_event ev = { .cgid = cgid, .ts_ns = now };

		bpf_map_update_elem(&pressure_onset, &cgid, &now, AGC_BPF_ANY);
		bpf_ringbuf_output(&onset_events, &ev, sizeof(ev), 0);
		/*
		 * A new episode: whatever the step suffered before the quiet
		 * spell says nothing about now. Zero tells the exit hook to
		 * seed the EWMA from this event's delay (a measured delay is
		 * never 0), and the old score must not reappear as fresh.
		 */
		p->delay_ewma_ns = 0;
		p->thrash_score = 1;
	}
	/* A new window starts the recent count over. */
	if (now / AGC_PRESSURE_WINDOW_NS != p->last_update_ns / AGC_PRESSURE_WINDOW_NS)
		p->recent_events = 0;
	__sync_fetch_and_add(&p->recent_events, 1);
	__sync_fetch_and_add(&p->total_events, 1);
	/* The score reflects only delays already paid; keep it >= 1 while
	 * events arrive so "being throttled" is visible from the first one. */
	if (p->thrash_score == 0)
		p->thrash_score = 1;
	p->last_update_ns = now;
	if (bpf_map_update_elem(&throttle_start, &tid, &st, AGC_BPF_ANY) == 0) {
		__u64 one = 1, *n = bpf_map_lookup_elem(&throttle_inflight, &cgid);

		if (n)
			__sync_fetch_and_add(n, 1);
		else
			bpf_map_update_elem(&throttle_inflight, &cgid, &one, AGC_BPF_NOEXIST);
	}
	return 0;
}

SEC("fexit/__mem_cgroup_handle_over_high")
int agc_over_high_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct throttle_start *st;
	struct step_pressure *p;
	__u64 now, delay, ewma, cgid, start, *n;

	st = bpf_map_lookup_elem(&throttle_start, &tid);
	if (!st)
		return 0;
	cgid = st->cgid;
	start = st->ts_ns;
	bpf_map_delete_elem(&throttle_start, &tid);
	n = bpf_map_lookup_elem(&throttle_inflight, &cgid);
	if (n && *n > 0)
		__sync_fetch_and_add(n, -1);

	p = bpf_map_lookup_elem(&step_pressure, &cgid);
	if (!p)
		return 0;
	now = bpf_ktime_get_ns();
	delay = now - start;
	/* EWMA with alpha 1/4; the first event of an episode seeds it. */
	ewma = p->delay_ewma_ns;
	ewma = ewma ? (3 * ewma + delay) / 4 : delay;
	p->delay_ewma_ns = ewma;
	__sync_fetch_and_add(&p->total_delay_ns, delay);
	p->thrash_score = score_of(ewma) ? score_of(ewma) : 1;
	p->last_update_ns = now;
	return 0;
}
