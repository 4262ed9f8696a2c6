package arbiter

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Report is the outcome of [Evaluate], as `resilientctl arbiter eval`
// prints it.
type Report struct {
	// Failures are the slow-burn failures (every kind not in SuddenKinds).
	Failures int `json:"failures"`
	// Predicted are the slow-burn failures preceded, within Horizon, by a
	// prediction.
	Predicted int `json:"predicted"`
	// Predictions made in the replay, and how many were right (a slow-burn
	// failure within Horizon), wrong (the agent outlived the Horizon or
	// stopped without failing) or unscored (a sudden failure came first).
	Predictions    int `json:"predictions"`
	TruePositives  int `json:"true_positives"`
	FalsePositives int `json:"false_positives"`
	Unscored       int `json:"unscored,omitempty"`

	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	// LeadMSP50 is the median time from prediction to failure, over the
	// predicted failures.
	LeadMSP50 float64 `json:"lead_ms_p50"`
	// FalsePerAgentHour is false predictions per hour of agent life
	// observed: the unneeded replacements the Arbiter would have made.
	FalsePerAgentHour float64 `json:"false_per_agent_hour"`
	AgentHours        float64 `json:"agent_hours"`
	// Sudden are the failures of SuddenKinds: not foreseeable from
	// telemetry, not counted as misses.
	Sudden int `json:"sudden"`
	// Kinds breaks the slow-burn failures down by kind.
	Kinds map[string]KindReport `json:"kinds,omitempty"`
	// Holdout scores the predictions recorded live on held-out agents (the
	// ones left alone): the honest measure of precision in production.
	Holdout HoldoutReport `json:"holdout"`
}

// KindReport is the recall of one kind of failure.
type KindReport struct {
	Failures  int     `json:"failures"`
	Predicted int     `json:"predicted"`
	Recall    float64 `json:"recall"`
	LeadMSP50 float64 `json:"lead_ms_p50"`
}

// HoldoutReport scores live predictions on held-out agents.
type HoldoutReport struct {
	Predictions   int     `json:"predictions"`
	TruePositives int     `json:"true_positives"`
	Precision     float64 `json:"precision"`
}

// Evaluate replays a history in time order through a fresh Arbiter made
// from cfg (its Holdout and Rand ignored: nothing is acted on in a replay)
// and scores the predictions it makes against the failures that followed.
// The model learns only from what precedes each point: labels become known
// as they would have live, so there is no look-ahead. Prediction records in
// the history are not replayed; those on held-out agents are scored apart
// in [Report.Holdout]. A failure of an agent that has no sample in the
// history is not counted.
func Evaluate(history []Record, cfg Config) Report {
	rp := replay(history, cfg)
	cfg = rp.cfg
	rep := Report{Kinds: map[string]KindReport{}}
	var leads []time.Duration
	kindLeads := map[string][]time.Duration{}
	var agentTime time.Duration
	for _, l := range rp.lives {
		agentTime += l.last.Sub(l.first)
		slow := l.failKind != "" && !cfg.sudden(l.failKind)
		if l.failKind != "" && !slow {
			rep.Sudden++
		}
		for _, p := range l.preds {
			rep.Predictions++
			within := l.failKind != "" && !l.failAt.Before(p) && l.failAt.Sub(p) <= cfg.Horizon
			switch {
			case within && slow:
				rep.TruePositives++
			case within:
				rep.Unscored++
			default:
				rep.FalsePositives++
			}
		}
		if !slow {
			continue
		}
		rep.Failures++
		k := rep.Kinds[l.failKind]
		k.Failures++
		for _, p := range l.preds {
			if !l.failAt.Before(p) && l.failAt.Sub(p) <= cfg.Horizon {
				// The earliest prediction still standing at the failure.
				lead := l.failAt.Sub(p)
				rep.Predicted++
				k.Predicted++
				leads = append(leads, lead)
				kindLeads[l.failKind] = append(kindLeads[l.failKind], lead)
				break
			}
		}
		rep.Kinds[l.failKind] = k
	}
	for name, k := range rep.Kinds {
		k.Recall = ratio(k.Predicted, k.Failures)
		k.LeadMSP50 = medianMS(kindLeads[name])
		rep.Kinds[name] = k
	}
	rep.Precision = ratio(rep.TruePositives, rep.TruePositives+rep.FalsePositives)
	rep.Recall = ratio(rep.Predicted, rep.Failures)
	rep.LeadMSP50 = medianMS(leads)
	rep.AgentHours = agentTime.Hours()
	if rep.AgentHours > 0 {
		rep.FalsePerAgentHour = float64(rep.FalsePositives) / rep.AgentHours
	}

	for _, h := range rp.held {
		rep.Holdout.Predictions++
		for _, f := range rp.failures[h.agent] {
			if !f.Before(h.t) && f.Sub(h.t) <= cfg.Horizon {
				rep.Holdout.TruePositives++
				break
			}
		}
	}
	rep.Holdout.Precision = ratio(rep.Holdout.TruePositives, rep.Holdout.Predictions)
	return rep
}

