package arbiter

import (
	"cmp"
	"slices"
	"time"
)

// LiveStats are one pool's predictions since the Arbiter started, and the
// held-out ones scored as their horizon ends: the figures a dashboard
// follows, where [Evaluate] replays the journal on demand.
type LiveStats struct {
	Pool string `json:"pool"`
	// Acted and HeldOut count predictions acted on and left alone.
	Acted   uint64 `json:"acted"`
	HeldOut uint64 `json:"held_out"`
	// CameTrue: a held-out agent failed (slow-burn) within the Horizon
	// after the prediction; FalseAlarms: it lived through the Horizon, or
	// failed after it. A held-out prediction whose agent failed suddenly,
	// or stopped, within the Horizon is not scored.
	CameTrue    uint64 `json:"came_true"`
	FalseAlarms uint64 `json:"false_alarms"`
	// MaxRisk is the highest risk among the pool's agents now.
	MaxRisk float64 `json:"max_risk"`
}

func (a *Arbiter) liveStats(pool string) *LiveStats {
	ls := a.live[pool]
	if ls == nil {
		ls = &LiveStats{Pool: pool}
		a.live[pool] = ls
	}
	return ls
}

// counted records a prediction on st made at t.
func (a *Arbiter) counted(st *agentState, t time.Time, acted bool) {
	ls := a.liveStats(st.pool)
	if acted {
		ls.Acted++
		return
	}
	ls.HeldOut++
	a.settle(st, t, "")
	st.heldOpen = append(st.heldOpen, t)
}

// settle scores st's open held-out predictions at now: those whose horizon
// is over are false alarms; with a failure (kind not empty) at now, those
// still standing came true, or are unscored if the failure was sudden.
// It runs on every prediction, failure and departure of the agent; a
// prediction's horizon may end between them, which only delays its score.
func (a *Arbiter) settle(st *agentState, now time.Time, kind string) {
	if len(st.heldOpen) == 0 {
		return
	}
	ls := a.liveStats(st.pool)
	k := 0
	for _, p := range st.heldOpen {
		switch {
		case now.Sub(p) > a.cfg.Horizon:
			ls.FalseAlarms++
		case kind != "" && !a.cfg.sudden(kind):
			ls.CameTrue++
		case kind != "":
			// sudden: nothing to score
		default:
			st.heldOpen[k] = p
			k++
		}
	}
	st.heldOpen = st.heldOpen[:k]
}

// holdoutShare is the share of agents to hold out now (see Config.Holdout).
func (a *Arbiter) holdoutShare() float64 {
	if !a.cfg.autoHoldout {
		return a.cfg.Holdout
	}
	var n, k uint64
	for _, ls := range a.live {
		n += ls.CameTrue + ls.FalseAlarms
		k += ls.CameTrue
	}
	if HeldOutNeeded(int(n), int(k)) > 0 {
		return AutoHoldout
	}
	return SettledHoldout
}

// Live returns every pool's live figures, by pool name.
func (a *Arbiter) Live() []LiveStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	risk := map[string]float64{}
	for _, st := range a.agents {
		risk[st.pool] = max(risk[st.pool], st.assess.Risk)
		a.liveStats(st.pool)
	}
	out := make([]LiveStats, 0, len(a.live))
	for _, ls := range a.live {
		s := *ls
		s.MaxRisk = risk[s.Pool]
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y LiveStats) int { return cmp.Compare(x.Pool, y.Pool) })
	return out
}
