//go:build !linux

package telemetry

import (
	"context"
	"fmt"
	"runtime"
)

// Probes are the loaded telemetry programs; eBPF exists only on Linux.
type Probes struct{}

var errNotLinux = fmt.Errorf("%w: eBPF and procfs need Linux, not %s", ErrNotSupported, runtime.GOOS)

// Load returns ErrNotSupported: eBPF exists only on Linux.
func Load(ctx context.Context, opts Options) (*Probes, error) { return nil, errNotLinux }

func (p *Probes) Unavailable() []error                           { return []error{errNotLinux} }
func (p *Probes) Watch(cgroupID uint64, cgroupPath string) error { return errNotLinux }
func (p *Probes) Unwatch(cgroupID uint64) error                  { return errNotLinux }
func (p *Probes) Read(cgroupID uint64) (Counters, error)         { return Counters{}, errNotLinux }
func (p *Probes) Events() <-chan Event                           { return nil }
func (p *Probes) Close() error                                   { return nil }

// ProcStats returns ErrNotSupported: procfs exists only on Linux.
func ProcStats(pid int) (ProcSample, error) { return ProcSample{}, errNotLinux }

// CgroupProcStats returns ErrNotSupported: cgroups exist only on Linux.
func CgroupProcStats(cgroupPath string) (ProcSample, error) { return ProcSample{}, errNotLinux }

// ReadPSI returns ErrNotSupported: PSI exists only on Linux.
func ReadPSI(cgroupPath string) (PSI, error) { return PSI{}, errNotLinux }
