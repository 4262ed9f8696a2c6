package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/session"
)

// Sandbox is one agent's cgroup, as the supervisor uses it.
type Sandbox interface {
	FD() int
	Join(pid int) error
	Kill() error
	Freeze(ctx context.Context) error
	Thaw(ctx context.Context) error
	Destroy(ctx context.Context) error
	Path() string
	ID() uint64
	MemoryEvents() (cgroup.MemoryEvents, error)
}

// Sandboxes creates agent sandboxes. A nil Sandboxes runs agents in process
// groups instead.
type Sandboxes interface {
	Create(pool, agent string, lim cgroup.Limits) (Sandbox, error)
}

// SessionStore keeps session contexts and idempotent results durably.
type SessionStore interface {
	Context(ctx context.Context, pool, session string) ([]session.Exchange, error)
	Append(ctx context.Context, pool, session string, ex session.Exchange, lim session.Limit, idemKey string, result json.RawMessage) (session.Exchange, error)
	PutResult(ctx context.Context, pool, idemKey string, digest []byte, result json.RawMessage) error
	Result(ctx context.Context, pool, idemKey string, digest []byte) (json.RawMessage, bool, error)
}

// Options configure a Supervisor.
type Options struct {
	Logger    *slog.Logger
	Sandboxes Sandboxes    // nil: process groups, no limits
	Store     SessionStore // nil: session calls are refused, idempotency keys ignored
	// OnEvent sees every event (the daemon journals them). It must not block.
	OnEvent func(Event)
	Now     func() time.Time
	Rand    func() float64
	// Credentials resolves a pool's user and group; default os/user.
	Credentials func(user, group string) (*syscall.Credential, error)
	// EventBuffer is how many recent events are kept in memory (default
	// 1024): enough for a follower to catch up; the daemon's API reads
	// older history from its journal on disk.
	EventBuffer int
	// OnCall, when set, sees the outcome and duration of every call. It
	// must not block.
	OnCall func(pool, outcome string, d time.Duration)
	// OnSandbox, when set, is called with each agent's new sandbox before
	// the agent starts in it (egress policy, telemetry), usually when the
	// sandbox is made ahead of need. An error fails the spawn (or discards
	// the sandbox made ahead, and the spawn makes its own).
	OnSandbox func(pool config.Pool, agentID string, sb Sandbox) error
	// OnAgentGone, when set, is called once an agent's process is gone,
	// before its sandbox is removed; also for a sandbox made ahead of need
	// and removed unused.
	OnAgentGone func(agentID string, sb Sandbox)
	// AgentNumbers, when set, numbers agents (pool-N) uniquely across
	// daemon restarts; by default numbers restart from 1 with the process.
	AgentNumbers interface{ Next() uint64 }
	// CancelGrace is how long an agent whose call was cancelled has to
	// show that it stopped before it is replaced (default 1s; see
	// cancel.go).
	CancelGrace time.Duration

	// startProcess replaces startProcess in tests (a fake agent).
	startProcess func(agent.Config) (process, error)
	// OnStderr, when set, sees every stderr line of every agent. It must
	// not block.
	OnStderr func(agentID, line string)
	// Keeper, when set, keeps every ready agent's files and state outside
	// the daemon, for a next instance to adopt (adopt.go).
	Keeper Keeper
}

// Supervisor is the root of the supervision tree.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	hub  *hub

	mu     sync.RWMutex
	pools  map[string]*Pool
	order  []string // pool start order
	groups map[string]*group
	roots  []node // top-level children in start order
	closed bool
	quit   chan struct{}  // closed by Stop; ends background loops
	bg     sync.WaitGroup // the background loops; Stop waits for them

	spawns *spawnGate
	// handshakes bounds the agents started and not yet ready (see
	// handshakesPerSpawn).
	handshakes *spawnGate
	// The idle machinery: the daemon's own scheduling delay, and the one
	// timer that pings idle agents.
	sched    schedWatch
	pingKick chan struct{}
	pings    pingBudget
	// pingBacklog: agents due for a ping that wait for budget; only the
	// pinger's goroutine touches it.
	pingBacklog []dueSlot
	kept        []KeptAgent // left by Stop; see KeptAgents
	adopting    []*adoptee  // adopted, waiting for their pools (adopt.go)
}

