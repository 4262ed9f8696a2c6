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
			ds := make([]time.Duration, 0, n)
			// Where the time goes, from the supervisor's events: the
			// kill's detection (its exit event), the wait for a start
			// (its spawn event), the start itself (fork or exec, cgroup
			// placement, handshake: its ready event), and the call.
			var detect, toSpawn, start, call []time.Duration
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
				ds = append(ds, end.Sub(t0))
				exit, spawn, ready := h.eventOf(EventExit, victim.ID), h.eventOf(EventSpawn, served), h.eventOf(EventReady, served)
				if !exit.IsZero() && !spawn.IsZero() && !ready.IsZero() {
					detect = append(detect, exit.Sub(t0))
					toSpawn = append(toSpawn, spawn.Sub(exit))
					start = append(start, ready.Sub(spawn))
					call = append(call, end.Sub(ready))
				}
			}
			p50, p99, _ := quantiles(ds)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			for _, seg := range []struct {
				name string
				ds   []time.Duration
			}{{"detect", detect}, {"to-spawn", toSpawn}, {"start", start}, {"call", call}} {
				if len(seg.ds) > 0 {
					p50, _, _ := quantiles(seg.ds)
					b.ReportMetric(float64(p50.Microseconds())/1000, seg.name+"-p50-ms")
				}
			}
		})
	}
}
