package mcprelay

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/api"
)

// These tests put the relay between the go-sdk's client, over stdio pipes
// as a host runs it, and the go-sdk's Streamable HTTP server: the real
// protocol on both sides, in one process.

// server is a Streamable HTTP MCP server with an echo tool that reports
// progress, recording the requests it gets.
type server struct {
	*httptest.Server
	srv *sdk.Server

	mu       sync.Mutex
	requests []string // "METHOD jsonrpc-method session"
}

func startServer(t testing.TB) *server {
	t.Helper()
	s := &server{srv: sdk.NewServer(&sdk.Implementation{Name: "test", Version: "1"}, nil)}
	type in struct {
		Message string `json:"message"`
	}
	sdk.AddTool(s.srv, &sdk.Tool{Name: "echo"}, func(ctx context.Context, req *sdk.CallToolRequest, in in) (*sdk.CallToolResult, any, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2, Message: "half way"})
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "Echo: " + in.Message}}}, nil, nil
	})
	s.srv.AddTool(&sdk.Tool{Name: "block", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, _ *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		<-ctx.Done() // until the call is cancelled
		return nil, ctx.Err()
	})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.srv }, nil)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Method string }
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			json.Unmarshal(b, &m)
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		s.mu.Lock()
		s.requests = append(s.requests, strings.TrimSpace(r.Method+" "+m.Method+" "+r.Header.Get(headerSession)))
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// seen returns the recorded requests that start with prefix.
func (s *server) seen(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.requests {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// forget makes the server drop a session, as a daemon restart does.
func (s *server) forget(t *testing.T, session string) {
	req, _ := http.NewRequest(http.MethodDelete, s.URL, nil)
	req.Header.Set(headerSession, session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE session: %v %v", resp, err)
	}
}

// syncBuffer is a log both the relay and the test use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// relayed runs the relay to url on pipes; stdin closes the host's side,
// done gives Run's result.
type relayed struct {
	stdin  *io.PipeWriter // the host writes here
	stdout *io.PipeReader // and reads here
	log    *syncBuffer
	done   chan error
}

func startRelay(t testing.TB, client Doer, url string, maxLine int) *relayed {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	r := &relayed{stdin: inW, stdout: outR, log: &syncBuffer{}, done: make(chan error, 1)}
	go func() {
		err := Run(context.Background(), Options{Client: client, URL: url, In: inR, Out: outW, MaxLine: maxLine,
			Log: slog.New(slog.NewTextHandler(r.log, nil))})
		outW.Close()
		r.done <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return r
}

func (r *relayed) wait(t testing.TB) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end with its input")
	}
}

// output reads the relay's stdout to its end, one message a line, and
// waits for Run to return.
func (r *relayed) output(t *testing.T) []string {
	t.Helper()
	sc := bufio.NewScanner(r.stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	r.wait(t)
	return lines
}

// connect is the host: the go-sdk's client over the relay's stdio.
func connect(t testing.TB, r *relayed, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "host", Version: "1"}, opts).Connect(ctx, &sdk.IOTransport{Reader: r.stdout, Writer: r.stdin}, nil)
	if err != nil {
		t.Fatalf("connect through the relay: %v\nlog: %s", err, r.log)
	}
	return cs
}

