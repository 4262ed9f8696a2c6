package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/mcptest"
)

// These tests run the reference MCP servers from npm, unchanged, as a pool
// would: they skip, saying why, where node, npm or the registry is missing.

func startReal(t *testing.T, argv []string, tool string, mod ...func(*Config)) *Agent {
	t.Helper()
	cfg := Config{ID: "real-1", Pool: "real", Command: argv, Protocol: ProtocolMCP, Tool: tool}
	for _, f := range mod {
		f(&cfg)
	}
	a, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.SignalGroup(9)
		<-a.Done()
		a.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Initialize(ctx); err != nil {
		t.Fatalf("initialize %v: %v", argv, err)
	}
	return a
}

// in wraps an input in the call envelope the supervisor writes.
func in(input string) string {
	return `{"session":null,"context":[],"input":` + input + `}`
}

func TestRealEverythingEcho(t *testing.T) {
	a := startReal(t, mcptest.Server(t, mcptest.Everything, "stdio"), "echo")
	out, err := call(t, a, in(`{"message":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `"Echo: hello"` {
		t.Fatalf("echo: got %s", out)
	}
	// Arguments the tool's schema refuses: the server says so as a tool
	// error (this SDK reports input validation as isError, quoting -32602).
	_, err = call(t, a, in(`{"msg":"hello"}`))
	var te *ToolError
	if !errors.As(err, &te) || !strings.Contains(te.Text, "-32602") {
		t.Fatalf("bad arguments: got %T %v, want a *ToolError quoting -32602", err, err)
	}
	// A ping answers: an idle server's liveness check works.
	if err := a.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The server is fine after the refusal.
	if out, err := call(t, a, in(`{"message":"again"}`)); err != nil || string(out) != `"Echo: again"` {
		t.Fatalf("after a tool error: %s %v", out, err)
	}
}

func TestRealEverythingProgressAndLogging(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	rec := &logRecorder{}
	a := startReal(t, mcptest.Server(t, mcptest.Everything, "stdio"), "*", func(c *Config) {
		c.OnNotification = func(method string, _ json.RawMessage) { mu.Lock(); seen[method]++; mu.Unlock() }
		c.Logger = newSlog(rec)
	})
	if _, err := call(t, a, in(`{"name":"trigger-long-running-operation","arguments":{"duration":1,"steps":3}}`)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	progress := seen["notifications/progress"]
	mu.Unlock()
	if progress < 3 {
		t.Fatalf("progress notifications: %d, want 3 (one per step)", progress)
	}
	// The simulated logging sends a message every few seconds; one is
	// enough to see it reach the agent's log.
	if _, err := call(t, a, in(`{"name":"toggle-simulated-logging","arguments":{}}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if rec.count("source", "mcp") > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no MCP log message reached the agent's log")
}

func TestRealEverythingShutdown(t *testing.T) {
	a := startReal(t, mcptest.Server(t, mcptest.Everything, "stdio"), "echo")
	a.Terminate(5 * time.Second)
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server-everything lived on after its stdin closed and SIGTERM")
	}
}

func TestRealMemory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "memory.jsonl")
	a := startReal(t, mcptest.Server(t, mcptest.Memory), "*", func(c *Config) { c.Env = []string{"MEMORY_FILE_PATH=" + file} })
	if _, err := call(t, a, in(`{"name":"create_entities","arguments":{"entities":[{"name":"resilienced","entityType":"daemon","observations":["supervises agents"]}]}}`)); err != nil {
		t.Fatal(err)
	}
	out, err := call(t, a, in(`{"name":"read_graph","arguments":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Entities []struct {
			Name         string
			Observations []string
		}
	}
	if err := json.Unmarshal(out, &g); err != nil || len(g.Entities) != 1 || g.Entities[0].Name != "resilienced" {
		t.Fatalf("read_graph: %s (%v)", out, err)
	}
}

func TestRealFilesystem(t *testing.T) {
	root := t.TempDir()
	a := startReal(t, mcptest.Server(t, mcptest.Filesystem, root), "*")
	path := filepath.Join(root, "note.txt")
	args, _ := json.Marshal(map[string]any{"name": "write_file", "arguments": map[string]string{"path": path, "content": "hello\x7f\u2028"}})
	if _, err := call(t, a, in(string(args))); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "hello\x7f\u2028" {
		t.Fatalf("the file holds %q (%v)", b, err)
	}
	args, _ = json.Marshal(map[string]any{"name": "read_text_file", "arguments": map[string]string{"path": path}})
	out, err := call(t, a, in(string(args)))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Content string }
	if err := json.Unmarshal(out, &r); err != nil || r.Content != "hello\x7f\u2028" {
		t.Fatalf("read_text_file: %s (%v)", out, err)
	}
	// Outside the allowed directory: the tool refuses, the server lives.
	_, err = call(t, a, in(`{"name":"read_text_file","arguments":{"path":"/etc/hostname"}}`))
	var te *ToolError
	if !errors.As(err, &te) {
		t.Fatalf("reading outside the root: got %T %v, want *ToolError", err, err)
	}
}
