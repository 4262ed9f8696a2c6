package supervisor

import (
	"context"
	"sync"
	"time"
)

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
	p.closeDownLocked()
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventPoolFailed, Pool: p.name, Reason: reason})
}

func (p *Pool) closeDownLocked() {
	p.stopSurgeLocked()
	if p.down != nil {
		select {
		case <-p.down:
		default:
			close(p.down)
		}
	}
}

func (p *Pool) restartNode(ctx context.Context, reason string) { p.restart(ctx, reason) }

// restart stops every agent and starts the pool afresh, clearing a failed
// state and the restart history.
func (p *Pool) restart(ctx context.Context, reason string) {
	if p.broken {
		return // nothing runs, nothing to restart: a reload tries it again
	}
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
	p.ensureLocked(0, false)
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventRestart, Pool: p.name, Reason: reason})
}

// stopAgents stops every agent of the pool gracefully, in parallel.
// Agents still starting see the new epoch and retire themselves.
func (p *Pool) stopAgents(ctx context.Context) {
	now := p.sup.opts.Now()
	p.mu.Lock()
	p.epoch++
	var all []*slot
	for _, sl := range p.slots {
		if sl.state != AgentStarting {
			all = append(all, sl)
			sl.graceful.Store(true)
			p.mustTransitionLocked(sl, AgentDead, now)
		}
	}
	p.pending = nil
	pc := p.cfg
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, sl := range all {
		wg.Go(func() { p.stopSlot(ctx, sl, pc.ShutdownTimeout) })
	}
	wg.Wait()
}

// stopSlot stops one agent as its protocol says (an MCP server: stdin
// closed, then SIGTERM after half the timeout; a native agent: SIGTERM),
// then kills what is left after timeout.
func (p *Pool) stopSlot(ctx context.Context, sl *slot, timeout time.Duration) {
	if sl.a == nil {
		return
	}
	sl.graceful.Store(true)
	start := time.Now()
	sl.a.Terminate(timeout / 2)
	t := time.NewTimer(max(timeout-time.Since(start), 0))
	select {
	case <-sl.a.Done():
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	p.sup.emit(Event{Kind: EventStop, Pool: p.name, Agent: sl.id})
	p.killNow(sl)
}

// stop stops the pool for good. With keep (the daemon is stopping), agents
// isolated with action keep are frozen and left for the next daemon, and
// returned.
func (p *Pool) stop(ctx context.Context, reason string, keep bool) []KeptAgent {
	var kept []KeptAgent
	if keep {
		kept = p.keepIsolated(ctx)
	}
	p.mu.Lock()
	p.state = PoolStopped
	p.reason = reason
	p.closeDownLocked()
	p.mu.Unlock()
	p.stopAgents(ctx)
	p.dropSandbox()
	// Spawns in flight see the stopped state and retire themselves; every
	// worker destroys its own process and sandbox, and a sandbox being made
	// ahead of need is removed once made; attempts abandoned by their
	// callers finish by their deadline. Wait for all of them, and for the
	// pool's other goroutines, so that nothing outlives Stop.
	p.waitWorkers(ctx)
	return kept
}

// waitWorkers waits for the pool's agent workers and other goroutines to
// end, or for ctx.
func (p *Pool) waitWorkers(ctx context.Context) {
	done := make(chan struct{})
	go func() { p.live.Wait(); p.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// goTracked runs fn on a goroutine that stop waits for.
func (p *Pool) goTracked(fn func()) { p.bg.Go(fn) }

// drain takes an agent out of service once its call in flight is done; a
// spare takes its place first, and a replacement starts.
func (p *Pool) drain(sl *slot, reason string, urgent bool) {
	now := p.sup.opts.Now()
	p.mu.Lock()
	if sl.state != AgentActive && sl.state != AgentSpare {
		p.mu.Unlock()
		return
	}
	p.mustTransitionLocked(sl, AgentDraining, now)
	evs := []Event{{Time: now, Kind: EventDrain, Pool: p.name, Agent: sl.id, Reason: reason}}
	evs = append(evs, p.promoteLocked(now)...)
	p.ensureLocked(0, urgent)
	p.mu.Unlock()
	for _, e := range evs {
		p.sup.emit(e)
	}
	p.requestStop(sl, reason)
}

// drainNoReplace drains an agent that the pool no longer needs.
func (p *Pool) drainNoReplace(sl *slot, reason string) {
	p.mu.Lock()
	if sl.state != AgentActive && sl.state != AgentSpare {
		p.mu.Unlock()
		return
	}
	p.mustTransitionLocked(sl, AgentDraining, p.sup.opts.Now())
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventDrain, Pool: p.name, Agent: sl.id, Reason: reason})
	p.requestStop(sl, reason)
}

// requestStop asks the agent's worker to stop it after its call in flight.
func (p *Pool) requestStop(sl *slot, reason string) {
	select {
	case sl.stopReq <- reason:
	default:
	}
}
