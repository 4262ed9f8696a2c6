package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/fault"
	"github.com/resilienced/resilienced/internal/session"
)

// CallRequest is one call on a pool.
type CallRequest struct {
	Input   json.RawMessage // the call's input, any JSON value
	Session string          // "" for a sessionless call
	// IdempotencyKey, when set, makes the call run at most once: a repeat
	// returns the stored result.
	IdempotencyKey string
	// Progress, when set, sees the progress the agents report on the call
	// (MCP notifications/progress), values only increasing: after a retry
	// on another agent, which starts again from its beginning, reports
	// are passed on only once they pass the last one passed on. It is
	// called from one goroutine at a time, and not after Call returns.
	Progress func(agent.ProgressReport)
}

// CallResult is a validated result.
type CallResult struct {
	Output   json.RawMessage `json:"output"`
	Agent    string          `json:"agent"`
	Attempts int             `json:"attempts"`
	Cached   bool            `json:"cached,omitempty"` // from the idempotency store
	// ToolError marks an MCP tool's answer with isError set (the pool's
	// on_tool_error is return): Output is the tool's content array, which
	// the contract did not check.
	ToolError bool   `json:"tool_error,omitempty"`
	Seq       uint64 `json:"seq,omitempty"` // the exchange's sequence number in its session
	// Violations are the failed attempts before the one that succeeded.
	Violations []*contract.Violation `json:"violations,omitempty"`
}

type callResult struct {
	out       json.RawMessage
	agent     string
	violation *contract.Violation
	rejected  error            // the agent refused the input (a caller fault)
	toolError *agent.ToolError // an MCP tool answered with isError
	// unavailable: the agent answered that a dependency of its is down.
	unavailable *agent.RPCError
	bounced     bool // the agent stopped accepting before it ran the call
	// kept: the agent violated but was kept (agent_state none); the retry
	// goes to another agent if one is free.
	kept bool
}

// contextEntry is one exchange as the agent protocol carries it.
type contextEntry struct {
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output"`
}

type callParams struct {
	Session  *string         `json:"session"`
	Context  []contextEntry  `json:"context"`
	Input    json.RawMessage `json:"input"`
	Feedback string          `json:"feedback,omitempty"`
}

