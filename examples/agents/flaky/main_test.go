package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/contract"
)

// flakyBin is the agent built once by TestMain.
var flakyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flaky-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flakyBin = filepath.Join(dir, "flaky")
	// go test puts its own go first in PATH.
	build := exec.Command("go", "build", "-o", flakyBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the agent:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// replyWait bounds every read so that a broken agent fails the test instead
// of hanging it. It is a guard, not a measurement.
const replyWait = 10 * time.Second

// proc is an agent process driven over pipes.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte // stdout, line by line; closed at EOF
	stderr *syncBuffer
	waited chan error
	nextID int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1024),
		stderr: &syncBuffer{}, waited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(p.lines)
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		<-readDone // Wait closes stdout: read everything first
		p.waited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // the process we started, by its pid
		<-p.waited
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(name), p.stderr.String())
		}
	})
	return p
}

func startFlaky(t *testing.T, args ...string) *proc {
	return start(t, flakyBin, args...)
}

func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("write %s: %v", line, err)
	}
}

// recv returns the next stdout line; ok is false at EOF.
func (p *proc) recv() (line []byte, ok bool) {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		return line, ok
	case <-time.After(replyWait):
		p.t.Fatalf("no reply within %v; stderr:\n%s", replyWait, p.stderr.String())
		return nil, false
	}
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (p *proc) recvResponse() response {
	p.t.Helper()
	line, ok := p.recv()
	if !ok {
		p.t.Fatalf("agent closed stdout; stderr:\n%s", p.stderr.String())
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		p.t.Fatalf("reply %q is not JSON: %v", line, err)
	}
	if r.JSONRPC != "2.0" {
		p.t.Fatalf("reply %s: jsonrpc is not 2.0", line)
	}
	return r
}

// request sends a request with a fresh id and returns the reply, checking
// that it carries the same id.
func (p *proc) request(method string, params any) response {
	p.t.Helper()
	p.nextID++
	p.sendRequest(p.nextID, method, params)
	r := p.recvResponse()
	if string(r.ID) != strconv.Itoa(p.nextID) {
		p.t.Fatalf("%s: reply id %s, want %d", method, r.ID, p.nextID)
	}
	return r
}

func (p *proc) sendRequest(id int, method string, params any) {
	p.t.Helper()
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(string(b))
}

func (p *proc) handshake() {
	p.t.Helper()
	r := p.request("initialize", map[string]any{"agent": "a1", "pool": "test", "protocol": "resilient/1"})
	if r.Error != nil || len(r.Result) == 0 {
		p.t.Fatalf("initialize: %+v", r)
	}
}

type exchange struct {
	Input  any `json:"input"`
	Output any `json:"output"`
}

func newCall(input any, context []exchange, feedback string) map[string]any {
	if context == nil {
		context = []exchange{}
	}
	m := map[string]any{"session": nil, "context": context, "input": input}
	if feedback != "" {
		m["feedback"] = feedback
	}
	return m
}

type result struct {
	Answer       any  `json:"answer"`
	ContextLen   int  `json:"context_len"`
	FeedbackSeen bool `json:"feedback_seen"`
	Usage        struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
}

func (p *proc) exitCode() int {
	p.t.Helper()
	select {
	case err := <-p.waited:
		p.waited <- err // for Cleanup
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			p.t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(replyWait):
		p.t.Fatalf("agent did not exit; stderr:\n%s", p.stderr.String())
		return -1
	}
}