// lifetime is one agent's life in a replay: an id between its first
// sample and its failure or disappearance (ids may be reused).
type lifetime struct {
	agent       string
	first, last time.Time
	preds       []time.Time
	failAt      time.Time
	failKind    string
}

type heldPrediction struct {
	agent string
	t     time.Time
}

type replayed struct {
	cfg      Config
	lives    []*lifetime
	held     []heldPrediction
	failures map[string][]time.Time // slow-burn failures by agent id
}

// replay runs a history through a fresh Arbiter in time order.
func replay(history []Record, cfg Config) replayed {
	recs := slices.Clone(history)
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Time.Compare(b.Time) })

	var now time.Time
	cfg.Holdout = -1
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	cfg.Now = func() time.Time { return now }
	arb := New(cfg)
	rp := replayed{cfg: arb.cfg, failures: map[string][]time.Time{}}

	current := map[string]*lifetime{}
	lifeOf := func(agent string) *lifetime {
		l := current[agent]
		if l == nil {
			l = &lifetime{agent: agent}
			current[agent] = l
			rp.lives = append(rp.lives, l)
		}
		return l
	}
	for _, r := range recs {
		now = r.Time
		switch r.Kind {
		case RecordSample:
			if r.Sample == nil {
				continue
			}
			s := *r.Sample
			if s.Time.IsZero() {
				s.Time = r.Time
			}
			l := lifeOf(s.Agent)
			if l.first.IsZero() {
				l.first = s.Time
			}
			l.last = s.Time
			if as := arb.Observe(s); as.Predicted {
				l.preds = append(l.preds, s.Time)
			}
		case RecordFailure:
			if l := current[r.Agent]; l != nil {
				l.failAt, l.failKind = r.Time, r.Failure
				delete(current, r.Agent)
			}
			if !rp.cfg.sudden(r.Failure) {
				rp.failures[r.Agent] = append(rp.failures[r.Agent], r.Time)
			}
			arb.Failed(r.Agent, r.Time, r.Failure)
		case RecordGone:
			delete(current, r.Agent)
			arb.Forget(r.Agent)
		case RecordPrediction:
			if r.HeldOut {
				rp.held = append(rp.held, heldPrediction{r.Agent, r.Time})
			}
		}
	}
	return rp
}

// ratio is n/d, 0 when d is 0.
func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

func medianMS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.SortFunc(s, cmp.Compare)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return float64(m) / float64(time.Millisecond)
}

// String is the report on one line, for logs.
func (r Report) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	return "failures=" + strconv.Itoa(r.Failures) + " predicted=" + strconv.Itoa(r.Predicted) +
		" precision=" + f(r.Precision) + " recall=" + f(r.Recall) +
		" lead_ms_p50=" + strconv.FormatFloat(r.LeadMSP50, 'f', 0, 64) +
		" false_per_agent_hour=" + f(r.FalsePerAgentHour) + " sudden=" + strconv.Itoa(r.Sudden)
}
