package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// Supervisor is what the engine needs of the supervisor;
// *supervisor.Supervisor has it.
type Supervisor interface {
	Pool(name string) (*supervisor.Pool, error)
	Status() []supervisor.PoolStatus
	Agents(pool string) ([]supervisor.AgentStatus, error)
	Call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error)
	Subscribe(buf int) (<-chan supervisor.Event, func())
	NoteFault(agentID string, t time.Time) error
	InjectFault(agentID string, f supervisor.Fault) error
	ClearFault(agentID string) error
	AgentSandbox(agentID string) (supervisor.Sandbox, int, error)
}

// Isolator cuts an agent's network at its cgroup and restores it; the Kill
// Switch (*isolate.Switch) is one.
type Isolator interface {
	Isolate(agentID, cgroupPath string) error
	Release(agentID string) error
}

// Options configure an Engine.
type Options struct {
	// Supervisor runs the pools faults are injected into. Required.
	Supervisor Supervisor
	// Isolator severs agents; nil means sever is not supported, and
	// IsolatorErr (if set) says why.
	Isolator    Isolator
	IsolatorErr error
	// HelperCommand starts the memory helper of leak and oom; the engine
	// appends the helper's arguments. Default: this executable with
	// HelperArg (its main must call MaybeRunHelper).
	HelperCommand []string
	// Arbiter says the daemon runs the Arbiter: reports then score its
	// predictions against the injected faults ([Report.Arbiter]).
	Arbiter bool
	Logger  *slog.Logger
	Now     func() time.Time
}

// Engine runs chaos experiments on a daemon's pools, one at a time.
type Engine struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	cur    *experiment
	closed bool
}

// New returns an engine.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.HelperCommand) == 0 {
		if exe, err := os.Executable(); err == nil {
			opts.HelperCommand = []string{exe, HelperArg}
		}
	}
	return &Engine{opts: opts, log: opts.Logger.With("component", "chaos")}
}

// Progress is one step of a running experiment.
type Progress struct {
	// Type is started, injected, recovered, not_recovered, skipped or
	// ending.
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	Kind      Kind      `json:"kind,omitempty"`
	Agent     string    `json:"agent,omitempty"`
	DetectMS  *float64  `json:"detect_ms,omitempty"`
	RecoverMS *float64  `json:"recover_ms,omitempty"`
	Message   string    `json:"message,omitempty"`
}

// Status says whether an experiment is running.
type Status struct {
	Running   bool      `json:"running"`
	Started   time.Time `json:"started,omitzero"`
	Spec      *Spec     `json:"spec,omitempty"`
	Injected  int       `json:"injected"`
	Recovered int       `json:"recovered"`
}

// Status returns the running experiment's progress.
func (e *Engine) Status() Status {
	e.mu.Lock()
	x := e.cur
	e.mu.Unlock()
	if x == nil {
		return Status{}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	st := Status{Running: true, Started: x.started, Spec: &x.spec, Injected: len(x.injections)}
	for _, in := range x.injections {
		if in.Recovered {
			st.Recovered++
		}
	}
	return st
}

// Stop ends the running experiment: its faults are undone and its Run
// returns the report of what was measured. It reports whether one was
// running.
func (e *Engine) Stop(reason string) bool {
	e.mu.Lock()
	x := e.cur
	e.mu.Unlock()
	if x == nil {
		return false
	}
	x.abort(errors.New(reason))
	return true
}

// Close stops the running experiment, waits until its faults are undone,
// and refuses new ones. The daemon calls it before it stops its pools.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	x := e.cur
	e.mu.Unlock()
	if x != nil {
		x.abort(errors.New("the daemon is stopping"))
		<-x.done
	}
	return nil
}

