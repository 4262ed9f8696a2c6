package adopt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check tells whether a's process can be taken back: alive (its pidfd
// says so; a zombie is dead), the process the record names (the same start
// time: the pidfd pins the process, the record the pid), and still in its
// cgroup. The ping, which needs the agent's protocol, is the supervisor's.
func Check(a *Agent) error {
	if a.Err != nil {
		return a.Err
	}
	r := a.Record
	if err := Signal(a.Files.Pidfd, 0); err != nil {
		return fmt.Errorf("%w: pid %d: %w", ErrGone, r.PID, err)
	}
	st, state, err := procStat(r.PID)
	if err != nil {
		return fmt.Errorf("%w: pid %d: %w", ErrGone, r.PID, err)
	}
	if state == 'Z' || state == 'X' {
		return fmt.Errorf("%w: pid %d exited", ErrGone, r.PID)
	}
	if st != r.StartTime {
		return fmt.Errorf("%w: pid %d started at tick %d, the agent at %d", ErrReused, r.PID, st, r.StartTime)
	}
	if r.Cgroup != "" {
		b, err := os.ReadFile(filepath.Join(r.Cgroup, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCgroup, r.Cgroup, err)
		}
		if !containsLine(b, strconv.Itoa(r.PID)) {
			return fmt.Errorf("%w: pid %d is not in %s", ErrCgroup, r.PID, r.Cgroup)
		}
	}
	return nil
}

// Signal sends sig through a pidfd (pidfd_send_signal): never to a
// process that reused the pid.
func Signal(pidfd *os.File, sig syscall.Signal) error {
	if pidfd == nil {
		return errors.New("no pidfd")
	}
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) })
	if err != nil {
		return err
	}
	return serr
}

// StartTime returns the start time of process pid in clock ticks after
// boot (/proc/PID/stat field 22).
func StartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command, in parentheses, may hold spaces and parentheses: the
	// fields are counted from the last ')'. state is field 3, starttime 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected %.60q", pid, b)
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	return start, f[0][0], err
}

func containsLine(b []byte, s string) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if string(bytes.TrimSpace(l)) == s {
			return true
		}
	}
	return false
}
