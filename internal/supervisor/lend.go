package supervisor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Agents are lent to the goroutines that call them: a caller takes a free
// active agent, writes its request and waits for the reply itself, then
// gives the agent back. No goroutine of the pool's stands between a caller
// and its agent, so a call wakes none: on a machine where every wake-up of
// an idle CPU is an inter-processor interrupt, the two hand-offs a worker
// goroutine would add per call (the request to it, the result back) cost
// more than the supervisor's own work on the call.
//
// An agent is either leased (a caller, or its worker for a ping or a stop,
// is using it) or free. A free active agent waits in the pool's idle queue,
// the longest idle first; callers that find no free agent wait in a queue
// of their own, those of a session on the agent the ring assigns it.
type lender struct {
	mu      sync.Mutex
	idle    []*slot   // free active agents, the longest idle first
	waiting []*waiter // sessionless callers waiting for any agent

	// opened is closed (and replaced) each time the pool's breaker
	// opens: a caller waiting for an agent then fails as a new call
	// would, instead of waiting out the cool-down for an agent an open
	// breaker does not start.
	opened atomic.Pointer[chan struct{}]
}

// breakerOpened returns the channel the next opening of the breaker
// closes.
func (l *lender) breakerOpened() chan struct{} {
	for {
		if ch := l.opened.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if l.opened.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// breakerOpens wakes the callers waiting for an agent: the breaker opened.
func (l *lender) breakerOpens() {
	next := make(chan struct{})
	if old := l.opened.Swap(&next); old != nil {
		close(*old)
	}
}

// waiter is a caller waiting for an agent: it receives the agent, now
// leased to it, or nil when its agent stopped taking calls (ask again).
type waiter struct{ ch chan *slot }

// slotLease is a slot's lending state, guarded by lender.mu.
type slotLease struct {
	leased   bool
	queued   bool          // in lender.idle
	waiting  []*waiter     // session callers waiting for this agent
	stopWait chan struct{} // the worker waits to stop the agent after the call in flight
}

// acquire leases an agent for one attempt: for a session, the one the ring
// assigns it (waiting for it while it is busy); otherwise any free active
// agent, the longest idle first. The agent named avoid (one kept after a
// violation, see stateless.go) is passed over while another is free, and
// a session assigned to it takes any agent: its context travels with the
// call.
func (p *Pool) acquire(ctx context.Context, sessionID, avoid string, down chan struct{}) (*slot, error) {
	l := &p.lend
	// Taken before anything is looked at: an opening after this closes
	// it, one before is seen by the check before a wait.
	opened := l.breakerOpened()
	for {
		var target *slot
		if sessionID != "" {
			p.mu.Lock()
			if id, ok := p.ring.Assign(sessionID); ok {
				target = p.slots[id]
			}
			if target != nil && target.id == avoid {
				target = nil
			}
			p.mu.Unlock()
		}
		w := &waiter{}
		l.mu.Lock()
		if target != nil {
			if !target.lease.leased && target.accepting.Load() {
				target.lease.leased = true
				l.unqueueLocked(target)
				l.mu.Unlock()
				return target, nil
			}
			w.ch = make(chan *slot, 1)
			target.lease.waiting = append(target.lease.waiting, w)
		} else {
			for len(l.idle) > 0 {
				sl := l.idle[0]
				if sl.id == avoid && len(l.idle) > 1 {
					sl = l.idle[1]
					l.idle = slices.Delete(l.idle, 1, 2)
				} else {
					l.idle[0] = nil
					l.idle = l.idle[1:]
				}
				sl.lease.queued = false
				if sl.accepting.Load() { // else it left service while idle: drop it
					sl.lease.leased = true
					l.mu.Unlock()
					return sl, nil
				}
			}
			w.ch = make(chan *slot, 1)
			l.waiting = append(l.waiting, w)
		}
		l.mu.Unlock()
		// Only a call that must wait asks the breaker (the call path's
		// free agent costs no lock more).
		if err := p.breakerRefusal(); err != nil {
			p.abandon(w, target)
			return nil, err
		}
		var dead chan struct{}
		if target != nil {
			dead = target.dead
		}
		select {
		case sl := <-w.ch:
			if sl != nil {
				return sl, nil
			}
			// The agent left service: its sessions move; ask the ring again.
		case <-dead:
			p.abandon(w, target)
		case <-ctx.Done():
			p.abandon(w, target)
			return nil, ctx.Err()
		case <-down:
			p.abandon(w, target)
			return nil, p.downErr()
		case <-opened:
			p.abandon(w, target)
			opened = l.breakerOpened() // the check above refuses, or it half-opened since: wait on
		}
	}
}

// breakerRefusal is the error of a call that waits for an agent while the
// pool's breaker is open (nil when it is not).
func (p *Pool) breakerRefusal() error {
	p.mu.Lock()
	b := p.breaker
	p.mu.Unlock()
	if err := b.Refusal(); err != nil {
		return fmt.Errorf("%w: %w", ErrBreakerOpen, err)
	}
	return nil
}

// abandon takes a waiter that gave up out of its queue; an agent handed to
// it meanwhile is given back.
func (p *Pool) abandon(w *waiter, target *slot) {
	l := &p.lend
	l.mu.Lock()
	q := &l.waiting
	if target != nil {
		q = &target.lease.waiting
	}
	if i := slices.Index(*q, w); i >= 0 {
		*q = slices.Delete(*q, i, i+1)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	// Handed over under the lock before it left the queue: it is in the
	// channel already.
	if sl := <-w.ch; sl != nil {
		p.giveBack(sl)
	}
}

// giveBack gives a leased agent back.
func (p *Pool) giveBack(sl *slot) {
	l := &p.lend
	l.mu.Lock()
	sl.lease.leased = false
	l.offerLocked(sl)
	l.mu.Unlock()
}

// offerLocked hands a free agent to whoever waits for it: its worker waiting
// to stop it, then its session callers, then any caller; else it waits in
// the idle queue. An agent out of service sends its session callers back
// to the ring. Called with l.mu held and sl not leased.
func (l *lender) offerLocked(sl *slot) {
	ls := &sl.lease
	if ls.stopWait != nil {
		ls.leased = true
		close(ls.stopWait)
		ls.stopWait = nil
	}
	if ls.leased || !sl.accepting.Load() {
		for _, w := range ls.waiting {
			w.ch <- nil
		}
		ls.waiting = nil
		return
	}
	if len(ls.waiting) > 0 {
		w := ls.waiting[0]
		ls.waiting = slices.Delete(ls.waiting, 0, 1)
		ls.leased = true
		w.ch <- sl
		return
	}
	if len(l.waiting) > 0 {
		w := l.waiting[0]
		l.waiting = slices.Delete(l.waiting, 0, 1)
		ls.leased = true
		w.ch <- sl
		return
	}
	if !ls.queued {
		ls.queued = true
		l.idle = append(l.idle, sl)
	}
}

func (l *lender) unqueueLocked(sl *slot) {
	if !sl.lease.queued {
		return
	}
	sl.lease.queued = false
	if i := slices.Index(l.idle, sl); i >= 0 {
		l.idle = slices.Delete(l.idle, i, i+1)
	}
}

// lendable puts an agent that just entered service at the callers'
// disposal. Called with p.mu held.
func (p *Pool) lendable(sl *slot) {
	l := &p.lend
	l.mu.Lock()
	if !sl.lease.leased {
		l.offerLocked(sl)
	}
	l.mu.Unlock()
}

// tryLease leases a free agent to its worker (for a ping); false if a call
// has it.
func (p *Pool) tryLease(sl *slot) bool {
	l := &p.lend
	l.mu.Lock()
	defer l.mu.Unlock()
	if sl.lease.leased {
		return false
	}
	sl.lease.leased = true
	l.unqueueLocked(sl)
	return true
}

// leaseToStop leases an agent to its worker, to stop it, once the call in
// flight on it (if any) is done; its session callers go back to the ring.
// The agent must be out of service already, so that no caller takes it.
func (p *Pool) leaseToStop(sl *slot) {
	l := &p.lend
	l.mu.Lock()
	ls := &sl.lease
	if !ls.leased {
		ls.leased = true
		l.unqueueLocked(sl)
		for _, w := range ls.waiting {
			w.ch <- nil
		}
		ls.waiting = nil
		l.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	ls.stopWait = ch
	l.mu.Unlock()
	<-ch
}
