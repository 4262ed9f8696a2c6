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
			for range n {
				victim := h.agentsIn("zy", AgentActive)[0]
				t0 := time.Now()
				syscall.Kill(victim.PID, syscall.SIGKILL)
				for {
					res, err := h.sup.Call(ctx, "zy", CallRequest{Input: json.RawMessage(`"x"`)})
					if err == nil && res.Agent != victim.ID {
						break
					}
				}
				ds = append(ds, time.Since(t0))
			}
			p50, p99, _ := quantiles(ds)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		})
	}
}
