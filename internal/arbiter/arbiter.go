package arbiter

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Arbiter scores agents' risk of failing soon from their telemetry and
// learns from their failures. It does no I/O and starts no goroutines; it
// is safe for concurrent use.
type Arbiter struct {
	mu  sync.Mutex
	cfg Config

	model        model
	learned      bool
	fits         int
	slowFailures int
	train        trainSet
	newHot       int

	agents map[string]*agentState
	pools  map[string]*poolState
	live   map[string]*LiveStats // by pool: predictions and held-out outcomes
	swept  time.Time             // last sweep for stale agents
}

// maxPending bounds the unlabelled samples kept per agent, whatever the
// sampling rate; the oldest are labelled early (as negatives).
const maxPending = 1024

// refitHot is how many new boundary negatives (samples with evidence that
// were not followed by a failure) trigger a refit between failures, so
// false alarms are learned from without waiting for the next failure.
const refitHot = 256

// New returns an Arbiter starting from the hand-set weights.
func New(cfg Config) *Arbiter {
	return &Arbiter{
		cfg:    cfg.withDefaults(),
		model:  priorModel(),
		train:  newTrainSet(),
		agents: make(map[string]*agentState),
		pools:  make(map[string]*poolState),
		live:   make(map[string]*LiveStats),
	}
}

func (a *Arbiter) pool(name string) *poolState {
	ps, ok := a.pools[name]
	if !ok {
		ps = newPoolState()
		a.pools[name] = ps
	}
	return ps
}

// Observe feeds one sample to the agent's detectors and returns its
// current assessment. An agent is known from its first sample until
// [Arbiter.Failed] or [Arbiter.Forget].
func (a *Arbiter) Observe(s Sample) Assessment {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := &a.cfg
	if s.Time.IsZero() {
		s.Time = cfg.Now()
	}
	ps := a.pool(s.Pool)
	st := a.agents[s.Agent]
	if st != nil && st.pool != s.Pool {
		// The same id in another pool is another agent.
		a.drop(st)
		st = nil
	}
	if st == nil {
		st = newAgentState(cfg, s.Agent, s.Pool)
		st.first = s.Time
		a.agents[s.Agent] = st
	}
	dt := time.Second
	if st.n > 0 {
		dt = max(s.Time.Sub(st.last), time.Millisecond)
	}
	st.update(cfg, &s, dt, ps)
	st.n++
	if s.Time.After(st.last) {
		st.last = s.Time
	}
	ps.calls.add(s.Time, float64(s.Calls))

	x := st.features(cfg, ps, s.Time)
	st.x = x
	risk := sigmoid(a.model.logit(&x))
	as := Assessment{
		Agent: s.Agent, Pool: s.Pool, Time: s.Time, Risk: risk,
		Reasons: st.reasons(&a.model, &x, ps, s.Time),
	}

	// Labels: a sample is a negative once the agent has outlived it by
	// Target; until then it waits to see whether a failure follows.
	st.pending = append(st.pending, pendingExample{s.Time, x})
	a.age(st, s.Time)
	a.sweep(s.Time)

	// The pool's recent losses say as much of a fresh agent of the pool as
	// of this one: replacing the agent cannot lower the risk they add, and
	// in a pool whose agents fail per call (5 % hallucination) acting on
	// them drained every agent, spares included, as the pool most needed
	// them. So the risk shown counts them, but only an agent whose own
	// evidence is over the threshold is predicted.
	a.settle(st, s.Time, "")
	own := x
	own[fPoolFailures] = 0
	ownRisk := sigmoid(a.model.logit(&own))
	if risk >= cfg.Threshold && ownRisk >= cfg.Threshold && (st.lastPred.IsZero() || s.Time.Sub(st.lastPred) >= cfg.Horizon) {
		if !st.decided {
			st.decided = true
			st.heldOut = cfg.Rand.Float64() < a.holdoutShare()
		}
		st.lastPred = s.Time
		as.Predicted = true
		as.Act = !st.heldOut
		a.counted(st, s.Time, as.Act)
	}
	as.HeldOut = st.heldOut
	st.assess = as

	if a.newHot >= refitHot && a.slowFailures >= cfg.MinFailures {
		a.refit()
	}
	return as
}

