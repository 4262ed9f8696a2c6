package telemetry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/resilienced/resilienced/internal/kfile"
)

// ProcStats reads one process's resource use from procfs.
func ProcStats(pid int) (ProcSample, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ProcSample{}, fmt.Errorf("%w: procfs: %w", ErrNotSupported, err)
	}
	return procStats(fs, pid)
}

func procStats(fs procfs.FS, pid int) (ProcSample, error) {
	proc, err := fs.Proc(pid)
	if err != nil {
		return ProcSample{}, fmt.Errorf("telemetry: process %d: %w", pid, err)
	}
	st, err := proc.Stat()
	if err != nil {
		return ProcSample{}, fmt.Errorf("telemetry: process %d: %w", pid, err)
	}
	s := ProcSample{
		RSSBytes:   uint64(max(st.ResidentMemory(), 0)),
		CPUSeconds: st.CPUTime(),
		Threads:    st.NumThreads,
		Processes:  1,
	}
	// Another user's process hides its fds from a non-root daemon: leave
	// OpenFDs at 0 rather than fail the whole sample.
	if n, err := proc.FileDescriptorsLen(); err == nil {
		s.OpenFDs = n
	}
	return s, nil
}

// CgroupProcStats sums ProcStats over the processes in the cgroup directory
// (its cgroup.procs). Processes that exit while it reads are skipped.
func CgroupProcStats(cgroupPath string) (ProcSample, error) {
	b, err := readSmallFile(filepath.Join(cgroupPath, "cgroup.procs"))
	if err != nil {
		return ProcSample{}, fmt.Errorf("telemetry: %w", err)
	}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ProcSample{}, fmt.Errorf("%w: procfs: %w", ErrNotSupported, err)
	}
	var sum ProcSample
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return ProcSample{}, fmt.Errorf("telemetry: cgroup.procs: %w", err)
		}
		s, err := procStats(fs, pid)
		if err != nil {
			continue // exited meanwhile
		}
		sum.add(s)
	}
	return sum, nil
}

// ReadPSI reads the pressure stall information of the cgroup directory from
// its cpu.pressure, memory.pressure and io.pressure files, or, when the
// cgroup has none (cgroupPath empty, cgroup v1, or PSI off for cgroups), the
// system-wide figures from /proc/pressure. The error wraps ErrNotSupported
// when neither exists (a kernel without PSI, or booted with psi=0).
func ReadPSI(cgroupPath string) (PSI, error) {
	if cgroupPath != "" {
		psi, err := readPSIFiles("cgroup", func(res string) string {
			return filepath.Join(cgroupPath, res+".pressure")
		})
		if !errors.Is(err, ErrNotSupported) {
			return psi, err
		}
	}
	return readPSIFiles("system", func(res string) string {
		return filepath.Join("/proc/pressure", res)
	})
}

// readPSIFiles reads the cpu, memory and io files named by path; a missing
// file leaves that resource at zero, all three missing is ErrNotSupported.
func readPSIFiles(scope string, path func(resource string) string) (PSI, error) {
	psi := PSI{Scope: scope}
	found := 0
	for _, r := range []struct {
		name string
		dst  *Pressure
	}{
		{"cpu", &psi.CPU},
		{"memory", &psi.Memory},
		{"io", &psi.IO},
	} {
		b, err := readSmallFile(path(r.name))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EOPNOTSUPP) {
			continue
		}
		if err != nil {
			return PSI{}, fmt.Errorf("telemetry: %w", err)
		}
		p, err := parsePressure(b)
		if err != nil {
			return PSI{}, fmt.Errorf("telemetry: %s: %w", path(r.name), err)
		}
		*r.dst = p
		found++
	}
	if found == 0 {
		return PSI{}, fmt.Errorf("%w: no %s PSI files (%s)", ErrNotSupported, scope, path("*"))
	}
	return psi, nil
}

// readSmallFile reads a small kernel file (PSI, cgroup.procs) with plain
// syscalls (package kfile): os.ReadFile would register it with Go's
// netpoller (pressure files are pollable, for PSI triggers) and remove it
// again at Close, a third of the cost of sampling an idle agent.
func readSmallFile(path string) ([]byte, error) { return kfile.Read(path) }
