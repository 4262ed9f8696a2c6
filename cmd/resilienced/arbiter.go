package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/arbiter"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// arbiterWiring feeds the Arbiter a sample of each agent every second
// that brought it something new (calls, stderr lines, a fresh telemetry
// sample), replaces agents it
// predicts will fail (drain: a spare takes over first, the call in flight
// finishes), tells it the ground truth of every failure, sizes each pool's
// warm spares from its forecast, and keeps a bounded journal of records
// for `resilientctl arbiter eval`.
type arbiterWiring struct {
	d    *daemon
	arb  *arbiter.Arbiter
	loop *arbiter.Loop

	mu      sync.Mutex
	lines   map[string][]string  // agent → stderr lines since the last sample
	calls   map[string]uint64    // agent → calls at the last sample
	lat     map[string]latState  // agent → call latency at the last sample
	fed     map[string]time.Time // agent → time of the telemetry sample last fed
	fedAt   map[string]time.Time // agent → when it was last fed
	journal *arbiter.FileJournal // nil if it could not be opened
	fits    int
}

// evalRecords bounds what `resilientctl arbiter eval` reads of the
// journal (the newest records), so that evaluating costs bounded memory.
const evalRecords = 200_000

const modelBucket, modelKey = "arbiter", "model"

func (d *daemon) startArbiter(ctx context.Context, holdout float64) *arbiterWiring {
	w := &arbiterWiring{
		d:     d,
		lines: make(map[string][]string),
		calls: make(map[string]uint64),
		lat:   make(map[string]latState),
		fed:   make(map[string]time.Time),
		fedAt: make(map[string]time.Time),
	}
	// On disk, not in memory: a ring in memory grew the daemon's RSS for
	// hours until it was full (by ~100 MB), more quickly the more agents.
	j, err := arbiter.OpenFileJournal(filepath.Join(d.cfg.Load().StateDir, "arbiter-journal"), arbiter.FileJournalOptions{Logger: d.log})
	if err != nil {
		d.log.Warn("arbiter: no journal; `resilientctl arbiter eval` will have nothing to judge", "err", err)
	} else {
		w.journal = j
	}
	acfg := arbiter.Config{Logger: d.log, Holdout: holdout}
	switch {
	case holdout == 0:
		acfg.Holdout = -1 // Config's "none"; its zero value means the default
	case holdout < 0:
		acfg.Holdout = 0 // the adaptive default
	}
	w.arb = arbiter.New(acfg)
	if b, err := d.store.Get(modelBucket, modelKey); err == nil {
		if err := w.arb.UnmarshalModel(b); err != nil {
			d.log.Warn("arbiter: discarding the stored model", "err", err)
		} else {
			w.fits = w.arb.Model().Fits
		}
	}
	w.loop = &arbiter.Loop{Arbiter: w.arb, Sampler: w, Replacer: w, Interval: time.Second, Logger: d.log, OnPrediction: w.heldOut}
	if w.journal != nil {
		w.loop.Journal = w.journal
	}
	go w.loop.Run(ctx)
	go w.follow()
	return w
}

// onStderr keeps an agent's recent log lines for the templater.
func (w *arbiterWiring) onStderr(agentID, line string) {
	w.mu.Lock()
	if l := w.lines[agentID]; len(l) < 200 {
		w.lines[agentID] = append(l, line)
	}
	w.mu.Unlock()
}

