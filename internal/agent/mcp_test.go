package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mcpTestAgent plays an MCP server in the test binary's modes "mcp…"; it
// reports whether it handled the request. tools/call answers with what it
// received, as structuredContent, after a log message, a progress
// notification and a ping request of its own, so a test sees that the
// daemon's side copes with all three before the reply.
func mcpTestAgent(mode string, id uint64, method string, params json.RawMessage, out *bufio.Writer, reply func(string)) bool {
	switch method {
	case "initialize":
		reply(`{"protocolVersion":"2025-06-18","capabilities":{"tools":{},"logging":{}},"serverInfo":{"name":"test","version":"1"}}`)
	case "tools/list":
		var p struct{ Cursor string }
		json.Unmarshal(params, &p)
		if p.Cursor == "" { // two pages, to follow the cursor
			reply(`{"tools":[{"name":"answer","inputSchema":{"type":"object"}}],"nextCursor":"page2"}`)
		} else {
			reply(`{"tools":[{"name":"fail","description":"always an error","inputSchema":{"type":"object"}}]}`)
		}
	case "tools/call":
		var p struct {
			Name string `json:"name"`
			Meta struct {
				Token json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		}
		json.Unmarshal(params, &p)
		if p.Name == "slow" {
			time.Sleep(100 * time.Millisecond) // the test cancels first
		}
		fmt.Fprintln(out, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"warning","logger":"t","data":"tool running"}}`)
		fmt.Fprintf(out, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":1,"total":2}}`+"\n", p.Meta.Token)
		fmt.Fprintln(out, `{"jsonrpc":"2.0","id":"srv-1","method":"ping"}`)
		out.Flush()
		switch {
		case p.Name == "slow":
			// Ignores cancellation, and answers late.
			time.Sleep(300 * time.Millisecond)
			reply(`{"content":[{"type":"text","text":"late"}]}`)
		case p.Name == "fail":
			reply(`{"content":[{"type":"text","text":"no such file"},{"type":"text","text":"really"}],"isError":true}`)
		case mode == "mcptext":
			reply(`{"content":[{"type":"text","text":"Echo: hi"}]}`)
		case mode == "mcpjsontext":
			reply(`{"content":[{"type":"text","text":"{\"answer\":\"mcp\"}"}]}`)
		case mode == "mcpinvalid":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32602,"message":"Invalid params"}}`+"\n", id)
			out.Flush()
		default:
			reply(`{"content":[],"structuredContent":{"got":` + string(params) + `}}`)
		}
	default:
		return false
	}
	return true
}

func startMCP(t *testing.T, mode, tool string, mod ...func(*Config)) *Agent {
	return startTestAgent(t, mode, append([]func(*Config){func(c *Config) { c.Protocol = ProtocolMCP; c.Tool = tool }}, mod...)...)
}

// received is what the test server says it got in tools/call.
type received struct {
	Got struct {
		Name      string                     `json:"name"`
		Arguments json.RawMessage            `json:"arguments"`
		Meta      map[string]json.RawMessage `json:"_meta"`
	} `json:"got"`
}

func TestMCPInputIsTheToolsArguments(t *testing.T) {
	a := startMCP(t, "mcp", "answer")
	if got := a.Tools(); len(got) != 2 || got[0].Name != "answer" || got[1].Name != "fail" {
		t.Fatalf("tools from both pages of tools/list: %+v", got)
	}
	out, err := call(t, a, `{"session":"s1","context":[{"input":1,"output":2}],"input":{"message":"hello"}}`)
	if err != nil {
		t.Fatal(err)
	}
	var r received
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if r.Got.Name != "answer" || string(r.Got.Arguments) != `{"message":"hello"}` {
		t.Fatalf("the server got name %q arguments %s, want answer {\"message\":\"hello\"}", r.Got.Name, r.Got.Arguments)
	}
	if _, ok := r.Got.Meta[MetaContext]; ok {
		t.Fatalf("the context went to the tool with mcp_context none: %v", r.Got.Meta)
	}
	if len(r.Got.Meta["progressToken"]) == 0 {
		t.Fatal("no progress token")
	}
}

func TestMCPContextInMeta(t *testing.T) {
	a := startMCP(t, "mcp", "answer", func(c *Config) { c.MCPContext = MCPContextMeta })
	out, err := call(t, a, `{"session":"s1","context":[{"input":1,"output":2}],"input":{},"feedback":"try\u0007again"}`)
	if err != nil {
		t.Fatal(err)
	}
	var r received
	json.Unmarshal(out, &r)
	m := r.Got.Meta
	if string(m[MetaSession]) != `"s1"` || string(m[MetaContext]) != `[{"input":1,"output":2}]` || string(m[MetaFeedback]) != `"try\u0007again"` {
		t.Fatalf("_meta: %s", out)
	}
}

func TestMCPEveryToolPool(t *testing.T) {
	a := startMCP(t, "mcp", "*")
	out, err := call(t, a, `{"session":null,"context":[],"input":{"name":"answer","arguments":{"x":1}}}`)
	if err != nil {
		t.Fatal(err)
	}
	var r received
	json.Unmarshal(out, &r)
	if r.Got.Name != "answer" || string(r.Got.Arguments) != `{"x":1}` {
		t.Fatalf("got %s", out)
	}
	_, err = call(t, a, `{"session":null,"context":[],"input":{"x":1}}`)
	var rpc *RPCError
	if !errors.As(err, &rpc) || rpc.Code != CodeInvalidParams {
		t.Fatalf("input without a tool name: got %v, want RPCError -32602", err)
	}
}

func TestMCPNonObjectInputIsInvalidParams(t *testing.T) {
	a := startMCP(t, "mcp", "answer")
	for _, in := range []string{`"hello"`, `[1]`, `3`, `true`} {
		_, err := call(t, a, `{"session":null,"context":[],"input":`+in+`}`)
		var rpc *RPCError
		if !errors.As(err, &rpc) || rpc.Code != CodeInvalidParams {
			t.Fatalf("input %s: got %v, want RPCError -32602", in, err)
		}
	}
	// Nothing was sent: the agent still serves.
	if _, err := call(t, a, `{"session":null,"context":[],"input":null}`); err != nil {
		t.Fatal(err)
	}
}

func TestMCPToolErrorIsTyped(t *testing.T) {
	a := startMCP(t, "mcp", "fail")
	_, err := call(t, a, `{"session":null,"context":[],"input":{}}`)
	var te *ToolError
	if !errors.As(err, &te) {
		t.Fatalf("got %T %v, want *ToolError", err, err)
	}
	if te.Tool != "fail" || te.Text != "no such file\nreally" || !strings.Contains(string(te.Content), `"no such file"`) {
		t.Fatalf("tool error %+v", te)
	}
	var rpc *RPCError
	if errors.As(err, &rpc) {
		t.Fatal("a tool error must not be an RPCError")
	}
}

func TestMCPTextOutputs(t *testing.T) {
	for mode, want := range map[string]string{"mcptext": `"Echo: hi"`, "mcpjsontext": `{"answer":"mcp"}`} {
		a := startMCP(t, mode, "answer")
		out, err := call(t, a, `{"session":null,"context":[],"input":{}}`)
		if err != nil || string(out) != want {
			t.Fatalf("%s: got %s %v, want %s", mode, out, err, want)
		}
	}
}

func TestMCPInvalidParamsStaysRPCError(t *testing.T) {
	a := startMCP(t, "mcpinvalid", "answer")
	_, err := call(t, a, `{"session":null,"context":[],"input":{}}`)
	var rpc *RPCError
	if !errors.As(err, &rpc) || rpc.Code != CodeInvalidParams {
		t.Fatalf("got %v, want RPCError -32602", err)
	}
}

func TestMCPUnknownToolFailsHandshake(t *testing.T) {
	exe, _ := os.Executable()
	a, err := Start(Config{ID: "t-1", Pool: "t", Command: []string{exe}, Env: []string{"RESILIENT_TEST_AGENT=mcp"}, Protocol: ProtocolMCP, Tool: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.SignalGroup(9); <-a.Done(); a.Close() }()
	err = a.Initialize(context.Background())
	if !errors.Is(err, ErrNoSuchTool) || !strings.Contains(err.Error(), "answer, fail") {
		t.Fatalf("got %v, want ErrNoSuchTool naming the tools offered", err)
	}
}

// logRecorder is a slog handler keeping what it sees.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func newSlog(h slog.Handler) *slog.Logger { return slog.New(h) }

// count counts the records with an attribute key=value.
func (l *logRecorder) count(key, value string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key && a.Value.String() == value {
				n++
			}
			return true
		})
	}
	return n
}

func (l *logRecorder) find(msg string) (slog.Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Message == msg {
			return r, true
		}
	}
	return slog.Record{}, false
}

func TestMCPNotificationsAndServerPing(t *testing.T) {
	rec := &logRecorder{}
	notes := make(chan string, 16)
	a := startMCP(t, "mcp", "answer", func(c *Config) {
		c.Logger = slog.New(rec)
		c.OnNotification = func(method string, params json.RawMessage) { notes <- method + " " + string(params) }
	})
	// The server's ping comes before its reply; the call only completes
	// if the agent side answered it, since the test server then reads on.
	if _, err := call(t, a, `{"session":null,"context":[],"input":{}}`); err != nil {
		t.Fatal(err)
	}
	r, ok := rec.find("tool running")
	if !ok || r.Level != slog.LevelWarn {
		t.Fatalf("MCP log message not in the agent's log at warn: %v %v", ok, r.Level)
	}
	var progress bool
	for len(notes) > 0 {
		n := <-notes
		progress = progress || strings.HasPrefix(n, "notifications/progress ")
	}
	if !progress {
		t.Fatal("no progress notification seen")
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWriteErrorKeepsCause(t *testing.T) {
	a := startTestAgent(t, "closein")
	// The agent closed its stdin: a write fails with EPIPE, which must
	// stay visible through the ErrExited wrapping.
	var err error
	for range 100 {
		pc, e := a.Send(json.RawMessage(`{"input":1}`), nil)
		if e != nil {
			err = e
			break
		}
		pc.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, ErrExited) || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("got %v, want ErrExited wrapping EPIPE", err)
	}
}

func TestMCPTerminateClosesStdinFirst(t *testing.T) {
	// The test agent exits at the end of its stdin, as MCP servers do:
	// Terminate must not need SIGTERM for it.
	a := startMCP(t, "mcp", "answer")
	start := time.Now()
	a.Terminate(10 * time.Second)
	select {
	case <-a.Done():
	default:
		t.Fatal("Terminate returned before the server exited")
	}
	if !a.ExitedOK() {
		t.Fatalf("the server did not exit on its own at the end of its input: %s", a.ExitStatus())
	}
	if time.Since(start) > 9*time.Second {
		t.Fatal("Terminate waited out its grace")
	}
}

// A call's progress reaches its callback; after Cancel the server is sent
// notifications/cancelled with the request's id, and the reply it sends
// anyway, after the caller closed the request, is dropped: the next call
// gets its own reply.
func TestMCPProgressCancelAndLateReply(t *testing.T) {
	stderr := make(chan string, 16)
	a := startMCP(t, "mcp", "*", func(c *Config) {
		c.OnStderr = func(l string) {
			if strings.HasPrefix(l, "cancelled ") {
				stderr <- l
			}
		}
	})
	var got []ProgressReport
	pc, err := a.Send(json.RawMessage(in(`{"name":"answer","arguments":{}}`)), func(p ProgressReport) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pc.Wait(ctx, nil); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if len(got) != 1 || got[0].Progress != 1 || got[0].Total != 2 {
		t.Fatalf("progress seen: %+v, want one report 1 of 2", got)
	}

	pc, err = a.Send(json.RawMessage(in(`{"name":"slow","arguments":{}}`)), func(p ProgressReport) { t.Errorf("progress after cancel forwarded: %+v", p) })
	if err != nil {
		t.Fatal(err)
	}
	id := pc.id
	if !pc.Cancel("the client went away") {
		t.Fatal("Cancel on an MCP call reported false")
	}
	// The server reports progress on the call (before it reads the
	// cancel): after Cancel that is the server going on.
	select {
	case <-pc.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("progress after cancel did not close Running")
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	_, err = pc.Wait(wctx, nil)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for the slow call: %v", err)
	}
	pc.Close() // before the late reply comes
	select {
	case l := <-stderr:
		want := fmt.Sprintf(`cancelled {"requestId":%d,"reason":"the client went away"}`, id)
		if l != want {
			t.Errorf("server got %s, want %s", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server got no notifications/cancelled")
	}
	out, err := call(t, a, in(`{"name":"answer","arguments":{"n":2}}`))
	if err != nil {
		t.Fatalf("the call after a cancelled one: %v", err)
	}
	var r received
	if err := json.Unmarshal(out, &r); err != nil || string(r.Got.Arguments) != `{"n":2}` {
		t.Fatalf("the call after a cancelled one got %s (%v)", out, err)
	}
}

// A native agent has no cancel message: Cancel says so and writes nothing.
func TestNativeCallCannotBeCancelled(t *testing.T) {
	a := startTestAgent(t, "echo")
	pc, err := a.Send(json.RawMessage(`{"input":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if pc.Cancel("x") {
		t.Fatal("Cancel on a native call reported true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := pc.Wait(ctx, nil); err != nil || string(out) != `{"input":1}` {
		t.Fatalf("reply after a refused cancel: %s %v", out, err)
	}
}

// A server that reports progress on its call is at work, though it sleeps:
// Progress says so once per report.
func TestProgressReportIsEvidenceOfWork(t *testing.T) {
	reported := make(chan struct{}, 1)
	a := startMCP(t, "mcp", "*")
	pc, err := a.Send(json.RawMessage(in(`{"name":"slow","arguments":{}}`)), func(ProgressReport) { reported <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("no progress report")
	}
	if working, _ := a.Progress(); !working {
		t.Fatal("an agent that just reported progress is not at work")
	}
	// The server now sleeps 300 ms before it answers: no new report, no
	// reply in the pipe, a sleeping process (given a moment to fall
	// asleep after its write).
	time.Sleep(50 * time.Millisecond)
	if working, _ := a.Progress(); working {
		t.Fatal("the same report counted twice")
	}
}
