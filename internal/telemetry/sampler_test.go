package telemetry

import (
	"testing"
	"time"
)

// fakeClock is a settable clock for deterministic rates.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestSampler(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := Sampler{Now: clock.Now}

	c := Counters{Syscalls: 1000, SyscallErrors: 10, RxBytes: 4096}
	if _, ok := s.Update(1, c); ok {
		t.Fatal("first sample gave rates")
	}
	clock.Advance(2 * time.Second)
	c.Syscalls += 10000
	c.SyscallErrors += 500
	c.RxBytes += 2000
	c.Retransmits += 4
	c.LatencyHist[10] += 10000 // all in [1024, 2048) ns
	r, ok := s.Update(1, c)
	if !ok {
		t.Fatal("second sample gave no rates")
	}
	want := Rates{
		Interval:          2 * time.Second,
		SyscallsPerSec:    5000,
		ErrorsPerSec:      250,
		ErrorRatio:        0.05,
		RxBytesPerSec:     1000,
		RetransmitsPerSec: 2,
		LatencySamples:    10000,
	}
	got := r
	got.P50, got.P99 = 0, 0
	if got != want {
		t.Errorf("rates = %+v, want %+v", got, want)
	}
	if r.P50 < 1024 || r.P50 > 2048 || r.P99 < r.P50 || r.P99 > 2048 {
		t.Errorf("P50 %v, P99 %v; want within [1024ns, 2048ns], P50 <= P99", r.P50, r.P99)
	}

	// Another cgroup is independent.
	if _, ok := s.Update(2, c); ok {
		t.Error("first sample of cgroup 2 gave rates")
	}

	// No time passed: no rates.
	if _, ok := s.Update(1, c); ok {
		t.Error("zero interval gave rates")
	}

	// Counters going backwards (watched again) restart the baseline.
	clock.Advance(time.Second)
	if _, ok := s.Update(1, Counters{Syscalls: 5}); ok {
		t.Error("reset counters gave rates")
	}
	clock.Advance(time.Second)
	if r, ok := s.Update(1, Counters{Syscalls: 105}); !ok || r.SyscallsPerSec != 100 {
		t.Errorf("after reset: %+v, %v; want 100 syscalls/s", r, ok)
	}

	s.Forget(1)
	if _, ok := s.Update(1, Counters{Syscalls: 200}); ok {
		t.Error("sample after Forget gave rates")
	}
}

// A quiet interval with few timed syscalls has a P50 but no P99: the 99th
// percentile of a handful of samples would be their maximum.
func TestSamplerFewLatencySamples(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := Sampler{Now: clock.Now}
	var c Counters
	s.Update(1, c)
	for _, n := range []uint64{minP99Samples - 1, minP99Samples} {
		clock.Advance(time.Second)
		c.Syscalls += n * 16
		c.LatencyHist[10] += n
		r, ok := s.Update(1, c)
		if !ok {
			t.Fatal("no rates")
		}
		if r.LatencySamples != n {
			t.Errorf("LatencySamples = %d, want %d", r.LatencySamples, n)
		}
		if r.P50 < 1024 || r.P50 > 2048 {
			t.Errorf("%d samples: P50 %v, want within [1024ns, 2048ns]", n, r.P50)
		}
		if wantP99 := n >= minP99Samples; (r.P99 != 0) != wantP99 {
			t.Errorf("%d samples: P99 %v, want one: %v", n, r.P99, wantP99)
		}
	}
	// No timed syscall at all: no latency.
	clock.Advance(time.Second)
	c.Syscalls += 3
	if r, _ := s.Update(1, c); r.P50 != 0 || r.P99 != 0 || r.LatencySamples != 0 {
		t.Errorf("no samples: %+v, want no latency", r)
	}
}
