package agent

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// StartForked starts an agent that another process forks for us (a zygote,
// see docs/PROTOCOL.md): fork gets the child's ends of its stdin, stdout
// and stderr, has the zygote fork a child onto them, and returns the
// child's pid. The child is not ours: its exit is watched through a pidfd
// and its status is not known (the zygote reaps it). It does not
// handshake; call [Agent.Initialize], after placing the child in its
// cgroup, so that it serves nothing before.
func StartForked(cfg Config, fork func(stdin, stdout, stderr *os.File) (pid int, err error)) (*Agent, error) {
	cfg = cfg.withDefaults()
	inR, inW, outR, outW, errR, errW, err := pipes(cfg.ID)
	if err != nil {
		return nil, err
	}
	pid, err := fork(inR, outW, errW)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("agent %s: fork: %w", cfg.ID, err)
	}
	a := newAgent(cfg, pid, inW, outR, errR)
	a.run()
	return a, nil
}

// errNotChild is the exit "status" of a process that is not our child.
var errNotChild = fmt.Errorf("exited (status unknown: forked by a zygote, which reaps it)")

// waitNotChild waits for the exit of pid, which is not a child of ours,
// through its pidfd (readable at the exit) in Go's netpoller.
func waitNotChild(pid int) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("%w (pidfd_open: %w)", errNotChild, err) // gone already
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if err := rc.Read(func(uintptr) bool {
		var fds = []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n > 0
	}); err != nil {
		return err
	}
	return errNotChild
}
