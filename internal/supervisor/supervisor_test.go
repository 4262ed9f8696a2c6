package supervisor

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
)

func TestPoolStartsReplicasAndSpares(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "echo")))
	h.ready()
	st := h.sup.Status()
	if len(st) != 1 || st[0].Active != 2 || st[0].Spares != 1 || st[0].State != PoolRunning {
		t.Fatalf("status %+v", st)
	}
	out := h.mustCall("echo", "", `{"text":"hello"}`)
	if out["answer"] != "hello" {
		t.Fatalf("answer %v", out["answer"])
	}
	for _, a := range h.agentsIn("echo", AgentActive) {
		if !strings.HasPrefix(a.ID, "echo-") || a.PID == 0 {
			t.Fatalf("agent %+v", a)
		}
	}
}

func TestKilledAgentIsReplacedBySpare(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "echo")))
	h.ready()
	victim := h.agentsIn("echo", AgentActive)[0]
	spare := h.agentsIn("echo", AgentSpare)[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitFor("recovered event", func() bool { return len(h.eventsOf(EventRecovered)) > 0 })
	rec := h.eventsOf(EventRecovered)[0]
	if rec.Agent != victim.ID || rec.Cause != EventExit || rec.DetectMS == nil || rec.RecoverMS == nil {
		t.Fatalf("recovered event %+v", rec)
	}
	if *rec.RecoverMS < *rec.DetectMS {
		t.Fatalf("recover_ms %v < detect_ms %v", *rec.RecoverMS, *rec.DetectMS)
	}
	promoted := h.eventsOf(EventPromote)
	if len(promoted) == 0 || promoted[0].Agent != spare.ID {
		t.Fatalf("promote events %+v, want the spare %s", promoted, spare.ID)
	}
	h.ready() // a new spare is started in the background
	if got := len(h.agentsIn("echo", AgentActive)); got != 2 {
		t.Fatalf("%d active after recovery", got)
	}
	h.mustCall("echo", "", `{"text":"after"}`)
}

