package mcp

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/tracectx"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	ops    []op
	open   int
	closed []string
}

type op struct{ method, tool, errType, version string }

func (r *recorder) MCPOperation(method, tool, errType, version string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op{method, tool, errType, version})
}
func (r *recorder) MCPSessionOpened() { r.mu.Lock(); r.open++; r.mu.Unlock() }
func (r *recorder) MCPSessionClosed(v string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open--
	r.closed = append(r.closed, v)
}

func (r *recorder) snapshot() ([]op, int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops), r.open, slices.Clone(r.closed)
}

// syncBuffer is a log sink written by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const (
	testTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpan  = "00f067aa0ba902b7"
)

// TestObservations: every operation is measured under the OpenTelemetry
// MCP conventions' attributes, in both protocol eras, and a call's
// traceparent from params._meta marks the front door's log lines of it.
func TestObservations(t *testing.T) {
	for _, version := range []string{"2026-07-28", "2025-11-25", "2025-06-18"} {
		t.Run(version, func(t *testing.T) {
			rec := &recorder{}
			logs := &syncBuffer{}
			log := slog.New(tracectx.NewHandler(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			ts, _ := startFront(t, func(o *Options) { o.Observer = rec; o.Logger = log })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cs, err := sdk.NewClient(&sdk.Implementation{Name: "obs", Version: "1"}, nil).Connect(ctx,
				&sdk.StreamableClientTransport{Endpoint: ts.URL + "/mcp"}, &sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			if got := cs.InitializeResult().ProtocolVersion; got != version {
				t.Fatalf("negotiated %s, want %s", got, version)
			}
			if _, err := cs.ListTools(ctx, nil); err != nil {
				t.Fatal(err)
			}
			tp := "00-" + testTrace + "-" + testSpan + "-01"
			call := func(name string, args map[string]any) {
				cs.CallTool(ctx, &sdk.CallToolParams{Meta: sdk.Meta{"traceparent": tp}, Name: name, Arguments: args})
			}
			call("native", map[string]any{"q": 1})
			call("native", map[string]any{"fail": "tool"})
			call("native", map[string]any{"fail": "params"})
			call("no-such-tool", map[string]any{})
			cs.Close()

			want := []op{
				{"tools/list", "", "", version},
				{"tools/call", "native", "", version},
				{"tools/call", "native", "tool_error", version},
				{"tools/call", "native", "-32602", version},
				// A name no pool serves is not a label value of its own.
				{"tools/call", "_OTHER", "-32602", version},
			}
			var sessions bool
			deadline := time.Now().Add(5 * time.Second)
			for {
				ops, open, closed := rec.snapshot()
				var calls []op
				for _, o := range ops {
					if o.method == "tools/list" || o.method == "tools/call" {
						calls = append(calls, o)
					}
				}
				if !slices.Equal(calls, want) {
					t.Fatalf("operations %+v\nwant %+v", calls, want)
				}
				if version == "2026-07-28" {
					// The stateless era: server/discover, no session.
					if !slices.Contains(ops, op{"server/discover", "", "", version}) || open != 0 || len(closed) != 0 {
						t.Fatalf("stateless era: operations %+v, %d sessions open, closed %v", ops, open, closed)
					}
					break
				}
				// The session era: initialize opens a session, Close ends it.
				sessions = slices.Contains(ops, op{"initialize", "", "", version}) && open == 0 && slices.Equal(closed, []string{version})
				if sessions || time.Now().After(deadline) {
					if !sessions {
						t.Fatalf("session era: operations %+v, %d open, closed %v", ops, open, closed)
					}
					break
				}
				time.Sleep(20 * time.Millisecond)
			}

			var traced int
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "method=tools/call") {
					if !strings.Contains(l, "trace_id="+testTrace) || !strings.Contains(l, "span_id="+testSpan) {
						t.Errorf("a tools/call log line without the call's trace: %s", l)
					}
					traced++
				}
				if strings.Contains(l, "method=tools/list") && strings.Contains(l, "trace_id") {
					t.Errorf("an untraced request logged with a trace: %s", l)
				}
			}
			if traced != 4 {
				t.Errorf("%d traced tools/call lines, want 4:\n%s", traced, logs)
			}
		})
	}
}

// TestTraceparentFromHeader: a client that sends W3C trace context as an
// HTTP header (and none in _meta) is traced too; a bad one is ignored.
func TestTraceparentFromHeader(t *testing.T) {
	ctx := context.Background()
	for tp, want := range map[string]bool{"00-" + testTrace + "-" + testSpan + "-01": true, "00-nope": false} {
		req := &sdk.CallToolRequest{Params: &sdk.CallToolParamsRaw{Name: "x"}, Extra: &sdk.RequestExtra{Header: map[string][]string{"Traceparent": {tp}}}}
		tc, ok := tracectx.From(withTrace(ctx, req))
		if ok != want || (ok && (tc.TraceID != testTrace || tc.SpanID != testSpan)) {
			t.Errorf("traceparent header %q: %+v %v, want %v", tp, tc, ok, want)
		}
	}
	// A request without params (tools/list) carries none, and does not panic.
	if _, ok := tracectx.From(withTrace(ctx, &sdk.ListToolsRequest{})); ok {
		t.Error("a trace from nowhere")
	}
}
