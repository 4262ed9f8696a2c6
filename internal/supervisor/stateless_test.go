package supervisor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/fault"
)

func statelessPool(t *testing.T, name string) config.Pool {
	return defaultsPool(t, name, func(pc *config.Pool) {
		pc.AgentState = config.AgentStateNone
		pc.ViolationStreak = 3
	})
}

// sessionAgent returns the pid of the agent that serves session s.
func (h *harness) sessionAgent(pool, s string) int {
	h.t.Helper()
	return int(h.mustCall(pool, s, `{"text":"who"}`)["pid"].(float64))
}

func (h *harness) poolAlive(pool string, pid int) bool {
	for _, st := range []AgentState{AgentActive, AgentSpare} {
		for _, a := range h.agentsIn(pool, st) {
			if a.PID == pid {
				return true
			}
		}
	}
	return false
}

// A stateless agent that violates is kept and the call is retried on
// another agent, even when the ring assigns the session to the violator;
// violations in a row up to violation_streak replace it, and every
// violation is an event of class runtime with the decision.
func TestStatelessViolationRetriesElsewhereAndKeepsTheAgent(t *testing.T) {
	for _, op := range []string{"bad-on-pid", "garbage-on-pid"} {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t, cfgOf(statelessPool(t, "sl")))
			h.ready()
			pid := h.sessionAgent("sl", "s1")
			in := fmt.Sprintf(`{"op":%q,"text":"%d"}`, op, pid)
			for i := 1; i <= 3; i++ {
				res, err := h.call("sl", "s1", in)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if res.Attempts != 2 || len(res.Violations) != 1 || strings.Contains(string(res.Output), fmt.Sprintf(`"pid":%d`, pid)) {
					t.Fatalf("call %d: %+v (%s), want one violation on %d and the answer from another agent", i, res, res.Output, pid)
				}
				if kept := h.poolAlive("sl", pid); kept != (i < 3) {
					t.Fatalf("after %d violations in a row the agent is alive: %v", i, kept)
				}
			}
			vs := h.eventsOf(EventViolation)
			if len(vs) != 3 {
				t.Fatalf("%d violation events, want 3: %+v", len(vs), vs)
			}
			for i, ev := range vs {
				want := ActionKept
				if i == 2 {
					want = ActionReplaced
				}
				if ev.Class != fault.Runtime || ev.Action != want {
					t.Fatalf("violation event %d: %+v, want class runtime, action %s", i, ev, want)
				}
			}
			h.waitFor("the replacement", func() bool { return len(h.agentsIn("sl", AgentActive)) == 2 })
			h.mustCall("sl", "s1", `{"text":"still serving"}`)
		})
	}
}

// A valid answer ends a streak: an agent whose violations never come
// violation_streak in a row is never replaced.
func TestStatelessStreakResetsOnAValidAnswer(t *testing.T) {
	h := newHarness(t, cfgOf(statelessPool(t, "sl")))
	h.ready()
	pid := h.sessionAgent("sl", "s1")
	for i := range 10 {
		if _, err := h.call("sl", "s1", fmt.Sprintf(`{"op":"bad-on-pid","text":"%d"}`, pid)); err != nil {
			t.Fatalf("bad call %d: %v", i, err)
		}
		if got := h.sessionAgent("sl", "s1"); got != pid {
			t.Fatalf("after %d violations, each followed by a valid answer, the session moved from %d to %d", i+1, pid, got)
		}
	}
	if n := len(h.eventsOf(EventKill)); n != 0 {
		t.Fatalf("%d agents killed", n)
	}
}

// Any other fault of a stateless agent replaces it at once, and a stateful
// agent (the default) is replaced on its first violation.
func TestStatelessOtherFaultsAndStatefulViolationsReplace(t *testing.T) {
	stateful := defaultsPool(t, "sf")
	if stateful.AgentState != config.AgentStateful {
		t.Fatalf("default agent_state %q, want stateful", stateful.AgentState)
	}
	h := newHarness(t, cfgOf(statelessPool(t, "sl"), stateful))
	h.ready()

	pid := h.sessionAgent("sl", "s1")
	if _, err := h.call("sl", "s1", fmt.Sprintf(`{"op":"crash-on-pid","text":"%d"}`, pid)); err != nil {
		t.Fatalf("crash call: %v", err)
	}
	h.waitFor("the crashed agent to go", func() bool { return !h.poolAlive("sl", pid) })

	pid = h.sessionAgent("sf", "s2")
	res, err := h.call("sf", "s2", fmt.Sprintf(`{"op":"bad-on-pid","text":"%d"}`, pid))
	if err != nil || res.Attempts != 2 {
		t.Fatalf("stateful violation: %+v, %v", res, err)
	}
	if h.poolAlive("sf", pid) {
		t.Fatal("a stateful agent survived its violation")
	}
	for _, ev := range h.eventsOf(EventViolation) {
		if ev.Pool == "sf" && ev.Action != ActionReplaced {
			t.Fatalf("stateful violation event %+v, want action replaced", ev)
		}
	}
}
