package supervisor

import (
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
	"github.com/resilienced/resilienced/internal/breaker"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/ring"
)

// PoolState is a pool's state as `status` shows it.
type PoolState string

// Pool states.
const (
	PoolRunning  PoolState = "running"  // replicas active
	PoolDegraded PoolState = "degraded" // fewer than replicas active, for degradedAfter or since its start
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

// evidence is what the supervisor learnt about a failure.
type evidence struct {
	kind   EventKind     // exit, violation, deadline, hang, kill, ...
	code   contract.Code // the violation's code, when the evidence is one
	reason string
	at     time.Time // first evidence
	action string    // the decision a violation event records, if any (stateless.go)
}

type pendingRecovery struct {
	agent  string
	cause  EventKind
	fault  time.Time
	detect time.Time
}

// Pool is a named set of identical agents under one supervisor.
type Pool struct {
	sup  *Supervisor
	name string
	log  *slog.Logger
	lend lender    // free agents and the callers waiting for one
	gone goneTails // the stderr tails of its latest dead agents
	// broken: this host cannot run its config (see brokenPool); it is
	// listed, failed, and never starts an agent.
	broken bool

	// live counts the slots (and sandboxes being made) until their process
	// and sandbox are gone; bg the pool's other goroutines (giving up,
	// rolling out, finishing attempts their callers abandoned). Stop waits
	// for both.
	live sync.WaitGroup
	bg   tracker
	// input checks every call's input (input_schema); nil: any input.
	// Read without p.mu, on every call.
	input atomic.Pointer[contract.Contract]

	// mu guards the fields below it, and each slot's state.
	//
	// Lock ordering: Pool.mu before Pool.lend.mu; neither is held while
	// calling the breaker's methods (which take its own lock), the event
	// hub, or any hook.
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
	// Spares under fire (surge.go).
	surge       int
	shortSince  time.Time // when a whole pool fell short of its replicas (recoveredLocked)
	surgeAt     time.Time
	surgeTimer  *time.Timer   // armed while a surge stands (surge.go)
	replaced    []time.Time   // runtime replacements of the last surgeWindow
	startTime   time.Duration // EWMA of spawn to ready
	lost        int           // temporary/transient agents not replaced
	state       PoolState
	reason      string
	restarts    int
	intensity   *intensity
	backoff     *backoff
	pending     []pendingRecovery
	nextN       int
	epoch       int           // bumped by every stop/restart; stale spawns retire
	down        chan struct{} // closed while the pool is failed or stopped
	parent      *group
	breaker     *breaker.Breaker
	givingUp    bool // intensity exceeded; the escalation is under way
	lat         latencyTracker
	cfgGen      int    // bumped by every configure: a sandbox made for an older one is stale
	digest      string // ConfigDigest(cfg) for generation digestGen: one JSON encoding per configuration, not per agent
	digestGen   int
	nextSandbox *spareSandbox // the next agent's cgroup, made ahead of need
	preparing   bool          // nextSandbox is being made
	// tools are what the pool's latest MCP server to shake hands listed.
	tools atomic.Pointer[[]agent.Tool]

	// The pool's zygote, if it starts agents so (zygote.go).
	zygMu sync.Mutex
	zyg   *zygote

	// agentOrder is slots' IDs in the order Agents lists them, kept
	// between calls: the telemetry and Arbiter loops list every agent each
	// second, and sorting a thousand IDs each time was a tenth of the idle
	// daemon's CPU. Checked against slots at each use; under mu.
	agentOrder []string
}

// slot is one agent incarnation and its worker goroutine.
type slot struct {
	id    string
	pool  *Pool
	epoch int

	a  process
	sb Sandbox

	state     AgentState // guarded by pool.mu; changed only by transitionLocked
	accepting atomic.Bool
	served    atomic.Bool // it has served a valid call: its start worked
	lease     slotLease   // guarded by pool.lend.mu
	// The contract and stall timeout of the configuration it was started
	// with, for the callers it is lent to.
	contract     *contract.Contract
	stallTimeout time.Duration
	// retryToolErrors: on_tool_error retry, an MCP tool error is a
	// violation.
	retryToolErrors bool
	lastCall        atomic.Int64 // unix nanos of the end of its last call; pings wait for idleness
	promote         chan struct{}
	stopReq         chan string
	dead            chan struct{} // closed once the slot is dead or stopping
	deadOnce        sync.Once
	started         time.Time
	tail            *logTail // its last stderr lines
	activeSince     time.Time
	retries         int                      // failed starts before this one
	graceful        atomic.Bool              // a SIGTERM stop is under way; destroy waits for it
	killed          atomic.Bool              // killNow sent its SIGKILL: destroy need not again
	inject          atomic.Pointer[injected] // chaos: misbehaviour in the message path
	isolated        atomic.Bool              // out of service and cut off; not pinged
	session         atomic.Pointer[string]   // the session of the call it serves, if any (AgentsServing)
	oomKilled       atomic.Bool              // an OOM kill hit its cgroup (see watchOOM)
	pinging         atomic.Bool              // a ping is in flight (see pingLoop)
	lastPing        atomic.Int64             // unix nanos of the start of its last ping
	stopOOM         func()                   // ends watchOOM; set and called by its worker
	// Isolated with action keep (guarded by pool.mu): at daemon stop it is
	// frozen and left for the next daemon (kept), see kept.go.
	keep          bool
	isolatedAt    time.Time
	isolateReason string
	kept          atomic.Bool // handed over at daemon stop: leave its process and cgroup
	keptPID       int         // a kept agent restored from a previous daemon has no process handle
	calls         atomic.Uint64
	lat           latencyTracker
	fault         atomic.Int64  // unix nanos of an injected fault, 0 if none
	prepared      bool          // sb was made ahead of need, OnSandbox already called
	up            chan struct{} // closed once its start has ended, ready or not
	// The replacements started for this slot when it died: its cleanup
	// waits for their start, which it would otherwise slow down.
	replacements []*slot

	// streak counts its violations in a row (stateless.go).
	streak violationStreakState
}

func (sl *slot) markDead() { sl.deadOnce.Do(func() { close(sl.dead) }) }

func (sl *slot) pid() int {
	if sl.a != nil {
		return sl.a.PID()
	}
	return sl.keptPID
}

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
	var input *contract.Contract
	if len(pc.InputSchema) > 0 {
		// The input's contract is its schema alone: no size or token limit.
		if input, err = contract.Compile(contract.Spec{Schema: pc.InputSchema}); err != nil {
			return fmt.Errorf("pool %s: input_schema: %w", pc.Name, err)
		}
	}
	cred, err := p.sup.opts.Credentials(pc.User, pc.Group)
	if err != nil {
		return fmt.Errorf("pool %s: %w", pc.Name, err)
	}
	p.input.Store(input)
	old, first := p.cfg, p.breaker == nil
	p.cfg, p.contract, p.cred = pc, c, cred
	p.cfgGen++
	if first {
		p.replicas, p.sparesWanted = pc.Replicas, pc.Spares
	} else {
		p.applySizeLocked(old, pc)
	}
	p.intensity = newIntensity(pc.Intensity.MaxRestarts, pc.Intensity.Period)
	p.backoff = newBackoff(pc.Backoff.Initial, pc.Backoff.Max, pc.Backoff.ResetAfter, p.sup.opts.Rand)
	name := pc.Name
	p.breaker = breaker.New(name, breaker.Config{
		Window:       pc.Breaker.Window,
		MinCalls:     pc.Breaker.MinCalls,
		FailureRatio: pc.Breaker.FailureRatio,
		OpenFor:      pc.Breaker.OpenFor,
		MaxOpenFor:   pc.Breaker.MaxOpenFor,
		Now:          p.sup.opts.Now,
	}, func(from, to breaker.State) {
		if to == breaker.Open {
			p.lend.breakerOpens()
		}
		p.sup.emit(Event{Kind: EventBreaker, Pool: name, Reason: fmt.Sprintf("%s -> %s", from, to)})
	})
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
	p.ensureLocked(0, false)
	p.mu.Unlock()
}

