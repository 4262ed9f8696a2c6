package arbiter

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Report is the outcome of [Evaluate], as `resilientctl arbiter eval`
// prints it.
//
// An Arbiter that acts hides the truth it would be scored on: an agent it
// replaced never gets to fail. So the report keeps apart what can be
// verified from what cannot: predictions acted on (Acted, with the
// evidence at the time), replayed predictions whose agent was stopped
// before their horizon ended (Unverifiable), held-out predictions (scored
// in Holdout), and sudden failures (which nothing could predict).
// FalsePositives, Precision and Recall count only what was verifiable;
// Precision and Recall are null when nothing was.
type Report struct {
	// Failures are the slow-burn failures that happened (every kind not in
	// SuddenKinds). A failure the Arbiter prevented is not one of them.
	Failures int `json:"failures"`
	// Predicted are the slow-burn failures preceded, within Horizon, by a
	// prediction.
	Predicted int `json:"predicted"`
	// Predictions made in the replay, and how many were right (a slow-burn
	// failure within Horizon), wrong (the agent lived through the Horizon
	// or failed after it), unscored (a sudden failure came first) or
	// unverifiable (the agent was stopped, by the Arbiter acting or by an
	// operator, before the Horizon ended, or the history ends first).
	Predictions    int `json:"predictions"`
	TruePositives  int `json:"true_positives"`
	FalsePositives int `json:"false_positives"`
	Unscored       int `json:"unscored,omitempty"`
	Unverifiable   int `json:"unverifiable"`

	// Acted counts the live predictions the Arbiter acted on (the agent
	// replaced before it could fail): unverifiable by nature. Evidence is
	// the newest of them with what the Arbiter saw at the time.
	Acted     int        `json:"acted"`
	Evidence  []Evidence `json:"acted_evidence,omitempty"`
	Precision *float64   `json:"precision"`
	Recall    *float64   `json:"recall"`
	// LeadMSP50 is the median time from prediction to failure, over the
	// predicted failures; null without one.
	LeadMSP50 *float64 `json:"lead_ms_p50"`
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

// Evidence is one live prediction acted on, as the Arbiter saw it.
type Evidence struct {
	Time    time.Time `json:"time"`
	Agent   string    `json:"agent"`
	Pool    string    `json:"pool"`
	Risk    float64   `json:"risk"`
	Reasons []string  `json:"reasons,omitempty"`
}

// maxEvidence bounds [Report.Evidence].
const maxEvidence = 10

// KindReport is the recall of one kind of failure.
type KindReport struct {
	Failures  int      `json:"failures"`
	Predicted int      `json:"predicted"`
	Recall    float64  `json:"recall"`
	LeadMSP50 *float64 `json:"lead_ms_p50"`
}

// HoldoutReport scores live predictions on held-out agents.
type HoldoutReport struct {
	Predictions    int `json:"predictions"`
	TruePositives  int `json:"true_positives"`
	FalsePositives int `json:"false_positives"`
	// Unscored: a sudden failure came first, or the agent stopped or the
	// history ended before the horizon did.
	Unscored int `json:"unscored"`
	// Precision is null until a held-out prediction was scored;
	// PrecisionCI is its 95 % Wilson interval.
	Precision   *float64    `json:"precision"`
	PrecisionCI *[2]float64 `json:"precision_ci,omitempty"`
	// Needed is how many more held-out predictions must be scored before
	// the interval is at most ±ConfidentHalfWidth wide at the precision
	// seen so far.
	Needed int `json:"needed"`
}

// Evaluate replays a history in time order through a fresh Arbiter made
// from cfg (its Holdout and Rand ignored: nothing is acted on in a replay)
// and scores the predictions it makes against the failures that followed.
// The model learns only from what precedes each point: labels become known
// as they would have live, so there is no look-ahead. Prediction records in
// the history are not replayed; those on held-out agents are scored apart
// in [Report.Holdout], and those acted on are counted in [Report.Acted]. A
// failure of an agent that has no sample in the history is not counted.
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
			switch l.score(&cfg, p) {
			case scoreTrue:
				rep.TruePositives++
			case scoreFalse:
				rep.FalsePositives++
			case scoreSudden:
				rep.Unscored++
			default:
				rep.Unverifiable++
			}
		}
		for _, p := range l.held {
			rep.Holdout.Predictions++
			switch l.score(&cfg, p) {
			case scoreTrue:
				rep.Holdout.TruePositives++
			case scoreFalse:
				rep.Holdout.FalsePositives++
			default:
				rep.Holdout.Unscored++
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
		k.Recall = float64(k.Predicted) / float64(k.Failures)
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
	h := &rep.Holdout
	scored := h.TruePositives + h.FalsePositives
	h.Precision = ratio(h.TruePositives, scored)
	if scored > 0 {
		lo, hi := wilson(h.TruePositives, scored)
		h.PrecisionCI = &[2]float64{lo, hi}
	}
	h.Needed = HeldOutNeeded(scored, h.TruePositives)

	rep.Acted = len(rp.acted)
	for i := len(rp.acted) - 1; i >= 0 && len(rep.Evidence) < maxEvidence; i-- {
		rep.Evidence = append(rep.Evidence, rp.acted[i])
	}
	return rep
}

// A prediction's score against what followed it.
const (
	scoreTrue         = iota // a slow-burn failure within the Horizon
	scoreFalse               // the agent lived through the Horizon, or failed after it
	scoreSudden              // a sudden failure within the Horizon came first
	scoreUnverifiable        // the agent stopped, or the history ended, within the Horizon
)

// score says what became of a prediction made at p in this life.
func (l *lifetime) score(cfg *Config, p time.Time) int {
	if l.failKind != "" && !l.failAt.Before(p) && l.failAt.Sub(p) <= cfg.Horizon {
		if cfg.sudden(l.failKind) {
			return scoreSudden
		}
		return scoreTrue
	}
	end := l.last
	switch {
	case l.failKind != "":
		end = l.failAt
	case !l.goneAt.IsZero():
		end = l.goneAt
	}
	if end.Sub(p) >= cfg.Horizon {
		return scoreFalse
	}
	return scoreUnverifiable
}

// ConfidentHalfWidth is the half-width of the 95 % interval around a
// held-out precision that [HeldOutNeeded] aims for.
const ConfidentHalfWidth = 0.1

// wilsonZ is the normal quantile of a 95 % interval.
const wilsonZ = 1.96

// wilson is the 95 % Wilson score interval of k successes in n trials.
func wilson(k, n int) (lo, hi float64) {
	p, nf, z2 := float64(k)/float64(n), float64(n), wilsonZ*wilsonZ
	centre := (p + z2/(2*nf)) / (1 + z2/nf)
	half := wilsonZ / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max(0, centre-half), min(1, centre+half)
}

// HeldOutNeeded is how many more held-out predictions must be scored,
// after n of which k came true, before the 95 % Wilson interval of the
// precision is at most ±ConfidentHalfWidth wide, if the precision stays
// what it is (with none scored yet: as if every one came true, the
// fewest it can be, 16).
func HeldOutNeeded(n, k int) int {
	p := 1.0
	if n > 0 {
		p = float64(k) / float64(n)
	}
	for m := max(n, 1); m < 10_000; m++ {
		kk := int(math.Round(p * float64(m)))
		if lo, hi := wilson(kk, m); (hi-lo)/2 <= ConfidentHalfWidth {
			return m - n
		}
	}
	return 10_000 - n
}

// lifetime is one agent's life in a replay: an id between its first
// sample and its failure or disappearance (ids may be reused).
type lifetime struct {
	agent       string
	first, last time.Time
	preds       []time.Time // the replay's predictions
	held        []time.Time // live predictions on this agent, held out
	failAt      time.Time
	failKind    string
	goneAt      time.Time // stopped without failing
}

type replayed struct {
	cfg   Config
	lives []*lifetime
	acted []Evidence // live predictions acted on, oldest first
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
	rp := replayed{cfg: arb.cfg}

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
			arb.Failed(r.Agent, r.Time, r.Failure)
		case RecordGone:
			if l := current[r.Agent]; l != nil {
				l.goneAt = r.Time
				delete(current, r.Agent)
			}
			arb.Forget(r.Agent)
		case RecordPrediction:
			if !r.HeldOut {
				rp.acted = append(rp.acted, Evidence{Time: r.Time, Agent: r.Agent, Pool: r.Pool, Risk: r.Risk, Reasons: r.Reasons})
			} else if l := current[r.Agent]; l != nil {
				l.held = append(l.held, r.Time)
			}
		}
	}
	return rp
}

// ratio is n/d, nil (JSON null) when d is 0: nothing to measure.
func ratio(n, d int) *float64 {
	if d == 0 {
		return nil
	}
	v := float64(n) / float64(d)
	return &v
}

func medianMS(ds []time.Duration) *float64 {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.SortFunc(s, cmp.Compare)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	v := float64(m) / float64(time.Millisecond)
	return &v
}

// String is the report on one line, for logs.
func (r Report) String() string {
	f := func(v *float64, prec int) string {
		if v == nil {
			return "null"
		}
		return strconv.FormatFloat(*v, 'f', prec, 64)
	}
	return "failures=" + strconv.Itoa(r.Failures) + " predicted=" + strconv.Itoa(r.Predicted) +
		" acted=" + strconv.Itoa(r.Acted) + " unverifiable=" + strconv.Itoa(r.Unverifiable) +
		" precision=" + f(r.Precision, 3) + " recall=" + f(r.Recall, 3) +
		" lead_ms_p50=" + f(r.LeadMSP50, 0) +
		" false_per_agent_hour=" + f(&r.FalsePerAgentHour, 3) + " sudden=" + strconv.Itoa(r.Sudden)
}
