package supervisor

import (
	"sync"
	"time"
)

// Stall detection: a call that runs stallFactor times longer than the
// pool's typical latency (an EWMA of successful calls), with an agent that
// neither runs nor used CPU over a further stallConfirm, is a hang. It is
// armed only once the pool has a track record, never below stallFloor, and
// never beyond the contract's deadline. The floor is low because the
// second look tells a starved or bursty agent from a stuck one; it was
// 100 ms when the instantaneous process state was the only evidence.
const (
	stallFactor  = 10
	stallFloor   = 50 * time.Millisecond
	stallConfirm = 15 * time.Millisecond
	stallWarmup  = 20 // successful calls before the typical latency is trusted
	latencyAlpha = 0.05
)

type latencyTracker struct {
	mu    sync.Mutex
	ewma  float64 // seconds
	count int
	total time.Duration // of all count calls: the mean over any span is Δtotal/Δcount
}

func (l *latencyTracker) observe(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := d.Seconds()
	if l.count == 0 {
		l.ewma = s
	} else {
		l.ewma += latencyAlpha * (s - l.ewma)
	}
	l.count++
	l.total += d
}

// sum is the number of successful calls observed and their total latency.
func (l *latencyTracker) sum() (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.total
}

func (l *latencyTracker) typical() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.ewma * float64(time.Second))
}

// stallTimeout is the configured stall timeout, or (when 0) the adaptive
// one; deadline when there is no track record yet.
func (l *latencyTracker) stallTimeout(configured, deadline time.Duration) time.Duration {
	if configured > 0 {
		return min(configured, deadline)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count < stallWarmup {
		return deadline
	}
	t := time.Duration(l.ewma * stallFactor * float64(time.Second))
	return min(max(t, stallFloor), deadline)
}
