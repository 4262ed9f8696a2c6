package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/ring"
)

// PoolState is a pool's state as `status` shows it.
type PoolState string

// Pool states.
const (
	PoolRunning  PoolState = "running"  // replicas active
	PoolDegraded PoolState = "degraded" // fewer than replicas active
	PoolFailed   PoolState = "failed"   // gave up; see Reason
	PoolStopped  PoolState = "stopped"
)

// AgentState is an agent's state as `status` shows it.
type AgentState string

// Agent states.
const (
	AgentStarting AgentState = "starting"
	AgentSpare    AgentState = "spare"
	AgentActive   AgentState = "active"
	AgentDraining AgentState = "draining"
	AgentIsolated AgentState = "isolated"
	AgentDead     AgentState = "dead"
)

// PoolStatus is a snapshot of a pool.
type PoolStatus struct {
	Name         string    `json:"name"`
	Replicas     int       `json:"replicas"`
	Active       int       `json:"active"`
	Spares       int       `json:"spares"`
	SparesWanted int       `json:"spares_wanted"`
	Starting     int       `json:"starting"`
	State        PoolState `json:"state"`
	Reason       string    `json:"reason,omitempty"`
	Restarts     int       `json:"restarts"`
	Breaker      string    `json:"breaker"`
}

// AgentStatus is a snapshot of one agent.
type AgentStatus struct {
	ID       string     `json:"id"`
	Pool     string     `json:"pool"`
	PID      int        `json:"pid"`
	State    AgentState `json:"state"`
	Cgroup   string     `json:"cgroup"`
	CgroupID uint64     `json:"cgroup_id,omitempty"`
	Restarts int        `json:"restarts"`
	Started  time.Time  `json:"started"`
	Calls    uint64     `json:"calls"`
	// Latency is an EWMA of the agent's successful calls.
	Latency time.Duration `json:"latency"`
	// OKCalls and LatencyTotal are the count and total latency of the
	// agent's successful calls so far: their differences between two
	// snapshots give the mean latency of the calls in between, which the
	// EWMA (a memory of ~20 calls) would blur.
	OKCalls      uint64        `json:"-"`
	LatencyTotal time.Duration `json:"-"`
}

// Breaker is a pool's circuit breaker, as the pool uses it.
type Breaker interface {
	// Allow asks to make one attempt; done reports its outcome.
	Allow() (done func(success bool), err error)
	State() string
}

// evidence is what the supervisor learnt about a failure.
type evidence struct {
	kind   string        // event kind: exit, violation, deadline, hang, kill, ...
	code   contract.Code // the violation's code, when the evidence is one
	reason string
	at     time.Time // first evidence
}

type pendingRecovery struct {
	agent  string
	cause  string
	fault  time.Time
	detect time.Time
}

// Pool is a named set of identical agents under one supervisor.
type Pool struct {
	sup  *Supervisor
	name string
	log  *slog.Logger
	lend lender // free agents and the callers waiting for one

	mu           sync.Mutex
	cfg          config.Pool
	contract     *contract.Contract
	cred         *syscall.Credential
	ring         *ring.Ring
	slots        map[string]*slot
	spares       []*slot
	activeN      int
	starting     int
	replicas     int
	sparesWanted int
	lost         int // temporary/transient agents not replaced
	state        PoolState
	reason       string
	restarts     int
	intensity    *intensity
	backoff      *backoff
	pending      []pendingRecovery
	nextN        int
	epoch        int           // bumped by every stop/restart; stale spawns retire
	down         chan struct{} // closed while the pool is failed or stopped
	parent       *group
	breaker      Breaker
	givingUp     bool // intensity exceeded; the escalation is under way
	lat          latencyTracker
	live         sync.WaitGroup // one per slot (and sandbox being made) until its process and sandbox are gone
	cfgGen       int            // bumped by every configure: a sandbox made for an older one is stale
	nextSandbox  *spareSandbox  // the next agent's cgroup, made ahead of need
	preparing    bool           // nextSandbox is being made
}

