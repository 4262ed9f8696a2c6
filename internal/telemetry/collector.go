package telemetry

import (
	"errors"
	"sync"
	"time"
)

// CounterReader reads a cgroup's eBPF counters; *Probes is one.
type CounterReader interface {
	Read(cgroupID uint64) (Counters, error)
}

// Agent names what a Collector measures: the agent's cgroup and, for hosts
// without cgroups, its main process.
type Agent struct {
	CgroupID   uint64 // cgroup v2 id, for eBPF counters
	CgroupPath string // cgroup v2 directory, for cgroup.procs and PSI
	PID        int    // used when CgroupPath is empty
}

// Stats is one agent's telemetry at one instant, from every source that is
// available; the Have fields say which parts are filled.
type Stats struct {
	Time time.Time

	// Rates come from eBPF counters since the previous Collect.
	Rates     Rates
	HaveRates bool

	// Proc sums the agent's processes (procfs).
	Proc     ProcSample
	HaveProc bool

	PSI     PSI
	HavePSI bool
}

// Collector fills Stats for agents from eBPF when Probes is set and from
// procfs and PSI always, so the same Stats come out whether or not eBPF works
// on this host. It is safe for concurrent use.
type Collector struct {
	// Probes supplies eBPF counters; nil means procfs and PSI only.
	Probes CounterReader
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	sampler Sampler
}

// Collect measures the agent. The error is non-nil only when no source
// yielded anything; it joins every source's error.
func (c *Collector) Collect(a Agent) (Stats, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	s := Stats{Time: now()}
	var errs []error

	if c.Probes != nil && a.CgroupID != 0 {
		if cnt, err := c.Probes.Read(a.CgroupID); err != nil {
			errs = append(errs, err)
		} else {
			c.mu.Lock()
			c.sampler.Now = func() time.Time { return s.Time }
			s.Rates, s.HaveRates = c.sampler.Update(a.CgroupID, cnt)
			c.mu.Unlock()
		}
	}

	var (
		proc ProcSample
		err  error
	)
	switch {
	case a.CgroupPath != "":
		proc, err = CgroupProcStats(a.CgroupPath)
	case a.PID > 0:
		proc, err = ProcStats(a.PID)
	default:
		err = errors.New("telemetry: agent has neither cgroup path nor pid")
	}
	if err != nil {
		errs = append(errs, err)
	} else {
		s.Proc, s.HaveProc = proc, true
	}

	if psi, err := ReadPSI(a.CgroupPath); err != nil {
		errs = append(errs, err)
	} else {
		s.PSI, s.HavePSI = psi, true
	}

	if !s.HaveRates && !s.HaveProc && !s.HavePSI {
		return s, errors.Join(errs...)
	}
	return s, nil
}

// Forget drops what the Collector keeps about the agent's cgroup.
func (c *Collector) Forget(a Agent) {
	c.mu.Lock()
	c.sampler.Forget(a.CgroupID)
	c.mu.Unlock()
}