func (p *Pool) effectiveReplicas() int {
	n := p.replicas - p.lost
	if n < 0 {
		return 0
	}
	return n
}

// degradedAfter is how long a pool that was whole may be short of its
// replicas before Status calls it degraded. Runtime faults are replaced at
// once, and a replacement takes a start (tens of ms, more on a loaded
// host); calls meanwhile wait for the spare and are served. Degraded is
// for a pool that cannot hold its strength, not one replacing an agent:
// an alert on every replacement would fire many times a second at 5 %
// hallucination. The active count in the status is always the current one.
const degradedAfter = time.Second

// Status returns the pool's status.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	state := p.state
	if state == PoolRunning && !p.shortSince.IsZero() && time.Since(p.shortSince) >= degradedAfter {
		state = PoolDegraded
	}
	st := PoolStatus{
		Name:         p.name,
		Replicas:     p.effectiveReplicas(),
		Active:       p.activeN,
		Spares:       len(p.spares),
		SparesWanted: p.spareTargetLocked(),
		Starting:     p.starting,
		State:        state,
		Reason:       p.reason,
		Restarts:     p.restarts,
	}
	b := p.breaker
	p.mu.Unlock()
	st.Breaker = b.State().String()
	return st
}

// Agents returns the pool's live agents, ordered by id number.
func (p *Pool) Agents() []AgentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]AgentStatus, 0, len(p.slots))
	if !sameIDs(p.agentOrder, p.slots) {
		p.agentOrder = sortedSlotIDs(p.slots)
	}
	for _, id := range p.agentOrder {
		sl := p.slots[id]
		as := AgentStatus{ID: sl.id, Pool: p.name, State: sl.state, Restarts: sl.retries, Started: sl.started, Calls: sl.calls.Load(), Latency: sl.lat.typical()}
		ok, total := sl.lat.sum()
		as.OKCalls, as.LatencyTotal = uint64(ok), total
		as.PID = sl.pid()
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
	p.ensureLocked(0, true)
}

// sameIDs reports whether ids are exactly m's keys (ids has no duplicate):
// a thousand map lookups, not a sort.
func sameIDs(ids []string, m map[string]*slot) bool {
	if len(ids) != len(m) {
		return false
	}
	for _, id := range ids {
		if _, ok := m[id]; !ok {
			return false
		}
	}
	return true
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
