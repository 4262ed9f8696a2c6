package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// scale sets the number of active replicas. It is a runtime override, kept
// apart from the pool's configuration (as SetSpares's): a reload with the
// file unchanged leaves it, one that changes replicas in the file replaces
// it.
func (p *Pool) scale(n int, o ScaleOptions) error {
	if p.broken {
		return p.errBroken()
	}
	if n < 0 {
		return fmt.Errorf("%w: pool %s: replicas must be >= 0, got %d", ErrScaleRefused, p.name, n)
	}
	if n == 0 && !o.AllowZero {
		return fmt.Errorf("%w: pool %s: 0 replicas stops serving it (its file says at least 1); say so with --allow-zero", ErrScaleRefused, p.name)
	}
	if bound := p.config().ScaleBound(); n > bound && !o.Force {
		return fmt.Errorf("%w: pool %s: %d replicas is over its bound of %d (max_replicas, or from this node: 256 per CPU and what memory holds at the pool's memory limit); use --force to go over it", ErrScaleRefused, p.name, n, bound)
	}
	p.mu.Lock()
	p.replicas = n
	evs, extra := p.resizeLocked(fmt.Sprintf("replicas %d", n))
	p.mu.Unlock()
	p.finishResize(evs, extra, "scaled down")
	return nil
}

// resizeLocked brings the pool to its replicas and spares after either
// changed: spares are promoted or started, and agents beyond the wanted
// strength are returned, to be drained. Called with p.mu held.
func (p *Pool) resizeLocked(why string) ([]Event, []*slot) {
	now := p.sup.opts.Now()
	evs := []Event{{Time: now, Kind: EventScale, Pool: p.name, Reason: why}}
	evs = append(evs, p.promoteLocked(now)...)
	var extra []*slot
	active, spares := p.activeN, len(p.spares)
	for _, id := range sortedSlotIDs(p.slots) {
		sl := p.slots[id]
		switch {
		case sl.state == AgentActive && active > p.effectiveReplicas():
			active--
			extra = append(extra, sl)
		case sl.state == AgentSpare && spares > p.spareTargetLocked():
			spares--
			extra = append(extra, sl)
		}
	}
	// Starts that a larger size ordered and this one does not need are
	// called off (`scale 1000` then `scale 2` must not bring up 1,000):
	// newest first, as they are the furthest from ready.
	surplus := active + spares + p.starting - (p.effectiveReplicas() + p.spareTargetLocked())
	ids := sortedSlotIDs(p.slots)
	for i := len(ids) - 1; i >= 0 && surplus > 0; i-- {
		if sl := p.slots[ids[i]]; sl.state == AgentStarting {
			p.mustTransitionLocked(sl, AgentDead, now)
			surplus--
		}
	}
	p.ensureLocked(0, false)
	evs = append(evs, p.recoveredLocked(now)...)
	return evs, extra
}

// finishResize emits a resize's events and drains the agents it left
// over, each with drainWhy.
func (p *Pool) finishResize(evs []Event, extra []*slot, drainWhy string) {
	for _, e := range evs {
		p.sup.emit(e)
	}
	for _, sl := range extra {
		p.drainNoReplace(sl, drainWhy)
	}
	if len(extra) > 0 {
		// Drained agents no longer count: start the spares still wanted.
		p.mu.Lock()
		p.ensureLocked(0, false)
		p.mu.Unlock()
	}
}

// update applies a changed configuration. A change of replicas or spares
// alone resizes the pool and touches no agent. Any other change applies
// to new agents at once; the old ones are replaced one by one, each only
// once a new one is ready to take its place.
func (p *Pool) update(ctx context.Context, pc config.Pool) error {
	p.mu.Lock()
	old := p.cfg
	if sizeOnly(old, pc) {
		p.cfg = pc
		p.applySizeLocked(old, pc)
		evs, extra := p.resizeLocked(fmt.Sprintf("reload: replicas %d, spares %d", p.replicas, p.sparesWanted))
		p.mu.Unlock()
		p.finishResize(evs, extra, "scaled down")
		return nil
	}
	if err := p.configure(pc); err != nil {
		p.mu.Unlock()
		return err
	}
	actives, spares := p.newGenerationLocked()
	p.mu.Unlock()
	p.rollOut(ctx, actives, spares, "config changed")
	return nil
}

// newGenerationLocked begins a new generation of the pool's agents: spawns
// in flight retire, new ones start, and it returns the agents to replace.
// Called with p.mu held.
func (p *Pool) newGenerationLocked() (actives, spares []*slot) {
	p.epoch++
	for _, sl := range p.slots {
		switch sl.state {
		case AgentActive:
			actives = append(actives, sl)
		case AgentSpare:
			spares = append(spares, sl)
		}
	}
	p.ensureLocked(0, false)
	return actives, spares
}

// rollOut replaces an old generation: spares at once (their replacements
// are of the new one), active agents one by one.
func (p *Pool) rollOut(ctx context.Context, actives, spares []*slot, reason string) {
	for _, sl := range spares {
		p.drain(sl, reason, false)
	}
	p.goTracked(func() { p.roll(ctx, actives, reason) })
}

// rollingRestart replaces every agent of a serving pool one by one, each
// only once a new one is ready to take its place, so that the pool keeps
// its replicas serving throughout. A failed pool has nothing serving to
// keep: it is restarted at once, which also clears its failed state.
func (p *Pool) rollingRestart(ctx context.Context, reason string) {
	p.mu.Lock()
	if p.state == PoolFailed || p.state == PoolStopped {
		p.mu.Unlock()
		p.restart(ctx, reason)
		return
	}
	p.intensity.reset()
	p.backoff.reset()
	actives, spares := p.newGenerationLocked()
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventRestart, Pool: p.name, Reason: reason + " (rolling)"})
	p.rollOut(ctx, actives, spares, reason)
}

// sizeOnly reports whether two configurations of a pool differ at most in
// replicas and spares.
func sizeOnly(a, b config.Pool) bool {
	a.Replicas, a.Spares, a.MaxSpares, a.MaxReplicas = b.Replicas, b.Spares, b.MaxSpares, b.MaxReplicas
	return a.Equal(b)
}

// applySizeLocked takes replicas and spares from a new configuration where
// the file changed them; runtime overrides (scale, the Arbiter's spares)
// of values the file left as they were stay. Called with p.mu held.
func (p *Pool) applySizeLocked(old, pc config.Pool) {
	if pc.Replicas != old.Replicas {
		p.replicas = pc.Replicas
	}
	if pc.Spares != old.Spares || pc.MaxSpares != old.MaxSpares {
		p.sparesWanted = pc.Spares
	}
	if max := pc.MaxSpares; max > 0 && p.sparesWanted > max {
		p.sparesWanted = max
	}
	p.sparesWanted = max(p.sparesWanted, pc.Spares)
}

func (p *Pool) roll(ctx context.Context, old []*slot, reason string) {
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
			noSpares := p.spareTargetLocked() == 0 && p.activeN >= p.effectiveReplicas() && p.starting == 0
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
		p.drain(sl, reason, false)
	}
}
