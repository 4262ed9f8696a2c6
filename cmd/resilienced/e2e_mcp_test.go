package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// startOwnDaemon is startDaemon with a cgroup subtree of the test's own:
// another daemon on the host (other test runs) reaps the agents it finds
// in the default subtree at its start.
func startOwnDaemon(t *testing.T, configPath, stateDir string, args ...string) *daemonProc {
	t.Helper()
	bin := binaries(t)
	sock := filepath.Join(t.TempDir(), "d.sock")
	name := fmt.Sprintf("resilienced-test-%d", os.Getpid())
	cmd := exec.Command(filepath.Join(bin, "resilienced"), append([]string{"--config", configPath, "--socket", sock, "--state-dir", stateDir, "--cgroup-name", name}, args...)...)
	log := &strings.Builder{}
	cmd.Stderr = &lockedWriter{b: log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{t: t, cmd: cmd, socket: sock, log: log, client: api.NewClient(sock)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := d.client.Status(context.Background())
		if err == nil && ready(st) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