// protocolSuite checks the native protocol on any agent that echoes its
// input: both example agents must pass it.
func protocolSuite(t *testing.T, p *proc) {
	init := p.request("initialize", map[string]any{"agent": "a1", "pool": "test", "protocol": "resilient/1"})
	var ir struct {
		Protocol string `json:"protocol"`
	}
	if init.Error != nil || json.Unmarshal(init.Result, &ir) != nil || ir.Protocol != "resilient/1" {
		t.Fatalf("initialize: result %s, error %+v", init.Result, init.Error)
	}

	if r := p.request("ping", nil); r.Error != nil || string(r.Result) != "{}" {
		t.Errorf("ping: result %s, error %+v; want {}", r.Result, r.Error)
	}

	// A string input is echoed as is, and the context is counted.
	ctx := []exchange{{"q1", "a1"}, {"q2", map[string]any{"x": 1}}}
	r := p.request("task/run", newCall("héllo \"world\"\n", ctx, ""))
	var res result
	if r.Error != nil || json.Unmarshal(r.Result, &res) != nil {
		t.Fatalf("task/run: result %s, error %+v", r.Result, r.Error)
	}
	if res.Answer != "héllo \"world\"\n" || res.ContextLen != 2 || res.FeedbackSeen {
		t.Errorf("task/run: got %+v, want the input echoed, context_len 2, no feedback", res)
	}
	if res.Usage.TotalTokens <= 0 {
		t.Errorf("task/run: usage.total_tokens = %d, want > 0", res.Usage.TotalTokens)
	}

	// Any other input is echoed as its JSON text; feedback is noticed.
	r = p.request("task/run", newCall(map[string]any{"q": []int{1, 2}}, nil, "answer must be a string"))
	res = result{}
	if r.Error != nil || json.Unmarshal(r.Result, &res) != nil {
		t.Fatalf("task/run: result %s, error %+v", r.Result, r.Error)
	}
	if res.Answer != `{"q":[1,2]}` || res.ContextLen != 0 || !res.FeedbackSeen {
		t.Errorf("task/run with feedback: got %+v", res)
	}

	// Notifications get no reply: the next line answers the ping after it.
	p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	p.send(`{"jsonrpc":"2.0","method":"no/such/method","params":{}}`)
	if r := p.request("ping", nil); r.Error != nil {
		t.Errorf("ping after notifications: %+v", r.Error)
	}

	if r := p.request("no/such/method", map[string]any{}); r.Error == nil || r.Error.Code != -32601 {
		t.Errorf("unknown method: %+v, want error -32601", r)
	}
	if r := p.request("task/run", map[string]any{"context": []any{}}); r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("call without input: %+v, want error -32602", r)
	}

	if r := p.request("task/run", []int{1}); r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("call with array params: %+v, want error -32602", r)
	}

	p.send(`{"jsonrpc":"2.0","id":99,"method":"ping"`) // truncated
	if r := p.recvResponse(); r.Error == nil || r.Error.Code != -32700 || string(r.ID) != "null" {
		t.Errorf("invalid JSON: %+v (id %s), want error -32700 with id null", r.Error, r.ID)
	}
	p.send("\xff\xfe not UTF-8")
	if r := p.recvResponse(); r.Error == nil || r.Error.Code != -32700 {
		t.Errorf("bad bytes: %+v, want error -32700", r.Error)
	}

	// Still serving after the errors.
	if r := p.request("ping", nil); r.Error != nil {
		t.Errorf("ping after errors: %+v", r.Error)
	}

	p.stdin.Close()
	if _, ok := p.recv(); ok {
		t.Error("agent wrote after stdin closed")
	}
	if code := p.exitCode(); code != 0 {
		t.Errorf("exit code at EOF = %d, want 0", code)
	}
}

func TestProtocol(t *testing.T) {
	protocolSuite(t, startFlaky(t, "-seed", "1"))
}

func TestPythonAgent(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the Python example agent cannot run")
	}
	script, err := filepath.Abs("../python/agent.py")
	if err != nil {
		t.Fatal(err)
	}
	protocolSuite(t, start(t, python, script))
}

func TestLargeRequest(t *testing.T) {
	// Larger than the agent's read buffer.
	p := startFlaky(t)
	p.handshake()
	big := strings.Repeat("y", 300<<10)
	ctx := make([]exchange, 1000)
	for i := range ctx {
		ctx[i] = exchange{Input: i, Output: "out"}
	}
	r := p.request("task/run", newCall(big, ctx, ""))
	var res result
	if r.Error != nil || json.Unmarshal(r.Result, &res) != nil {
		t.Fatalf("task/run: error %+v", r.Error)
	}
	if res.Answer != big || res.ContextLen != 1000 {
		t.Errorf("answer of %d bytes, context_len %d; want %d bytes, 1000", len(fmt.Sprint(res.Answer)), res.ContextLen, len(big))
	}
	if res.Usage.TotalTokens < len(big)/4 {
		t.Errorf("usage.total_tokens = %d, want at least %d", res.Usage.TotalTokens, len(big)/4)
	}
}