// New returns a supervisor with no pools; call Apply to start some.
func New(opts Options) *Supervisor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Credentials == nil {
		opts.Credentials = lookupCredential
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 1024
	}
	if opts.CancelGrace <= 0 {
		opts.CancelGrace = time.Second
	}

	s := &Supervisor{
		opts:       opts,
		log:        opts.Logger,
		hub:        newHub(opts.EventBuffer, opts.OnEvent),
		pools:      make(map[string]*Pool),
		groups:     make(map[string]*group),
		quit:       make(chan struct{}),
		spawns:     newSpawnGate(2 * runtime.NumCPU()),
		handshakes: newSpawnGate(handshakesPerSpawn * 2 * runtime.NumCPU()),

		pingKick: make(chan struct{}, 1),
	}
	s.sched.wake = make(chan struct{}, 1)
	s.bg.Go(func() { s.sched.run(s.quit) })
	s.bg.Go(s.pingLoop)
	return s
}

func (s *Supervisor) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = s.opts.Now()
	}
	s.hub.emit(ev)
}

// Emit records an event from outside the supervisor (the Kill Switch, the
// Arbiter, chaos), so that every event reaches the same subscribers.
func (s *Supervisor) Emit(ev Event) { s.emit(ev) }

// Subscribe returns a channel of events from now on, and a function that
// ends the subscription. A subscriber that falls behind by more than buf
// events loses the excess.
func (s *Supervisor) Subscribe(buf int) (<-chan Event, func()) { return s.hub.subscribe(buf) }

// Events returns the remembered events since t, oldest first.
func (s *Supervisor) Events(since time.Time) []Event { return s.hub.since(since) }

// Apply makes the running pools and groups match cfg: new pools start,
// removed ones stop, changed ones roll agent by agent. It is both the
// initial start and the reload.
func (s *Supervisor) Apply(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrPoolStopped
	}
	want := make(map[string]config.Pool, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		want[pc.Name] = pc
	}
	var stop []*Pool
	for name, p := range s.pools {
		if _, ok := want[name]; !ok {
			stop = append(stop, p)
			delete(s.pools, name)
		}
	}
	var start, roll, failed []*Pool
	var rollCfg []config.Pool
	var errs []error
	order := make([]string, 0, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		order = append(order, pc.Name)
		if p, ok := s.pools[pc.Name]; ok && !p.broken {
			if !p.config().Equal(pc) {
				roll = append(roll, p)
				rollCfg = append(rollCfg, pc)
			}
			continue
		}
		p, err := newPool(s, pc)
		if err != nil {
			errs = append(errs, err)
			bp := brokenPool(s, pc, err)
			s.pools[pc.Name] = bp
			failed = append(failed, bp)
			continue
		}
		s.pools[pc.Name] = p
		start = append(start, p)
	}
	s.order = order
	s.buildTree(cfg.Groups)
	s.mu.Unlock()
	s.spawns.setMax(cfg.EffectiveSpawnBudget())
	s.handshakes.setMax(handshakesPerSpawn * cfg.EffectiveSpawnBudget())
	s.pings.rate.Store(int64(cfg.EffectivePingBudget()))

	for _, p := range stop {
		p.stop(ctx, "removed from config", false)
	}
	for _, p := range start {
		if ads := s.takeAdopted(p.name); len(ads) > 0 {
			p.startAdopting(ads)
		} else {
			p.start()
		}
	}
	s.dropAdopted()
	for _, p := range failed {
		s.emit(Event{Kind: EventPoolFailed, Pool: p.name, Reason: p.reason})
	}
	for i, p := range roll {
		if err := p.update(ctx, rollCfg[i]); err != nil {
			errs = append(errs, err)
		}
	}
	s.kickPings()
	s.emit(Event{Kind: EventReload, Reason: fmt.Sprintf("%d pools: %d started, %d stopped, %d rolled", len(cfg.Pools), len(start), len(stop), len(roll))})
	return errors.Join(errs...)
}