// encode writes the params as one line of JSON. It is built by hand from
// the stored raw values, which were validated when they entered: encoding
// them again with encoding/json would re-validate the whole context on
// every call. Raw values holding line breaks (pretty-printed input) are
// compacted, since the transport is one object per line.
func (cp *callParams) encode(buf []byte) []byte {
	buf = append(buf, `{"session":`...)
	if cp.Session == nil {
		buf = append(buf, "null"...)
	} else {
		buf = appendJSONString(buf, *cp.Session)
	}
	buf = append(buf, `,"context":[`...)
	for i, e := range cp.Context {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"input":`...)
		buf = appendRaw(buf, e.Input)
		buf = append(buf, `,"output":`...)
		buf = appendRaw(buf, e.Output)
		buf = append(buf, '}')
	}
	buf = append(buf, `],"input":`...)
	buf = appendRaw(buf, cp.Input)
	if cp.Feedback != "" {
		buf = append(buf, `,"feedback":`...)
		buf = appendJSONString(buf, cp.Feedback)
	}
	return append(buf, '}')
}

func (cp *callParams) size() int {
	n := 64 + len(cp.Input) + len(cp.Feedback)
	for _, e := range cp.Context {
		n += 24 + len(e.Input) + len(e.Output)
	}
	return n
}

func appendRaw(buf []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(buf, "null"...)
	}
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return append(buf, raw...)
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return append(buf, "null"...) // not reachable: raw values are validated on entry
	}
	return append(buf, b.Bytes()...)
}

func appendJSONString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(buf, b...)
}

// Call runs one call: it is sent to an idle active agent (for a session,
// the agent the ring assigns), its output is checked against the contract,
// and on any failure the agent is replaced and the call retried on another
// agent with the same context, up to the pool's retries. A session's
// exchange is appended durably before the result is returned; a violating
// output never enters the context.
func (p *Pool) Call(ctx context.Context, req CallRequest) (res *CallResult, err error) {
	if hook := p.sup.opts.OnCall; hook != nil {
		start := p.sup.opts.Now()
		defer func() { hook(p.name, callOutcome(res, err), p.sup.opts.Now().Sub(start)) }()
	}
	if len(req.Input) == 0 {
		req.Input = json.RawMessage("null")
	}
	if !json.Valid(req.Input) {
		return nil, fmt.Errorf("%w: input is not valid JSON", ErrInvalidInput)
	}
	if in := p.input.Load(); in != nil {
		// Before anything else: no agent sees the input, and neither the
		// breaker nor the session store hears of the call.
		if v := in.Check(req.Input); v != nil {
			return nil, fmt.Errorf("%w: pool %s: the input breaks the pool's input_schema: %s", ErrInvalidInput, p.name, v.Message)
		}
	}
	store := p.sup.opts.Store
	if req.Session != "" && store == nil {
		return nil, fmt.Errorf("pool %s: sessions need a state store (the daemon runs without one)", p.name)
	}
	var digest []byte
	if req.IdempotencyKey != "" && store != nil {
		digest = session.RequestDigest(req.Session, req.Input)
		if out, ok, err := store.Result(ctx, p.name, req.IdempotencyKey, digest); err != nil {
			return nil, idempotencyError(p.name, req.IdempotencyKey, err)
		} else if ok {
			return &CallResult{Output: out, Cached: true}, nil
		}
	}

	p.mu.Lock()
	pc := p.cfg
	down := p.down
	state, reason := p.state, p.reason
	brk := p.breaker
	p.mu.Unlock()
	switch state {
	case PoolFailed:
		return nil, fmt.Errorf("%w: pool %s: %s (restart it with `resilientctl restart %s`)", ErrPoolFailed, p.name, reason, p.name)
	case PoolStopped:
		return nil, fmt.Errorf("%w: pool %s", ErrPoolStopped, p.name)
	}

	params := callParams{Input: req.Input, Context: []contextEntry{}}
	if req.Session != "" {
		params.Session = &req.Session
		exs, err := store.Context(ctx, p.name, req.Session)
		if err != nil {
			return nil, err
		}
		params.Context = make([]contextEntry, len(exs))
		for i, ex := range exs {
			params.Context[i] = contextEntry{Input: ex.Input, Output: ex.Output}
		}
	}

	// The breaker judges calls, not attempts: a call that succeeds on
	// retry is a success, however many agents it cost.
	bc, err := brk.Allow()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBreakerOpen, err)
	}
	var progress func(agent.ProgressReport)
	if req.Progress != nil {
		r := newProgressRelay(req.Progress)
		defer r.close()
		progress = r.report
	}
	res = &CallResult{}
	var lastFailure error // the last attempt's violation or unavailability
	var avoid string      // an agent kept after it violated: retry elsewhere
	for res.Attempts <= pc.Retries {
		if res.Attempts > 0 && lastFailure != nil {
			// The breaker opened under this call (its failed attempts
			// were the last straws): no agent starts until it
			// half-opens, so a retry could only wait for one. The call
			// fails now, as a new call would. (A call waiting for an
			// agent when it opens fails in acquire.)
			if err := brk.Refusal(); err != nil {
				bc.Failed(lastFailure.Error())
				return nil, fmt.Errorf("%w: %w", ErrBreakerOpen, err)
			}
		}
		raw := params.encode(make([]byte, 0, params.size()))
		var r callResult
		if pc.Hedge > 0 {
			r, err = p.dispatchHedged(ctx, req.Session, avoid, raw, down, pc.Hedge, progress)
		} else {
			r, err = p.dispatch(ctx, req.Session, avoid, raw, down, progress)
		}
		if err != nil {
			bc.Abandoned() // the caller gave up, or the pool went down
			return nil, err
		}
		if r.bounced {
			continue
		}
		res.Attempts++
		if r.rejected != nil {
			// The agent refused the input: the caller's fault. Not
			// retried (every agent would refuse it), nothing charged.
			bc.Abandoned()
			p.sup.emit(Event{Kind: EventInvalidInput, Pool: p.name, Agent: r.agent, Reason: r.rejected.Error(), Class: fault.Caller})
			return nil, fmt.Errorf("%w: pool %s: agent %s rejected the input: %w", ErrInvalidInput, p.name, r.agent, r.rejected)
		}
		if r.toolError != nil {
			// The tool ran and said no: its answer, not the agent's
			// failure. Not stored in a session: it is not a valid output.
			bc.Succeeded()
			p.sup.emit(Event{Kind: EventToolError, Pool: p.name, Agent: r.agent, Reason: r.toolError.Error(), Class: fault.Caller})
			content := r.toolError.Content
			if len(content) == 0 {
				content = json.RawMessage("[]")
			}
			return &CallResult{Output: content, Agent: r.agent, Attempts: res.Attempts, ToolError: true, Violations: res.Violations}, nil
		}
		if r.unavailable != nil {
			// The agent works; what it depends on does not. Another
			// agent may reach it (another connection, another key);
			// if none does, the breaker counts the call.
			p.sup.emit(Event{Kind: EventUnavailable, Pool: p.name, Agent: r.agent, Reason: r.unavailable.Error(), Class: fault.Dependency})
			lastFailure = r.unavailable
			continue
		}
		if r.violation == nil {
			res.Output, res.Agent = r.out, r.agent
			break
		}
		res.Violations = append(res.Violations, r.violation)
		lastFailure = r.violation
		avoid = ""
		if r.kept {
			avoid = r.agent
		}
		if pc.OnViolation == config.OnViolationReask {
			params.Feedback = fmt.Sprintf("Your previous answer was rejected (%s). Answer again, following the output contract exactly.", r.violation.Error())
		}
	}
	if res.Output == nil {
		bc.Failed(lastFailure.Error())
		if _, ok := lastFailure.(*agent.RPCError); ok {
			return nil, fmt.Errorf("pool %s: %w (%d attempts): %w", p.name, ErrDependencyUnavailable, res.Attempts, lastFailure)
		}
		return nil, fmt.Errorf("pool %s: %w (%d attempts): %w", p.name, ErrRetriesExhausted, res.Attempts, lastFailure)
	}
	bc.Succeeded()

	if req.Session != "" {
		ex, err := store.Append(ctx, p.name, req.Session, session.Exchange{
			Time: p.sup.opts.Now(), Agent: res.Agent, Input: req.Input, Output: res.Output,
		}, session.Limit{Entries: pc.ContextLimit.Entries, Bytes: pc.ContextLimit.Bytes, TTL: pc.SessionTTL}, req.IdempotencyKey, res.Output)
		if errors.Is(err, session.ErrDuplicate) {
			// A concurrent call with the same key completed first: its
			// result is the answer, and this one's is dropped.
			return p.storedResult(ctx, req.IdempotencyKey, digest)
		}
		if errors.Is(err, session.ErrConflict) {
			return nil, idempotencyError(p.name, req.IdempotencyKey, err)
		}
		if err != nil {
			return nil, fmt.Errorf("pool %s: session %s: storing the exchange: %w", p.name, req.Session, err)
		}
		res.Seq = ex.Seq
	} else if req.IdempotencyKey != "" && store != nil {
		err := store.PutResult(ctx, p.name, req.IdempotencyKey, digest, res.Output)
		if errors.Is(err, session.ErrDuplicate) {
			return p.storedResult(ctx, req.IdempotencyKey, digest)
		}
		if errors.Is(err, session.ErrConflict) {
			return nil, idempotencyError(p.name, req.IdempotencyKey, err)
		}
		if err != nil {
			return nil, fmt.Errorf("pool %s: storing the result: %w", p.name, err)
		}
	}
	return res, nil
}

// idempotencyError classifies a store error on key: a conflict is the
// caller's (ErrIdempotencyConflict), anything else is the store's.
func idempotencyError(pool, key string, err error) error {
	if errors.Is(err, session.ErrConflict) {
		return fmt.Errorf("pool %s: %w: key %q already answered another request (another input or session); use a new key: %w", pool, ErrIdempotencyConflict, key, err)
	}
	return err
}

func (p *Pool) storedResult(ctx context.Context, key string, digest []byte) (*CallResult, error) {
	out, ok, err := p.sup.opts.Store.Result(ctx, p.name, key, digest)
	if errors.Is(err, session.ErrConflict) {
		return nil, idempotencyError(p.name, key, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pool %s: idempotency key %q: reading the stored result: %w", p.name, key, err)
	}
	if !ok {
		return nil, fmt.Errorf("pool %s: idempotency key %q: the store reported it done but holds no result (expired?); retry with a new key", p.name, key)
	}
	return &CallResult{Output: out, Cached: true}, nil
}

// dispatchHedged runs one attempt, and if it has no answer after hedge,
// the same attempt again on another idle agent (any agent: the context
// travels with the call). The first valid answer wins; the other is
// dropped when it comes. Hedging trades a little extra work for latency
// that does not depend on the slowest agent.
func (p *Pool) dispatchHedged(ctx context.Context, sessionID, avoid string, params json.RawMessage, down chan struct{}, hedge time.Duration, progress func(agent.ProgressReport)) (callResult, error) {
	// The attempt that loses is not cancelled but finished in the
	// background, and checked, as any other (errHedgeLost tells dispatch).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(errHedgeLost)
	type outcome struct {
		r   callResult
		err error
	}
	results := make(chan outcome, 2)
	go func() {
		r, err := p.dispatch(ctx, sessionID, avoid, params, down, progress)
		results <- outcome{r, err}
	}()
	t := time.NewTimer(hedge)
	defer t.Stop()
	pending := 1
	var first *outcome
	for {
		select {
		case <-t.C:
			pending++
			go func() {
				r, err := p.dispatch(ctx, "", avoid, params, down, progress)
				results <- outcome{r, err}
			}()
			continue
		case o := <-results:
			pending--
			if o.err == nil && o.r.violation == nil && o.r.rejected == nil && o.r.toolError == nil && !o.r.bounced {
				return o.r, nil
			}
			if first == nil {
				first = &o
			}
			if pending == 0 {
				return first.r, first.err
			}
		}
	}
}

// dispatch runs one attempt on an agent lent to this goroutine: for a
// session, the agent the ring assigns it. If ctx ends while the agent is
// at work, dispatch returns at once: the caller cancelled the call, and
// the agent is told so and kept or replaced on another goroutine (see
// abandon); a hedged attempt that lost is finished there instead, by the
// contract's deadline at the latest. The agent named avoid is passed over
// while another is free.
func (p *Pool) dispatch(ctx context.Context, sessionID, avoid string, params json.RawMessage, down chan struct{}, progress func(agent.ProgressReport)) (callResult, error) {
	sl, err := p.acquire(ctx, sessionID, avoid, down)
	if err != nil {
		return callResult{}, err
	}
	if !sl.accepting.Load() {
		// It left service since it was lent: the call goes elsewhere.
		p.giveBack(sl)
		return callResult{bounced: true}, nil
	}
	serving := sl.beginServing(sessionID)
	at := p.begin(sl, params, progress)
	if at.wait(ctx.Done()) {
		sl.endServing(serving)
		return at.finish(), nil
	}
	if context.Cause(ctx) == errHedgeLost {
		p.goTracked(func() {
			at.wait(nil)
			sl.endServing(serving)
			at.finish()
		})
	} else {
		why := "the caller cancelled the call"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = "the caller's deadline passed"
		}
		p.goTracked(func() { at.abandon(why); sl.endServing(serving) })
	}
	return callResult{}, ctx.Err()
}

// beginServing records the session of the call the slot is lent to (none
// for a sessionless call, which costs nothing here), for AgentsServing.
func (sl *slot) beginServing(sessionID string) *string {
	if sessionID == "" {
		return nil
	}
	s := sessionID // only a session call allocates
	sl.session.Store(&s)
	return &s
}

// endServing clears what beginServing recorded, unless a later call of
// the slot has recorded its own.
func (sl *slot) endServing(serving *string) {
	if serving != nil {
		sl.session.CompareAndSwap(serving, nil)
	}
}

// AgentsServing are the agents of pool running a call of session now: in
// cluster mode, those to isolate when the node loses the session, since
// what they do next acts on a context another node now owns.
func (s *Supervisor) AgentsServing(pool, session string) []string {
	p, err := s.Pool(pool)
	if err != nil || session == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, sl := range p.slots {
		if cur := sl.session.Load(); cur != nil && *cur == session {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (p *Pool) downErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == PoolFailed {
		return fmt.Errorf("%w: pool %s: %s", ErrPoolFailed, p.name, p.reason)
	}
	return fmt.Errorf("%w: pool %s", ErrPoolStopped, p.name)
}

// serve is an agent's worker loop. It takes no calls (they are lent the
// agent, see lender) and no pings (see pingLoop): it watches the agent's
// process and stops it when asked. Any failure ends the loop through p.fail.
func (p *Pool) serve(sl *slot, pc config.Pool, down chan struct{}) {
	a := sl.a
	for {
		select {
		case <-sl.promote:
			continue
		case why := <-sl.stopReq:
			p.leaseToStop(sl) // after the call in flight
			p.stopSlot(context.Background(), sl, pc.ShutdownTimeout)
			<-a.Done()
			p.mu.Lock()
			if p.slots[sl.id] == sl {
				delete(p.slots, sl.id)
			}
			sl.state = AgentDead
			sl.markDead()
			p.mu.Unlock()
			p.log.Info("agent stopped", "agent", sl.id, "reason", why)
			return
		case <-a.Done():
			p.fail(sl, evidence{kind: EventExit, reason: "exited: " + a.ExitStatus(), at: a.ExitTime()})
			return
		case <-a.Broken():
			// A dying process closes its stdout too; tell the two apart so
			// the event says what happened.
			at := p.sup.opts.Now()
			select {
			case <-a.Done():
				p.fail(sl, evidence{kind: EventExit, reason: "exited: " + a.ExitStatus(), at: at})
			case <-time.After(20 * time.Millisecond):
				p.fail(sl, evidence{kind: EventViolation, reason: "stdout closed while the process lives: " + errString(a.BrokenErr()), at: at})
			}
			return
		case <-sl.dead:
			return
		case <-down:
			return
		}
	}
}

// attempt is one attempt in flight on a leased agent.
type attempt struct {
	p  *Pool
	sl *slot
	// The agent's deadline is the contract's, not the caller's: a caller
	// that gives up must not leave the agent out of step with a reply
	// still coming.
	ctx          context.Context
	cancel       context.CancelCauseFunc // errStalled or context.DeadlineExceeded
	timer        *time.Timer             // at the stall period, or the deadline
	stall, limit time.Duration
	start        time.Time
	fault        *injected
	pending      pendingReply // nil once the reply is in
	out          json.RawMessage
	err          error
	delayUntil   time.Time // an injected latency, once the reply is in
	delayed      bool
	// The stall check's second look (see expire); used only by the timer.
	confirming bool
	cpu        uint64
}

// begin sends params to the leased agent sl. A call that runs far longer
// than the pool's usual latency is a hang, noticed long before the
// deadline, unless the agent is visibly still at work (running, or its
// reply already in the pipe): then it gets another stall period, up to the
// deadline.
func (p *Pool) begin(sl *slot, params json.RawMessage, progress func(agent.ProgressReport)) *attempt {
	c := sl.contract
	deadline := c.Deadline()
	at := &attempt{p: p, sl: sl, limit: deadline}
	at.stall = p.lat.stallTimeout(sl.stallTimeout, deadline)
	if !sl.served.Load() && sl.stallTimeout == 0 {
		// A fresh process is cold (its code paged in, lazy imports,
		// caches): the pool's warm latency says little of its first
		// call, and on a loaded host a wrong "hung" here counts as a
		// failed start toward the breaker.
		at.stall = min(max(coldStallRatio*at.stall, coldStallFloor), deadline)
	}
	// One context and one timer per attempt, which the timer ends with
	// its cause: a deadline context with a stall timer beside it cost
	// twice the allocations and timer operations on every call.
	at.ctx, at.cancel = context.WithCancelCause(context.Background())
	started := time.Now()
	// expire may ask whether the daemon starved; finish or abandon releases.
	p.sup.sched.hold()
	at.timer = time.AfterFunc(365*24*time.Hour, func() { at.expire(started) }) // set before it can fire
	at.timer.Reset(min(at.stall, deadline))
	at.start = p.sup.opts.Now()
	at.fault = sl.inject.Load()
	if at.fault != nil && at.fault.CorruptTokens {
		params = at.fault.corruptTokens(params)
	}
	at.pending, at.err = sl.a.Send(params, progress)
	return at
}

// expire ends the attempt at its deadline, or at the end of a stall
// period unless the agent is still at work: then it gets another period,
// up to the deadline. An agent not visibly at work is looked at once more
// after stallConfirm: one that used CPU in between works in bursts and
// gets another period; one that did not is hung.
func (at *attempt) expire(started time.Time) {
	left := at.limit - time.Since(started)
	if left <= 0 {
		at.cancel(context.DeadlineExceeded)
		return
	}
	progressing, cpu := at.sl.a.Progress()
	switch {
	case progressing:
		at.confirming = false
		at.timer.Reset(min(at.stall, left))
	case !at.confirming:
		at.confirming, at.cpu = true, cpu
		at.timer.Reset(min(stallConfirm, left))
	case cpu != at.cpu, at.p.sup.sched.starvedWithin(at.stall + stallConfirm):
		// Used CPU meanwhile, or the daemon itself was short of CPU
		// and could not tell: look again after another stall period.
		at.confirming = false
		at.timer.Reset(min(at.stall, left))
	default:
		at.cancel(errStalled)
	}
}

// ctxErr is the error of the attempt's ended context: the deadline's
// error once it has passed.
func (at *attempt) ctxErr() error {
	if context.Cause(at.ctx) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return at.ctx.Err()
}

// wait waits for the attempt's outcome (the reply, and any injected delay
// after it). It reports false if leave closed first: the attempt is still
// in flight, and wait must be called again.
func (at *attempt) wait(leave <-chan struct{}) bool {
	if at.pending != nil {
		out, err := at.pending.Wait(at.ctx, leave)
		if errors.Is(err, agent.ErrLeft) {
			return false
		}
		at.pending.Close()
		at.pending = nil
		if err != nil && at.ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = at.ctxErr()
		}
		at.out, at.err = out, err
	}
	if at.fault != nil && at.err == nil && !at.delayed {
		f := at.fault
		if f.Latency > 0 || f.Jitter > 0 {
			if at.delayUntil.IsZero() {
				d := f.Latency
				if f.Jitter > 0 {
					d += time.Duration(f.float() * float64(f.Jitter))
				}
				at.delayUntil = time.Now().Add(d)
			}
			t := time.NewTimer(time.Until(at.delayUntil))
			select {
			case <-t.C:
			case <-at.ctx.Done():
				t.Stop()
				at.out, at.err = nil, at.ctxErr()
			case <-leave:
				t.Stop()
				return false
			}
		}
		at.delayed = true
		if at.err == nil {
			at.out, at.err = at.p.hallucinate(f, at.out, at.sl.contract.MaxOutputBytes())
		}
	}
	return true
}

// finish checks the attempt's outcome against the contract, replaces the
// agent if it failed, and gives the agent back.
func (at *attempt) finish() callResult {
	p, sl, c := at.p, at.sl, at.sl.contract
	defer p.giveBack(sl)
	defer at.cancel(nil)
	at.timer.Stop()
	p.sup.sched.release()
	first := sl.calls.Add(1) == 1
	var v *contract.Violation
	stalled := context.Cause(at.ctx) == errStalled
	if rejected := callerFault(at.err); rejected != nil {
		// A well-formed refusal of bad input: the agent works.
		sl.lastCall.Store(p.sup.opts.Now().UnixNano())
		p.proven(sl)
		return callResult{agent: sl.id, rejected: rejected}
	}
	var rpc *agent.RPCError
	if errors.As(at.err, &rpc) && rpc.Code == agent.CodeUnavailable {
		// A well-formed "my dependency is down": the agent works.
		sl.lastCall.Store(p.sup.opts.Now().UnixNano())
		p.proven(sl)
		return callResult{agent: sl.id, unavailable: rpc}
	}
	var te *agent.ToolError
	if errors.As(at.err, &te) && !sl.retryToolErrors {
		sl.lastCall.Store(p.sup.opts.Now().UnixNano())
		p.proven(sl)
		return callResult{agent: sl.id, toolError: te}
	}
	if at.err == nil {
		v = c.Check(at.out)
	} else if stalled {
		v = contract.NewViolation(contract.CodeDeadline, "no reply within %s (the pool's typical latency is %s) and the agent neither runs nor uses CPU: treated as hung", at.stall.Round(time.Microsecond), p.lat.typical().Round(time.Microsecond))
	} else {
		v = classify(at.err, at.limit, c.MaxOutputBytes())
	}
	now := p.sup.opts.Now()
	sl.lastCall.Store(now.UnixNano())
	if v == nil {
		d := now.Sub(at.start)
		p.lat.observe(d)
		sl.lat.observe(d)
		sl.streak.n.Store(0)
		if first || !sl.served.Load() { // a kept agent may fail its first call
			p.proven(sl)
		}
		return callResult{out: at.out, agent: sl.id}
	}
	if first && !sl.served.Load() {
		p.firstCallFailed(v)
	}
	kind := EventViolation
	when := now
	switch v.Code {
	case contract.CodeDeadline:
		kind = EventDeadline
		when = at.start.Add(at.limit)
		if stalled {
			kind = EventHang
			when = at.start.Add(at.stall)
		}
	case contract.CodeExit:
		kind = EventExit
		// The process has exited, or is about to; a process that lives
		// on with its stdout closed must not hold the caller.
		select {
		case <-sl.a.Done():
			when = sl.a.ExitTime()
		case <-time.After(20 * time.Millisecond):
		}
	}
	ev := evidence{kind: kind, code: v.Code, reason: v.Error(), at: when}
	if kind == EventViolation {
		var keep bool
		if keep, ev = p.keepAfterViolation(sl, at, v, ev); keep {
			return callResult{agent: sl.id, violation: v, kept: true}
		}
	}
	p.fail(sl, ev)
	return callResult{agent: sl.id, violation: v}
}

// hallucinate replaces an output with a violating one, as an injected
// fault says.
func (p *Pool) hallucinate(f *injected, out json.RawMessage, maxBytes int64) (json.RawMessage, error) {
	if f.Hallucinate > 0 && f.float() < f.Hallucinate {
		h := f.hallucination(maxBytes)
		if !json.Valid(h) {
			return nil, agent.InvalidJSONError(h)
		}
		return h, nil
	}
	return out, nil
}

// callerFault returns the agent's refusal of the call's input, or nil if
// err is not one: a JSON-RPC -32602 Invalid params error, or an MCP tool
// error that reports one. MCP servers built on the official SDKs answer
// arguments that fail the tool's input schema with a tool result whose
// isError is set and whose text is the SDK's McpError, "MCP error -32602:
// ..." (the spec reports input validation as a tool error since
// 2025-11-25): that is bad input, not the tool's answer.
func callerFault(err error) error {
	var rpc *agent.RPCError
	if errors.As(err, &rpc) && rpc.Code == codeInvalidParams {
		return rpc
	}
	var te *agent.ToolError
	if errors.As(err, &te) && strings.HasPrefix(te.Text, mcpInvalidParamsPrefix) {
		return te
	}
	return nil
}

// mcpInvalidParamsPrefix starts the text of the MCP SDKs' McpError for
// -32602, as a tool error carries it.
const mcpInvalidParamsPrefix = "MCP error -32602"

// codeInvalidParams is JSON-RPC's "Invalid params" error code.
const codeInvalidParams = -32602

// errStalled is the cause of a call abandoned as hung.
var errStalled = errors.New("stalled")

// classify turns a transport error into the contract violation it is.
func classify(err error, deadline time.Duration, maxBytes int64) *contract.Violation {
	var rpc *agent.RPCError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return contract.NewViolation(contract.CodeDeadline, "no reply within the %s deadline", deadline)
	case errors.Is(err, agent.ErrLineTooLong):
		return contract.NewViolation(contract.CodeTooLarge, "output line exceeds the %d-byte limit", maxBytes)
	case agent.IsInvalidJSON(err):
		return contract.NewViolation(contract.CodeInvalidJSON, "%v", err)
	case errors.Is(err, agent.ErrExited):
		return contract.NewViolation(contract.CodeExit, "agent died during the call: %v", err)
	case errors.As(err, &rpc):
		return contract.NewViolation(contract.CodeProtocol, "%v", rpc)
	default:
		return contract.NewViolation(contract.CodeProtocol, "%v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}

// Call outcomes, as the OnCall hook reports them.
const (
	OutcomeOK       = "ok"       // served on the first attempt
	OutcomeRetried  = "retried"  // served after one or more failed attempts
	OutcomeCached   = "cached"   // answered from the idempotency store
	OutcomeFailed   = "failed"   // every attempt failed
	OutcomeRejected = "rejected" // breaker open, pool failed or stopped, bad input
	OutcomeCanceled = "canceled" // the caller gave up or timed out
)

func callOutcome(res *CallResult, err error) string {
	switch {
	case err == nil && res.Cached:
		return OutcomeCached
	case err == nil && res.Attempts > 1:
		return OutcomeRetried
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrRetriesExhausted):
		return OutcomeFailed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeRejected
}
