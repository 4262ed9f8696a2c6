//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-cgroup telemetry for resilienced's agents.
 *
 * The daemon fills `watched` (cgroup v2 id -> slot) with the cgroups of its
 * agents; every program looks its cgroup up there first and returns at once
 * when it is absent. sys_enter, which runs for every syscall of every task on
 * the node, first tests a bit chosen by the low bits of the cgroup id in
 * `watch_filter`, so processes outside the agents pay an array read per
 * syscall and, only when another watched cgroup shares their bit, a hash
 * lookup. Counters live in per-CPU arrays indexed by slot (syscall_counters,
 * net_counters); the loader sums the CPUs.
 *
 * Syscalls and errors are counted exactly. Latency is timed for every
 * syscall, or, when the loader sets latency_sample_shift, for one in
 * 2^latency_sample_shift per task, picked by a per-task pseudo-random
 * sequence (not every n-th, which would alias with loops of n syscalls): a
 * CLOCK_MONOTONIC read is the dearest part of the programs on some virtual
 * machines (kvm-clock without a stable TSC). The histogram is then a sample.
 *
 *   sys_enter/sys_exit      syscall count, error count, log2 latency histogram
 *   sched_process_exit      exit code and signal of each process   -> ring buffer
 *   mark_victim             OOM kills                              -> ring buffer
 *   cgroup_skb in/egress    bytes and packets (counts, always allows)
 *   tcp_retransmit_skb,
 *   tcp_send_reset,
 *   tcp_receive_reset       TCP retransmits and resets, by the socket's cgroup
 *
 * All tracing programs are raw tracepoints: they need no tracefs, and one
 * whose tracepoint does not exist on the running kernel loads anyway and just
 * fails to attach, which the loader reports as a missing feature.
 */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "telemetry_kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_WATCHED 1024
#define FILTER_WORDS 512 /* watch_filter: 32768 bits, one page */
#define HIST_BUCKETS 32
#define MAX_ERRNO 4095

/* Values of event.kind. */
#define EVENT_EXIT 1
#define EVENT_OOM 2

/* TCP states of sockets that are not full sockets (no sk_cgrp_data). */
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12

struct syscall_stats {
	__u64 count;
	__u64 errors;
	__u64 hist[HIST_BUCKETS]; /* bucket i: latency in [2^i, 2^(i+1)) ns; 0 also holds 0-1 ns; 31 is open-ended */
};

struct net_stats {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
	__u64 retransmits;
	__u64 resets;
};

struct event {
	__u64 ktime_ns; /* CLOCK_MONOTONIC */
	__u64 cgroup_id;
	__u32 pid; /* thread group id */
	__u32 kind;
	__s32 exit_code; /* task->exit_code: status << 8 | core dump 0x80 | signal */
	__u32 _pad;
};

/* Per-task state between sys_enter and sys_exit. */
struct syscall_start {
	__u64 ktime_ns; /* start of a timed syscall; 0: this one is not timed */
	__u64 cg;       /* the cgroup the slot was looked up for */
	__u32 slot;
	__u16 in_flight; /* a syscall of a watched cgroup is in flight */
	__u16 _pad;
	__u32 rng; /* xorshift32 state that picks the timed syscalls */
	__u32 _pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u64);   /* cgroup v2 id */
	__type(value, __u32); /* slot in syscall_counters and net_counters */
} watched SEC(".maps");

/*
 * Bit (id % 32768) is set when some watched cgroup's id has those low bits:
 * a filter with no false negatives, read without hashing. The loader sets
 * and clears whole words as it watches and unwatches cgroups.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} watch_filter SEC(".maps");

/*
 * The cgroup id each slot counts for, 0 when free. A task's storage
 * remembers its slot; while slot_owner[slot] is still the task's cgroup, the
 * slot is right without a hash lookup (the task may have moved, the slot may
 * have been reused).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u32);
	__type(value, __u64);
} slot_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u32);
	__type(value, struct syscall_stats);
} syscall_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u32);
	__type(value, struct net_stats);
} net_counters SEC(".maps");

/* Task local storage: no hashing on the hot path, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_start);
} syscall_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Set by the loader: sched_process_exit passes group_dead (kernel >= 6.16). */
const volatile __u8 exit_has_group_dead = 0;

/* Set by the loader: time one syscall in 2^latency_sample_shift (0: all). */
const volatile __u32 latency_sample_shift = 0;

/* Force BTF for the ring buffer record, which no map declares. */
const struct event *unused_event __attribute__((unused));

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (__u32)(v >> 1);
	if (r >= HIST_BUCKETS)
		r = HIST_BUCKETS - 1;
	return r;
}

static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 word = (cg / 64) % FILTER_WORDS;
	__u64 *bits = bpf_map_lookup_elem(&watch_filter, &word);
	struct task_struct *task;
	struct syscall_start *st;
	__u64 *owner;
	__u32 *slot, x;

	if (!bits || !(*bits & (1ULL << (cg % 64))))
		return 0;
	task = bpf_get_current_task_btf();
	st = bpf_task_storage_get(&syscall_starts, task, 0, 0);
	if (st) {
		owner = bpf_map_lookup_elem(&slot_owner, &st->slot);
		if (!owner || *owner != cg)
			st = 0;
	}
	if (!st) {
		slot = bpf_map_lookup_elem(&watched, &cg);
		if (!slot)
			return 0;
		st = bpf_task_storage_get(&syscall_starts, task, 0,
					  BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!st)
			return 0;
		st->slot = *slot;
		st->cg = cg;
	}
	st->in_flight = 1;
	x = st->rng;
	if (!x) /* new storage */
		x = bpf_get_prandom_u32() | 1;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	st->rng = x;
	if (x & ((1U << latency_sample_shift) - 1))
		st->ktime_ns = 0;
	else
		st->ktime_ns = bpf_ktime_get_ns();
	return 0;
}