// age labels as negative the pending samples the agent has outlived by
// Target.
func (a *Arbiter) age(st *agentState, now time.Time) {
	cut := now.Add(-a.cfg.Target)
	k := 0
	for k < len(st.pending) && (!st.pending[k].t.After(cut) || len(st.pending)-k > maxPending) {
		x := st.pending[k].x
		if isHot(&x) {
			a.newHot++
		}
		a.train.add(x, false)
		k++
	}
	if k > 0 {
		st.pending = append(st.pending[:0], st.pending[k:]...)
	}
}

// sweep forgets agents not heard of for StaleAfter, at most twice per
// StaleAfter.
func (a *Arbiter) sweep(now time.Time) {
	if now.Sub(a.swept) < a.cfg.StaleAfter/2 {
		return
	}
	a.swept = now
	for _, st := range a.agents {
		if now.Sub(st.last) > a.cfg.StaleAfter {
			a.drop(st)
		}
	}
}

// Failed reports that agent failed at at (the time of the first evidence)
// with a kind such as "oom", "deadline", "exit", "violation" or "kill".
// It is the ground truth the model learns from: samples within Target
// before at become positives, unless the kind is one of
// [Config.SuddenKinds]. The agent is forgotten.
func (a *Arbiter) Failed(agent string, at time.Time, kind string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at.IsZero() {
		at = a.cfg.Now()
	}
	st := a.agents[agent]
	if st == nil {
		return
	}
	a.pool(st.pool).failed(at)
	a.settle(st, at, kind)
	if !a.cfg.sudden(kind) {
		cut := at.Add(-a.cfg.Target)
		for _, p := range st.pending {
			if p.t.After(at) {
				continue
			}
			a.train.add(p.x, !p.t.Before(cut))
		}
		st.pending = nil
		a.slowFailures++
		if a.slowFailures >= a.cfg.MinFailures {
			a.refit()
		}
	}
	a.drop(st)
}

// Forget drops an agent that stopped without failing (drained, scaled
// down, replaced on a prediction). Its samples of the last Target are
// unlabelled: whether it would have failed is unknown, so they are not
// learned from.
func (a *Arbiter) Forget(agent string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.agents[agent]; st != nil {
		a.drop(st)
	}
}

func (a *Arbiter) drop(st *agentState) {
	a.settle(st, st.last, "")
	delete(a.agents, st.agent)
	if ps, ok := a.pools[st.pool]; ok {
		delete(ps.latency, st.agent)
	}
}

func (a *Arbiter) refit() {
	start := a.model
	if !a.learned {
		start = priorModel()
	}
	a.model = a.train.fit(start)
	a.learned = true
	a.fits++
	a.newHot = 0
	a.cfg.Logger.Debug("arbiter model refit", "fits", a.fits, "slow_failures", a.slowFailures,
		"positives", a.train.pos.seen, "negatives", a.train.hot.seen+a.train.cold.seen)
}

// Risks returns the latest assessment of every known agent, riskiest first.
func (a *Arbiter) Risks() []Assessment {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Assessment, 0, len(a.agents))
	for _, st := range a.agents {
		as := st.assess
		as.Reasons = slices.Clone(as.Reasons)
		out = append(out, as)
	}
	slices.SortFunc(out, func(x, y Assessment) int {
		if c := cmp.Compare(y.Risk, x.Risk); c != 0 {
			return c
		}
		return cmp.Compare(x.Agent, y.Agent)
	})
	return out
}