// Run runs one experiment and returns its report. Everything is checked
// before anything is injected: a malformed spec, an unknown target or a busy
// engine is an error and nothing happens. Once the experiment has started
// (progress sees "started") Run returns a report whatever ends it; when ctx
// ends or Stop or Close is called, every fault is undone first and the
// report says why it was aborted. progress, if not nil, is called from one
// goroutine; it may be slow, it never delays a fault (progress beyond a
// buffer is dropped).
func (e *Engine) Run(ctx context.Context, spec Spec, progress func(Progress)) (*Report, error) {
	if e.opts.Supervisor == nil {
		return nil, errors.New("chaos: engine without a supervisor")
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := spec.Normalize(); err != nil {
		return nil, err
	}
	x, err := e.plan(spec)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return nil, ErrClosed
	case e.cur != nil:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w (started %s on %s); stop it with `resilientctl chaos stop`", ErrBusy, e.cur.started.Format(time.TimeOnly), e.cur.spec.Target)
	}
	x.started = e.opts.Now() // before it is published: Status and ErrBusy read it
	e.cur = x
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.cur = nil
		e.mu.Unlock()
		close(x.done)
	}()
	return x.run(ctx, progress), nil
}

// experiment is one run.
type experiment struct {
	e     *Engine
	sup   Supervisor
	spec  Spec
	kinds []Kind // injectable kinds, in spec order
	// unsupported kinds and why.
	unsupported map[Kind]string
	notes       []string
	pool        *supervisor.Pool
	agent       string // an agent target; "" for a pool
	count       int    // faults per kind; 0 with a duration
	width       int    // agents per round
	memLimit    int64
	rng         *rand.Rand
	input       func(n uint64) []byte
	started     time.Time
	done        chan struct{}

	cancel context.CancelCauseFunc
	mu     sync.Mutex
	// abortCause is set by abort before ctx exists (or at any time).
	abortCause error
	injections []*Injection
	busy       map[string]bool // agents with a fault in flight
	waiters    map[string]chan supervisor.Event
	probes     Calls
	load       *loadGen

	progress chan Progress
	lost     int
	// predictions are the Arbiter's prediction events in the pool.
	predictions []supervisor.Event
}

