package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/session"
)

// The test binary doubles as an agent when RESILIENT_TEST_AGENT is set.
// What it does on a call is told by the call's input, so one agent binary
// covers every misbehaviour: {"op": "echo" | "crash" | "hang" | "garbage" |
// "bad" | "bad-unless-feedback" | "fork" | "slow" | "progress"}.
func TestMain(m *testing.M) {
	if os.Getenv("RESILIENT_TEST_AGENT") != "" {
		runTestAgent()
		os.Exit(0)
	}
	agent.StartPollers() // the node's, for the life of the process
	agent.StartSpawners()
	os.Exit(leakcheck.Main(m))
}

func runTestAgent() {
	if os.Getenv("TEST_EXIT_AT_START") != "" {
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "can't open file '/srv/agents/agent.py': [Errno 2] No such file or directory")
		os.Exit(7)
	}
	if os.Getenv("TEST_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM) // a stop waits for its timeout, then kills
	}
	if os.Getenv("TEST_ALLOC") != "" {
		// A memory hog: grows until the cgroup's limit kills it.
		var keep [][]byte
		for {
			b := make([]byte, 16<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var req struct {
			ID     *uint64 `json:"id"`
			Method string  `json:"method"`
			Params struct {
				Context  []json.RawMessage `json:"context"`
				Input    struct{ Op, Text string }
				Feedback string `json:"feedback"`
			} `json:"params"`
		}
		if json.Unmarshal(in.Bytes(), &req) != nil || req.ID == nil {
			continue
		}
		reply := func(result string) {
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", *req.ID, result)
			out.Flush()
		}
		if req.Method != "task/run" {
			reply(`{}`)
			continue
		}
		good := func() {
			b, _ := json.Marshal(map[string]any{"answer": req.Params.Input.Text, "context_len": len(req.Params.Context), "feedback_seen": req.Params.Feedback != "", "pid": os.Getpid()})
			reply(string(b))
		}
		switch req.Params.Input.Op {
		case "crash":
			os.Exit(1)
		case "hang":
			time.Sleep(time.Hour)
		case "slow":
			time.Sleep(300 * time.Millisecond)
			good()
		case "progress":
			// Two progress reports under the request's id, as a native
			// agent may send them, then the answer.
			for i := 1; i <= 2; i++ {
				fmt.Fprintf(out, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%d,"progress":%d,"total":2}}`+"\n", *req.ID, i)
			}
			good()
		case "garbage":
			fmt.Fprintln(out, "{definitely not json")
			out.Flush()
		case "bad":
			reply(`{"answer": 42}`)
		case "bad-on-pid", "garbage-on-pid", "crash-on-pid":
			// Misbehaves only in the agent whose pid is the text.
			switch {
			case req.Params.Input.Text != strconv.Itoa(os.Getpid()):
				good()
			case req.Params.Input.Op == "bad-on-pid":
				reply(`{"answer": 42}`)
			case req.Params.Input.Op == "crash-on-pid":
				os.Exit(1)
			default:
				fmt.Fprintln(out, "{not json either")
				out.Flush()
			}
		case "invalid-params":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32602,"message":"Invalid params: text must be a string"}}`+"\n", *req.ID)
			out.Flush()
		case "unavailable-unless-fixed":
			// Its dependency is down until the file the test names exists.
			if _, err := os.Stat(os.Getenv("TEST_FIXED_FLAG")); err != nil {
				fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32030,"message":"model API unavailable: 503"}}`+"\n", *req.ID)
				out.Flush()
			} else {
				good()
			}
		case "bad-unless-fixed":
			// Broken (its upstream is down, say) until the file the test
			// names exists.
			if _, err := os.Stat(os.Getenv("TEST_FIXED_FLAG")); err != nil {
				reply(`{"answer": 42}`)
			} else {
				good()
			}
		case "bad-unless-feedback":
			if req.Params.Feedback == "" {
				reply(`{"answer": 42}`)
			} else {
				good()
			}
		case "oom-child":
			// A child in the same cgroup eats memory: the OOM killer takes
			// it, and the supervisor must notice the agent's cgroup had an
			// OOM kill.
			exe, _ := os.Executable()
			c := exec.Command(exe)
			c.Env = append(os.Environ(), "TEST_ALLOC=1")
			c.Start()
			go c.Wait()
			good()
		case "fork":
			// A grandchild that escapes the process group and the parent.
			exe, _ := os.Executable()
			p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "(sleep 1000 &) ; sleep 1000"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{Setsid: true}})
			_ = exe
			if err == nil {
				p.Release()
			}
			good()
		default:
			good()
		}
	}
}

var answerSchema = json.RawMessage(`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"}}}`)

// testPool returns a pool config that runs the test binary as its agent.
func testPool(t testing.TB, name string, mod ...func(*config.Pool)) config.Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := config.DefaultPool()
	pc.Name = name
	pc.Command = []string{exe}
	pc.Env = map[string]string{"RESILIENT_TEST_AGENT": "1"}
	pc.Replicas = 2
	pc.Spares = 1
	pc.Contract.Schema = answerSchema
	pc.Contract.Deadline = 2 * time.Second
	pc.PingInterval = 0
	pc.ShutdownTimeout = 500 * time.Millisecond
	pc.Backoff = config.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, ResetAfter: time.Minute}
	for _, f := range mod {
		f(&pc)
	}
	return pc
}

