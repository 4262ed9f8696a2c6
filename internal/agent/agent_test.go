package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a scripted agent: with RESILIENT_TEST_AGENT
// set it speaks the protocol and misbehaves as told on each call.
func TestMain(m *testing.M) {
	if mode := os.Getenv("RESILIENT_TEST_AGENT"); mode != "" {
		testAgent(mode)
		os.Exit(0)
	}
	StartSpawners() // from the main goroutine, as the daemon does
	os.Exit(m.Run())
}

func testAgent(mode string) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(os.Stderr, "test agent up in mode", mode)
	for in.Scan() {
		var req struct {
			ID     *uint64         `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil || req.ID == nil || req.Method == "" {
			if req.Method == "notifications/cancelled" {
				fmt.Fprintf(os.Stderr, "cancelled %s\n", req.Params) // for the test to see
			}
			continue // notifications, and the daemon's answers to our requests
		}
		reply := func(result string) {
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", *req.ID, result)
			out.Flush()
		}
		if strings.HasPrefix(mode, "mcp") && mcpTestAgent(mode, *req.ID, req.Method, req.Params, out, reply) {
			continue
		}
		switch req.Method {
		case "initialize", "ping":
			reply(`{}`)
			if mode == "closein" {
				os.Stdin.Close()
				time.Sleep(time.Hour)
			}
			continue
		}
		switch mode {
		case "echo":
			fmt.Fprintln(out, `{"jsonrpc":"2.0","method":"notifications/message","params":{}}`)
			reply(string(req.Params))
		case "method":
			// Says which method it was called with, as it decoded it.
			m, _ := json.Marshal(req.Method)
			reply(`{"method":` + string(m) + `}`)
		case "garbage":
			fmt.Fprintln(out, `this is not json`)
			out.Flush()
		case "giant":
			out.WriteString(`{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat("x", 4<<20))
			out.Flush()
		case "wrongid":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"result":{}}`+"\n", *req.ID+100)
			out.Flush()
		case "exit":
			os.Exit(3)
		case "closeout":
			os.Stdout.Close()
			time.Sleep(time.Hour)
		case "hang":
			time.Sleep(time.Hour)
		case "rpcerror":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32000,"message":"model down"}}`+"\n", *req.ID)
			out.Flush()
		}
	}
}

func startTestAgent(t *testing.T, mode string, mod ...func(*Config)) *Agent {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "test-1", Pool: "test", Command: []string{exe}, Env: []string{"RESILIENT_TEST_AGENT=" + mode}, MaxLineBytes: 1 << 20}
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Initialize(ctx); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return a
}

func call(t *testing.T, a *Agent, params string) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.Call(ctx, json.RawMessage(params))
}

func TestCallEchoSkipsNotifications(t *testing.T) {
	a := startTestAgent(t, "echo")
	for i := range 3 {
		in := fmt.Sprintf(`{"input":%d}`, i)
		out, err := call(t, a, in)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if string(out) != in {
			t.Fatalf("call %d: got %s, want %s", i, out, in)
		}
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestMisbehaviourIsClassified(t *testing.T) {
	cases := []struct {
		mode  string
		check func(error) bool
		what  string
	}{
		{"garbage", IsInvalidJSON, "invalid JSON"},
		{"giant", func(err error) bool { return errors.Is(err, ErrLineTooLong) }, "ErrLineTooLong"},
		{"wrongid", func(err error) bool { return errors.Is(err, ErrProtocol) && !IsInvalidJSON(err) }, "ErrProtocol"},
		{"exit", func(err error) bool { return errors.Is(err, ErrExited) }, "ErrExited"},
		{"closeout", func(err error) bool { return errors.Is(err, ErrExited) }, "ErrExited"},
		{"rpcerror", func(err error) bool { var r *RPCError; return errors.As(err, &r) && r.Message == "model down" }, "RPCError"},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			a := startTestAgent(t, tc.mode)
			_, err := call(t, a, `{"input":1}`)
			if err == nil || !tc.check(err) {
				t.Fatalf("got %v, want %s", err, tc.what)
			}
		})
	}
}

func TestClosedStdoutMarksBroken(t *testing.T) {
	a := startTestAgent(t, "closeout")
	call(t, a, `{}`)
	select {
	case <-a.Broken():
	case <-time.After(10 * time.Second):
		t.Fatal("Broken not closed after the agent closed stdout")
	}
	select {
	case <-a.Done():
		t.Fatal("process should still be alive")
	default:
	}
}

func TestHangRespectsContext(t *testing.T) {
	a := startTestAgent(t, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := a.Call(ctx, json.RawMessage(`{}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	// The leftover reply problem: a later call must not succeed silently.
	a.SignalGroup(9)
	<-a.Done()
	if _, err := call(t, a, `{}`); err == nil {
		t.Fatal("call on a dead agent succeeded")
	}
}

func TestExitStatusReported(t *testing.T) {
	a := startTestAgent(t, "exit")
	call(t, a, `{}`)
	<-a.Done()
	if got := a.ExitStatus(); got != "exit status 3" {
		t.Fatalf("exit status %q", got)
	}
	if a.ExitedOK() {
		t.Fatal("ExitedOK for status 3")
	}
}

func TestStderrLinesReachHook(t *testing.T) {
	got := make(chan string, 10)
	startTestAgent(t, "echo", func(c *Config) { c.OnStderr = func(l string) { got <- l } })
	select {
	case l := <-got:
		if !strings.Contains(l, "test agent up") {
			t.Fatalf("stderr line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stderr line")
	}
}

func TestStartFailsClearly(t *testing.T) {
	_, err := Start(Config{ID: "x-1", Command: []string{"/nonexistent/agent"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/agent") {
		t.Fatalf("got %v", err)
	}
}

// A stderr line longer than stderrLineBytes is cut into pieces of that
// size, and the scanner's buffer starts small and grows to it.
func TestStderrLongLineIsCut(t *testing.T) {
	in := strings.Repeat("x", 10000) + "\nshort\n"
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Buffer(make([]byte, 256), stderrLineBytes)
	sc.Split(scanLinesTruncating)
	var lens []int
	for sc.Scan() {
		lens = append(lens, len(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []int{4096, 4096, 1808, 5}; !slices.Equal(lens, want) {
		t.Fatalf("line lengths %v, want %v", lens, want)
	}
}
