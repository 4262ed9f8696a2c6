package agent

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// An agent's exit and its stderr are watched by the node's pollers
// (poller.go) rather than by two goroutines of its own; its stdout, where
// replies come, keeps a reader goroutine, as replies are the latency that
// counts.

// stderrWatch is an agent's stderr read by the stderr poller: what it has
// of a line not yet ended, and the limiter of its log.
type stderrWatch struct {
	a    *Agent
	tok  uint64
	line []byte // the current line so far; nil while none
	lim  *rateLimiter
	buf  []byte // shared read buffer: used only on the poller's goroutine
	once sync.Once
}

// stderrReadBytes is what one wake-up reads of one agent's stderr.
const stderrReadBytes = 4096

// stderrBuf is the stderr poller's read buffer: callbacks run one at a
// time on its goroutine.
var stderrBuf = make([]byte, stderrReadBytes)

// watchStderr reads the agent's stderr on the stderr poller; false if it
// could not (the caller then starts readStderr).
func (a *Agent) watchStderr() bool {
	_, p := pollers()
	if p == nil {
		return false
	}
	rc, err := a.stderr.SyscallConn()
	if err != nil {
		return false
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return false
	}
	w := &stderrWatch{a: a, lim: newRateLimiter(a.cfg.StderrRate, a.cfg.Now), buf: stderrBuf}
	tok, err := p.add(fd, func() bool { return w.ready(rc) }, w.finish)
	if err != nil {
		return false
	}
	w.tok = tok
	a.stderrWatch = w
	return true
}

// ready reads once from the pipe (it is the poller's callback) and logs
// the lines completed; true at the end of the stream or once the file is
// closed.
func (w *stderrWatch) ready(rc syscall.RawConn) bool {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), w.buf)
			if rerr != unix.EINTR {
				return true // never wait here: the poller does
			}
		}
	})
	switch {
	case err != nil: // closed under us
	case errors.Is(rerr, unix.EAGAIN):
		return false // another reader, or a spurious wake-up
	case rerr == nil && n > 0:
		w.feed(w.buf[:n])
		return false
	}
	if len(w.line) > 0 {
		w.emit(w.line) // the last line, with no newline
	}
	w.line = nil
	return true
}

// feed splits what was read into lines; a line longer than
// stderrLineBytes is cut at that size (as scanLinesTruncating).
func (w *stderrWatch) feed(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.line = append(w.line, b...)
			b = nil
		} else {
			w.line = append(w.line, b[:i]...)
			b = b[i+1:]
		}
		for len(w.line) >= stderrLineBytes {
			w.emit(w.line[:stderrLineBytes])
			w.line = append(w.line[:0], w.line[stderrLineBytes:]...)
		}
		if i >= 0 {
			w.emit(w.line)
			w.line = w.line[:0]
		}
	}
	if len(w.line) == 0 && cap(w.line) > 256 {
		w.line = nil // a long line's buffer is not kept
	}
}

func (w *stderrWatch) emit(b []byte) {
	b = bytes.TrimSuffix(b, []byte("\r"))
	line := strings.ToValidUTF8(string(b), "\uFFFD")
	a := w.a
	if a.cfg.OnStderr != nil {
		a.cfg.OnStderr(line)
	}
	if ok, dropped := w.lim.allow(); ok {
		if dropped > 0 {
			a.log.Warn("agent stderr lines suppressed", "count", dropped)
		}
		a.log.Info(line, "source", "stderr")
	}
}

// finish closes StderrDone, once: at the end of the stream, or when the
// agent is closed first.
func (w *stderrWatch) finish() { w.once.Do(func() { close(w.a.errDone) }) }

// stopStderrWatch ends the stderr watch before the pipe is closed (its fd
// must still be open to leave the epoll set).
func (a *Agent) stopStderrWatch() {
	w := a.stderrWatch
	if w == nil {
		return
	}
	if _, p := pollers(); p != nil && p.remove(w.tok) {
		w.finish()
	}
}

// watchExit waits for the child's exit on the exit poller: its pidfd turns
// readable at the exit, and it is reaped then with wait4(WNOHANG). False
// if it could not (no pidfd: the caller then starts wait).
func (a *Agent) watchExit() bool {
	p, _ := pollers()
	if p == nil || !a.child || a.pidfd == nil {
		return false
	}
	rc, err := a.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return false
	}
	var ws syscall.WaitStatus
	var werr error
	ready := func() bool { return reaped(a.pid, &ws, &werr) }
	over := func() {
		// Reaped: a signal now fails on the closed pidfd rather than
		// reach a reused pid.
		a.pidfd.Close()
		a.exitTime = a.cfg.Now()
		a.status, a.waitErr = ws, werr
		close(a.done)
	}
	if _, err := p.add(fd, ready, over); err != nil {
		return false
	}
	return true
}
