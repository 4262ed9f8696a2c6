package mcp

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/agent"
)

// progressPools reports progress on "report" calls and, on "block" calls,
// waits for the call's context to end, as the supervisor's call path does.
type progressPools struct {
	*fakePools
	entered   chan struct{}
	cancelled chan error
}

func (p progressPools) Call(ctx context.Context, c Call) (json.RawMessage, error) {
	var in struct{ Do string }
	json.Unmarshal(c.Input, &in)
	switch in.Do {
	case "report":
		if c.Progress == nil {
			return json.Marshal("no progress asked for")
		}
		for _, v := range []float64{1, 2, 3} {
			c.Progress(agent.ProgressReport{Progress: v, Total: 3, Message: "step"})
		}
		return json.Marshal("done")
	case "block":
		p.entered <- struct{}{}
		<-ctx.Done()
		p.cancelled <- ctx.Err()
		return nil, ctx.Err()
	}
	return p.fakePools.Call(ctx, c)
}

// The front door sends a call's progress to the client under the client's
// own token, and a client's cancel ends the context of the call it made.
func TestProgressAndCancelReachThePools(t *testing.T) {
	pp := progressPools{fakePools: &fakePools{pools: []Pool{{Name: "native"}}}, entered: make(chan struct{}, 1), cancelled: make(chan error, 1)}
	ts, _ := startFront(t, func(o *Options) { o.Pools = pp })
	var mu sync.Mutex
	var got []*sdk.ProgressNotificationParams
	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			mu.Lock()
			got = append(got, r.Params)
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: ts.URL + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	params := &sdk.CallToolParams{Name: "native", Arguments: map[string]string{"do": "report"}}
	params.SetProgressToken("client-token-7")
	res, err := cs.CallTool(ctx, params)
	if err != nil || text(res) != "done" {
		t.Fatalf("call with progress: %v %v", res, err)
	}
	// Notifications may trail the result on the client's side.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 {
			break
		}
	}
	mu.Lock()
	if len(got) != 3 {
		t.Fatalf("progress notifications: %d, want 3", len(got))
	}
	for i, p := range got {
		if p.ProgressToken != "client-token-7" || p.Progress != float64(i+1) || p.Total != 3 || p.Message != "step" {
			t.Errorf("progress %d: %+v, want %d of 3 under the client's token", i, p, i+1)
		}
	}
	mu.Unlock()

	// No token, no progress callback.
	if res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "native", Arguments: map[string]string{"do": "report"}}); err != nil || text(res) != "no progress asked for" {
		t.Fatalf("call without a progress token: %v %v", res, err)
	}

	// The client gives up: the SDK sends notifications/cancelled, and the
	// call's context in the daemon ends.
	callCtx, callCancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx, &sdk.CallToolParams{Name: "native", Arguments: map[string]string{"do": "block"}})
		done <- err
	}()
	select {
	case <-pp.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the blocking call did not reach the pools")
	}
	callCancel()
	select {
	case err := <-pp.cancelled:
		if err == nil {
			t.Fatal("the call's context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's cancel did not reach the call")
	}
	if err := <-done; err == nil {
		t.Fatal("the cancelled call returned no error to its client")
	}
	// The session serves on.
	if res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "native", Arguments: map[string]string{"x": "1"}}); err != nil || res.IsError {
		t.Fatalf("after a cancel: %v %v", res, err)
	}
}
