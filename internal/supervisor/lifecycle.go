package supervisor

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/fault"
)

// ensureLocked starts spawns until active + spares + starting reaches the
// wanted strength, and returns the new slots. Urgent spawns (replacing a
// failed agent, refilling spares) go before others in the node's spawn
// budget. Called with p.mu held.
func (p *Pool) ensureLocked(delay time.Duration, urgent bool) []*slot {
	if p.state == PoolFailed || p.state == PoolStopped {
		return nil
	}
	var made []*slot
	want := p.effectiveReplicas() + p.spareTargetLocked()
	for have := p.activeN + len(p.spares) + p.starting; have < want; have++ {
		id, sb := p.takeSandboxLocked()
		sl := &slot{
			id:              id,
			sb:              sb,
			prepared:        sb != nil,
			up:              make(chan struct{}),
			pool:            p,
			epoch:           p.epoch,
			state:           AgentStarting,
			contract:        p.contract,
			stallTimeout:    p.cfg.StallTimeout,
			retryToolErrors: p.cfg.OnToolError == config.OnToolErrorRetry,
			streak:          violationStreakState{limit: violationStreak(p.cfg)},
			promote:         make(chan struct{}, 1),
			stopReq:         make(chan string, 1),
			dead:            make(chan struct{}),
			tail:            newLogTail(id),
		}
		p.starting++
		p.slots[sl.id] = sl
		p.live.Add(1)
		go p.run(sl, delay, urgent, p.cfg, p.cred, p.down)
		made = append(made, sl)
	}
	return made
}

// run is the life of one agent: wait out its restart delay, an open
// breaker and its turn in the node's spawn budget, then spawn, handshake
// and serve until it fails, is drained or the pool stops.
func (p *Pool) run(sl *slot, delay time.Duration, urgent bool, pc config.Pool, cred *syscall.Credential, down chan struct{}) {
	defer p.live.Done()
	// Whoever ends the slot's life hands back its process and sandbox
	// here; the worker destroys them itself so Stop can wait for it.
	defer p.destroy(sl)
	var asked time.Time
	for {
		if !p.waitToSpawn(delay, down) {
			close(sl.up)
			p.retire(sl)
			return
		}
		asked = p.sup.opts.Now()
		if !p.sup.spawns.acquire(down, urgent) {
			close(sl.up)
			p.retire(sl)
			return
		}
		// The breaker may have opened while this start waited its turn.
		if !p.breakerOpen() {
			break
		}
		p.sup.spawns.release()
		delay = 0
	}
	if p.calledOff(sl) {
		p.sup.spawns.release()
		close(sl.up)
		return
	}
	// The spawn budget's place is handed for a handshake's once the
	// process is cloned (see handshakesPerSpawn).
	held := p.sup.spawns // the gate whose place this start holds
	started := func() {
		next := p.sup.handshakes
		if !next.acquire(down, urgent) {
			next = nil // the pool went down: the handshake fails soon
		}
		held.release()
		held = next
	}
	if !urgent {
		// A first start, a scale-up or a rollout waits behind the
		// whole batch it came with: no measure of what a replacement
		// takes, and a surge sized on it after a thousand agents had
		// started (seconds each, in the queue) kept hundreds of spares
		// after a hundred deaths.
		asked = time.Time{}
	}
	err := p.spawn(sl, pc, cred, started)
	ok := err == nil && p.ready(sl, asked)
	if held != nil {
		held.release()
	}
	close(sl.up)
	if err != nil {
		if !p.calledOff(sl) {
			p.spawnFailed(sl, err)
		}
		return
	}
	if !ok {
		return
	}
	p.oomDuringStart(sl)
	p.serve(sl, pc, down)
}

