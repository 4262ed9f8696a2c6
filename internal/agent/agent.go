package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilienced/resilienced/internal/jsonscan"
)

// Protocols.
const (
	ProtocolJSONRPC = "jsonrpc"
	ProtocolMCP     = "mcp"
)

// Config describes one agent process.
type Config struct {
	ID      string   // agent id, e.g. "echo-3"
	Pool    string   // pool name
	Command []string // argv; Command[0] is looked up in PATH
	Env     []string // added to the inherited environment (KEY=value)
	Dir     string
	// Credential runs the agent as another user; nil keeps the daemon's.
	Credential *syscall.Credential
	// CgroupFD, when > 0, is an open cgroup v2 directory: the process is
	// cloned directly into it. Otherwise it gets its own process group.
	CgroupFD int
	Protocol string // ProtocolJSONRPC (default) or ProtocolMCP
	Method   string // call method for the native protocol (default task/run)
	// Tool is the MCP tool a call runs; "*" serves every tool of the
	// server, the call's input then naming it (see [Agent.Send]).
	Tool string
	// MCPContext says what an MCP tool gets besides the input:
	// MCPContextNone (default) or MCPContextMeta.
	MCPContext string
	// OnNotification, when set, sees every notification the agent sends
	// (MCP progress, logging, list changes). It must not block.
	OnNotification func(method string, params json.RawMessage)
	// MaxLineBytes bounds one line from the agent (default 1 MiB).
	MaxLineBytes int64
	Logger       *slog.Logger
	// StderrRate is the number of stderr lines per second logged before
	// lines are counted and suppressed (default 50, burst 4x).
	StderrRate int
	// OnStderr, when set, sees every stderr line (suppressed ones too), for
	// the Arbiter's log templates. It must not block.
	OnStderr func(line string)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent is one running agent process. Its methods are safe for concurrent
// use, but only one Call or Ping runs at a time.
type Agent struct {
	cfg Config
	// child: started by this daemon (Start), so reaped by it; not an
	// adopted agent (adopt.go) nor a zygote's child (forked.go).
	child bool
	// pidfd pins the process: signals go through it, and its exit is seen
	// on it. The only one an agent holds (os/exec's own handle is
	// released at the start); nil for a zygote's child.
	pidfd  *os.File
	pid    int
	stdin  *os.File
	stdout *os.File
	stderr *os.File
	log    *slog.Logger

	// Lock order: callMu before writeMu. writeMu alone guards w (and the
	// closing of stdin), so the reader can answer an agent's own requests
	// while a call holds callMu.
	writeMu  sync.Mutex
	callMu   sync.Mutex // one request in flight
	logLimit *rateLimiter
	tools    []Tool // MCP: what tools/list said at the handshake
	wbuf     []byte // the request being written; guarded by callMu
	nextID   atomic.Uint64
	replies  chan reply // the reader hands the reply to the call in flight
	// current is the request in flight, for the reader to route its
	// progress notifications; stale are requests closed without their
	// reply, whose late replies the reader drops.
	current atomic.Pointer[Pending]
	stale   staleIDs
	// reports counts the progress notifications of calls in flight;
	// reportsSeen is the count at the last look of [Agent.Progress].
	reports, reportsSeen atomic.Uint64

	done     chan struct{} // closed when the process has exited
	exitTime time.Time
	status   syscall.WaitStatus // valid when waitErr is nil
	waitErr  error

	readDone chan struct{} // closed when the stdout reader stops
	errDone  chan struct{} // closed when the stderr reader stops
	// stderrWatch reads stderr on the node's poller (watch.go); nil
	// when a goroutine of its own does (readStderr).
	stderrWatch *stderrWatch
	readErr     error

	closeOnce sync.Once
	started   time.Time
}

// maxKeptRequestBuf bounds the request buffer an agent keeps between
// calls; a larger request gets a buffer of its own.
const maxKeptRequestBuf = 256 << 10

type reply struct {
	line []byte
	err  error
}

// Start spawns the process. It does not handshake; call [Agent.Initialize].
func Start(cfg Config) (*Agent, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("agent: empty command")
	}
	cfg = cfg.withDefaults()
	inR, inW, outR, outW, errR, errW, err := pipes(cfg.ID)
	if err != nil {
		return nil, err
	}
	closeChildEnds := func() { inR.Close(); outW.Close(); errW.Close() }

	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(inheritedEnv(), cfg.Env...)
	cmd.Env = append(cmd.Env, "RESILIENT_AGENT_ID="+cfg.ID, "RESILIENT_POOL="+cfg.Pool)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	attr := &syscall.SysProcAttr{Credential: cfg.Credential}
	if cfg.CgroupFD > 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = cfg.CgroupFD
	} else {
		attr.Setpgid = true
	}
	// Started from a spawner thread (spawner.go), the agent's pidfd is
	// opened below. Started by os/exec, the clone's pidfd is the agent's;
	// os/exec keeps a duplicate of it as its handle, released at once
	// below (an agent holds one pidfd, not two: descriptors are what
	// bounds the agents of a node).
	pidfd := -1
	attr.PidFD = &pidfd
	cmd.SysProcAttr = attr
	pid, err := spawnProcess(cmd)
	if errors.Is(err, errNoSpawner) {
		if err = cmd.Start(); err == nil {
			pid = cmd.Process.Pid
			// Never reaped by os/exec (wait does it), and signalled
			// through the agent's own pidfd: the handle os/exec keeps
			// goes now.
			cmd.Process.Release()
		}
	}
	closeChildEnds()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("agent %s: start %q: %w", cfg.ID, cfg.Command[0], err)
	}
	a := newAgent(cfg, pid, inW, outR, errR)
	a.child = true
	if pidfd < 0 { // no CLONE_PIDFD: the child is unreaped, its pid ours still
		pidfd, _ = unix.PidfdOpen(pid, 0)
	}
	if pidfd >= 0 {
		a.pidfd = os.NewFile(uintptr(pidfd), "pidfd:"+cfg.ID)
	}
	a.run()
	return a, nil
}