func TestViolationKillsAgentAndRetriesWithFeedback(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "reask", func(p *config.Pool) { p.OnViolation = config.OnViolationReask })))
	h.ready()
	res, err := h.call("reask", "", `{"op":"bad-unless-feedback","text":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || len(res.Violations) != 1 || res.Violations[0].Code != contract.CodeSchema {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(string(res.Output), `"feedback_seen":true`) {
		t.Fatalf("retry did not carry feedback: %s", res.Output)
	}
	vs := h.eventsOf(EventViolation)
	if len(vs) != 1 || vs[0].Agent == res.Agent {
		t.Fatalf("violation events %+v (result agent %s)", vs, res.Agent)
	}
	h.waitFor("violating agent gone", func() bool {
		for _, a := range h.agentsIn("reask", AgentActive) {
			if a.ID == vs[0].Agent {
				return false
			}
		}
		return true
	})
}

func TestRetriesExhaustedReportsLastViolation(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "bad", func(p *config.Pool) { p.Retries = 2 })))
	h.ready()
	_, err := h.call("bad", "", `{"op":"bad"}`)
	if !errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("got %v, want ErrRetriesExhausted", err)
	}
	var v *contract.Violation
	if !errors.As(err, &v) || v.Code != contract.CodeSchema {
		t.Fatalf("error %v does not carry the schema violation", err)
	}
	if n := len(h.eventsOf(EventViolation)); n != 3 {
		t.Fatalf("%d violation events, want 3 (one per attempt)", n)
	}
}

func TestMisbehavingAgentsAreClassified(t *testing.T) {
	// A generous deadline for the ops that fail by themselves, so that a
	// loaded machine cannot turn a crash into a deadline; a short one for
	// the agent that never answers.
	h := newHarness(t, cfgOf(
		testPool(t, "m", func(p *config.Pool) { p.Retries = 0; p.Contract.Deadline = 10 * time.Second }),
		testPool(t, "slow", func(p *config.Pool) { p.Retries = 0; p.Contract.Deadline = 300 * time.Millisecond }),
	))
	h.ready()
	for _, tc := range []struct {
		pool, op string
		code     contract.Code
	}{
		{"m", "crash", contract.CodeExit},
		{"m", "garbage", contract.CodeInvalidJSON},
		{"m", "bad", contract.CodeSchema},
		{"slow", "hang", contract.CodeDeadline},
	} {
		_, err := h.call(tc.pool, "", `{"op":"`+tc.op+`"}`)
		var v *contract.Violation
		if !errors.As(err, &v) || v.Code != tc.code {
			t.Errorf("op %s: got %v, want a %s violation", tc.op, err, tc.code)
		}
	}
	h.ready()
	h.mustCall("m", "", `{"text":"still serving"}`)
}

func TestSessionContextRollsBackOnViolation(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "s")))
	h.ready()
	for i := range 3 {
		out := h.mustCall("s", "conv-1", `{"text":"turn"}`)
		if got := out["context_len"].(float64); int(got) != i {
			t.Fatalf("turn %d saw context_len %v", i, got)
		}
	}
	// A violating turn: the first attempt's bad output must not enter the
	// context, and the retry sees the same three entries.
	res, err := h.call("s", "conv-1", `{"op":"bad-unless-feedback","text":"x"}`)
	if err == nil {
		t.Fatalf("expected failure without reask, got %s", res.Output)
	}
	exs, err := h.store.Context(context.Background(), "s", "conv-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 3 {
		t.Fatalf("context has %d entries after a failed turn, want 3", len(exs))
	}
	out := h.mustCall("s", "conv-1", `{"text":"next"}`)
	if got := out["context_len"].(float64); got != 3 {
		t.Fatalf("next turn saw context_len %v, want 3", got)
	}
}

func TestSessionSticksToItsAgentAndMovesWhenItDies(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "s")))
	h.ready()
	first := h.mustCall("s", "conv-2", `{"text":"a"}`)["pid"]
	for range 5 {
		if pid := h.mustCall("s", "conv-2", `{"text":"a"}`)["pid"]; pid != first {
			t.Fatalf("session moved from pid %v to %v while its agent lived", first, pid)
		}
	}
	syscall.Kill(int(first.(float64)), syscall.SIGKILL)
	out := h.mustCall("s", "conv-2", `{"text":"b"}`)
	if out["pid"] == first {
		t.Fatal("session still on the dead agent")
	}
	if out["context_len"].(float64) != 6 {
		t.Fatalf("context did not move with the session: %v", out["context_len"])
	}
}

func TestCrashLoopingPoolFailsWithoutHurtingOthers(t *testing.T) {
	bad := testPool(t, "loop", func(p *config.Pool) {
		p.Env["TEST_EXIT_AT_START"] = "1"
		p.Intensity = config.Intensity{MaxRestarts: 3, Period: time.Minute}
	})
	h := newHarness(t, cfgOf(testPool(t, "good"), bad))
	h.waitFor("pool failed", func() bool {
		p, _ := h.sup.Pool("loop")
		return p.Status().State == PoolFailed
	})
	p, _ := h.sup.Pool("loop")
	st := p.Status()
	if !strings.Contains(st.Reason, "restart intensity exceeded") {
		t.Fatalf("reason %q", st.Reason)
	}
	// It stopped trying: no more spawns than the intensity allows (the
	// first wave of 3 plus the restarts) and none after failing.
	spawns := len(h.eventsOf(EventSpawn))
	time.Sleep(100 * time.Millisecond)
	if again := len(h.eventsOf(EventSpawn)); again != spawns {
		t.Fatalf("still spawning after failing: %d -> %d", spawns, again)
	}
	if _, err := h.call("loop", "", `{}`); !errors.Is(err, ErrPoolFailed) {
		t.Fatalf("call on failed pool: %v", err)
	}
	h.ready2("good")
	h.mustCall("good", "", `{"text":"fine"}`)
}

// ready2 waits for one pool only.
func (h *harness) ready2(pool string) {
	h.t.Helper()
	h.waitFor(pool+" ready", func() bool {
		p, _ := h.sup.Pool(pool)
		st := p.Status()
		return st.Active == st.Replicas && st.Spares == st.SparesWanted
	})
}

func TestGroupStrategies(t *testing.T) {
	for _, tc := range []struct {
		strategy      config.Strategy
		restartsFirst bool // does a failure of "b" restart "a"?
		restartsLast  bool // ... and "c"?
	}{
		{config.StrategyOneForOne, false, false},
		{config.StrategyOneForAll, true, true},
		{config.StrategyRestForOne, false, true},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			// A crash on a first call is a start failure only within
			// min_uptime: long, so that a slow (-race, loaded) host's
			// agents still count as just started.
			one := func(p *config.Pool) { p.Replicas, p.Spares, p.Retries, p.MinUptime = 1, 0, 0, time.Hour }
			b := testPool(t, "b", one, func(p *config.Pool) { p.Intensity = config.Intensity{MaxRestarts: 1, Period: time.Minute} })
			cfg := cfgOf(testPool(t, "a", one), b, testPool(t, "c", one))
			cfg.Groups = []config.Group{{Name: "g", Strategy: tc.strategy, Intensity: config.Intensity{MaxRestarts: 5, Period: time.Minute}, Children: []string{"a", "b", "c"}}}
			h := newHarness(t, cfg)
			h.ready()
			before := map[string]string{}
			for _, p := range []string{"a", "c"} {
				before[p] = h.agentsIn(p, AgentActive)[0].ID
			}
			// Two crashes exceed b's intensity of 1: b gives up and the group acts.
			for range 2 {
				h.call("b", "", `{"op":"crash"}`)
				h.ready2("b")
			}
			h.waitFor("group restart", func() bool { return len(h.eventsOf(EventRestart)) > 0 })
			h.ready()
			for p, want := range map[string]bool{"a": tc.restartsFirst, "c": tc.restartsLast} {
				got := h.agentsIn(p, AgentActive)[0].ID != before[p]
				if got != want {
					t.Errorf("%s: pool %s restarted=%v, want %v", tc.strategy, p, got, want)
				}
			}
			for _, p := range []string{"a", "b", "c"} {
				h.mustCall(p, "", `{"text":"ok"}`)
			}
		})
	}
}

func TestGroupEscalatesPastItsIntensity(t *testing.T) {
	one := func(p *config.Pool) {
		p.Replicas, p.Spares, p.Retries, p.MinUptime = 1, 0, 0, time.Hour // see TestGroupStrategies
		p.Intensity = config.Intensity{MaxRestarts: 0, Period: time.Minute}
	}
	cfg := cfgOf(testPool(t, "a", one), testPool(t, "b", one))
	cfg.Groups = []config.Group{{Name: "g", Strategy: config.StrategyOneForAll, Intensity: config.Intensity{MaxRestarts: 1, Period: time.Minute}, Children: []string{"a", "b"}}}
	h := newHarness(t, cfg)
	h.ready()
	h.call("a", "", `{"op":"crash"}`) // group restart 1
	h.ready()
	h.call("a", "", `{"op":"crash"}`) // group intensity exceeded: everything fails
	h.waitFor("both pools failed", func() bool {
		pa, _ := h.sup.Pool("a")
		pb, _ := h.sup.Pool("b")
		return pa.Status().State == PoolFailed && pb.Status().State == PoolFailed
	})
	if err := h.sup.RestartPool(context.Background(), "b", false); err != nil {
		t.Fatal(err)
	}
	h.ready2("b")
	h.mustCall("b", "", `{"text":"back"}`)
}

func TestStopLeavesNoProcess(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "echo")))
	h.ready()
	var pids []int
	for _, a := range append(h.agentsIn("echo", AgentActive), h.agentsIn("echo", AgentSpare)...) {
		pids = append(pids, a.PID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.sup.Stop(ctx)
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("agent pid %d alive after Stop", pid)
		}
	}
	if as, _ := h.sup.Agents(""); len(as) != 0 {
		t.Fatalf("agents after stop: %+v", as)
	}
}

func TestDrainAndScale(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "d")))
	h.ready()
	victim := h.agentsIn("d", AgentActive)[0]
	if err := h.sup.Drain(victim.ID, "test"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("drained agent exits", func() bool { return !alive(victim.PID) })
	h.ready()
	if err := h.sup.Scale("d", 4, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	h.ready()
	if n := len(h.agentsIn("d", AgentActive)); n != 4 {
		t.Fatalf("%d active after scale 4", n)
	}
	if err := h.sup.Scale("d", 1, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("scaled down", func() bool { return len(h.agentsIn("d", AgentActive)) == 1 })
	h.mustCall("d", "", `{"text":"ok"}`)
}

// The kernel may report the death of an agent that is being stopped on
// purpose (a drain) before the stop returns: that is no failure, and it
// must not be reported as one nor replaced twice.
func TestDeathDuringDrainIsNoFailure(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "d", func(p *config.Pool) {
		p.Env["TEST_IGNORE_TERM"] = "1"
		p.ShutdownTimeout = 2 * time.Second
	})))
	h.ready()
	victim := h.agentsIn("d", AgentActive)[0]
	if err := h.sup.Drain(victim.ID, "test"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the stop to start", func() bool { return len(h.eventsOf(EventDrain)) > 0 })
	// What the kernel's exit event would do, while SIGTERM is ignored (the
	// stop, which began right after the drain event, waits 2 s for it).
	time.Sleep(300 * time.Millisecond)
	if err := h.sup.Kill(victim.ID, EventExit, "exited (kernel event)", time.Now()); err != nil && !errors.Is(err, ErrUnknownAgent) {
		t.Fatal(err)
	}
	h.waitFor("drained agent exits", func() bool { return !alive(victim.PID) })
	h.ready()
	for _, ev := range h.eventsOf(EventExit) {
		if ev.Agent == victim.ID {
			t.Fatalf("the drained agent's death was reported as a failure: %+v", ev)
		}
	}
	if n := len(h.agentsIn("d", AgentActive)); n != 2 {
		t.Fatalf("%d active agents after the drain, want 2", n)
	}
}

func TestReloadStartsStopsAndRolls(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "keep"), testPool(t, "gone")))
	h.ready()
	old := h.agentsIn("keep", AgentActive)
	changed := testPool(t, "keep", func(p *config.Pool) { p.Env["VERSION"] = "2" })
	if err := h.sup.Apply(context.Background(), cfgOf(changed, testPool(t, "new"))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sup.Pool("gone"); !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("removed pool still there: %v", err)
	}
	h.waitFor("rolled", func() bool {
		for _, a := range h.agentsIn("keep", AgentActive) {
			for _, o := range old {
				if a.ID == o.ID {
					return false
				}
			}
		}
		return true
	})
	h.ready()
	h.mustCall("new", "", `{"text":"hi"}`)
	h.mustCall("keep", "", `{"text":"hi"}`)
}

func TestBackoffAndIntensity(t *testing.T) {
	b := newBackoff(10*time.Millisecond, 80*time.Millisecond, time.Second, func() float64 { return 0.5 })
	var got []time.Duration
	t0 := time.Unix(0, 0)
	for i := range 6 {
		got = append(got, b.failure(t0.Add(time.Duration(i)*100*time.Millisecond)))
	}
	want := []time.Duration{0, 10, 20, 40, 80, 80}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	if d := b.failure(t0.Add(2 * time.Second)); d != 0 {
		t.Fatalf("after reset_after without a start failure the restart is immediate, got %v", d)
	}
	b.failure(t0.Add(2100 * time.Millisecond))
	b.reset() // an agent served its first valid call
	if d := b.failure(t0.Add(2200 * time.Millisecond)); d != 0 {
		t.Fatalf("after an agent proved its start the restart is immediate, got %v", d)
	}
	in := newIntensity(2, time.Second)
	if in.restart(t0) || in.restart(t0.Add(100*time.Millisecond)) {
		t.Fatal("exceeded too early")
	}
	if !in.restart(t0.Add(200 * time.Millisecond)) {
		t.Fatal("third restart within the period must exceed max 2")
	}
	if in.restart(t0.Add(5 * time.Second)) {
		t.Fatal("restarts outside the period must not count")
	}
}