// slot is one agent incarnation and its worker goroutine.
type slot struct {
	id    string
	pool  *Pool
	epoch int

	a  *agent.Agent
	sb Sandbox

	state     AgentState // guarded by pool.mu
	accepting atomic.Bool
	lease     slotLease // guarded by pool.lend.mu
	// The contract and stall timeout of the configuration it was started
	// with, for the callers it is lent to.
	contract     *contract.Contract
	stallTimeout time.Duration
	lastCall     atomic.Int64 // unix nanos of the end of its last call; pings wait for idleness
	promote      chan struct{}
	stopReq      chan string
	dead         chan struct{} // closed once the slot is dead or stopping
	deadOnce     sync.Once
	started      time.Time
	activeSince  time.Time
	retries      int                      // failed starts before this one
	graceful     atomic.Bool              // a SIGTERM stop is under way; destroy waits for it
	inject       atomic.Pointer[injected] // chaos: misbehaviour in the message path
	isolated     atomic.Bool              // out of service and cut off; not pinged
	calls        atomic.Uint64
	lat          latencyTracker
	fault        atomic.Int64  // unix nanos of an injected fault, 0 if none
	prepared     bool          // sb was made ahead of need, OnSandbox already called
	up           chan struct{} // closed once its start has ended, ready or not
	// The replacements started for this slot when it died: its cleanup
	// waits for their start, which it would otherwise slow down.
	replacements []*slot
}

func (sl *slot) markDead() { sl.deadOnce.Do(func() { close(sl.dead) }) }

func (sl *slot) noteFault(t time.Time) {
	sl.fault.CompareAndSwap(0, t.UnixNano())
}

func newPool(s *Supervisor, pc config.Pool) (*Pool, error) {
	p := &Pool{
		sup:  s,
		name: pc.Name,
		log:  s.log.With("pool", pc.Name),
	}
	if err := p.configure(pc); err != nil {
		return nil, err
	}
	p.slots = make(map[string]*slot)
	p.ring = ring.New(ring.Options{})
	p.state = PoolDegraded
	return p, nil
}

// configure compiles pc into the pool's derived state. Called before start
// or with p.mu held.
func (p *Pool) configure(pc config.Pool) error {
	c, err := contract.Compile(contract.Spec{
		Schema:         pc.Contract.Schema,
		Deadline:       pc.Contract.Deadline,
		MaxOutputBytes: pc.Contract.MaxOutputBytes,
		MaxTokens:      pc.Contract.MaxTokens,
		TokensPointer:  pc.Contract.TokensPointer,
	})
	if err != nil {
		return fmt.Errorf("pool %s: contract: %w", pc.Name, err)
	}
	cred, err := p.sup.opts.Credentials(pc.User, pc.Group)
	if err != nil {
		return fmt.Errorf("pool %s: %w", pc.Name, err)
	}
	p.cfg, p.contract, p.cred = pc, c, cred
	p.cfgGen++
	p.replicas = pc.Replicas
	p.sparesWanted = pc.Spares
	p.intensity = newIntensity(pc.Intensity.MaxRestarts, pc.Intensity.Period)
	p.backoff = newBackoff(pc.Backoff.Initial, pc.Backoff.Max, pc.Backoff.ResetAfter, p.sup.opts.Rand)
	if p.sup.opts.NewBreaker != nil {
		p.breaker = p.sup.opts.NewBreaker(pc.Name, pc.Breaker)
	}
	return nil
}

func (p *Pool) nodeName() string { return p.name }

func (p *Pool) setParent(g *group) {
	p.mu.Lock()
	p.parent = g
	p.mu.Unlock()
}

func (p *Pool) parentGroup() *group {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parent
}

func (p *Pool) config() config.Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Config returns the pool's current configuration.
func (p *Pool) Config() config.Pool { return p.config() }

// Ring returns the pool's session ring (read it, do not change it).
func (p *Pool) Ring() *ring.Ring { return p.ring }

func (p *Pool) start() {
	p.mu.Lock()
	p.down = make(chan struct{})
	p.ensureLocked(0)
	p.mu.Unlock()
}

func (p *Pool) effectiveReplicas() int {
	n := p.replicas - p.lost
	if n < 0 {
		return 0
	}
	return n
}

