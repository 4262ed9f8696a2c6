package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/adopt"
	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
)

// Agents outlive the daemon (internal/adopt): every ready agent's files and
// state record are kept by a Keeper outside the supervisor's memory; at a
// handover the supervisor leaves its agents running; the next instance's
// supervisor adopts them before it starts any agent of their pools.

// Event kinds of adoption.
const (
	// EventAdopt: an agent a previous instance left was taken back (reason:
	// its pid and state).
	EventAdopt EventKind = "adopt"
	// EventAdoptRefused: one was not, and was killed (reason: why).
	EventAdoptRefused EventKind = "adopt_refused"
)

// Keeper keeps agents' files and state records outside the daemon
// (*adopt.Keeper). Its methods are called with pool locks held and must
// not block.
type Keeper interface {
	// Keep keeps a ready agent, whose files src gives when wanted.
	Keep(rec adopt.Record, src adopt.Source) error
	// Adopt keeps an adopted agent's files, already in the store; src
	// is nil for an agent with no process handle here.
	Adopt(rec adopt.Record, files adopt.Files, src adopt.Source) error
	Update(id string, change func(*adopt.Record))
	// Hold takes an agent's files for a handover, before this process
	// closes its ends of its pipes.
	Hold(id string) error
	Forget(id string)
}

// ConfigDigest identifies a pool configuration for adoption: an agent
// started with another one is rolled. Replicas and spares are left out: a
// change of them resizes a pool without touching its agents.
func ConfigDigest(pc config.Pool) string {
	pc.Replicas, pc.Spares, pc.MaxSpares, pc.MaxReplicas = 0, 0, 0, 0
	return adopt.ConfigDigest(pc)
}

// configDigestLocked is ConfigDigest of the pool's configuration, encoded
// once per configuration: every replacement records it. Called with p.mu
// held.
func (p *Pool) configDigestLocked() string {
	if p.digest == "" || p.digestGen != p.cfgGen {
		p.digest, p.digestGen = ConfigDigest(p.cfg), p.cfgGen
	}
	return p.digest
}

// keep hands a ready agent to the Keeper. Called with p.mu held, so that
// its state changes reach the record in order.
func (p *Pool) keepLocked(sl *slot) {
	k := p.sup.opts.Keeper
	if k == nil || sl.a == nil {
		return
	}
	src := handlesOf(sl.a)
	if src == nil {
		return // a test's fake process
	}
	rec := p.recordLocked(sl, p.configDigestLocked())
	if err := k.Keep(rec, src); err != nil {
		p.log.Warn("agent will not outlive the daemon", "agent", sl.id, "err", err)
	}
}

// handlesOf is the Keeper's source of a's files: copies made when the
// Keeper asks (under a store at once, else at a handover), so that no
// running agent costs the daemon a second set of descriptors. nil for a
// test's fake process.
func handlesOf(a process) adopt.Source {
	h, ok := a.(interface {
		Handles() (pidfd, stdin, stdout, stderr *os.File, err error)
	})
	if !ok {
		return nil
	}
	return func() (adopt.Files, error) {
		pidfd, stdin, stdout, stderr, err := h.Handles()
		return adopt.Files{Pidfd: pidfd, Stdin: stdin, Stdout: stdout, Stderr: stderr}, err
	}
}

func (p *Pool) recordLocked(sl *slot, digest string) adopt.Record {
	rec := adopt.Record{
		ID: sl.id, Pool: p.name, PID: sl.a.PID(), ConfigDigest: digest,
		State: string(sl.state), Protocol: string(p.cfg.Protocol), Started: sl.started,
		Served: sl.served.Load(), IsolateReason: sl.isolateReason, IsolatedAt: sl.isolatedAt,
	}
	rec.StartTime, _ = adopt.StartTime(rec.PID)
	if sl.sb != nil {
		rec.Cgroup = sl.sb.Path()
	}
	if ts := sl.a.Tools(); len(ts) > 0 {
		rec.Tools, _ = json.Marshal(ts)
	}
	return rec
}

// noteStateLocked writes sl's new state into its record. Called with p.mu
// held, by transitionLocked and isolate.
func (p *Pool) noteStateLocked(sl *slot) {
	if p.sup == nil {
		return // a bare pool of a test
	}
	k := p.sup.opts.Keeper
	if k == nil || sl.state == AgentDead || sl.state == AgentStarting {
		return
	}
	state, reason, at, served := string(sl.state), sl.isolateReason, sl.isolatedAt, sl.served.Load()
	k.Update(sl.id, func(r *adopt.Record) {
		r.State, r.IsolateReason, r.IsolatedAt, r.Served = state, reason, at, served
	})
}

