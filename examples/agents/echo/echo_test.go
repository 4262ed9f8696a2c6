package echo_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/testagent"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopFuzzAgent()
	testagent.Cleanup()
	os.Exit(code)
}

// replyTimeout bounds every wait for the agent, so that a hung agent fails
// the test instead of hanging it; it is not an assertion on speed.
const replyTimeout = 20 * time.Second

// proc is an agent process driven over its pipes.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	r      *bufio.Reader
	stderr *bytes.Buffer // read it only after wait
	syncs  int
	done   bool
	exit   int
}

// start runs bin with args and env (added to this process's); the
// process is killed at the end of tb if still running.
func start(tb testing.TB, bin string, env []string, args ...string) *proc {
	tb.Helper()
	p, err := spawn(bin, env, args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.kill() })
	return p
}

func spawn(bin string, env []string, args ...string) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p := &proc{cmd: exec.Command(bin, args...), stdin: inW, stdout: outR, r: bufio.NewReader(outR), stderr: new(bytes.Buffer)}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	return p, nil
}

func (p *proc) kill() {
	if !p.done {
		p.cmd.Process.Kill()
		p.wait()
	}
}

// wait closes stdin, waits for the agent to exit (killing it after
// replyTimeout) and returns its exit code.
func (p *proc) wait() int {
	if p.done {
		return p.exit
	}
	p.stdin.Close()
	timer := time.AfterFunc(replyTimeout, func() { p.cmd.Process.Kill() })
	defer timer.Stop()
	p.cmd.Wait()
	p.stdout.Close()
	p.done, p.exit = true, p.cmd.ProcessState.ExitCode()
	return p.exit
}

// send writes text in one write.
func (p *proc) send(tb testing.TB, text string) {
	tb.Helper()
	if _, err := p.stdin.WriteString(text); err != nil {
		tb.Fatalf("writing to the agent: %v", err)
	}
}

// sendAsync writes text from another goroutine, for texts larger than the
// pipe while the agent answers; the returned channel gives the result.
func (p *proc) sendAsync(text string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := p.stdin.WriteString(text)
		errc <- err
	}()
	return errc
}

// line reads one reply line, without its '\n', and checks that it is JSON.
func (p *proc) line(tb testing.TB) string {
	tb.Helper()
	p.stdout.SetReadDeadline(time.Now().Add(replyTimeout))
	s, err := p.r.ReadString('\n')
	if err != nil {
		tb.Fatalf("reading a reply (got %q): %v", trunc(s), err)
	}
	s = strings.TrimSuffix(s, "\n")
	if !json.Valid([]byte(s)) {
		tb.Fatalf("reply is not JSON: %q", trunc(s))
	}
	return s
}