// ensureLocked starts spawns until active + spares + starting reaches the
// wanted strength, and returns the new slots. Called with p.mu held.
func (p *Pool) ensureLocked(delay time.Duration) []*slot {
	if p.state == PoolFailed || p.state == PoolStopped {
		return nil
	}
	var made []*slot
	want := p.effectiveReplicas() + p.sparesWanted
	for have := p.activeN + len(p.spares) + p.starting; have < want; have++ {
		id, sb := p.takeSandboxLocked()
		sl := &slot{
			id:           id,
			sb:           sb,
			prepared:     sb != nil,
			up:           make(chan struct{}),
			pool:         p,
			epoch:        p.epoch,
			state:        AgentStarting,
			contract:     p.contract,
			stallTimeout: p.cfg.StallTimeout,
			promote:      make(chan struct{}, 1),
			stopReq:      make(chan string, 1),
			dead:         make(chan struct{}),
		}
		p.starting++
		p.slots[sl.id] = sl
		p.live.Add(1)
		go p.run(sl, delay, p.cfg, p.cred, p.down)
		made = append(made, sl)
	}
	return made
}

// run is the life of one agent: spawn, handshake, then serve until it
// fails, is drained or the pool stops.
func (p *Pool) run(sl *slot, delay time.Duration, pc config.Pool, cred *syscall.Credential, down chan struct{}) {
	defer p.live.Done()
	// Whoever ends the slot's life hands back its process and sandbox
	// here; the worker destroys them itself so Stop can wait for it.
	defer p.destroy(sl)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-down:
			t.Stop()
			close(sl.up)
			p.retire(sl)
			return
		}
	}
	if err := p.spawn(sl, pc, cred); err != nil {
		close(sl.up)
		p.spawnFailed(sl, err)
		return
	}
	ok := p.ready(sl)
	close(sl.up)
	if !ok {
		return
	}
	p.serve(sl, pc, down)
}

func (p *Pool) spawn(sl *slot, pc config.Pool, cred *syscall.Credential) error {
	p.mu.Lock()
	sl.started = p.sup.opts.Now()
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventSpawn, Pool: p.name, Agent: sl.id})
	cfg := agent.Config{
		ID:           sl.id,
		Pool:         p.name,
		Command:      pc.Command,
		Dir:          pc.Dir,
		Credential:   cred,
		Protocol:     string(pc.Protocol),
		Method:       pc.Method,
		Tool:         pc.Tool,
		MaxLineBytes: pc.Contract.MaxOutputBytes + 4096, // room for the JSON-RPC envelope
		Logger:       p.sup.log,
		Now:          p.sup.opts.Now,
	}
	if hook := p.sup.opts.OnStderr; hook != nil {
		id := sl.id
		cfg.OnStderr = func(line string) { hook(id, line) }
	}
	for k, v := range pc.Env {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	if sbs := p.sup.opts.Sandboxes; sbs != nil && !sl.prepared {
		sb, err := sbs.Create(p.name, sl.id, cgroup.Limits{Memory: pc.Limits.Memory, Pids: pc.Limits.Pids, CPUWeight: pc.Limits.CPUWeight})
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		p.mu.Lock()
		sl.sb = sb // read by Agents and fail under p.mu
		p.mu.Unlock()
		if hook := p.sup.opts.OnSandbox; hook != nil {
			if err := hook(pc, sl.id, sb); err != nil {
				return fmt.Errorf("preparing the sandbox: %w", err)
			}
		}
	}
	if sl.sb != nil {
		cfg.CgroupFD = sl.sb.FD()
	}
	a, err := agent.Start(cfg)
	if err != nil {
		return err
	}
	p.mu.Lock()
	sl.a = a
	p.mu.Unlock()
	if sl.sb != nil {
		if err := sl.sb.Join(a.PID()); err != nil {
			return fmt.Errorf("cgroup join: %w", err)
		}
	}
	timeout := pc.StartTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Initialize(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			if errors.Is(err, agent.ErrExited) {
				select {
				case <-a.Done():
					return fmt.Errorf("%w (%s)", err, a.ExitStatus())
				case <-time.After(100 * time.Millisecond):
				}
			}
			return err
		}
		return nil
	case <-a.Done():
		return fmt.Errorf("exited before its handshake: %s", a.ExitStatus())
	}
}

