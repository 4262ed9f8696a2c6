// Package cgroup gives every agent its own cgroup: it creates the tree, places
// processes, applies memory, pids and cpu limits, kills and freezes whole
// process trees, waits for them to empty, reads their stats, and removes
// everything it made.
//
// A [Manager] owns one subtree of the cgroup2 hierarchy. Under systemd with
// Delegate=yes (the daemon's own cgroup ends in .service or .scope,
// INVOCATION_ID is set and the directory is writable) it owns its unit's
// cgroup: it moves its own processes into a "daemon" leaf, as the cgroup v2
// no-internal-process rule requires before controllers can be enabled for
// children, and creates agents under <own>/agents/<pool>/<agent>. Otherwise
// it creates <cgroup2 mount>/<Name>/agents/<pool>/<agent> (Name defaults to
// "resilienced"). Mounts are found in /proc/self/mountinfo, never at a fixed
// path.
//
// Each agent is a [Cgroup]. Processes are placed at clone time by
// exec.Cmd with SysProcAttr{UseCgroupFD: true, CgroupFD: c.FD()}, so a
// process is never outside its cgroup, not even for the instant between fork
// and exec. Kill writes cgroup.kill, which reaches every process of the tree,
// double-forked grandchildren included; on kernels without it (< 5.14) Kill
// freezes the cgroup and SIGKILLs every member until it is empty.
//
// Limits come from cgroup2 controllers where the host has them (production:
// pure v2, systemd ≥ 252), enabled in cgroup.subtree_control from the top of
// the subtree down to each pool. On hybrid hosts, where cgroup2 carries no
// controllers, the v1 memory, pids and cpu hierarchies are used with the same
// relative path nested under the daemon's own v1 cgroup ([ModeHybrid]); the
// caller then calls [Cgroup.Join] with the new pid. Where no controller
// exists the agents run without limits and [Manager.Notes] says so.
//
// Open never fails because cgroups are missing or not writable (not root):
// it returns a Manager in [ModeNone] whose Notes explain why, and whose
// Create returns an error wrapping [ErrNotSupported]. The daemon then falls
// back to process groups.
//
// Nothing is leaked: [Manager.Close] removes the directories of the tree
// once the agents are gone, and [Manager.Reap] kills and removes agent
// cgroups left behind by a previous instance that died.
package cgroup
