package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// loadGen makes calls on the experiment's pool at a steady rate, counts
// them, and keeps their timings: the baseline latency, the latency a
// latency fault leaves callers with, and whether calls fail.
type loadGen struct {
	x        *experiment
	rate     float64
	quit     chan struct{}
	done     chan struct{}
	inflight sync.WaitGroup

	mu       sync.Mutex
	recent   recentCalls // the latest calls, for baselines and windows
	hist     latencyHist // every successful call's latency
	c        Calls
	baseline *Summary
	waiters  []servedWaiter
}

// servedWaiter wants the end of the first successful call that ends at or
// after after.
type servedWaiter struct {
	after time.Time
	ch    chan<- time.Time
}

type callRec struct {
	start, end time.Time
	ok         bool
}

// maxRecs bounds the memory the timings take (~40 MB).
// recentCalls is a ring of the latest calls, sized to hold recentSpan of
// them at the load's rate (within [1<<12, 1<<16]): the windows judged from
// it (a baseline after the warmup, a latency fault's recovery window) are
// seconds long, and the ring's memory is fixed from the start.
type recentCalls struct {
	recs []keptCall
	next int // where the next call goes once the ring is full
}

// keptCall is a callRec in 24 bytes rather than 56.
type keptCall struct {
	start int64 // Unix nanoseconds
	took  time.Duration
	ok    bool
}

const recentSpan = 5 * time.Minute

func newRecentCalls(rate float64) recentCalls {
	n := min(max(int(rate*recentSpan.Seconds()), 1<<12), 1<<16)
	return recentCalls{recs: make([]keptCall, 0, n)}
}

func (r *recentCalls) add(rec callRec) {
	c := keptCall{start: rec.start.UnixNano(), took: rec.end.Sub(rec.start), ok: rec.ok}
	if len(r.recs) < cap(r.recs) {
		r.recs = append(r.recs, c)
		return
	}
	r.recs[r.next] = c
	r.next = (r.next + 1) % len(r.recs)
}

// each calls f for the calls kept, oldest first.
func (r *recentCalls) each(f func(callRec)) {
	call := func(c keptCall) {
		start := time.Unix(0, c.start)
		f(callRec{start: start, end: start.Add(c.took), ok: c.ok})
	}
	for _, c := range r.recs[r.next:] {
		call(c)
	}
	for _, c := range r.recs[:r.next] {
		call(c)
	}
}

// maxInFlight bounds the calls the load has in flight; beyond it the rate
// drops rather than piling up goroutines behind a stuck pool.
const maxInFlight = 512

func startLoad(x *experiment, rate float64) *loadGen {
	l := &loadGen{x: x, rate: rate, quit: make(chan struct{}), done: make(chan struct{}), recent: newRecentCalls(rate)}
	go l.run()
	return l
}

func (l *loadGen) run() {
	defer close(l.done)
	interval := time.Duration(float64(time.Second) / l.rate)
	slots := make(chan struct{}, maxInFlight)
	next := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(next) > 100*time.Millisecond {
			next = now // fell behind (a stuck pool): do not burst to catch up
		}
		for !next.After(now) {
			select {
			case slots <- struct{}{}:
			case <-l.quit:
				return
			}
			l.inflight.Add(1)
			go func() {
				defer l.inflight.Done()
				defer func() { <-slots }()
				l.one()
			}()
			next = next.Add(interval)
		}
		t.Reset(time.Until(next))
	}
}

func (l *loadGen) one() {
	start := l.x.now()
	res, err := l.x.call(context.Background(), 10*time.Second)
	end := l.x.now()
	l.mu.Lock()
	countCall(&l.c, res, err)
	l.recent.add(callRec{start: start, end: end, ok: err == nil})
	if err == nil {
		l.hist.add(ms(end.Sub(start)))
	}
	if err == nil && len(l.waiters) > 0 {
		keep := l.waiters[:0]
		for _, w := range l.waiters {
			if end.Before(w.after) {
				keep = append(keep, w)
				continue
			}
			select {
			case w.ch <- end:
			default:
			}
		}
		l.waiters = keep
	}
	failed := l.c.Failed
	l.mu.Unlock()
	if bound := l.x.spec.AbortAfterFailures; err != nil && bound >= 0 && failed > bound {
		l.x.abort(fmt.Errorf("%d calls failed, beyond the bound of %d (abort_after_failures)", failed, bound))
	}
}

// notify sends on ch the end of the first successful call that ends at or
// after t.
func (l *loadGen) notify(t time.Time, ch chan<- time.Time) {
	l.mu.Lock()
	l.waiters = append(l.waiters, servedWaiter{after: t, ch: ch})
	l.mu.Unlock()
}

// stop stops making calls and waits for those in flight.
func (l *loadGen) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
	l.inflight.Wait()
}

// latency summarizes the successful calls that started in [from, to), of
// those still kept (see recentCalls); a zero from means from the oldest.
// It also becomes the baseline the first time it is asked.
func (l *loadGen) latency(from, to time.Time) *Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var xs []float64
	l.recent.each(func(r callRec) {
		if r.ok && !r.start.Before(from) && r.start.Before(to) {
			xs = append(xs, ms(r.end.Sub(r.start)))
		}
	})
	s := Summarize(xs)
	if l.baseline == nil {
		l.baseline = s
	}
	return s
}

// since returns the calls kept that started at or after t.
func (l *loadGen) since(t time.Time) []callRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []callRec
	l.recent.each(func(r callRec) {
		if !r.start.Before(t) {
			out = append(out, r)
		}
	})
	return out
}

// slowThreshold is the latency above which a call was slower than normal:
// three times the baseline p99 and at least 10 ms more than it.
func (l *loadGen) slowThreshold() time.Duration {
	l.mu.Lock()
	b := l.baseline
	l.mu.Unlock()
	if b == nil {
		return 50 * time.Millisecond
	}
	p99 := time.Duration(b.P99 * float64(time.Millisecond))
	return max(3*p99, p99+10*time.Millisecond)
}

// calls returns the counts and the latency of every call made.
func (l *loadGen) calls() Calls {
	l.mu.Lock()
	c := l.c
	c.Errors = append([]string(nil), l.c.Errors...)
	c.LatencyMS = l.hist.summary()
	l.mu.Unlock()
	return c
}