func (p *Pool) spawnFailed(sl *slot, err error) {
	now := p.sup.opts.Now()
	p.mu.Lock()
	sl.state = AgentDead
	sl.markDead()
	delete(p.slots, sl.id)
	p.starting--
	stale := sl.epoch != p.epoch
	var delay time.Duration
	exceeded := false
	if stale {
		p.ensureLocked(0)
	} else if !p.givingUp {
		p.restarts++
		delay = p.backoff.failure(0)
		exceeded = p.intensity.restart(now)
		p.givingUp = exceeded
		if !exceeded {
			p.ensureLocked(delay)
		}
	}
	in := p.intensity
	p.mu.Unlock()

	p.sup.emit(Event{Kind: EventSpawnFail, Pool: p.name, Agent: sl.id, Reason: err.Error()})
	p.log.Warn("agent failed to start", "agent", sl.id, "err", err, "next_delay", delay)
	if exceeded {
		why := fmt.Sprintf("restart intensity exceeded (%d restarts in %s); last: %s failed to start: %v", in.max, in.period, sl.id, err)
		go p.giveUp(why)
	}
}

// ready places a freshly handshaken agent: active if the pool is short,
// else spare. It reports false if the agent is no longer wanted.
func (p *Pool) ready(sl *slot) bool {
	now := p.sup.opts.Now()
	p.mu.Lock()
	p.starting--
	if sl.epoch != p.epoch || p.state == PoolStopped || p.state == PoolFailed {
		sl.state = AgentDead
		sl.markDead()
		delete(p.slots, sl.id)
		p.ensureLocked(0) // this stale spawn no longer counts as starting
		p.mu.Unlock()
		return false
	}
	evs := []Event{{Kind: EventReady, Pool: p.name, Agent: sl.id, Reason: fmt.Sprintf("pid %d", sl.a.PID())}}
	if p.activeN < p.effectiveReplicas() {
		p.activateLocked(sl, now)
	} else {
		sl.state = AgentSpare
		p.spares = append(p.spares, sl)
	}
	evs = append(evs, p.recoveredLocked(now)...)
	p.prepareSandboxLocked()
	p.mu.Unlock()
	for _, ev := range evs {
		p.sup.emit(ev)
	}
	return true
}

func (p *Pool) activateLocked(sl *slot, now time.Time) {
	sl.state = AgentActive
	sl.activeSince = now
	p.activeN++
	p.ring.Add(sl.id, ring.Active)
	sl.accepting.Store(true)
	p.lendable(sl)
}

// promoteLocked turns spares into active agents until the pool is at its
// replicas. Called with p.mu held.
func (p *Pool) promoteLocked(now time.Time) []Event {
	var evs []Event
	for p.activeN < p.effectiveReplicas() && len(p.spares) > 0 {
		sp := p.spares[0]
		p.spares = p.spares[1:]
		p.activateLocked(sp, now)
		select {
		case sp.promote <- struct{}{}:
		default:
		}
		evs = append(evs, Event{Time: now, Kind: EventPromote, Pool: p.name, Agent: sp.id})
	}
	return evs
}

// recoveredLocked closes pending recoveries once the pool is back at full
// strength, and keeps the pool's state current. Called with p.mu held.
func (p *Pool) recoveredLocked(now time.Time) []Event {
	if p.state == PoolFailed || p.state == PoolStopped {
		return nil
	}
	if p.activeN < p.effectiveReplicas() {
		p.state = PoolDegraded
		return nil
	}
	p.state = PoolRunning
	evs := make([]Event, 0, len(p.pending))
	for _, pr := range p.pending {
		evs = append(evs, Event{
			Time: now, Kind: EventRecovered, Pool: p.name, Agent: pr.agent, Cause: pr.cause,
			Fault: pr.fault, Detect: pr.detect,
			DetectMS: ms(pr.detect.Sub(pr.fault)), RecoverMS: ms(now.Sub(pr.fault)),
		})
	}
	p.pending = p.pending[:0]
	return evs
}

