package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// ArbiterReport scores the daemon's Arbiter against what the experiment
// knows for certain: which agents it faulted, when, and when they failed.
// Only leak is a slow burn the Arbiter is expected to foresee; every other
// kind is sudden, and a prediction before one of those is reported but not
// expected.
type ArbiterReport struct {
	// SlowFaults are the leak faults injected; Predicted how many of them
	// the Arbiter predicted after the injection and before the agent
	// failed; Acted of those, how many it replaced (their failure
	// prevented), HeldOut how many it left alone on purpose.
	SlowFaults int `json:"slow_faults"`
	Predicted  int `json:"predicted"`
	Acted      int `json:"acted"`
	HeldOut    int `json:"held_out"`
	// PredictMSP50 is the median time from a leak's start to its first
	// prediction; BurnMSP50 the median time from a leak's start to its
	// failure, over the leaks that failed; LeadMSP50 the median time from
	// prediction to failure, over the predicted leaks that failed (held
	// out). A lead is worth what it is against the burn: the share of the
	// burn left when the prediction came.
	PredictMSP50 *float64 `json:"predict_ms_p50,omitempty"`
	BurnMSP50    *float64 `json:"burn_ms_p50,omitempty"`
	LeadMSP50    *float64 `json:"lead_ms_p50,omitempty"`
	// Unfaulted are predictions on agents of the pool that had no fault
	// injected during the experiment: false alarms, as far as the
	// experiment knows.
	Unfaulted       int               `json:"predictions_without_fault"`
	UnfaultedAgents []string          `json:"agents_without_fault,omitempty"`
	Faults          []FaultPrediction `json:"faults"`
}

// FaultPrediction is one injected fault against the Arbiter's predictions.
type FaultPrediction struct {
	Kind  Kind      `json:"kind"`
	Agent string    `json:"agent"`
	At    time.Time `json:"at"`
	// PredictedMS: from the injection to the first prediction on the
	// agent; absent without one.
	PredictedMS *float64 `json:"predicted_ms,omitempty"`
	// Acted: the agent was replaced on the prediction (its failure, if
	// it was coming, never happened); HeldOut: it was left alone.
	Acted   bool `json:"acted,omitempty"`
	HeldOut bool `json:"held_out,omitempty"`
	// FailedMS: from the injection to the failure (a leak's OOM kill);
	// LeadMS: from the prediction to the failure.
	FailedMS *float64 `json:"failed_ms,omitempty"`
	LeadMS   *float64 `json:"lead_ms,omitempty"`
}

// heldOutPrediction reports whether a prediction event is on an agent the
// Arbiter left alone (it does not take the agent out of service).
func heldOutPrediction(ev supervisor.Event) bool {
	return ev.Kind == supervisor.EventPrediction && strings.HasPrefix(ev.Reason, supervisor.PredictionHeldOut)
}

// scoreArbiter matches the experiment's prediction events with its
// injections.
func scoreArbiter(ins []*Injection, preds []supervisor.Event) *ArbiterReport {
	r := &ArbiterReport{Faults: []FaultPrediction{}}
	faulted := map[string]bool{}
	var predict, burn, lead []float64
	for _, in := range ins {
		faulted[in.Agent] = true
		fp := FaultPrediction{Kind: in.Kind, Agent: in.Agent, At: in.At}
		var failAt time.Time
		if in.OnsetMS != nil && in.How == "replaced" {
			failAt = in.At.Add(time.Duration(*in.OnsetMS * float64(time.Millisecond)))
			fp.FailedMS = in.OnsetMS
		}
		for _, p := range preds {
			if p.Agent != in.Agent || p.Time.Before(in.At) || (!failAt.IsZero() && p.Time.After(failAt)) {
				continue
			}
			fp.PredictedMS = msPtr(p.Time.Sub(in.At))
			fp.HeldOut = heldOutPrediction(p)
			fp.Acted = !fp.HeldOut
			if !failAt.IsZero() {
				fp.LeadMS = msPtr(failAt.Sub(p.Time))
			}
			break
		}
		if in.Kind == Leak {
			r.SlowFaults++
			if fp.PredictedMS != nil {
				r.Predicted++
				predict = append(predict, *fp.PredictedMS)
				if fp.Acted {
					r.Acted++
				} else {
					r.HeldOut++
				}
			}
			if fp.FailedMS != nil {
				burn = append(burn, *fp.FailedMS)
			}
			if fp.LeadMS != nil {
				lead = append(lead, *fp.LeadMS)
			}
		}
		r.Faults = append(r.Faults, fp)
	}
	for _, p := range preds {
		if !faulted[p.Agent] {
			r.Unfaulted++
			if !slices.Contains(r.UnfaultedAgents, p.Agent) {
				r.UnfaultedAgents = append(r.UnfaultedAgents, p.Agent)
			}
		}
	}
	r.PredictMSP50, r.BurnMSP50, r.LeadMSP50 = p50(predict), p50(burn), p50(lead)
	return r
}

func p50(xs []float64) *float64 {
	if s := Summarize(xs); s != nil {
		return &s.P50
	}
	return nil
}

// writeArbiter is the report's Arbiter section in words.
func (a *ArbiterReport) writeText(w io.Writer) {
	if a == nil {
		return
	}
	fmt.Fprintln(w)
	opt := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmtMS(*v)
	}
	fmt.Fprintf(w, "arbiter: %d of %d leaks predicted (%d replaced before failing, %d held out)", a.Predicted, a.SlowFaults, a.Acted, a.HeldOut)
	if a.SlowFaults > 0 {
		fmt.Fprintf(w, "; predicted %s after a leak's start (p50), leaks that failed did so %s after it, lead %s", opt(a.PredictMSP50), opt(a.BurnMSP50), opt(a.LeadMSP50))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "arbiter: %d predictions on agents with no injected fault", a.Unfaulted)
	if len(a.UnfaultedAgents) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(a.UnfaultedAgents, ", "))
	}
	fmt.Fprintln(w)
}
