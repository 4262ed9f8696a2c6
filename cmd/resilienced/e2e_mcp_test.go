package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/mcptest"
)

var (
	ctlOnce sync.Once
	ctlErr  error
)

// resilientctl builds the CLI beside the daemon.
func resilientctl(t *testing.T) string {
	t.Helper()
	bin := binaries(t)
	ctlOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "resilientctl"), "../resilientctl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("go build resilientctl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return filepath.Join(bin, "resilientctl")
}

// startOwnDaemon is startDaemon; the name stays for the tests that
// restart a daemon over the same subtree and say so.
func startOwnDaemon(t *testing.T, configPath, stateDir string, args ...string) *daemonProc {
	t.Helper()
	return startDaemon(t, configPath, stateDir, args...)
}

// mcpPoolYAML is a pool supervising the reference MCP server unchanged.
func mcpPoolYAML(t *testing.T, name, tool string) string {
	argv := mcptest.Server(t, mcptest.Everything, "stdio")
	return fmt.Sprintf(`
  - name: %s
    command: [%q, %q, stdio]
    protocol: mcp
    tool: %q
    replicas: 1
    spares: 1
    retries: 1
    start_timeout: 30s
    contract:
      deadline: 10s
`, name, argv[0], argv[1], tool)
}

// TestMCPPoolWithRealServer is the report, as a new user runs it:
// resilientctl call ev '{"message":"hello"}' on a pool of
// @modelcontextprotocol/server-everything returns the echo.
func TestMCPPoolWithRealServer(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "pools:"+mcpPoolYAML(t, "ev", "echo")+mcpPoolYAML(t, "every", "*"))
	d := startOwnDaemon(t, cfg, filepath.Join(dir, "state"))
	ctl := resilientctl(t)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(ctl, append([]string{"--socket", d.socket}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	out, err := run("call", "ev", `{"message":"hello"}`)
	if err != nil || out != `"Echo: hello"` {
		t.Fatalf("resilientctl call ev: %s (%v)\n%s", out, err, d.log)
	}
	// A pool serving every tool: the input names the tool.
	out, err = run("call", "every", `{"name":"get-sum","arguments":{"a":2,"b":3}}`)
	if err != nil || !strings.Contains(out, "5") {
		t.Fatalf("resilientctl call every get-sum: %s (%v)", out, err)
	}
	// Arguments the tool's input schema refuses: the caller's fault. The
	// server answers a tool error quoting -32602; the caller gets
	// invalid_input with the server's message, no agent is replaced.
	out, err = run("call", "ev", `{"msg":"hello"}`)
	if err == nil || !strings.Contains(out, "invalid input") || !strings.Contains(out, "expected string") {
		t.Fatalf("bad arguments: %s (%v), want invalid_input quoting the server's validation", out, err)
	}
	t.Logf("bad arguments give: %s", out)
	for i := range 100 {
		_, err := d.client.Call(context.Background(), "ev", api.CallRequest{Input: json.RawMessage(`{"msg":"hello"}`)})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeInvalidInput || ae.Status != 400 {
			t.Fatalf("bad call %d: %v, want 400 invalid_input", i, err)
		}
	}
	// The pool serves on.
	if out, err := run("call", "ev", `{"message":"again"}`); err != nil || out != `"Echo: again"` {
		t.Fatalf("after bad arguments: %s (%v)", out, err)
	}
	st, err := d.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 101 bad calls replaced no agent, and the pool runs.
	for _, p := range st.Pools {
		if p.Restarts > 0 || p.State != "running" {
			t.Errorf("pool %s: %d restarts, state %s\n%s", p.Name, p.Restarts, p.State, d.log)
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// step is one line of test/mcp/e2e.mjs.
type step struct {
	Step    string   `json:"step"`
	Session string   `json:"session"`
	Tools   []string `json:"tools"`
	Text    string   `json:"text"`
	IsError bool     `json:"isError"`
	MS      int      `json:"ms"`
	// Progress is the progress values the client saw, in order.
	Progress []float64 `json:"progress"`
}

// TestMCPFrontDoorWithOfficialClient runs the official TypeScript SDK's
// client (StreamableHTTPClientTransport) against the real daemon's front
// door: it lists the tools, calls them, and keeps its session and its call
// while the agent serving that call is SIGKILLed in the middle of it.
func TestMCPFrontDoorWithOfficialClient(t *testing.T) {
	modules := mcptest.Modules(t)
	node := mcptest.Node(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf("mcp: {listen: %q}\npools:", addr)+mcpPoolYAML(t, "ev", "echo")+mcpPoolYAML(t, "every", "*"))
	d := startOwnDaemon(t, cfg, filepath.Join(dir, "state"))
	url := "http://" + addr + "/mcp"

	cmd := exec.Command(node, filepath.Join(modules, "e2e.mjs"), url)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	steps := map[string]step{}
	var killed int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("client said %q", sc.Text())
		}
		steps[s.Step] = s
		switch s.Step {
		case "ready-long":
			io.WriteString(stdin, "go\n")
		case "calling-long":
			// The 4 s operation is at work on every's one active agent:
			// kill it in the middle.
			time.Sleep(1500 * time.Millisecond)
			as, err := d.client.Agents(context.Background(), "every")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.State == "active" {
					killed = a.PID
					syscall.Kill(a.PID, syscall.SIGKILL)
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s\ndaemon:\n%s", err, stderr.String(), d.log)
	}
	if killed == 0 {
		t.Fatal("no active agent of pool every to kill")
	}
	tools := steps["tools"].Tools
	for _, want := range []string{"ev.echo", "every.echo", "get-sum", "trigger-long-running-operation"} {
		if !slices.Contains(tools, want) {
			t.Errorf("tools %v lack %s", tools, want)
		}
	}
	if s := steps["echo"]; s.Text != "Echo: hello" || s.IsError {
		t.Errorf("echo: %+v", s)
	}
	if s := steps["bad-args"]; !s.IsError || !strings.Contains(s.Text, "expected string") {
		t.Errorf("bad arguments: %+v, want a tool error quoting the server", s)
	}
	if s := steps["long"]; s.IsError || !strings.Contains(s.Text, "Long running operation completed") {
		t.Errorf("the call whose agent was killed: %+v\n%s", s, d.log)
	}
	t.Logf("the long call took %d ms with its agent killed at 1.5 s; progress seen: %v", steps["long"].MS, steps["long"].Progress)
	// The spare that took the call over counted again from 1: the client
	// saw its progress only go up, to the end.
	if p := steps["long"].Progress; len(p) == 0 || p[len(p)-1] != 4 || !slices.IsSorted(p) || len(slices.Compact(slices.Clone(p))) != len(p) {
		t.Errorf("progress of the call retried on a spare: %v, want increasing to 4", p)
	}
	if s := steps["after"]; s.Text != "Echo: after" || s.IsError {
		t.Errorf("after: %+v", s)
	}
	session := steps["tools"].Session
	for name, s := range steps {
		if s.Session != "" && s.Session != session {
			t.Errorf("step %s: session %q, want %q throughout", name, s.Session, session)
		}
	}
	if session == "" {
		t.Error("no Mcp-Session-Id")
	}
	// The killed agent is gone, replaced.
	as, _ := d.client.Agents(context.Background(), "every")
	for _, a := range as {
		if a.PID == killed {
			t.Errorf("killed agent %s (pid %d) still listed", a.ID, a.PID)
		}
	}

	// The example client (examples/mcp), as a user runs it, and the Go
	// SDK's client on a pool's own endpoint.
	ex := t.TempDir()
	b, err := os.ReadFile("../../examples/mcp/client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ex, "client.mjs"), b, 0o644)
	os.Symlink(filepath.Join(modules, "node_modules"), filepath.Join(ex, "node_modules"))
	out, err := exec.Command(node, filepath.Join(ex, "client.mjs"), url, "ev.echo", `{"message":"example"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Echo: example") {
		t.Errorf("examples/mcp/client.mjs: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "go-e2e", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{Endpoint: "http://" + addr + "/pools/ev/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": "go"}})
	if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != "Echo: go" {
		t.Errorf("Go SDK client: %+v %v", res, err)
	}
}

// TestMCPSessionSurvivesRepeatedKills holds one MCP session (the Go SDK's
// client) and calls echo in a loop while the agent serving the pool is
// SIGKILLed every 500 ms: no call fails, and the session id never changes.
func TestMCPSessionSurvivesRepeatedKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 30 s")
	}
	argv := mcptest.Server(t, mcptest.Everything, "stdio")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`mcp: {listen: %q}
pools:
  - name: ev
    command: [%q, %q, stdio]
    protocol: mcp
    tool: echo
    replicas: 1
    spares: 2
    start_timeout: 30s
    contract: {deadline: 10s}
`, addr, argv[0], argv[1])) // default backoff, intensity, retries and breaker
	d := startOwnDaemon(t, cfg, filepath.Join(dir, "state"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The session era (the Go SDK's default is the stateless 2026 one):
	// the test is about keeping one Mcp-Session-Id.
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "soak", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp"}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	session := cs.ID()
	if session == "" {
		t.Fatal("no Mcp-Session-Id in the session era")
	}

	stop := make(chan struct{})
	var kills int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			as, err := d.client.Agents(context.Background(), "ev")
			if err != nil {
				continue
			}
			for _, a := range as {
				if a.State == "active" && syscall.Kill(a.PID, syscall.SIGKILL) == nil {
					kills++
				}
			}
		}
	}()
	var ok, failed int
	end := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		msg := fmt.Sprint("m", i)
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": msg}})
		switch {
		case err != nil:
			failed++
			t.Errorf("call %d: %v", i, err)
		case res.IsError || res.Content[0].(*sdk.TextContent).Text != "Echo: "+msg:
			failed++
			t.Errorf("call %d: %+v", i, res.Content[0])
		default:
			ok++
		}
		if cs.ID() != session {
			t.Fatalf("the session id changed from %s to %s", session, cs.ID())
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d calls served, %d failed, %d SIGKILLs of the serving agent, one session %s", ok, failed, kills, session)
	// A kill lands only while an agent is active: node takes a second or
	// more to start on a loaded machine, and while the spares are being
	// replaced there is nothing to kill.
	if kills < 3 {
		t.Errorf("only %d kills: the test did not test much", kills)
	}
}
