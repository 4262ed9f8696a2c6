package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/breaker"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/fault"
)

// defaultsPool is testPool with the product's default backoff, intensity
// and breaker: what a user gets who tunes nothing.
func defaultsPool(t *testing.T, name string, mod ...func(*config.Pool)) config.Pool {
	d := config.DefaultPool()
	return testPool(t, name, append([]func(*config.Pool){func(pc *config.Pool) {
		pc.Backoff, pc.Intensity, pc.Breaker = d.Backoff, d.Intensity, d.Breaker
	}}, mod...)...)
}

// Violations by agents that started are runtime faults: far more of them
// than the intensity limit, in a burst, and the pool stays up with no
// backoff.
func TestRuntimeFaultsNeitherBackOffNorGiveUp(t *testing.T) {
	pc := defaultsPool(t, "rt", func(pc *config.Pool) {
		pc.Retries = 0             // every violation reaches the caller...
		pc.Breaker.MinCalls = 1000 // ...which would open the breaker, not the point here
		// One active agent: the good call after each violation is the new
		// agent's first, so the breaker's streak of new agents failing
		// their first call (8) cannot build up by which agent a call meets.
		pc.Replicas = 1
		// Without retries a good call must not meet a hang detector that a
		// loaded test machine (-race, packages in parallel) can fool.
		pc.StallTimeout = 10 * time.Second
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	max := pc.Intensity.MaxRestarts
	for i := range 3 * max {
		_, err := h.call("rt", "", `{"op":"bad"}`)
		if !errors.Is(err, ErrRetriesExhausted) {
			t.Fatalf("call %d: %v, want the violation", i, err)
		}
		h.mustCall("rt", "", `{"text":"ok"}`) // proves the replacement, as real traffic does
	}
	st, _ := h.sup.Pool("rt")
	if s := st.Status(); s.State != PoolRunning && s.State != PoolDegraded {
		t.Fatalf("pool after %d runtime faults: %+v", 3*max, s)
	}
	for _, ev := range h.eventsOf(EventViolation) {
		if ev.Class != fault.Runtime {
			t.Fatalf("violation event of class %q, want runtime: %+v", ev.Class, ev)
		}
	}
	if len(h.eventsOf(EventEscalate)) != 0 {
		t.Fatal("the pool escalated on runtime faults")
	}
	h.mustCall("rt", "", `{"text":"still serving"}`)
}

// An agent that refuses bad input (-32602) is right to: the caller gets
// ErrInvalidInput at once, the agent lives, nothing is retried.
func TestInvalidParamsIsTheCallersFault(t *testing.T) {
	h := newHarness(t, cfgOf(defaultsPool(t, "cf")))
	h.ready()
	before := h.agentsIn("cf", AgentActive)
	for range 100 {
		res, err := h.call("cf", "", `{"op":"invalid-params"}`)
		if !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("call with bad params: %v (%+v), want ErrInvalidInput", err, res)
		}
	}
	if n := len(h.eventsOf(EventKill)); n != 0 {
		t.Fatalf("%d agents killed over bad input", n)
	}
	after := h.agentsIn("cf", AgentActive)
	if len(after) != len(before) || after[0].PID != before[0].PID {
		t.Fatalf("agents changed: before %+v, after %+v", before, after)
	}
	evs := h.eventsOf(EventInvalidInput)
	if len(evs) != 100 || evs[0].Class != fault.Caller {
		t.Fatalf("%d invalid_input events (first %+v), want 100 of class caller", len(evs), evs)
	}
	p, _ := h.sup.Pool("cf")
	if s := p.Status(); s.State != PoolRunning || s.Restarts != 0 || s.Breaker != "closed" {
		t.Fatalf("pool after 100 bad inputs: %+v", s)
	}
}

// An agent that says its dependency is down (-32030) is not replaced: the
// call tries every attempt on other agents, then fails with that reason;
// such calls open the breaker, which then fails calls fast; once the
// dependency is back, the half-open probe closes it.
func TestDependencyUnavailableKeepsAgentsAndOpensBreaker(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fixed")
	pc := defaultsPool(t, "dep", func(pc *config.Pool) {
		pc.Env["TEST_FIXED_FLAG"] = flag
		pc.Breaker.OpenFor = time.Second
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	before := h.agentsIn("dep", AgentActive)
	in := `{"op":"unavailable-unless-fixed","text":"x"}`
	_, err := h.call("dep", "", in)
	if !errors.Is(err, ErrDependencyUnavailable) {
		t.Fatalf("call while the dependency is down: %v, want ErrDependencyUnavailable", err)
	}
	var open *breaker.OpenError
	for i := 0; open == nil; i++ {
		if i > 100 {
			t.Fatal("the breaker never opened")
		}
		_, err = h.call("dep", "", in)
		errors.As(err, &open)
	}
	if !strings.Contains(open.Cause, "unavailable") {
		t.Errorf("the open breaker names %q, not the dependency", open.Cause)
	}
	if n := len(h.eventsOf(EventKill)); n != 0 {
		t.Fatalf("%d agents killed for a dependency that is down", n)
	}
	if after := h.agentsIn("dep", AgentActive); len(after) != len(before) || after[0].PID != before[0].PID {
		t.Fatalf("agents changed: before %+v, after %+v", before, after)
	}
	if evs := h.eventsOf(EventUnavailable); len(evs) == 0 || evs[0].Class != fault.Dependency {
		t.Fatalf("unavailable events %+v, want some of class dependency", evs)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := h.sup.Pool("dep")
	h.waitFor("the probe to close the breaker", func() bool {
		_, err := h.call("dep", "", in)
		return err == nil && p.Status().Breaker == "closed"
	})
}

// A command that cannot start backs off and gives up at the intensity
// limit; its failures are start failures.
func TestStartFailuresBackOffAndGiveUp(t *testing.T) {
	pc := defaultsPool(t, "sf", func(pc *config.Pool) {
		pc.Env["TEST_EXIT_AT_START"] = "1"
		pc.Intensity = config.Intensity{MaxRestarts: 4, Period: time.Minute}
		pc.Backoff.Max = 40 * time.Millisecond
	})
	h := newHarness(t, cfgOf(pc))
	p, _ := h.sup.Pool("sf")
	h.waitFor("the pool to fail", func() bool { return p.Status().State == PoolFailed })
	evs := h.eventsOf(EventSpawnFail)
	if len(evs) < 5 {
		t.Fatalf("%d start failures before giving up, want more than max_restarts 4", len(evs))
	}
	for _, ev := range evs {
		if ev.Class != fault.Start {
			t.Fatalf("spawn_failed of class %q: %+v", ev.Class, ev)
		}
	}
	// The failures explain themselves: the agent's last stderr lines are
	// in the events, the pool's reason, and its logs.
	const why = "can't open file '/srv/agents/agent.py'"
	if last := evs[len(evs)-1]; !strings.Contains(last.Reason, why) {
		t.Errorf("spawn_failed reason %q does not quote the agent's stderr", last.Reason)
	}
	if s := p.Status(); !strings.Contains(s.Reason, why) {
		t.Errorf("failed pool's reason %q does not quote the agent's stderr", s.Reason)
	}
	lines, err := h.sup.Logs("sf", 0)
	if err != nil || len(lines) < 2 || !strings.Contains(lines[len(lines)-1].Line, why) {
		t.Errorf("Logs(sf) = %v, %v", lines, err)
	}
	if one, err := h.sup.Logs(lines[0].Agent, 1); err != nil || len(one) != 1 || one[0].Agent != lines[0].Agent {
		t.Errorf("Logs of a dead agent %s = %v, %v", lines[0].Agent, one, err)
	}
	if _, err := h.sup.Logs("no-such-thing", 0); !errors.Is(err, ErrUnknownAgent) {
		t.Errorf("Logs(no-such-thing): %v", err)
	}
}

// Every output violates (the model's upstream is down): the breaker opens
// on new agents failing their first call, calls fail fast naming the cause,
// no agent is started while it is open; once the agent is fixed, the
// half-open probe closes it.
func TestBreakerOpensOnBrokenStartsAndProbesBack(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fixed")
	pc := defaultsPool(t, "br", func(pc *config.Pool) {
		pc.Env["TEST_FIXED_FLAG"] = flag
		pc.Breaker.OpenFor = 5 * time.Second // long enough that a loaded machine does not reach half-open between two calls
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	var open *breaker.OpenError
	for i := 0; open == nil; i++ {
		if i > 10 {
			t.Fatal("breaker never opened")
		}
		_, err := h.call("br", "", `{"op":"bad-unless-fixed","text":"x"}`)
		errors.As(err, &open)
	}
	if open.StartFailures == 0 {
		t.Fatalf("opened for another reason than failed starts: %v", open)
	}
	start := time.Now()
	_, err := h.call("br", "", `{"op":"bad-unless-fixed","text":"x"}`)
	took := time.Since(start)
	if !errors.Is(err, ErrBreakerOpen) || !errors.As(err, &open) {
		t.Fatalf("call while open: %v", err)
	}
	if open.Cause == "" || open.RetryAfter() <= 0 {
		t.Fatalf("open error without cause or retry hint: %+v", open)
	}
	t.Logf("refused in %v: %v", took, err)
	spawns := len(h.eventsOf(EventSpawn))
	p, _ := h.sup.Pool("br")
	if until := p.breaker.OpenUntil(); !until.IsZero() {
		time.Sleep(time.Until(until) / 2)
		if n := len(h.eventsOf(EventSpawn)); n != spawns {
			t.Fatalf("%d agents started while the breaker was open", n-spawns)
		}
	}

	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the probe to close the breaker", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := h.sup.Call(ctx, "br", CallRequest{Input: []byte(`{"op":"bad-unless-fixed","text":"x"}`)})
		if err != nil && !errors.Is(err, ErrBreakerOpen) {
			t.Logf("probe: %v", err)
		}
		return err == nil && p.Status().Breaker == "closed"
	})
}

// scale is a runtime override: a reload of the unchanged file keeps it
// and stops no agent; a reload that changes replicas in the file takes it.
func TestScaleThenReloadKeepsThePoolConsistent(t *testing.T) {
	pc := testPool(t, "sc", func(pc *config.Pool) { pc.Spares = 0; pc.MaxSpares = 1 })
	h := newHarness(t, cfgOf(pc))
	h.ready()
	if err := h.sup.Scale("sc", 3, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	h.ready()
	pids := map[int]bool{}
	for _, a := range h.agentsIn("sc", AgentActive) {
		pids[a.PID] = true
	}
	if err := h.sup.Apply(context.Background(), cfgOf(pc)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a wrong reload would be draining by now
	h.ready()
	p, _ := h.sup.Pool("sc")
	if s := p.Status(); s.Active != 3 || s.Replicas != 3 || s.Spares != 0 || s.Starting != 0 {
		t.Fatalf("after reload of the unchanged file: %+v, want 3/3 active, no spares", s)
	}
	for _, a := range h.agentsIn("sc", AgentActive) {
		if !pids[a.PID] {
			t.Fatalf("reload replaced agents: %+v", a)
		}
	}
	if n := len(h.eventsOf(EventDrain)); n != 0 {
		t.Fatalf("%d agents drained by a reload that changed nothing", n)
	}

	pc.Replicas, pc.Spares = 1, 1
	if err := h.sup.Apply(context.Background(), cfgOf(pc)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the file's size", func() bool {
		s := p.Status()
		return s.Active == 1 && s.Replicas == 1 && s.Spares == 1 && s.Starting == 0 && len(h.agentsIn("sc", AgentDraining)) == 0
	})
	for _, a := range h.agentsIn("sc", AgentActive) {
		if !pids[a.PID] {
			t.Fatalf("a resize replaced the agent it kept active: %+v", a)
		}
	}
}

// A newer scale calls off the starts an older one ordered: `scale 200`
// (a typo) then `scale 1` brings up a handful of agents, not 200, and the
// pool ends at its new size with nothing left starting.
func TestScaleDownCallsOffPendingStarts(t *testing.T) {
	pc := testPool(t, "typo", func(pc *config.Pool) { pc.Spares = 1 })
	h := newHarness(t, cfgOf(pc))
	h.ready()
	before := len(h.eventsOf(EventSpawn))
	if err := h.sup.Scale("typo", 200, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.Scale("typo", 1, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := h.sup.Pool("typo")
	h.waitFor("the pool back at 1 active and 1 spare, nothing starting", func() bool {
		s := p.Status()
		return s.Active == 1 && s.Spares == 1 && s.Starting == 0
	})
	time.Sleep(200 * time.Millisecond)
	// At most the node's spawn budget had begun before the scale-down.
	if n := len(h.eventsOf(EventSpawn)) - before; n > h.sup.spawns.size()+2 {
		t.Fatalf("%d agents spawned for a scale to 200 undone at once, want at most the spawn budget %d", n, h.sup.spawns.size())
	}
	if s := p.Status(); s.Active != 1 || s.Spares != 1 || s.Starting != 0 {
		t.Fatalf("pool settled at %+v", s)
	}
}

// scale refuses what is likely a typo: over the pool's bound, or 0,
// unless told; the pool is untouched by a refused scale.
func TestScaleRefusesOverTheBoundAndZero(t *testing.T) {
	pc := testPool(t, "bound", func(pc *config.Pool) { pc.MaxReplicas = 2 })
	h := newHarness(t, cfgOf(pc))
	h.ready()
	p, _ := h.sup.Pool("bound")
	before := p.Status().Replicas
	for _, n := range []int{3, 0} {
		if err := h.sup.Scale("bound", n, ScaleOptions{}); !errors.Is(err, ErrScaleRefused) {
			t.Fatalf("scale to %d: %v, want ErrScaleRefused", n, err)
		} else {
			t.Logf("scale to %d: %v", n, err)
		}
	}
	if s := p.Status(); s.Replicas != before {
		t.Fatalf("a refused scale changed the pool: %+v", s)
	}
	if err := h.sup.Scale("bound", 3, ScaleOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("3 active agents", func() bool { return p.Status().Active == 3 })
	if err := h.sup.Scale("bound", 0, ScaleOptions{AllowZero: true}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("no active agent", func() bool { return p.Status().Active == 0 })
}

// restart POOL rolls: every agent is replaced, the pool never has fewer
// than its replicas active, and calls made meanwhile all succeed.
func TestRestartPoolRollsKeepingReplicas(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "roll")))
	h.ready()
	p, _ := h.sup.Pool("roll")
	old := map[int]bool{}
	for _, a := range append(h.agentsIn("roll", AgentActive), h.agentsIn("roll", AgentSpare)...) {
		old[a.PID] = true
	}
	if err := h.sup.RestartPool(context.Background(), "roll", false); err != nil {
		t.Fatal(err)
	}
	replicas := p.Status().Replicas
	h.waitFor("every agent replaced", func() bool {
		if s := p.Status(); s.Active < replicas {
			t.Fatalf("only %d of %d replicas active during a rolling restart: %+v", s.Active, replicas, s)
		}
		h.mustCall("roll", "", `{"text":"during"}`)
		as := append(h.agentsIn("roll", AgentActive), h.agentsIn("roll", AgentSpare)...)
		for _, a := range as {
			if old[a.PID] {
				return false
			}
		}
		return len(as) == replicas+p.Status().SparesWanted
	})
}

// A pool this host cannot run (its user does not exist) is listed, failed,
// with the reason, and its calls say why; a reload that fixes it starts it.
func TestPoolThatCannotStartIsListedFailed(t *testing.T) {
	good := testPool(t, "good")
	h := newHarness(t, cfgOf(good))
	h.ready()
	bad := testPool(t, "bad", func(pc *config.Pool) { pc.User = "no-such-user-for-resilienced" })
	err := h.sup.Apply(context.Background(), cfgOf(good, bad))
	if err == nil {
		t.Fatal("Apply of a pool whose user does not exist: no error")
	}
	p, perr := h.sup.Pool("bad")
	if perr != nil {
		t.Fatalf("the pool that cannot start is not listed: %v", perr)
	}
	if s := p.Status(); s.State != PoolFailed || !strings.Contains(s.Reason, "no-such-user-for-resilienced") {
		t.Fatalf("status of the pool that cannot start: %+v", s)
	}
	if _, err := h.call("bad", "", `{"text":"x"}`); !errors.Is(err, ErrPoolFailed) || !strings.Contains(err.Error(), "no-such-user") {
		t.Fatalf("call to it: %v, want ErrPoolFailed with the reason", err)
	}
	if err := h.sup.RestartPool(context.Background(), "bad", false); !errors.Is(err, ErrPoolFailed) {
		t.Fatalf("restart of it: %v, want ErrPoolFailed", err)
	}
	if err := h.sup.Scale("bad", 3, ScaleOptions{}); !errors.Is(err, ErrPoolFailed) {
		t.Fatalf("scale of it: %v, want ErrPoolFailed", err)
	}
	if n := len(h.eventsOf(EventPoolFailed)); n != 1 {
		t.Errorf("%d pool_failed events, want 1", n)
	}
	fixed := testPool(t, "bad")
	if err := h.sup.Apply(context.Background(), cfgOf(good, fixed)); err != nil {
		t.Fatal(err)
	}
	h.ready2("bad")
	h.mustCall("bad", "", `{"text":"fixed"}`)
}

// Input that breaks the pool's input_schema is refused before any agent
// sees it: ErrInvalidInput saying where, no agent called or replaced, the
// breaker and the session untouched; valid input is served.
func TestInputSchemaRefusesBeforeAnyAgent(t *testing.T) {
	pc := defaultsPool(t, "in", func(pc *config.Pool) {
		pc.InputSchema = []byte(`{"type":"object","required":["text"],"properties":{"text":{"type":"string"}}}`)
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	for i, bad := range []string{`{"op":"x"}`, `{"text":5}`, `"text"`} {
		res, err := h.sup.Call(context.Background(), "in", CallRequest{Input: []byte(bad), Session: "s1"})
		if !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("bad input %d %s: %v (%+v), want ErrInvalidInput", i, bad, err, res)
		}
		t.Logf("%s: %v", bad, err)
	}
	_, err := h.call("in", "", `{"text":5}`)
	if want := "input_schema: at /text: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say where (%q)", err, want)
	}
	for _, a := range h.agentsIn("in", AgentActive) {
		if a.Calls != 0 {
			t.Fatalf("agent %s served %d calls of bad input", a.ID, a.Calls)
		}
	}
	p, _ := h.sup.Pool("in")
	if s := p.Status(); s.Restarts != 0 || s.Breaker != "closed" {
		t.Fatalf("pool after bad input: %+v", s)
	}
	if got := h.mustCall("in", "s1", `{"text":"ok"}`); got["answer"] != "ok" || got["context_len"] != float64(0) {
		t.Fatalf("valid input: %v, want the answer on an empty session context", got)
	}
}

// A call waiting for an agent when the breaker opens fails at once with
// the breaker's error: an open breaker starts no agent, and the agent it
// waits for may be stuck.
func TestCallWaitingForAnAgentFailsWhenTheBreakerOpens(t *testing.T) {
	pc := defaultsPool(t, "bw", func(pc *config.Pool) {
		pc.Replicas, pc.Spares, pc.MaxSpares = 1, 0, 0
		pc.Breaker.MinCalls, pc.Breaker.FailureRatio = 1, 1
		pc.Breaker.OpenFor = time.Minute
		pc.Contract.Deadline = time.Minute
		pc.StallTimeout = time.Minute // the hung call stays in flight
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	p, _ := h.sup.Pool("bw")
	go h.call("bw", "", `{"op":"hang","text":"x"}`) // holds the only agent
	h.waitFor("the agent to be lent", func() bool {
		p.lend.mu.Lock()
		defer p.lend.mu.Unlock()
		return len(p.lend.idle) == 0
	})
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := h.sup.Call(ctx, "bw", CallRequest{Input: json.RawMessage(`{"op":"echo","text":"y"}`)})
		waited <- err
	}()
	h.waitFor("the second call to wait for an agent", func() bool {
		p.lend.mu.Lock()
		defer p.lend.mu.Unlock()
		return len(p.lend.waiting) == 1
	})
	c, err := p.breaker.Allow()
	if err != nil {
		t.Fatal(err)
	}
	c.Failed("upstream down") // min_calls 1, ratio 1: it opens
	err = <-waited
	var open *breaker.OpenError
	if !errors.Is(err, ErrBreakerOpen) || !errors.As(err, &open) || open.Cause != "upstream down" {
		t.Fatalf("the waiting call: %v, want the breaker's refusal", err)
	}
	p.lend.mu.Lock()
	defer p.lend.mu.Unlock()
	if len(p.lend.waiting) != 0 {
		t.Fatalf("%d callers still queued after the refusal", len(p.lend.waiting))
	}
}