// fail handles any failure of an agent: the agent is killed through its
// sandbox, a spare is promoted at once, a replacement is started (after
// backoff), and the events are recorded. It is idempotent.
func (p *Pool) fail(sl *slot, ev evidence) {
	if sl.graceful.Load() {
		// Stopped on purpose (drain, scale-down, release, shutdown): its
		// death, which the kernel may report before the stop returns, is
		// no failure; the stop path removes it.
		return
	}
	now := p.sup.opts.Now()
	if ev.kind == EventExit {
		ev = p.oomOrExit(sl, ev)
	}
	p.mu.Lock()
	if sl.state == AgentDead || sl.state == AgentStarting {
		p.mu.Unlock()
		return
	}
	prev := sl.state
	sl.state = AgentDead
	sl.accepting.Store(false)
	sl.markDead()
	delete(p.slots, sl.id)
	switch prev {
	case AgentActive:
		p.activeN--
		p.ring.Remove(sl.id)
	case AgentDraining, AgentIsolated:
		p.ring.Remove(sl.id) // a no-op: it left the ring when it left service
	case AgentSpare:
		for i, s := range p.spares {
			if s == sl {
				p.spares = append(p.spares[:i], p.spares[i+1:]...)
				break
			}
		}
	}
	fault := ev.at
	if f := sl.fault.Load(); f != 0 && (fault.IsZero() || time.Unix(0, f).Before(fault)) {
		fault = time.Unix(0, f)
	}
	if fault.IsZero() || fault.After(now) {
		fault = now
	}
	evs := []Event{{Time: now, Kind: ev.kind, Pool: p.name, Agent: sl.id, Reason: ev.reason, Code: string(ev.code), Injected: sl.fault.Load() != 0}}
	if prev == AgentActive {
		p.pending = append(p.pending, pendingRecovery{agent: sl.id, cause: ev.kind, fault: fault, detect: now})
	}
	replace := p.cfg.Restart == config.RestartPermanent || p.cfg.Restart == "" ||
		(p.cfg.Restart == config.RestartTransient && !(ev.kind == EventExit && sl.a != nil && sl.a.ExitedOK()))
	if prev == AgentDraining || prev == AgentIsolated {
		replace = false // its replacement was arranged when it left service
	}
	exceeded := false
	var delay time.Duration
	if p.givingUp {
		replace = false
	}
	if replace {
		served := time.Duration(0)
		if !sl.activeSince.IsZero() {
			served = now.Sub(sl.activeSince)
		}
		p.restarts++
		delay = p.backoff.failure(served)
		exceeded = p.intensity.restart(now)
		p.givingUp = exceeded
	} else if prev == AgentActive && p.cfg.Restart != "" && p.cfg.Restart != config.RestartPermanent && ev.kind != EventDrain {
		p.lost++
	}
	if !exceeded {
		evs = append(evs, p.promoteLocked(now)...)
		evs = append(evs, p.recoveredLocked(now)...)
		if replace {
			sl.replacements = p.ensureLocked(p.pausedDelayLocked(delay))
		}
	}
	in := p.intensity
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	p.killNow(sl)
	if exceeded {
		why := fmt.Sprintf("restart intensity exceeded (%d restarts in %s); last: %s %s: %s", in.max, in.period, sl.id, ev.kind, ev.reason)
		go p.giveUp(why)
	}
}

// pausedDelayLocked stretches a restart delay while the breaker is open, so
// a pool whose upstream is down does not storm restarts.
func (p *Pool) pausedDelayLocked(d time.Duration) time.Duration {
	if p.breaker != nil && p.breaker.State() == "open" && d < p.cfg.Breaker.OpenFor {
		return p.cfg.Breaker.OpenFor
	}
	return d
}

// killNow kills the slot's whole process tree at once, without waiting;
// the worker goroutine then reaps it and removes the sandbox (destroy).
func (p *Pool) killNow(sl *slot) {
	if sl.sb != nil {
		// A cgroup already gone (ENOENT, ENODEV) has nothing left to kill.
		if err := sl.sb.Kill(); err != nil && !errors.Is(err, cgroup.ErrNotExist) && !errors.Is(err, syscall.ENODEV) {
			p.log.Warn("killing agent cgroup", "agent", sl.id, "err", err)
		}
	} else if sl.a != nil {
		sl.a.SignalGroup(syscall.SIGKILL)
	}
}

// destroy kills the slot's process tree and removes its sandbox. It runs
// once, at the end of the slot's worker goroutine.
func (p *Pool) destroy(sl *slot) {
	if sl.a == nil && sl.sb == nil {
		return
	}
	if sl.graceful.Load() && sl.a != nil {
		<-sl.a.Done() // stopSlot kills it after the shutdown timeout
	}
	p.awaitReplacements(sl)
	p.sup.emit(Event{Kind: EventKill, Pool: p.name, Agent: sl.id})
	if hook := p.sup.opts.OnAgentGone; hook != nil {
		defer hook(sl.id, sl.sb)
	}
	if sl.sb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := sl.sb.Destroy(ctx); err != nil {
			p.log.Error("removing agent cgroup", "agent", sl.id, "err", err)
		}
		cancel()
	} else if sl.a != nil {
		sl.a.SignalGroup(syscall.SIGKILL)
	}
	if sl.a != nil {
		<-sl.a.Done()
		sl.a.Close()
	}
}

