package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// TestScoreArbiter: leaks predicted and replaced, predicted and held out
// (then failed: a lead against the burn), missed; a prediction on an agent
// with no fault; a prediction after the failure does not count.
func TestScoreArbiter(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	f := func(v float64) *float64 { return &v }
	ins := []*Injection{
		{Kind: Leak, Agent: "a", At: sec(0), Recovered: true, How: "preempted"},
		{Kind: Leak, Agent: "b", At: sec(10), OnsetMS: f(8000), Recovered: true, How: "replaced"},
		{Kind: Leak, Agent: "c", At: sec(20), OnsetMS: f(6000), Recovered: true, How: "replaced"},
		{Kind: Kill, Agent: "d", At: sec(30), Recovered: true, How: "replaced"},
	}
	pred := func(agent string, at float64, held bool) supervisor.Event {
		reason := "risk 0.9: RSS reaches its limit"
		if held {
			reason = supervisor.PredictionHeldOut + " " + reason
		}
		return supervisor.Event{Kind: supervisor.EventPrediction, Agent: agent, Time: sec(at), Reason: reason}
	}
	preds := []supervisor.Event{
		pred("a", 3, false),
		pred("b", 13, true),  // held out; b fails at 18: lead 5 s of an 8 s burn
		pred("c", 27, true),  // after c's failure at 26: not a prediction of it
		pred("x", 40, false), // no fault
	}
	r := scoreArbiter(ins, preds)
	if r.SlowFaults != 3 || r.Predicted != 2 || r.Acted != 1 || r.HeldOut != 1 || r.Unfaulted != 1 || r.UnfaultedAgents[0] != "x" {
		t.Errorf("report %+v", r)
	}
	if r.LeadMSP50 == nil || *r.LeadMSP50 != 5000 || *r.BurnMSP50 != *p50([]float64{8000, 6000}) || *r.PredictMSP50 != 3000 {
		t.Errorf("lead %v burn %v predict %v", *r.LeadMSP50, *r.BurnMSP50, *r.PredictMSP50)
	}
	if fp := r.Faults[2]; fp.PredictedMS != nil || fp.FailedMS == nil {
		t.Errorf("c: %+v", fp)
	}
	var b strings.Builder
	r.writeText(&b)
	for _, want := range []string{"2 of 3 leaks predicted (1 replaced before failing, 1 held out)", "1 predictions on agents with no injected fault (x)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
