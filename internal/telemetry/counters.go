package telemetry

import (
	"math"
	"time"
)

// HistBuckets is the number of log2 latency buckets in [Counters.LatencyHist].
const HistBuckets = 32

// Counters are a watched cgroup's totals since Watch. They only grow.
type Counters struct {
	Syscalls      uint64
	SyscallErrors uint64 // syscalls that returned -errno
	// LatencyHist[i] counts timed syscalls that took [2^i, 2^(i+1)) ns,
	// from sys_enter to sys_exit; bucket 0 also holds 0 ns and the last
	// bucket everything longer than 2^31 ns. Probes time a pseudo-random
	// sample of about one syscall in 16 of each task (Syscalls and
	// SyscallErrors count every one), so the histogram sums to about
	// Syscalls/16: its quantiles estimate the latency of all syscalls.
	LatencyHist [HistBuckets]uint64

	// Network counters need Watch with the cgroup's path. They count every
	// packet of the cgroup's sockets, also those another cgroup_skb program
	// (the Kill Switch) then drops.
	RxBytes, TxBytes     uint64 // IP packet lengths, as seen by cgroup_skb
	RxPackets, TxPackets uint64
	Retransmits          uint64 // TCP segments retransmitted by the cgroup's sockets
	Resets               uint64 // TCP resets sent or received by the cgroup's sockets
}

// LatencySamples returns the number of syscalls in the latency histogram.
func (c Counters) LatencySamples() uint64 {
	var total uint64
	for _, n := range c.LatencyHist {
		total += n
	}
	return total
}

// Sub returns c minus prev, field by field: the activity between two reads.
func (c Counters) Sub(prev Counters) Counters {
	d := Counters{
		Syscalls:      c.Syscalls - prev.Syscalls,
		SyscallErrors: c.SyscallErrors - prev.SyscallErrors,
		RxBytes:       c.RxBytes - prev.RxBytes,
		TxBytes:       c.TxBytes - prev.TxBytes,
		RxPackets:     c.RxPackets - prev.RxPackets,
		TxPackets:     c.TxPackets - prev.TxPackets,
		Retransmits:   c.Retransmits - prev.Retransmits,
		Resets:        c.Resets - prev.Resets,
	}
	for i := range d.LatencyHist {
		d.LatencyHist[i] = c.LatencyHist[i] - prev.LatencyHist[i]
	}
	return d
}

// LatencyQuantile estimates the q-quantile (0 ≤ q ≤ 1) of syscall latency
// from the histogram, interpolating linearly inside the bucket that holds it.
// It returns 0 when the histogram is empty.
func (c Counters) LatencyQuantile(q float64) time.Duration {
	total := c.LatencySamples()
	if total == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(total)
	var seen uint64
	for i, n := range c.LatencyHist {
		if n == 0 {
			continue
		}
		if float64(seen+n) >= rank {
			lo, hi := bucketBounds(i)
			frac := (rank - float64(seen)) / float64(n)
			return time.Duration(lo + frac*(hi-lo))
		}
		seen += n
	}
	_, hi := bucketBounds(HistBuckets - 1)
	return time.Duration(hi)
}

// bucketBounds returns the latency range of bucket i in nanoseconds.
func bucketBounds(i int) (lo, hi float64) {
	if i == 0 {
		return 0, 2
	}
	return math.Ldexp(1, i), math.Ldexp(1, i+1)
}

// EventKind says what happened to a process.
type EventKind string

const (
	// EventExit: a process exited. From Linux 6.16 the event comes from the
	// last thread of the process; before, from the thread-group leader, which
	// is the same except for a leader that leaves with pthread_exit while
	// other threads go on.
	EventExit EventKind = "exit"
	// EventOOM: the OOM killer chose the process as its victim. An
	// EventExit with Signal SIGKILL follows when it dies.
	EventOOM EventKind = "oom"
)

// Event is a process exit or OOM kill in a watched cgroup.
type Event struct {
	Kind     EventKind
	CgroupID uint64
	PID      int // thread group id
	// ExitCode is the status the process passed to exit(2); it is 0 when
	// the process was killed by a signal.
	ExitCode int
	// Signal is the signal that killed the process, or 0. OOM events carry
	// SIGKILL, the signal the OOM killer sends.
	Signal     int
	CoreDumped bool
	// Time is when the kernel saw it, converted from CLOCK_MONOTONIC to wall
	// clock time when the event was read.
	Time time.Time
}