// retire drops a slot that never started.
func (p *Pool) retire(sl *slot) {
	p.mu.Lock()
	if p.slots[sl.id] == sl {
		delete(p.slots, sl.id)
		p.starting--
	}
	sl.state = AgentDead
	sl.markDead()
	p.mu.Unlock()
}

// giveUp: the pool exceeded its restart intensity. Stop its agents and
// escalate to the parent group, or fail for good at the top.
func (p *Pool) giveUp(reason string) {
	p.sup.emit(Event{Kind: EventEscalate, Pool: p.name, Reason: reason})
	p.log.Error("pool gives up", "reason", reason)
	ctx := context.Background()
	p.stopAgents(ctx)
	escalate(ctx, p.sup, p, reason)
}

func (p *Pool) failNode(ctx context.Context, reason string) {
	p.stopAgents(ctx)
	p.mu.Lock()
	p.state = PoolFailed
	p.reason = reason
	if p.down != nil {
		select {
		case <-p.down:
		default:
			close(p.down)
		}
	}
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventPoolFailed, Pool: p.name, Reason: reason})
}

func (p *Pool) restartNode(ctx context.Context, reason string) { p.restart(ctx, reason) }

// restart stops every agent and starts the pool afresh, clearing a failed
// state and the restart history.
func (p *Pool) restart(ctx context.Context, reason string) {
	p.stopAgents(ctx)
	p.mu.Lock()
	p.intensity.reset()
	p.backoff.reset()
	p.givingUp = false
	p.lost = 0
	p.state = PoolDegraded
	p.reason = ""
	select {
	case <-p.down:
		p.down = make(chan struct{})
	default:
	}
	p.ensureLocked(0)
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventRestart, Pool: p.name, Reason: reason})
}

// stopAgents stops every agent of the pool gracefully, in parallel.
func (p *Pool) stopAgents(ctx context.Context) {
	p.mu.Lock()
	p.epoch++
	var all []*slot
	for _, sl := range p.slots {
		if sl.state != AgentStarting {
			all = append(all, sl)
			sl.graceful.Store(true)
			sl.state = AgentDead
			sl.accepting.Store(false)
			sl.markDead()
			delete(p.slots, sl.id)
			p.ring.Remove(sl.id)
		}
	}
	p.spares = nil
	p.activeN = 0
	p.pending = nil
	pc := p.cfg
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, sl := range all {
		wg.Add(1)
		go func() { defer wg.Done(); p.stopSlot(ctx, sl, pc.ShutdownTimeout) }()
	}
	wg.Wait()
}

