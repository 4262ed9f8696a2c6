package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// oomWatch turns the kernel's OOM notifications for every agent cgroup of a
// Manager into calls, on one goroutine parked in Go's netpoller: nothing
// runs while no cgroup is near its limit, however many agents there are.
//
// One epoll descriptor, itself in the netpoller, holds one inotify
// descriptor with a watch on each cgroup2 memory.events (the kernel
// signals every change of that file as IN_MODIFY) and, on v1 memory
// hierarchies, one eventfd per cgroup registered on its memory.oom_control
// through cgroup.event_control (signalled at every OOM in the cgroup). A
// notification only says "look": the counters are read then, and a call
// made only when oom_kill grew.
type oomWatch struct {
	m   *Manager
	ep  *os.File // epoll
	ino int      // inotify, in ep; -1 until needed

	mu     sync.Mutex
	byWD   map[int32]*oomEntry // inotify watches (cgroup2)
	byFD   map[int32]*oomEntry // eventfds (v1)
	closed bool
}

type oomEntry struct {
	c    *Cgroup
	fn   func()
	wd   int32 // inotify watch, or -1
	efd  int   // eventfd, or -1
	seen uint64
}

func newOOMWatch(m *Manager) (*oomWatch, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cgroup: OOM watch: epoll_create1: %w", err)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("cgroup: OOM watch: %w", err)
	}
	w := &oomWatch{m: m, ep: os.NewFile(uintptr(fd), "epoll:oom"), ino: -1,
		byWD: map[int32]*oomEntry{}, byFD: map[int32]*oomEntry{}}
	go w.loop()
	return w, nil
}

// NotifyOOM calls fn, from the Manager's one watching goroutine, each time
// the OOM killer kills a process of this cgroup (the count of kills read
// from memory.events, or memory.oom_control on v1, grew since NotifyOOM or
// the last call). fn must not block. stop ends the notifications; Remove
// ends them too. Without a memory controller it returns an error wrapping
// ErrNotSupported.
func (c *Cgroup) NotifyOOM(fn func()) (stop func(), err error) {
	w, err := c.m.oomWatcher()
	if err != nil {
		return nil, err
	}
	return w.add(c, fn)
}

func (m *Manager) oomWatcher() (*oomWatch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if m.oom == nil {
		w, err := newOOMWatch(m)
		if err != nil {
			return nil, err
		}
		m.oom = w
	}
	return m.oom, nil
}

func (w *oomWatch) add(c *Cgroup, fn func()) (func(), error) {
	e := &oomEntry{c: c, fn: fn, wd: -1, efd: -1}
	// Counted before the watch starts: only kills from now on are news.
	if me, err := c.MemoryEvents(); err == nil {
		e.seen = me.OOMKill
	} else {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	var err error
	switch {
	case slices.Contains(w.m.v2, "memory"):
		err = w.addInotifyLocked(e, c.file("memory.events"))
	case c.v1["memory"] != "":
		err = w.addEventfdLocked(e, c.v1["memory"])
	default:
		err = fmt.Errorf("%w: no memory controller", ErrNotSupported)
	}
	if err != nil {
		return nil, err
	}
	return func() { w.remove(e) }, nil
}

func (w *oomWatch) addInotifyLocked(e *oomEntry, file string) error {
	if w.ino < 0 {
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			return fmt.Errorf("cgroup: OOM watch: inotify_init1: %w", err)
		}
		if err := w.epollAdd(fd); err != nil {
			unix.Close(fd)
			return err
		}
		w.ino = fd
	}
	wd, err := unix.InotifyAddWatch(w.ino, file, unix.IN_MODIFY)
	if err != nil {
		return fmt.Errorf("cgroup: OOM watch on %s: %w", file, notExist(err, file))
	}
	e.wd = int32(wd)
	w.byWD[e.wd] = e
	return nil
}

func (w *oomWatch) addEventfdLocked(e *oomEntry, dir string) error {
	ctl, err := unix.Open(filepath.Join(dir, "memory.oom_control"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cgroup: OOM watch: %w", notExist(err, dir))
	}
	// The kernel holds the cgroup once registered; the file need not stay open.
	defer unix.Close(ctl)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cgroup: OOM watch: eventfd: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), fmt.Appendf(nil, "%d %d", efd, ctl), 0); err != nil {
		unix.Close(efd)
		return fmt.Errorf("cgroup: OOM watch on %s: %w", dir, notExist(err, dir))
	}
	if err := w.epollAdd(efd); err != nil {
		unix.Close(efd)
		return err
	}
	e.efd = efd
	w.byFD[int32(efd)] = e
	return nil
}

