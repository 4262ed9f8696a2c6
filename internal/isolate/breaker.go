package isolate

import (
	"fmt"
	"sync"
	"time"
)

// This is not a wrapper around sony/gobreaker/v2, although its model fits
// (Interval + BucketPeriod is a sliding window, ReadyToTrip sees Counts,
// Timeout is open_for, one half-open probe): gobreaker reads time.Now
// directly, so its windows and timeouts cannot be driven by an injected clock
// in tests, and it does not expose when the open state ends, which the error
// a caller sees ("retrying in 3s") needs. What remains is small enough to own.

// BreakerState is the state of a circuit breaker.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// Defaults for zero BreakerConfig fields.
const (
	DefaultBreakerWindow       = 10 * time.Second
	DefaultBreakerMinCalls     = 20
	DefaultBreakerFailureRatio = 0.5
	DefaultBreakerOpenFor      = 5 * time.Second
)

// breakerBuckets is the resolution of the sliding window: the window moves
// in steps of Window/breakerBuckets.
const breakerBuckets = 10

// BreakerConfig configures a [Breaker]. Zero fields take the defaults above.
type BreakerConfig struct {
	// Window is the sliding time window over which calls are counted.
	Window time.Duration
	// MinCalls is the number of calls in the window below which the
	// breaker never trips.
	MinCalls int
	// FailureRatio in (0, 1]: the breaker trips when at least this share of
	// the calls in the window failed.
	FailureRatio float64
	// OpenFor is how long the breaker stays open before it lets one probe
	// call through (half-open).
	OpenFor time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// OpenError is the error [Breaker.Allow] returns while calls are refused. It
// unwraps to [ErrOpen].
type OpenError struct {
	Pool string
	// Failures and Calls are the counts in the window when the breaker
	// tripped; zero after a failed half-open probe.
	Failures, Calls int
	// ProbeFailed is set when the breaker reopened because its half-open
	// probe failed.
	ProbeFailed bool
	// ProbeInFlight is set when the breaker is half-open and its one probe
	// call has not finished.
	ProbeInFlight bool
	// RetryIn is how long until the next probe is allowed.
	RetryIn time.Duration
}

func (e *OpenError) Error() string {
	retry := formatRetry(e.RetryIn)
	switch {
	case e.ProbeInFlight:
		return fmt.Sprintf("pool %s: circuit half-open, probe call in flight; retrying in %s", e.Pool, retry)
	case e.ProbeFailed:
		return fmt.Sprintf("pool %s: circuit open after the half-open probe failed; retrying in %s", e.Pool, retry)
	default:
		return fmt.Sprintf("pool %s: circuit open after %d of %d calls failed; retrying in %s", e.Pool, e.Failures, e.Calls, retry)
	}
}

func (e *OpenError) Unwrap() error { return ErrOpen }

// formatRetry rounds a wait for people: 3s, 2.5s, 250ms.
func formatRetry(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return max(d.Round(time.Millisecond), time.Millisecond).String()
	}
}

// BreakerSnapshot is a breaker's state and the counts in its window.
type BreakerSnapshot struct {
	State     BreakerState
	Calls     int
	Failures  int
	OpenUntil time.Time // zero unless open
}

// Breaker is a circuit breaker for one pool. Closed, it counts the outcomes
// of calls over a sliding window and opens when the window holds at least
// MinCalls calls of which at least FailureRatio failed. Open, it refuses
// calls for OpenFor, then becomes half-open and lets one probe call through:
// success closes it (with an empty window), failure opens it again.
//
// A Breaker is safe for concurrent use.
type Breaker struct {
	name     string
	cfg      BreakerConfig
	onChange func(from, to BreakerState)

	mu         sync.Mutex
	state      BreakerState
	generation uint64 // bumped on every transition; stale outcomes are ignored
	buckets    [breakerBuckets]breakerBucket
	epoch      time.Time
	openUntil  time.Time
	trip       OpenError // why it opened
	probeSince time.Time // zero when no probe is in flight
}

type breakerBucket struct {
	index     int64 // absolute bucket number since epoch
	successes int
	failures  int
}

// NewBreaker returns a closed breaker for the pool name. onChange, if not
// nil, is called after every state transition, outside the breaker's lock.
func NewBreaker(name string, cfg BreakerConfig, onChange func(from, to BreakerState)) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = DefaultBreakerWindow
	}
	if cfg.MinCalls <= 0 {
		cfg.MinCalls = DefaultBreakerMinCalls
	}
	if cfg.FailureRatio <= 0 {
		cfg.FailureRatio = DefaultBreakerFailureRatio
	}
	cfg.FailureRatio = min(cfg.FailureRatio, 1)
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = DefaultBreakerOpenFor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Breaker{name: name, cfg: cfg, onChange: onChange, state: BreakerClosed}
	b.epoch = cfg.Now()
	b.resetWindow()
	return b
}

