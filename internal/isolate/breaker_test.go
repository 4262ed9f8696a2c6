package isolate

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

func newTestBreaker(cfg BreakerConfig) (*Breaker, *fakeClock, *[]string) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	var changes []string
	b := NewBreaker("web", cfg, func(from, to BreakerState) {
		changes = append(changes, string(from)+"→"+string(to))
	})
	return b, clock, &changes
}

func call(t *testing.T, b *Breaker, success bool) {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v (state %s)", err, b.State())
	}
	done(success)
}

func TestBreakerTripsOnFailureRatioWithMinCalls(t *testing.T) {
	b, _, changes := newTestBreaker(BreakerConfig{Window: 10 * time.Second, MinCalls: 20, FailureRatio: 1, OpenFor: 3 * time.Second})
	for range 19 {
		call(t, b, false)
	}
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("state after 19 failures with MinCalls 20: %s", s)
	}
	call(t, b, false)
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("state after 20 of 20 failed: %s", s)
	}
	_, err := b.Allow()
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow while open: %v, want ErrOpen", err)
	}
	if want := "pool web: circuit open after 20 of 20 calls failed; retrying in 3s"; err.Error() != want {
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
	b, _, _ := newTestBreaker(BreakerConfig{Window: 10 * time.Second, MinCalls: 10, FailureRatio: 0.5, OpenFor: time.Second})
	for i := range 100 {
		call(t, b, i%3 != 0) // a third fail
	}
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("state with 1/3 failures and ratio 0.5: %s", s)
	}
	// Failing calls push the ratio in the window over a half.
	for range 60 {
		if b.State() == BreakerOpen {
			break
		}
		call(t, b, false)
	}
	snap := b.Snapshot()
	if snap.State != BreakerOpen {
		t.Fatalf("never opened: %+v", snap)
	}
}

func TestBreakerWindowSlides(t *testing.T) {
	b, clock, _ := newTestBreaker(BreakerConfig{Window: 10 * time.Second, MinCalls: 4, FailureRatio: 0.75, OpenFor: time.Second})
	for range 3 {
		call(t, b, false)
	}
	// The three failures age out of the window.
	clock.Advance(11 * time.Second)
	call(t, b, false)
	if s := b.Snapshot(); s.State != BreakerClosed || s.Calls != 1 {
		t.Fatalf("old failures still counted: %+v", s)
	}
	// Within one window: 3 failures of 4 calls trips at 0.75.
	clock.Advance(time.Second)
	call(t, b, true)
	call(t, b, false)
	clock.Advance(time.Second)
	call(t, b, false)
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("3 of 4 failed within the window, state %s", s)
	}
}

func TestBreakerHalfOpenProbe(t *testing.T) {
	b, clock, changes := newTestBreaker(BreakerConfig{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: 3 * time.Second})
	call(t, b, false)
	call(t, b, false)
	if b.State() != BreakerOpen {
		t.Fatal("not open")
	}
	clock.Advance(2 * time.Second)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) || err.Error() != "pool web: circuit open after 2 of 2 calls failed; retrying in 1s" {
		t.Fatalf("Allow 1s before half-open: %v", err)
	}

	clock.Advance(time.Second)
	if s := b.State(); s != BreakerHalfOpen {
		t.Fatalf("state after OpenFor: %s", s)
	}
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second call while the probe is in flight: %v", err)
	}
	probe(false)
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("state after a failed probe: %s", s)
	}
	if _, err := b.Allow(); err == nil || err.Error() != "pool web: circuit open after the half-open probe failed; retrying in 3s" {
		t.Fatalf("error after failed probe: %v", err)
	}

	clock.Advance(3 * time.Second)
	probe, err = b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	probe(true)
	probe(false) // a second outcome for one call is ignored
	if s := b.Snapshot(); s.State != BreakerClosed || s.Calls != 0 {
		t.Fatalf("after a good probe: %+v, want closed with an empty window", s)
	}
	want := []string{"closed→open", "open→half-open", "half-open→open", "open→half-open", "half-open→closed"}
	if !slices.Equal(*changes, want) {
		t.Fatalf("transitions %v, want %v", *changes, want)
	}
}

func TestBreakerIgnoresOutcomesFromBeforeATransition(t *testing.T) {
	b, clock, _ := newTestBreaker(BreakerConfig{Window: time.Minute, MinCalls: 2, FailureRatio: 1, OpenFor: time.Second})
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
	slow(false) // started while closed: must not decide the probe
	if s := b.State(); s != BreakerHalfOpen {
		t.Fatalf("a stale outcome moved the breaker to %s", s)
	}
	probe(true)
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("state %s", s)
	}
}

func TestBreakerLostProbeDoesNotWedge(t *testing.T) {
	b, clock, _ := newTestBreaker(BreakerConfig{Window: time.Minute, MinCalls: 1, FailureRatio: 1, OpenFor: time.Second})
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
	b := NewBreaker("p", BreakerConfig{}, nil)
	if b.cfg.Window != DefaultBreakerWindow || b.cfg.MinCalls != DefaultBreakerMinCalls ||
		b.cfg.FailureRatio != DefaultBreakerFailureRatio || b.cfg.OpenFor != DefaultBreakerOpenFor || b.cfg.Now == nil {
		t.Fatalf("defaults not applied: %+v", b.cfg)
	}
	if b.Name() != "p" || b.State() != BreakerClosed {
		t.Fatalf("new breaker: %s %s", b.Name(), b.State())
	}
}

func TestBreakerConcurrentUse(t *testing.T) {
	b := NewBreaker("p", BreakerConfig{MinCalls: 10, FailureRatio: 0.5, OpenFor: time.Hour}, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if done, err := b.Allow(); err == nil {
					mu.Lock()
					allowed++
					mu.Unlock()
					done(false)
				}
			}
		})
	}
	wg.Wait()
	// Every call failed: it opened after MinCalls outcomes, and only calls
	// already admitted by then got through.
	if s := b.State(); s != BreakerOpen {
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
