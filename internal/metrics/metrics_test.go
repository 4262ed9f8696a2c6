package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

type fakeSource struct{}

func (fakeSource) ArbiterPools() []ArbiterPool {
	return []ArbiterPool{{Pool: "echo", Acted: 3, HeldOut: 1, CameTrue: 1, MaxRisk: 0.4}}
}

func (fakeSource) PoolTelemetry() []PoolTelemetry {
	return []PoolTelemetry{{Pool: "echo", RSSBytes: 4096, SyscallsPerSec: 120, TxBytesPerSec: 10}}
}

func (fakeSource) Status() []supervisor.PoolStatus {
	return []supervisor.PoolStatus{{Name: "echo", Replicas: 2, Active: 2, State: supervisor.PoolRunning, Breaker: "closed"}}
}

func (fakeSource) Agents(string) ([]supervisor.AgentStatus, error) {
	return []supervisor.AgentStatus{{ID: "echo-1", State: supervisor.AgentActive}, {ID: "echo-2", State: supervisor.AgentActive}, {ID: "echo-3", State: supervisor.AgentSpare}}, nil
}

func TestMetricsExposition(t *testing.T) {
	m := New(fakeSource{})
	ms := 12.5
	m.Event(supervisor.Event{Kind: supervisor.EventViolation, Pool: "echo", Code: "schema", Class: "runtime"})
	m.Event(supervisor.Event{Kind: supervisor.EventRecovered, Pool: "echo", Cause: "violation", RecoverMS: &ms, DetectMS: &ms})
	m.Call("echo", supervisor.OutcomeOK, 3*time.Millisecond)
	m.Call("echo", supervisor.OutcomeFailed, time.Second)
	m.MCPOperation("tools/call", "echo", "", "2025-11-25", 30*time.Millisecond)
	m.MCPOperation("tools/call", "_OTHER", "-32602", "2026-07-28", time.Millisecond)
	m.MCPSessionOpened()
	m.MCPSessionOpened()
	m.MCPSessionClosed("2025-11-25", time.Minute)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	for _, want := range []string{
		`resilienced_agents{pool="echo",state="active"} 2`,
		`resilienced_agents{pool="echo",state="spare"} 1`,
		`resilienced_violations_total{code="schema",pool="echo"} 1`,
		`resilienced_agent_restarts_total{cause="violation",pool="echo"} 1`,
		`resilienced_calls_total{outcome="ok",pool="echo"} 1`,
		`resilienced_calls_total{outcome="failed",pool="echo"} 1`,
		`resilienced_recovery_seconds_count{cause="violation",pool="echo"} 1`,
		`resilienced_call_duration_seconds_count{pool="echo"} 1`,
		`resilienced_breaker_state{pool="echo",state="closed"} 1`,
		`resilienced_pool_state{pool="echo",state="running"} 1`,
		`resilienced_failures_total{class="runtime",kind="violation",pool="echo"} 1`,
		`resilienced_arbiter_predictions_total{action="acted",pool="echo"} 3`,
		`resilienced_arbiter_held_out_outcomes_total{outcome="came_true",pool="echo"} 1`,
		`resilienced_arbiter_risk_max{pool="echo"} 0.4`,
		`resilienced_pool_memory_rss_bytes{pool="echo"} 4096`,
		`resilienced_pool_network_bytes_per_second{direction="tx",pool="echo"} 10`,
		// The OpenTelemetry MCP conventions' buckets: 30 ms falls in 0.05.
		`mcp_server_operation_duration_seconds_bucket{error_type="",gen_ai_tool_name="echo",mcp_method_name="tools/call",mcp_protocol_version="2025-11-25",le="0.02"} 0`,
		`mcp_server_operation_duration_seconds_bucket{error_type="",gen_ai_tool_name="echo",mcp_method_name="tools/call",mcp_protocol_version="2025-11-25",le="0.05"} 1`,
		`mcp_server_operation_duration_seconds_bucket{error_type="-32602",gen_ai_tool_name="_OTHER",mcp_method_name="tools/call",mcp_protocol_version="2026-07-28",le="300"} 1`,
		`mcp_server_session_duration_seconds_bucket{mcp_protocol_version="2025-11-25",le="60"} 1`,
		`resilienced_mcp_sessions 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestCallStats(t *testing.T) {
	m := New(fakeSource{})
	m.Call("echo", supervisor.OutcomeOK, 3*time.Millisecond)
	m.Call("echo", supervisor.OutcomeRetried, 2*time.Second)
	m.Call("echo", supervisor.OutcomeFailed, time.Second)
	cs, err := m.CallStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Pool != "echo" || cs[0].Outcomes["ok"] != 1 || cs[0].Outcomes["retried"] != 1 || cs[0].Outcomes["failed"] != 1 {
		t.Fatalf("call stats %+v", cs)
	}
	h := cs[0].Latency
	last := h[len(h)-1]
	if last.LE != 0 || last.Count != 2 {
		t.Errorf("+Inf bucket %+v, want the 2 successful calls", last)
	}
	for _, b := range h[:len(h)-1] {
		want := uint64(0)
		if b.LE >= 0.003 {
			want = 1
		}
		if b.LE >= 2 {
			want = 2
		}
		if b.Count != want {
			t.Errorf("bucket le=%v: %d, want %d", b.LE, b.Count, want)
		}
	}
}
