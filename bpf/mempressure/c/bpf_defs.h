/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few BPF definitions the memory-pressure probe needs, written out so the
 * program builds with nothing but clang (no libbpf or kernel headers). The
 * numbers are the kernel's stable UAPI values from include/uapi/linux/bpf.h.
 */
#ifndef __AGC_BPF_DEFS_H
#define __AGC_BPF_DEFS_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))

/* BTF-defined map fields: the loader reads these from the map's BTF. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

enum {
	AGC_BPF_MAP_TYPE_HASH = 1,
	AGC_BPF_MAP_TYPE_LRU_HASH = 9,
	AGC_BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	AGC_BPF_ANY = 0,
	AGC_BPF_NOEXIST = 1,
};

/* Helper ids (enum bpf_func_id). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;

#endif /* __AGC_BPF_DEFS_H */
