// Command flaky is an example agent for resilienced that fails on purpose.
//
// It speaks the native agent protocol (JSON-RPC 2.0, one JSON object per
// line on stdin/stdout, logs on stderr; the docstring of
// examples/agents/python/agent.py describes it) and answers each call by
// echoing its input:
//
//	{"answer": "<input, or its JSON text>", "context_len": N, "agent": "<name>", "call": C,
//	 "usage": {"total_tokens": K}, "feedback_seen": true}
//
// where N is the number of context entries received, C counts calls in
// this process from 1, K is ⌈request bytes/4⌉ and feedback_seen is present
// only when the call carried feedback. With every rate at 0 it is a fast,
// well-behaved echo agent.
//
// Flags inject faults per call, each with its own rate in [0, 1]: -crash
// (exit 1 mid-call), -hang (stop answering), -invalid-json (a reply line that
// is not JSON), -oversize (a result larger than -oversize-bytes) and
// -hallucinate (a result that breaks the usual schema: a number answer or no
// answer). One random draw per call picks at most one fault, so the rates are
// exact when they sum to at most 1; earlier faults in that list win beyond.
// -seed makes the fault sequence reproducible; every fault is logged on
// stderr with its call number.
//
// Usage:
//
//	flaky [-hallucinate 0.05] [-invalid-json R] [-oversize R] [-oversize-bytes N]
//	      [-crash R] [-hang R] [-latency D] [-latency-jitter D] [-leak BYTES]
//	      [-startup-delay D] [-fail-init] [-seed N] [-method task/run]
//	      [-latency-ramp D] [-error-ramp D] [-error-start R] [-error-limit R]
//	      [-ramp-after D] [-ramp-after-jitter D]
//
// Slow-burn faults degrade the agent steadily until it fails, with
// precursors the daemon can see (see slowburn.go): -latency-ramp makes every
// call slower by D per second, -error-ramp makes failing syscalls and error
// lines snowball until the agent exits 1, and -leak leaks per call; with
// -ramp-after they start that long after the first call (plus a seeded
// share of -ramp-after-jitter per agent).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// JSON-RPC 2.0 error codes.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeUpstream       = -32000
	codeUnavailable    = -32030 // docs/PROTOCOL.md: a dependency is unavailable, not this agent's fault
	codeBadToken       = -32001
)

type config struct {
	hallucinate, invalidJSON, oversize, crash, hang float64

	oversizeBytes   int
	latency, jitter time.Duration
	leak            int
	startupDelay    time.Duration
	failInit        bool
	seed            uint64
	method          string
	slow            float64 // rate of calls slowed by slowLatency
	slowLatency     time.Duration
	upstream        string // HOST:PORT dialled on every call
	unavailable     bool   // an unreachable upstream is answered with codeUnavailable
	verifyJWT       bool

	// Slow-burn faults (slowburn.go).
	rampAfter, rampJitter  time.Duration
	latencyRamp            time.Duration // extra delay per second since the onset
	errorRamp              time.Duration // doubling time of the failing syscalls
	errorStart, errorLimit float64       // failing syscalls/s at the onset, and at which it exits
}