func echo(t testing.TB, cs *sdk.ClientSession, msg string, progress bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := &sdk.CallToolParams{Name: "echo", Arguments: map[string]string{"message": msg}}
	if progress {
		p.SetProgressToken("p-" + msg)
	}
	res, err := cs.CallTool(ctx, p)
	if err != nil {
		t.Fatalf("echo %s: %v", msg, err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("echo %s: %+v", msg, res)
	}
	return res.Content[0].(*sdk.TextContent).Text
}

// The host lists and calls tools through the relay, one session; the
// server's progress notification reaches it; at the end of its input the
// relay deletes the session and returns.
func TestRelayCallsAndEnds(t *testing.T) {
	s := startServer(t)
	r := startRelay(t, http.DefaultClient, s.URL, 0)
	progress := make(chan string, 1)
	cs := connect(t, r, &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
		progress <- req.Params.Message
	}})
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools: %+v %v", tools, err)
	}
	if got := echo(t, cs, "hello", true); got != "Echo: hello" {
		t.Fatalf("echo: %q", got)
	}
	select {
	case m := <-progress:
		if m != "half way" {
			t.Errorf("progress %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Error("the progress notification did not reach the host")
	}
	inits := s.seen("POST initialize")
	if len(inits) != 1 {
		t.Fatalf("initialize requests: %v", inits)
	}
	session := strings.Fields(s.seen("POST tools/call")[0])[2]
	for _, req := range s.seen("POST")[slices.Index(s.seen("POST"), inits[0])+1:] {
		if !strings.HasSuffix(req, " "+session) {
			t.Errorf("request %q without the session %s", req, session)
		}
	}
	if len(s.seen("GET  "+session)) == 0 {
		t.Errorf("no GET stream of the server's messages: %v", s.seen("GET"))
	}
	cs.Close()
	r.wait(t)
	if del := s.seen("DELETE"); len(del) != 1 || !strings.HasSuffix(del[0], session) {
		t.Errorf("DELETE requests %v, want one of session %s", del, session)
	}
}

// A server that lost the session (404: a daemon restart) gets a new one,
// opened with the host's initialize replayed; the host's call is answered
// and it never knows.
func TestRelayReopensLostSession(t *testing.T) {
	s := startServer(t)
	r := startRelay(t, http.DefaultClient, s.URL, 0)
	cs := connect(t, r, nil)
	echo(t, cs, "one", false)
	first := strings.Fields(s.seen("POST tools/call")[0])[2]
	s.forget(t, first)
	if got := echo(t, cs, "two", false); got != "Echo: two" {
		t.Fatalf("after the session was lost: %q", got)
	}
	if n := len(s.seen("POST initialize")); n != 2 {
		t.Errorf("%d initialize requests, want the host's and one replayed", n)
	}
	if n := len(s.seen("POST notifications/initialized")); n != 2 {
		t.Errorf("%d notifications/initialized, want 2: %q\n%s", n, s.seen(""), r.log)
	}
	calls := s.seen("POST tools/call")
	if last := calls[len(calls)-1]; strings.HasSuffix(last, first) {
		t.Errorf("the call went on in the lost session: %v", calls)
	}
	if !strings.Contains(r.log.String(), "opened a new one") {
		t.Errorf("log: %s", r.log)
	}
	cs.Close()
	r.wait(t)
}

// The server's own messages come on the GET stream: a tool added while
// the host is connected reaches it as notifications/tools/list_changed.
func TestRelayServerMessages(t *testing.T) {
	s := startServer(t)
	r := startRelay(t, http.DefaultClient, s.URL, 0)
	changed := make(chan struct{}, 1)
	cs := connect(t, r, &sdk.ClientOptions{ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}})
	// The stream opens after initialize; a notification sent before it is
	// up would be lost (the server keeps no history), so wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.seen("GET")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the GET registered its stream
	s.srv.AddTool(&sdk.Tool{Name: "late", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return &sdk.CallToolResult{}, nil
	})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatalf("no tools/list_changed through the relay; requests %v", s.seen(""))
	}
	cs.Close()
	r.wait(t)
}

