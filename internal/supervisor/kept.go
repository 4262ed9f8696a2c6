package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/resilienced/resilienced/internal/cgroup"
)

// An agent isolated with action keep is evidence: it stays isolated, its
// network cut off, and listed, until an operator releases it, also across
// a daemon restart. Its stdin and stdout die with the daemon, so it is
// frozen first (an agent would read the end of its input and exit): it
// waits in its cgroup, whole, for the next daemon to list it and for an
// operator to release it, which kills it.

// KeptAgent is an isolated agent left in its cgroup, frozen, when the
// daemon stopped.
type KeptAgent struct {
	ID     string    `json:"id"`
	Pool   string    `json:"pool"`
	PID    int       `json:"pid"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// keepIsolated freezes the pool's agents isolated with action keep and
// hands them over as kept, to outlive the daemon. Called by stop.
func (p *Pool) keepIsolated(ctx context.Context) []KeptAgent {
	now := p.sup.opts.Now()
	p.mu.Lock()
	var keep []*slot
	for _, id := range sortedSlotIDs(p.slots) {
		if sl := p.slots[id]; sl.state == AgentIsolated && sl.keep && sl.sb != nil {
			keep = append(keep, sl)
		}
	}
	p.mu.Unlock()
	var kept []KeptAgent
	for _, sl := range keep {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := sl.sb.Freeze(fctx)
		cancel()
		if err != nil {
			p.log.Warn("an agent isolated with action keep could not be frozen: it is stopped with the others", "agent", sl.id, "err", err)
			continue
		}
		sl.kept.Store(true) // its worker leaves process and cgroup alone
		if l, ok := sl.sb.(interface{ Leave() error }); ok {
			l.Leave() // not removed when the daemon's cgroups are
		}
		p.mu.Lock()
		p.mustTransitionLocked(sl, AgentDead, now)
		p.mu.Unlock()
		kept = append(kept, KeptAgent{ID: sl.id, Pool: p.name, PID: sl.pid(), Reason: sl.isolateReason, Since: sl.isolatedAt})
		p.log.Info("isolated agent kept, frozen, for the next daemon", "agent", sl.id)
	}
	return kept
}

// KeptAgents returns the agents that Stop left isolated and frozen, for the
// daemon to record and hand to the next instance's RestoreKept.
func (s *Supervisor) KeptAgents() []KeptAgent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.kept)
}

// RestoreKept lists again, as isolated, the agents a previous daemon kept:
// each is adopted in its cgroup (still frozen) and stays until Release
// kills it. An agent whose cgroup is gone, or whose pool is no longer
// configured, is dropped (killed, if its cgroup is there). It returns the
// agents restored.
func (s *Supervisor) RestoreKept(kept []KeptAgent) ([]KeptAgent, error) {
	sbs, ok := s.opts.Sandboxes.(interface {
		Adopt(pool, agent string) (Sandbox, error)
	})
	if !ok {
		return nil, fmt.Errorf("%w: agents run without cgroups", cgroup.ErrNotSupported)
	}
	var restored []KeptAgent
	var errs []error
	for _, k := range kept {
		sb, err := sbs.Adopt(k.Pool, k.ID)
		if errors.Is(err, cgroup.ErrNotExist) {
			s.log.Info("a kept agent's cgroup is gone", "agent", k.ID)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("agent %s: %w", k.ID, err))
			continue
		}
		p, err := s.Pool(k.Pool)
		if err != nil {
			s.log.Warn("a kept agent's pool is no longer configured: killing it", "agent", k.ID, "pool", k.Pool)
			sb.Kill()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			sb.Destroy(ctx)
			cancel()
			continue
		}
		p.restore(k, sb)
		restored = append(restored, k)
	}
	return restored, errors.Join(errs...)
}

// restore lists a kept agent as isolated. It has no process handle and no
// worker: release kills its cgroup.
func (p *Pool) restore(k KeptAgent, sb Sandbox) {
	sl := &slot{
		id: k.ID, pool: p, sb: sb, state: AgentIsolated, keep: true,
		keptPID: k.PID, started: k.Since, isolatedAt: k.Since, isolateReason: k.Reason,
		dead: make(chan struct{}), up: make(chan struct{}), stopReq: make(chan string, 1),
	}
	close(sl.up)
	sl.isolated.Store(true)
	p.mu.Lock()
	p.slots[sl.id] = sl
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventIsolate, Pool: p.name, Agent: sl.id, Reason: "kept across a daemon restart (frozen): " + k.Reason})
}

// releaseRestored kills and removes a kept agent restored from a previous
// daemon.
func (p *Pool) releaseRestored(sl *slot) {
	p.mu.Lock()
	if sl.state != AgentIsolated {
		p.mu.Unlock()
		return
	}
	p.mustTransitionLocked(sl, AgentDead, p.sup.opts.Now())
	p.mu.Unlock()
	p.sup.emit(Event{Kind: EventRelease, Pool: p.name, Agent: sl.id})
	p.forget(sl)
	p.killNow(sl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sl.sb.Thaw(ctx); err != nil && !errors.Is(err, cgroup.ErrNotExist) {
		p.log.Debug("thawing a released kept agent", "agent", sl.id, "err", err)
	}
	if hook := p.sup.opts.OnAgentGone; hook != nil {
		hook(sl.id, sl.sb)
	}
	if err := sl.sb.Destroy(ctx); err != nil {
		p.log.Error("removing a released kept agent's cgroup", "agent", sl.id, "err", err)
	}
	p.sup.emit(Event{Kind: EventKill, Pool: p.name, Agent: sl.id})
}
