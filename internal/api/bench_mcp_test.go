package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/mcp"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// BenchmarkMCPFrontDoor is the MCP front door against the two other ways
// to the same agents, in one run, each row its own pool of the same echo
// agent binary (-callpath.agent) with the same JSON Schema contract:
//
//   - direct: goroutines each driving their own agent over its pipes,
//     with no daemon (as BenchmarkCallPath's direct rows).
//   - socket: api.Client → unix socket → supervisor → agent.
//   - mcp: the Go SDK's client (StreamableClientTransport), one MCP
//     session per caller in the session era (2025-11-25), → loopback TCP
//     → the front door (internal/mcp, the SDK's server) → supervisor →
//     agent: a tools/call per call.
//   - mcp-stateless: the same in the 2026-07-28 revision: no session, the
//     revision's per-request _meta and headers on every call.
//
// paired/c=1 is one caller calling the four ways by turns: the fair
// measure of the latency each way adds to the direct call (WAY-added-p50-µs,
// WAY-added-p99-µs). c=1 is one caller and one agent (added-p50-µs and
// added-p99-µs are the row's p50 and p99 minus direct/c=1's, which a
// busy machine moves between rows); c=C
// (-callpath.c, default 8) is C callers, sessions and agents (the
// throughput). Calls carry no daemon session in any row (the MCP adapter
// drops the client's, as the socket rows send none), so every row does
// the same work behind its way in. The other metrics are
// BenchmarkCallPath's.
//
//	go test -run '^$' -bench BenchmarkMCPFrontDoor -benchtime 5000x ./internal/api/
//	make bench-mcp
func BenchmarkMCPFrontDoor(b *testing.B) {
	bin := benchAgent(b)
	b.Run("paired/c=1", func(b *testing.B) { benchMCPPaired(b, bin) })
	var direct1 stats
	row := func(name string, conc int, run func(b *testing.B) stats) {
		b.Run(fmt.Sprintf("%s/c=%d", name, conc), func(b *testing.B) {
			b.ReportAllocs()
			st := run(b)
			st.report(b)
			if conc == 1 {
				if name == "direct" {
					direct1 = st
				} else if direct1.calls > 0 {
					b.ReportMetric(float64(st.p50-direct1.p50)/1e3, "added-p50-µs")
					b.ReportMetric(float64(st.p99-direct1.p99)/1e3, "added-p99-µs")
				}
			}
		})
	}
	for _, conc := range []int{1, *benchConc} {
		row("direct", conc, func(b *testing.B) stats { return benchDirect(b, bin, conc) })
		row("socket", conc, func(b *testing.B) stats {
			return benchDaemon(b, bin, daemonRow{callers: conc, agents: conc, schema: true, http: true})
		})
		for _, era := range []struct{ name, version string }{{"mcp", "2025-11-25"}, {"mcp-stateless", "2026-07-28"}} {
			row(era.name, conc, func(b *testing.B) stats { return benchMCP(b, bin, conc, era.version) })
		}
	}
}

// benchMCP: conc callers, each with its own Go SDK client in the given
// protocol revision, calling the pool's tool through the front door.
func benchMCP(b *testing.B, bin []string, conc int, version string) stats {
	d, call := startMCP(b, bin, conc, version)
	defer d.unsubscribe()
	st := drive(b, conc, call, d.agentCPU)
	st.extra = map[string]float64{"restarts": float64(d.replaced(b))}
	return st
}

