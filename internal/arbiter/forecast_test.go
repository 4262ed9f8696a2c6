package arbiter

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestForecasterLinear(t *testing.T) {
	f := NewForecaster(0.5, 0.3)
	for i := range 30 {
		f.Observe(at(float64(i)), 5+2*float64(i))
	}
	// The series is exactly linear: the forecast continues it.
	if got, want := f.Forecast(10*time.Second), 5+2*39.0; math.Abs(got-want) > 1e-6 {
		t.Errorf("forecast %v, want %v", got, want)
	}
	if math.Abs(f.Trend()-2) > 1e-9 || math.Abs(f.Level()-63) > 1e-9 {
		t.Errorf("level %v trend %v", f.Level(), f.Trend())
	}
}

func TestForecasterNoisyConstantAndIrregular(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	f := NewForecaster(0.2, 0.05)
	x := 0.0
	for range 500 {
		x += 0.5 + rng.Float64() // irregular steps
		f.Observe(at(x), 100+5*rng.NormFloat64())
	}
	if got := f.Forecast(5 * time.Second); math.Abs(got-100) > 10 {
		t.Errorf("forecast of a noisy constant: %v", got)
	}
	n := f.n
	f.Observe(at(x-1), 1e6) // out of order: ignored
	if f.n != n {
		t.Error("an out-of-order point was used")
	}
	if (&Forecaster{}).Forecast(time.Second) != 0 {
		t.Error("empty forecaster forecasts non-zero")
	}
}

func TestSpareTarget(t *testing.T) {
	p := SparePolicy{Min: 1, Max: 6, ReplaceTime: 2 * time.Second, PerAgentCapacity: 10}
	for _, c := range []struct {
		name string
		d    SpareDemand
		want int
	}{
		{"idle", SpareDemand{Active: 4}, 1},
		// 1 failure/s over a 2 s start: 2 expected, +√2 margin.
		{"failures", SpareDemand{FailuresPerSec: 1, Active: 4}, 4},
		{"at risk", SpareDemand{AtRisk: 1, Active: 4}, 2},
		// 55 calls/s needs 6 agents, 4 are active.
		{"load", SpareDemand{CallRate: 55, Active: 4}, 2},
		{"capped", SpareDemand{FailuresPerSec: 10, Active: 4}, 6},
		{"negative forecast", SpareDemand{FailuresPerSec: -3, CallRate: -1}, 1},
	} {
		if got := SpareTarget(p, c.d); got != c.want {
			t.Errorf("%s: %d spares, want %d", c.name, got, c.want)
		}
	}
	if got := SpareTarget(SparePolicy{Min: 3, Max: 1}, SpareDemand{}); got != 3 {
		t.Errorf("max below min: %d, want min 3", got)
	}
}

// TestArbiterSpareTarget: the Arbiter forecasts a pool's call rate from the
// samples' call counts and counts agents at risk, ahead of need.
func TestArbiterSpareTarget(t *testing.T) {
	var now time.Time
	a := New(Config{Holdout: -1, Now: func() time.Time { return now }})
	for i := range 60 {
		now = at(float64(i))
		for k := range 3 {
			// The pool's load grows by one call/s every second.
			a.Observe(Sample{Time: now, Agent: string(rune('a' + k)), Pool: "p", Calls: 10 + i/3})
		}
	}
	d := a.Demand("p", 5*time.Second)
	if d.Active != 3 {
		t.Errorf("active %d, want 3", d.Active)
	}
	// Calls per second now: 3 × (10 + 59/3) ≈ 88, growing 1/s.
	if d.CallRate < 85 || d.CallRate > 100 {
		t.Errorf("call rate forecast %.1f", d.CallRate)
	}
	// ceil(~92/20) = 5 agents needed for the load, 3 active: 2 spares.
	p := SparePolicy{Min: 0, Max: 10, ReplaceTime: 5 * time.Second, PerAgentCapacity: 20}
	if got := a.SpareTarget("p", p); got != 2 {
		t.Errorf("spare target %d, want 2 (demand %+v)", got, d)
	}

	// An agent past the threshold is a spare consumed now.
	for i := 60; i < 70; i++ {
		now = at(float64(i))
		a.Observe(Sample{Time: now, Agent: "a", Pool: "p", Calls: 2, Violations: 2})
	}
	if d := a.Demand("p", 5*time.Second); d.AtRisk < 1 {
		t.Errorf("at risk %.2f, want at least 1", d.AtRisk)
	}
	// A failure burst raises the failure forecast.
	for k := range 5 {
		a.Failed(string(rune('a'+k%3)), now, "oom")
		a.Observe(Sample{Time: now, Agent: string(rune('a' + k%3)), Pool: "p"})
	}
	now = now.Add(20 * time.Second)
	if d := a.Demand("p", 5*time.Second); d.FailuresPerSec <= 0 {
		t.Errorf("failure rate forecast %v after 5 failures", d.FailuresPerSec)
	}
}
