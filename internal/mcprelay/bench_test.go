package mcprelay

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkRelay is what the relay adds to a tool call: the go-sdk's client
// calls the go-sdk's Streamable HTTP server directly (the baseline), then
// through the relay over stdio pipes, one call at a time, in one run:
// direct and relayed for their allocations, and byturns, a direct call
// then a relayed one, for latencies that a busy machine moves alike
// (medians, and the median of the paired differences).
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 5000x ./internal/mcprelay
func BenchmarkRelay(b *testing.B) {
	s := startServer(b)
	run := func(b *testing.B, cs *sdk.ClientSession) {
		ctx := context.Background()
		p := &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": "hi"}}
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if res, err := cs.CallTool(ctx, p); err != nil || res.IsError {
				b.Fatalf("call: %+v %v", res, err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	}
	direct := func(b *testing.B) *sdk.ClientSession {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{Endpoint: s.URL}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cs.Close() })
		return cs
	}
	relayed := func(b *testing.B) *sdk.ClientSession {
		cs := connect(b, startRelay(b, http.DefaultClient, s.URL, 0), nil)
		b.Cleanup(func() { cs.Close() })
		return cs
	}
	b.Run("direct", func(b *testing.B) { run(b, direct(b)) })
	b.Run("relayed", func(b *testing.B) { run(b, relayed(b)) })
	b.Run("byturns", func(b *testing.B) {
		d, r := direct(b), relayed(b)
		ctx := context.Background()
		p := &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": "hi"}}
		call := func(cs *sdk.ClientSession) time.Duration {
			start := time.Now()
			if res, err := cs.CallTool(ctx, p); err != nil || res.IsError {
				b.Fatalf("call: %+v %v", res, err)
			}
			return time.Since(start)
		}
		var ds, rs, diffs []time.Duration
		b.ResetTimer()
		for range b.N {
			dt, rt := call(d), call(r)
			ds, rs, diffs = append(ds, dt), append(rs, rt), append(diffs, rt-dt)
		}
		b.ReportMetric(micros(median(ds)), "direct-µs")
		b.ReportMetric(micros(median(rs)), "relayed-µs")
		b.ReportMetric(micros(median(diffs)), "added-µs")
	})
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
