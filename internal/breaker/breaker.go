package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is the state of a circuit breaker.
type State uint8

// Breaker states.
const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// MarshalText writes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Defaults for zero Config fields.
const (
	DefaultWindow       = 10 * time.Second
	DefaultMinCalls     = 20
	DefaultFailureRatio = 0.5
	DefaultOpenFor      = 5 * time.Second
	DefaultMaxOpenFor   = time.Minute
	// DefaultStartStreak: eight agents in a row that fail their first
	// call. An agent that hallucinates 30 % of the time does so eight
	// times in a row once in 15,000 starts; one whose upstream is down,
	// every time.
	DefaultStartStreak = 8
)

// buckets is the resolution of the sliding window: the window moves in
// steps of Window/buckets.
const buckets = 10

// Config configures a [Breaker]. Zero fields take the defaults above.
type Config struct {
	// Window is the sliding time window over which calls are counted.
	Window time.Duration
	// MinCalls is the number of calls in the window below which the
	// failure ratio never trips the breaker.
	MinCalls int
	// FailureRatio in (0, 1]: the breaker trips when at least this share of
	// the calls in the window failed after their retries.
	FailureRatio float64
	// OpenFor is the first cool-down: how long the breaker stays open
	// before it lets one probe call through (half-open).
	OpenFor time.Duration
	// MaxOpenFor bounds the cool-down, which doubles each time a probe
	// fails.
	MaxOpenFor time.Duration
	// StartStreak is the number of new agents in a row whose first call
	// failed that trips the breaker.
	StartStreak int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Snapshot is a breaker's state and the counts in its window.
type Snapshot struct {
	State     State
	Calls     int
	Failures  int
	OpenUntil time.Time // zero unless open
}

// Breaker is a circuit breaker for one pool; see the package documentation.
// A Breaker is safe for concurrent use.
type Breaker struct {
	name     string
	cfg      Config
	onChange func(from, to State)

	mu         sync.Mutex
	state      State
	generation uint64 // bumped on every transition; stale outcomes are ignored
	buckets    [buckets]bucket
	epoch      time.Time
	openFor    time.Duration // the current cool-down
	openUntil  time.Time
	trip       OpenError // why it opened
	probeSince time.Time // zero when no probe is in flight
	streak     int       // new agents in a row whose first call failed
	lastCause  string
}

type bucket struct {
	index     int64 // absolute bucket number since epoch
	successes int
	failures  int
}

// New returns a closed breaker for the pool name. onChange, if not nil, is
// called after every state transition, outside the breaker's lock.
func New(name string, cfg Config, onChange func(from, to State)) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MinCalls <= 0 {
		cfg.MinCalls = DefaultMinCalls
	}
	if cfg.FailureRatio <= 0 {
		cfg.FailureRatio = DefaultFailureRatio
	}
	cfg.FailureRatio = min(cfg.FailureRatio, 1)
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = DefaultOpenFor
	}
	if cfg.MaxOpenFor <= 0 {
		cfg.MaxOpenFor = DefaultMaxOpenFor
	}
	cfg.MaxOpenFor = max(cfg.MaxOpenFor, cfg.OpenFor)
	if cfg.StartStreak <= 0 {
		cfg.StartStreak = DefaultStartStreak
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Breaker{name: name, cfg: cfg, onChange: onChange, state: Closed, openFor: cfg.OpenFor}
	b.epoch = cfg.Now()
	b.resetWindow()
	return b
}

// Name returns the pool name the breaker was created with.
func (b *Breaker) Name() string { return b.name }

// Call is one call the breaker let through. Exactly one of its methods
// must be called when the call ends; later ones are ignored, as are
// outcomes of calls allowed before a state transition.
type Call struct {
	b     *Breaker
	gen   uint64
	ended atomic.Bool
}

// Succeeded reports that the call succeeded (perhaps after retries).
func (c *Call) Succeeded() { c.end(true, true, "") }

// Failed reports that the call failed after its retries; cause says why
// and is quoted to the callers refused while the breaker is open.
func (c *Call) Failed(cause string) { c.end(true, false, cause) }

// Abandoned reports a call that says nothing about the pool's health (its
// caller gave up, the input was bad): it is not counted, and a half-open
// probe's turn passes to the next call.
func (c *Call) Abandoned() { c.end(false, false, "") }

func (c *Call) end(counted, success bool, cause string) {
	if c == nil || c.ended.Swap(true) {
		return
	}
	c.b.record(c.gen, counted, success, cause)
}

// Allow asks to make one call. When the call may go ahead it returns a
// [*Call] whose outcome must be reported. Otherwise it returns an
// [*OpenError] wrapping [ErrOpen].
func (b *Breaker) Allow() (*Call, error) {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)

	switch b.state {
	case Open:
		e := b.trip
		e.RetryIn = b.openUntil.Sub(now)
		b.mu.Unlock()
		b.notify(changes)
		return nil, &e
	case HalfOpen:
		// A probe whose outcome never came back must not wedge the
		// breaker: after the cool-down another probe may go.
		if !b.probeSince.IsZero() && now.Sub(b.probeSince) < b.openFor {
			e := OpenError{Pool: b.name, ProbeInFlight: true, Cause: b.lastCause, RetryIn: b.probeSince.Add(b.openFor).Sub(now)}
			b.mu.Unlock()
			b.notify(changes)
			return nil, &e
		}
		b.probeSince = now
	}
	c := &Call{b: b, gen: b.generation}
	b.mu.Unlock()
	b.notify(changes)
	return c, nil
}

