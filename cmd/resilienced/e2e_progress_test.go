package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/mcptest"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// progressStep is one line of test/mcp/progress.mjs.
type progressStep struct {
	Step     string `json:"step"`
	Session  string `json:"session"`
	Text     string `json:"text"`
	IsError  bool   `json:"isError"`
	Error    string `json:"error"`
	MS       int    `json:"ms"`
	Progress []struct {
		Progress float64 `json:"progress"`
		Total    float64 `json:"total"`
	} `json:"progress"`
}

// TestMCPProgressAndCancel runs the official TypeScript SDK's client
// against the front door, on a pool of server-everything: the progress of
// trigger-long-running-operation reaches the client under its own token;
// the client's cancel (AbortController: notifications/cancelled) reaches
// the child, which ignores it and reports progress on: the daemon replaces
// it, charging nothing. The unix socket API's call, cancelled by its
// client, does the same.
func TestMCPProgressAndCancel(t *testing.T) {
	modules := mcptest.Modules(t)
	node := mcptest.Node(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf("mcp: {listen: %q}\npools:", addr)+mcpPoolYAML(t, "every", "*"))
	d := startOwnDaemon(t, cfg, filepath.Join(dir, "state"))

	cmd := exec.Command(node, filepath.Join(modules, "progress.mjs"), "http://"+addr+"/mcp")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	steps := map[string]progressStep{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var s progressStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("client said %q", sc.Text())
		}
		steps[s.Step] = s
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s\ndaemon:\n%s", err, stderr.String(), d.log)
	}

	s := steps["progress"]
	if s.IsError || !strings.Contains(s.Text, "Long running operation completed") {
		t.Fatalf("the call with progress: %+v\n%s", s, d.log)
	}
	if len(s.Progress) == 0 || s.Progress[len(s.Progress)-1].Progress != 4 || s.Progress[len(s.Progress)-1].Total != 4 {
		t.Errorf("progress the client saw: %+v, want up to 4 of 4", s.Progress)
	}
	for i := 1; i < len(s.Progress); i++ {
		if s.Progress[i].Progress <= s.Progress[i-1].Progress {
			t.Errorf("progress not increasing: %+v", s.Progress)
		}
	}
	c := steps["cancelled"]
	if c.Error == "" || len(c.Progress) < 2 {
		t.Fatalf("the cancelled call: %+v, want an abort after two progress notifications", c)
	}
	t.Logf("cancelled after %d ms: %s", c.MS, c.Error)
	if a := steps["after"]; a.IsError || a.Text != "Echo: after" {
		t.Errorf("the call after the cancel: %+v", a)
	}

	// The same through the unix socket API: its client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	_, err := d.client.Call(ctx, "every", api.CallRequest{Input: json.RawMessage(`{"name":"trigger-long-running-operation","arguments":{"duration":60,"steps":120}}`)})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("API call whose client gave up: %v", err)
	}

	// server-everything's tool ignores cancellation (it runs on and
	// reports progress): both times its agent was replaced, as the
	// caller's doing.
	var cancels []supervisor.Event
	deadline := time.Now().Add(30 * time.Second)
	for len(cancels) < 2 && time.Now().Before(deadline) {
		cancels = cancels[:0]
		d.client.Events(context.Background(), api.EventQuery{}, func(ev api.Event) error {
			if ev.Kind == supervisor.EventCancel {
				cancels = append(cancels, ev)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond)
	}
	if len(cancels) != 2 {
		t.Fatalf("cancel events: %+v, want 2\n%s", cancels, d.log)
	}
	gone := map[string]bool{}
	for _, ev := range cancels {
		if ev.Pool != "every" || ev.Class != "caller" || !strings.Contains(ev.Reason, "progress on the call after notifications/cancelled: replaced") {
			t.Errorf("cancel event %+v, want the agent replaced for going on, class caller", ev)
		}
		gone[ev.Agent] = true
		t.Logf("cancel: %s: %s", ev.Agent, ev.Reason)
	}
	waitUntil(t, "the agents of the cancelled calls are gone", func() bool {
		as, err := d.client.Agents(context.Background(), "every")
		if err != nil {
			return false
		}
		for _, a := range as {
			if gone[a.ID] {
				return false
			}
		}
		return true
	})
	st, err := d.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Pools {
		if p.Restarts != 0 || p.State != "running" || p.Breaker != "closed" {
			t.Errorf("pool %s after two cancels: %d restarts, state %s, breaker %s; want nothing charged", p.Name, p.Restarts, p.State, p.Breaker)
		}
	}
	if out, err := d.client.Call(context.Background(), "every", api.CallRequest{Input: json.RawMessage(`{"name":"echo","arguments":{"message":"still"}}`)}); err != nil || string(out.Output) != `"Echo: still"` {
		t.Errorf("the pool after the cancels: %v %v", out, err)
	}
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}