// waitToSpawn waits for the restart delay, then for as long as the pool's
// breaker is open: a pool whose agents all fail (their upstream is down)
// does not storm restarts. It reports false if the pool went down.
func (p *Pool) waitToSpawn(delay time.Duration, down chan struct{}) bool {
	for {
		if delay <= 0 {
			p.mu.Lock()
			b := p.breaker
			p.mu.Unlock()
			until := b.OpenUntil()
			if until.IsZero() {
				return true
			}
			delay = max(until.Sub(p.sup.opts.Now()), time.Millisecond)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			delay = 0
		case <-down:
			t.Stop()
			return false
		}
	}
}

// breakerOpen reports whether the pool's breaker refuses starts now.
func (p *Pool) breakerOpen() bool {
	p.mu.Lock()
	b := p.breaker
	p.mu.Unlock()
	return !b.OpenUntil().IsZero()
}

// spawn makes the agent's sandbox, starts its process and waits for its
// handshake; started runs once the process is in its cgroup, before the
// wait.
func (p *Pool) spawn(sl *slot, pc config.Pool, cred *syscall.Credential, started func()) error {
	p.mu.Lock()
	sl.started = p.sup.opts.Now()
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventSpawn, Pool: p.name, Agent: sl.id})
	cfg := p.agentConfig(sl.id, pc, sl.tail)
	cfg.Credential = cred
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
		// Watched before the process starts: no kill goes unseen.
		sl.stopOOM = p.watchOOM(sl)
	}
	start := p.sup.opts.startProcess
	if start == nil {
		start = startProcess
	}
	if pc.Start == config.StartZygote {
		start = func(cfg agent.Config) (process, error) { return p.zygoteProcess(cfg, pc, cred, sl.sb, p.downChan()) }
	}
	a, err := start(cfg)
	if r, ok := sl.sb.(interface{ ReleaseFD() }); ok && cfg.CgroupFD > 0 {
		r.ReleaseFD() // cloned into it: the descriptor is not needed again
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	sl.a = a
	p.mu.Unlock()
	if sl.sb != nil && pc.Start != config.StartZygote { // a zygote's child is placed already
		if err := sl.sb.Join(a.PID()); err != nil {
			return fmt.Errorf("cgroup join: %w", err)
		}
	}
	started()
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
		if ts := a.Tools(); len(ts) > 0 {
			p.tools.Store(&ts)
		}
		return nil
	case <-a.Done():
		return fmt.Errorf("exited before its handshake: %s", a.ExitStatus())
	}
}

// spawnFailed handles an agent that failed before its handshake: a start
// failure, which backs off and counts toward the restart intensity.
func (p *Pool) spawnFailed(sl *slot, err error) {
	if sl.a != nil {
		awaitStderr(sl.a)
	}
	now := p.sup.opts.Now()
	p.mu.Lock()
	p.mustTransitionLocked(sl, AgentDead, now)
	stale := sl.epoch != p.epoch
	var delay time.Duration
	exceeded := false
	if stale {
		p.ensureLocked(0, false)
	} else if !p.givingUp {
		p.restarts++
		delay = p.backoff.failure(now)
		exceeded = p.intensity.restart(now)
		p.givingUp = exceeded
		if !exceeded {
			p.ensureLocked(delay, true)
		}
	}
	in := p.intensity
	p.mu.Unlock()

	p.sup.emit(Event{Kind: EventSpawnFail, Pool: p.name, Agent: sl.id, Reason: sl.tail.withStderr(err.Error()), Class: fault.Start})
	p.log.Warn("agent failed to start", "agent", sl.id, "err", err, "next_delay", delay)
	if exceeded {
		why := sl.tail.withStderr(fmt.Sprintf("restart intensity exceeded (%d start failures in %s); last: %s failed to start: %v", in.max, in.period, sl.id, err))
		p.goTracked(func() { p.giveUp(why) })
	}
}