// exchange sends line and then a ping in one write, and returns the
// replies that came before the ping's: what line got, in order.
func (p *proc) exchange(tb testing.TB, line string) []string {
	tb.Helper()
	p.syncs++
	id := fmt.Sprintf(`"sync-%d"`, p.syncs)
	p.send(tb, line+"\n"+`{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`+"\n")
	want := `{"jsonrpc":"2.0","id":` + id + `,"result":{}}`
	var got []string
	for {
		s := p.line(tb)
		if s == want {
			return got
		}
		if got = append(got, s); len(got) > 1 {
			tb.Fatalf("line %q: more than one reply before the ping's: %q", trunc(line), got)
		}
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

func call(id, params string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"task/run","params":` + params + `}`
}

func result(id, result string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":` + result + `}`
}

func errorReply(id string, code int, msg string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%q}}`, id, code, msg)
}

var (
	parseError     = errorReply("null", -32700, "parse error")
	invalidNullID  = errorReply("null", -32600, "invalid request")
	supervisorCall = `{"session":null,"context":[],"input":"what is the capital of France?"}`
)

// nested returns n arrays nested in one another.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// protocolCases are request lines and the exact reply each gets ("" for
// none).
var protocolCases = []struct{ name, line, want string }{
	{"initialize", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"agent":"a1","pool":"p","protocol":"resilient/1"}}`,
		result("1", `{"name":"echo","protocol":"resilient/1"}`)},
	{"ping", `{"jsonrpc":"2.0","id":2,"method":"ping"}`, result("2", `{}`)},
	{"ping/spaces", " { \"method\" : \"ping\" ,\t\"id\" : 3 , \"jsonrpc\" : \"2.0\" }\r", result("3", `{}`)},
	{"call/string", call("4", supervisorCall), result("4", `{"answer":"what is the capital of France?","context_len":0}`)},
	{"call/escaped-string", call("5", `{"input":"a\"b\\c\u00e9\n\/"}`), result("5", `{"answer":"a\"b\\c\u00e9\n\/","context_len":0}`)},
	{"call/object", call("6", `{"input":{"q": "x\"y", "n":[1,-2.5e3,true,null]}}`),
		result("6", `{"answer":"{\"q\": \"x\\\"y\", \"n\":[1,-2.5e3,true,null]}","context_len":0}`)},
	{"call/number", call("7", `{"input":42}`), result("7", `{"answer":"42","context_len":0}`)},
	{"call/tab", call("8", "{\"input\":[1,\t2]}"), result("8", `{"answer":"[1,\t2]","context_len":0}`)},
	{"call/no-input", call("9", `{"session":"s"}`), result("9", `{"answer":"","context_len":0}`)},
	{"call/no-params", `{"jsonrpc":"2.0","id":10,"method":"task/run"}`, result("10", `{"answer":"","context_len":0}`)},
	{"call/params-array", call("11", `["input"]`), result("11", `{"answer":"","context_len":0}`)},
	{"call/context-3", call("12", `{"session":"s","context":[{"input":"q0","output":{"answer":"a0"}},{"input":"q1","output":{}},{"input":[],"output":null}],"input":"q3"}`),
		result("12", `{"answer":"q3","context_len":3}`)},
	{"call/context-not-array", call("13", `{"context":{"a":[1,2]},"input":"x"}`), result("13", `{"answer":"x","context_len":0}`)},
	{"call/nested-input-keys-ignored", call("14", `{"x":{"input":"no","context":[1]},"input":"yes"}`), result("14", `{"answer":"yes","context_len":0}`)},
	{"call/last-duplicate-wins", call("15", `{"input":"a","context":[1],"input":"b"}`), result("15", `{"answer":"b","context_len":1}`)},
	{"call/depth-1000", call("16", `{"input":`+nested(998)+`}`), result("16", `{"answer":"`+nested(998)+`","context_len":0}`)},
	{"id/string", `{"jsonrpc":"2.0","id":"abc","method":"ping"}`, result(`"abc"`, `{}`)},
	{"id/escaped-string", `{"jsonrpc":"2.0","id":"a\"b\u0041","method":"ping"}`, result(`"a\"b\u0041"`, `{}`)},
	{"id/null", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, result("null", `{}`)},
	{"id/number", `{"jsonrpc":"2.0","id":-1.5E+3,"method":"ping"}`, result("-1.5E+3", `{}`)},
	{"id/object", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, invalidNullID},
	{"id/true", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, invalidNullID},
	{"notification/call", `{"jsonrpc":"2.0","method":"task/run","params":{"input":"x"}}`, ""},
	{"notification/unknown", `{"jsonrpc":"2.0","method":"nope"}`, ""},
	{"notification/invalid", `{"method":7}`, ""},
	{"notification/empty", `{}`, ""},
	{"blank", "", ""},
	{"whitespace", " \t \r", ""},
	{"parse/truncated", `{"jsonrpc":"2.0","id":1,"method":"ping"`, parseError},
	{"parse/text", `hello`, parseError},
	{"parse/trailing", `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, parseError},
	{"parse/trailing-comma", `{"jsonrpc":"2.0","id":1,}`, parseError},
	{"parse/leading-zero", `{"id":01}`, parseError},
	{"parse/bad-escape", `{"id":"\x"}`, parseError},
	{"parse/bad-unicode", `{"id":"\u12g4"}`, parseError},
	{"parse/control-char", "{\"id\":\"a\tb\"}", parseError},
	{"parse/single-quotes", `{'id':1}`, parseError},
	{"parse/bare-minus", `{"id":-}`, parseError},
	{"parse/dot", `{"id":1.}`, parseError},
	{"parse/exponent", `{"id":1e}`, parseError},
	{"parse/literal", `{"id":tru}`, parseError},
	{"parse/depth-1001", call("17", `{"input":`+nested(999)+`}`), parseError},
	{"invalid/array", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, invalidNullID},
	{"invalid/string", `"ping"`, invalidNullID},
	{"invalid/number", `42`, invalidNullID},
	{"invalid/null", `null`, invalidNullID},
	{"invalid/no-jsonrpc", `{"id":20,"method":"ping"}`, errorReply("20", -32600, "invalid request")},
	{"invalid/jsonrpc-1.0", `{"jsonrpc":"1.0","id":21,"method":"ping"}`, errorReply("21", -32600, "invalid request")},
	{"invalid/jsonrpc-number", `{"jsonrpc":2.0,"id":22,"method":"ping"}`, errorReply("22", -32600, "invalid request")},
	{"invalid/no-method", `{"jsonrpc":"2.0","id":23}`, errorReply("23", -32600, "invalid request")},
	{"invalid/method-number", `{"jsonrpc":"2.0","id":"m","method":5}`, errorReply(`"m"`, -32600, "invalid request")},
	{"unknown-method", `{"jsonrpc":"2.0","id":24,"method":"tools/call"}`, errorReply("24", -32601, "method not found")},
	{"unknown-method/escaped-name", `{"jsonrpc":"2.0","id":25,"method":"p\u0069ng"}`, errorReply("25", -32601, "method not found")},
}

// checkProtocol runs protocolCases against one process of bin.
func checkProtocol(t *testing.T, bin string, env []string) {
	p := start(t, bin, env)
	for _, c := range protocolCases {
		t.Run(c.name, func(t *testing.T) {
			got := p.exchange(t, c.line)
			switch {
			case c.want == "" && len(got) != 0:
				t.Fatalf("want no reply, got %q", got)
			case c.want != "" && len(got) != 1:
				t.Fatalf("want one reply, got none")
			case c.want != "" && got[0] != c.want:
				t.Fatalf("reply\n got %s\nwant %s", trunc(got[0]), trunc(c.want))
			}
		})
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d at EOF, want 0; stderr:\n%s", code, p.stderr)
	}
}

func TestProtocol(t *testing.T) {
	checkProtocol(t, testagent.Echo(t), nil)
}

// TestAnswerIsInputText decodes the answer to a non-string input: it is
// the input's JSON text, itself valid JSON.
func TestAnswerIsInputText(t *testing.T) {
	p := start(t, testagent.Echo(t), nil)
	input := `{"a": [1, 2.5, "x\"\\\u00e9"], "b": {"c": null, "d": false}, "e": "tab\there"}`
	got := p.exchange(t, call("1", `{"input":`+input+`}`))
	var reply struct {
		Result struct {
			Answer     string `json:"answer"`
			ContextLen int    `json:"context_len"`
		} `json:"result"`
	}
	if len(got) != 1 {
		t.Fatalf("replies %q, want one", got)
	}
	if err := json.Unmarshal([]byte(got[0]), &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Result.Answer != input || !json.Valid([]byte(reply.Result.Answer)) {
		t.Fatalf("answer %q, want the input's text %q", reply.Result.Answer, input)
	}
}

// TestBatch sends many requests in one write: they are answered in order.
func TestBatch(t *testing.T) {
	p := start(t, testagent.Echo(t), nil)
	var req, want []string
	for i := range 200 {
		id := strconv.Itoa(i)
		switch i % 3 {
		case 0:
			req = append(req, call(id, `{"context":[1,2],"input":"q`+id+`"}`))
			want = append(want, result(id, `{"answer":"q`+id+`","context_len":2}`))
		case 1:
			req = append(req, `{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`)
			want = append(want, result(id, `{}`))
		case 2:
			req = append(req, `{"jsonrpc":"2.0","method":"task/run"}`) // no reply
		}
	}
	p.send(t, strings.Join(req, "\n")+"\n")
	for _, w := range want {
		if got := p.line(t); got != w {
			t.Fatalf("reply %s, want %s", got, w)
		}
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), "echo: stdin closed after 67 calls\n") {
		t.Fatalf("stderr %q does not count 67 calls", p.stderr)
	}
}

// TestLongLines checks a 1 MiB line echoed intact, the longest line the
// agent answers (64 MiB) and longer ones, which are refused whether they
// end in the read that crosses the limit or later; the agent then goes on.
func TestLongLines(t *testing.T) {
	p := start(t, testagent.Echo(t), nil)
	roundTrip := func(line, want string) {
		t.Helper()
		errc := p.sendAsync(line + "\n") // the pipe cannot hold it all
		if got := p.line(t); got != want {
			t.Fatalf("%d-byte line: reply %q, want %q", len(line), trunc(got), trunc(want))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	answer := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	roundTrip(call("1", `{"input":"`+answer+`"}`), result("1", `{"answer":"`+answer+`","context_len":0}`))

	// The long lines are padded with spaces: what they hold is not the point.
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	padded := func(size int) string { return ping + strings.Repeat(" ", size-len(ping)) }
	refused := errorReply("null", -32600, "request line over 64 MiB")
	roundTrip(padded(64<<20), result("2", `{}`))
	roundTrip(padded(64<<20+1), refused)
	roundTrip(padded(80<<20), refused)
	if got := p.exchange(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`); len(got) != 1 || got[0] != result("3", `{}`) {
		t.Fatalf("after the refused lines: replies %q", got)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func TestMethodFlag(t *testing.T) {
	p := start(t, testagent.Echo(t), nil, "-method", "custom/run")
	got := p.exchange(t, `{"jsonrpc":"2.0","id":1,"method":"custom/run","params":{"input":"x"}}`)
	if want := result("1", `{"answer":"x","context_len":0}`); len(got) != 1 || got[0] != want {
		t.Fatalf("custom/run: replies %q, want %s", got, want)
	}
	got = p.exchange(t, call("2", `{"input":"x"}`))
	if want := errorReply("2", -32601, "method not found"); len(got) != 1 || got[0] != want {
		t.Fatalf("task/run: replies %q, want %s", got, want)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), " method custom/run\n") {
		t.Fatalf("stderr %q does not name the method", p.stderr)
	}
}

func TestFlags(t *testing.T) {
	bin := testagent.Echo(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"-bogus"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-method"}, 2},
		{[]string{"-method", ""}, 2},
		{[]string{"-method", "a", "b"}, 2},
		{[]string{"-h"}, 0},
		{[]string{"--help"}, 0},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, c.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.HasPrefix(stderr.String(), "usage: echo") || stdout.Len() != 0 {
			t.Errorf("%q: exit code %d, stdout %q, stderr %q; want %d and the usage on stderr", c.args, code, stdout.String(), stderr.String(), c.code)
		}
	}
}

// TestEOF: at EOF a last line without its '\n' is answered, and the agent
// exits 0 and says so on stderr.
func TestEOF(t *testing.T) {
	p := start(t, testagent.Echo(t), nil)
	p.send(t, call("1", `{"input":"a"}`)+"\n"+call("2", `{"input":"b"}`))
	p.stdin.Close()
	for _, w := range []string{
		result("1", `{"answer":"a","context_len":0}`),
		result("2", `{"answer":"b","context_len":0}`),
	} {
		if got := p.line(t); got != w {
			t.Fatalf("reply %s, want %s", got, w)
		}
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	stderr := p.stderr.String()
	if !strings.HasPrefix(stderr, fmt.Sprintf("echo: started pid %d method task/run\n", p.cmd.Process.Pid)) ||
		!strings.HasSuffix(stderr, "echo: stdin closed after 2 calls\n") {
		t.Fatalf("stderr %q", stderr)
	}
}

// TestWriteError: a reader gone away is exit 1 with the reason on stderr,
// not a death by SIGPIPE.
func TestWriteError(t *testing.T) {
	p := start(t, testagent.Echo(t), nil)
	p.stdout.Close()
	p.send(t, `{"jsonrpc":"2.0","id":1,"method":"ping"}`+"\n")
	if code := p.wait(); code != 1 || !strings.Contains(p.stderr.String(), "echo: write stdout: Broken pipe") {
		t.Fatalf("exit code %d, stderr %q; want 1 and the write error", code, p.stderr)
	}
}

// TestSanitizers runs the protocol cases and long lines against a build
// with AddressSanitizer (and its leak checker) and UndefinedBehaviorSanitizer,
// which abort on the first finding.
func TestSanitizers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the sanitizer build is skipped")
	}
	testagent.Echo(t) // skips without a C compiler
	var cc string
	for _, name := range []string{"cc", "gcc", "clang", "clang-16"} {
		if p, err := exec.LookPath(name); err == nil {
			cc = p
			break
		}
	}
	bin := filepath.Join(t.TempDir(), "echo-sanitized")
	out, err := exec.Command(cc, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
		"-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror", "-std=c11", "-o", bin, "echo.c").CombinedOutput()
	if err != nil {
		t.Skipf("%s cannot build with -fsanitize=address,undefined here: %v\n%s", cc, err, out)
	}
	env := []string{"ASAN_OPTIONS=detect_leaks=1:exitcode=99", "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"}
	// LeakSanitizer cannot run under ptrace (a debugger, some sandboxes):
	// without it, the other checks still run.
	probe := exec.Command(bin, "-h")
	probe.Env = append(os.Environ(), env...)
	if out, err := probe.CombinedOutput(); err != nil && bytes.Contains(out, []byte("LeakSanitizer")) {
		t.Logf("LeakSanitizer does not run here, leaks go unchecked: %s", out)
		env[0] = "ASAN_OPTIONS=detect_leaks=0:exitcode=99"
	}
	checkProtocol(t, bin, env)
	p := start(t, bin, env)
	for _, n := range []int{1, 4 << 10, 3 << 20} { // grows and shrinks both buffers
		line := call("1", `{"input":{"x":"`+strings.Repeat("z", n)+`"}}`)
		errc := p.sendAsync(line + "\n")
		if got := p.line(t); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":1,"result":{"answer":"{\"x\":\"z`) {
			t.Fatalf("reply %q", trunc(got))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, p.stderr)
	}
}