func (e *Engine) plan(spec Spec) (*experiment, error) {
	sup := e.opts.Supervisor
	x := &experiment{
		e: e, sup: sup, spec: spec,
		unsupported: map[Kind]string{},
		busy:        map[string]bool{},
		waiters:     map[string]chan supervisor.Event{},
		done:        make(chan struct{}),
		input:       callInput,
	}
	// The target: a pool, else an agent.
	if p, err := sup.Pool(spec.Target); err == nil {
		x.pool = p
	} else {
		agents, _ := sup.Agents("")
		for _, a := range agents {
			if a.ID == spec.Target {
				if a.State != supervisor.AgentActive {
					return nil, fmt.Errorf("%w: agent %s is %s; faults go to active agents", ErrInvalidSpec, a.ID, a.State)
				}
				p, err := sup.Pool(a.Pool)
				if err != nil {
					return nil, fmt.Errorf("%w: agent %s: %v", ErrUnknownTarget, a.ID, err)
				}
				x.pool, x.agent = p, a.ID
				break
			}
		}
		if x.pool == nil {
			var names []string
			for _, st := range sup.Status() {
				names = append(names, st.Name)
			}
			pools := "none"
			if len(names) > 0 {
				pools = strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("%w: no pool or agent named %q (pools: %s; see `resilientctl agents`)", ErrUnknownTarget, spec.Target, pools)
		}
	}
	pc := x.pool.Config()
	st := x.pool.Status()
	if st.State == supervisor.PoolFailed || st.State == supervisor.PoolStopped {
		return nil, fmt.Errorf("%w: pool %s is %s: %s", ErrInvalidSpec, st.Name, st.State, st.Reason)
	}
	if st.Replicas < 1 {
		return nil, fmt.Errorf("%w: pool %s has no active agents to fault", ErrInvalidSpec, st.Name)
	}

	// The schedule.
	x.count = spec.Count
	if x.agent != "" {
		if x.count == 0 {
			x.count = 1
		}
		if len(spec.Faults) != 1 || x.count != 1 || spec.Rate != nil || spec.Duration != 0 || spec.Share != 0 {
			return nil, fmt.Errorf("%w: agent %s can take one fault of one kind: it is replaced after that (target its pool %s for more)", ErrInvalidSpec, x.agent, st.Name)
		}
	} else if x.count == 0 && spec.Duration == 0 {
		x.count = DefaultCount
	}
	x.spec.Count = x.count

	// The blast radius.
	x.width = 1
	if spec.Share > 0 {
		x.width = int(math.Ceil(spec.Share * float64(st.Replicas)))
	}
	radius := spec.blastRadius()
	if x.width > radius {
		return nil, fmt.Errorf("%w: share %g of pool %s's %d agents faults %d at once, beyond the blast radius of %d (raise --max-concurrent)", ErrInvalidSpec, spec.Share, st.Name, st.Replicas, x.width, radius)
	}
	if spec.MaxConcurrent == 0 && x.width >= st.Replicas {
		return nil, fmt.Errorf("%w: this schedule faults every agent of pool %s (%d active) at once; pass --max-concurrent %d (max_concurrent) to mean it", ErrInvalidSpec, st.Name, st.Replicas, x.width)
	}

	// What this host and this pool allow.
	sandboxed := false
	if agents, err := sup.Agents(st.Name); err == nil {
		for _, a := range agents {
			if a.Cgroup != "" {
				sandboxed = true
				break
			}
		}
	}
	noCgroup := fmt.Sprintf("the agents of pool %s run without cgroups (the daemon is not root, or has no cgroup2)", st.Name)
	x.memLimit = pc.Limits.Memory
	for _, k := range spec.Faults {
		switch k {
		case Sever:
			switch {
			case e.opts.IsolatorErr != nil:
				x.unsupported[k] = e.opts.IsolatorErr.Error()
			case e.opts.Isolator == nil:
				x.unsupported[k] = "this daemon has no network isolation (Kill Switch)"
			case !sandboxed:
				x.unsupported[k] = noCgroup
			}
		case Leak, OOM:
			switch {
			case !sandboxed:
				x.unsupported[k] = noCgroup
			case len(e.opts.HelperCommand) == 0:
				x.unsupported[k] = "no helper command to allocate memory in the agent's cgroup"
			case pc.Limits.Memory <= 0:
				return nil, fmt.Errorf("%w: %s needs a memory limit on pool %s (limits.memory): without one it would eat the node's memory", ErrInvalidSpec, k, st.Name)
			}
		case Hallucinate:
			if spec.HallucinateKind == "schema" && len(pc.Contract.Schema) == 0 {
				return nil, fmt.Errorf("%w: pool %s has no output schema, so a schema hallucination cannot be noticed; use hallucinate_kind invalid_json or oversize", ErrInvalidSpec, st.Name)
			}
		}
		if _, ok := x.unsupported[k]; !ok {
			x.kinds = append(x.kinds, k)
		}
	}
	if !sandboxed {
		x.notes = append(x.notes, "degraded mode: agents run in process groups, without cgroups; hang uses SIGSTOP; sever, leak and oom cannot be injected")
	}
	if float64(*spec.Load) == 0 {
		x.notes = append(x.notes, "no load from the engine (load 0): faults that show only on a call (hang, latency, sever, hallucinate, corrupt-token) are noticed through pings or other callers' calls")
	}

	if x.spec.Seed == 0 {
		x.spec.Seed = rand.Uint64()>>11 | 1 // small enough to type
	}
	x.rng = rand.New(rand.NewPCG(x.spec.Seed, 0x6368616f73)) // "chaos"
	return x, nil
}

func (x *experiment) now() time.Time { return x.e.opts.Now() }

// abort ends the experiment with cause.
func (x *experiment) abort(cause error) {
	x.mu.Lock()
	if x.abortCause == nil {
		x.abortCause = cause
	}
	cancel := x.cancel
	x.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

func (x *experiment) emit(p Progress) {
	if p.Time.IsZero() {
		p.Time = x.now()
	}
	select {
	case x.progress <- p:
	default:
		x.mu.Lock()
		x.lost++
		x.mu.Unlock()
	}
}

func (x *experiment) run(parent context.Context, progress func(Progress)) *Report {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	x.mu.Lock()
	x.cancel = cancel
	if x.abortCause != nil {
		cancel(x.abortCause)
	}
	x.mu.Unlock()

	x.progress = make(chan Progress, 1024)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		for p := range x.progress {
			if progress != nil {
				progress(p)
			}
		}
	}()

	// Subscribe before anything happens, so no event is missed.
	events, unsubscribe := x.sup.Subscribe(16384)
	dispatchCtx, stopDispatch := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() { defer close(dispatched); x.dispatch(dispatchCtx, events) }()

	r := &Report{Seed: x.spec.Seed, Target: x.spec.Target, Pool: x.pool.Name(), Started: x.started, Notes: x.notes}
	x.emit(Progress{Type: "started", Message: fmt.Sprintf("pool %s, kinds %s, seed %d", x.pool.Name(), kindsString(x.spec.Faults), x.spec.Seed)})
	for _, k := range x.spec.Faults {
		if why, ok := x.unsupported[k]; ok {
			x.emit(Progress{Type: "skipped", Kind: k, Message: "not supported here: " + why})
		}
	}

	x.waitWhole(ctx, nil, 30*time.Second)
	if rate := float64(*x.spec.Load); rate > 0 && ctx.Err() == nil {
		x.load = startLoad(x, rate)
		sleep(ctx, time.Duration(x.spec.Warmup))
		r.BaselineMS = x.load.latency(time.Time{}, x.now())
	}
	if ctx.Err() == nil {
		x.schedule(ctx)
	}

	if ctx.Err() != nil {
		r.Aborted = describeCause(context.Cause(ctx))
		x.emit(Progress{Type: "ending", Message: "aborted: " + r.Aborted + "; every injected fault was undone"})
	}
	if x.load != nil {
		x.load.stop()
		r.Calls = x.load.calls()
	}
	stopDispatch()
	<-dispatched
	unsubscribe()

	x.mu.Lock()
	r.Calls.Add(x.probes)
	r.Injections = slices.Clone(x.injections)
	if x.e.opts.Arbiter {
		r.Arbiter = scoreArbiter(r.Injections, x.predictions)
	}
	if x.lost > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d progress messages were dropped (slow reader); the report is complete", x.lost))
	}
	x.mu.Unlock()
	r.Calls.By = []string{fmt.Sprintf("the chaos engine (%s load and probe calls)", x.spec.Load)}
	r.Spec = x.spec
	r.Replay = x.spec.Command()
	r.Ended = x.now()
	r.build(x.spec.Faults, x.unsupported, time.Duration(x.spec.Gate))
	close(x.progress)
	select {
	case <-progressDone:
	case <-time.After(5 * time.Second):
		x.e.log.Warn("chaos: the progress reader is stuck; returning the report without it")
	}
	return r
}

