package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/fault"
)

// cancelPool is one agent and a spare, with no hang detection within the
// tests' time (the adaptive stall timeout would otherwise race the cancel).
func cancelPool(t *testing.T) config.Pool {
	return testPool(t, "c", func(pc *config.Pool) {
		pc.Replicas, pc.Spares = 1, 1
		pc.StallTimeout = 10 * time.Second
		pc.Contract.Deadline = 20 * time.Second
	})
}

// cancelAfter runs a call whose caller cancels it after d.
func (h *harness) cancelAfter(d time.Duration, input string) error {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(d, cancel)
	_, err := h.sup.Call(ctx, "c", CallRequest{Input: json.RawMessage(input)})
	return err
}

func (h *harness) cancelEvent() Event {
	h.waitFor("the cancel event", func() bool { return len(h.eventsOf(EventCancel)) > 0 })
	return h.eventsOf(EventCancel)[0]
}

// A native agent that answers its cancelled call within the grace stays
// in service: nothing replaced, nothing charged.
func TestCancelledCallKeepsAnAgentThatAnswers(t *testing.T) {
	h := newHarness(t, cfgOf(cancelPool(t)))
	h.sup.opts.CancelGrace = 5 * time.Second
	h.ready()
	before := h.agentsIn("c", AgentActive)[0]
	if err := h.cancelAfter(30*time.Millisecond, `{"op":"slow","text":"x"}`); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	ev := h.cancelEvent()
	if ev.Agent != before.ID || ev.Class != fault.Caller || !strings.Contains(ev.Reason, "it answered: kept") {
		t.Fatalf("cancel event %+v, want agent %s kept, class caller", ev, before.ID)
	}
	res, err := h.call("c", "", `{"text":"next"}`)
	if err != nil || res.Agent != before.ID || res.Attempts != 1 {
		t.Fatalf("next call: %+v %v, want served by %s at once", res, err, before.ID)
	}
	if n := len(h.eventsOf(EventDrain)); n != 0 {
		t.Errorf("%d agents drained, want none", n)
	}
	if st := h.sup.Status()[0]; st.Restarts != 0 {
		t.Errorf("%d restarts after a cancel", st.Restarts)
	}
}

// A native agent cannot be told to stop: one still at work on a cancelled
// call after the grace is replaced, without charge to the pool.
func TestCancelledCallReplacesANativeAgentStillAtWork(t *testing.T) {
	h := newHarness(t, cfgOf(cancelPool(t)))
	h.sup.opts.CancelGrace = 200 * time.Millisecond
	h.ready()
	victim := h.agentsIn("c", AgentActive)[0]
	if err := h.cancelAfter(30*time.Millisecond, `{"op":"hang"}`); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	ev := h.cancelEvent()
	if ev.Agent != victim.ID || ev.Class != fault.Caller || !strings.Contains(ev.Reason, "replaced") {
		t.Fatalf("cancel event %+v, want agent %s replaced, class caller", ev, victim.ID)
	}
	h.waitFor("the agent at work on the cancelled call is gone", func() bool { return !alive(victim.PID) })
	res, err := h.call("c", "", `{"text":"next"}`)
	if err != nil || res.Attempts != 1 || res.Agent == victim.ID {
		t.Fatalf("next call: %+v %v", res, err)
	}
	st := h.sup.Status()[0]
	if st.Restarts != 0 || st.State != PoolRunning || st.Breaker != "closed" {
		t.Errorf("after a cancel: %d restarts, state %s, breaker %s; want nothing charged", st.Restarts, st.State, st.Breaker)
	}
	for _, k := range []EventKind{EventHang, EventDeadline, EventViolation, EventExit} {
		if evs := h.eventsOf(k); len(evs) > 0 {
			t.Errorf("a cancel recorded as a failure: %+v", evs)
		}
	}
}

// Progress an agent reports reaches the caller's callback, in order.
func TestCallProgressReachesTheCaller(t *testing.T) {
	h := newHarness(t, cfgOf(cancelPool(t)))
	h.ready()
	var got []agent.ProgressReport
	res, err := h.sup.Call(context.Background(), "c", CallRequest{
		Input:    json.RawMessage(`{"op":"progress","text":"p"}`),
		Progress: func(p agent.ProgressReport) { got = append(got, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1].Progress != 2 || got[len(got)-1].Total != 2 {
		t.Fatalf("progress seen %+v (result %s), want up to 2 of 2", got, res.Output)
	}
}

// Reports only go up, a slow callback gets the latest, and the last one
// is passed on before close returns; none after.
func TestProgressRelayIsMonotonic(t *testing.T) {
	var mu sync.Mutex
	var got []float64
	block := make(chan struct{})
	r := newProgressRelay(func(p agent.ProgressReport) {
		<-block
		mu.Lock()
		got = append(got, p.Progress)
		mu.Unlock()
	})
	// A retry on another agent starts again from 1.
	for _, v := range []float64{1, 2, 3, 1, 2, 3, 4, 4} {
		r.report(agent.ProgressReport{Progress: v})
	}
	close(block)
	r.close()
	r.report(agent.ProgressReport{Progress: 9})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("progress passed on %v: not increasing", got)
		}
	}
	if len(got) == 0 || got[len(got)-1] != 4 {
		t.Fatalf("progress passed on %v, want it to end at 4", got)
	}
}