func main() {
	os.Exit(run(os.Args[1:], pollableStdin(), os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("flaky", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&c.hallucinate, "hallucinate", 0, "rate of results that break the schema (number answer or no answer)")
	fs.Float64Var(&c.invalidJSON, "invalid-json", 0, "rate of reply lines that are not JSON")
	fs.Float64Var(&c.oversize, "oversize", 0, "rate of results larger than -oversize-bytes")
	fs.IntVar(&c.oversizeBytes, "oversize-bytes", 2<<20, "size of the answer in an oversized result")
	fs.Float64Var(&c.crash, "crash", 0, "rate of calls that make the agent exit 1")
	fs.Float64Var(&c.hang, "hang", 0, "rate of calls after which the agent stops answering")
	fs.DurationVar(&c.latency, "latency", 0, "delay added to every call")
	fs.DurationVar(&c.jitter, "latency-jitter", 0, "random extra delay in [0, D) added to every call")
	fs.IntVar(&c.leak, "leak", 0, "bytes of memory to allocate and keep on every call")
	fs.DurationVar(&c.startupDelay, "startup-delay", 0, "delay before reading the first message")
	fs.BoolVar(&c.failInit, "fail-init", false, "exit 1 at start, before the handshake")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed for faults and jitter (0: from the clock)")
	fs.StringVar(&c.method, "method", "task/run", "name of the call method")
	fs.Float64Var(&c.slow, "slow", 0, "rate of calls that take -slow-latency longer (the agent slows down now and then)")
	fs.DurationVar(&c.slowLatency, "slow-latency", 500*time.Millisecond, "the extra delay of a slow call")
	fs.StringVar(&c.upstream, "upstream", "", "HOST:PORT of a TCP echo service dialled on every call (like a vector database); a call fails when it cannot be reached")
	fs.BoolVar(&c.unavailable, "upstream-unavailable", false, "answer an unreachable -upstream with -32030 (a dependency is unavailable: retried elsewhere, no agent replaced) instead of -32000")
	fs.BoolVar(&c.verifyJWT, "verify-jwt", false, "reject an input whose JWT-shaped strings do not carry a valid HS256 signature by the demo key")
	fs.DurationVar(&c.rampAfter, "ramp-after", 0, "slow-burn faults (-latency-ramp, -error-ramp, -leak) start this long after the first call")
	fs.DurationVar(&c.rampJitter, "ramp-after-jitter", 0, "plus a share of this, drawn from -seed and the agent's name")
	fs.DurationVar(&c.latencyRamp, "latency-ramp", 0, "every call's delay grows by this per second since the onset (until calls miss the deadline)")
	fs.DurationVar(&c.errorRamp, "error-ramp", 0, "failing syscalls and error lines double every D from the onset, until -error-limit, when the agent exits 1")
	fs.Float64Var(&c.errorStart, "error-start", 2, "failing syscalls per second at the onset of -error-ramp")
	fs.Float64Var(&c.errorLimit, "error-limit", 1000, "failing syscalls per second at which -error-ramp makes the agent give up and exit 1")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for name, r := range map[string]float64{
		"hallucinate": c.hallucinate, "invalid-json": c.invalidJSON,
		"oversize": c.oversize, "crash": c.crash, "hang": c.hang, "slow": c.slow,
	} {
		if !(r >= 0 && r <= 1) {
			return c, fmt.Errorf("-%s %v: a rate is in [0, 1]", name, r)
		}
	}
	switch {
	case c.oversizeBytes < 0, c.leak < 0, c.latency < 0, c.jitter < 0, c.startupDelay < 0, c.slowLatency < 0,
		c.rampAfter < 0, c.rampJitter < 0, c.latencyRamp < 0, c.errorRamp < 0:
		return c, errors.New("sizes and durations must not be negative")
	case c.errorRamp > 0 && !(c.errorStart > 0 && c.errorLimit > c.errorStart):
		return c, errors.New("-error-ramp needs -error-start > 0 and -error-limit above it")
	case c.method == "":
		return c, errors.New("-method must not be empty")
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

// fault is what a call does instead of answering normally.
type fault int

const (
	faultNone fault = iota
	faultCrash
	faultHang
	faultInvalidJSON
	faultOversize
	faultHallucinate
)

type agent struct {
	cfg    config
	in     *bufio.Reader
	out    *bufio.Writer
	stderr io.Writer

	faults    *rand.Rand // one draw per call, only when a rate is set
	jitter    *rand.Rand // separate, so that -latency-jitter leaves faults unchanged
	anyFaults bool

	name    string // from initialize
	ramp    rampState
	calls   int
	buf     []byte   // the reply being built
	line    []byte   // a request line longer than the reader's buffer
	leaked  [][]byte // kept alive on purpose by -leak
	padding []byte   // the answer of an oversized result, built once
}

// request is a JSON-RPC request or notification. ID is nil when absent (a
// notification) and "null" when null. Params holds the fields of every
// method, so that a line is decoded in one pass.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  params          `json:"params"`
}

type params struct {
	// initialize
	Agent    string `json:"agent"`
	Pool     string `json:"pool"`
	Protocol string `json:"protocol"`
	// the call method
	Session  skipValue       `json:"session"`
	Context  []skipValue     `json:"context"` // only counted
	Input    json.RawMessage `json:"input"`
	Feedback json.RawMessage `json:"feedback"`
}

// skipValue accepts any JSON value and keeps nothing: counting the context
// entries costs no allocation per entry.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "flaky: %v\n", err)
		}
		return 2
	}
	a := &agent{
		cfg:    cfg,
		in:     bufio.NewReaderSize(stdin, 64<<10),
		out:    bufio.NewWriterSize(stdout, 64<<10),
		stderr: stderr,
		faults: rand.New(rand.NewPCG(cfg.seed, 1)),
		jitter: rand.New(rand.NewPCG(cfg.seed, 2)),
		anyFaults: cfg.crash > 0 || cfg.hang > 0 || cfg.invalidJSON > 0 ||
			cfg.oversize > 0 || cfg.hallucinate > 0,
	}
	a.logf("started pid %d seed %d method %s hallucinate %g invalid-json %g oversize %g crash %g hang %g latency %v+%v leak %d",
		os.Getpid(), cfg.seed, cfg.method, cfg.hallucinate, cfg.invalidJSON, cfg.oversize,
		cfg.crash, cfg.hang, cfg.latency, cfg.jitter, cfg.leak)
	if cfg.startupDelay > 0 {
		time.Sleep(cfg.startupDelay)
	}
	if cfg.failInit {
		a.logf("failing init on purpose (-fail-init)")
		return 1
	}
	if cfg.errorRamp > 0 {
		go a.probeErrors(exitNow)
	}
	return a.serve()
}

