// Package agentscope puts the agents' cgroup tree in a transient systemd
// scope of their own, outside the daemon's service, so that they outlive
// the service's stop and start: `systemctl restart`, a crash that systemd
// restarts, a package upgrade.
//
// Why a scope and not the service's delegated subtree: systemd kills
// (KillMode=control-group, mixed) or keeps (KillMode=process) whatever is
// in the unit's cgroup, and a new ExecStart cannot join a unit cgroup
// whose surviving children have controllers enabled (cgroup v2's
// no-internal-process rule: 219/CGROUP on systemd 252). systemd 254's
// DelegateSubgroup= would solve the second, not the first under
// KillMode=mixed. A scope is a unit of its own: a restart of the service
// does not touch it, and its cgroup (Delegate=yes) is ours to divide.
//
// A scope is created with at least one process and ends when it has none.
// Its first process is a holder: the daemon's own binary started in a
// mode that only waits (see [HoldEnv]), moved to the leaf "hold" so that
// the scope's root may enable controllers for the agents beside it. The
// holder keeps the scope alive while no agent runs; [Stop] ends it when
// the daemon stops for good.
//
// The scope is made over systemd's private bus socket (go-systemd's dbus
// package), falling back to the system bus, so no dbus-daemon is needed.
package agentscope
