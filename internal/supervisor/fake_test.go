package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
)

// fakeAgents starts fake agent processes whose behaviour a test scripts:
// the supervisor's logic runs against them under testing/synctest, with
// virtual time and no real process.
type fakeAgents struct {
	// failStart, when set, makes a start fail: the process "exits" before
	// its handshake.
	failStart atomic.Bool
	// badFrom, when > 0, makes each process answer its badFrom-th call and
	// every later one with an output that breaks the contract.
	badFrom atomic.Int64
	// exitAfter, when > 0, makes each process exit this long after its
	// handshake (a crash, whatever it is doing).
	exitAfter atomic.Int64
	// initDelay, when > 0, is how long each handshake takes.
	initDelay atomic.Int64
	// hangPings makes pings go unanswered; pings counts them.
	hangPings atomic.Bool
	pings     atomic.Int64
	// hangPID, when set, makes only that process's pings go unanswered.
	hangPID atomic.Int64

	mu      sync.Mutex
	nextPID int
	started []time.Time
}

var errFakeExit = fmt.Errorf("%w: fake agent exited", agent.ErrExited)

func (f *fakeAgents) start(agent.Config) (process, error) {
	f.mu.Lock()
	f.nextPID++
	p := &fakeProcess{f: f, pid: 1000 + f.nextPID, done: make(chan struct{}), broken: make(chan struct{})}
	f.started = append(f.started, time.Now())
	f.mu.Unlock()
	return p, nil
}

func (f *fakeAgents) starts() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.started...)
}

type fakeProcess struct {
	f      *fakeAgents
	pid    int
	calls  atomic.Int64
	once   sync.Once
	done   chan struct{}
	broken chan struct{}
	at     time.Time
	ok     bool
}

func (p *fakeProcess) exit(ok bool) {
	p.once.Do(func() {
		p.at, p.ok = time.Now(), ok
		close(p.broken)
		close(p.done)
	})
}

func (p *fakeProcess) PID() int { return p.pid }

func (p *fakeProcess) Initialize(ctx context.Context) error {
	if d := time.Duration(p.f.initDelay.Load()); d > 0 {
		time.Sleep(d)
	}
	if p.f.failStart.Load() {
		p.exit(false)
		return errFakeExit
	}
	if d := time.Duration(p.f.exitAfter.Load()); d > 0 {
		time.AfterFunc(d, func() { p.exit(false) })
	}
	return nil
}

func (p *fakeProcess) Send(json.RawMessage, func(agent.ProgressReport)) (pendingReply, error) {
	select {
	case <-p.done:
		return nil, errFakeExit
	default:
	}
	out := json.RawMessage(`{"answer":"ok"}`)
	if n, bad := p.calls.Add(1), p.f.badFrom.Load(); bad > 0 && n >= bad {
		out = json.RawMessage(`{"answer":42}`)
	}
	return fakeReply{p: p, out: out}, nil
}

type fakeReply struct {
	p   *fakeProcess
	out json.RawMessage
}

func (r fakeReply) Wait(ctx context.Context, leave <-chan struct{}) (json.RawMessage, error) {
	select {
	case <-r.p.done:
		return nil, errFakeExit
	default:
		return r.out, nil
	}
}

func (fakeReply) Close()                   {}
func (fakeReply) Cancel(string) bool       { return false }
func (fakeReply) Running() <-chan struct{} { return nil }

func (p *fakeProcess) Ping(ctx context.Context) error {
	p.f.pings.Add(1)
	if p.f.hangPings.Load() || p.f.hangPID.Load() == int64(p.pid) {
		select {
		case <-p.done:
			return errFakeExit
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-p.done:
		return errFakeExit
	default:
		return nil
	}
}

func (p *fakeProcess) Done() <-chan struct{}   { return p.done }
func (p *fakeProcess) Broken() <-chan struct{} { return p.broken }
func (p *fakeProcess) BrokenErr() error        { <-p.broken; return errFakeExit }
func (p *fakeProcess) ExitStatus() string      { return "exit status 1" }
func (p *fakeProcess) ExitTime() time.Time     { <-p.done; return p.at }
func (p *fakeProcess) ExitedOK() bool          { <-p.done; return p.ok }
func (p *fakeProcess) Progress() (bool, uint64) {
	return false, 0
}

func (p *fakeProcess) SignalGroup(sig syscall.Signal) error {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.exit(false)
	}
	return nil
}

func (p *fakeProcess) Terminate(time.Duration) { p.exit(true) }
func (p *fakeProcess) Close() error            { return nil }
func (p *fakeProcess) Tools() []agent.Tool     { return nil }