func (w *oomWatch) epollAdd(fd int) error {
	rc, err := w.ep.SyscallConn()
	if err != nil {
		return err
	}
	var addErr error
	err = rc.Control(func(ep uintptr) {
		addErr = unix.EpollCtl(int(ep), unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	})
	if err = errors.Join(err, addErr); err != nil {
		return fmt.Errorf("cgroup: OOM watch: epoll_ctl: %w", err)
	}
	return nil
}

func (w *oomWatch) remove(e *oomEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.wd >= 0 {
		delete(w.byWD, e.wd)
		if w.ino >= 0 {
			unix.InotifyRmWatch(w.ino, uint32(e.wd)) // fails harmlessly once the file is gone
		}
		e.wd = -1
	}
	if e.efd >= 0 {
		delete(w.byFD, int32(e.efd))
		unix.Close(e.efd) // closing also takes it out of the epoll set
		e.efd = -1
	}
}

// loop waits in the netpoller for the epoll descriptor to be readable and
// handles what is ready; it ends when close closes the descriptor.
func (w *oomWatch) loop() {
	rc, err := w.ep.SyscallConn()
	if err != nil {
		return
	}
	evs := make([]unix.EpollEvent, 64)
	var ready []int32
	for {
		ready = ready[:0]
		err := rc.Read(func(ep uintptr) bool {
			n, err := unix.EpollWait(int(ep), evs, 0)
			if err != nil || n == 0 {
				return err != nil && err != unix.EINTR // else wait for readiness
			}
			for _, ev := range evs[:n] {
				ready = append(ready, ev.Fd)
			}
			return true
		})
		if err != nil {
			return // closed
		}
		for _, fd := range ready {
			w.handle(fd)
		}
	}
}

func (w *oomWatch) handle(fd int32) {
	var due []*oomEntry
	w.mu.Lock()
	if int(fd) == w.ino {
		var buf [64 * (unix.SizeofInotifyEvent + 16)]byte
		for {
			n, err := unix.Read(w.ino, buf[:])
			if n <= 0 || err != nil {
				break
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				wd := int32(binary.NativeEndian.Uint32(buf[off:]))
				nameLen := binary.NativeEndian.Uint32(buf[off+12:])
				if e := w.byWD[wd]; e != nil && !slices.Contains(due, e) {
					due = append(due, e)
				}
				off += unix.SizeofInotifyEvent + int(nameLen)
			}
		}
	} else if e := w.byFD[fd]; e != nil {
		var b [8]byte
		unix.Read(int(fd), b[:]) // drain; the counter says nothing more
		due = append(due, e)
	}
	w.mu.Unlock()
	for _, e := range due {
		w.check(e, true)
	}
}

// oomRecheck is how long after a v1 notification, which comes as the OOM
// starts and before its victim is chosen, the count is looked at again.
const oomRecheck = 20 * time.Millisecond

// check reads the cgroup's OOM kill count and calls fn if it grew; on v1,
// a count not grown yet is looked at once more, shortly (again false).
func (w *oomWatch) check(e *oomEntry, again bool) {
	me, err := e.c.MemoryEvents()
	if err != nil {
		return // removed meanwhile
	}
	w.mu.Lock()
	grew := me.OOMKill > e.seen
	e.seen = max(e.seen, me.OOMKill)
	live := e.wd >= 0 || e.efd >= 0
	v1 := e.efd >= 0
	w.mu.Unlock()
	switch {
	case grew && live:
		e.fn()
	case live && v1 && again:
		time.AfterFunc(oomRecheck, func() { w.check(e, false) })
	}
}

// forget ends the notifications of c (Cgroup.Remove).
func (w *oomWatch) forget(c *Cgroup) {
	w.mu.Lock()
	var es []*oomEntry
	for _, e := range w.byWD {
		if e.c == c {
			es = append(es, e)
		}
	}
	for _, e := range w.byFD {
		if e.c == c {
			es = append(es, e)
		}
	}
	w.mu.Unlock()
	for _, e := range es {
		w.remove(e)
	}
}

func (w *oomWatch) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for _, e := range w.byFD {
		unix.Close(e.efd)
		e.efd = -1
	}
	w.byFD, w.byWD = nil, nil
	ino := w.ino
	w.mu.Unlock()
	if ino >= 0 {
		unix.Close(ino)
	}
	w.ep.Close()
}