func describeCause(err error) string {
	switch {
	case err == nil:
		return "interrupted"
	case errors.Is(err, context.Canceled):
		return "interrupted: the caller went away"
	case errors.Is(err, context.DeadlineExceeded):
		return "interrupted: the caller's deadline passed"
	}
	return err.Error()
}

func kindsString(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

// dispatch hands the pool's events to the faults waiting for them, and ends
// the experiment when the pool gives up.
func (x *experiment) dispatch(ctx context.Context, events <-chan supervisor.Event) {
	pool := x.pool.Name()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.Pool != pool {
				continue
			}
			switch ev.Kind {
			case supervisor.EventPoolFailed, supervisor.EventEscalate:
				x.abort(fmt.Errorf("pool %s gave up: %s", pool, ev.Reason))
				continue
			}
			if ev.Agent == "" {
				continue
			}
			x.mu.Lock()
			if ev.Kind == supervisor.EventPrediction {
				x.predictions = append(x.predictions, ev)
			}
			ch := x.waiters[ev.Agent]
			x.mu.Unlock()
			if ch != nil {
				select {
				case ch <- ev:
				default:
				}
			}
		}
	}
}

func (x *experiment) watch(agent string) chan supervisor.Event {
	ch := make(chan supervisor.Event, 64)
	x.mu.Lock()
	x.waiters[agent] = ch
	x.mu.Unlock()
	return ch
}

