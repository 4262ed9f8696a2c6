package supervisor

import (
	"sync/atomic"
	"time"
)

// schedWatch measures the daemon's own scheduling delay, so that liveness
// checks can tell an agent that did not answer from a daemon that did not
// get to look: a ticker that fires late means the daemon's goroutines
// waited for a CPU (the node is overloaded, or the daemon is throttled),
// and a missed ping or a stalled call decided meanwhile is no evidence
// against the agent.
//
// It ticks only while a liveness check is in flight (a call's attempt, a
// ping) and for one period after: those are the only ones who ask, and an
// idle node's ten wake-ups a second were a tenth of its idle cost.
type schedWatch struct {
	lastTick atomic.Int64 // unix nanos of the last tick seen
	lateAt   atomic.Int64 // unix nanos of the last tick seen late
	maxLate  atomic.Int64 // the largest lateness seen, nanos (for the log)

	holds  atomic.Int64  // liveness checks in flight
	used   atomic.Bool   // a hold found none since the last tick
	kickAt atomic.Int64  // unix nanos of the last hold that found none
	wake   chan struct{} // kicks a stopped watch; cap 1

	// forced, in tests, reports starvation regardless.
	forced atomic.Bool
}

const (
	schedPeriod = 100 * time.Millisecond
	// schedLate is the lateness of a tick that counts as starvation: far
	// above a loaded but healthy node's wake-up jitter (tens of µs to a
	// few ms), far below the liveness timeouts it protects (ping_timeout
	// 500 ms, stall periods of hundreds of ms).
	schedLate = 50 * time.Millisecond
)

// hold keeps the watch ticking until release: a liveness check that may
// ask starvedWithin holds it for its whole life, so the watch has seen
// every moment the check may ask about.
func (w *schedWatch) hold() {
	// Every call holds it: past the one atomic add, only a hold that
	// finds none writes more (a busy node's holds overlap).
	if w.holds.Add(1) == 1 {
		w.used.Store(true)
		w.kickAt.Store(time.Now().UnixNano())
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *schedWatch) release() { w.holds.Add(-1) }

func (w *schedWatch) run(quit <-chan struct{}) {
	t := time.NewTicker(schedPeriod)
	defer t.Stop()
	prev := time.Now()
	w.lastTick.Store(prev.UnixNano())
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		now := time.Now()
		// A ticker drops ticks for a slow receiver: the gap is what counts.
		if late := now.Sub(prev) - schedPeriod; late > schedLate {
			w.lateAt.Store(now.UnixNano())
			if int64(late) > w.maxLate.Load() {
				w.maxLate.Store(int64(late))
			}
		}
		prev = now
		w.lastTick.Store(now.UnixNano())
		if w.holds.Load() > 0 || w.used.Swap(false) {
			continue
		}
		// Nobody asks: stop until someone holds the watch again. A kick
		// left from while it ran goes first, then holds is looked at
		// again: a hold after that look kicks the wait below.
		t.Stop()
		select {
		case <-w.wake:
		default:
		}
		if w.holds.Load() > 0 {
			t.Reset(schedPeriod)
			continue
		}
		select {
		case <-quit:
			return
		case <-w.wake:
		}
		prev = time.Now()
		// Woken late, the watch was starved since the hold that kicked
		// it, while the check it protects already ran.
		if late := prev.UnixNano() - w.kickAt.Load(); late > int64(schedLate) {
			w.lateAt.Store(prev.UnixNano())
			if late > w.maxLate.Load() {
				w.maxLate.Store(late)
			}
		}
		w.lastTick.Store(prev.UnixNano())
		t.Reset(schedPeriod)
	}
}

// starvedWithin reports whether the daemon was short of CPU at some time in
// the last d, or is now (its ticker is overdue). The caller holds the
// watch: a watch that is not ticking reads as overdue.
func (w *schedWatch) starvedWithin(d time.Duration) bool {
	if w.forced.Load() {
		return true
	}
	now := time.Now().UnixNano()
	if last := w.lastTick.Load(); last != 0 && now-last > int64(schedPeriod+schedLate) {
		return true
	}
	at := w.lateAt.Load()
	return at != 0 && now-at <= int64(d+schedPeriod)
}
