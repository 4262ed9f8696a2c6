package supervisor

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/fault"
)

// Stateless agents (agent_state: none). The context a call needs travels
// with it and the daemon rolls it back after a violation, so a violating
// output poisons the call, not the process, unless the agent keeps state
// between calls. For a pool that declares it does not, a violation costs a
// retry on another agent instead of a process: replacing the agent (fork,
// exec, cgroup, handshake) at 5 % hallucination and a thousand calls a
// second is fifty process starts a second, which eat a small host. The
// agent is replaced when its violations come in a row (violation_streak):
// then it is more likely broken than unlucky. Any other fault (exit, hang,
// deadline, an unreadable reply) replaces it as before: those leave the
// process dead or out of step.

// Decisions recorded in a violation event's Action.
const (
	ActionKept     = "kept"     // a stateless agent survived the violation
	ActionReplaced = "replaced" // the agent is killed and replaced
)

// violationStreak is how many violations in a row replace an agent of a
// pool configured as pc: 1 for stateful agents (every violation).
func violationStreak(pc config.Pool) int32 {
	if pc.AgentState != config.AgentStateNone {
		return 1
	}
	if pc.ViolationStreak <= 0 {
		return config.DefaultViolationStreak
	}
	return int32(pc.ViolationStreak)
}

// violationStreakState is a slot's count of violations in a row.
type violationStreakState struct {
	limit int32 // violationStreak of its pool's config at its start
	n     atomic.Int32
}

// judged reports whether an attempt's violation comes from a reply that was
// read whole and judged (the contract's schema, size or tokens, a reply
// that is not JSON, a JSON-RPC error): the agent is still in step with its
// transport, so a stateless agent may serve again.
func (at *attempt) judged() bool {
	if at.err == nil {
		return true
	}
	if at.ctx.Err() != nil {
		return false // a hang or a deadline: a reply may still come
	}
	var rpc *agent.RPCError
	return agent.IsInvalidJSON(at.err) || errors.As(at.err, &rpc)
}

// keepAfterViolation decides the fate of an agent whose output violated
// the contract. A stateless agent below its streak is kept: the violation
// is recorded (class runtime, action kept) and the call retried on another
// agent. Otherwise it returns the evidence with the decision for p.fail.
func (p *Pool) keepAfterViolation(sl *slot, at *attempt, v *contract.Violation, ev evidence) (bool, evidence) {
	s := &sl.streak
	if s.limit <= 1 || !at.judged() {
		ev.action = ActionReplaced
		return false, ev
	}
	n := s.n.Add(1)
	if n >= s.limit {
		ev.action = ActionReplaced
		ev.reason = fmt.Sprintf("%s (%d violations in a row, violation_streak %d)", ev.reason, n, s.limit)
		return false, ev
	}
	p.sup.emit(Event{
		Time: ev.at, Kind: EventViolation, Pool: p.name, Agent: sl.id, Code: string(v.Code), Class: fault.Runtime,
		Reason: fmt.Sprintf("%s (%d of %d in a row; agent_state none: the call is retried on another agent)", ev.reason, n, s.limit),
		Action: ActionKept, Injected: sl.fault.Load() != 0,
	})
	return true, ev
}
