package supervisor

import (
	"fmt"
	"slices"
	"time"

	"github.com/resilienced/resilienced/internal/ring"
)

// legalMoves is the agent state machine. An agent starts, becomes a spare
// or goes straight into service, may leave service by draining or being
// isolated, and ends dead; nothing comes back from dead.
var legalMoves = map[AgentState][]AgentState{
	AgentStarting: {AgentSpare, AgentActive, AgentDead},
	AgentSpare:    {AgentActive, AgentDraining, AgentIsolated, AgentDead},
	AgentActive:   {AgentDraining, AgentIsolated, AgentDead},
	AgentDraining: {AgentIsolated, AgentDead},
	AgentIsolated: {AgentDead},
}

// TransitionError is an illegal move of an agent's state: a bug in the
// supervisor, never the agent's doing. It unwraps to
// [ErrInvalidTransition].
type TransitionError struct {
	Agent    string
	From, To AgentState
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("agent %s: invalid state transition %s -> %s", e.Agent, e.From, e.To)
}

func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

func legalMove(from, to AgentState) bool { return slices.Contains(legalMoves[from], to) }

// transitionLocked moves sl to state to, and keeps in step everything that
// follows from an agent's state: the starting and active counts, the spare
// list, the session ring, whether the agent accepts calls, its dead
// channel and its place in the slot map. It is the only place that
// changes sl.state. Called with p.mu held.
func (p *Pool) transitionLocked(sl *slot, to AgentState, now time.Time) error {
	from := sl.state
	if !legalMove(from, to) {
		return &TransitionError{Agent: sl.id, From: from, To: to}
	}
	switch from {
	case AgentStarting:
		p.starting--
	case AgentSpare:
		if i := slices.Index(p.spares, sl); i >= 0 {
			p.spares = slices.Delete(p.spares, i, i+1)
		}
	case AgentActive:
		p.activeN--
		p.ring.Remove(sl.id)
	}
	sl.state = to
	switch to {
	case AgentSpare:
		p.spares = append(p.spares, sl)
	case AgentActive:
		sl.activeSince = now
		p.activeN++
		p.ring.Add(sl.id, ring.Active)
		sl.accepting.Store(true)
		p.lendable(sl)
	case AgentDraining:
		sl.accepting.Store(false)
	case AgentIsolated:
		sl.accepting.Store(false)
		sl.isolated.Store(true)
	case AgentDead:
		sl.accepting.Store(false)
		sl.markDead()
		if p.slots[sl.id] == sl {
			delete(p.slots, sl.id)
		}
	}
	p.noteStateLocked(sl)
	return nil
}

// mustTransitionLocked is transitionLocked where the caller has checked the
// move: an error is a supervisor bug, logged loudly rather than crashing
// the daemon that keeps every other agent serving.
func (p *Pool) mustTransitionLocked(sl *slot, to AgentState, now time.Time) {
	if err := p.transitionLocked(sl, to, now); err != nil {
		p.log.Error("supervisor bug", "err", err)
	}
}

// promoteLocked turns spares into active agents until the pool is at its
// replicas. Called with p.mu held.
func (p *Pool) promoteLocked(now time.Time) []Event {
	var evs []Event
	for p.activeN < p.effectiveReplicas() && len(p.spares) > 0 {
		sp := p.spares[0]
		p.mustTransitionLocked(sp, AgentActive, now)
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
		// A pool that was whole stays running while its replacements
		// are under way: Status reports it degraded once it has been
		// short for degradedAfter. One that never was whole (starting,
		// or after a restart) is degraded at once.
		if p.state != PoolRunning {
			p.state = PoolDegraded
		} else if p.shortSince.IsZero() {
			p.shortSince = now
		}
		return nil
	}
	p.state = PoolRunning
	p.shortSince = time.Time{}
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