// ModelInfo describes the model in use, for `resilientctl arbiter`.
type ModelInfo struct {
	// Learned is false while the hand-set weights are in use (fewer than
	// MinFailures slow-burn failures seen).
	Learned      bool               `json:"learned"`
	Fits         int                `json:"fits"`
	SlowFailures int                `json:"slow_failures"`
	Positives    int64              `json:"positives"`
	Negatives    int64              `json:"negatives"`
	Bias         float64            `json:"bias"`
	Weights      map[string]float64 `json:"weights"`
}

// Model describes the model in use.
func (a *Arbiter) Model() ModelInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	mi := ModelInfo{
		Learned: a.learned, Fits: a.fits, SlowFailures: a.slowFailures,
		Positives: a.train.pos.seen, Negatives: a.train.hot.seen + a.train.cold.seen,
		Bias: a.model.bias, Weights: make(map[string]float64, numFeatures),
	}
	for i, w := range a.model.weights {
		mi.Weights[featureNames[i]] = w
	}
	return mi
}

// Demand is a pool's expected spare demand ahead from now: forecast
// failure and call rates, the agents at risk and those active.
func (a *Arbiter) Demand(pool string, ahead time.Duration) SpareDemand {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	ps := a.pool(pool)
	d := SpareDemand{
		FailuresPerSec: ps.failRate.forecast(now, ahead),
		CallRate:       ps.calls.forecast(now, ahead),
	}
	for _, st := range a.agents {
		if st.pool != pool {
			continue
		}
		d.Active++
		switch r := st.assess.Risk; {
		case r >= a.cfg.Threshold:
			d.AtRisk++
		case r >= 0.05:
			d.AtRisk += r
		}
	}
	return d
}

// SpareTarget is the spare count pool should hold now under p: see
// [SpareTarget] and [Arbiter.Demand].
func (a *Arbiter) SpareTarget(pool string, p SparePolicy) int {
	return SpareTarget(p, a.Demand(pool, p.ReplaceTime))
}

// MarshalModel returns the model and its training set, to be stored (the
// daemon keeps it in its state dir) and given back to
// [Arbiter.UnmarshalModel] after a restart.
func (a *Arbiter) MarshalModel() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := modelFile{
		Version: modelVersion, Features: featureNames[:],
		Bias: a.model.bias, Weights: a.model.weights[:],
		Learned: a.learned, Fits: a.fits, SlowFailures: a.slowFailures,
		Positives: a.train.pos.file(), Hot: a.train.hot.file(), Cold: a.train.cold.file(),
	}
	return json.Marshal(&f)
}

// UnmarshalModel restores a model stored by [Arbiter.MarshalModel]. On
// error the Arbiter is unchanged; errors wrap [ErrModelMismatch] or
// [ErrModelCorrupt].
func (a *Arbiter) UnmarshalModel(data []byte) error {
	var f modelFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%w: %w", ErrModelCorrupt, err)
	}
	if f.Version != modelVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrModelMismatch, f.Version, modelVersion)
	}
	if err := checkFeatures(f.Features); err != nil {
		return err
	}
	if len(f.Weights) != numFeatures {
		return fmt.Errorf("%w: %d weights, want %d", ErrModelCorrupt, len(f.Weights), numFeatures)
	}
	m := model{bias: f.Bias}
	copy(m.weights[:], f.Weights)
	for _, v := range append([]float64{m.bias}, f.Weights...) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: non-finite weight", ErrModelCorrupt)
		}
	}
	ts := newTrainSet()
	for _, r := range []struct {
		dst *reservoir
		src reservoirFile
	}{{&ts.pos, f.Positives}, {&ts.hot, f.Hot}, {&ts.cold, f.Cold}} {
		if err := r.dst.load(r.src); err != nil {
			return err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.model, a.learned, a.fits, a.slowFailures, a.train = m, f.Learned, f.Fits, f.SlowFailures, ts
	a.newHot = 0
	return nil
}
