package supervisor

import (
	"context"
	"encoding/json"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// BenchmarkZygoteColdReplacement prints, in one run, a Python agent's cold
// replacement (no spare: from its SIGKILL to a call served by an agent
// started after the kill), p50 and p99 over n kills, started by a fresh
// interpreter (start: exec, the baseline) and forked by a zygote (start:
// zygote), and the p50 of each step of a cold one.
//
//	go test -run '^$' -bench BenchmarkZygoteColdReplacement -benchtime 100x ./internal/supervisor/
//
// Kills back to back would make the surge (surge.go) keep spares even with
// spares 0, and a spare's promotion is no cold start: before each kill the
// benchmark resets the pool's replacement count and waits until it holds
// no spare and starts nothing. An agent that served after the kill but was
// started before it is still counted apart (started-before-kill).
func BenchmarkZygoteColdReplacement(b *testing.B) {
	// The zygote's steps, by agent: the fork request written, its answer
	// read (the zygote forked).
	var mu sync.Mutex
	steps := map[string]map[string]time.Time{}
	hook := func(agent, step string) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if steps[agent] == nil {
			steps[agent] = map[string]time.Time{}
		}
		steps[agent][step] = now
	}
	zygoteStepHook.Store(&hook)
	defer zygoteStepHook.Store(nil)
	stepOf := func(agent, step string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		return steps[agent][step]
	}
	for _, mode := range []config.StartMode{config.StartExec, config.StartZygote} {
		b.Run(string(mode), func(b *testing.B) {
			n := max(b.N, 30) // the sub-benchmark's -benchtime Nx
			pc := zygotePool(b)
			pc.Start = mode
			pc.Replicas, pc.Spares = 1, 0
			pc.Intensity = config.Intensity{MaxRestarts: 1 << 30, Period: time.Second}
			h := newHarness(b, cfgOf(pc))
			h.ready()
			pool, err := h.sup.Pool("zy")
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			// Where a cold one's time goes, from the supervisor's events
			// and the zygote's steps: the death seen (exit event), the
			// replacement's spawn event, the fork request written (the
			// initialize already in the child's stdin), the fork's answer
			// read, the handshake's answer read and the child found in its
			// cgroup (ready event), the call served.
			names := []string{"kill-to-exit", "exit-to-spawn", "spawn-to-zygote", "spawn-to-request", "request-to-forked", "forked-to-ready", "spawn-to-ready", "ready-to-served"}
			seg := map[string][]time.Duration{}
			var cold, coldTwo []time.Duration
			early := 0
			defer zygoteTwoHandoffs.Store(false)
			for i := range n {
				// The zygote's starts alternate between one hand-off (the
				// default) and two (the child placed by the daemon, then
				// initialize: the baseline), so the host's load moves both
				// alike; the steps are the one hand-off's.
				two := mode == config.StartZygote && i%2 == 1
				zygoteTwoHandoffs.Store(two)
				holdOffSurge(b, h, pool)
				victim := h.agentsIn("zy", AgentActive)[0]
				t0 := time.Now()
				syscall.Kill(victim.PID, syscall.SIGKILL)
				var served string
				for {
					res, err := h.sup.Call(ctx, "zy", CallRequest{Input: json.RawMessage(`"x"`)})
					if err == nil && res.Agent != victim.ID {
						served = res.Agent
						break
					}
				}
				end := time.Now()
				exit := h.eventOf(EventExit, victim.ID)
				spawn, ready := h.eventOf(EventSpawn, served), h.eventOf(EventReady, served)
				if spawn.Before(t0) || ready.IsZero() {
					early++
					continue
				}
				if two {
					coldTwo = append(coldTwo, end.Sub(t0))
					continue
				}
				cold = append(cold, end.Sub(t0))
				add := func(name string, from, to time.Time) {
					if !from.IsZero() && !to.IsZero() {
						seg[name] = append(seg[name], to.Sub(from))
					}
				}
				add("kill-to-exit", t0, exit)
				add("exit-to-spawn", exit, spawn)
				add("spawn-to-ready", spawn, ready)
				add("ready-to-served", ready, end)
				if mode == config.StartZygote {
					req, forked := stepOf(served, "request"), stepOf(served, "forked")
					add("spawn-to-request", spawn, req)
					add("spawn-to-zygote", spawn, stepOf(served, "zygote"))
					add("request-to-forked", req, forked)
					add("forked-to-ready", forked, ready)
				}
			}
			b.ReportMetric(float64(early), "started-before-kill")
			if len(cold) == 0 {
				b.Log("every replacement was a spare's promotion: no cold start measured")
				return
			}
			p50, p99, _ := quantiles(cold)
			b.ReportMetric(float64(len(cold)), "cold-samples")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			if len(coldTwo) > 0 {
				p50, p99, _ := quantiles(coldTwo)
				b.ReportMetric(float64(p50.Microseconds())/1000, "two-handoffs-p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "two-handoffs-p99-ms")
			}
			for _, name := range names {
				if ds := seg[name]; len(ds) > 0 {
					p50, _, _ := quantiles(ds)
					b.ReportMetric(float64(p50.Microseconds())/1000, name+"-p50-ms")
				}
			}
		})
	}
}

// holdOffSurge forgets the pool's recent replacements (the surge sizes
// spares to their rate) and waits until the pool has its one active agent,
// no spare and no start under way, so that the next kill's replacement is
// a cold start.
func holdOffSurge(b *testing.B, h *harness, p *Pool) {
	p.mu.Lock()
	p.replaced, p.surge = nil, 0
	evs, extra := p.resizeLocked("benchmark: surge held off")
	p.mu.Unlock()
	p.finishResize(evs, extra, "surge held off")
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := p.Status()
		if st.Active == 1 && st.Spares == 0 && st.Starting == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the pool did not settle at 1 active, no spare: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
