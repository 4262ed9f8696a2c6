//go:build !linux

package isolate

import (
	"context"
	"fmt"
	"runtime"
)

// Switch is the Kill Switch of one node. Outside Linux every method returns
// ErrNotSupported (breakers work everywhere).
type Switch struct{ breaches chan Breach }

var errOS = fmt.Errorf("%w on %s", ErrNotSupported, runtime.GOOS)

// New returns a Switch whose methods return ErrNotSupported, and an error
// wrapping ErrNotSupported.
func New(ctx context.Context, opts Options) (*Switch, error) {
	s := &Switch{breaches: make(chan Breach)}
	close(s.breaches)
	return s, errOS
}

func (s *Switch) Isolate(agentID, cgroupPath string) error { return errOS }
func (s *Switch) Release(agentID string) error             { return errOS }
func (s *Switch) Isolated(agentID string) bool             { return false }
func (s *Switch) Reconcile(live map[string]string) (kept, removed []string, err error) {
	return nil, nil, errOS
}
func (s *Switch) ApplyPolicy(agentID, cgroupPath string, p Policy) error { return errOS }
func (s *Switch) RemovePolicy(agentID string) error                      { return errOS }
func (s *Switch) Drops(agentID string) (DropStats, error)                { return DropStats{}, errOS }
func (s *Switch) Breaches() <-chan Breach                                { return s.breaches }
func (s *Switch) IsolateNode(ctx context.Context, m Mesh) error          { return errOS }
func (s *Switch) ReleaseNode(ctx context.Context) error                  { return errOS }
func (s *Switch) NodeIsolated() bool                                     { return false }
func (s *Switch) Close() error                                           { return nil }
