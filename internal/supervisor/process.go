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
	Send(params json.RawMessage) (pendingReply, error)
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
}

// pendingReply is a call sent to a process, its reply to come.
type pendingReply interface {
	Wait(ctx context.Context, leave <-chan struct{}) (json.RawMessage, error)
	Close()
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

func (r realProcess) Send(params json.RawMessage) (pendingReply, error) {
	p, err := r.Agent.Send(params)
	if p == nil {
		return nil, err
	}
	return p, err
}