func (cfg Config) withDefaults() Config {
	if cfg.Protocol == "" {
		cfg.Protocol = ProtocolJSONRPC
	}
	if cfg.Method == "" {
		cfg.Method = "task/run"
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StderrRate <= 0 {
		cfg.StderrRate = 50
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// pipes makes an agent's stdin, stdout and stderr pipes, by hand and as
// *os.File so that exec starts no copying goroutines and Wait never closes
// our ends under a reader.
func pipes(id string) (inR, inW, outR, outW, errR, errW *os.File, err error) {
	if inR, inW, err = os.Pipe(); err != nil {
		return nil, nil, nil, nil, nil, nil, fmt.Errorf("agent %s: stdin pipe: %w", id, err)
	}
	if outR, outW, err = os.Pipe(); err != nil {
		inR.Close()
		inW.Close()
		return nil, nil, nil, nil, nil, nil, fmt.Errorf("agent %s: stdout pipe: %w", id, err)
	}
	if errR, errW, err = os.Pipe(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, nil, nil, nil, nil, nil, fmt.Errorf("agent %s: stderr pipe: %w", id, err)
	}
	return inR, inW, outR, outW, errR, errW, nil
}

// newAgent is an agent on the daemon's ends of its pipes, its readers and
// its exit watch not yet started (run starts them).
func newAgent(cfg Config, pid int, inW, outR, errR *os.File) *Agent {
	return &Agent{
		cfg:      cfg,
		pid:      pid,
		stdin:    inW,
		stdout:   outR,
		stderr:   errR,
		replies:  make(chan reply, 1),
		done:     make(chan struct{}),
		readDone: make(chan struct{}),
		errDone:  make(chan struct{}),
		started:  cfg.Now(),
		log:      cfg.Logger.With("agent", cfg.ID, "pool", cfg.Pool),
		logLimit: newRateLimiter(cfg.StderrRate, cfg.Now),
	}
}

// run starts watching the agent: its exit and stderr on the node's
// pollers (a goroutine each where they cannot be used), its stdout on a
// goroutine of its own.
func (a *Agent) run() {
	if !a.watchExit() {
		go a.wait()
	}
	go a.readStdout()
	a.startStderr()
}

func (a *Agent) startStderr() {
	if !a.watchStderr() {
		go a.readStderr()
	}
}

// environment variables of the daemon's own service manager that must not
// leak into agents (an agent must not be able to notify systemd as us).
var privateEnv = []string{"NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "INVOCATION_ID=", "RESILIENT_SOCKET="}

func inheritedEnv() []string {
	env := os.Environ()
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, p := range privateEnv {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// ID returns the agent's id.
func (a *Agent) ID() string { return a.cfg.ID }

// PID returns the process id.
func (a *Agent) PID() int { return a.pid }

// Started returns when the process was started.
func (a *Agent) Started() time.Time { return a.started }

// Done is closed once the process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// ExitTime is when the daemon learnt of the exit; valid after Done.
func (a *Agent) ExitTime() time.Time { <-a.done; return a.exitTime }

// ExitStatus describes how the process ended, e.g. "exit status 1" or
// "signal: killed"; valid after Done.
func (a *Agent) ExitStatus() string {
	<-a.done
	if a.waitErr != nil {
		return a.waitErr.Error()
	}
	return exitString(a.status)
}

// ExitedOK reports whether the process exited with status 0; valid after Done.
func (a *Agent) ExitedOK() bool {
	<-a.done
	return a.waitErr == nil && a.status.Exited() && a.status.ExitStatus() == 0
}

func (a *Agent) wait() {
	// Not cmd.Wait: that holds a thread per agent in waitid.
	if !a.child {
		a.waitErr = waitNotChild(a.pid)
		a.exitTime = a.cfg.Now()
		close(a.done)
		return
	}
	ws, err := waitExit(a.pid)
	if a.pidfd != nil {
		a.pidfd.Close()
	}
	a.exitTime = a.cfg.Now()
	a.status, a.waitErr = ws, err
	close(a.done)
}

// Signal sends sig to the process (not its tree; use the cgroup for that).
func (a *Agent) Signal(sig syscall.Signal) error {
	select {
	case <-a.done:
		return os.ErrProcessDone
	default:
	}
	if a.pidfd != nil {
		return a.signalPidfd(sig)
	}
	return syscall.Kill(a.pid, sig) // a zygote's child (see StartForked)
}

// SignalGroup sends sig to the agent's process group; meaningful only when
// the agent was started without a cgroup.
func (a *Agent) SignalGroup(sig syscall.Signal) error {
	return syscall.Kill(-a.pid, sig)
}

// Close closes the agent's pipes. It does not kill the process: the owner
// kills it through its cgroup (or process group) first.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.stopStderrWatch() // while its fd is open
		a.stdin.Close()
		a.stdout.Close()
		a.stderr.Close()
	})
	return nil
}

// readStdout reads reply lines and hands each to the call in flight. A line
// that arrives with no call in flight is a protocol error: it is kept and
// returned to the next call, which then fails.
func (a *Agent) readStdout() {
	defer close(a.readDone)
	lr := newLineReader(a.stdout, a.cfg.MaxLineBytes)
	for {
		line, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				err = fmt.Errorf("%w: stdout: %w", ErrExited, err)
			}
			a.readErr = err
			select {
			case a.replies <- reply{err: err}:
			default:
			}
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if m, ok := incoming(line); ok {
			// The agent's own notifications (MCP logging, progress) and
			// requests (MCP ping) are not replies; they never reach a call.
			a.handleIncoming(m)
			continue
		}
		if a.stale.drop(line) {
			continue // the late reply to a request given up on
		}
		a.replies <- reply{line: line}
	}
}

func (a *Agent) readStderr() {
	defer close(a.errDone)
	sc := bufio.NewScanner(a.stderr)
	// Small at first, as most agents write little to stderr; it grows to
	// stderrLineBytes for a long line.
	sc.Buffer(make([]byte, 256), stderrLineBytes)
	sc.Split(scanLinesTruncating)
	lim := newRateLimiter(a.cfg.StderrRate, a.cfg.Now)
	log := a.log
	for sc.Scan() {
		line := strings.ToValidUTF8(sc.Text(), "\uFFFD")
		if a.cfg.OnStderr != nil {
			a.cfg.OnStderr(line)
		}
		if ok, dropped := lim.allow(); ok {
			if dropped > 0 {
				log.Warn("agent stderr lines suppressed", "count", dropped)
			}
			log.Info(line, "source", "stderr")
		}
	}
}

// StderrDone is closed once the agent's stderr has been read to its end
// (every writer closed it: the agent and any child it left), so that
// its last lines can be quoted when it dies.
func (a *Agent) StderrDone() <-chan struct{} { return a.errDone }

// Initialize performs the protocol handshake.
func (a *Agent) Initialize(ctx context.Context) error {
	switch a.cfg.Protocol {
	case ProtocolMCP:
		return a.initializeMCP(ctx)
	default:
		if _, err := a.request(ctx, "initialize", initializeParams(a.cfg)); err != nil {
			return fmt.Errorf("initialize: %w", err)
		}
		return nil
	}
}

// initializeParams are the native handshake's params.
func initializeParams(cfg Config) json.RawMessage {
	p, _ := json.Marshal(map[string]string{"agent": cfg.ID, "pool": cfg.Pool, "protocol": "resilient/1"})
	return p
}

// Ping checks liveness of an idle agent. MCP has the same ping, so a
// wedged MCP server is found the same way.
func (a *Agent) Ping(ctx context.Context) error {
	_, err := a.request(ctx, "ping", nil)
	return err
}

// Call sends params, the native call envelope ({"session", "context",
// "input", "feedback"}), with the pool's call method and returns the raw
// result. For MCP the envelope's input becomes the tool's arguments (see
// [MCPContextMeta] for the rest) and the result is the tool's output (see
// mcpOutput); a tool's own error is a [*ToolError].
func (a *Agent) Call(ctx context.Context, params json.RawMessage) (json.RawMessage, error) {
	pc, err := a.Send(params, nil)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	return pc.Wait(ctx, nil)
}

// Send writes a call, as [Agent.Call] does, and returns it in flight
// without waiting for its reply: the caller takes the reply with
// [Pending.Wait] and then closes it. It lets a caller stop waiting (its own
// client went away) while the call goes on, to be finished elsewhere, or
// cancel it ([Pending.Cancel]). onProgress, when not nil, sees the call's
// progress notifications (see [ProgressReport]).
func (a *Agent) Send(params json.RawMessage, onProgress func(ProgressReport)) (*Pending, error) {
	if a.cfg.Protocol == ProtocolMCP {
		// The progress token is the request's id, which send takes next
		// (callMu makes sends one at a time).
		p, tool, err := a.mcpCallParams(params, a.nextID.Load()+1)
		if err != nil {
			return nil, err
		}
		return a.send("tools/call", p, tool, onProgress)
	}
	return a.send(a.cfg.Method, params, "", onProgress)
}

// Pending is a request written to the agent whose reply has not been taken
// yet. The agent takes no other request until it is closed.
type Pending struct {
	a          *Agent
	id         uint64
	tool       string // MCP: the reply is this tool's tools/call result
	onProgress func(ProgressReport)
	closed     bool
	answered   bool // its reply was taken

	cancelled   atomic.Bool
	runningOnce sync.Once
	running     chan struct{} // closed at progress after Cancel
}

// Wait waits for the reply, ctx, or the process's death, whichever comes
// first. If leave is closed first, Wait returns [ErrLeft] and the request
// stays in flight: Wait may be called again, from any goroutine, to go on
// waiting. Wait and Close are not safe for concurrent use with each other.
func (pc *Pending) Wait(ctx context.Context, leave <-chan struct{}) (json.RawMessage, error) {
	a := pc.a
again:
	select {
	case r := <-a.replies:
		if r.err == nil && a.stale.drop(r.line) {
			goto again // a request given up on answered late, just now
		}
		return pc.result(r)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-leave:
		return nil, ErrLeft
	case <-a.done:
		// The process is gone; a reply it wrote just before dying may
		// still be in the pipe.
		select {
		case r := <-a.replies:
			if r.err == nil && !a.stale.drop(r.line) {
				return pc.result(r)
			}
		case <-time.After(time.Millisecond):
		}
		return nil, fmt.Errorf("%w: %s", ErrExited, a.ExitStatus())
	}
}

func (pc *Pending) result(r reply) (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	pc.answered = true
	res, err := decodeReply(r.line, pc.id)
	if err != nil || pc.tool == "" {
		return res, err
	}
	return mcpOutput(pc.tool, res)
}

// Close ends the request: the agent takes the next one. A reply to a
// request closed before it came (cancelled, or given up on) is dropped
// when it comes, so the agent stays in step.
func (pc *Pending) Close() {
	if !pc.closed {
		pc.closed = true
		if !pc.answered {
			pc.a.stale.add(pc.id)
		}
		pc.a.current.CompareAndSwap(pc, nil)
		pc.a.callMu.Unlock()
	}
}

func (a *Agent) notify(method string, params json.RawMessage) error {
	a.callMu.Lock()
	defer a.callMu.Unlock()
	return a.write(appendNotification(make([]byte, 0, 64+len(params)), method, params))
}

// write writes one whole line. The cause of a failed write (EPIPE: the
// agent closed its stdin or died) stays in the chain for errors.Is.
func (a *Agent) write(b []byte) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	// Each message is whole in b: one write, no buffer to copy it into
	// (a buffer would cost every idle agent its size).
	if _, err := a.stdin.Write(b); err != nil {
		return fmt.Errorf("%w: write: %w", ErrExited, err)
	}
	return nil
}

// request sends one request and waits for its reply, the context, or the
// process's death, whichever comes first.
func (a *Agent) request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	pc, err := a.send(method, params, "", nil)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	return pc.Wait(ctx, nil)
}