// The fuzz agent is one process per fuzz worker (each worker is a process
// of its own), started on the worker's first input.
var fuzzAgent struct {
	sync.Mutex
	p *proc
}

func stopFuzzAgent() {
	fuzzAgent.Lock()
	defer fuzzAgent.Unlock()
	if fuzzAgent.p != nil {
		fuzzAgent.p.kill()
		fuzzAgent.p = nil
	}
}

// FuzzEcho sends any line, then a ping: the line gets at most one reply,
// every reply is JSON, and the ping is answered, so the agent neither died
// nor lost its framing. Beyond that, the agent's verdict of parse error
// must agree with encoding/json's on lines too short to nest past the
// agent's depth limit.
//
//	go test -run '^$' -fuzz FuzzEcho -fuzztime 60s ./examples/agents/echo/
//
// ECHO_AGENT=PATH fuzzes that build of echo.c instead, say one built with
// -fsanitize=address,undefined (the fuzzer's coverage guidance sees only
// the Go side: the agent's findings come from mutation alone).
func FuzzEcho(f *testing.F) {
	bin := os.Getenv("ECHO_AGENT")
	if bin == "" {
		bin = testagent.Echo(f)
	}
	for _, s := range []string{
		call("1", supervisorCall),
		`{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"agent":"a","pool":"p","protocol":"resilient/1"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"ping"}`,
		call(`"s"`, `{"session":"s","context":[{"input":"q","output":{"answer":"a"}},{"input":[1,{}],"output":null}],"input":{"k":[true,false,null,-0.5e-7]}}`),
		`{"jsonrpc":"2.0","method":"task/run","params":{"input":"notification"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"p\u0069ng","params":"\"\\\/\b\f\n\r\t\uD83D\uDE00"}`,
		`{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"id":1,"id":2,"jsonrpc":"2.0","method":"ping","method":"task/run","params":{"input":1,"input":"x"}}`,
		" \t\r ",
		`{"jsonrpc":"2.0","id":1e400,"method":"ping"`,
		call("2", `{"input":`+nested(20)+`}`),
		"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"ping\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		line := string(bytes.ReplaceAll(data, []byte("\n"), nil))
		fuzzAgent.Lock()
		defer fuzzAgent.Unlock()
		if fuzzAgent.p == nil {
			// Not start: this agent outlives the input.
			p, err := spawn(bin, nil)
			if err != nil {
				t.Fatal(err)
			}
			fuzzAgent.p = p
		}
		p := fuzzAgent.p
		ok := false
		defer func() {
			if !ok { // the next input gets a fresh agent
				p.kill()
				fuzzAgent.p = nil
				t.Logf("agent's stderr:\n%s", p.stderr)
			}
		}()
		got := p.exchange(t, line)
		checkVerdict(t, line, got)
		ok = true
	})
}

