package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/fault"
)

// errHedgeLost ends the context of a hedged attempt that another attempt
// beat: not a cancel, the attempt is finished and checked as usual.
var errHedgeLost = errors.New("another hedged attempt answered first")

// abandon ends an attempt whose caller cancelled the call (an MCP client's
// notifications/cancelled, a closed HTTP request, the caller's deadline).
// Nothing is charged to the pool: a cancel is the caller's decision. The
// agent is told to stop (MCP: notifications/cancelled with its request id)
// and gets the supervisor's CancelGrace to show that it did:
//   - it answers (the result it had, or an error): kept, in step;
//   - MCP, silent through the grace: kept, since the spec has a server
//     that honours a cancel send nothing more; a late reply is dropped;
//   - MCP, reports progress on the call after the cancel: it goes on with
//     a call nobody waits for, and is replaced at once;
//   - native, no answer within the grace: it cannot be told to stop and
//     would run a stale call, so it is replaced.
//
// A replaced agent is drained (a spare takes its place, a replacement
// starts): no restart is counted, no backoff or intensity charged.
func (at *attempt) abandon(why string) {
	p, sl := at.p, at.sl
	if at.pending == nil {
		// The reply was in (an injected delay runs, or the send failed):
		// the attempt ends as any other.
		at.wait(nil)
		at.finish()
		return
	}
	defer p.giveBack(sl)
	defer at.cancel(nil)
	at.timer.Stop()
	p.sup.sched.release()
	grace := p.sup.opts.CancelGrace
	told := at.pending.Cancel(why)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	_, err := at.pending.Wait(ctx, at.pending.Running())
	timedOut := ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded)
	cancel()
	at.pending.Close()
	at.pending = nil
	sl.lastCall.Store(p.sup.opts.Now().UnixNano())

	var rpc *agent.RPCError
	var te *agent.ToolError
	outcome, replace := "", false
	switch {
	case errors.Is(err, agent.ErrLeft):
		outcome, replace = "it reported progress on the call after notifications/cancelled: replaced", true
	case timedOut && told:
		outcome = fmt.Sprintf("silent for %s after notifications/cancelled: kept", grace)
	case timedOut:
		outcome, replace = fmt.Sprintf("a native agent cannot be told to stop, and it did not answer within %s: replaced", grace), true
	case err == nil, errors.As(err, &rpc), errors.As(err, &te):
		outcome = "it answered: kept"
	case errors.Is(err, agent.ErrExited):
		// Its worker sees the death and handles it as any other.
		outcome = "it exited"
	default:
		outcome, replace = "its reply was broken ("+err.Error()+"): replaced", true
	}
	p.sup.emit(Event{Kind: EventCancel, Pool: p.name, Agent: sl.id, Reason: why + "; " + outcome, Class: fault.Caller})
	if replace {
		p.drain(sl, "its call was cancelled: "+outcome, true)
	}
}

// progressRelay passes a call's progress reports to its caller's callback
// on a goroutine of its own, so that the agent's reader, which reports
// them, never waits for a client. Reports only go up: one at or below the
// last passed on is dropped, which is what keeps a call retried on
// another agent (that starts counting again) monotonic for its caller.
// A callback slower than the agent sees the latest report, not each.
type progressRelay struct {
	fn   func(agent.ProgressReport)
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	last   float64
	seen   bool
	next   *agent.ProgressReport
	closed bool
}

func newProgressRelay(fn func(agent.ProgressReport)) *progressRelay {
	r := &progressRelay{fn: fn, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *progressRelay) report(pr agent.ProgressReport) {
	r.mu.Lock()
	if r.closed || (r.seen && pr.Progress <= r.last) {
		r.mu.Unlock()
		return
	}
	r.seen, r.last, r.next = true, pr.Progress, &pr
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *progressRelay) run() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
			r.deliver()
		case <-r.stop:
			r.deliver()
			return
		}
	}
}

func (r *progressRelay) deliver() {
	r.mu.Lock()
	n := r.next
	r.next = nil
	r.mu.Unlock()
	if n != nil {
		r.fn(*n)
	}
}

// close passes on the last report still waiting, and ends the relay: a
// caller gets its progress before its result, and none after.
func (r *progressRelay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	<-r.done
}