// startMCP starts a pool of conc agents behind the front door, and conc
// Go SDK clients in version; call(i) is a tools/call by the i-th.
func startMCP(b *testing.B, bin []string, conc int, version string) (*benchPool, func(i int) error) {
	d := startDaemon(b, bin, daemonRow{callers: conc, agents: conc, schema: true})
	front := mcp.New(mcp.Options{Pools: benchMCPPools{d.sup}, Version: "bench", Logger: quiet})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go front.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		front.Shutdown(ctx)
	})
	url := "http://" + ln.Addr().String() + "/mcp"
	sessions := make([]*sdk.ClientSession, conc)
	for i := range sessions {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx,
			&sdk.StreamableClientTransport{Endpoint: url}, &sdk.ClientSessionOptions{ProtocolVersion: version})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if cs.InitializeResult().ProtocolVersion != version {
			b.Fatalf("negotiated %s, want %s", cs.InitializeResult().ProtocolVersion, version)
		}
		b.Cleanup(func() { cs.Close() })
		sessions[i] = cs
	}
	var input map[string]any
	json.Unmarshal(benchMCPInput, &input)
	return d, func(i int) error {
		res, err := sessions[i].CallTool(context.Background(), &sdk.CallToolParams{Name: "bench", Arguments: input})
		if err == nil && res.IsError {
			err = fmt.Errorf("tool error: %v", res.Content)
		}
		return err
	}
}

// benchMCPPaired measures the latency each way in adds in turns: one
// caller calls the agent directly, through the socket and through the
// front door (both eras), one after the other in a rotating order, so
// that every way sees the machine as it is at the same moments, which
// separate rows on a busy machine do not.
func benchMCPPaired(b *testing.B, bin []string) {
	direct, _ := startDirect(b, bin, 1)
	sock := startDaemon(b, bin, daemonRow{callers: 1, agents: 1, schema: true, http: true})
	defer sock.unsubscribe()
	mcpPool, viaMCP := startMCP(b, bin, 1, "2025-11-25")
	defer mcpPool.unsubscribe()
	slPool, viaStateless := startMCP(b, bin, 1, "2026-07-28")
	defer slPool.unsubscribe()
	ways := []struct {
		name string
		call func(int) error
	}{{"direct", direct}, {"socket", sock.call}, {"mcp", viaMCP}, {"mcp-stateless", viaStateless}}
	lat := make([][]time.Duration, len(ways))
	for range 100 { // warm-up
		for _, w := range ways {
			if err := w.call(0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for i := range b.N {
		for k := range ways {
			w := (i + k) % len(ways)
			t0 := time.Now()
			if err := ways[w].call(0); err != nil {
				b.Fatal(err)
			}
			lat[w] = append(lat[w], time.Since(t0))
		}
	}
	b.StopTimer()
	q := func(s []time.Duration, f float64) float64 {
		slices.Sort(s)
		return float64(s[int(f*float64(len(s)-1))]) / 1e3
	}
	d50, d99 := q(lat[0], 0.5), q(lat[0], 0.99)
	for w, way := range ways {
		b.ReportMetric(q(lat[w], 0.5), way.name+"-p50-µs")
		b.ReportMetric(q(lat[w], 0.99), way.name+"-p99-µs")
		if w > 0 {
			b.ReportMetric(q(lat[w], 0.5)-d50, way.name+"-added-p50-µs")
			b.ReportMetric(q(lat[w], 0.99)-d99, way.name+"-added-p99-µs")
		}
	}
	b.ReportMetric(float64(sock.replaced(b)+mcpPool.replaced(b)+slPool.replaced(b)), "restarts")
	b.ReportMetric(0, "ns/op")
}

// benchMCPInput is the MCP rows' input: arguments are an object, where
// the socket rows send a string; both are one short question.
var benchMCPInput = json.RawMessage(`{"q":"what is the capital of France?"}`)

// benchMCPPools is cmd/resilienced's mcpPools for one supervisor, minus
// the daemon session (see BenchmarkMCPFrontDoor).
type benchMCPPools struct{ sup *supervisor.Supervisor }

func (p benchMCPPools) List() []mcp.Pool {
	return []mcp.Pool{{Name: "bench", OutputSchema: benchSchema}}
}

func (p benchMCPPools) Call(ctx context.Context, c mcp.Call) (json.RawMessage, error) {
	res, err := p.sup.Call(ctx, c.Pool, supervisor.CallRequest{Input: c.Input})
	if err != nil {
		return nil, err
	}
	return res.Output, nil
}