type harness struct {
	t     testing.TB
	sup   *Supervisor
	store *session.Store
	cg    *cgroup.Manager

	mu     sync.Mutex
	events []Event
}

// newHarness starts a supervisor over real processes: in cgroups when the
// test runs as root on a cgroup2 host, in process groups otherwise.
func newHarness(t testing.TB, cfg *config.Config) *harness {
	t.Helper()
	return newHarnessIn(t, cfg, true)
}

// newHarnessIn is newHarness, with agents in process groups rather than
// cgroups unless cgroups is set.
func newHarnessIn(t testing.TB, cfg *config.Config, cgroups bool) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, cgroups, nil)
}

// newHarnessWith is newHarnessIn with options mod changes (a Keeper, say).
func newHarnessWith(t testing.TB, cfg *config.Config, cgroups bool, mod func(*Options)) *harness {
	t.Helper()
	// Registered first, so it runs last: after the supervisor stopped and
	// everything it holds should be gone.
	leakcheck.Check(t)
	h := &harness{t: t}
	store, err := session.Open(context.Background(), session.Options{Path: t.TempDir() + "/state.db", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	opts := Options{Store: store, OnEvent: h.record}
	if cgroups && os.Geteuid() == 0 {
		m, err := cgroup.Open(cgroup.Options{Name: fmt.Sprintf("rtest-sup-%d", time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		h.cg = m
		if m.Mode() != cgroup.ModeNone {
			opts.Sandboxes = CgroupSandboxes(m)
		}
	}
	if mod != nil {
		mod(&opts)
	}
	h.sup = New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		h.sup.Stop(ctx)
		if h.cg != nil {
			if err := h.cg.Close(); err != nil {
				t.Errorf("cgroup manager close (something leaked?): %v", err)
			}
		}
		store.Close()
	})
	if err := h.sup.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) record(ev Event) {
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

func (h *harness) eventsOf(kind EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, ev := range h.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// eventOf returns the time of the last event of kind for agent, or zero.
func (h *harness) eventOf(kind EventKind, agent string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.events) - 1; i >= 0; i-- {
		if ev := h.events[i]; ev.Kind == kind && ev.Agent == agent {
			return ev.Time
		}
	}
	return time.Time{}
}

// waitFor polls cond until it holds or 20 s pass.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) ready() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.sup.WaitReady(ctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) call(pool, session string, input string) (*CallResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return h.sup.Call(ctx, pool, CallRequest{Input: json.RawMessage(input), Session: session})
}

func (h *harness) mustCall(pool, session, input string) map[string]any {
	h.t.Helper()
	res, err := h.call(pool, session, input)
	if err != nil {
		h.t.Fatalf("call %s: %v", input, err)
	}
	var m map[string]any
	if err := json.Unmarshal(res.Output, &m); err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) agentsIn(pool string, st AgentState) []AgentStatus {
	as, err := h.sup.Agents(pool)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []AgentStatus
	for _, a := range as {
		if a.State == st {
			out = append(out, a)
		}
	}
	return out
}

func cfgOf(pools ...config.Pool) *config.Config {
	return &config.Config{Pools: pools}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