// send writes one request and returns it in flight, holding callMu until
// it is closed.
func (a *Agent) send(method string, params json.RawMessage, tool string, onProgress func(ProgressReport)) (*Pending, error) {
	if !a.callMu.TryLock() {
		return nil, ErrBusy
	}
	// A reply left over from an abandoned call would be taken for this
	// one's: the agent is out of step.
	select {
	case r := <-a.replies:
		if r.err == nil && a.stale.drop(r.line) {
			break // the late reply to a request given up on
		}
		a.callMu.Unlock()
		if r.err != nil {
			return nil, r.err
		}
		return nil, fmt.Errorf("%w: unsolicited reply %.80q", ErrProtocol, r.line)
	default:
	}
	id := a.nextID.Add(1)
	pc := &Pending{a: a, id: id, tool: tool, onProgress: onProgress}
	if onProgress != nil || a.cfg.Protocol == ProtocolMCP {
		pc.running = make(chan struct{})
		a.current.Store(pc) // before the request: progress may follow at once
	}
	// The request is built in a buffer kept between calls (callMu is
	// held): a session's context makes it kilobytes, every call.
	buf := appendRequest(a.wbuf[:0], id, method, params)
	err := a.write(buf)
	if cap(buf) <= maxKeptRequestBuf {
		a.wbuf = buf
	}
	if err != nil {
		a.current.CompareAndSwap(pc, nil)
		a.callMu.Unlock()
		return nil, err
	}
	return pc, nil
}

