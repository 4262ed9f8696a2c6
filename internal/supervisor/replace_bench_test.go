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
// The pool runs in cgroups as root on a cgroup host; without root it
// runs in process groups, and says so.
//
//	go test -run '^$' -bench BenchmarkReplacementCPU -benchtime 200x ./internal/supervisor/
func BenchmarkReplacementCPU(b *testing.B) {
	bin := testagent.Flaky(b)
	defer testagent.Cleanup()
	n := max(b.N, 50)
	good := json.RawMessage(`{"input":"x","context":[]}`)
	var bare float64

	b.Run("bare-start+handshake", func(b *testing.B) {
		s0, c0 := cpuNow(b)
		for range n {
			a, err := agent.Start(agent.Config{ID: "bare", Pool: "bench", Command: []string{bin, "-seed", "1"}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := a.Initialize(ctx); err != nil {
				b.Fatal(err)
			}
			for range 2 {
				if _, err := a.Call(ctx, good); err != nil {
					b.Fatal(err)
				}
			}
			cancel()
			a.SignalGroup(syscall.SIGKILL)
			<-a.Done()
			a.Close()
		}
		s1, c1 := cpuNow(b)
		bare = msOf(s1-s0+c1-c0) / float64(n)
		b.ReportMetric(bare, "cpu-ms/start")
		b.ReportMetric(msOf(s1-s0)/float64(n), "self-cpu-ms/start")
		b.ReportMetric(msOf(c1-c0)/float64(n), "agent-cpu-ms/start")
	})

	for _, cgroups := range []bool{true, false} {
		name := "replacement"
		if !cgroups {
			name += "-without-cgroups"
		}
		b.Run(name, func(b *testing.B) { benchReplacement(b, bin, n, bare, cgroups) })
	}
}

// benchReplacement makes an active agent violate n times, each time
// waiting for its replacement, and reports the CPU time per replacement.
func benchReplacement(b *testing.B, bin string, n int, bare float64, cgroups bool) {
	{
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
		s0, c0 := cpuNow(b)
		for range n {
			victim := h.agentsIn("bench", AgentActive)[0]
			if err := h.sup.InjectFault(victim.ID, Fault{Hallucinate: 1, HallucinateKind: "schema"}); err != nil {
				b.Fatal(err)
			}
			if _, err := h.sup.Call(ctx, "bench", CallRequest{Input: json.RawMessage(`"x"`)}); err == nil {
				b.Fatal("the injected violation was not seen")
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := h.sup.WaitReady(wctx); err != nil {
				b.Fatal(err)
			}
			cancel()
			if _, err := h.sup.Call(ctx, "bench", CallRequest{Input: json.RawMessage(`"x"`)}); err != nil {
				b.Fatal(err)
			}
		}
		// Every victim reaped and its cgroup gone, so that its CPU is
		// counted: one kill event each, emitted before the teardown.
		deadline := time.Now().Add(20 * time.Second)
		for len(h.eventsOf(EventKill)) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		s1, c1 := cpuNow(b)
		per := msOf(s1-s0+c1-c0) / float64(n)
		b.ReportMetric(per, "cpu-ms/replacement")
		b.ReportMetric(msOf(s1-s0)/float64(n), "self-cpu-ms/replacement")
		b.ReportMetric(msOf(c1-c0)/float64(n), "agent-cpu-ms/replacement")
		if bare > 0 {
			b.ReportMetric(per/bare, "x-bare")
		}
	}
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