// ready places a freshly handshaken agent: active if the pool is short,
// else spare. It reports false if the agent is no longer wanted. asked is
// when a replacement asked for its turn in the spawn budget (zero for
// other starts): the wait for it is part of what a replacement takes, and
// spares are sized to that.
func (p *Pool) ready(sl *slot, asked time.Time) bool {
	now := p.sup.opts.Now()
	p.mu.Lock()
	if sl.state == AgentDead { // called off while it started
		p.mu.Unlock()
		return false
	}
	if sl.epoch != p.epoch || p.state == PoolStopped || p.state == PoolFailed {
		p.mustTransitionLocked(sl, AgentDead, now)
		p.ensureLocked(0, false) // this stale spawn no longer counts as starting
		p.mu.Unlock()
		return false
	}
	if !asked.IsZero() {
		p.noteStartLocked(now.Sub(asked))
	}
	evs := []Event{{Kind: EventReady, Pool: p.name, Agent: sl.id, Reason: fmt.Sprintf("pid %d", sl.a.PID())}}
	if p.activeN < p.effectiveReplicas() {
		p.mustTransitionLocked(sl, AgentActive, now)
	} else {
		p.mustTransitionLocked(sl, AgentSpare, now)
	}
	p.keepLocked(sl)
	evs = append(evs, p.recoveredLocked(now)...)
	p.prepareSandboxLocked()
	p.mu.Unlock()
	for _, ev := range evs {
		p.sup.emit(ev)
	}
	return true
}

// classify decides a failure's fault class. An agent that has served a
// valid call, or lived past min_uptime, proved that it starts: whatever
// happens to it later is a runtime fault. One that dies (or stops
// answering pings) before that is a start failure. A call that the agent
// answers wrongly is a runtime fault even on its first call: wrong answers
// are per call and stochastic, and charging them to the pool's restart
// intensity would make a pool that hallucinates 5 % at a high call rate
// give up (about one in twenty fresh agents fails its first call).
func (p *Pool) classify(sl *slot, ev evidence, now time.Time) fault.Class {
	if sl.served.Load() || now.Sub(sl.started) >= p.cfg.MinUptime {
		return fault.Runtime
	}
	switch {
	case ev.kind == EventExit, ev.kind == EventOOM:
		return fault.Start
	case ev.kind == EventHang && ev.code == "": // a missed ping, not a stalled call
		return fault.Start
	}
	return fault.Runtime
}

// fail handles any failure of an agent: the agent is killed through its
// sandbox, a spare is promoted at once, and a replacement is started: at
// once for a runtime fault, after the backoff for a start failure, which
// also counts toward the restart intensity. It is idempotent.
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
		// What stderr has given so far: no wait for its end here, on the
		// way to promoting a spare (start failures, off that path, wait).
		ev.reason = sl.tail.withStderr(ev.reason)
	}
	p.mu.Lock()
	if sl.state == AgentDead || sl.state == AgentStarting {
		p.mu.Unlock()
		return
	}
	prev := sl.state
	p.mustTransitionLocked(sl, AgentDead, now)
	class := p.classify(sl, ev, now)
	faultAt := ev.at
	if f := sl.fault.Load(); f != 0 && (faultAt.IsZero() || time.Unix(0, f).Before(faultAt)) {
		faultAt = time.Unix(0, f)
	}
	if faultAt.IsZero() || faultAt.After(now) {
		faultAt = now
	}
	evs := []Event{{Time: now, Kind: ev.kind, Pool: p.name, Agent: sl.id, Reason: ev.reason, Code: string(ev.code), Injected: sl.fault.Load() != 0, Class: class, Action: ev.action}}
	if prev == AgentActive {
		p.pending = append(p.pending, pendingRecovery{agent: sl.id, cause: ev.kind, fault: faultAt, detect: now})
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
		p.restarts++
		if class == fault.Runtime {
			p.noteReplacementLocked(now)
		}
		if class.Charged() {
			delay = p.backoff.failure(now)
			exceeded = p.intensity.restart(now)
			p.givingUp = exceeded
		}
	} else if prev == AgentActive && p.cfg.Restart != "" && p.cfg.Restart != config.RestartPermanent && ev.kind != EventDrain {
		p.lost++
	}
	if !exceeded {
		evs = append(evs, p.promoteLocked(now)...)
		evs = append(evs, p.recoveredLocked(now)...)
		if replace {
			sl.replacements = p.ensureLocked(delay, true)
		}
	}
	in := p.intensity
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	p.killNow(sl)
	if exceeded {
		why := fmt.Sprintf("restart intensity exceeded (%d start failures in %s); last: %s %s: %s", in.max, in.period, sl.id, ev.kind, ev.reason)
		p.goTracked(func() { p.giveUp(why) })
	}
}

