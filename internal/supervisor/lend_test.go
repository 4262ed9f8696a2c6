package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// A caller that gives up returns at once; the agent lent to it finishes
// the call on its own and stays in service, in step for the next call.
func TestCallerGivingUpLeavesTheAgentInStep(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "g", func(pc *config.Pool) { pc.Replicas, pc.Spares = 1, 0 })))
	h.ready()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := h.sup.Call(ctx, "g", CallRequest{Input: json.RawMessage(`{"op":"slow"}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call whose caller gave up: %v, want context.DeadlineExceeded", err)
	}
	// The one agent is busy with the abandoned call until it answers, then
	// takes this one.
	res, err := h.call("g", "", `{"text":"next"}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 {
		t.Errorf("next call took %d attempts, want 1", res.Attempts)
	}
	for _, ps := range h.sup.Status() {
		if ps.Restarts != 0 {
			t.Errorf("pool %s restarted %d agents; an abandoned call is not the agent's fault", ps.Name, ps.Restarts)
		}
	}
}

// Draining an agent with a call in flight lets the call finish first.
func TestDrainWaitsForTheCallInFlight(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "w", func(pc *config.Pool) { pc.Replicas, pc.Spares = 1, 1 })))
	h.ready()
	victim := h.agentsIn("w", AgentActive)[0]
	var (
		wg  sync.WaitGroup
		res *CallResult
		err error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err = h.call("w", "", `{"op":"slow","text":"x"}`)
	}()
	// The agent is lent to the call as soon as the call starts.
	h.waitFor("the call in flight", func() bool {
		h.sup.mu.Lock()
		p := h.sup.pools["w"]
		h.sup.mu.Unlock()
		sl := p.slotByID(victim.ID)
		p.lend.mu.Lock()
		defer p.lend.mu.Unlock()
		return sl != nil && sl.lease.leased
	})
	if err := h.sup.Drain(victim.ID, "test"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err != nil {
		t.Fatalf("call on a draining agent: %v", err)
	}
	if res.Agent != victim.ID || res.Attempts != 1 {
		t.Errorf("call served by %s in %d attempts, want %s in 1", res.Agent, res.Attempts, victim.ID)
	}
	h.waitFor("drained agent exits", func() bool { return !alive(victim.PID) })
	h.mustCall("w", "", `{"text":"after"}`)
}

// AgentsServing names the agent running a call of a session while the
// call runs, and no agent once it is over or for another session.
func TestAgentsServing(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "g", func(pc *config.Pool) { pc.Replicas, pc.Spares = 2, 0 })))
	h.ready()
	done := make(chan error, 1)
	go func() {
		_, err := h.call("g", "s1", `{"op":"slow","text":"x"}`)
		done <- err
	}()
	var serving []string
	h.waitFor("an agent serving s1", func() bool {
		serving = h.sup.AgentsServing("g", "s1")
		return len(serving) == 1
	})
	if got := h.sup.AgentsServing("g", "s2"); len(got) != 0 {
		t.Errorf("agents serving s2, never called: %v", got)
	}
	if got := h.sup.AgentsServing("nope", "s1"); got != nil {
		t.Errorf("agents serving s1 in an unknown pool: %v", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.sup.AgentsServing("g", "s1"); len(got) != 0 {
		t.Errorf("agents serving s1 after its call: %v (was %v)", got, serving)
	}
}