func decodeReply(line []byte, id uint64) (json.RawMessage, error) {
	if res, ok := decodeResultFast(line, id); ok {
		return res, nil
	}
	return decodeReplySlow(line, id)
}

// decodeReplySlow is decodeReply by encoding/json: every reply, and the
// reference for decodeResultFast.
func decodeReplySlow(line []byte, id uint64) (json.RawMessage, error) {
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, &garbageError{line: line, err: err}
	}
	if m.JSONRPC != "2.0" {
		return nil, fmt.Errorf("%w: reply without \"jsonrpc\":\"2.0\"", ErrProtocol)
	}
	if got, err := strconv.ParseUint(string(m.ID), 10, 64); err != nil || got != id {
		return nil, fmt.Errorf("%w: reply id %s, want %d", ErrProtocol, m.ID, id)
	}
	if m.Error != nil {
		return nil, m.Error
	}
	if m.Result == nil {
		return nil, fmt.Errorf("%w: reply has neither result nor error", ErrProtocol)
	}
	return m.Result, nil
}

// decodeResultFast returns the result of a plain successful reply to call
// id, as decodeReply's encoding/json path would: an object with exactly
// the members "jsonrpc":"2.0", the id, and a result that is not null, in
// any order. Anything else reports false and goes the encoding/json way,
// which also gives errors their text. FuzzDecodeReply checks that both
// agree whenever this one answers.
func decodeResultFast(line []byte, id uint64) (res json.RawMessage, ok bool) {
	seen, ok := jsonscan.Fields(line, replyFields, func(field int, val []byte) bool {
		switch field {
		case 0:
			return string(val) == `"2.0"`
		case 1:
			got, err := strconv.ParseUint(string(val), 10, 64)
			return err == nil && got == id
		case 2:
			res = json.RawMessage(append([]byte(nil), val...))
		}
		return true
	})
	return res, ok && seen == 7
}