func (x *experiment) unwatch(agent string) {
	x.mu.Lock()
	delete(x.waiters, agent)
	delete(x.busy, agent)
	x.mu.Unlock()
}

// whole reports whether the pool has its replicas active and its spares
// ready.
func (x *experiment) whole() bool {
	st := x.pool.Status()
	return st.State == supervisor.PoolRunning && st.Active >= st.Replicas && st.Spares >= st.SparesWanted
}

// waitWhole waits until the pool is whole, at most max; false if ctx or
// stop ended the wait.
func (x *experiment) waitWhole(ctx context.Context, stop <-chan time.Time, max time.Duration) bool {
	limit := time.NewTimer(max)
	defer limit.Stop()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !x.whole() {
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-limit.C:
			return true // go on with a pool that does not get whole
		case <-t.C:
		}
	}
	return true
}

// schedule injects the rounds of the experiment and waits for their faults
// to be closed (recovered or undone).
func (x *experiment) schedule(ctx context.Context) {
	if len(x.kinds) == 0 {
		return
	}
	var deadline <-chan time.Time
	if d := time.Duration(x.spec.Duration); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	var tick <-chan time.Time
	if x.spec.Rate != nil {
		t := time.NewTicker(time.Duration(float64(time.Second) / float64(*x.spec.Rate)))
		defer t.Stop()
		tick = t.C
	}
	slots := make(chan struct{}, x.spec.blastRadius())
	var all sync.WaitGroup
	defer all.Wait()
	var order []Kind
	for i := 0; ; i++ {
		if i%len(x.kinds) == 0 {
			if x.count > 0 && i/len(x.kinds) >= x.count {
				return
			}
			order = slices.Clone(x.kinds)
			x.rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		}
		kind := order[i%len(x.kinds)]
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return
			case <-deadline:
				return
			}
		} else if i > 0 {
			sleep(ctx, 20*time.Millisecond) // let calls reach the new agents
			if !x.waitWhole(ctx, deadline, 5*time.Second) {
				return
			}
		}
		select {
		case <-deadline:
			return
		default:
		}
		taken := 0
		for taken < x.width {
			select {
			case slots <- struct{}{}:
				taken++
			case <-ctx.Done():
				for ; taken > 0; taken-- {
					<-slots
				}
				return
			}
		}
		targets := x.pickTargets(ctx, x.width)
		for j := len(targets); j < taken; j++ {
			<-slots
		}
		if len(targets) == 0 {
			if ctx.Err() != nil {
				return
			}
			x.emit(Progress{Type: "skipped", Kind: kind, Message: "no active agent free to fault"})
			if x.agent != "" {
				return
			}
			continue
		}
		var round sync.WaitGroup
		for _, id := range targets {
			seed := x.rng.Uint64()
			all.Add(1)
			round.Add(1)
			go func() {
				defer all.Done()
				defer round.Done()
				defer func() { <-slots }()
				x.fault(ctx, kind, id, seed)
			}()
		}
		if tick == nil {
			round.Wait()
		}
	}
}

// pickTargets chooses n active agents without a fault in flight (the seed
// decides which), marks them busy, and returns them. It waits a little for
// enough of them; it may return fewer.
func (x *experiment) pickTargets(ctx context.Context, n int) []string {
	deadline := x.now().Add(time.Duration(x.spec.Timeout))
	for {
		agents, err := x.sup.Agents(x.pool.Name())
		var free []string
		if err == nil {
			x.mu.Lock()
			for _, a := range agents {
				if a.State == supervisor.AgentActive && !x.busy[a.ID] && (x.agent == "" || a.ID == x.agent) {
					free = append(free, a.ID)
				}
			}
			x.mu.Unlock()
		}
		if len(free) >= n || x.now().After(deadline) || ctx.Err() != nil {
			var out []string
			for len(out) < n && len(free) > 0 {
				i := x.rng.IntN(len(free))
				out = append(out, free[i])
				free = append(free[:i], free[i+1:]...)
			}
			x.mu.Lock()
			for _, id := range out {
				x.busy[id] = true
			}
			x.mu.Unlock()
			return out
		}
		sleep(ctx, 5*time.Millisecond)
	}
}