func TestMethodFlag(t *testing.T) {
	p := startFlaky(t, "-method", "agent/do")
	p.handshake()
	if r := p.request("task/run", newCall("x", nil, "")); r.Error == nil || r.Error.Code != -32601 {
		t.Errorf("task/run with -method agent/do: %+v, want -32601", r)
	}
	if r := p.request("agent/do", newCall("x", nil, "")); r.Error != nil {
		t.Errorf("agent/do: %+v", r.Error)
	}
}

// answerContract is the schema a pool of echo agents would declare.
func answerContract(t *testing.T, maxBytes int64) *contract.Contract {
	t.Helper()
	c, err := contract.Compile(contract.Spec{
		Schema:         []byte(`{"type":"object","required":["answer","context_len"],"properties":{"answer":{"type":"string"},"context_len":{"type":"integer"}}}`),
		MaxOutputBytes: maxBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHallucinate(t *testing.T) {
	c := answerContract(t, 0)
	p := startFlaky(t, "-hallucinate", "1")
	p.handshake()
	for i := range 4 {
		r := p.request("task/run", newCall(fmt.Sprint("q", i), nil, ""))
		if r.Error != nil {
			t.Fatalf("call %d: %+v", i, r.Error)
		}
		v := c.Check(r.Result)
		if v == nil || v.Code != contract.CodeSchema {
			t.Errorf("call %d: result %s passed the contract (%v), want a schema violation", i, r.Result, v)
		}
	}
	// stderr is complete once the agent has exited.
	p.stdin.Close()
	p.exitCode()
	if !strings.Contains(p.stderr.String(), "flaky: hallucinating on call 4") {
		t.Errorf("stderr does not log the faults:\n%s", p.stderr.String())
	}
	// Without faults the same contract holds.
	q := startFlaky(t)
	q.handshake()
	if r := q.request("task/run", newCall("q", nil, "")); c.Check(r.Result) != nil {
		t.Errorf("echo result %s breaks the contract: %v", r.Result, c.Check(r.Result))
	}
}

func TestOversize(t *testing.T) {
	c := answerContract(t, 4096)
	p := startFlaky(t, "-oversize", "1", "-oversize-bytes", "5000")
	p.handshake()
	r := p.request("task/run", newCall("q", nil, ""))
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	if len(r.Result) <= 5000 || !json.Valid(r.Result) {
		t.Fatalf("result of %d bytes, want valid JSON over 5000 bytes", len(r.Result))
	}
	if v := c.Check(r.Result); v == nil || v.Code != contract.CodeTooLarge {
		t.Errorf("contract: %v, want too_large", v)
	}
}

func TestInvalidJSON(t *testing.T) {
	p := startFlaky(t, "-invalid-json", "1")
	p.handshake()
	p.sendRequest(7, "task/run", newCall("q", nil, ""))
	line, ok := p.recv()
	if !ok {
		t.Fatal("no reply")
	}
	if json.Valid(line) {
		t.Errorf("reply %q is valid JSON", line)
	}
	// The agent carries on: the next line is answered.
	p.sendRequest(8, "ping", nil)
	if r := p.recvResponse(); string(r.ID) != "8" || r.Error != nil {
		t.Errorf("ping after invalid output: %+v", r)
	}
}

func TestCrash(t *testing.T) {
	p := startFlaky(t, "-crash", "1")
	p.handshake()
	if r := p.request("ping", nil); r.Error != nil {
		t.Fatal(r.Error) // pings are not calls: no fault
	}
	p.sendRequest(10, "task/run", newCall("q", nil, ""))
	if line, ok := p.recv(); ok {
		t.Errorf("crashing agent replied %q", line)
	}
	if code := p.exitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(p.stderr.String(), "crashing on call 1") {
		t.Errorf("stderr does not log the crash:\n%s", p.stderr.String())
	}
}

func TestFailInit(t *testing.T) {
	p := startFlaky(t, "-fail-init")
	// Nothing is sent: the agent may be gone before a write could land.
	if line, ok := p.recv(); ok {
		t.Errorf("agent with -fail-init replied %q", line)
	}
	if code := p.exitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

func TestHang(t *testing.T) {
	p := startFlaky(t, "-hang", "1")
	p.handshake()
	p.sendRequest(2, "task/run", newCall("q", nil, ""))
	p.sendRequest(3, "ping", nil)
	// Closing stdin is the only way out of a hang (besides a kill): if the
	// agent exits 0 at EOF without a word on stdout, it answered nothing.
	deadline := time.Now().Add(replyWait)
	for !strings.Contains(p.stderr.String(), "hanging on call 1") {
		if time.Now().After(deadline) {
			t.Fatalf("no hang logged; stderr:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stdin.Close()
	if line, ok := p.recv(); ok {
		t.Errorf("hung agent replied %q", line)
	}
	if code := p.exitCode(); code != 0 {
		t.Errorf("exit code %d, want 0 once stdin closed", code)
	}
}

func TestLeak(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc: cannot read the agent's RSS")
	}
	const perCall, calls = 4 << 20, 10
	p := startFlaky(t, "-leak", strconv.Itoa(perCall))
	p.handshake()
	before := rssBytes(t, p.cmd.Process.Pid)
	for i := range calls {
		if r := p.request("task/run", newCall(i, nil, "")); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	after := rssBytes(t, p.cmd.Process.Pid)
	if grown := after - before; grown < perCall*calls*9/10 {
		t.Errorf("RSS grew by %d bytes over %d calls, want at least %d", grown, calls, perCall*calls*9/10)
	}
}

func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// faultSequence runs calls and classifies each reply.
func faultSequence(t *testing.T, c *contract.Contract, args ...string) []string {
	p := startFlaky(t, args...)
	p.handshake()
	var seq []string
	for i := range 60 {
		p.sendRequest(100+i, "task/run", newCall(fmt.Sprint("q", i), nil, ""))
		line, ok := p.recv()
		if !ok {
			t.Fatal("agent closed stdout")
		}
		var r response
		switch {
		case json.Unmarshal(line, &r) != nil:
			seq = append(seq, "invalid-json")
		case r.Error != nil:
			t.Fatalf("call %d: %+v", i, r.Error)
		default:
			if v := c.Check(r.Result); v != nil {
				seq = append(seq, string(v.Code))
			} else {
				seq = append(seq, "ok")
			}
		}
	}
	return seq
}

func TestSeedReproducesFaults(t *testing.T) {
	c := answerContract(t, 1000)
	args := []string{"-seed", "42", "-hallucinate", "0.3", "-invalid-json", "0.2", "-oversize", "0.1",
		"-oversize-bytes", "2000", "-latency-jitter", "100us"}
	first := faultSequence(t, c, args...)
	second := faultSequence(t, c, args...)
	if strings.Join(first, " ") != strings.Join(second, " ") {
		t.Errorf("same seed, different faults:\n%v\n%v", first, second)
	}
	counts := map[string]int{}
	for _, s := range first {
		counts[s]++
	}
	for _, want := range []string{"ok", "schema", "invalid-json", "too_large"} {
		if counts[want] == 0 {
			t.Errorf("no %q in 60 calls: %v", want, counts)
		}
	}
	// Jitter draws from its own stream: turning it off keeps the faults.
	noJitter := faultSequence(t, c, args[:len(args)-2]...)
	if strings.Join(first, " ") != strings.Join(noJitter, " ") {
		t.Errorf("-latency-jitter changed the fault sequence:\n%v\n%v", first, noJitter)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-crash", "1.5"}, {"-hang", "-0.1"}, {"-leak", "-1"}, {"-method", ""}, {"extra"}} {
		p := startFlaky(t, args...)
		if code := p.exitCode(); code != 2 {
			t.Errorf("flaky %v: exit code %d, want 2", args, code)
		}
	}
}

// BenchmarkCall measures calls over pipes beside the floor: the same line
// echoed back by cat over the same kind of pipes. "roundtrip" sends one call
// and waits for its reply (latency, dominated by scheduling); "pipelined"
// keeps the pipe full (throughput, what the agent itself costs).
func BenchmarkCall(b *testing.B) {
	call := []byte(`{"jsonrpc":"2.0","id":1,"method":"task/run","params":{"session":"s1","context":[{"input":"q0","output":{"answer":"a0"}}],"input":"what is the capital of France?"}}` + "\n")
	cat, err := exec.LookPath("cat")
	if err != nil {
		b.Skip("no cat for the baseline")
	}
	for _, mode := range []string{"roundtrip", "pipelined"} {
		var baseline float64
		for _, tc := range []struct{ name, bin string }{{"baseline=cat", cat}, {"flaky", flakyBin}} {
			b.Run(mode+"/"+tc.name, func(b *testing.B) {
				ns, cpu := benchPipe(b, tc.bin, call, mode == "pipelined")
				b.ReportMetric(1e9/ns, "calls/s")
				b.ReportMetric(cpu, "agent-cpu-ns/call")
				if tc.name == "baseline=cat" {
					baseline = ns
				} else if baseline > 0 {
					b.ReportMetric(ns/baseline, "x-cat")
				}
			})
		}
	}
}

// benchPipe runs b.N calls through bin and returns the wall time per call
// and the CPU time the agent process used per call (start and exit
// included), which a busy machine does not inflate.
func benchPipe(b *testing.B, bin string, call []byte, pipelined bool) (wallNs, cpuNs float64) {
	cmd := exec.Command(bin)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(stdout, 1<<20)
	calls := 0
	wall := func() float64 {
		stdin.Close()
		cmd.Wait()
		ps := cmd.ProcessState
		cpuNs = float64((ps.UserTime() + ps.SystemTime()).Nanoseconds()) / float64(max(calls, 1))
		return float64(b.Elapsed().Nanoseconds()) / float64(max(calls, 1))
	}
	if !pipelined {
		for b.Loop() {
			if _, err := stdin.Write(call); err != nil {
				b.Fatal(err)
			}
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
			calls++
		}
		return wall(), cpuNs
	}
	n := b.N
	b.ResetTimer()
	go func() {
		w := bufio.NewWriterSize(stdin, 64<<10)
		for range n {
			w.Write(call)
		}
		w.Flush()
	}()
	for range n {
		if _, err := r.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	calls = n
	return wall(), cpuNs
}

// TestPipeStdinIsPolled checks that the agent reads a pipe stdin through
// Go's netpoller (non-blocking), so that an idle agent does not keep the
// runtime's sysmon polling (stdin.go), and that it still reads a stdin
// that is a regular file.
func TestPipeStdinIsPolled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/fdinfo")
	}
	p := startFlaky(t)
	p.handshake()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/0", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var flags int64 = -1
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			flags, err = strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatalf("fdinfo flags %q: %v", v, err)
			}
		}
	}
	if flags < 0 || flags&syscall.O_NONBLOCK == 0 {
		t.Fatalf("stdin flags %o (fdinfo %q): want O_NONBLOCK on a pipe", flags, b)
	}
	r := p.request("task/run", newCall("x", nil, ""))
	if r.Error != nil {
		t.Fatalf("call after the handshake: %+v", r.Error)
	}

	f := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(f, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"agent":"a1","pool":"test","protocol":"resilient/1"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(flakyBin)
	cmd.Stdin = in
	out, err := cmd.Output()
	if err != nil || !bytes.Contains(out, []byte(`"id":1`)) {
		t.Fatalf("a regular file as stdin: %v, out %q", err, out)
	}
}
