package arbiter

import (
	"testing"
	"time"
)

// leakLead feeds one agent 30 s of flat RSS, then a steady leak of rate
// bytes/s from 10 MiB to a 96 MiB limit, sampled every step, and returns
// the burn (leak start to the limit) and the lead (first prediction to the
// limit); lead 0 without a prediction.
func leakLead(t *testing.T, rate float64, step time.Duration) (burn, lead time.Duration) {
	t.Helper()
	a := New(Config{Holdout: -1})
	const limit = 96 << 20
	start := 30 * time.Second
	rss := float64(10 << 20)
	burn = time.Duration((limit - rss) / rate * float64(time.Second))
	fail := start + burn
	for el := time.Duration(0); el < fail; el += step {
		v := rss
		if el > start {
			v += rate * (el - start).Seconds()
		}
		as := a.Observe(Sample{Time: t0.Add(el), Agent: "a", Pool: "p", RSS: int64(v), MemLimit: limit, Calls: 5})
		if as.Predicted {
			return burn, fail - el
		}
	}
	return burn, 0
}

// TestLeakLead (issue #16): a leak that burns for 5-11 s to its limit is
// predicted once its slope shows (five samples at one a second), not when
// the limit is a second away: at least 2 s and 40 % of the burn ahead; a
// slow one as soon as it is under Target (6 s) from its limit. Before the
// short fit and the memory detector's earlier evidence, the 7 s leak was
// predicted 0.17 s ahead (2 %) and the 34 s one 2.4 s. Simulated time: a
// statement about the logic, not about timing.
func TestLeakLead(t *testing.T) {
	for _, c := range []struct {
		rate    float64
		minLead time.Duration
	}{{8 << 20, 4 * time.Second}, {12 << 20, 2900 * time.Millisecond}, {17 << 20, 2 * time.Second}, {2.5 * (1 << 20), 5 * time.Second}} {
		burn, lead := leakLead(t, c.rate, time.Second)
		t.Logf("leak %.1f MiB/s: burn %v, lead %v (%.0f%% of the burn)", c.rate/(1<<20), burn, lead, 100*lead.Seconds()/burn.Seconds())
		if lead < c.minLead || (burn < 12*time.Second && lead < burn*4/10) {
			t.Errorf("leak %.1f MiB/s: lead %v of a %v burn, want at least %v", c.rate/(1<<20), lead, burn, c.minLead)
		}
	}
}