/*
 * sys_exit filters on the task storage sys_enter left: a task that never
 * entered a syscall in a watched cgroup has none, and the lookup on such a
 * task is a NULL check.
 */
SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct syscall_start *st;
	struct syscall_stats *s;
	__u64 start, *owner;
	__u32 slot;
	long ret;

	st = bpf_task_storage_get(&syscall_starts, bpf_get_current_task_btf(), 0, 0);
	if (!st || !st->in_flight)
		return 0;
	st->in_flight = 0;
	slot = st->slot;
	start = st->ktime_ns;
	/* Unwatched, or the slot reused, since sys_enter: count nowhere. */
	owner = bpf_map_lookup_elem(&slot_owner, &slot);
	if (!owner || *owner != st->cg)
		return 0;

	s = bpf_map_lookup_elem(&syscall_counters, &slot);
	if (!s)
		return 0;
	/*
	 * Plain increments: only task context touches these fields, and a
	 * per-CPU value can only race with a preemption inside this program;
	 * losing such a rare count is cheaper than an atomic on every syscall.
	 */
	s->count++;
	ret = (long)ctx->args[1];
	if (ret < 0 && ret >= -MAX_ERRNO)
		s->errors++;
	if (start)
		s->hist[log2_bucket(bpf_ktime_get_ns() - start)]++;
	return 0;
}

static __always_inline void emit(__u32 kind, __u64 cg, struct task_struct *t)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return;
	e->ktime_ns = bpf_ktime_get_ns();
	e->cgroup_id = cg;
	e->pid = BPF_CORE_READ(t, tgid);
	e->kind = kind;
	e->exit_code = BPF_CORE_READ(t, exit_code);
	e->_pad = 0;
	/*
	 * Exits and OOM kills are rare and the supervisor acts on them at
	 * once: wake the reader now rather than leave it to the default
	 * adaptive notification.
	 */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/*
 * One event per process: when the kernel says which thread ends the group
 * (group_dead), on that thread; otherwise on the thread-group leader.
 * args: (struct task_struct *p[, bool group_dead]); p is current.
 */
SEC("raw_tracepoint/sched_process_exit")
int sched_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u64 cg = bpf_get_current_cgroup_id();

	if (!bpf_map_lookup_elem(&watched, &cg))
		return 0;
	if (exit_has_group_dead) {
		if (!(__u8)ctx->args[1])
			return 0;
	} else if (BPF_CORE_READ(t, pid) != BPF_CORE_READ(t, tgid)) {
		return 0;
	}
	emit(EVENT_EXIT, cg, t);
	return 0;
}

/*
 * mark_victim runs in the context of the task whose allocation triggered the
 * OOM killer, so the victim's own cgroup is read from the victim.
 * args: (struct task_struct *victim[, uid_t uid])
 */
SEC("raw_tracepoint/mark_victim")
int mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u64 cg = task_cgroup_id(t);

	if (!bpf_map_lookup_elem(&watched, &cg))
		return 0;
	emit(EVENT_OOM, cg, t);
	return 0;
}

static __always_inline struct net_stats *net_stats_of(__u64 cg)
{
	__u32 *slot = bpf_map_lookup_elem(&watched, &cg);

	if (!slot)
		return 0;
	return bpf_map_lookup_elem(&net_counters, slot);
}

/*
 * Network counters may be updated from softirq and task context on the same
 * CPU, so they are added atomically.
 */
SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	struct net_stats *n = net_stats_of(bpf_skb_cgroup_id(skb));

	if (n) {
		__sync_fetch_and_add(&n->rx_bytes, skb->len);
		__sync_fetch_and_add(&n->rx_packets, 1);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	struct net_stats *n = net_stats_of(bpf_skb_cgroup_id(skb));

	if (n) {
		__sync_fetch_and_add(&n->tx_bytes, skb->len);
		__sync_fetch_and_add(&n->tx_packets, 1);
	}
	return 1;
}

/*
 * TCP events can fire in softirq context (timers, incoming segments), where
 * the current task is unrelated: attribute them to the socket's cgroup.
 */
static __always_inline struct net_stats *sock_net_stats(const struct sock *sk)
{
	unsigned char state;
	__u64 cg;

	if (!sk)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return 0;
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	return net_stats_of(cg);
}

/* args: (const struct sock *sk, const struct sk_buff *skb[, int err]) */
SEC("raw_tracepoint/tcp_retransmit_skb")
int tcp_retransmit_skb(struct bpf_raw_tracepoint_args *ctx)
{
	struct net_stats *n = sock_net_stats((const struct sock *)ctx->args[0]);

	if (n)
		__sync_fetch_and_add(&n->retransmits, 1);
	return 0;
}

/* args: (const struct sock *sk or NULL, const struct sk_buff *skb[, reason]) */
SEC("raw_tracepoint/tcp_send_reset")
int tcp_send_reset(struct bpf_raw_tracepoint_args *ctx)
{
	struct net_stats *n = sock_net_stats((const struct sock *)ctx->args[0]);

	if (n)
		__sync_fetch_and_add(&n->resets, 1);
	return 0;
}

/* args: (struct sock *sk) */
SEC("raw_tracepoint/tcp_receive_reset")
int tcp_receive_reset(struct bpf_raw_tracepoint_args *ctx)
{
	struct net_stats *n = sock_net_stats((const struct sock *)ctx->args[0]);

	if (n)
		__sync_fetch_and_add(&n->resets, 1);
	return 0;
}
