package supervisor

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
)

func TestInjectedHallucinationIsCaughtAndRetried(t *testing.T) {
	for _, kind := range []string{"schema", "invalid_json", "oversize"} {
		t.Run(kind, func(t *testing.T) {
			h := newHarness(t, cfgOf(testPool(t, "h", func(p *config.Pool) { p.Replicas = 1 })))
			h.ready()
			victim := h.agentsIn("h", AgentActive)[0]
			if err := h.sup.InjectFault(victim.ID, Fault{Hallucinate: 1, HallucinateKind: kind, Seed: 1}); err != nil {
				t.Fatal(err)
			}
			res, err := h.call("h", "", `{"text":"x"}`)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]contract.Code{"schema": contract.CodeSchema, "invalid_json": contract.CodeInvalidJSON, "oversize": contract.CodeTooLarge}[kind]
			if res.Attempts != 2 || res.Violations[0].Code != want || res.Agent == victim.ID {
				t.Fatalf("result %+v, want a %s violation then success elsewhere", res, want)
			}
		})
	}
}

func TestStallIsDetectedAsHangBeforeTheDeadline(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "st", func(p *config.Pool) { p.Contract.Deadline = 30 * time.Second })))
	h.ready()
	for range stallWarmup + 5 {
		h.mustCall("st", "", `{"text":"warm"}`)
	}
	res, err := h.call("st", "", `{"op":"hang"}`)
	if err == nil {
		t.Fatalf("a hanging call succeeded: %+v", res)
	}
	hangs := h.eventsOf(EventHang)
	if len(hangs) == 0 || !strings.Contains(hangs[0].Reason, "treated as hung") {
		t.Fatalf("no hang event; events: %+v", h.eventsOf(EventDeadline))
	}
	if len(h.eventsOf(EventDeadline)) != 0 {
		t.Fatal("the 30s deadline fired: the stall was not noticed first")
	}
}

// A fresh agent's first call is slow (cold code, lazy imports) without
// being hung: the pool's warm latency does not judge it, and it is not
// killed as a failed start (the soak's breaker opened on exactly that on a
// loaded host).
func TestColdAgentsFirstSlowCallIsNotAHang(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "cold", func(p *config.Pool) {
		p.Replicas, p.Spares, p.Contract.Deadline = 1, 0, 30*time.Second
	})))
	h.ready()
	for range stallWarmup + 5 {
		h.mustCall("cold", "", `{"text":"warm"}`)
	}
	if d := h.sup.pools["cold"].lat.stallTimeout(0, 30*time.Second); d >= 300*time.Millisecond {
		t.Skipf("the warm pool's stall timeout is %v: a 300 ms call is no test of it", d)
	}
	old := h.agentsIn("cold", AgentActive)[0]
	if err := h.sup.RestartAgent(old.ID); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a fresh agent", func() bool {
		as := h.agentsIn("cold", AgentActive)
		return len(as) == 1 && as[0].ID != old.ID
	})
	res, err := h.call("cold", "", `{"op":"slow","text":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || len(h.eventsOf(EventHang)) != 0 {
		t.Fatalf("result %+v, hangs %+v: the fresh agent's slow first call was judged hung", res, h.eventsOf(EventHang))
	}
}

func TestInjectedLatencyIsReplacedAsSlow(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "lat", func(p *config.Pool) { p.Replicas = 1; p.Contract.Deadline = 30 * time.Second })))
	h.ready()
	for range stallWarmup + 5 {
		h.mustCall("lat", "", `{"text":"warm"}`)
	}
	slow := h.agentsIn("lat", AgentActive)[0]
	h.sup.InjectFault(slow.ID, Fault{Latency: 5 * time.Second})
	res, err := h.call("lat", "", `{"text":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Agent == slow.ID || res.Attempts != 2 {
		t.Fatalf("result %+v: the slow agent was not replaced", res)
	}
}

func TestCorruptTokensFlipsOnlyJWTSignatures(t *testing.T) {
	in := &injected{Fault: Fault{CorruptTokens: true}}
	in.rng = newTestRand()
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
	src := []byte(`{"token":"` + jwt + `","other":"eyJ not a token"}`)
	out := in.corruptTokens(src)
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("corrupted JSON: %v", err)
	}
	if m["token"] == jwt || len(m["token"]) != len(jwt) {
		t.Fatalf("token not corrupted in place: %s", m["token"])
	}
	if !strings.HasPrefix(m["token"], jwt[:strings.LastIndexByte(jwt, '.')]) {
		t.Fatalf("header or payload changed: %s", m["token"])
	}
	if m["other"] != "eyJ not a token" {
		t.Fatalf("non-token changed: %s", m["other"])
	}
}

func TestOOMInAgentCgroupReplacesAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for cgroup memory limits")
	}
	h := newHarness(t, cfgOf(testPool(t, "oom", func(p *config.Pool) { p.Limits.Memory = 64 << 20; p.Replicas = 1 })))
	if h.cg == nil || h.sup.opts.Sandboxes == nil {
		t.Skip("no cgroups here")
	}
	h.ready()
	victim := h.agentsIn("oom", AgentActive)[0]
	h.mustCall("oom", "", `{"op":"oom-child"}`)
	h.waitFor("oom event", func() bool { return len(h.eventsOf(EventOOM)) > 0 })
	if ev := h.eventsOf(EventOOM)[0]; ev.Agent != victim.ID {
		t.Fatalf("oom event for %s, want %s", ev.Agent, victim.ID)
	}
	h.waitFor("recovered", func() bool { return len(h.eventsOf(EventRecovered)) > 0 })
	h.mustCall("oom", "", `{"text":"after"}`)
}

func TestInjectFaultRejectsBadInput(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "x", func(p *config.Pool) { p.Replicas, p.Spares = 1, 0 })))
	h.ready()
	id := h.agentsIn("x", AgentActive)[0].ID
	if err := h.sup.InjectFault(id, Fault{Hallucinate: 2}); err == nil {
		t.Fatal("rate 2 accepted")
	}
	if err := h.sup.InjectFault("x-999", Fault{}); !errors.Is(err, ErrUnknownAgent) {
		t.Fatalf("unknown agent: %v", err)
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestHedgingRoutesAroundASlowAgent(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "hd", func(p *config.Pool) {
		p.Replicas, p.Spares = 2, 0
		p.Hedge = 50 * time.Millisecond
		p.StallTimeout = 20 * time.Second // hedging alone, no hang detection
		p.Contract.Deadline = 30 * time.Second
	})))
	h.ready()
	slow := h.agentsIn("hd", AgentActive)[0]
	h.sup.InjectFault(slow.ID, Fault{Latency: 3 * time.Second})
	for range 4 {
		res, err := h.call("hd", "", `{"text":"x"}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Agent == slow.ID || res.Attempts != 1 {
			t.Fatalf("result %+v: the hedge did not answer from the fast agent", res)
		}
	}
	if n := len(h.eventsOf(EventViolation)) + len(h.eventsOf(EventHang)); n != 0 {
		t.Fatalf("hedging caused %d failures", n)
	}
}