// replyFields are the members of a plain successful reply; "error", or a
// key encoding/json may match without case, sends a reply the slow way.
var replyFields = []string{"jsonrpc", "id", "result"}

// garbageError is a reply line that is not JSON at all. It is a protocol
// error whose raw line is kept so the contract can classify it (for the
// native protocol a non-JSON line is the model's invalid JSON).
type garbageError struct {
	line []byte
	err  error
}

func (e *garbageError) Error() string {
	return fmt.Sprintf("%v: reply is not JSON (%v): %.80q", ErrProtocol, e.err, e.line)
}
func (e *garbageError) Unwrap() error { return ErrProtocol }

// IsInvalidJSON reports whether err is a reply that was not JSON at all.
func IsInvalidJSON(err error) bool {
	var g *garbageError
	return errors.As(err, &g)
}

// Broken is closed once the agent's stdout has ended or failed (EOF, a line
// too long, the pipe closed): the agent can no longer reply, even if its
// process lives on.
func (a *Agent) Broken() <-chan struct{} { return a.readDone }

// BrokenErr says why stdout ended; valid after Broken.
func (a *Agent) BrokenErr() error { <-a.readDone; return a.readErr }

// InvalidJSONError returns the error a reply line that is not JSON gives,
// for callers that fabricate replies (chaos).
func InvalidJSONError(line []byte) error {
	return &garbageError{line: line, err: errors.New("invalid JSON")}
}

