/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal BPF program support for AgentCgroup programs: section and map
 * macros, the few helpers we call, and the kfuncs we import. We keep our own
 * small header instead of depending on libbpf-dev being installed, since
 * bpf2go only needs clang.
 *
 * Include after vmlinux.h (which provides the kernel types and the
 * BPF_FUNC_* helper ids).
 */
#ifndef __AGC_BPF_H
#define __AGC_BPF_H

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __ksym __attribute__((section(".ksyms")))

/* BTF-described map definitions, the layout libbpf and cilium/ebpf read. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]

#ifndef NULL
#define NULL ((void *)0)
#endif

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#define agc_min(a, b) ((a) < (b) ? (a) : (b))
#define agc_max(a, b) ((a) > (b) ? (a) : (b))

/* Helpers, called by their stable ids. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)BPF_FUNC_get_smp_processor_id;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size,
					 const void *unsafe_ptr) = (void *)BPF_FUNC_probe_read_kernel_str;
static void *(*bpf_task_storage_get)(void *map, struct task_struct *task, void *value,
				     __u64 flags) = (void *)BPF_FUNC_task_storage_get;
static void *(*bpf_cgrp_storage_get)(void *map, struct cgroup *cgroup, void *value,
				     __u64 flags) = (void *)BPF_FUNC_cgrp_storage_get;
static long (*bpf_timer_init)(struct bpf_timer *timer, void *map, __u64 flags) =
	(void *)BPF_FUNC_timer_init;
static long (*bpf_timer_set_callback)(struct bpf_timer *timer, void *callback_fn) =
	(void *)BPF_FUNC_timer_set_callback;
static long (*bpf_timer_start)(struct bpf_timer *timer, __u64 nsecs, __u64 flags) =
	(void *)BPF_FUNC_timer_start;

#define AGC_STORAGE_F_CREATE 1 /* BPF_LOCAL_STORAGE_GET_F_CREATE */
#define AGC_CLOCK_MONOTONIC 1

/* Open-coded number iterator: verified once, whatever the trip count. */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

extern struct cgroup *bpf_cgroup_ancestor(struct cgroup *cgrp, int level) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;

/*
 * sched_ext kfuncs.
 *
 * The one workaround for cilium/ebpf v0.22 on 7.x kernels lives here. Its
 * kfunc lookup (btf.Spec.AnyTypesByName) matches candidates by "essential
 * name" (the text before a "___" suffix) and then filters them with a loop
 * that skips the element after each deletion. 7.x exports
 * scx_bpf_dsq_insert, scx_bpf_dsq_insert___v2 and
 * scx_bpf_dsq_insert___v2_impl (likewise for scx_bpf_dsq_move_to_local and
 * scx_bpf_reenqueue_local), so asking for the plain names fails with
 * "multiple types". We therefore:
 *  - never import scx_bpf_dsq_move_to_local or scx_bpf_reenqueue_local:
 *    tasks are moved from our DSQs with the DSQ iterator and
 *    scx_bpf_dsq_move, whose names are unique;
 *  - import the kernel's exact name scx_bpf_dsq_insert___v2, used only for
 *    the idle-CPU fast path. With the pinned kernel's BTF order the buggy
 *    filter happens to leave exactly that function; TestLoadsOnPinnedKernel
 *    runs the same lookup against the guest kernel for every kfunc this
 *    object imports and fails if any resolves to anything but one function,
 *    so a kernel pin move that breaks this is caught before use.
 */
extern bool scx_bpf_dsq_insert___v2(struct task_struct *p, u64 dsq_id, u64 slice,
				    u64 enq_flags) __ksym;
extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern void scx_bpf_destroy_dsq(u64 dsq_id) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags,
				  bool *is_idle) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern void scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				     u64 enq_flags) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern int bpf_iter_scx_dsq_new(struct bpf_iter_scx_dsq *it, u64 dsq_id, u64 flags) __ksym;
extern struct task_struct *bpf_iter_scx_dsq_next(struct bpf_iter_scx_dsq *it) __ksym;
extern void bpf_iter_scx_dsq_destroy(struct bpf_iter_scx_dsq *it) __ksym;
extern bool scx_bpf_dsq_move(struct bpf_iter_scx_dsq *it__iter, struct task_struct *p,
			     u64 dsq_id, u64 enq_flags) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern u32 scx_bpf_nr_cpu_ids(void) __ksym;
extern bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym;
extern void scx_bpf_error_bstr(char *fmt, unsigned long long *data, u32 data__sz) __ksym;
extern void scx_bpf_dump_bstr(char *fmt, unsigned long long *data, u32 data__sz) __ksym;

#endif /* __AGC_BPF_H */
