//go:build !linux

package cgroup

import (
	"context"
	"fmt"
	"os"
)

var errNotLinux = fmt.Errorf("%w: cgroups exist only on Linux", ErrNotSupported)

// Manager is inert off Linux: Mode is ModeNone.
type Manager struct{}

// Open returns a Manager in ModeNone.
func Open(opts Options) (*Manager, error) {
	if opts.Name != "" {
		if err := validName(opts.Name); err != nil {
			return nil, err
		}
	}
	return &Manager{}, nil
}

func (m *Manager) Mode() Mode                        { return ModeNone }
func (m *Manager) Notes() []string                   { return []string{"cgroups off: not Linux"} }
func (m *Manager) Root() string                      { return "" }
func (m *Manager) Delegated() bool                   { return false }
func (m *Manager) Close() error                      { return nil }
func (m *Manager) Shutdown(context.Context) error    { return nil }
func (m *Manager) Reap(context.Context) (int, error) { return 0, nil }
func (m *Manager) Create(pool, agent string, lim Limits) (*Cgroup, error) {
	return nil, errNotLinux
}
func (m *Manager) Adopt(pool, agent string) (*Cgroup, error) { return nil, errNotLinux }

// Cgroup cannot be created off Linux.
type Cgroup struct{}

func (c *Cgroup) Path() string                        { return "" }
func (c *Cgroup) Pool() string                        { return "" }
func (c *Cgroup) Agent() string                       { return "" }
func (c *Cgroup) ID() uint64                          { return 0 }
func (c *Cgroup) FD() int                             { return -1 }
func (c *Cgroup) Join(int) error                      { return errNotLinux }
func (c *Cgroup) Attach(int) error                    { return errNotLinux }
func (c *Cgroup) Kill() error                         { return errNotLinux }
func (c *Cgroup) Freeze(context.Context) error        { return errNotLinux }
func (c *Cgroup) Thaw(context.Context) error          { return errNotLinux }
func (c *Cgroup) Wait(context.Context) error          { return errNotLinux }
func (c *Cgroup) Populated() (bool, error)            { return false, errNotLinux }
func (c *Cgroup) Remove() error                       { return errNotLinux }
func (c *Cgroup) Leave() error                        { return errNotLinux }
func (c *Cgroup) Destroy(context.Context) error       { return errNotLinux }
func (c *Cgroup) Procs() ([]int, error)               { return nil, errNotLinux }
func (c *Cgroup) Stats() (Stats, error)               { return Stats{}, errNotLinux }
func (c *Cgroup) MemoryEvents() (MemoryEvents, error) { return MemoryEvents{}, errNotLinux }

// CgroupIDOf fails off Linux.
func CgroupIDOf(path string) (uint64, error) { return 0, errNotLinux }

// Mount2 fails off Linux.
func Mount2() (string, error)                      { return "", errNotLinux }
func (c *Cgroup) NotifyOOM(func()) (func(), error) { return nil, errNotLinux }
func (c *Cgroup) ProcsFile() (*os.File, error)     { return nil, errNotLinux }
func (c *Cgroup) Holds(int) (bool, error)          { return false, errNotLinux }