// WaitReady waits until every running pool has its replicas active and
// its spares ready, or ctx ends.
func (s *Supervisor) WaitReady(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		ready := true
		var notReady string
		for _, st := range s.Status() {
			if st.State == PoolFailed {
				return fmt.Errorf("%w: %s: %s", ErrPoolFailed, st.Name, st.Reason)
			}
			if st.Active < st.Replicas || st.Spares < st.SparesWanted {
				ready = false
				notReady = fmt.Sprintf("pool %s: %d/%d active, %d/%d spares", st.Name, st.Active, st.Replicas, st.Spares, st.SparesWanted)
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s: %w", notReady, ctx.Err())
		case <-t.C:
		}
	}
}

// Stop stops every pool gracefully: SIGTERM, then kill after each pool's
// shutdown_timeout, and removes their sandboxes.
func (s *Supervisor) Stop(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		close(s.quit)
	}
	s.closed = true
	pools := make([]*Pool, 0, len(s.pools))
	for i := len(s.order) - 1; i >= 0; i-- {
		if p, ok := s.pools[s.order[i]]; ok {
			pools = append(pools, p)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() {
			kept := p.stop(ctx, "daemon stopping", true)
			s.mu.Lock()
			s.kept = append(s.kept, kept...)
			s.mu.Unlock()
		})
	}
	wg.Wait()
	s.bg.Wait()
}

// Pool returns the named pool.
func (s *Supervisor) Pool(name string) (*Pool, error) {
	s.mu.RLock()
	p, ok := s.pools[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	return p, nil
}

// Tools returns the tools that the named pool's latest MCP server to
// shake hands listed (tools/list), or false if none has yet: the catalog
// the MCP front door re-exports. The slice is shared: do not modify it.
func (s *Supervisor) Tools(pool string) ([]agent.Tool, bool) {
	p, err := s.Pool(pool)
	if err != nil {
		return nil, false
	}
	ts := p.tools.Load()
	if ts == nil {
		return nil, false
	}
	return *ts, true
}

// Pools returns the pools in start order.
func (s *Supervisor) Pools() []*Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Pool, 0, len(s.order))
	for _, n := range s.order {
		if p, ok := s.pools[n]; ok {
			out = append(out, p)
		}
	}
	return out
}

// Status returns every pool's status in start order.
func (s *Supervisor) Status() []PoolStatus {
	pools := s.Pools()
	out := make([]PoolStatus, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.Status())
	}
	return out
}

// Agents returns every live agent of the named pool ("" for all).
func (s *Supervisor) Agents(pool string) ([]AgentStatus, error) {
	var pools []*Pool
	if pool == "" {
		pools = s.Pools()
	} else {
		p, err := s.Pool(pool)
		if err != nil {
			return nil, err
		}
		pools = []*Pool{p}
	}
	var out []AgentStatus
	for _, p := range pools {
		out = append(out, p.Agents()...)
	}
	return out, nil
}

// findAgent returns the pool and slot of a live agent.
func (s *Supervisor) findAgent(id string) (*Pool, *slot, error) {
	for _, p := range s.Pools() {
		if sl := p.slotByID(id); sl != nil {
			return p, sl, nil
		}
	}
	return nil, nil, fmt.Errorf("%w %q", ErrUnknownAgent, id)
}

// Call runs one call on the named pool. See [Pool.Call].
func (s *Supervisor) Call(ctx context.Context, pool string, req CallRequest) (*CallResult, error) {
	p, err := s.Pool(pool)
	if err != nil {
		return nil, err
	}
	return p.Call(ctx, req)
}

// RestartAgent kills the agent and replaces it (a spare is promoted first).
func (s *Supervisor) RestartAgent(id string) error {
	p, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	p.fail(sl, evidence{kind: EventRestart, reason: "restarted by operator", at: s.opts.Now()})
	return nil
}

