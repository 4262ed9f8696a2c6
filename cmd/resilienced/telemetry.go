package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
	"github.com/resilienced/resilienced/internal/telemetry"
)

// telemetryWiring connects the eBPF probes (or, without them, procfs and
// PSI) to the agents: each agent's cgroup is watched from before its first
// instruction, deaths and OOM kills reported by the kernel become evidence
// for the supervisor, and per-agent stats are served to resilientctl.
type telemetryWiring struct {
	d      *daemon
	probes *telemetry.Probes // nil without eBPF
	coll   *telemetry.Collector

	mu     sync.Mutex
	agents map[uint64]watched // cgroup id → agent
	byID   map[string]uint64
	latest map[string]telemetry.Stats // agent id → last sample
}

type watched struct {
	id, path string
}

func (d *daemon) startTelemetry(ctx context.Context) *telemetryWiring {
	t := &telemetryWiring{d: d, agents: make(map[uint64]watched), byID: make(map[string]uint64), latest: make(map[string]telemetry.Stats)}
	probes, err := telemetry.Load(ctx, telemetry.Options{Logger: d.log})
	if err != nil {
		d.mode.EBPF = false
		d.mode.Notes = append(d.mode.Notes, "eBPF telemetry off, per-agent stats come from procfs and PSI: "+err.Error())
		t.coll = &telemetry.Collector{}
		return t
	}
	d.mode.EBPF = true
	for _, e := range probes.Unavailable() {
		d.mode.Notes = append(d.mode.Notes, "eBPF telemetry partly off: "+e.Error())
	}
	t.probes = probes
	t.coll = &telemetry.Collector{Probes: probes}
	go t.events()
	return t
}

// onSandbox watches a new agent's cgroup before the agent starts in it.
func (t *telemetryWiring) onSandbox(agentID string, sb supervisor.Sandbox) {
	t.mu.Lock()
	t.agents[sb.ID()] = watched{id: agentID, path: sb.Path()}
	t.byID[agentID] = sb.ID()
	t.mu.Unlock()
	if t.probes == nil {
		return
	}
	if err := t.probes.Watch(sb.ID(), sb.Path()); err != nil {
		// Telemetry is an aid, not a precondition: the agent runs unwatched.
		t.d.log.Warn("telemetry: cannot watch agent", "agent", agentID, "err", err)
	}
}

func (t *telemetryWiring) onAgentGone(agentID string, sb supervisor.Sandbox) {
	t.mu.Lock()
	cg, ok := t.byID[agentID]
	delete(t.byID, agentID)
	delete(t.agents, cg)
	t.mu.Unlock()
	if !ok {
		return
	}
	t.coll.Forget(telemetry.Agent{CgroupID: cg})
	if t.probes != nil {
		t.probes.Unwatch(cg)
	}
}

// events turns the kernel's word on deaths into evidence: an agent's main
// process exiting, or an OOM kill in its cgroup. The supervisor also
// learns of an exit from wait(); whichever comes first acts, the other is
// a no-op.
func (t *telemetryWiring) events() {
	for ev := range t.probes.Events() {
		t.mu.Lock()
		w, ok := t.agents[ev.CgroupID]
		t.mu.Unlock()
		if !ok {
			continue
		}
		switch ev.Kind {
		case telemetry.EventOOM:
			t.d.sup.Kill(w.id, supervisor.EventOOM, fmt.Sprintf("OOM kill of pid %d in its cgroup (kernel event)", ev.PID), ev.Time)
		case telemetry.EventExit:
			_, pid, err := t.d.sup.AgentSandbox(w.id)
			if err != nil || pid != ev.PID {
				continue // a child of the agent; the agent lives on
			}
			reason := fmt.Sprintf("exited with status %d (kernel event)", ev.ExitCode)
			if ev.Signal != 0 {
				reason = fmt.Sprintf("killed by signal %d, %s (kernel event)", ev.Signal, syscall.Signal(ev.Signal))
			}
			t.d.sup.Kill(w.id, supervisor.EventExit, reason, ev.Time)
		}
	}
}

// routes serves GET /v1/agents/{id}/telemetry.
func (t *telemetryWiring) routes(s *api.Server) {
	s.Handle("GET /v1/agents/{id}/telemetry", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		sb, pid, err := t.d.sup.AgentSandbox(id)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		a := telemetry.Agent{PID: pid}
		if sb != nil {
			a.CgroupID, a.CgroupPath = sb.ID(), sb.Path()
		}
		t.mu.Lock()
		st, ok := t.latest[id]
		t.mu.Unlock()
		if !ok {
			if st, err = t.coll.Collect(a); err != nil {
				api.WriteError(w, err)
				return
			}
		}
		api.WriteJSON(w, http.StatusOK, api.NewAgentTelemetry(id, t.probes != nil, st))
	})
}