func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(a.stderr, "flaky: "+format+"\n", args...)
}

func (a *agent) serve() int {
	for {
		line, err := a.readLine()
		if len(bytes.TrimSpace(line)) > 0 {
			if code, exit := a.handle(line); exit {
				return code
			}
			if ferr := a.out.Flush(); ferr != nil {
				a.logf("write: %v", ferr)
				return 1
			}
		}
		if err == io.EOF {
			a.logf("stdin closed after %d calls, exiting", a.calls)
			return 0
		}
		if err != nil {
			a.logf("read: %v", err)
			return 1
		}
	}
}

// readLine returns the next line, without copying when it fits the buffer.
func (a *agent) readLine() ([]byte, error) {
	line, err := a.in.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	a.line = append(a.line[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = a.in.ReadSlice('\n')
		a.line = append(a.line, line...)
	}
	return a.line, err
}

// handle answers one line. exit is true when the agent must exit with code.
func (a *agent) handle(line []byte) (code int, exit bool) {
	var req request
	err := json.Unmarshal(line, &req)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &syn):
		a.replyError(nil, codeParseError, "parse error: "+err.Error())
		return 0, false
	case errors.As(err, &typ) && strings.HasPrefix(typ.Field, "params"):
		// The rest of the request decoded: answer it as bad params below.
	case typ != nil:
		a.replyError(req.ID, codeInvalidRequest, "invalid request: "+typeErrorText(typ))
		return 0, false
	default:
		a.replyError(req.ID, codeInvalidRequest, "invalid request: "+err.Error())
		return 0, false
	}
	notification := req.ID == nil
	if req.JSONRPC != "2.0" || req.Method == "" {
		if !notification {
			a.replyError(req.ID, codeInvalidRequest, `invalid request: want "jsonrpc": "2.0" and a method`)
		}
		return 0, false
	}
	if notification {
		return 0, false // nothing to answer, whatever the method
	}
	known := req.Method == "initialize" || req.Method == "ping" || req.Method == a.cfg.method
	if !known {
		a.replyError(req.ID, codeMethodNotFound, "method not found: "+req.Method)
		return 0, false
	}
	if err != nil {
		a.replyError(req.ID, codeInvalidParams, "invalid params: "+typeErrorText(typ))
		return 0, false
	}

	switch req.Method {
	case "initialize":
		a.name = req.Params.Agent
		a.ramp.mu.Lock()
		a.ramp.extra = rampOffset(a.cfg.seed, a.name, a.cfg.rampJitter)
		a.ramp.mu.Unlock()
		a.logf("initialized as agent %q of pool %q, protocol %q", req.Params.Agent, req.Params.Pool, req.Params.Protocol)
		a.reply(req.ID, `{"name":"flaky","protocol":"resilient/1"}`)
	case "ping":
		a.reply(req.ID, `{}`)
	default:
		return a.call(req.ID, &req.Params, len(line))
	}
	return 0, false
}

// typeErrorText says which field has the wrong JSON type, in JSON's words.
func typeErrorText(e *json.UnmarshalTypeError) string {
	want := "object"
	switch e.Type.Kind() {
	case reflect.Slice:
		want = "array"
	case reflect.String:
		want = "string"
	}
	field := e.Field
	if field == "" {
		field = "the message"
	}
	return fmt.Sprintf("%s is %s, want %s", field, e.Value, want)
}

