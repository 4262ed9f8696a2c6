package supervisor

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

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
	p.mustTransitionLocked(sl, AgentIsolated, now)
	sl.keep, sl.isolatedAt, sl.isolateReason = action == IsolateKeep, now, reason
	p.noteStateLocked(sl)
	if prev == AgentActive {
		p.pending = append(p.pending, pendingRecovery{agent: sl.id, cause: EventIsolate, fault: now, detect: now})
	}
	evs := []Event{{Time: now, Kind: EventIsolate, Pool: p.name, Agent: sl.id, Reason: fmt.Sprintf("%s (action %s)", reason, action)}}
	evs = append(evs, p.promoteLocked(now)...)
	evs = append(evs, p.recoveredLocked(now)...)
	p.ensureLocked(0, true)
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
	if sl.a == nil && sl.keptPID != 0 {
		p.releaseRestored(sl)
		return nil
	}
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
	p.requestStop(sl, "released after isolation")
	return nil
}
