package supervisor

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/testagent"
)

// cpuNow is the CPU time (user + system) of this process and of its
// reaped children: the daemon's side and the agents' side of a start.
func cpuNow(tb testing.TB) (self, children time.Duration) {
	var ru syscall.Rusage
	get := func(who int) time.Duration {
		if err := syscall.Getrusage(who, &ru); err != nil {
			tb.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return get(syscall.RUSAGE_SELF), get(syscall.RUSAGE_CHILDREN)
}

// BenchmarkReplacementCPU prints, in one run, the CPU time one replacement
// of a violating agent costs (the daemon's and the agent's, per
// replacement) beside the baseline: a bare fork/exec of the same agent
// binary, its handshake, two calls and its kill and reap, with no daemon.
// The two are measured by turns, ten rounds of n/10 each, so that a
// shared host's load moves both alike. The pool runs in cgroups as root
// on a cgroup host; without root it runs in process groups, and says so.
//
//	go test -run '^$' -bench BenchmarkReplacementCPU -benchtime 200x ./internal/supervisor/
func BenchmarkReplacementCPU(b *testing.B) {
	bin := testagent.Flaky(b)
	defer testagent.Cleanup()
	n := max(b.N, 50)
	for _, cgroups := range []bool{true, false} {
		name := "replacement"
		if !cgroups {
			name += "-without-cgroups"
		}
		b.Run(name, func(b *testing.B) { benchReplacement(b, bin, n, cgroups) })
	}
}

// cpuSpent is CPU time summed over turns: this process's (the daemon's
// side) and its reaped children's (the agents').
type cpuSpent struct{ self, children time.Duration }

// measure adds the CPU that f spends.
func (c *cpuSpent) measure(tb testing.TB, f func()) {
	s0, c0 := cpuNow(tb)
	f()
	s1, c1 := cpuNow(tb)
	c.self += s1 - s0
	c.children += c1 - c0
}

// bareStart is the baseline: the agent started without a daemon, its
// handshake, two calls, its kill and reap.
func bareStart(b *testing.B, bin string) {
	good := json.RawMessage(`{"input":"x","context":[]}`)
	a, err := agent.Start(agent.Config{ID: "bare", Pool: "bench", Command: []string{bin, "-seed", "1"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Initialize(ctx); err != nil {
		b.Fatal(err)
	}
	for range 2 {
		if _, err := a.Call(ctx, good); err != nil {
			b.Fatal(err)
		}
	}
	a.SignalGroup(syscall.SIGKILL)
	<-a.Done()
	a.Close()
}

// benchReplacement makes an active agent violate n times, each time
// waiting for its replacement, by turns with n bare starts, and reports
// the CPU time per replacement beside the bare start's.
func benchReplacement(b *testing.B, bin string, n int, cgroups bool) {
	pc := config.DefaultPool()
	pc.Name = "bench"
	pc.Command = []string{bin, "-seed", "1"}
	pc.Replicas, pc.Spares = 1, 1
	pc.Retries = 0
	pc.Contract.Schema = answerSchema
	pc.PingInterval = 0
	pc.Breaker.MinCalls = 1 << 30
	h := newHarnessIn(b, cfgOf(pc), cgroups)
	if cgroups && (h.cg == nil || h.cg.Mode() == cgroup.ModeNone) {
		b.Log("no cgroups (not root, or no cgroup host): agents in process groups")
	}
	h.ready()
	ctx := context.Background()
	events, unsubscribe := h.sup.Subscribe(64)
	defer unsubscribe()
	spawns0 := len(h.eventsOf(EventSpawn))
	const rounds = 10
	per := max(n/rounds, 1)
	var bare, repl cpuSpent
	replaced := 0
	for range rounds {
		bare.measure(b, func() {
			for range per {
				bareStart(b, bin)
			}
		})
		repl.measure(b, func() {
			for range per {
				victim := h.agentsIn("bench", AgentActive)[0]
				if err := h.sup.InjectFault(victim.ID, Fault{Hallucinate: 1, HallucinateKind: "schema"}); err != nil {
					b.Fatal(err)
				}
				if _, err := h.sup.Call(ctx, "bench", CallRequest{Input: json.RawMessage(`"x"`)}); err == nil {
					b.Fatal("the injected violation was not seen")
				}
				waitStrength(b, h.sup, events)
				if _, err := h.sup.Call(ctx, "bench", CallRequest{Input: json.RawMessage(`"x"`)}); err != nil {
					b.Fatal(err)
				}
			}
			replaced += per
			// Every victim reaped and its cgroup gone, so that its CPU
			// is counted in this turn: one kill event each, emitted
			// before the teardown.
			deadline := time.Now().Add(20 * time.Second)
			for len(h.eventsOf(EventKill)) < replaced && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
		})
	}
	total := float64(rounds * per)
	bareMs := msOf(bare.self+bare.children) / total
	replMs := msOf(repl.self+repl.children) / total
	b.ReportMetric(bareMs, "bare-cpu-ms/start")
	b.ReportMetric(msOf(bare.self)/total, "bare-self-cpu-ms/start")
	b.ReportMetric(msOf(bare.children)/total, "bare-agent-cpu-ms/start")
	b.ReportMetric(replMs, "cpu-ms/replacement")
	b.ReportMetric(msOf(repl.self)/total, "self-cpu-ms/replacement")
	b.ReportMetric(msOf(repl.children)/total, "agent-cpu-ms/replacement")
	b.ReportMetric(float64(len(h.eventsOf(EventSpawn))-spawns0)/total, "starts/replacement")
	b.ReportMetric(replMs/bareMs, "x-bare")
}

// waitStrength waits until every pool is back at strength, woken by the
// supervisor's events rather than polling its status (WaitReady polls
// every 5 ms, and that polling, in this process, would count as the
// daemon's CPU).
func waitStrength(b *testing.B, sup *Supervisor, events <-chan Event) {
	timeout := time.After(10 * time.Second)
	for {
		ready := true
		for _, st := range sup.Status() {
			if st.Active < st.Replicas || st.Spares < st.SparesWanted {
				ready = false
			}
		}
		if ready {
			return
		}
		select {
		case <-events:
		case <-timeout:
			b.Fatalf("not back at strength after 10s: %+v", sup.Status())
		}
	}
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