// stopSlot stops one agent: SIGTERM, then kill after timeout.
func (p *Pool) stopSlot(ctx context.Context, sl *slot, timeout time.Duration) {
	if sl.a == nil {
		return
	}
	sl.graceful.Store(true)
	sl.a.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	select {
	case <-sl.a.Done():
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	p.sup.emit(Event{Kind: EventStop, Pool: p.name, Agent: sl.id})
	p.killNow(sl)
}

// stop stops the pool for good.
func (p *Pool) stop(ctx context.Context, reason string) {
	p.mu.Lock()
	p.state = PoolStopped
	p.reason = reason
	if p.down != nil {
		select {
		case <-p.down:
		default:
			close(p.down)
		}
	}
	p.mu.Unlock()
	p.stopAgents(ctx)
	p.dropSandbox()
	// Spawns in flight see the stopped state and retire themselves; every
	// worker destroys its own process and sandbox, and a sandbox being made
	// ahead of need is removed once made. Wait for all of them so that
	// nothing outlives Stop.
	done := make(chan struct{})
	go func() { p.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// drain takes an active agent out of service once its call in flight is
// done; a spare takes its place first.
func (p *Pool) drain(sl *slot, reason string) {
	now := p.sup.opts.Now()
	p.mu.Lock()
	if sl.state != AgentActive && sl.state != AgentSpare {
		p.mu.Unlock()
		return
	}
	prev := sl.state
	sl.state = AgentDraining
	sl.accepting.Store(false)
	var evs []Event
	if prev == AgentActive {
		p.activeN--
		p.ring.Remove(sl.id)
	} else {
		for i, s := range p.spares {
			if s == sl {
				p.spares = append(p.spares[:i], p.spares[i+1:]...)
				break
			}
		}
	}
	evs = append(evs, Event{Time: now, Kind: EventDrain, Pool: p.name, Agent: sl.id, Reason: reason})
	evs = append(evs, p.promoteLocked(now)...)
	p.ensureLocked(0)
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	select {
	case sl.stopReq <- reason:
	default:
	}
}

// scale sets the number of active replicas.
func (p *Pool) scale(n int) error {
	if n < 0 {
		return fmt.Errorf("pool %s: replicas must be >= 0, got %d", p.name, n)
	}
	now := p.sup.opts.Now()
	p.mu.Lock()
	p.replicas = n
	p.cfg.Replicas = n
	evs := []Event{{Time: now, Kind: EventScale, Pool: p.name, Reason: fmt.Sprintf("replicas %d", n)}}
	evs = append(evs, p.promoteLocked(now)...)
	var extra []*slot
	for _, sl := range p.slots {
		if p.activeN-len(extra) <= p.effectiveReplicas() {
			break
		}
		if sl.state == AgentActive {
			extra = append(extra, sl)
		}
	}
	p.ensureLocked(0)
	evs = append(evs, p.recoveredLocked(now)...)
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	for _, sl := range extra {
		p.drainNoReplace(sl)
	}
	return nil
}

// drainNoReplace drains an agent that the pool no longer needs.
func (p *Pool) drainNoReplace(sl *slot) {
	p.mu.Lock()
	if sl.state != AgentActive {
		p.mu.Unlock()
		return
	}
	sl.state = AgentDraining
	sl.accepting.Store(false)
	p.activeN--
	p.ring.Remove(sl.id)
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventDrain, Pool: p.name, Agent: sl.id, Reason: "scaled down"})
	select {
	case sl.stopReq <- "scaled down":
	default:
	}
}

// update applies a changed configuration: new agents use it at once; the
// old ones are replaced one by one, each only once a new one is ready to
// take its place.
func (p *Pool) update(ctx context.Context, pc config.Pool) error {
	p.mu.Lock()
	if err := p.configure(pc); err != nil {
		p.mu.Unlock()
		return err
	}
	p.epoch++ // spawns in flight with the old config retire
	var old, oldSpares []*slot
	for _, sl := range p.slots {
		switch sl.state {
		case AgentActive:
			old = append(old, sl)
		case AgentSpare:
			oldSpares = append(oldSpares, sl)
		}
	}
	p.ensureLocked(0)
	p.mu.Unlock()
	// Old spares go at once; their replacements start with the new config.
	for _, sl := range oldSpares {
		p.drain(sl, "config changed")
	}
	go p.roll(ctx, old)
	return nil
}

func (p *Pool) roll(ctx context.Context, old []*slot) {
	for _, sl := range old {
		// Wait for a new-generation spare (or room) before draining.
		for {
			p.mu.Lock()
			fresh := 0
			for _, sp := range p.spares {
				if sp.epoch == p.epoch {
					fresh++
				}
			}
			state := p.state
			// Without spares there is nothing to surge with: replace one
			// agent at a time, waiting for the pool to be whole again.
			noSpares := p.sparesWanted == 0 && p.activeN >= p.effectiveReplicas() && p.starting == 0
			p.mu.Unlock()
			if fresh > 0 || noSpares || state == PoolFailed || state == PoolStopped {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		p.drain(sl, "config changed")
	}
}

// Status returns the pool's status.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStatus{
		Name:         p.name,
		Replicas:     p.effectiveReplicas(),
		Active:       p.activeN,
		Spares:       len(p.spares),
		SparesWanted: p.sparesWanted,
		Starting:     p.starting,
		State:        p.state,
		Reason:       p.reason,
		Restarts:     p.restarts,
		Breaker:      "closed",
	}
	if p.breaker != nil {
		st.Breaker = p.breaker.State()
	}
	return st
}

// Agents returns the pool's live agents, ordered by id number.
func (p *Pool) Agents() []AgentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]AgentStatus, 0, len(p.slots))
	for _, id := range sortedSlotIDs(p.slots) {
		sl := p.slots[id]
		as := AgentStatus{ID: sl.id, Pool: p.name, State: sl.state, Restarts: sl.retries, Started: sl.started, Calls: sl.calls.Load(), Latency: sl.lat.typical()}
		ok, total := sl.lat.sum()
		as.OKCalls, as.LatencyTotal = uint64(ok), total
		if sl.a != nil {
			as.PID = sl.a.PID()
		}
		if sl.sb != nil {
			as.Cgroup = sl.sb.Path()
			as.CgroupID = sl.sb.ID()
		}
		out = append(out, as)
	}
	return out
}

