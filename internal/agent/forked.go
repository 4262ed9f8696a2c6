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
	a, _, err := startForked(cfg, fork, false)
	return a, err
}

// StartForkedHandshaking is [StartForked] with the handshake sent ahead
// (native protocol): initialize is in the child's stdin before fork is
// called, so the child answers it as soon as it runs, with no hand-off
// through the daemon between its fork and its handshake. It returns the
// handshake in flight: wait for it with [Pending.Wait], then Close it;
// nothing else can be sent before. Use it only for a child that is in its
// cgroup before it reads its stdin (a zygote's child that places itself).
func StartForkedHandshaking(cfg Config, fork func(stdin, stdout, stderr *os.File) (pid int, err error)) (*Agent, *Pending, error) {
	return startForked(cfg, fork, true)
}

func startForked(cfg Config, fork func(stdin, stdout, stderr *os.File) (pid int, err error), handshake bool) (*Agent, *Pending, error) {
	cfg = cfg.withDefaults()
	inR, inW, outR, outW, errR, errW, err := pipes(cfg.ID)
	if err != nil {
		return nil, nil, err
	}
	a := newAgent(cfg, 0, inW, outR, errR)
	var hs *Pending
	if handshake {
		// A pipe holds the request until the child reads it: nothing
		// reads stdout before run, and nothing needs to.
		if hs, err = a.send("initialize", initializeParams(cfg), "", nil); err != nil {
			err = fmt.Errorf("agent %s: initialize: %w", cfg.ID, err)
		}
	}
	var pid int
	if err == nil {
		pid, err = fork(inR, outW, errW)
		if err != nil {
			err = fmt.Errorf("agent %s: fork: %w", cfg.ID, err)
		}
	}
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		if hs != nil {
			hs.Close()
		}
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, nil, err
	}
	a.pid = pid
	a.run()
	return a, hs, nil
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