// RestartPool replaces every agent of the pool. By default it rolls, agent
// by agent, keeping the pool's replicas serving; allAtOnce stops them all
// first. Either way it clears a failed state.
func (s *Supervisor) RestartPool(ctx context.Context, name string, allAtOnce bool) error {
	p, err := s.Pool(name)
	if err != nil {
		return err
	}
	if p.broken {
		return p.errBroken()
	}
	if allAtOnce {
		p.restart(ctx, "restarted by operator")
		return nil
	}
	// The roll outlives the request that asked for it.
	p.rollingRestart(context.WithoutCancel(ctx), "restarted by operator")
	return nil
}

// Drain stops routing calls to the agent, lets its call in flight finish,
// then stops it; a spare takes its place first.
func (s *Supervisor) Drain(id, reason string) error {
	p, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	p.drain(sl, reason, true)
	return nil
}

// Scale sets the pool's active replicas.
func (s *Supervisor) Scale(name string, n int, o ScaleOptions) error {
	p, err := s.Pool(name)
	if err != nil {
		return err
	}
	return p.scale(n, o)
}

// ScaleOptions allow what Scale refuses by default.
type ScaleOptions struct {
	// Force goes over the pool's bound (config.Pool.ScaleBound).
	Force bool
	// AllowZero allows 0 replicas: the pool stops serving.
	AllowZero bool
}

// Kill kills an agent as evidence of kind (a chaos fault, an Arbiter
// prediction, an isolation with action kill), recording fault as the time
// of the first evidence.
func (s *Supervisor) Kill(id string, kind EventKind, reason string, fault time.Time) error {
	p, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	p.fail(sl, evidence{kind: kind, reason: reason, at: fault})
	return nil
}

// NoteFault records that a fault was injected into agent id at t, so the
// recovery it causes is measured from t rather than from its detection.
func (s *Supervisor) NoteFault(id string, t time.Time) error {
	_, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	sl.noteFault(t)
	return nil
}

func lookupCredential(username, groupname string) (*syscall.Credential, error) {
	if username == "" && groupname == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: uint32(syscall.Getuid()), Gid: uint32(syscall.Getgid())}
	if username != "" {
		u, err := user.Lookup(username)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", username, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	}
	if groupname != "" {
		g, err := user.LookupGroup(groupname)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", groupname, err)
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(gid)
	}
	return cred, nil
}

// sortedKeys is a small helper for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CgroupSandboxes runs agents in cgroups made by m.
func CgroupSandboxes(m *cgroup.Manager) Sandboxes { return cgroupSandboxes{m} }

type cgroupSandboxes struct{ m *cgroup.Manager }

func (c cgroupSandboxes) Create(pool, agent string, lim cgroup.Limits) (Sandbox, error) {
	cg, err := c.m.Create(pool, agent, lim)
	if err != nil {
		return nil, err
	}
	return cg, nil
}

// Adopt takes over an agent cgroup a previous daemon left (RestoreKept).
func (c cgroupSandboxes) Adopt(pool, agent string) (Sandbox, error) {
	cg, err := c.m.Adopt(pool, agent)
	if err != nil {
		return nil, err
	}
	return cg, nil
}

// Isolation actions: what happens to an agent once it is cut off.
const (
	IsolateKill   = "kill"
	IsolateFreeze = "freeze"
	IsolateKeep   = "keep"
)

// Isolate takes an agent out of service at once (it leaves the ring, a
// spare takes its place) and then kills it, freezes it, or keeps it
// running for inspection, as action says (default: the pool's
// isolate_action). Cutting its network is the caller's part (the Kill
// Switch), done before.
func (s *Supervisor) Isolate(id, action, reason string) error {
	p, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	return p.isolate(sl, action, reason)
}

// Release ends an isolation: a frozen agent is thawed, and an agent still
// alive is stopped gracefully (its place was already taken).
func (s *Supervisor) Release(id string) error {
	p, sl, err := s.findAgent(id)
	if err != nil {
		return err
	}
	return p.release(sl)
}