// Samples implements arbiter.Sampler.
func (w *arbiterWiring) Samples(ctx context.Context) ([]arbiter.Sample, error) {
	now := time.Now()
	as, err := w.d.sup.Agents("")
	if err != nil {
		return nil, err
	}
	cfg := w.d.cfg.Load()
	out := make([]arbiter.Sample, 0, len(as))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range as {
		if a.State != supervisor.AgentActive && a.State != supervisor.AgentSpare {
			continue
		}
		st, haveTel := w.d.tel.Latest(a.ID)
		if last, seen := w.calls[a.ID]; seen && last == a.Calls && len(w.lines[a.ID]) == 0 &&
			(!haveTel || !st.Time.After(w.fed[a.ID])) && now.Sub(w.fedAt[a.ID]) < arbiterIdleFeed {
			// Nothing new since its last sample (an idle agent between
			// its telemetry samples): observing it again would journal
			// and score the same figures, every second, for every idle
			// agent. Its next fresh sample carries the time since.
			continue
		}
		w.fedAt[a.ID] = now
		s := arbiter.Sample{Time: now, Agent: a.ID, Pool: a.Pool}
		if pc := cfg.Pool(a.Pool); pc != nil {
			s.MemLimit = pc.Limits.Memory
			s.CallDeadline = pc.Contract.Deadline
		}
		s.Calls = int(a.Calls - w.calls[a.ID])
		w.calls[a.ID] = a.Calls
		ls := w.lat[a.ID].next(a)
		w.lat[a.ID] = ls
		s.CallLatency = ls.mean
		if haveTel {
			w.fed[a.ID] = st.Time
			if st.HaveProc {
				s.RSS = int64(st.Proc.RSSBytes)
			}
			if st.HaveRates {
				s.SyscallsPerSec = st.Rates.SyscallsPerSec
				s.SyscallErrorsPerSec = st.Rates.ErrorsPerSec
				s.SyscallP99 = st.Rates.P99
			}
			if st.HavePSI {
				s.PSIMemory = st.PSI.Memory.Some.Avg10
				s.PSICPU = st.PSI.CPU.Some.Avg10
			}
		}
		s.LogLines = w.lines[a.ID]
		delete(w.lines, a.ID)
		out = append(out, s)
	}
	// Agents gone since the last sample: forget their counters and lines.
	live := make(map[string]bool, len(as))
	for _, a := range as {
		live[a.ID] = true
	}
	gone := func(id string) bool { return !live[id] }
	maps.DeleteFunc(w.calls, func(id string, _ uint64) bool { return gone(id) })
	maps.DeleteFunc(w.lat, func(id string, _ latState) bool { return gone(id) })
	maps.DeleteFunc(w.fed, func(id string, _ time.Time) bool { return gone(id) })
	maps.DeleteFunc(w.fedAt, func(id string, _ time.Time) bool { return gone(id) })
	maps.DeleteFunc(w.lines, func(id string, _ []string) bool { return gone(id) })
	// Pools' spares follow the forecast, within [spares, max_spares].
	for _, p := range w.d.sup.Pools() {
		pc := p.Config()
		if pc.MaxSpares <= pc.Spares {
			continue
		}
		p.SetSpares(w.arb.SpareTarget(p.Name(), arbiter.SparePolicy{Min: pc.Spares, Max: pc.MaxSpares, ReplaceTime: pc.StartTimeout / 10}))
	}
	w.persistModel()
	return out, nil
}

// arbiterIdleFeed is how long an agent with nothing new goes without a
// sample: well within the Arbiter's StaleAfter (a minute), after which it
// would forget the agent.
const arbiterIdleFeed = 20 * time.Second

// latState is what an agent's call counters were at the previous sample.
type latState struct {
	ok    uint64
	total time.Duration
	mean  time.Duration // of the calls between the two samples before
}

// next is the mean latency of the calls that succeeded since the previous
// sample; with none, the previous mean stands. The supervisor's EWMA would
// lag by ~20 calls: on an agent whose calls slow down steadily it reads
// half the real latency once calls take a second, and a deadline would be
// seen coming only once it had been missed.
func (l latState) next(a supervisor.AgentStatus) latState {
	n := latState{ok: a.OKCalls, total: a.LatencyTotal, mean: l.mean}
	if a.OKCalls < l.ok || a.LatencyTotal < l.total {
		l = latState{} // counters restarted: another agent under this id
	}
	if a.OKCalls > l.ok {
		n.mean = (a.LatencyTotal - l.total) / time.Duration(a.OKCalls-l.ok)
	}
	if n.mean == 0 {
		n.mean = a.Latency
	}
	return n
}

