package supervisor

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
)

// pingLoop pings the idle agents of every pool from one timer: an agent
// is due once ping_interval has passed since its last call or ping, and
// every agent due at a wake-up is pinged then, so agents that went idle
// together stay in step and a thousand idle agents cost one wake-up per
// interval, not a timer each. An agent at work is not pinged: its calls
// are proof of life enough.
func (s *Supervisor) pingLoop() {
	t := time.NewTimer(pingMaxSleep)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-s.pingKick:
		case <-t.C:
		}
		next := s.pingDue(time.Now())
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// pingMaxSleep bounds the pinger's sleep, so an agent that becomes ready
// while it sleeps is looked at in time.
const pingMaxSleep = time.Second

// kickPings wakes the pinger (a pool was added or changed).
func (s *Supervisor) kickPings() {
	select {
	case s.pingKick <- struct{}{}:
	default:
	}
}

// dueSlot is an agent due for a ping.
type dueSlot struct {
	p       *Pool
	sl      *slot
	last    int64
	timeout time.Duration
}

// pingDue starts a ping of every agent due at now, as far as the node's
// ping budget allows, longest idle first, and returns how long the pinger
// may sleep. Agents left over for lack of budget wait in s.pingBacklog and
// are served from there at the next wake-ups, without a scan of every
// pool each time (ten scans a second of a thousand agents was most of the
// pinger's cost). Called only from pingLoop.
func (s *Supervisor) pingDue(now time.Time) time.Duration {
	if len(s.pingBacklog) > 0 {
		n := s.pings.take(now, len(s.pingBacklog))
		for _, d := range s.pingBacklog[:n] {
			if d.stillDue(now) {
				d.start(now)
			}
		}
		s.pingBacklog = slices.Delete(s.pingBacklog, 0, n)
		if len(s.pingBacklog) > 0 {
			return pingBudgetWait
		}
		s.pingBacklog = nil
	}
	sleep := pingMaxSleep
	var due []dueSlot
	for _, p := range s.Pools() {
		pc := p.config()
		if pc.PingInterval <= 0 {
			continue
		}
		sleep = min(sleep, pc.PingInterval)
		// Agents due within slack are pinged now too: the pinger wakes
		// about 4 times an interval, not once per agent (each wake-up
		// scans the pool, and wakes the runtime: on an idle node the
		// wake-ups, not the pings, are the cost).
		slack := pc.PingInterval / 4
		p.mu.Lock()
		for _, sl := range p.slots {
			if !pingable(sl) {
				continue
			}
			last := lastSign(sl)
			if at := time.Unix(0, last).Add(pc.PingInterval); at.After(now.Add(slack)) {
				sleep = min(sleep, max(at.Sub(now), slack))
				continue
			}
			due = append(due, dueSlot{p, sl, last, pc.PingTimeout})
		}
		p.mu.Unlock()
	}
	n := s.pings.take(now, len(due))
	if n < len(due) {
		// Over budget: the longest idle go first, the rest at a later
		// wake-up, once the budget has refilled a little.
		slices.SortFunc(due, func(a, b dueSlot) int { return cmp.Compare(a.last, b.last) })
		s.pingBacklog = due[n:]
		sleep = min(sleep, pingBudgetWait)
	}
	for _, d := range due[:n] {
		d.start(now)
	}
	return max(sleep, time.Millisecond)
}

// pingable reports whether sl may be pinged at all; under its pool's lock.
func pingable(sl *slot) bool {
	return sl.a != nil && (sl.state == AgentActive || sl.state == AgentSpare) && !sl.isolated.Load() && !sl.pinging.Load()
}

// lastSign is the last time sl showed it lives (unix nanos): its last
// call or ping, or its start; under its pool's lock.
func lastSign(sl *slot) int64 {
	return max(sl.lastCall.Load(), sl.lastPing.Load(), sl.started.UnixNano(), sl.activeSince.UnixNano())
}

// stillDue reports whether an agent left in the backlog still needs its
// ping: it may have served a call, died or been pinged since.
func (d dueSlot) stillDue(now time.Time) bool {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return d.p.slots[d.sl.id] == d.sl && pingable(d.sl) && lastSign(d.sl) <= d.last
}

func (d dueSlot) start(now time.Time) {
	d.sl.pinging.Store(true)
	d.sl.lastPing.Store(now.UnixNano())
	go d.p.ping(d.sl, d.timeout)
}

// pingBudgetWait is how long the pinger sleeps when agents wait for the
// ping budget: a second's budget in one burst per wake-up. Ten smaller
// bursts a second cost the idle daemon (1,000 agents, 2 CPUs) three times
// the context switches for the same pings: each burst wakes a thread,
// the runtime's sysmon and the netpoller again.
const pingBudgetWait = time.Second

// pingBudget is a token bucket of pings per second for the whole node, at
// most a second's worth saved up. Used only by the pinger's goroutine;
// rate is set by Apply.
type pingBudget struct {
	rate   atomic.Int64 // pings per second; 0: unlimited
	tokens float64
	last   time.Time
}

// take returns how many of want pings may start at now, and spends them.
func (b *pingBudget) take(now time.Time, want int) int {
	rate := float64(b.rate.Load())
	if rate <= 0 {
		return want
	}
	if b.last.IsZero() {
		b.tokens = rate
	} else {
		b.tokens = min(rate, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	n := min(want, int(b.tokens))
	b.tokens -= float64(n)
	return n
}

// pingStarvedLimit bounds how many ping timeouts in a row a starved daemon
// may excuse, should its own delay never end.
const pingStarvedLimit = 20

// ping pings one idle agent and fails it if it does not answer within
// timeout, unless the daemon itself was starved meanwhile: then the wait
// goes on, another timeout at a time, so the request stays in step and a
// slow daemon never shoots its own healthy agents.
func (p *Pool) ping(sl *slot, timeout time.Duration) {
	defer sl.pinging.Store(false)
	if sl.isolated.Load() || !p.tryLease(sl) {
		return // cut off on purpose (maybe frozen), or at work: not a hang
	}
	defer p.giveBack(sl)
	p.sup.sched.hold()
	defer p.sup.sched.release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var excused atomic.Int64
	var t *time.Timer
	check := func() {
		// An agent waiting for a CPU (runnable) or whose answer is in
		// the pipe is slow, not stuck: on an overloaded node the agents
		// starve too, not only the daemon.
		if ctx.Err() == nil && excused.Load() < pingStarvedLimit && (p.sup.sched.starvedWithin(timeout) || progressing(sl.a)) {
			excused.Add(1)
			t.Reset(timeout)
			return
		}
		cancel()
	}
	// Set before it can fire; stopped once answered, so that an answered
	// ping leaves no timer to fire later.
	t = time.AfterFunc(365*24*time.Hour, check)
	t.Reset(timeout)
	defer t.Stop()
	err := sl.a.Ping(ctx)
	if err == nil {
		return
	}
	kind := EventHang
	if errors.Is(err, agent.ErrExited) {
		kind = EventExit
	}
	reason := "ping failed: " + err.Error()
	if errors.Is(err, context.Canceled) {
		reason = "no answer to a ping within " + timeout.String()
		if n := excused.Load(); n > 0 {
			reason += " (after " + (time.Duration(n) * timeout).String() + " excused while the daemon was starved or the agent runnable)"
		}
	}
	p.fail(sl, evidence{kind: kind, reason: reason, at: p.sup.opts.Now()})
}

func progressing(a process) bool {
	ok, _ := a.Progress()
	return ok
}
