package mcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/mcptest"
)

// TestHostileRequests sends 1,000 malformed or hostile requests, of every
// class in mcptest.HostileRequests, to the front door over a real
// listener, 8 at a time: each gets the status (and JSON-RPC code) the
// specification gives it, no pool is called by any but the one class
// that reaches a tool, and the front door serves a real client after,
// with no goroutine or descriptor left behind.
func TestHostileRequests(t *testing.T) {
	leakcheck.Check(t)
	ts, fp := startFront(t, func(o *Options) { o.MaxBodyBytes = 1 << 20 })
	live := connectVersion(t, ts.URL+"/mcp", "2025-11-25")
	reqs := mcptest.HostileRequests(1000, mcptest.HostileOptions{
		Session: live.ID(), Tool: "native", BadArgs: map[string]any{"fail": "params"}, MaxBodyBytes: 1 << 20,
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	errs := sendAll(reqs, 8, func(h mcptest.Hostile) error { return h.Send(context.Background(), client, ts.URL+"/mcp") })
	failures := map[string]int{}
	for _, err := range errs {
		if err != nil {
			failures[err.Error()]++
		}
	}
	for e, n := range failures {
		t.Errorf("%d× %s", n, e)
	}
	// Only "arguments the tool refuses" reached a pool.
	fp.mu.Lock()
	calls := len(fp.calls)
	fp.mu.Unlock()
	var reaching int
	for _, h := range reqs {
		if h.Class == "arguments the tool refuses" {
			reaching++
		}
	}
	if calls != reaching {
		t.Errorf("%d pool calls from hostile requests, want %d", calls, reaching)
	}
	// The session they aimed at, and the front door, serve on.
	if res, err := callTool(t, live, "native", map[string]any{"q": 1}); err != nil || res.IsError {
		t.Fatalf("after the hostile requests: %+v %v", res, err)
	}
	live.Close()
	ts.Close()
}

// sendAll sends reqs with n at a time and returns each one's error.
func sendAll(reqs []mcptest.Hostile, n int, send func(mcptest.Hostile) error) []error {
	errs := make([]error, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = send(reqs[i])
			}
		}()
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// TestTooManyStreams: the answers streaming at once (SSE) are bounded
// by MaxInFlight; one more request gets 503 with Retry-After, and a
// stream that ends frees its place.
func TestTooManyStreams(t *testing.T) {
	const max = 4
	srv := New(Options{Pools: &fakePools{pools: testPools()}, MaxInFlight: max})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	// max calls that block until their client goes away, each holding
	// its POST's answer stream open.
	cs := connect(t, ts.URL+"/mcp")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range max {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs.CallTool(ctx, &sdk.CallToolParams{Name: "native", Arguments: map[string]any{"fail": "block"}})
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.inflight) < max {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", len(srv.inflight), max)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Post(ts.URL+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request beyond %d streams: %d (Retry-After %q), want 503 with Retry-After", max, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cancel() // the clients go away: in the stateless era that cancels their calls
	wg.Wait()
	for len(srv.inflight) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still counted after their clients left", len(srv.inflight))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res, err := callTool(t, cs, "native", map[string]any{}); err != nil || res.IsError {
		t.Fatalf("with the places free: %+v %v", res, err)
	}
}
