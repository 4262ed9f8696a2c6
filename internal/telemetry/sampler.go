package telemetry

import "time"

// Rates is the activity of one cgroup between two samples.
type Rates struct {
	Interval time.Duration

	SyscallsPerSec float64
	ErrorsPerSec   float64
	// ErrorRatio is errors per syscall in the interval (0 when idle).
	ErrorRatio float64
	// LatencySamples is the number of syscalls timed in the interval, about
	// one in 16 (see Counters.LatencyHist): what P50 and P99 rest on.
	LatencySamples uint64
	// P50 and P99 syscall latency of the interval, from the histogram; 0
	// when unknown. P50 needs one timed syscall, P99 at least
	// minP99Samples (100): below that it would be only the slowest of a
	// few, so an agent that makes fewer than about 1,600 syscalls in the
	// interval has no P99.
	P50, P99 time.Duration

	RxBytesPerSec, TxBytesPerSec     float64
	RxPacketsPerSec, TxPacketsPerSec float64
	RetransmitsPerSec                float64
	ResetsPerSec                     float64
}

// minP99Samples is the fewest timed syscalls an interval needs for a P99.
const minP99Samples = 100

// Sampler keeps the previous Counters of each cgroup and turns the next ones
// into Rates. It is not safe for concurrent use.
type Sampler struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	prev map[uint64]sample
}

type sample struct {
	at time.Time
	c  Counters
}

// Update records c as cgroupID's latest counters and returns the rates since
// the previous Update. ok is false on the first sample of a cgroup, when no
// time has passed, and when the counters went backwards (the cgroup was
// watched again); the next Update then measures from this one.
func (s *Sampler) Update(cgroupID uint64, c Counters) (r Rates, ok bool) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	at := now()
	if s.prev == nil {
		s.prev = make(map[uint64]sample)
	}
	prev, seen := s.prev[cgroupID]
	s.prev[cgroupID] = sample{at: at, c: c}
	if !seen || !at.After(prev.at) || wentBackwards(c, prev.c) {
		return Rates{}, false
	}
	return ratesOf(c.Sub(prev.c), at.Sub(prev.at)), true
}

// Forget drops the state kept for cgroupID.
func (s *Sampler) Forget(cgroupID uint64) {
	delete(s.prev, cgroupID)
}

func wentBackwards(c, prev Counters) bool {
	return c.Syscalls < prev.Syscalls || c.SyscallErrors < prev.SyscallErrors ||
		c.RxBytes < prev.RxBytes || c.TxBytes < prev.TxBytes ||
		c.RxPackets < prev.RxPackets || c.TxPackets < prev.TxPackets ||
		c.Retransmits < prev.Retransmits || c.Resets < prev.Resets
}

func ratesOf(d Counters, interval time.Duration) Rates {
	sec := interval.Seconds()
	r := Rates{
		Interval:          interval,
		SyscallsPerSec:    float64(d.Syscalls) / sec,
		ErrorsPerSec:      float64(d.SyscallErrors) / sec,
		LatencySamples:    d.LatencySamples(),
		P50:               d.LatencyQuantile(0.50),
		RxBytesPerSec:     float64(d.RxBytes) / sec,
		TxBytesPerSec:     float64(d.TxBytes) / sec,
		RxPacketsPerSec:   float64(d.RxPackets) / sec,
		TxPacketsPerSec:   float64(d.TxPackets) / sec,
		RetransmitsPerSec: float64(d.Retransmits) / sec,
		ResetsPerSec:      float64(d.Resets) / sec,
	}
	if r.LatencySamples >= minP99Samples {
		r.P99 = d.LatencyQuantile(0.99)
	}
	if d.Syscalls > 0 {
		r.ErrorRatio = float64(d.SyscallErrors) / float64(d.Syscalls)
	}
	return r
}