func (p *Pool) slotByID(id string) *slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slots[id]
}

// SetSpares sets the number of warm spares the pool keeps (the Arbiter's
// predictive spares), bounded by the pool's configuration.
func (p *Pool) SetSpares(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if max := p.cfg.MaxSpares; max > 0 && n > max {
		n = max
	}
	if n < p.cfg.Spares {
		n = p.cfg.Spares
	}
	p.sparesWanted = n
	p.ensureLocked(0)
}

func sortedSlotIDs(m map[string]*slot) []string {
	ids := sortedKeys(m)
	// Numeric order of the suffix: echo-2 before echo-10.
	num := func(id string) int {
		v, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
		return v
	}
	slices.SortStableFunc(ids, func(a, b string) int { return num(a) - num(b) })
	return ids
}

func (p *Pool) isolate(sl *slot, action, reason string) error {
	if action == "" {
		action = string(p.config().IsolateAction)
	}
	switch action {
	case IsolateKill, IsolateFreeze, IsolateKeep:
	default:
		return fmt.Errorf("isolate action %q is not one of kill, freeze, keep", action)
	}
	now := p.sup.opts.Now()
	p.mu.Lock()
	prev := sl.state
	switch prev {
	case AgentActive, AgentSpare, AgentDraining:
	default:
		p.mu.Unlock()
		return fmt.Errorf("agent %s is %s: only a running agent can be isolated", sl.id, prev)
	}
	sl.state = AgentIsolated
	sl.isolated.Store(true)
	sl.accepting.Store(false)
	switch prev {
	case AgentActive:
		p.activeN--
		p.ring.Remove(sl.id)
		p.pending = append(p.pending, pendingRecovery{agent: sl.id, cause: EventIsolate, fault: now, detect: now})
	case AgentSpare:
		for i, s := range p.spares {
			if s == sl {
				p.spares = append(p.spares[:i], p.spares[i+1:]...)
				break
			}
		}
	}
	evs := []Event{{Time: now, Kind: EventIsolate, Pool: p.name, Agent: sl.id, Reason: fmt.Sprintf("%s (action %s)", reason, action)}}
	evs = append(evs, p.promoteLocked(now)...)
	evs = append(evs, p.recoveredLocked(now)...)
	p.ensureLocked(0)
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	switch action {
	case IsolateKill:
		p.fail(sl, evidence{kind: EventKill, reason: "isolated: " + reason, at: now})
	case IsolateFreeze:
		if sl.sb != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := sl.sb.Freeze(ctx); err != nil {
				return fmt.Errorf("agent %s isolated but not frozen: %w", sl.id, err)
			}
		} else if sl.a != nil {
			sl.a.SignalGroup(syscall.SIGSTOP)
		}
	}
	return nil
}

func (p *Pool) release(sl *slot) error {
	p.mu.Lock()
	isolated := sl.state == AgentIsolated
	p.mu.Unlock()
	if !isolated {
		return nil
	}
	if sl.sb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sl.sb.Thaw(ctx)
		cancel()
	} else if sl.a != nil {
		sl.a.SignalGroup(syscall.SIGCONT)
	}
	p.sup.emit(Event{Kind: EventRelease, Pool: p.name, Agent: sl.id})
	select {
	case sl.stopReq <- "released after isolation":
	default:
	}
	return nil
}

// oomOrExit tells an OOM kill from another death: the OOM killer's SIGKILL
// looks like any other exit, but the cgroup's memory events count it.
func (p *Pool) oomOrExit(sl *slot, ev evidence) evidence {
	p.mu.Lock()
	sb := sl.sb
	p.mu.Unlock()
	if sb == nil {
		return ev
	}
	// The sandbox was made for this agent: every OOM kill it counts is
	// this agent's.
	if me, err := sb.MemoryEvents(); err == nil && me.OOMKill > 0 {
		lim := p.config().Limits.Memory
		ev.kind = EventOOM
		ev.reason = fmt.Sprintf("OOM-killed at its memory limit (%d MiB): %s", lim>>20, ev.reason)
	}
	return ev
}