// forget drops a gone agent's kept files (not those of one handed over).
func (p *Pool) forget(sl *slot) {
	if k := p.sup.opts.Keeper; k != nil && !sl.kept.Load() {
		k.Forget(sl.id)
	}
}

// Handover stops the supervisor for a next instance of the daemon, which
// adopts its agents: active, spare and isolated agents are left running
// as they are, in their cgroups, with only this process's ends of their
// pipes closed (the Keeper holds its own); agents starting or draining
// are stopped. The caller has stopped taking calls. It returns the ids
// of the agents left.
func (s *Supervisor) Handover(ctx context.Context) []string {
	s.mu.Lock()
	if !s.closed {
		close(s.quit)
	}
	s.closed = true
	pools := make([]*Pool, 0, len(s.pools))
	for _, name := range s.order {
		if p, ok := s.pools[name]; ok {
			pools = append(pools, p)
		}
	}
	s.mu.Unlock()
	var mu sync.Mutex
	var left []string
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() {
			ids := p.handover(ctx)
			mu.Lock()
			left = append(left, ids...)
			mu.Unlock()
		})
	}
	wg.Wait()
	s.bg.Wait()
	return left
}

func (p *Pool) handover(ctx context.Context) []string {
	now := p.sup.opts.Now()
	var left []string
	p.mu.Lock()
	p.state = PoolStopped
	p.reason = "handed over to the next instance"
	for _, id := range sortedSlotIDs(p.slots) {
		sl := p.slots[id]
		switch sl.state {
		case AgentActive, AgentSpare, AgentIsolated:
		default:
			continue
		}
		if sl.a == nil && sl.keptPID == 0 {
			continue
		}
		if k := p.sup.opts.Keeper; k != nil {
			// Its worker closes this process's ends of its pipes.
			if err := k.Hold(sl.id); err != nil {
				p.log.Warn("an agent's files cannot be handed over", "agent", sl.id, "err", err)
			}
		}
		sl.kept.Store(true) // destroy leaves process and cgroup alone
		sl.graceful.Store(true)
		if l, ok := sl.sb.(interface{ Leave() error }); ok {
			l.Leave()
		}
		p.mustTransitionLocked(sl, AgentDead, now)
		left = append(left, sl.id)
	}
	// Only now: their workers, which the pool's going down ends, find
	// them kept.
	p.closeDownLocked()
	p.mu.Unlock()
	p.stopAgents(ctx) // what is left: starting and draining agents
	p.dropSandbox()
	p.waitWorkers(ctx)
	return left
}

// AdoptOutcome is what became of one agent a previous instance left.
type AdoptOutcome struct {
	ID, Pool string
	Adopted  bool
	Reason   string
}

// Adopt takes back the agents a previous instance left, checked by
// adopt.Check: each is pinged (its protocol's ping, dropping what the
// previous instance left unread) and, if it answers, joins its pool as it
// was (active or spare) when Apply starts the pool; isolated ones are
// listed again as isolated. An agent whose pool is gone, or that does not
// answer, is killed. An agent whose pool configuration changed is rolled
// once its pool starts. Call it before the first Apply; it takes
// ownership of the agents' files.
func (s *Supervisor) Adopt(ctx context.Context, cfg *config.Config, agents []*adopt.Agent) []AdoptOutcome {
	out := make([]AdoptOutcome, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() { out[i] = s.adoptOne(ctx, cfg, a) })
	}
	wg.Wait()
	for _, o := range out {
		kind := EventAdopt
		if !o.Adopted {
			kind = EventAdoptRefused
			s.log.Warn("agent left by the previous instance not adopted", "agent", o.ID, "pool", o.Pool, "reason", o.Reason)
		}
		s.emit(Event{Kind: kind, Pool: o.Pool, Agent: o.ID, Reason: o.Reason})
	}
	return out
}

