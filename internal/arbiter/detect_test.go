package arbiter

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// TestCUSUMChangePoint: a shift of the mean is detected after the change
// point, never before, for several seeds and shift sizes.
func TestCUSUMChangePoint(t *testing.T) {
	const change = 300
	for _, shift := range []float64{3, 5, 8} {
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, 1))
			var c CUSUM
			first := -1
			for i := range 600 {
				x := 10 + rng.NormFloat64()
				if i >= change {
					x += shift
				}
				if c.Update(x) && first < 0 {
					first = i
				}
			}
			if first < 0 {
				t.Errorf("shift %vσ seed %d: never detected", shift, seed)
				continue
			}
			if first < change {
				t.Errorf("shift %vσ seed %d: alarm at %d, before the change at %d", shift, seed, first, change)
			}
			// Expected delay is about H/(shift-K), with the baseline's
			// sigma taken at its upper bound: a dozen points at 3σ.
			if delay := first - change; delay > 40 {
				t.Errorf("shift %vσ seed %d: detected %d points after the change", shift, seed, delay)
			}
		}
	}
}

// TestCUSUMFlatNoise: no alarm on a long flat series with noise.
func TestCUSUMFlatNoise(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 2))
		var c CUSUM
		for i := range 20000 {
			if c.Update(5 + 2*rng.NormFloat64()) {
				t.Fatalf("seed %d: alarm at point %d of a flat series", seed, i)
			}
		}
		if _, _, ok := c.Baseline(); !ok {
			t.Fatal("baseline never completed")
		}
	}
}

// TestCUSUMClears: once the shift ends, the alarm clears.
func TestCUSUMClears(t *testing.T) {
	c := CUSUM{BaselineN: 10, MinSigma: 1}
	for range 10 {
		c.Update(0)
	}
	for range 50 {
		c.Update(10)
	}
	if !c.Alarm() {
		t.Fatal("no alarm during the shift")
	}
	for range 30 {
		c.Update(0)
	}
	if c.Alarm() || c.Level() != 0 {
		t.Fatalf("alarm %v level %v after the shift ended", c.Alarm(), c.Level())
	}
}

// TestTrendTimeToReachLinearLeak: the time to exhaustion of a linear leak is
// estimated exactly without noise, and within bounds (never much earlier
// than the truth) with noise.
func TestTrendTimeToReachLinearLeak(t *testing.T) {
	const limit = 256 << 20
	const rate = 4 << 20 // bytes/s
	tr := Trend{Window: 10 * time.Second}
	for i := range 20 {
		tr.Add(at(float64(i)), 100<<20+rate*float64(i))
	}
	f, ok := tr.Fit()
	if !ok || !f.Rising() {
		t.Fatalf("fit %+v ok %v: not rising", f, ok)
	}
	if f.N != 11 {
		t.Errorf("window holds %d points, want 11 (10 s at 1 Hz, ends included)", f.N)
	}
	want := (limit - (100<<20 + rate*19.0)) / rate
	got, ok := f.TimeToReach(limit)
	if !ok || math.Abs(got.Seconds()-want) > 0.01 {
		t.Errorf("TTE %v ok %v, want %.2fs", got, ok, want)
	}

	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		tr := Trend{}
		var rss float64
		for i := range 20 {
			rss = 100<<20 + rate*float64(i) + rng.NormFloat64()*(1<<20)
			tr.Add(at(float64(i)), rss)
		}
		f, _ := tr.Fit()
		got, ok := f.TimeToReach(limit)
		truth := (limit - (100<<20 + rate*19.0)) / rate
		if !ok {
			t.Errorf("seed %d: noisy leak not rising", seed)
			continue
		}
		if r := got.Seconds() / truth; r < 0.9 || r > 1.4 {
			t.Errorf("seed %d: TTE %v, truth %.1fs (ratio %.2f)", seed, got, truth, r)
		}
	}
}

// TestTrendFlatNoiseRarelyRising: noise around a flat line is seldom taken
// for a rise.
func TestTrendFlatNoiseRarelyRising(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	tr := Trend{}
	rising := 0
	const n = 5000
	for i := range n {
		tr.Add(at(float64(i)), 50+rng.NormFloat64())
		if f, ok := tr.Fit(); ok && f.Rising() {
			rising++
		}
	}
	if share := float64(rising) / n; share > 0.02 {
		t.Errorf("flat noise read as rising %.1f%% of the time", 100*share)
	}
}

func TestTrendWindowAndOrder(t *testing.T) {
	tr := Trend{Window: 5 * time.Second, MaxPoints: 4}
	for i := range 100 {
		tr.Add(at(float64(i)/10), float64(i))
	}
	if n := len(tr.live()); n != 4 {
		t.Errorf("kept %d points, want MaxPoints 4", n)
	}
	tr.Add(at(0), 1e9) // older than the newest: ignored
	if f, _ := tr.Fit(); f.Level > 1000 {
		t.Errorf("an out-of-order point was used: level %v", f.Level)
	}
	tr.Reset()
	if _, ok := tr.Fit(); ok {
		t.Error("fit after Reset")
	}
}

// TestEWMAIrregular: the average means the same at any sampling rate.
func TestEWMAIrregular(t *testing.T) {
	slow, fast := EWMA{Tau: 2 * time.Second}, EWMA{Tau: 2 * time.Second}
	slow.Update(at(0), 0)
	fast.Update(at(0), 0)
	for i := 1; i <= 4; i++ {
		slow.Update(at(float64(i)), 1)
	}
	for i := 1; i <= 40; i++ {
		fast.Update(at(float64(i)/10), 1)
	}
	want := 1 - math.Exp(-2) // after 2 τ
	if math.Abs(slow.Value()-want) > 1e-9 || math.Abs(fast.Value()-want) > 1e-9 {
		t.Errorf("after 2τ: 1 Hz %.4f, 10 Hz %.4f, want %.4f", slow.Value(), fast.Value(), want)
	}
}

func TestMedian3DropsSpikes(t *testing.T) {
	var m median3
	in := []float64{100, 900, 100, 110, 120, 1000, 130, 140}
	var out []float64
	for _, v := range in {
		out = append(out, m.filter(v))
	}
	for i, v := range out {
		if v > 200 {
			t.Errorf("spike passed at %d: %v (out %v)", i, v, out)
		}
	}
}
