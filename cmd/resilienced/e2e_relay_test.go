package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/mcptest"
)

// stdioEvent is one line of test/mcp/stdio.mjs.
type stdioEvent struct {
	Step  string `json:"step"`
	Sent  bool   `json:"sent"`
	PID   int    `json:"pid"`
	Tools []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"inputSchema"`
	} `json:"tools"`
	Text       string          `json:"text"`
	IsError    bool            `json:"isError"`
	Structured json.RawMessage `json:"structured"`
	Error      string          `json:"error"`
}

// stdioHost is the official TypeScript client, launching `resilientctl
// mcp` over stdio as a desktop host does (test/mcp/stdio.mjs).
type stdioHost struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan stdioEvent
	stderr *strings.Builder
}

func startStdioHost(t *testing.T, socket, pool string) *stdioHost {
	t.Helper()
	modules, node, ctl := mcptest.Modules(t), mcptest.Node(t), resilientctl(t)
	cmd := exec.Command(node, filepath.Join(modules, "stdio.mjs"), ctl, socket, pool)
	h := &stdioHost{t: t, cmd: cmd, events: make(chan stdioEvent, 16), stderr: &strings.Builder{}}
	h.stdin, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = &lockedWriter{b: h.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		defer close(h.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e stdioEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = stdioEvent{Step: "unreadable", Error: sc.Text()}
			}
			h.events <- e
		}
	}()
	if e := h.next("connected"); e.PID == 0 {
		t.Fatalf("the client launched no relay: %+v", e)
	}
	return h
}

// next returns the client's next event, which must be of step.
func (h *stdioHost) next(step string) stdioEvent {
	h.t.Helper()
	select {
	case e, ok := <-h.events:
		if !ok {
			h.t.Fatalf("the client ended before %s:\n%s", step, h.stderr)
		}
		if e.Step != step {
			h.t.Fatalf("client: %+v, want step %s\n%s", e, step, h.stderr)
		}
		return e
	case <-time.After(90 * time.Second):
		h.t.Fatalf("no %s from the client\n%s", step, h.stderr)
	}
	return stdioEvent{}
}

func (h *stdioHost) send(op map[string]any) {
	h.t.Helper()
	b, _ := json.Marshal(op)
	if _, err := h.stdin.Write(append(b, '\n')); err != nil {
		h.t.Fatal(err)
	}
}

// call runs a tool call; mid, when not nil, runs once it was sent.
func (h *stdioHost) call(step, tool string, args any, mid func()) stdioEvent {
	h.t.Helper()
	h.send(map[string]any{"step": step, "op": "call", "name": tool, "arguments": args})
	if e := h.next(step); !e.Sent {
		h.t.Fatalf("%s: %+v", step, e)
	}
	if mid != nil {
		mid()
	}
	return h.next(step)
}

func (h *stdioHost) tools() map[string]json.RawMessage {
	h.t.Helper()
	h.send(map[string]any{"step": "list", "op": "list"})
	out := map[string]json.RawMessage{}
	for _, tl := range h.next("list").Tools {
		out[tl.Name] = tl.InputSchema
	}
	return out
}

// close ends the client's stdin: it closes the relay's, and both exit.
func (h *stdioHost) close() {
	h.t.Helper()
	h.stdin.Close()
	h.next("closed")
	if err := h.cmd.Wait(); err != nil {
		h.t.Fatalf("client: %v\n%s", err, h.stderr)
	}
}