// fault injects one fault of kind into agent id, waits for it to recover,
// undoes it, and records what happened.
func (x *experiment) fault(ctx context.Context, kind Kind, id string, seed uint64) {
	var fi *faultInstance
	var events chan supervisor.Event
	var err error
	for attempt := 0; ; attempt++ {
		events = x.watch(id)
		fi, err = x.inject(ctx, kind, id, seed)
		if err == nil {
			break
		}
		x.unwatch(id)
		if !errors.Is(err, supervisor.ErrUnknownAgent) && !x.stillThere(id, 50*time.Millisecond) {
			// The agent failed on its own while the fault was being
			// injected (its cgroup killed under the helper, say).
			err = fmt.Errorf("%w %q: gone during the injection: %v", supervisor.ErrUnknownAgent, id, err)
		}
		if !errors.Is(err, supervisor.ErrUnknownAgent) || attempt == 3 || ctx.Err() != nil || x.agent != "" {
			break
		}
		// The agent went away on its own between the choice and the
		// injection: choose another.
		next := x.pickTargets(ctx, 1)
		if len(next) == 0 {
			break
		}
		id = next[0]
	}
	if err != nil {
		if errors.Is(err, supervisor.ErrUnknownAgent) && ctx.Err() != nil {
			return
		}
		in := &Injection{Kind: kind, Agent: id, At: x.now(), Reason: "could not inject: " + err.Error()}
		x.record(in)
		x.emit(Progress{Type: "not_recovered", Kind: kind, Agent: id, Message: in.Reason})
		return
	}
	defer x.unwatch(id)
	recorded := &Injection{Kind: kind, Agent: id, At: fi.t0}
	x.record(recorded)
	x.emit(Progress{Type: "injected", Kind: kind, Agent: id, Time: fi.t0})

	// The outcome is filled in on a copy and published at once under the
	// lock: Status reads the recorded injections meanwhile.
	in := *recorded
	x.await(ctx, fi, &in, events)

	undoCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := fi.undo(undoCtx); err != nil && x.stillThere(id, 0) {
		in.Undo = err.Error()
		x.e.log.Error("undoing a fault", "kind", kind, "agent", id, "err", err)
	}
	cancel()
	x.mu.Lock()
	*recorded = in
	x.mu.Unlock()

	p := Progress{Type: "not_recovered", Kind: kind, Agent: id, DetectMS: in.DetectMS, RecoverMS: in.RecoverMS, Message: in.Reason}
	if in.Recovered {
		p.Type = "recovered"
		p.Message = in.Cause
		if in.How != "" && in.How != "replaced" {
			p.Message = in.How + " after " + in.Cause
		}
	}
	x.emit(p)
}

func (x *experiment) record(in *Injection) {
	x.mu.Lock()
	x.injections = append(x.injections, in)
	x.mu.Unlock()
}

