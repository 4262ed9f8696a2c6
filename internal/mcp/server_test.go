package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/agent"
)

// fakePools stands in for the supervisor: it answers as the pools would
// and records the calls.
type fakePools struct {
	mu    sync.Mutex
	pools []Pool
	calls []Call
}

func (f *fakePools) List() []Pool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pools)
}

func (f *fakePools) set(p []Pool) { f.mu.Lock(); f.pools = p; f.mu.Unlock() }

func (f *fakePools) Call(ctx context.Context, c Call) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	var in struct {
		Fail      string          `json:"fail"`
		Message   string          `json:"message"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	json.Unmarshal(c.Input, &in)
	switch in.Fail {
	case "tool":
		return nil, &agent.ToolError{Tool: "echo", Text: "no such file"}
	case "params":
		return nil, errors.Join(errors.New("call failed"), &agent.RPCError{Code: agent.CodeInvalidParams, Message: "expected string at message"})
	case "down":
		return nil, errors.New("pool native: call failed on every attempt")
	case "block": // until the caller gives up
		<-ctx.Done()
		return nil, ctx.Err()
	}
	switch c.Pool {
	case "native":
		return json.RawMessage(`{"answer":` + string(c.Input) + `}`), nil
	case "ev":
		return json.Marshal("Echo: " + in.Message)
	default:
		return c.Input, nil
	}
}

func testPools() []Pool {
	echo := Tool{Name: "echo", Description: "Echoes", InputSchema: json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`)}
	return []Pool{
		{Name: "native", OutputSchema: json.RawMessage(`{"type":"object","required":["answer"]}`)},
		{Name: "ev", Tools: []Tool{echo}},
		{Name: "fs", Every: true, Tools: []Tool{echo, {Name: "read_file", InputSchema: json.RawMessage(`{"type":"object"}`)}}},
	}
}

func startFront(t *testing.T, mod ...func(*Options)) (*httptest.Server, *fakePools) {
	t.Helper()
	fp := &fakePools{pools: testPools()}
	opts := Options{Pools: fp, Version: "test"}
	for _, f := range mod {
		f(&opts)
	}
	ts := httptest.NewServer(New(opts))
	t.Cleanup(ts.Close)
	return ts, fp
}

// connect connects the Go SDK's client in its default revision (the
// stateless 2026-07-28 one); connectVersion in the one given.
func connect(t *testing.T, url string) *sdk.ClientSession { return connectVersion(t, url, "") }

func connectVersion(t *testing.T, url, version string) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func callTool(t *testing.T, cs *sdk.ClientSession, name string, args any) (*sdk.CallToolResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
}

func text(r *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestAggregateEndpointListsEveryPoolsTools(t *testing.T) {
	ts, _ := startFront(t)
	cs := connect(t, ts.URL+"/mcp")
	// "echo" is in two pools: both get their pool's prefix.
	want := []string{"ev.echo", "fs.echo", "native", "read_file"}
	if got := toolNames(t, cs); !slices.Equal(got, want) {
		t.Fatalf("tools %v, want %v", got, want)
	}
}

func TestPoolEndpoint(t *testing.T) {
	ts, _ := startFront(t)
	cs := connect(t, ts.URL+"/pools/ev/mcp")
	if got := toolNames(t, cs); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("tools %v", got)
	}
	res, err := callTool(t, cs, "echo", map[string]any{"message": "hello"})
	if err != nil || res.IsError || text(res) != "Echo: hello" {
		t.Fatalf("echo: %+v %v", res, err)
	}
	resp, err := http.Post(ts.URL+"/pools/nope/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown pool: status %d, want 404", resp.StatusCode)
	}
}

func TestCallsMapOntoPoolCalls(t *testing.T) {
	ts, fp := startFront(t)
	// The session era: the client's session is the calls' daemon session.
	cs := connectVersion(t, ts.URL+"/mcp", "2025-11-25")
	res, err := callTool(t, cs, "native", map[string]any{"q": 1})
	if err != nil || res.IsError {
		t.Fatalf("native: %+v %v", res, err)
	}
	if text(res) != `{"answer":{"q":1}}` {
		t.Fatalf("native text %q", text(res))
	}
	if sc, _ := json.Marshal(res.StructuredContent); string(sc) != `{"answer":{"q":1}}` {
		t.Fatalf("native structuredContent %s", sc)
	}
	if _, err := callTool(t, cs, "read_file", map[string]any{"path": "/x"}); err != nil {
		t.Fatal(err)
	}
	fp.mu.Lock()
	calls := slices.Clone(fp.calls)
	fp.mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("calls %+v", calls)
	}
	if calls[0].Pool != "native" || string(calls[0].Input) != `{"q":1}` {
		t.Fatalf("native call %+v", calls[0])
	}
	// A pool serving every tool gets the tool's name with the arguments.
	if calls[1].Pool != "fs" || string(calls[1].Input) != `{"name":"read_file","arguments":{"path":"/x"}}` {
		t.Fatalf("every-tool call %+v %s", calls[1], calls[1].Input)
	}
	// The client's MCP session is the daemon session of both calls.
	for _, c := range calls {
		if c.Session != "mcp-"+cs.ID() || cs.ID() == "" {
			t.Fatalf("session %q, want mcp-%s", c.Session, cs.ID())
		}
	}
}