// checkVerdict compares the replies to line with what encoding/json makes
// of it: parse error exactly when it is not JSON, and, for an object, one
// reply exactly when it has an id, which the reply carries (null if the id
// is not a string, number or null). Lines of 2000 bytes and more may nest
// past the agent's depth limit (encoding/json's is deeper), so only their
// invalid JSON is checked; lines with a '\\' may escape member names,
// which the agent does not unescape, so only their syntax is checked.
func checkVerdict(t *testing.T, line string, got []string) {
	trimmed := strings.TrimLeft(line, " \t\r")
	valid := json.Valid([]byte(line))
	switch {
	case trimmed == "":
		if len(got) != 0 {
			t.Fatalf("blank line %q: replies %q", line, got)
		}
	case !valid:
		if len(got) != 1 || got[0] != parseError {
			t.Fatalf("line %q is not JSON: replies %q, want %s", line, got, parseError)
		}
	case len(line) >= 2000:
	case len(got) == 1 && got[0] == parseError:
		t.Fatalf("line %q is JSON: reply %s", line, got[0])
	case trimmed[0] != '{':
		if len(got) != 1 || got[0] != invalidNullID {
			t.Fatalf("line %q is not an object: replies %q, want %s", line, got, invalidNullID)
		}
	case !strings.Contains(line, `\`):
		var top map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &top); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		id, hasID := top["id"]
		if !hasID {
			if len(got) != 0 {
				t.Fatalf("notification %q: replies %q", line, got)
			}
			return
		}
		if len(got) != 1 {
			t.Fatalf("request %q: no reply", line)
		}
		if strings.ContainsAny(string(id[:1]), "{[tf") {
			id = json.RawMessage("null")
		}
		var reply struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal([]byte(got[0]), &reply); err != nil || !bytes.Equal(reply.ID, id) {
			t.Fatalf("request %q: reply %s, want the id %s", line, got[0], id)
		}
	}
}

// BenchmarkEchoRoundTrip drives the C echo agent and the Go example agent
// (examples/agents/flaky, every fault off) one call at a time over their
// pipes, with the params the supervisor sends for a sessionless call. Per
// agent: µs/call, the round trip, and agent-cpu-µs/call, the agent
// process's CPU time (utime+stime from /proc/PID/stat, in clock ticks, so
// only meaningful over many calls) per call.
//
//	go test -run '^$' -bench BenchmarkEchoRoundTrip ./examples/agents/echo/
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, agent := range []struct {
		name string
		bin  func(testing.TB) string
	}{{"echo", testagent.Echo}, {"flaky", testagent.Flaky}} {
		b.Run("agent="+agent.name, func(b *testing.B) {
			p := start(b, agent.bin(b), nil)
			init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"agent":"bench","pool":"bench","protocol":"resilient/1"}}`
			p.send(b, init+"\n")
			p.line(b)
			head := []byte(`{"jsonrpc":"2.0","id":`)
			tail := []byte(`,"method":"task/run","params":` + supervisorCall + "}\n")
			var req []byte
			cpu0 := procCPU(b, p.cmd.Process.Pid)
			b.ResetTimer()
			t0 := time.Now()
			for i := range b.N {
				if i%1024 == 0 {
					p.stdout.SetReadDeadline(time.Now().Add(replyTimeout))
				}
				req = append(strconv.AppendInt(append(req[:0], head...), int64(i+1), 10), tail...)
				if _, err := p.stdin.Write(req); err != nil {
					b.Fatal(err)
				}
				reply, err := p.r.ReadSlice('\n')
				if err != nil || !bytes.Contains(reply, []byte(`"answer":"what is the capital of France?"`)) {
					b.Fatalf("reply %q: %v", reply, err)
				}
			}
			elapsed := time.Since(t0)
			cpu := procCPU(b, p.cmd.Process.Pid) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N), "µs/call")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "agent-cpu-µs/call")
		})
	}
}

// procCPU returns the CPU time process pid has used, from /proc/PID/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything: state is the first, utime and stime the 12th and 13th.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatal(err)
	}
	const userHZ = 100 // clock ticks per second in /proc: USER_HZ, 100 on Linux
	return time.Duration(utime+stime) * time.Second / userHZ
}
