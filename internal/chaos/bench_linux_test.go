package chaos

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRecovery measures recovery from kill and hang faults, with the
// pool's warm spare (what resilienced does) beside the baseline of a cold
// restart (no spare: the replacement is spawned only after the failure, as
// a plain process supervisor does). One iteration is one fault.
//
//	go test ./internal/chaos -run '^$' -bench Recovery -benchtime 20x
func BenchmarkRecovery(b *testing.B) {
	for _, k := range []Kind{Kill, Hang} {
		b.Run(string(k), func(b *testing.B) {
			measure := func(spares int) *Summary {
				f := newFixture(b, poolOpts{replicas: 2, spares: spares})
				rep, err := f.eng.Run(context.Background(), Spec{
					Faults: []Kind{k}, Target: f.pool, Count: b.N, Seed: 1,
					Load: rate(200), Warmup: Duration(300 * time.Millisecond), Timeout: Duration(10 * time.Second),
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				kr := rep.Faults[0]
				if kr.Recovered != b.N || kr.RecoverMS == nil {
					b.Fatalf("%d of %d recovered: %+v", kr.Recovered, b.N, rep.Injections)
				}
				return kr.RecoverMS
			}
			b.ResetTimer()
			warm := measure(1)
			b.StopTimer()
			cold := measure(0)
			b.ReportMetric(warm.P50, "recover-p50-ms")
			b.ReportMetric(warm.P99, "recover-p99-ms")
			b.ReportMetric(cold.P50, "cold-restart-p50-ms")
			b.ReportMetric(cold.P99, "cold-restart-p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