func (s *Supervisor) adoptOne(ctx context.Context, cfg *config.Config, a *adopt.Agent) AdoptOutcome {
	rec := a.Record
	o := AdoptOutcome{ID: a.ID}
	if rec != nil {
		o.Pool = rec.Pool
	}
	refuse := func(why string, sb Sandbox) AdoptOutcome {
		s.killLeft(a, sb)
		o.Reason = why
		return o
	}
	if err := adopt.Check(a); err != nil {
		return refuse(err.Error(), nil)
	}
	pc := cfg.Pool(rec.Pool)
	if pc == nil {
		return refuse("its pool "+rec.Pool+" is no longer configured", s.adoptSandbox(rec))
	}
	sb := s.adoptSandbox(rec)
	if rec.Cgroup != "" && sb == nil {
		return refuse("its cgroup cannot be taken over", nil)
	}
	if AgentState(rec.State) == AgentIsolated {
		s.mu.Lock()
		s.adopting = append(s.adopting, &adoptee{rec: rec, sb: sb, files: a.Files})
		s.mu.Unlock()
		o.Adopted, o.Reason = true, fmt.Sprintf("pid %d, isolated: %s", rec.PID, rec.IsolateReason)
		return o
	}
	var tools []agent.Tool
	if len(rec.Tools) > 0 {
		json.Unmarshal(rec.Tools, &tools)
	}
	p := &Pool{sup: s, name: pc.Name, log: s.log.With("pool", pc.Name), cfg: *pc}
	tail := newLogTail(rec.ID)
	// The agent owns its pidfd and pipes (no copies: the store has its
	// own, and a handover makes them); the record stays for the Keeper.
	own := a.Files
	ag, err := agent.Adopt(p.agentConfig(rec.ID, *pc, tail), agent.Adopted{PID: rec.PID, Pidfd: own.Pidfd, Stdin: own.Stdin, Stdout: own.Stdout, Stderr: own.Stderr, Tools: tools})
	if err != nil {
		return refuse(err.Error(), sb)
	}
	a.Files = adopt.Files{State: own.State}
	timeout := pc.PingTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, max(timeout, 2*time.Second))
	err = ag.Resync(pctx)
	cancel()
	if err != nil {
		ag.Signal(syscall.SIGKILL) // its pidfd is the agent's now
		ag.Close()
		return refuse("no answer to its ping: "+err.Error(), sb)
	}
	s.mu.Lock()
	s.adopting = append(s.adopting, &adoptee{rec: rec, sb: sb, files: a.Files, a: realProcess{ag}, tail: tail, digestOK: rec.ConfigDigest == ConfigDigest(*pc)})
	s.mu.Unlock()
	o.Adopted, o.Reason = true, fmt.Sprintf("pid %d, %s", rec.PID, rec.State)
	if rec.ConfigDigest != ConfigDigest(*pc) {
		o.Reason += ", its pool's config changed: rolled"
	}
	return o
}

// adoptSandbox takes over an agent's cgroup, or returns nil.
func (s *Supervisor) adoptSandbox(rec *adopt.Record) Sandbox {
	sbs, ok := s.opts.Sandboxes.(interface {
		Adopt(pool, agent string) (Sandbox, error)
	})
	if !ok || rec.Cgroup == "" {
		return nil
	}
	sb, err := sbs.Adopt(rec.Pool, rec.ID)
	if err != nil {
		return nil
	}
	return sb
}

// killLeft kills an agent that is not adopted: its cgroup, else its
// process through its pidfd; and closes its files.
func (s *Supervisor) killLeft(a *adopt.Agent, sb Sandbox) {
	if sb != nil {
		sb.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := sb.Destroy(ctx); err != nil && !errors.Is(err, cgroup.ErrNotExist) {
			s.log.Warn("removing the cgroup of an agent not adopted", "agent", a.ID, "err", err)
		}
		cancel()
	} else if a.Files.Pidfd != nil {
		adopt.Signal(a.Files.Pidfd, 9)
	}
	a.Files.Close()
	if k, ok := s.opts.Keeper.(interface{ Discard(id string) }); ok {
		k.Discard(a.ID)
	}
}

// adoptee is an agent adopted, waiting for its pool to start.
type adoptee struct {
	rec      *adopt.Record
	sb       Sandbox
	files    adopt.Files
	a        process // nil for an isolated agent
	tail     *logTail
	digestOK bool
}

// takeAdopted returns the agents adopted for pool name.
func (s *Supervisor) takeAdopted(name string) []*adoptee {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mine, rest []*adoptee
	for _, ad := range s.adopting {
		if ad.rec.Pool == name {
			mine = append(mine, ad)
		} else {
			rest = append(rest, ad)
		}
	}
	s.adopting = rest
	return mine
}