// Name returns the pool name the breaker was created with.
func (b *Breaker) Name() string { return b.name }

// Allow asks to make one call. When the call may go ahead it returns done,
// which must be called exactly once with the call's outcome (later calls are
// ignored, as are outcomes of calls allowed before a state transition).
// Otherwise it returns an [*OpenError] wrapping [ErrOpen].
func (b *Breaker) Allow() (done func(success bool), err error) {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)

	switch b.state {
	case BreakerOpen:
		e := b.trip
		e.RetryIn = b.openUntil.Sub(now)
		b.mu.Unlock()
		b.notify(changes)
		return nil, &e
	case BreakerHalfOpen:
		// A probe whose outcome never came back (its caller forgot done)
		// must not wedge the breaker: after OpenFor another probe may go.
		if !b.probeSince.IsZero() && now.Sub(b.probeSince) < b.cfg.OpenFor {
			e := OpenError{Pool: b.name, ProbeInFlight: true, RetryIn: b.probeSince.Add(b.cfg.OpenFor).Sub(now)}
			b.mu.Unlock()
			b.notify(changes)
			return nil, &e
		}
		b.probeSince = now
	}
	gen := b.generation
	b.mu.Unlock()
	b.notify(changes)

	var once sync.Once
	return func(success bool) {
		once.Do(func() { b.record(gen, success) })
	}, nil
}

// State returns the current state.
func (b *Breaker) State() BreakerState {
	return b.Snapshot().State
}

// Snapshot returns the current state and the counts in the window.
func (b *Breaker) Snapshot() BreakerSnapshot {
	b.mu.Lock()
	var changes []transition
	now := b.cfg.Now()
	b.advance(now, &changes)
	calls, failures := b.counts(now)
	snap := BreakerSnapshot{State: b.state, Calls: calls, Failures: failures}
	if b.state == BreakerOpen {
		snap.OpenUntil = b.openUntil
	}
	b.mu.Unlock()
	b.notify(changes)
	return snap
}

type transition struct{ from, to BreakerState }

func (b *Breaker) record(gen uint64, success bool) {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)
	if gen != b.generation {
		b.mu.Unlock()
		b.notify(changes)
		return
	}
	switch b.state {
	case BreakerClosed:
		bk := b.bucket(now)
		if success {
			bk.successes++
		} else {
			bk.failures++
			calls, failures := b.counts(now)
			if calls >= b.cfg.MinCalls && float64(failures) >= b.cfg.FailureRatio*float64(calls) {
				b.trip = OpenError{Pool: b.name, Failures: failures, Calls: calls}
				b.setState(BreakerOpen, now, &changes)
			}
		}
	case BreakerHalfOpen:
		if success {
			b.setState(BreakerClosed, now, &changes)
		} else {
			b.trip = OpenError{Pool: b.name, ProbeFailed: true}
			b.setState(BreakerOpen, now, &changes)
		}
	}
	b.mu.Unlock()
	b.notify(changes)
}

// advance moves an open breaker whose time is up to half-open.
func (b *Breaker) advance(now time.Time, changes *[]transition) {
	if b.state == BreakerOpen && !now.Before(b.openUntil) {
		b.setState(BreakerHalfOpen, now, changes)
	}
}

func (b *Breaker) setState(to BreakerState, now time.Time, changes *[]transition) {
	from := b.state
	b.state = to
	b.generation++
	b.probeSince = time.Time{}
	switch to {
	case BreakerOpen:
		b.openUntil = now.Add(b.cfg.OpenFor)
	case BreakerClosed:
		b.resetWindow()
	}
	*changes = append(*changes, transition{from, to})
}

func (b *Breaker) notify(changes []transition) {
	if b.onChange == nil {
		return
	}
	for _, c := range changes {
		b.onChange(c.from, c.to)
	}
}

func (b *Breaker) resetWindow() {
	for i := range b.buckets {
		b.buckets[i] = breakerBucket{index: -breakerBuckets}
	}
}

func (b *Breaker) bucketIndex(now time.Time) int64 {
	width := b.cfg.Window / breakerBuckets
	if width <= 0 {
		width = 1
	}
	return int64(now.Sub(b.epoch) / width)
}

func (b *Breaker) bucket(now time.Time) *breakerBucket {
	idx := b.bucketIndex(now)
	bk := &b.buckets[((idx%breakerBuckets)+breakerBuckets)%breakerBuckets]
	if bk.index != idx {
		*bk = breakerBucket{index: idx}
	}
	return bk
}

// counts sums the buckets inside the window ending now.
func (b *Breaker) counts(now time.Time) (calls, failures int) {
	cur := b.bucketIndex(now)
	for _, bk := range b.buckets {
		if bk.index > cur-breakerBuckets && bk.index <= cur {
			calls += bk.successes + bk.failures
			failures += bk.failures
		}
	}
	return calls, failures
}