// heldOut makes a prediction on a held-out agent an event too, so that
// whoever follows events (a chaos experiment, resilientctl top) sees every
// prediction; Replace emits those acted on.
func (w *arbiterWiring) heldOut(a arbiter.Assessment) {
	if a.Act {
		return
	}
	w.d.sup.Emit(supervisor.Event{Kind: supervisor.EventPrediction, Pool: a.Pool, Agent: a.Agent,
		Reason: fmt.Sprintf("%s risk %.2f: %s", supervisor.PredictionHeldOut, a.Risk, strings.Join(a.Reasons, "; "))})
}

// Replace implements arbiter.Replacer: the agent is drained, so that calls
// see no failure at all.
func (w *arbiterWiring) Replace(ctx context.Context, a arbiter.Assessment) error {
	reason := fmt.Sprintf("risk %.2f: %s", a.Risk, strings.Join(a.Reasons, "; "))
	w.d.sup.Emit(supervisor.Event{Kind: supervisor.EventPrediction, Pool: a.Pool, Agent: a.Agent, Reason: reason})
	if err := w.d.sup.Drain(a.Agent, "predicted to fail: "+reason); err != nil {
		return err
	}
	return w.loop.Gone(ctx, a.Agent, a.Pool, time.Now())
}

func (w *arbiterWiring) history() ([]arbiter.Record, error) {
	if w.journal == nil {
		return nil, errors.New("the Arbiter's journal could not be opened (see the daemon's log)")
	}
	return w.journal.Records(evalRecords)
}

// follow tells the Arbiter the ground truth: every failure, with its kind
// (sudden ones such as kills are kept apart by the Arbiter), and every
// agent that is gone.
func (w *arbiterWiring) follow() {
	ch, cancel := w.d.sup.Subscribe(4096)
	defer cancel()
	ctx := context.Background()
	for {
		select {
		case <-w.d.stopBG:
			return
		case ev := <-ch:
			switch ev.Kind {
			case supervisor.EventExit, supervisor.EventOOM, supervisor.EventViolation, supervisor.EventDeadline, supervisor.EventHang:
				kind := ev.Kind
				if ev.Injected && kind != supervisor.EventOOM {
					kind = supervisor.EventKill // an injected fault: sudden, not a missed prediction
				}
				w.loop.Failed(ctx, ev.Agent, ev.Pool, ev.Time, string(kind))
			case supervisor.EventRestart, supervisor.EventBreach, supervisor.EventChaos:
				if ev.Agent != "" {
					w.loop.Failed(ctx, ev.Agent, ev.Pool, ev.Time, "kill")
				}
			case supervisor.EventStop:
				w.loop.Gone(ctx, ev.Agent, ev.Pool, ev.Time)
			}
			if ev.Kind == supervisor.EventKill && ev.Reason != "" {
				// kills with a reason are operator or chaos kills: sudden
				w.loop.Failed(ctx, ev.Agent, ev.Pool, ev.Time, "kill")
			}
		}
	}
}

// persistModel stores the model whenever it was refitted.
func (w *arbiterWiring) persistModel() {
	if m := w.arb.Model(); m.Fits != w.fits {
		if b, err := w.arb.MarshalModel(); err == nil {
			if err := w.d.store.Put(modelBucket, modelKey, b); err == nil {
				w.fits = m.Fits
			}
		}
	}
}

// ArbiterStatus is the answer to GET /v1/arbiter.
type ArbiterStatus struct {
	Risks []arbiter.Assessment `json:"risks"`
	Model arbiter.ModelInfo    `json:"model"`
}

func (w *arbiterWiring) routes(s *api.Server) {
	s.Handle("GET /v1/arbiter", func(rw http.ResponseWriter, r *http.Request) {
		risks := w.arb.Risks()
		if risks == nil {
			risks = []arbiter.Assessment{}
		}
		api.WriteJSON(rw, http.StatusOK, ArbiterStatus{Risks: risks, Model: w.arb.Model()})
	})
	s.Handle("GET /v1/arbiter/eval", func(rw http.ResponseWriter, r *http.Request) {
		h, err := w.history()
		if err != nil {
			api.WriteError(rw, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: err.Error()})
			return
		}
		api.WriteJSON(rw, http.StatusOK, arbiter.Evaluate(h, arbiter.Config{}))
	})
}

func (w *arbiterWiring) close() {
	w.persistModel()
	if w.journal != nil {
		w.journal.Close()
	}
}
