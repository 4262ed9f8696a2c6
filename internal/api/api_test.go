package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
	"github.com/resilienced/resilienced/internal/testagent"
)

// TestMain checks, after every test, that the package's tests left no
// goroutines or file descriptors behind (each test also checks its own).
func TestMain(m *testing.M) {
	agent.StartPollers() // the node's, for the life of the process
	agent.StartSpawners()
	code := leakcheck.Main(m)
	testagent.Cleanup()
	os.Exit(code)
}

// flaky is the example agent, built once for the package's tests.
func flaky(t testing.TB) string { return testagent.Flaky(t) }

type fixture struct {
	client *Client
	sock   *Socket
	store  *session.Store
	sup    *supervisor.Supervisor
	srv    *Server
}

// newFixture runs a real supervisor (agents in process groups) with a pool
// "echo" of flaky agents behind a real server on a unix socket in a temp dir.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	pc := config.DefaultPool()
	pc.Name = "echo"
	pc.Command = []string{"FLAKY", "-seed", "1"}
	pc.Replicas, pc.Spares = 2, 1
	pc.Contract.Schema = json.RawMessage(`{"type":"object","required":["answer"]}`)
	return newPoolFixture(t, nil, pc)
}

// newPoolFixture is newFixture with the given pools (the command "FLAKY"
// is the example agent) and a hook on every call's outcome.
func newPoolFixture(t *testing.T, onCall func(pool, outcome string, d time.Duration), pools ...config.Pool) *fixture {
	t.Helper()
	dir := t.TempDir()
	store, err := session.Open(context.Background(), session.Options{Path: filepath.Join(dir, "state.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	sup := supervisor.New(supervisor.Options{Store: store, OnCall: onCall, Logger: quiet})
	for i := range pools {
		if pools[i].Command[0] == "FLAKY" {
			pools[i].Command[0] = flaky(t)
		}
	}
	if err := sup.Apply(context.Background(), &config.Config{Pools: pools}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sup.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	sock, err := Listen(filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	mode := func() Mode { return Mode{Cgroup: "none", Notes: []string{"test"}} }
	srv := NewServer(Options{Supervisor: sup, Sessions: store, Version: "test", Logger: quiet, Mode: mode})
	go srv.Serve(sock)
	client := NewClient(sock.Path)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client.CloseIdleConnections() // its end of the kept connection
		srv.Shutdown(ctx)
		sup.Stop(ctx)
		store.Close()
	})
	return &fixture{client: client, sock: sock, store: store, sup: sup, srv: srv}
}

func TestStatusCarriesTheContractFields(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	resp, err := f.client.send(context.Background(), "GET", "/v1/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	for _, k := range []string{"node", "version", "mode", "pools", "agents"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status lacks %q", k)
		}
	}
	mode := raw["mode"].(map[string]any)
	for _, k := range []string{"cgroup", "ebpf", "notes"} {
		if _, ok := mode[k]; !ok {
			t.Errorf("status.mode lacks %q", k)
		}
	}
	pool := raw["pools"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "replicas", "active", "spares", "state", "restarts", "breaker"} {
		if _, ok := pool[k]; !ok {
			t.Errorf("status.pools[0] lacks %q", k)
		}
	}
	ag := raw["agents"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "pool", "pid", "state", "cgroup", "restarts", "started"} {
		if _, ok := ag[k]; !ok {
			t.Errorf("status.agents[0] lacks %q", k)
		}
	}
	if !strings.HasPrefix(ag["id"].(string), "echo-") {
		t.Errorf("agent id %v is not <pool>-<n>", ag["id"])
	}
}

func TestCallSessionAndIdempotency(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	ctx := context.Background()
	for i := range 2 {
		res, err := f.client.Call(ctx, "echo", CallRequest{Input: json.RawMessage(`"hi"`), Session: "conv"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Seq != uint64(i+1) {
			t.Fatalf("seq %d, want %d", res.Seq, i+1)
		}
	}
	d, err := f.client.Session(ctx, "", "conv")
	if err != nil {
		t.Fatal(err)
	}
	if d.Pool != "echo" || len(d.Context) != 2 {
		t.Fatalf("session %+v", d)
	}
	first, err := f.client.Call(ctx, "echo", CallRequest{Input: json.RawMessage(`1`), Key: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.client.Call(ctx, "echo", CallRequest{Input: json.RawMessage(`1`), Key: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || !bytes.Equal(again.Output, first.Output) {
		t.Fatalf("repeat with the same key ran again: %+v vs %+v", again, first)
	}
	// The key is bound to its request: another input, or the same input
	// on a session, is refused, and nothing runs.
	for _, req := range []CallRequest{
		{Input: json.RawMessage(`2`), Key: "k1"},
		{Input: json.RawMessage(`1`), Key: "k1", Session: "conv"},
	} {
		_, err := f.client.Call(ctx, "echo", req)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != CodeIdempotencyConflict {
			t.Fatalf("key k1 with %+v: err = %#v, want 409 %s", req, err, CodeIdempotencyConflict)
		}
	}
	if d, _ := f.client.Session(ctx, "", "conv"); len(d.Context) != 2 {
		t.Fatalf("the refused call reached session conv: %d exchanges, want 2", len(d.Context))
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	ctx := context.Background()
	post := func(path, body string) *Error {
		resp, err := f.client.send(ctx, "POST", path, json.RawMessage(body))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("POST %s %q succeeded", path, body)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("POST %s: %v is not an API error", path, err)
		}
		return e
	}
	if e := post("/v1/pools/nope/call", `{"input":1}`); e.Code != CodeUnknownPool || e.Status != 404 {
		t.Errorf("unknown pool: %+v", e)
	}
	if e := post("/v1/pools/echo/call", `{"input":1,"bogus":2}`); e.Code != CodeBadRequest || !strings.Contains(e.Message, "bogus") {
		t.Errorf("unknown field: %+v", e)
	}
	if e := post("/v1/pools/echo/call", `{"input":1,"timeout":"soon"}`); e.Code != CodeBadRequest || !strings.Contains(e.Message, "soon") {
		t.Errorf("bad timeout: %+v", e)
	}
	if e := post("/v1/pools/echo/scale", `{"replicas":-1}`); e.Status != 500 && e.Status != 400 {
		t.Errorf("negative scale: %+v", e)
	}
	// Malformed JSON, sent raw.
	resp, err := f.client.http.Post("http://x/v1/pools/echo/call", "application/json", strings.NewReader(`{"input":`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Error *Error }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 400 || body.Error == nil || body.Error.Code != CodeBadRequest {
		t.Errorf("malformed JSON: %d %+v", resp.StatusCode, body.Error)
	}
	big := `{"input":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	resp, err = f.client.http.Post("http://x/v1/pools/echo/call", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d", resp.StatusCode)
	}
}

func TestEventsStream(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	var kinds []string
	err := f.client.Events(context.Background(), EventQuery{Since: time.Minute}, func(ev Event) error {
		kinds = append(kinds, string(ev.Kind))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(kinds, ","), "ready") {
		t.Fatalf("no ready event in %v", kinds)
	}
	// Filters: by kind, by agent, the last N.
	var readies []Event
	f.client.Events(context.Background(), EventQuery{EventFilter: EventFilter{Kinds: []string{"ready"}}}, func(ev Event) error {
		readies = append(readies, ev)
		return nil
	})
	if len(readies) < 2 || slices.ContainsFunc(readies, func(ev Event) bool { return ev.Kind != "ready" }) {
		t.Fatalf("kind=ready gave %v", readies)
	}
	var one []Event
	f.client.Events(context.Background(), EventQuery{EventFilter: EventFilter{Agent: readies[0].Agent}, Tail: 1}, func(ev Event) error {
		one = append(one, ev)
		return nil
	})
	if len(one) != 1 || one[0].Agent != readies[0].Agent {
		t.Fatalf("agent=%s tail=1 gave %v", readies[0].Agent, one)
	}
	var none int
	f.client.Events(context.Background(), EventQuery{EventFilter: EventFilter{Pool: "no-such-pool"}}, func(Event) error { none++; return nil })
	if none != 0 {
		t.Fatalf("pool=no-such-pool gave %d events", none)
	}
	// Follow: a restart shows up live.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Event, 64)
	go f.client.Events(ctx, EventQuery{Follow: true}, func(ev Event) error { got <- ev; return nil })
	time.Sleep(100 * time.Millisecond)
	as, _ := f.client.Agents(ctx, "echo")
	// Only an active agent's replacement is a recovery; a spare's is not.
	var victim string
	for _, a := range as {
		if a.State == supervisor.AgentActive {
			victim = a.ID
			break
		}
	}
	if err := f.client.RestartAgent(ctx, victim); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-got:
			if ev.Kind == "recovered" && ev.Agent == victim {
				return
			}
		case <-ctx.Done():
			t.Fatal("no recovered event streamed")
		}
	}
}

func TestPeerWithoutPermissionIsRefused(t *testing.T) {
	leakcheck.Check(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	f := newFixture(t)
	// Let anyone reach the socket so that the peer check is what refuses.
	for d := filepath.Dir(f.sock.Path); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(f.sock.Path, 0o666)
	// The test binary lives in a private build dir: give "nobody" a copy.
	exe, _ := os.Executable()
	pub, err := os.MkdirTemp("", "resilient-peer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	os.Chmod(pub, 0o755)
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pub, "api.test"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(pub, "api.test"), "-test.run", "^TestHelperConnect$")
	cmd.Dir = pub
	cmd.Env = append(os.Environ(), "RESILIENT_TEST_CONNECT="+f.sock.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "STATUS 403") || !strings.Contains(string(out), "permission denied: user nobody") {
		t.Fatalf("unprivileged peer was not refused: %s", out)
	}
	if !strings.Contains(string(out), "STREAM 403") {
		t.Fatalf("unprivileged peer's call stream was not refused: %s", out)
	}
}

// TestHelperConnect runs in a child as another user (see above).
func TestHelperConnect(t *testing.T) {
	leakcheck.Check(t)
	path := os.Getenv("RESILIENT_TEST_CONNECT")
	if path == "" {
		t.Skip("helper for TestPeerWithoutPermissionIsRefused")
	}
	_, err := NewClient(path).Status(context.Background())
	var e *Error
	if errors.As(err, &e) {
		fmt.Printf("STATUS %d %s\n", e.Status, e.Message)
	} else {
		fmt.Printf("ERR %v\n", err)
	}
	// A call stream is refused before it starts, not left waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := NewClient(path).CallStream(ctx, "echo", StreamOptions{})
	if errors.As(err, &e) {
		fmt.Printf("STREAM %d %s\n", e.Status, e.Message)
	} else {
		if st != nil {
			st.Close()
		}
		fmt.Printf("STREAM ERR %v\n", err)
	}
}

func TestListenRefusesNonSocketAndLiveSocket(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	s, err := Listen(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(s.Path); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("live socket: %v", err)
	}
}

func TestClientReportsUnreachableDaemon(t *testing.T) {
	leakcheck.Check(t)
	_, err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Status(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("got %v", err)
	}
}

// FuzzCallRequest: any body gets a JSON answer (an error or a result),
// never a panic or a non-JSON reply.
func FuzzCallRequest(f *testing.F) {
	f.Add([]byte(`{"input":1}`))
	f.Add([]byte(`{"input":`))
	f.Add([]byte(`{"input":1,"timeout":"-1s"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("\x00\xff"))
	sup := supervisor.New(supervisor.Options{})
	f.Cleanup(func() { sup.Stop(context.Background()) }) // its background loops
	srv := NewServer(Options{Supervisor: sup})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/pools/nope/call", bytes.NewReader(body))
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, PeerCred{UID: 0}))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("non-JSON answer %q to %q", w.Body.Bytes(), body)
		}
		if w.Code < 400 {
			t.Fatalf("status %d for a call on an unknown pool", w.Code)
		}
	})
}
