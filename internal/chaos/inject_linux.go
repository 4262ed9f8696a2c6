package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

const (
	sigKill = syscall.SIGKILL
	sigSegv = syscall.SIGSEGV
)

func signalProcess(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("no pid")
	}
	return syscall.Kill(pid, sig)
}

// stopGroup stops the agent's process group (agents without cgroups lead
// their own group).
func stopGroup(pid int) error {
	if pid <= 0 {
		return errors.New("no pid")
	}
	return syscall.Kill(-pid, syscall.SIGSTOP)
}

func continueGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGCONT)
	if errors.Is(err, syscall.ESRCH) {
		return nil // the group is gone: nothing left stopped
	}
	return err
}

// helper is the memory helper process of a leak or oom fault, placed in an
// agent's cgroups.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *limitedBuffer
	died   chan time.Time // receives the time of its death, once
	exited chan struct{}

	mu     sync.Mutex
	state  *syscall.WaitStatus
	waitEr error
}

// startHelper starts the helper in sb's cgroups; it allocates nothing until
// begin.
func startHelper(command []string, sb supervisor.Sandbox, mode string, rate, cap int64) (*helper, error) {
	if len(command) == 0 {
		return nil, fmt.Errorf("%w: no helper command", ErrNotSupported)
	}
	fd := sb.FD()
	if fd < 0 {
		return nil, fmt.Errorf("%w: the agent's cgroup is gone", supervisor.ErrUnknownAgent)
	}
	args := append(command[1:len(command):len(command)], mode, strconv.FormatInt(rate, 10), strconv.FormatInt(cap, 10))
	cmd := exec.Command(command[0], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	h := &helper{cmd: cmd, stderr: &limitedBuffer{max: 4096}, died: make(chan time.Time, 1), exited: make(chan struct{})}
	cmd.Stderr = h.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	h.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the memory helper %s: %w", command[0], err)
	}
	go func() {
		err := cmd.Wait()
		at := time.Now()
		h.mu.Lock()
		h.waitEr = err
		if ps := cmd.ProcessState; ps != nil {
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
				h.state = &ws
			}
		}
		h.mu.Unlock()
		h.died <- at
		close(h.exited)
	}()
	// On hybrid hosts the memory controller is a v1 hierarchy: join it
	// before allocating anything, so that every byte is charged there.
	if err := sb.Join(cmd.Process.Pid); err != nil {
		h.stop(context.Background())
		return nil, fmt.Errorf("placing the memory helper in the agent's cgroups: %w", err)
	}
	return h, nil
}

// begin tells the helper to allocate.
func (h *helper) begin() error {
	_, err := io.WriteString(h.stdin, "go\n")
	return err
}

// exitErr says why the helper died, if not of the cgroup's limit.
func (h *helper) exitErr() error {
	select {
	case <-h.exited:
	default:
		return nil // still alive: the cgroup's OOM kill came first
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != nil && h.state.Signaled() && h.state.Signal() == syscall.SIGKILL {
		return nil // the OOM killer, or the supervisor killing the agent's cgroup
	}
	if h.state != nil && h.state.Exited() && h.state.ExitStatus() == helperNoLimit {
		return errors.New("the memory helper allocated twice the pool's memory limit and was not stopped: the cgroup enforces no memory limit")
	}
	return fmt.Errorf("the memory helper ended unexpectedly (%v): %s", h.waitEr, bytes.TrimSpace(h.stderr.Bytes()))
}

// stop ends the helper (it exits when its stdin closes; it is killed if it
// does not) and waits for it.
func (h *helper) stop(ctx context.Context) error {
	h.stdin.Close()
	select {
	case <-h.exited:
		return nil
	case <-time.After(100 * time.Millisecond):
	}
	h.cmd.Process.Kill()
	select {
	case <-h.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory helper pid %d did not exit: %w", h.cmd.Process.Pid, ctx.Err())
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
