package arbiter

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestLiveHeldOutScoring: held-out predictions are scored as their
// horizon ends (false alarm), at a slow-burn failure within it (came true),
// and not at all after a sudden failure; acted predictions are counted.
func TestLiveHeldOutScoring(t *testing.T) {
	a := New(Config{Holdout: 1, Rand: rand.New(rand.NewPCG(1, 1))})
	bad := func(agent string, from, to int) {
		for i := from; i < to; i++ {
			a.Observe(Sample{Time: at(float64(i)), Agent: agent, Pool: "p", Calls: 2, Violations: 2})
		}
	}
	bad("true", 0, 4)
	a.Failed("true", at(4), "violation")
	bad("false", 0, 12) // predicted at 0 and 10: the first horizon ends at 10
	bad("sudden", 0, 3)
	a.Failed("sudden", at(3), "kill")
	ls := a.Live()
	if len(ls) != 1 || ls[0].HeldOut != 4 || ls[0].Acted != 0 || ls[0].CameTrue != 1 || ls[0].FalseAlarms != 1 || ls[0].MaxRisk < 0.8 {
		t.Fatalf("live %+v", ls)
	}
	a.Forget("false") // the prediction at 10 is unscored: stopped within its horizon
	if ls := a.Live(); ls[0].FalseAlarms != 1 || ls[0].MaxRisk != 0 {
		t.Errorf("after forget: %+v", ls)
	}

	b := New(Config{Holdout: -1})
	bad2 := func(agent string) {
		for i := range 3 {
			b.Observe(Sample{Time: at(float64(i)), Agent: agent, Pool: "q", Calls: 2, Violations: 2})
		}
	}
	bad2("x")
	if ls := b.Live(); len(ls) != 1 || ls[0].Acted != 1 || ls[0].HeldOut != 0 {
		t.Errorf("acting: %+v", ls)
	}
}

// TestAdaptiveHoldout: by default one in two predicted agents is held out
// until the held-out predictions scored give a confident precision, then
// one in twenty.
func TestAdaptiveHoldout(t *testing.T) {
	a := New(Config{Rand: rand.New(rand.NewPCG(5, 5))})
	share := func(from, to int) float64 {
		held := 0
		for k := from; k < to; k++ {
			agent := fmt.Sprint("a", k)
			t0 := float64(100 * k)
			var as Assessment
			for i := 0; !as.Predicted; i++ {
				as = a.Observe(Sample{Time: at(t0 + float64(i)), Agent: agent, Pool: "p", Calls: 2, Violations: 2})
			}
			if as.HeldOut {
				held++
				a.Failed(agent, at(t0+5), "violation") // it came true
			} else {
				a.Forget(agent)
			}
		}
		return float64(held) / float64(to-from)
	}
	if s := share(0, 20); s < 0.3 || s > 0.7 {
		t.Errorf("first 20 predictions: %.2f held out, want about %v", s, AutoHoldout)
	}
	// Hold out until 16 have come true.
	for k := 20; HeldOutNeeded(int(a.Live()[0].CameTrue), int(a.Live()[0].CameTrue)) > 0; k++ {
		if k > 200 {
			t.Fatalf("never confident: %+v", a.Live())
		}
		share(k, k+1)
	}
	if s := share(1000, 1400); s > 0.1 {
		t.Errorf("once confident: %.2f held out, want about %v", s, SettledHoldout)
	}
}
