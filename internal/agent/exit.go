package agent

import (
	"errors"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitExit waits for the process pid, a child of ours, to exit and reaps
// it, without holding an OS thread: its pidfd (pidfd_open, Linux 5.10 for
// PIDFD_NONBLOCK) becomes readable at the exit, and it waits for that in
// Go's netpoller like any socket, then reaps with wait4(WNOHANG). A
// thousand idle agents thus cost a thousand parked goroutines, not a
// thousand threads blocked in waitid. Kernels without pidfds take the old
// way, a blocking wait4 on a thread of its own.
func waitExit(pid int) (syscall.WaitStatus, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return waitBlocking(pid)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller.
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return waitBlocking(pid)
	}
	var ws syscall.WaitStatus
	var werr error
	err = rc.Read(func(uintptr) bool { return reaped(pid, &ws, &werr) })
	return ws, errors.Join(err, werr)
}

// reaped reaps pid if it has exited (wait4 WNOHANG) and reports whether
// the wait is over: it exited, or waiting failed (*werr).
func reaped(pid int, ws *syscall.WaitStatus, werr *error) bool {
	for {
		got, err := syscall.Wait4(pid, ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			*werr = err
			return true
		}
		return got == pid // 0: still running; wait for readability
	}
}

func waitBlocking(pid int) (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			return ws, err
		}
	}
}

// exitString says how a process ended, as os.ProcessState.String does:
// "exit status 1", "signal: killed", with " (core dumped)" when it did.
func exitString(ws syscall.WaitStatus) string {
	var s string
	switch {
	case ws.Exited():
		s = "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s = "signal: " + ws.Signal().String()
	default:
		s = "exited"
	}
	if ws.CoreDump() {
		s += " (core dumped)"
	}
	return s
}