// stillThere reports whether the agent is still live (undoing a fault on
// an agent that was replaced has nothing left to undo), giving the
// supervisor up to grace to notice that it is not.
func (x *experiment) stillThere(id string, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	for {
		if _, _, err := x.sup.AgentSandbox(id); errors.Is(err, supervisor.ErrUnknownAgent) {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failureKinds are the event kinds that say the supervisor acted on an
// agent's failure.
var failureKinds = []supervisor.EventKind{
	supervisor.EventExit, supervisor.EventViolation, supervisor.EventDeadline,
	supervisor.EventHang, supervisor.EventOOM, supervisor.EventIsolate, supervisor.EventChaos,
}

// await waits for the fault's outcome and fills in.
func (x *experiment) await(ctx context.Context, fi *faultInstance, in *Injection, events chan supervisor.Event) {
	timeout := time.Duration(x.spec.Timeout) + fi.extra
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	base := fi.t0 // where the clock starts
	var failure *supervisor.Event
	onset := fi.onset
	var onsetAt time.Time
	for {
		select {
		case t := <-onset:
			onset = nil
			onsetAt = t
			if fi.onsetErr != nil {
				if err := fi.onsetErr(); err != nil {
					in.Reason = err.Error()
					return
				}
			}
		case ev := <-events:
			switch {
			case ev.Kind == supervisor.EventRecovered:
				x.recovered(ctx, fi, in, ev, failure, base, onsetAt)
				return
			case (ev.Kind == supervisor.EventPrediction && !heldOutPrediction(ev)) || (ev.Kind == supervisor.EventDrain && failure == nil):
				in.Cause, in.Reason = string(ev.Kind), ev.Reason
				in.DetectMS = msPtr(ev.Time.Sub(base))
				if (fi.kind == Leak || fi.kind == OOM) && onsetAt.IsZero() {
					// Replaced before the limit was hit: the failure was
					// prevented, there is nothing to recover from.
					in.Recovered, in.How = true, "preempted"
					return
				}
				// Taken out of service (by the Arbiter, or drained) before
				// the supervisor saw it fail: that was its detection. A
				// drain promotes a spare and emits no recovered event, so
				// recovery is the pool whole again with a call served.
				x.drained(ctx, in, base, timer.C)
				return
			case slices.Contains(failureKinds, ev.Kind) && failure == nil:
				e := ev
				failure = &e
			}
		case <-timer.C:
			if fi.kind == Latency {
				x.latencyOutcome(in, fi.t0, timeout)
				return
			}
			in.Reason = x.notRecoveredReason(fi.kind, failure, timeout)
			return
		case <-ctx.Done():
			in.Reason = "the experiment ended before it recovered"
			return
		}
	}
}

func (x *experiment) recovered(ctx context.Context, fi *faultInstance, in *Injection, ev supervisor.Event, failure *supervisor.Event, base, onsetAt time.Time) {
	in.Cause = string(ev.Cause)
	if failure != nil {
		in.Reason = failure.Reason
	}
	if fi.kind == Leak || fi.kind == OOM {
		// The burn is not part of recovery: the clock starts when the
		// cgroup hit its limit (the first OOM kill in it, the helper's
		// death, or the supervisor's first evidence, whichever is
		// earliest).
		start := onsetAt
		if !ev.Fault.IsZero() && (start.IsZero() || ev.Fault.Before(start)) {
			start = ev.Fault
		}
		if !start.IsZero() {
			base = start
			in.OnsetMS = msPtr(start.Sub(fi.t0))
		}
	}
	if !ev.Detect.IsZero() {
		in.DetectMS = msPtr(max(0, ev.Detect.Sub(base)))
	}
	served, err := x.served(ev.Time)
	if err != nil {
		in.Reason = fmt.Sprintf("the pool was back at full strength after %s, but no call was served: %v", fmtMS(ms(ev.Time.Sub(base))), err)
		return
	}
	in.Recovered, in.How = true, "replaced"
	in.RecoverMS = msPtr(served.Sub(base))
}

// drained completes a fault whose agent was drained rather than failed.
func (x *experiment) drained(ctx context.Context, in *Injection, base time.Time, timeout <-chan time.Time) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !x.whole() {
		select {
		case <-ctx.Done():
			in.Reason = "the experiment ended before it recovered"
			return
		case <-timeout:
			in.Reason = fmt.Sprintf("drained (%s) but the pool was not whole again in time", in.Cause)
			return
		case <-t.C:
		}
	}
	served, err := x.served(x.now())
	if err != nil {
		in.Reason = fmt.Sprintf("drained (%s), the pool whole again, but no call was served: %v", in.Cause, err)
		return
	}
	in.Recovered, in.How = true, "drained"
	in.RecoverMS = msPtr(served.Sub(base))
}

// served returns when the pool served a call once it was whole again at
// whole: the first of the engine's own calls to succeed after that moment,
// or a probe call made then, whichever returns first. (A new call on a busy
// pool waits behind the others: that is the pool's queueing, not its
// recovery, and the load's next call shows the pool serving sooner.)
func (x *experiment) served(whole time.Time) (time.Time, error) {
	ch := make(chan time.Time, 2)
	if x.load != nil {
		x.load.notify(whole, ch)
	}
	errc := make(chan error, 1)
	go func() {
		at, err := x.probe()
		if err != nil {
			errc <- err
			return
		}
		ch <- at
	}()
	select {
	case at := <-ch:
		return at, nil
	case err := <-errc:
		select {
		case at := <-ch: // the load may still have been served
			return at, nil
		default:
			return time.Time{}, err
		}
	}
}

// probe makes a call on the pool and returns when it was served.
func (x *experiment) probe() (time.Time, error) {
	var last error
	for range 3 {
		res, err := x.call(context.Background(), 10*time.Second)
		x.mu.Lock()
		countCall(&x.probes, res, err)
		x.mu.Unlock()
		if err == nil {
			return x.now(), nil
		}
		last = err
	}
	return time.Time{}, last
}

var callSeq struct {
	sync.Mutex
	n uint64
}

// call makes one call on the pool with a fresh input.
func (x *experiment) call(ctx context.Context, timeout time.Duration) (*supervisor.CallResult, error) {
	callSeq.Lock()
	callSeq.n++
	n := callSeq.n
	callSeq.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return x.sup.Call(ctx, x.pool.Name(), supervisor.CallRequest{Input: x.input(n)})
}

func countCall(c *Calls, res *supervisor.CallResult, err error) {
	c.Total++
	if err != nil {
		c.Failed++
		msg := err.Error()
		if len(c.Errors) < maxErrors && !slices.Contains(c.Errors, msg) {
			c.Errors = append(c.Errors, msg)
		}
		return
	}
	c.OK++
	if res.Attempts > 1 {
		c.Retried++
	}
}

// latencyOutcome judges a latency fault the supervisor did not replace:
// recovered once callers get normal latency again (the pool hedged, or the
// slow agent got no calls), judged from the engine's own calls.
func (x *experiment) latencyOutcome(in *Injection, t0 time.Time, window time.Duration) {
	if x.load == nil {
		in.Reason = fmt.Sprintf("not replaced within %s, and without load the engine cannot tell whether callers get normal latency", window)
		return
	}
	thr := x.load.slowThreshold()
	recs := x.load.since(t0)
	if len(recs) == 0 {
		in.Reason = fmt.Sprintf("not replaced within %s and no call completed meanwhile", window)
		return
	}
	var lastSlow time.Time
	slow := 0
	for _, r := range recs {
		if r.end.Sub(r.start) > thr {
			slow++
			if r.end.After(lastSlow) {
				lastSlow = r.end
			}
		}
	}
	half := t0.Add(window / 2)
	if slow > 0 && lastSlow.After(half) {
		in.Reason = fmt.Sprintf("calls stayed slow: %d of %d calls took over %s until the end; the supervisor neither hedged nor replaced the agent", slow, len(recs), fmtMS(ms(thr)))
		return
	}
	in.Recovered, in.How = true, "normal-latency"
	if slow == 0 {
		in.RecoverMS = msPtr(0)
		in.Reason = fmt.Sprintf("no call took over %s: the delay never reached callers", fmtMS(ms(thr)))
		return
	}
	in.RecoverMS = msPtr(lastSlow.Sub(t0))
	in.Reason = fmt.Sprintf("callers got normal latency (under %s) again without a replacement", fmtMS(ms(thr)))
}

func (x *experiment) notRecoveredReason(k Kind, failure *supervisor.Event, timeout time.Duration) string {
	if failure != nil {
		return fmt.Sprintf("the supervisor noticed (%s: %s) but the pool was not back at full strength within %s", failure.Kind, failure.Reason, timeout)
	}
	why := fmt.Sprintf("the supervisor did not notice within %s", timeout)
	switch k {
	case CorruptToken:
		why += ": the agent accepted the corrupted token (agents must verify the tokens in their input, e.g. flaky -verify-jwt)"
	case Sever:
		why += ": the agent made no network call that failed (e.g. flaky -upstream HOST:PORT)"
	case Hang, Hallucinate:
		if x.load == nil {
			why += ": no call reached the agent (no load)"
		}
	}
	return why
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