// killActive SIGKILLs the active agents of pool and returns their pids.
func killActive(t *testing.T, d *daemonProc, pool string) []int {
	t.Helper()
	as, err := d.client.Agents(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, a := range as {
		if a.State == "active" && syscall.Kill(a.PID, syscall.SIGKILL) == nil {
			pids = append(pids, a.PID)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no active agent of pool %s to kill: %+v", pool, as)
	}
	return pids
}

// TestMCPRelayWithOfficialClient: the official TypeScript SDK's client
// launches `resilientctl mcp --pool P` with StdioClientTransport against a
// daemon whose TCP front door is off (the default), lists and calls the
// tools of a native pool (with an input_schema) and of an MCP pool of
// server-everything, and its calls survive a SIGKILL of the agent serving
// them; then the Go SDK's client does the same over CommandTransport.
func TestMCPRelayWithOfficialClient(t *testing.T) {
	mcptest.Modules(t)
	bin := binaries(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`pools:
  - name: ask
    command: [%s, -seed, "1", -latency, 1s]
    replicas: 1
    spares: 1
    input_schema:
      type: object
      required: [q]
      properties:
        q: {type: string}
    contract:
      schema: {type: object, required: [answer]}
      deadline: 10s
`, filepath.Join(bin, "flaky"))+mcpPoolYAML(t, "every", "*"))
	d := startOwnDaemon(t, cfg, filepath.Join(dir, "state"))
	ctx := context.Background()

	// The native pool: one tool, its input schema the pool's.
	h := startStdioHost(t, d.socket, "ask")
	tools := h.tools()
	if len(tools) != 1 || !strings.Contains(string(tools["ask"]), `"required":["q"]`) {
		t.Fatalf("tools of pool ask: %s", tools)
	}
	if e := h.call("hello", "ask", map[string]string{"q": "hello"}, nil); e.IsError || !strings.Contains(string(e.Structured), `"answer"`) {
		t.Fatalf("call: %+v", e)
	}
	// Input the schema refuses: a tool error saying where, no agent touched.
	before, _ := d.client.Agents(ctx, "ask")
	e := h.call("bad", "ask", map[string]int{"q": 5}, nil)
	if !e.IsError || !strings.Contains(e.Text, "input_schema: at /q: got number, want string") {
		t.Fatalf("bad input: %+v", e)
	}
	// The same through the unix socket API: 400 invalid_input.
	_, err := d.client.Call(ctx, "ask", api.CallRequest{Input: json.RawMessage(`{"q":5}`)})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != api.CodeInvalidInput || !strings.Contains(ae.Message, "at /q") {
		t.Fatalf("bad input on the API: %v, want 400 invalid_input saying where", err)
	}
	after, _ := d.client.Agents(ctx, "ask")
	if callsOf(before) != callsOf(after) {
		t.Errorf("bad input reached an agent: calls %d then %d", callsOf(before), callsOf(after))
	}
	// The agent at work on a call (1 s) is killed in the middle of it.
	var killed []int
	e = h.call("killed", "ask", map[string]string{"q": "survive"}, func() {
		time.Sleep(300 * time.Millisecond)
		killed = killActive(t, d, "ask")
	})
	if e.IsError || e.Error != "" || !strings.Contains(string(e.Structured), "survive") {
		t.Fatalf("the call whose agent was killed: %+v\n%s", e, d.log)
	}
	if e := h.call("after", "ask", map[string]string{"q": "after"}, nil); e.IsError || e.Error != "" {
		t.Fatalf("after the kill: %+v", e)
	}
	h.close()
	// One daemon session held every valid call, the killed one included.
	ss, err := d.client.Sessions(ctx, "ask")
	if err != nil || len(ss) != 1 || !strings.HasPrefix(ss[0].ID, "mcp-") || ss[0].Entries != 3 {
		t.Errorf("sessions of pool ask: %+v %v, want one MCP session of 3 exchanges", ss, err)
	}
	as, _ := d.client.Agents(ctx, "ask")
	for _, a := range as {
		if slices.Contains(killed, a.PID) {
			t.Errorf("killed agent %s still listed", a.ID)
		}
	}

	// The MCP pool: server-everything's tools, re-exported.
	h = startStdioHost(t, d.socket, "every")
	tools = h.tools()
	for _, want := range []string{"echo", "get-sum", "trigger-long-running-operation"} {
		if _, ok := tools[want]; !ok {
			t.Errorf("pool every lacks %s: %v", want, slices.Collect(maps.Keys(tools)))
		}
	}
	if e := h.call("sum", "get-sum", map[string]int{"a": 2, "b": 3}, nil); e.IsError || !strings.Contains(e.Text, "5") {
		t.Errorf("get-sum: %+v", e)
	}
	e = h.call("long", "trigger-long-running-operation", map[string]int{"duration": 3, "steps": 3}, func() {
		time.Sleep(time.Second)
		killActive(t, d, "every")
	})
	if e.IsError || !strings.Contains(e.Text, "Long running operation completed") {
		t.Errorf("the long call whose server was killed: %+v\n%s", e, d.log)
	}
	if e := h.call("echo", "echo", map[string]string{"message": "after"}, nil); e.Text != "Echo: after" {
		t.Errorf("echo after the kill: %+v", e)
	}
	h.close()

	// The Go SDK's client, launching the relay of every pool (no --pool).
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "go-stdio", Version: "1"}, nil).Connect(cctx,
		&sdk.CommandTransport{Command: exec.Command(resilientctl(t), "--socket", d.socket, "mcp")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.ListTools(cctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	if !slices.Contains(names, "ask") || !slices.Contains(names, "get-sum") {
		t.Errorf("the aggregate endpoint's tools: %v", names)
	}
	r, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": "go"}})
	if err != nil || r.IsError || r.Content[0].(*sdk.TextContent).Text != "Echo: go" {
		t.Errorf("Go SDK client over stdio: %+v %v", r, err)
	}
	if err := cs.Close(); err != nil {
		t.Errorf("closing the relay: %v", err)
	}
}

func callsOf(as []api.AgentStatus) (n uint64) {
	for _, a := range as {
		n += a.Calls
	}
	return n
}

// TestMCPRelayAcrossDaemonRestart: the host's stdio session outlives the
// daemon. While the daemon is down a call gets an error naming the socket;
// once a new daemon serves the socket, the relay opens a new session with
// the host's initialize and the host's calls go on, on the same
// connection. (The Go SDK's client over CommandTransport; no node needed.)
func TestMCPRelayAcrossDaemonRestart(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir, fmt.Sprintf(`pools:
  - name: ask
    command: [%s, -seed, "1"]
    replicas: 1
    spares: 0
`, filepath.Join(bin, "flaky")))
	d := startOwnDaemon(t, cfg, state)
	// The relay dials a link, which then names the new daemon's socket.
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(d.socket, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	relay := exec.Command(resilientctl(t), "--socket", link, "mcp", "--pool", "ask")
	var stderr strings.Builder
	relay.Stderr = &lockedWriter{b: &stderr}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "restart", Version: "1"}, nil).Connect(ctx, &sdk.CommandTransport{Command: relay}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(q string) (*sdk.CallToolResult, error) {
		return cs.CallTool(ctx, &sdk.CallToolParams{Name: "ask", Arguments: map[string]string{"q": q}})
	}
	if r, err := ask("one"); err != nil || r.IsError {
		t.Fatalf("first call: %+v %v", r, err)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if _, err := ask("down"); err == nil || !strings.Contains(err.Error(), "cannot reach resilienced at "+link) {
		t.Fatalf("a call while the daemon is down: %v, want an error naming the socket", err)
	}

	d2 := startOwnDaemon(t, cfg, state)
	os.Remove(link)
	if err := os.Symlink(d2.socket, link); err != nil {
		t.Fatal(err)
	}
	r, err := ask("two")
	if err != nil || r.IsError || !strings.Contains(r.Content[0].(*sdk.TextContent).Text, "two") {
		t.Fatalf("a call after the restart: %+v %v\nrelay: %s", r, err, &stderr)
	}
	if err := cs.Close(); err != nil {
		t.Errorf("closing: %v", err)
	}
	for _, want := range []string{"cannot reach the daemon", "the daemon answers again", "opened a new one"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the relay's log lacks %q:\n%s", want, &stderr)
		}
	}
}