// startAdopting starts the pool with the agents adopted for it in place:
// they count toward its strength, so only what is missing starts. Agents
// of a changed configuration are then rolled.
func (p *Pool) startAdopting(ads []*adoptee) {
	now := p.sup.opts.Now()
	p.mu.Lock()
	p.down = make(chan struct{})
	pc := p.cfg
	roll := false
	for _, ad := range ads {
		sl := &slot{
			id: ad.rec.ID, sb: ad.sb, a: ad.a, up: make(chan struct{}), pool: p, epoch: p.epoch,
			state: AgentStarting, contract: p.contract, stallTimeout: pc.StallTimeout,
			retryToolErrors: pc.OnToolError == config.OnToolErrorRetry,
			promote:         make(chan struct{}, 1), stopReq: make(chan string, 1), dead: make(chan struct{}),
			tail: ad.tail, started: ad.rec.Started,
		}
		close(sl.up)
		sl.served.Store(ad.rec.Served)
		if ad.a == nil { // isolated: listed, cut off, until released
			sl.tail = newLogTail(sl.id)
			sl.keep, sl.keptPID, sl.isolatedAt, sl.isolateReason = true, ad.rec.PID, ad.rec.IsolatedAt, ad.rec.IsolateReason
			sl.state = AgentIsolated
			sl.isolated.Store(true)
			p.slots[sl.id] = sl
			p.adoptKeptLocked(ad)
			continue
		}
		p.starting++
		p.slots[sl.id] = sl
		if AgentState(ad.rec.State) == AgentActive && p.activeN < p.effectiveReplicas() {
			p.mustTransitionLocked(sl, AgentActive, now)
		} else {
			p.mustTransitionLocked(sl, AgentSpare, now)
		}
		if !ad.digestOK {
			roll = true
		}
		if k := p.sup.opts.Keeper; k != nil {
			rec := p.recordLocked(sl, ad.rec.ConfigDigest) // rolled if not current
			if err := k.Adopt(rec, ad.files, handlesOf(sl.a)); err != nil {
				p.log.Warn("an adopted agent will not outlive this instance", "agent", sl.id, "err", err)
			}
		} else {
			ad.files.State.Close()
		}
		if sl.sb != nil {
			if hook := p.sup.opts.OnSandbox; hook != nil {
				if err := hook(pc, sl.id, sl.sb); err != nil {
					p.log.Warn("adopted agent's sandbox", "agent", sl.id, "err", err)
				}
			}
			sl.stopOOM = p.watchOOM(sl)
		}
		p.live.Add(1)
		go func() {
			defer p.live.Done()
			defer p.destroy(sl)
			p.serve(sl, pc, p.down)
		}()
	}
	// An active agent that died while the daemon was down leaves the
	// pool short: spares take its place, and a pool adopted whole is
	// running at once.
	evs := p.promoteLocked(now)
	evs = append(evs, p.recoveredLocked(now)...)
	// Spares adopted above the pool's number are the surge of the
	// instance before: held for surgeHold, then drained as its surge
	// would have been.
	if n := len(p.spares); n > p.spareTargetLocked() {
		p.surge, p.surgeAt = n, now
		p.sizeSurgeLocked(now)
	}
	p.ensureLocked(0, false)
	var actives, spares []*slot
	if roll {
		actives, spares = p.newGenerationLocked()
	}
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	if roll {
		p.rollOut(context.Background(), actives, spares, "config changed while the daemon was down")
	}
}

// adoptKeptLocked keeps an adopted isolated agent's files for the next
// instance. Called with p.mu held.
func (p *Pool) adoptKeptLocked(ad *adoptee) {
	k := p.sup.opts.Keeper
	if k == nil {
		ad.files.Close()
		return
	}
	if err := k.Adopt(*ad.rec, ad.files, nil); err != nil {
		p.log.Warn("an adopted isolated agent will not outlive this instance", "agent", ad.rec.ID, "err", err)
	}
}

// dropAdopted kills the adopted agents whose pools did not start (their
// configuration cannot run on this host).
func (s *Supervisor) dropAdopted() {
	s.mu.Lock()
	left := s.adopting
	s.adopting = nil
	s.mu.Unlock()
	for _, ad := range left {
		a := &adopt.Agent{ID: ad.rec.ID, Record: ad.rec, Files: ad.files}
		if ad.a != nil {
			ad.a.SignalGroup(9)
			if sig, ok := ad.a.(interface{ Signal(syscall.Signal) error }); ok {
				sig.Signal(syscall.SIGKILL) // its pidfd is the agent's
			}
			ad.a.Close()
		}
		s.killLeft(a, ad.sb)
		s.emit(Event{Kind: EventAdoptRefused, Pool: ad.rec.Pool, Agent: ad.rec.ID, Reason: "its pool did not start"})
	}
}
