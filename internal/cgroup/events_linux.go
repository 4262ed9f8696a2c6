package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// pollInterval paces waiting where inotify is unavailable.
	pollInterval = 5 * time.Millisecond
	// recheckInterval re-reads cgroup.events even with inotify, so a lost
	// notification costs at most this long rather than forever.
	recheckInterval = time.Second
)

// waitEvent blocks until key in dir/cgroup.events has the value want
// ("populated", "frozen"). The kernel signals every change of that file as
// an inotify IN_MODIFY; without inotify it polls. A missing file returns an
// error wrapping ErrNotExist. The file is read before any watch is made:
// most waits (a teardown after the agent's exit was seen) are over
// already, and an inotify descriptor is six system calls.
func waitEvent(ctx context.Context, dir, key string, want bool, pollOnly bool) error {
	file := filepath.Join(dir, "cgroup.events")
	var w *inotifyWatch
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	for watched := pollOnly; ; {
		b, err := readFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotExist, dir)
		}
		if err != nil {
			return err
		}
		v, ok := parseFlatKeyed(b)[key]
		if !ok {
			return fmt.Errorf("%w: %s has no %q", ErrNotSupported, file, key)
		}
		if (v != 0) == want {
			return nil
		}
		if !watched {
			// Watch, then read again: a change between the two still
			// wakes us.
			watched = true
			w, _ = watchModify(file) // on error, poll
			continue
		}
		if w != nil {
			err = w.wait(ctx, recheckInterval)
		} else {
			err = sleepCtx(ctx, pollInterval)
		}
		if err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// inotifyWatch is a non-blocking inotify descriptor in Go's netpoller, so a
// wait parks a goroutine rather than a thread and a context can end it.
type inotifyWatch struct{ f *os.File }

func watchModify(file string) (*inotifyWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, file, unix.IN_MODIFY|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &inotifyWatch{f: os.NewFile(uintptr(fd), "inotify:"+file)}, nil
}

// wait returns after any event, after max, or with ctx's error.
func (w *inotifyWatch) wait(ctx context.Context, max time.Duration) error {
	if err := w.f.SetReadDeadline(time.Now().Add(max)); err != nil {
		return err
	}
	// Registered after the deadline above, so cancellation always wins.
	stop := context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var buf [4096]byte // events carry no name for a file watch; one read drains them
	_, err := w.f.Read(buf[:])
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

func (w *inotifyWatch) Close() error { return w.f.Close() }
