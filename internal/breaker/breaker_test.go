package breaker

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestBreaker(cfg Config) (*Breaker, *fakeClock, *[]string) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	var changes []string
	b := New("web", cfg, func(from, to State) {
		changes = append(changes, from.String()+"→"+to.String())
	})
	return b, clock, &changes
}

func call(t *testing.T, b *Breaker, success bool) {
	t.Helper()
	c, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v (state %s)", err, b.State())
	}
	end(c, success)
}

func end(c *Call, success bool) {
	if success {
		c.Succeeded()
	} else {
		c.Failed("schema: missing answer")
	}
}

func TestBreakerTripsOnFailureRatioWithMinCalls(t *testing.T) {
	b, _, changes := newTestBreaker(Config{Window: 10 * time.Second, MinCalls: 20, FailureRatio: 1, OpenFor: 3 * time.Second})
	for range 19 {
		call(t, b, false)
	}
	if s := b.State(); s != Closed {
		t.Fatalf("state after 19 failures with MinCalls 20: %s", s)
	}
	call(t, b, false)
	if s := b.State(); s != Open {
		t.Fatalf("state after 20 of 20 failed: %s", s)
	}
	_, err := b.Allow()
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow while open: %v, want ErrOpen", err)
	}
	if want := "pool web: circuit open after 20 of 20 calls failed; retry in 3s; last cause: schema: missing answer"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.RetryIn != 3*time.Second {
		t.Fatalf("OpenError %+v", oe)
	}
	if !slices.Equal(*changes, []string{"closed→open"}) {
		t.Fatalf("transitions %v", *changes)
	}
}

func TestBreakerRatioBelowThresholdStaysClosed(t *testing.T) {
	b, _, _ := newTestBreaker(Config{Window: 10 * time.Second, MinCalls: 10, FailureRatio: 0.5, OpenFor: time.Second})
	for i := range 100 {
		call(t, b, i%3 != 0) // a third fail
	}
	if s := b.State(); s != Closed {
		t.Fatalf("state with 1/3 failures and ratio 0.5: %s", s)
	}
	// Failing calls push the ratio in the window over a half.
	for range 60 {
		if b.State() == Open {
			break
		}
		call(t, b, false)
	}
	snap := b.Snapshot()
	if snap.State != Open {
		t.Fatalf("never opened: %+v", snap)
	}
}

func TestBreakerWindowSlides(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: 10 * time.Second, MinCalls: 4, FailureRatio: 0.75, OpenFor: time.Second})
	for range 3 {
		call(t, b, false)
	}
	// The three failures age out of the window.
	clock.Advance(11 * time.Second)
	call(t, b, false)
	if s := b.Snapshot(); s.State != Closed || s.Calls != 1 {
		t.Fatalf("old failures still counted: %+v", s)
	}
	// Within one window: 3 failures of 4 calls trips at 0.75.
	clock.Advance(time.Second)
	call(t, b, true)
	call(t, b, false)
	clock.Advance(time.Second)
	call(t, b, false)
	if s := b.State(); s != Open {
		t.Fatalf("3 of 4 failed within the window, state %s", s)
	}
}

func TestHalfOpenProbe(t *testing.T) {
	b, clock, changes := newTestBreaker(Config{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: 3 * time.Second})
	call(t, b, false)
	call(t, b, false)
	if b.State() != Open {
		t.Fatal("not open")
	}
	clock.Advance(2 * time.Second)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) || err.Error() != "pool web: circuit open after 2 of 2 calls failed; retry in 1s; last cause: schema: missing answer" {
		t.Fatalf("Allow 1s before half-open: %v", err)
	}

	clock.Advance(time.Second)
	if s := b.State(); s != HalfOpen {
		t.Fatalf("state after OpenFor: %s", s)
	}
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second call while the probe is in flight: %v", err)
	}
	end(probe, false)
	if s := b.State(); s != Open {
		t.Fatalf("state after a failed probe: %s", s)
	}
	// The cool-down doubles after a failed probe.
	if _, err := b.Allow(); err == nil || err.Error() != "pool web: circuit open after the half-open probe failed; retry in 6s; last cause: schema: missing answer" {
		t.Fatalf("error after failed probe: %v", err)
	}

	clock.Advance(6 * time.Second)
	probe, err = b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	end(probe, true)
	end(probe, false) // a second outcome for one call is ignored
	if s := b.Snapshot(); s.State != Closed || s.Calls != 0 {
		t.Fatalf("after a good probe: %+v, want closed with an empty window", s)
	}
	want := []string{"closed→open", "open→half-open", "half-open→open", "open→half-open", "half-open→closed"}
	if !slices.Equal(*changes, want) {
		t.Fatalf("transitions %v, want %v", *changes, want)
	}
}

func TestBreakerIgnoresOutcomesFromBeforeATransition(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: time.Second})
	slow, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	call(t, b, false)
	call(t, b, false)
	clock.Advance(time.Second)
	probe, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	end(slow, false) // started while closed: must not decide the probe
	if s := b.State(); s != HalfOpen {
		t.Fatalf("a stale outcome moved the breaker to %s", s)
	}
	end(probe, true)
	if s := b.State(); s != Closed {
		t.Fatalf("state %s", s)
	}
}

