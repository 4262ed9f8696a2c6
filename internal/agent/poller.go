package agent

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A poller waits on many file descriptors from one goroutine: one epoll
// set, one goroutine blocked in epoll_wait (so one thread), and a callback
// per descriptor run on that goroutine when it is readable. It replaces a
// goroutine per agent for what an idle agent almost never does: exit, and
// write to its stderr. A parked goroutine costs nothing in CPU but its
// stack is resident: two per agent were ~16 MB of the daemon's RSS at a
// thousand agents.
//
// Descriptors are level-triggered, and each callback reads at most once
// per wake-up, so one chatty agent cannot starve the others.
type poller struct {
	epfd int

	mu      sync.Mutex
	watches map[uint64]*pollWatch
	next    uint64
}

type pollWatch struct {
	fd int
	// ready runs on the poller's goroutine when fd is readable (or hung
	// up); true means the watch is over: fd leaves the epoll set, then
	// over runs (it may close fd).
	ready func() (over bool)
	over  func()
}

var (
	exitPoller, stderrPoller *poller
	pollersOnce              sync.Once
	pollersFailed            atomic.Bool
)

// pollers returns the node's two pollers, exits and stderr apart so that
// a slow log sink holding up stderr lines never delays noticing an exit.
// nil when epoll is not available: callers then take a goroutine per fd.
func pollers() (exits, stderr *poller) {
	pollersOnce.Do(func() {
		var err error
		if exitPoller, err = newPoller(); err != nil {
			pollersFailed.Store(true)
			return
		}
		if stderrPoller, err = newPoller(); err != nil {
			pollersFailed.Store(true)
			return
		}
	})
	if pollersFailed.Load() {
		return nil, nil
	}
	return exitPoller, stderrPoller
}

// StartPollers starts the node's pollers now rather than with the first
// agent. They live as long as the process (like Go's own netpoller): a
// test that checks for leaked goroutines and descriptors calls this first.
func StartPollers() { pollers() }

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &poller{epfd: epfd, watches: make(map[uint64]*pollWatch)}
	go p.run()
	return p, nil
}

// add watches fd until ready reports the watch over (then over runs) or
// remove is called. It returns the watch's token for remove.
func (p *poller) add(fd int, ready func() bool, over func()) (uint64, error) {
	p.mu.Lock()
	p.next++
	tok := p.next
	p.watches[tok] = &pollWatch{fd: fd, ready: ready, over: over}
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP}
	setToken(&ev, tok)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.watches, tok)
		p.mu.Unlock()
		return 0, os.NewSyscallError("epoll_ctl", err)
	}
	return tok, nil
}

// remove stops watching tok's fd, which must still be open, and reports
// whether it was watched. A callback the poller already began may still
// run once: callbacks read through the fd's os.File, which fails once the
// file is closed, rather than through its number, which may be reused.
func (p *poller) remove(tok uint64) bool {
	p.mu.Lock()
	w, ok := p.watches[tok]
	delete(p.watches, tok)
	p.mu.Unlock()
	if ok {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	}
	return ok
}

func (p *poller) run() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Not expected on a valid epoll fd; nothing can be watched.
			panic(os.NewSyscallError("epoll_wait", err))
		}
		for i := range events[:n] {
			tok := token(&events[i])
			p.mu.Lock()
			w := p.watches[tok]
			p.mu.Unlock()
			if w == nil {
				continue // removed after this wake-up began
			}
			if w.ready() && p.remove(tok) && w.over != nil {
				w.over()
			}
		}
	}
}

// An epoll event's 64 bits of user data hold the watch's token.
func setToken(ev *unix.EpollEvent, tok uint64) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