// proven records that sl served its first valid call: its start worked,
// so the restart backoff starts again from nothing and the breaker's
// count of failed starts ends.
func (p *Pool) proven(sl *slot) {
	if sl.served.Swap(true) {
		return
	}
	p.mu.Lock()
	p.backoff.reset()
	b := p.breaker
	p.mu.Unlock()
	b.FirstCall(nil)
}

// killNow kills the slot's whole process tree at once, without waiting;
// the worker goroutine then reaps it and removes the sandbox (destroy).
func (p *Pool) killNow(sl *slot) {
	sl.killed.Store(true)
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
	if sl.stopOOM != nil {
		sl.stopOOM()
	}
	if sl.a == nil && sl.sb == nil {
		return
	}
	if sl.kept.Load() {
		// Left frozen for the next daemon: only this daemon's ends of its
		// pipes go.
		if sl.a != nil {
			sl.a.Close()
		}
		return
	}
	if sl.graceful.Load() && sl.a != nil {
		<-sl.a.Done() // stopSlot kills it after the shutdown timeout
	}
	p.forget(sl)
	p.awaitReplacements(sl)
	p.gone.add(sl.tail)
	p.sup.emit(Event{Kind: EventKill, Pool: p.name, Agent: sl.id})
	if hook := p.sup.opts.OnAgentGone; hook != nil {
		defer hook(sl.id, sl.sb)
	}
	if sl.sb != nil {
		if sl.a != nil {
			// The kernel takes an exiting task out of its cgroup before
			// its pidfd says it exited: once the agent's exit is seen
			// (its pidfd is in the netpoller already), Destroy finds
			// the cgroup empty and only removes it, with no second
			// kill and no inotify watch on cgroup.events, unless the
			// agent left children behind.
			if !sl.killed.Load() {
				p.killNow(sl)
			}
			<-sl.a.Done()
		}
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
// calledOff reports whether a scale-down called off sl's start.
func (p *Pool) calledOff(sl *slot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sl.state == AgentDead
}

func (p *Pool) retire(sl *slot) {
	p.mu.Lock()
	if sl.state == AgentStarting {
		p.mustTransitionLocked(sl, AgentDead, p.sup.opts.Now())
	}
	p.mu.Unlock()
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

// firstCallFailed tells the breaker that a new agent failed its first
// call: when every new agent does, the model or its upstream is down.
func (p *Pool) firstCallFailed(v *contract.Violation) {
	p.mu.Lock()
	b := p.breaker
	p.mu.Unlock()
	b.FirstCall(v)
}

// agentConfig is the agent.Config of agent id of a pool configured as pc
// (but its credential), whose stderr lines go to tail.
func (p *Pool) agentConfig(id string, pc config.Pool, tail *logTail) agent.Config {
	cfg := agent.Config{
		ID:           id,
		Pool:         p.name,
		Command:      pc.Command,
		Dir:          pc.Dir,
		Protocol:     string(pc.Protocol),
		Method:       pc.Method,
		Tool:         pc.Tool,
		MCPContext:   string(pc.MCPContext),
		MaxLineBytes: pc.Contract.MaxOutputBytes + 4096, // room for the JSON-RPC envelope
		Logger:       p.sup.log,
		Now:          p.sup.opts.Now,
	}
	hook, now := p.sup.opts.OnStderr, p.sup.opts.Now
	cfg.OnStderr = func(line string) {
		tail.add(now(), line)
		if hook != nil {
			hook(id, line)
		}
	}
	for k, v := range pc.Env {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	return cfg
}