func TestBreakerLostProbeDoesNotWedge(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: time.Minute, MinCalls: 1, FailureRatio: 1, OpenFor: time.Second})
	call(t, b, false)
	clock.Advance(time.Second)
	if _, err := b.Allow(); err != nil { // the probe's done is never called
		t.Fatal(err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second probe while the first is in flight: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := b.Allow(); err != nil {
		t.Fatalf("no new probe after the first was lost: %v", err)
	}
}

func TestBreakerDefaults(t *testing.T) {
	b := New("p", Config{}, nil)
	if b.cfg.Window != DefaultWindow || b.cfg.MinCalls != DefaultMinCalls ||
		b.cfg.FailureRatio != DefaultFailureRatio || b.cfg.OpenFor != DefaultOpenFor || b.cfg.Now == nil {
		t.Fatalf("defaults not applied: %+v", b.cfg)
	}
	if b.Name() != "p" || b.State() != Closed {
		t.Fatalf("new breaker: %s %s", b.Name(), b.State())
	}
}

func TestBreakerConcurrentUse(t *testing.T) {
	b := New("p", Config{MinCalls: 10, FailureRatio: 0.5, OpenFor: time.Hour}, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if c, err := b.Allow(); err == nil {
					mu.Lock()
					allowed++
					mu.Unlock()
					c.Failed("boom")
				}
			}
		})
	}
	wg.Wait()
	// Every call failed: it opened after MinCalls outcomes, and only calls
	// already admitted by then got through.
	if s := b.State(); s != Open {
		t.Fatalf("state %s after only failures", s)
	}
	if allowed < 10 || allowed >= 8*200 {
		t.Fatalf("%d calls allowed", allowed)
	}
}

func TestFormatRetry(t *testing.T) {
	for d, want := range map[time.Duration]string{
		3 * time.Second:         "3s",
		2950 * time.Millisecond: "3s",
		2500 * time.Millisecond: "2.5s",
		250 * time.Millisecond:  "250ms",
		100 * time.Microsecond:  "1ms",
		0:                       "0s",
	} {
		if got := formatRetry(d); got != want {
			t.Errorf("formatRetry(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestBreakerCoolDownDoublesUpToMax(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: time.Minute, MinCalls: 1, FailureRatio: 1, OpenFor: 10 * time.Second, MaxOpenFor: 30 * time.Second})
	call(t, b, false)
	var waits []time.Duration
	for range 4 {
		until := b.OpenUntil()
		waits = append(waits, until.Sub(clock.Now()))
		clock.Advance(until.Sub(clock.Now()))
		call(t, b, false) // the probe fails
	}
	if want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second}; !slices.Equal(waits, want) {
		t.Fatalf("cool-downs %v, want %v", waits, want)
	}
	clock.Advance(30 * time.Second)
	call(t, b, true)
	call(t, b, false) // closed again: one failure of MinCalls 1 trips it
	if got := b.OpenUntil().Sub(clock.Now()); got != 10*time.Second {
		t.Fatalf("cool-down after closing %v, want it back at 10s", got)
	}
}

func TestBreakerTripsOnAgentsFailingTheirFirstCall(t *testing.T) {
	b, _, changes := newTestBreaker(Config{StartStreak: 3})
	cause := errors.New("upstream: connection refused")
	b.FirstCall(cause)
	b.FirstCall(cause)
	b.FirstCall(nil) // one good start resets the streak
	b.FirstCall(cause)
	b.FirstCall(cause)
	if s := b.State(); s != Closed {
		t.Fatalf("state after a broken streak: %s", s)
	}
	b.FirstCall(cause)
	_, err := b.Allow()
	var oe *OpenError
	if !errors.As(err, &oe) || oe.StartFailures != 3 {
		t.Fatalf("Allow after 3 failed starts in a row: %v", err)
	}
	if want := "pool web: circuit open after 3 new agents in a row failed their first call; retry in 5s; last cause: upstream: connection refused"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if oe.RetryAfter() != DefaultOpenFor {
		t.Fatalf("RetryAfter %v", oe.RetryAfter())
	}
	if !slices.Equal(*changes, []string{"closed→open"}) {
		t.Fatalf("transitions %v", *changes)
	}
}

func TestBreakerAbandonedCallsAreNotCounted(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: time.Second})
	for range 10 {
		c, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		c.Abandoned()
	}
	if s := b.Snapshot(); s.Calls != 0 || s.State != Closed {
		t.Fatalf("abandoned calls counted: %+v", s)
	}
	call(t, b, false)
	call(t, b, false)
	clock.Advance(time.Second)
	probe, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	probe.Abandoned() // the probe's caller gave up: the next call probes
	probe, err = b.Allow()
	if err != nil {
		t.Fatalf("no probe after an abandoned one: %v", err)
	}
	probe.Succeeded()
	if s := b.State(); s != Closed {
		t.Fatalf("state %s", s)
	}
}

// Refusal tells a call under way that the breaker opened, with the error
// a new call gets, and takes no half-open probe's turn.
func TestRefusalTakesNoProbeTurn(t *testing.T) {
	b, clock, _ := newTestBreaker(Config{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: 3 * time.Second, StartStreak: 2})
	if err := b.Refusal(); err != nil {
		t.Fatalf("Refusal while closed: %v", err)
	}
	b.FirstCall(errors.New("schema: missing answer"))
	b.FirstCall(errors.New("schema: missing answer"))
	err := b.Refusal()
	var open *OpenError
	if !errors.Is(err, ErrOpen) || !errors.As(err, &open) || open.StartFailures != 2 || open.RetryIn != 3*time.Second {
		t.Fatalf("Refusal once open: %v (%+v)", err, open)
	}
	if _, aerr := b.Allow(); aerr == nil || aerr.Error() != err.Error() {
		t.Fatalf("Allow says %v, Refusal %v: want the same refusal", aerr, err)
	}
	clock.Advance(3 * time.Second)
	for range 3 {
		if err := b.Refusal(); err != nil {
			t.Fatalf("Refusal while half-open: %v", err)
		}
	}
	if _, err := b.Allow(); err != nil {
		t.Fatalf("the probe's turn was taken by Refusal: %v", err)
	}
}