// Progress reports whether an agent that has not answered yet is visibly
// making progress rather than hung: its reply is already on its way (bytes
// in the pipe, or a line read and not yet taken), it reported progress on
// its call since the last look (an MCP tool waiting on a timer or a
// remote service uses no CPU, but says it is at work), or its process is
// running, waiting for a CPU, or in uninterruptible I/O. It also returns
// the CPU time the process has used (its own and its reaped children's, in
// clock ticks): a caller that sees no progress now can look again a moment
// later, and an agent that used CPU in between is working in bursts (a
// stream of tokens read from its upstream), not stuck. On a loaded machine
// a slow call is usually an agent short of CPU, not a hung one; telling
// them apart keeps the hang detector from killing healthy agents.
func (a *Agent) Progress() (progressing bool, cpuTicks uint64) {
	if len(a.replies) > 0 {
		return true, 0
	}
	if n := a.reports.Load(); a.reportsSeen.Swap(n) != n {
		return true, 0
	}
	if a.pendingBytes() > 0 {
		return true, 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(a.PID()) + "/stat")
	if err != nil {
		return false, 0
	}
	// The state follows the command name in parentheses, which may itself
	// contain spaces or parentheses; utime, stime, cutime and cstime are
	// the 12th to 15th fields after the state.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, 0
	}
	f := bytes.Fields(b[i+2:])
	for _, t := range f[min(11, len(f)):min(15, len(f))] {
		v, _ := strconv.ParseUint(string(t), 10, 64)
		cpuTicks += v
	}
	return f[0][0] == 'R' || f[0][0] == 'D', cpuTicks
}

// pendingBytes is how many bytes wait in the stdout pipe. Not through
// os.File.Fd, which would put the pipe in blocking mode for good and tie a
// thread to its reader.
func (a *Agent) pendingBytes() int {
	rc, err := a.stdout.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