// A daemon that cannot be reached: the host's request gets a JSON-RPC
// error naming the socket, stderr says it once, and the relay still ends
// cleanly at the end of its input.
func TestRelayDaemonUnreachable(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	r := startRelay(t, api.NewClient(sock), "http://resilienced/v1/mcp", 0)
	go func() {
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`+"\n")
		r.stdin.Close()
	}()
	var replies []errorReply
	for _, l := range r.output(t) {
		var e errorReply
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("stdout %q: %v", l, err)
		}
		replies = append(replies, e)
	}
	if len(replies) != 2 {
		t.Fatalf("replies %+v, want one per request", replies)
	}
	for i, e := range replies {
		if string(e.ID) != []string{"1", "2"}[i] || e.Error.Code != codeInternal || !strings.Contains(e.Error.Message, "cannot reach resilienced at "+sock) {
			t.Errorf("reply %d: %+v", i, e)
		}
	}
	if n := strings.Count(r.log.String(), "cannot reach the daemon"); n != 1 {
		t.Errorf("the log says it %d times, want once:\n%s", n, r.log)
	}
}

// Lines that are not messages are answered by the relay itself: not JSON
// is a parse error, an over-long line is refused unsent; the next line is
// relayed as usual.
func TestRelayBadLines(t *testing.T) {
	s := startServer(t)
	r := startRelay(t, http.DefaultClient, s.URL, 1024)
	go func() {
		io.WriteString(r.stdin, "not json\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":9,"method":"ping","params":{"pad":"`+strings.Repeat("x", 4096)+`"}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`+"\n")
		r.stdin.Close()
	}()
	lines := r.output(t)
	if len(lines) != 3 {
		t.Fatalf("stdout: %q", lines)
	}
	var e errorReply
	if json.Unmarshal([]byte(lines[0]), &e); string(e.ID) != "null" || e.Error.Code != codeParse {
		t.Errorf("not JSON: %s", lines[0])
	}
	if json.Unmarshal([]byte(lines[1]), &e); e.Error.Code != codeInvalidRequest || !strings.Contains(e.Error.Message, "over 1024 bytes") {
		t.Errorf("over-long line: %s", lines[1])
	}
	if !strings.Contains(lines[2], `"id":1,"result"`) || !strings.Contains(lines[2], `"protocolVersion":"2025-06-18"`) {
		t.Errorf("initialize: %s", lines[2])
	}
	if n := len(s.seen("POST ping")); n != 0 {
		t.Errorf("the over-long line was sent")
	}
}

// A request the host cancels gets no reply of the relay's making: a
// server that answers it (the go-sdk's says "context canceled") is
// relayed, one that does not, as the spec allows, leaves the host
// expecting none.
func TestRelayCancelledRequest(t *testing.T) {
	s := startServer(t)
	r := startRelay(t, http.DefaultClient, s.URL, 0)
	go func() {
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"block","arguments":{}}}`+"\n")
		for len(s.seen("POST tools/call")) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // the call is at work
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user"}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":2,"method":"ping"}`+"\n")
		r.stdin.Close()
	}()
	lines := r.output(t)
	var ping bool
	for _, l := range lines {
		if strings.Contains(l, "without the reply") {
			t.Errorf("the relay made up a reply to the cancelled request: %s", l)
		}
		ping = ping || strings.Contains(l, `"id":2,"result"`)
	}
	if !ping {
		t.Errorf("stdout %q: no answer to the ping after the cancellation", lines)
	}
	if len(s.seen("POST notifications/cancelled")) != 1 {
		t.Errorf("the cancellation did not reach the server: %v", s.seen("POST"))
	}
}

// A server whose answer ends without the reply (a daemon that died
// mid-call): the host gets an error for its request, unless it had
// cancelled it. A bare handler, since a well-behaved server does neither.
func TestRelayAnswerEndsWithoutReply(t *testing.T) {
	cancelled := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m envelope
		json.NewDecoder(r.Body).Decode(&m)
		switch {
		case r.Method != http.MethodPost:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case m.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set(headerSession, "s1")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}`)
		case m.Method == "notifications/cancelled":
			close(cancelled)
			w.WriteHeader(http.StatusAccepted)
		case m.isRequest():
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			if string(m.ID) == `"c1"` {
				<-cancelled
			}
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer ts.Close()
	r := startRelay(t, http.DefaultClient, ts.URL, 0)
	go func() {
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{}}`+"\n")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1"}}`+"\n")
		io.WriteString(r.stdin, `{"jsonrpc":"2.0","id":"c2","method":"tools/call","params":{}}`+"\n")
		r.stdin.Close()
	}()
	lines := r.output(t)
	if len(lines) != 2 || !strings.Contains(lines[1], `"id":"c2","error"`) || !strings.Contains(lines[1], "ended without the reply") {
		t.Fatalf("stdout %q, want the initialize answer and an error for c2 only", lines)
	}
}