func (a *agent) call(id json.RawMessage, p *params, size int) (code int, exit bool) {
	if p.Input == nil {
		a.replyError(id, codeInvalidParams, "invalid params: input is missing")
		return 0, false
	}
	a.calls++
	n := a.calls
	now := time.Now()
	a.ramp.firstCall(now, a.cfg.rampAfter)

	if a.cfg.leak > 0 && a.ramp.started(now) {
		b := make([]byte, a.cfg.leak)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page so that the leak is resident
		}
		a.leaked = append(a.leaked, b)
	}
	if d := a.delay() + a.cfg.rampDelay(a.ramp.since(now)); d > 0 {
		time.Sleep(d)
	}
	if a.cfg.upstream != "" {
		if err := roundTrip(a.cfg.upstream); err != nil {
			a.logf("call %d: upstream %s: %v", n, a.cfg.upstream, err)
			code := codeUpstream
			if a.cfg.unavailable {
				code = codeUnavailable
			}
			a.replyError(id, code, "upstream unreachable: "+err.Error())
			return 0, false
		}
	}
	if a.cfg.verifyJWT {
		if err := verifyTokens(p.Input); err != nil {
			a.logf("call %d: %v", n, err)
			a.replyError(id, codeBadToken, err.Error())
			return 0, false
		}
	}

	f := a.pickFault()
	switch f {
	case faultCrash:
		a.logf("crashing on call %d", n)
		a.out.Flush()
		return 1, true
	case faultHang:
		a.logf("hanging on call %d", n)
		a.out.Flush()
		// Stop answering, but leave when stdin closes so that a hung agent
		// whose supervisor is gone does not linger forever.
		io.Copy(io.Discard, a.in)
		a.logf("stdin closed while hung, exiting")
		return 0, true
	case faultInvalidJSON:
		a.logf("writing invalid JSON on call %d", n)
		b := append(a.buf[:0], `{"jsonrpc":"2.0","id":`...)
		b = append(b, id...)
		b = append(b, `,"result":{"answer": "trunc`+"\n"...)
		a.buf = b
		a.out.Write(b)
		return 0, false
	case faultOversize:
		a.logf("oversizing on call %d (%d bytes)", n, a.cfg.oversizeBytes)
	case faultHallucinate:
		a.logf("hallucinating on call %d", n)
	}

	b := append(a.buf[:0], `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":{`...)
	switch {
	case f == faultHallucinate && n%2 == 1:
		b = append(b, `"answer":42`...)
	case f == faultHallucinate:
		b = append(b, `"reply":`...) // no answer at all
		b = appendEcho(b, p.Input)
	case f == faultOversize:
		if len(a.padding) != a.cfg.oversizeBytes {
			a.padding = bytes.Repeat([]byte("x"), a.cfg.oversizeBytes)
		}
		b = append(b, `"answer":"`...)
		b = append(b, a.padding...)
		b = append(b, '"')
	default:
		b = append(b, `"answer":`...)
		b = appendEcho(b, p.Input)
	}
	b = append(b, `,"context_len":`...)
	b = strconv.AppendInt(b, int64(len(p.Context)), 10)
	b = append(b, `,"agent":`...)
	b = appendString(b, a.name)
	b = append(b, `,"call":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"usage":{"total_tokens":`...)
	b = strconv.AppendInt(b, int64((size+3)/4), 10)
	b = append(b, '}')
	if len(p.Feedback) > 0 && string(p.Feedback) != "null" {
		b = append(b, `,"feedback_seen":true`...)
	}
	b = append(b, "}}\n"...)
	a.buf = b
	a.out.Write(b)
	return 0, false
}

func (a *agent) delay() time.Duration {
	d := a.cfg.latency
	if a.cfg.jitter > 0 {
		d += time.Duration(a.jitter.Int64N(int64(a.cfg.jitter)))
	}
	// Its own stream, like the jitter, so -slow leaves the faults unchanged.
	if a.cfg.slow > 0 && a.jitter.Float64() < a.cfg.slow {
		d += a.cfg.slowLatency
		a.logf("slowing call %d by %s", a.calls, a.cfg.slowLatency)
	}
	return d
}

// pickFault draws once and maps the draw onto consecutive intervals, one per
// fault, so that each fault happens at exactly its rate.
func (a *agent) pickFault() fault {
	if !a.anyFaults {
		return faultNone
	}
	r := a.faults.Float64()
	for _, f := range []struct {
		rate float64
		f    fault
	}{
		{a.cfg.crash, faultCrash},
		{a.cfg.hang, faultHang},
		{a.cfg.invalidJSON, faultInvalidJSON},
		{a.cfg.oversize, faultOversize},
		{a.cfg.hallucinate, faultHallucinate},
	} {
		if r < f.rate {
			return f.f
		}
		r -= f.rate
	}
	return faultNone
}

func (a *agent) reply(id json.RawMessage, result string) {
	b := append(a.buf[:0], `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	b = append(b, "}\n"...)
	a.buf = b
	a.out.Write(b)
}

func (a *agent) replyError(id json.RawMessage, code int, msg string) {
	if id == nil {
		id = json.RawMessage("null")
	}
	b := append(a.buf[:0], `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendString(b, msg)
	b = append(b, "}}\n"...)
	a.buf = b
	a.out.Write(b)
	a.logf("error %d: %s", code, msg)
}

// appendEcho appends the input as a JSON string: a string input as itself
// (its JSON text is already a valid string literal), anything else as its
// JSON text.
func appendEcho(b []byte, input json.RawMessage) []byte {
	if len(input) > 0 && input[0] == '"' {
		return append(b, input...)
	}
	return appendString(b, string(input))
}

// appendString appends s as a JSON string literal.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
	}
	return append(b, '"')
}
