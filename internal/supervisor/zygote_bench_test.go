package supervisor

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// BenchmarkZygoteColdReplacement prints, in one run, a Python agent's cold
// replacement (no spare: from its SIGKILL to a call served by the next
// agent), p50 and p99 over n kills, started by a fresh interpreter (start:
// exec, the baseline) and forked by a zygote (start: zygote).
//
//	go test -run '^$' -bench BenchmarkZygoteColdReplacement -benchtime 100x ./internal/supervisor/
func BenchmarkZygoteColdReplacement(b *testing.B) {
	n := max(b.N, 30)
	for _, mode := range []config.StartMode{config.StartExec, config.StartZygote} {
		b.Run(string(mode), func(b *testing.B) {
			pc := zygotePool(b)
			pc.Start = mode
			pc.Replicas, pc.Spares = 1, 0
			pc.Intensity = config.Intensity{MaxRestarts: 1 << 30, Period: time.Second}
			h := newHarness(b, cfgOf(pc))
			h.ready()
			ctx := context.Background()
			// Cold: the agent that serves was started after the kill. The
			// surge (surge.go) keeps spares at a high replacement rate even
			// with spares 0: an agent started before the kill (a spare, or
			// a start under way) is no cold start, and is counted apart. Where a cold one's time goes,
			// from the supervisor's events: the kill's detection and the
			// wait for a start (to its spawn event), the start itself (fork
			// or exec, cgroup placement, handshake: to its ready event), and
			// the call.
			var cold, toSpawn, start, call []time.Duration
			early := 0
			for range n {
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
				spawn, ready := h.eventOf(EventSpawn, served), h.eventOf(EventReady, served)
				if spawn.Before(t0) || ready.IsZero() {
					early++
					continue
				}
				cold = append(cold, end.Sub(t0))
				toSpawn = append(toSpawn, spawn.Sub(t0))
				start = append(start, ready.Sub(spawn))
				call = append(call, end.Sub(ready))
			}
			b.ReportMetric(float64(early), "started-before-kill")
			if len(cold) == 0 {
				b.Log("every replacement was a spare's promotion: no cold start measured")
				return
			}
			p50, p99, _ := quantiles(cold)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			for _, seg := range []struct {
				name string
				ds   []time.Duration
			}{{"to-spawn", toSpawn}, {"start", start}, {"call", call}} {
				p50, _, _ := quantiles(seg.ds)
				b.ReportMetric(float64(p50.Microseconds())/1000, seg.name+"-p50-ms")
			}
		})
	}
}
