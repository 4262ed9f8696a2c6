package supervisor

import (
	"context"
	"encoding/json"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
)

// process is an agent process as a pool drives it. The real one is an
// *agent.Agent; tests of the supervisor's logic (the state machine,
// backoff, fault classes) run a fake under testing/synctest, with virtual
// time, and the real-process tests stay as the integration tier.
type process interface {
	PID() int
	Initialize(ctx context.Context) error
	Send(params json.RawMessage, onProgress func(agent.ProgressReport)) (pendingReply, error)
	Ping(ctx context.Context) error
	// Done is closed once the process has exited; Broken once its stdout
	// is closed (BrokenErr says why).
	Done() <-chan struct{}
	Broken() <-chan struct{}
	BrokenErr() error
	ExitStatus() string
	ExitTime() time.Time
	ExitedOK() bool
	Progress() (progressing bool, cpuTicks uint64)
	SignalGroup(sig syscall.Signal) error
	Terminate(grace time.Duration)
	Close() error
	// Tools are what an MCP server listed at its handshake (nil for the
	// native protocol).
	Tools() []agent.Tool
}

// pendingReply is a call sent to a process, its reply to come.
type pendingReply interface {
	Wait(ctx context.Context, leave <-chan struct{}) (json.RawMessage, error)
	Close()
	// Cancel tells the process to stop the call, if its protocol can
	// (MCP); Running is closed if it reports progress on it after that.
	Cancel(reason string) bool
	Running() <-chan struct{}
}

// startProcess starts an agent process; Options.startProcess replaces it
// in tests.
func startProcess(cfg agent.Config) (process, error) {
	a, err := agent.Start(cfg)
	if err != nil {
		return nil, err
	}
	return realProcess{a}, nil
}

// realProcess adapts *agent.Agent, whose Send returns its concrete type.
type realProcess struct{ *agent.Agent }

func (r realProcess) Send(params json.RawMessage, onProgress func(agent.ProgressReport)) (pendingReply, error) {
	p, err := r.Agent.Send(params, onProgress)
	if p == nil {
		return nil, err
	}
	return p, err
}
