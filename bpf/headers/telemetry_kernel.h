/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel structures bpf/telemetry.c reads, written by hand instead of
 * a generated vmlinux.h (2.8 MB on the build kernel).
 *
 * Every struct is marked preserve_access_index, so clang emits CO-RE
 * relocations for each field access and the loader (cilium/ebpf) fixes the
 * offsets up against the running kernel's BTF. Only the fields named here
 * must exist, by name and with a compatible type; their order and the rest of
 * the structs do not matter.
 */
#ifndef TELEMETRY_KERNEL_H
#define TELEMETRY_KERNEL_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

struct kernfs_node {
	__u64 id; /* the cgroup id for a cgroup's node (kernel >= 5.5) */
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup in the v2 hierarchy */
};

struct signal_struct {
	atomic_t live;
};

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct css_set *cgroups;
	struct signal_struct *signal;
};

struct sock_common {
	unsigned char skc_state;
};

/* Kernel >= 5.15 layout; older kernels had a union here. */
struct sock_cgroup_data {
	struct cgroup *cgroup;
};

struct sock {
	struct sock_common __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
};

#pragma clang attribute pop

#endif /* TELEMETRY_KERNEL_H */
