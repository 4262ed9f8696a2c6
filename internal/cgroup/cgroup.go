package cgroup

import (
	"fmt"
	"log/slog"
	"time"
)

// Mode says where limits come from.
type Mode string

const (
	// ModeV2: cgroup2 with its controllers (memory where available).
	ModeV2 Mode = "v2"
	// ModeHybrid: cgroup2 for placement, kill and freeze; memory (and pids,
	// cpu where cgroup2 lacks them) from cgroup v1 hierarchies.
	ModeHybrid Mode = "hybrid"
	// ModeNone: no usable cgroup2; Create returns ErrNotSupported.
	ModeNone Mode = "none"
)

// DefaultName is the directory created under the cgroup2 mount when the
// daemon does not own a delegated cgroup.
const DefaultName = "resilienced"

// Options configure a Manager.
type Options struct {
	// Name of the tree under the cgroup2 mount (and under the daemon's own
	// cgroup in each v1 hierarchy) when not delegated. Default
	// "resilienced". Tests use their own names to keep trees apart.
	Name string
	// Delegate forces (true) or forbids (false) using the daemon's own
	// systemd-delegated cgroup; nil detects it.
	Delegate *bool
	// Root is a delegated cgroup2 directory to own instead of the
	// daemon's own cgroup: a systemd scope of the agents' own
	// (internal/agentscope), so that they live outside the service's
	// cgroup and a restart of the service leaves them be. Its processes
	// move to a leaf "hold" before controllers are enabled. Empty: the
	// daemon's own cgroup when delegated, else <mount>/<Name>.
	Root string
	// Logger receives the notes once, at Open. Nil discards.
	Logger *slog.Logger
}

// Limits for one agent cgroup. Zero means no limit.
type Limits struct {
	// Memory in bytes (memory.max; v1 memory.limit_in_bytes). On cgroup2
	// swap is also set to 0 (memory.swap.max) so a leaking agent is
	// OOM-killed rather than swapped, and memory.oom.group is set so the
	// OOM killer takes the whole agent, never half of it.
	Memory int64
	// Pids is the maximum number of tasks (processes and threads).
	Pids int64
	// CPUWeight is cpu.weight, 1..10000 (default 100). On v1 it becomes
	// cpu.shares = weight*1024/100, as systemd converts it.
	CPUWeight int
}

func (l Limits) validate() error {
	if l.Memory < 0 || l.Pids < 0 || l.CPUWeight < 0 || l.CPUWeight > 10000 {
		return fmt.Errorf("%w: limits %+v (memory, pids >= 0; cpu weight 0..10000)", ErrInvalid, l)
	}
	return nil
}

// cpuShares converts a cgroup2 cpu.weight to v1 cpu.shares the way systemd
// does, so weight 100 (the default) is shares 1024 (the default).
func cpuShares(weight int) int64 {
	s := int64(weight) * 1024 / 100
	return min(max(s, 2), 262144)
}

// Stats of one agent cgroup. Fields whose controller is off are zero. A
// maximum of 0 means no limit.
type Stats struct {
	MemoryCurrent, MemoryMax int64
	// OOMKills counts processes killed by the OOM killer in this cgroup.
	OOMKills             uint64
	PidsCurrent, PidsMax int64
	// CPUUsage is the CPU time consumed by the cgroup's tasks.
	CPUUsage time.Duration
}

// MemoryEvents are the counters of cgroup2 memory.events. On v1 only Max
// (memory.failcnt) and OOMKill (memory.oom_control) are known; the rest are 0.
type MemoryEvents struct {
	Low, High, Max, OOM, OOMKill, OOMGroupKill uint64
}

// validName accepts names that are safe as one directory level and cannot
// collide with cgroup interface files (which all contain a dot after a
// controller name, e.g. "memory.max"; a name starting with a letter or digit
// and made of [A-Za-z0-9_@:-] plus dots is checked against that below).
func validName(s string) error {
	if s == "" || len(s) > 128 || s == "." || s == ".." {
		return fmt.Errorf("%w: name %q", ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '@', c == ':':
		case c == '.' && i > 0:
		default:
			return fmt.Errorf("%w: name %q: only letters, digits, - _ @ : and inner dots", ErrInvalid, s)
		}
	}
	for _, p := range []string{"cgroup.", "memory.", "pids.", "cpu.", "io.", "cpuset.", "hugetlb.", "rdma.", "misc.", "cpuacct.", "notify_on_release", "release_agent", "tasks"} {
		if len(s) >= len(p) && s[:len(p)] == p {
			return fmt.Errorf("%w: name %q looks like a cgroup interface file", ErrInvalid, s)
		}
	}
	return nil
}