// Refusal returns the error [Breaker.Allow] gives a new call while the
// breaker is open, or nil. Unlike Allow it takes no half-open probe's
// turn: a call under way asks it before a retry, which could only wait
// for the agents that an open breaker does not start.
func (b *Breaker) Refusal() error {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)
	var err error
	if b.state == Open {
		e := b.trip
		e.RetryIn = b.openUntil.Sub(now)
		err = &e
	}
	b.mu.Unlock()
	b.notify(changes)
	return err
}

// FirstCall reports the outcome of a new agent's first call (nil: it
// succeeded). Agents in a row that fail their first call trip a closed
// breaker: every agent the pool starts is broken.
func (b *Breaker) FirstCall(err error) {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)
	if err == nil {
		b.streak = 0
	} else {
		b.streak++
		b.lastCause = err.Error()
		if b.state == Closed && b.streak >= b.cfg.StartStreak {
			b.trip = OpenError{Pool: b.name, StartFailures: b.streak, Cause: b.lastCause}
			b.setState(Open, now, &changes)
		}
	}
	b.mu.Unlock()
	b.notify(changes)
}

// State returns the current state.
func (b *Breaker) State() State { return b.Snapshot().State }

// OpenUntil returns when an open breaker lets its next probe through, or
// the zero time when it is not open. The supervisor starts no agents
// until then.
func (b *Breaker) OpenUntil() time.Time { return b.Snapshot().OpenUntil }

// Snapshot returns the current state and the counts in the window.
func (b *Breaker) Snapshot() Snapshot {
	b.mu.Lock()
	var changes []transition
	now := b.cfg.Now()
	b.advance(now, &changes)
	calls, failures := b.counts(now)
	snap := Snapshot{State: b.state, Calls: calls, Failures: failures}
	if b.state == Open {
		snap.OpenUntil = b.openUntil
	}
	b.mu.Unlock()
	b.notify(changes)
	return snap
}

type transition struct{ from, to State }

func (b *Breaker) record(gen uint64, counted, success bool, cause string) {
	b.mu.Lock()
	now := b.cfg.Now()
	var changes []transition
	b.advance(now, &changes)
	if !success && cause != "" {
		b.lastCause = cause
	}
	if gen != b.generation {
		b.mu.Unlock()
		b.notify(changes)
		return
	}
	switch b.state {
	case Closed:
		if !counted {
			break
		}
		bk := b.bucket(now)
		if success {
			bk.successes++
			break
		}
		bk.failures++
		calls, failures := b.counts(now)
		if calls >= b.cfg.MinCalls && float64(failures) >= b.cfg.FailureRatio*float64(calls) {
			b.trip = OpenError{Pool: b.name, Failures: failures, Calls: calls, Cause: b.lastCause}
			b.setState(Open, now, &changes)
		}
	case HalfOpen:
		switch {
		case !counted:
			b.probeSince = time.Time{} // the next call probes
		case success:
			b.setState(Closed, now, &changes)
		default:
			b.trip = OpenError{Pool: b.name, ProbeFailed: true, Cause: b.lastCause}
			b.openFor = min(2*b.openFor, b.cfg.MaxOpenFor)
			b.setState(Open, now, &changes)
		}
	}
	b.mu.Unlock()
	b.notify(changes)
}

// advance moves an open breaker whose time is up to half-open.
func (b *Breaker) advance(now time.Time, changes *[]transition) {
	if b.state == Open && !now.Before(b.openUntil) {
		b.setState(HalfOpen, now, changes)
	}
}

func (b *Breaker) setState(to State, now time.Time, changes *[]transition) {
	from := b.state
	b.state = to
	b.generation++
	b.probeSince = time.Time{}
	switch to {
	case Open:
		b.openUntil = now.Add(b.openFor)
	case Closed:
		b.resetWindow()
		b.openFor = b.cfg.OpenFor
		b.streak = 0
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
		b.buckets[i] = bucket{index: -buckets}
	}
}

func (b *Breaker) bucketIndex(now time.Time) int64 {
	width := b.cfg.Window / buckets
	if width <= 0 {
		width = 1
	}
	return int64(now.Sub(b.epoch) / width)
}

func (b *Breaker) bucket(now time.Time) *bucket {
	idx := b.bucketIndex(now)
	bk := &b.buckets[((idx%buckets)+buckets)%buckets]
	if bk.index != idx {
		*bk = bucket{index: idx}
	}
	return bk
}

// counts sums the buckets inside the window ending now.
func (b *Breaker) counts(now time.Time) (calls, failures int) {
	cur := b.bucketIndex(now)
	for _, bk := range b.buckets {
		if bk.index > cur-buckets && bk.index <= cur {
			calls += bk.successes + bk.failures
			failures += bk.failures
		}
	}
	return calls, failures
}