func TestErrorsMapOntoMCP(t *testing.T) {
	ts, _ := startFront(t)
	cs := connect(t, ts.URL+"/mcp")
	// The tool's own refusal and the daemon's failure: tool errors.
	for fail, want := range map[string]string{"tool": "no such file", "down": "call failed on every attempt"} {
		res, err := callTool(t, cs, "native", map[string]any{"fail": fail})
		if err != nil || !res.IsError || !strings.Contains(text(res), want) {
			t.Fatalf("fail %s: %+v %v, want a tool error saying %q", fail, res, err, want)
		}
	}
	// The caller's arguments refused by the server: JSON-RPC -32602.
	_, err := callTool(t, cs, "native", map[string]any{"fail": "params"})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != jsonrpc.CodeInvalidParams {
		t.Fatalf("bad params: got %v, want a -32602 error", err)
	}
	// An unknown tool.
	if _, err := callTool(t, cs, "nope", map[string]any{}); err == nil {
		t.Fatal("an unknown tool was called")
	}
}

func TestToolsFollowThePools(t *testing.T) {
	ts, fp := startFront(t)
	cs := connect(t, ts.URL+"/mcp")
	fp.set(testPools()[:1])
	// The tool list is compared again at most every resyncEvery.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := toolNames(t, cs)
		if slices.Equal(got, []string{"native"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tools %v after the pools changed", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEdge(t *testing.T) {
	ts, _ := startFront(t, func(o *Options) { o.Tokens = []string{"s3cret"} })
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	post := func(body string, hdr map[string]string) int {
		method := "POST"
		if m := hdr["method"]; m != "" {
			method = m
		}
		req, _ := http.NewRequest(method, ts.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			if k != "method" {
				req.Header.Set(k, v)
			}
		}
		if h := hdr["Host"]; h != "" {
			req.Host = h
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": "Bearer s3cret"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	cases := []struct {
		what string
		body string
		hdr  map[string]string
		want int
	}{
		{"no token", init, nil, 401},
		{"wrong token", init, map[string]string{"Authorization": "Bearer nope"}, 401},
		{"foreign origin", init, map[string]string{"Authorization": "Bearer s3cret", "Origin": "https://evil.example"}, 403},
		{"local origin", init, map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://localhost:3000"}, 200},
		{"token", init, auth, 200},
		{"not JSON", "{nope", auth, 400},
		{"giant body", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("x", 5<<20) + `"}}`, auth, 413},
		{"rebinding Host", init, map[string]string{"Authorization": "Bearer s3cret", "Host": "evil.example"}, 403},
		{"unknown protocol version", list, with("MCP-Protocol-Version", "1999-01-01", "Mcp-Session-Id", "x"), 400},
		{"GET without a session", "", with("method", "GET"), 400},
		{"DELETE of an unknown session", "", with("method", "DELETE", "Mcp-Session-Id", "nope"), 404},
		{"PUT", "{}", with("method", "PUT"), 405},
		{"no Accept of JSON or SSE", init, with("Accept", "text/plain"), 400},
		{"not application/json", "{}", with("Content-Type", "text/plain"), 415},
		{"a client that dropped its session id", list, auth, 200},
		{"unknown session", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, map[string]string{"Authorization": "Bearer s3cret", "Mcp-Session-Id": "nope", "MCP-Protocol-Version": "2025-06-18"}, 404},
	}
	for _, c := range cases {
		if got := post(c.body, c.hdr); got != c.want {
			t.Errorf("%s: status %d, want %d", c.what, got, c.want)
		}
	}
}

func TestOriginAllowed(t *testing.T) {
	for o, want := range map[string]bool{
		"": true, "http://localhost": true, "http://127.0.0.1:8765": true, "http://[::1]:1": true,
		"https://evil.example": false, "null": false, "http://127.0.0.1.evil.example": false, "http://localhost.evil.example": false,
	} {
		if got := originAllowed(o); got != want {
			t.Errorf("origin %q: %v, want %v", o, got, want)
		}
	}
}

func TestInFlightBound(t *testing.T) {
	srv := New(Options{Pools: &fakePools{pools: testPools()}, MaxInFlight: 1})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	srv.inflight <- struct{}{} // a request (an SSE stream, say) holds the one place
	resp, err := http.Post(ts.URL+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	<-srv.inflight
	resp, err = http.Post(ts.URL+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		t.Fatal("503 with the place free")
	}
}