// sample collects agents' stats at a rate that follows their work and what
// the Arbiter needs of them: an agent that served calls since its last
// sample is sampled every second, so that rates are over a known, short
// interval and readers (resilientctl, the Arbiter) see a busy agent's trend
// at once. An idle agent's counters do not move: it is sampled every
// idleSampleEvery, which grows with the number of idle agents so that they
// cost at most idleSamplesPerSecond samples a second (one sample reads
// cgroup.procs, each process's stat and fd directory and three PSI files:
// ~150 µs), spread over the seconds rather than in a burst. An idle agent
// whose RSS grew between its last two samples (what a leak looks like to
// the Arbiter) is watched as closely as at 100 agents: every 10 s.
func (t *telemetryWiring) sample() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var plan samplePlan
	for {
		select {
		case <-t.d.stopBG:
			return
		case <-tick.C:
		}
		now := time.Now()
		as, _ := t.d.sup.Agents("")
		plan.begin(len(as))
		for _, a := range as {
			if a.PID == 0 || !plan.due(a.ID, a.Calls, now) {
				continue
			}
			st, err := t.coll.Collect(telemetry.Agent{CgroupID: a.CgroupID, CgroupPath: a.Cgroup, PID: a.PID})
			if err != nil {
				continue
			}
			plan.sampled(a.ID, a.Calls, now, st)
			t.mu.Lock()
			t.latest[a.ID] = st
			t.mu.Unlock()
		}
		t.mu.Lock()
		for id := range t.latest {
			if !plan.seen[id] {
				delete(t.latest, id)
			}
		}
		t.mu.Unlock()
		plan.end()
	}
}

// samplePlan decides, once a second, which agents the telemetry loop
// samples (see sample).
type samplePlan struct {
	last     map[string]lastSample
	seen     map[string]bool // agents of this round
	every    time.Duration   // an idle agent's period this round
	idleLeft int             // idle samples left this round
}

type lastSample struct {
	at      time.Time
	calls   uint64
	rss     uint64
	growing bool // its RSS grew between its last two samples
}

func (p *samplePlan) begin(agents int) {
	if p.last == nil {
		p.last, p.seen = map[string]lastSample{}, map[string]bool{}
	}
	clear(p.seen)
	p.every = idleSampleEvery(agents)
	p.idleLeft = idleSamplesPerSecond
}

// due reports whether the agent is to be sampled now: a new agent or one
// that served calls since its last sample always; an idle one once its
// period has passed, within this round's idle samples.
func (p *samplePlan) due(id string, calls uint64, now time.Time) bool {
	p.seen[id] = true
	l, known := p.last[id]
	if !known || l.calls != calls {
		return true
	}
	period := p.every
	if l.growing {
		period = idleSampleMin
	}
	if now.Sub(l.at) < period || p.idleLeft == 0 {
		return false
	}
	p.idleLeft--
	return true
}

func (p *samplePlan) sampled(id string, calls uint64, now time.Time, st telemetry.Stats) {
	l, known := p.last[id]
	next := lastSample{at: now, calls: calls, rss: l.rss}
	if st.HaveProc {
		next.rss = st.Proc.RSSBytes
		next.growing = known && st.Proc.RSSBytes > l.rss
	}
	p.last[id] = next
}

// end forgets the agents gone this round.
func (p *samplePlan) end() {
	for id := range p.last {
		if !p.seen[id] {
			delete(p.last, id)
		}
	}
}

// idleSamplesPerSecond bounds the samples a second spent on idle agents:
// ~0.15 % of a CPU.
const idleSamplesPerSecond = 10

// idleSampleMin is how often an idle agent is sampled when there are few
// of them, or when its memory moves.
const idleSampleMin = 10 * time.Second

// idleSampleEvery is how often each of n agents is sampled while idle:
// every idleSampleMin, or less often once there are more than
// idleSamplesPerSecond*10 (1,000 agents: every 100 s; the Arbiter is fed
// each agent every 20 s regardless, with its last sample).
func idleSampleEvery(n int) time.Duration {
	return max(idleSampleMin, time.Duration(n/idleSamplesPerSecond)*time.Second)
}

// Latest returns an agent's last sample.
func (t *telemetryWiring) Latest(id string) (telemetry.Stats, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.latest[id]
	return st, ok
}

func (t *telemetryWiring) close() {
	if t.probes != nil {
		t.probes.Close()
	}
}
