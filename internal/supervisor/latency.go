package supervisor

import (
	"math"
	"sync"
	"time"
)

// Stall detection: a call is a hang once it runs past the pool's stall
// timeout, computed as TCP computes its retransmission timeout (RFC 6298):
// the typical latency plus stallDevs times its mean deviation, at least
// stallRatio times the typical latency and stallFloor; and its agent then
// neither runs nor uses CPU over a second look stallConfirm later. It is
// armed only once the pool has a track record, and never beyond the
// contract's deadline.
//
// The deviation, not a multiple of the mean, sets the margin: a pool whose
// calls all take 8 ms is hung at 50 ms, one whose calls take 1 to 5 s
// only after many seconds. Load that slows every call moves the mean, not
// the margin; and a starved or bursty agent is told from a stuck one by
// the second look, not by a wide margin.
const (
	stallDevs    = 4
	stallRatio   = 2
	stallFloor   = 50 * time.Millisecond
	stallConfirm = 15 * time.Millisecond
	stallWarmup  = 20 // successful calls before the typical latency is trusted
	// An agent that has not served a call yet gets coldStallRatio times
	// the stall timeout, at least coldStallFloor.
	coldStallRatio = 10
	coldStallFloor = time.Second
	latencyAlpha   = 0.05
	latencyBeta    = 0.1 // the deviation's gain
)

type latencyTracker struct {
	mu    sync.Mutex
	ewma  float64 // seconds
	dev   float64 // mean deviation from ewma, seconds
	count int
	total time.Duration // of all count calls: the mean over any span is Δtotal/Δcount
}

func (l *latencyTracker) observe(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := d.Seconds()
	if l.count == 0 {
		l.ewma, l.dev = s, s/2
	} else {
		l.dev += latencyBeta * (math.Abs(s-l.ewma) - l.dev)
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
	t := time.Duration(max(l.ewma+stallDevs*l.dev, stallRatio*l.ewma) * float64(time.Second))
	return min(max(t, stallFloor), deadline)
}
