package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/resilienced/resilienced/internal/adopt"
)

// An agent outlives the daemon that started it (internal/adopt): the
// daemon hands its ends of the agent's pipes and a pidfd to the next
// instance, which adopts the process as it is, without a new handshake.

// Handles returns duplicates of the daemon's ends of the agent's pipes
// and a new pidfd of its process, for a next daemon to adopt it. The
// caller owns them.
func (a *Agent) Handles() (pidfd, stdin, stdout, stderr *os.File, err error) {
	fd, err := unix.PidfdOpen(a.pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("agent %s: pidfd: %w", a.cfg.ID, err)
	}
	pidfd = os.NewFile(uintptr(fd), "pidfd:"+a.cfg.ID)
	files := []*os.File{a.stdin, a.stdout, a.stderr}
	dups := make([]*os.File, 0, 3)
	for _, f := range files {
		d, err := adopt.Dup(f)
		if err != nil {
			pidfd.Close()
			for _, d := range dups {
				d.Close()
			}
			return nil, nil, nil, nil, fmt.Errorf("agent %s: %w", a.cfg.ID, err)
		}
		dups = append(dups, d)
	}
	return pidfd, dups[0], dups[1], dups[2], nil
}

// Adopted is an agent process started by a previous daemon.
type Adopted struct {
	PID    int
	Pidfd  *os.File // pins the process: signals never reach a reused pid
	Stdin  *os.File // the write end of its stdin
	Stdout *os.File // the read end of its stdout
	Stderr *os.File // the read end of its stderr
	Tools  []Tool   // what the MCP server listed at its handshake
}

// Adopt takes over an agent process a previous daemon started and shook
// hands with. The files become the Agent's. It is not this daemon's child:
// its exit is seen on its pidfd, and its exit status is not known. Call
// [Agent.Resync] before anything else.
func Adopt(cfg Config, h Adopted) (*Agent, error) {
	if h.PID <= 0 || h.Pidfd == nil || h.Stdin == nil || h.Stdout == nil || h.Stderr == nil {
		return nil, fmt.Errorf("agent %s: adopt: pid or files missing", cfg.ID)
	}
	cfg = cfg.withDefaults()
	a := newAgent(cfg, h.PID, h.Stdin, h.Stdout, h.Stderr)
	a.pidfd = h.Pidfd
	a.tools = h.Tools
	// Replies to the previous daemon's requests may still come: ids from
	// a random base in [2^40, 2^50) never match theirs (which count from
	// 1), and stay exact in a JavaScript number.
	a.nextID.Store(1<<40 + rand.Uint64N(1<<50-1<<41))
	go a.waitAdopted()
	go a.readStdout()
	a.startStderr()
	return a, nil
}

// waitAdopted waits for the adopted process's exit on its pidfd, in Go's
// netpoller (a pidfd turns readable when the process exits).
func (a *Agent) waitAdopted() {
	var err error
	if rc, cerr := a.pidfd.SyscallConn(); cerr != nil {
		err = cerr
	} else {
		err = rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(fds, 0)
			return perr == nil && n > 0
		})
	}
	a.exitTime = a.cfg.Now()
	if err != nil {
		a.waitErr = fmt.Errorf("waiting for the adopted process: %w", err)
	} else {
		a.waitErr = errAdoptedExit
	}
	a.pidfd.Close()
	close(a.done)
}

// errAdoptedExit: an adopted process is not this daemon's child, so its
// exit status is not known.
var errAdoptedExit = errors.New("exited (adopted: status unknown)")

// Resync brings an adopted agent in step: it pings it and drops every line
// before the ping's reply (late replies to the previous daemon's requests,
// the rest of a line it had half read). An answer with an error still
// proves the agent answers.
func (a *Agent) Resync(ctx context.Context) error {
	if !a.callMu.TryLock() {
		return ErrBusy
	}
	id := a.nextID.Add(1)
	pc := &Pending{a: a, id: id}
	defer pc.Close()
	if err := a.write(appendRequest(nil, id, "ping", nil)); err != nil {
		return err
	}
	for {
		select {
		case r := <-a.replies:
			if r.err != nil {
				return r.err
			}
			_, err := decodeReply(r.line, id)
			var rpc *RPCError
			if err == nil || errors.As(err, &rpc) {
				pc.answered = true
				return nil
			}
			a.log.Debug("adoption: dropped a line left from the previous daemon", "line", string(r.line[:min(len(r.line), 80)]))
		case <-ctx.Done():
			return ctx.Err()
		case <-a.done:
			return fmt.Errorf("%w: %s", ErrExited, a.ExitStatus())
		}
	}
}

// signalPidfd signals the process through its pidfd.
func (a *Agent) signalPidfd(sig syscall.Signal) error {
	rc, err := a.pidfd.SyscallConn()
	if err != nil {
		return os.ErrProcessDone
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return os.ErrProcessDone
	}
	if errors.Is(serr, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return serr
}
