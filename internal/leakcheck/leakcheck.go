package leakcheck

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Sentinel errors, wrapped by the errors [Snapshot.Leaks] returns.
var (
	// ErrGoroutines: goroutines started since the snapshot still run.
	ErrGoroutines = errors.New("leaked goroutines")
	// ErrFDs: file descriptors opened since the snapshot are still open.
	ErrFDs = errors.New("leaked file descriptors")
)

// DefaultWait is how long a check waits for goroutines to end and file
// descriptors to close before it reports them.
const DefaultWait = 2 * time.Second

// Option changes what a check ignores, or how long it waits.
type Option func(*options)

type options struct {
	goroutines []goleak.Option
	fdTargets  []string
	wait       time.Duration
}

// IgnoreGoroutine ignores goroutines with function (a full name, such as
// "go.etcd.io/bbolt.(*DB).freepages") anywhere in their stacks: a
// library's goroutine that lives as long as the process, by design.
func IgnoreGoroutine(function string) Option {
	return func(o *options) { o.goroutines = append(o.goroutines, goleak.IgnoreAnyFunction(function)) }
}

// IgnoreFD ignores file descriptors whose target (as /proc/self/fd shows
// it: "socket:[123]", "/var/log/x", "anon_inode:[eventfd]") starts with
// prefix.
func IgnoreFD(prefix string) Option {
	return func(o *options) { o.fdTargets = append(o.fdTargets, prefix) }
}

// Wait sets how long a check waits for goroutines to end and descriptors
// to close (default DefaultWait).
func Wait(d time.Duration) Option {
	return func(o *options) { o.wait = d }
}

func build(opts []Option) *options {
	o := &options{wait: DefaultWait}
	for _, f := range opts {
		f(o)
	}
	return o
}

// Snapshot is what a process runs and holds open at a moment.
type Snapshot struct {
	goroutines goleak.Option // ignores the goroutines alive at the snapshot
	fds        map[int]string
	fdErr      error
}

// Take records the current goroutines and file descriptors.
func Take() *Snapshot {
	warmUp()
	fds, err := openFDs()
	return &Snapshot{goroutines: goleak.IgnoreCurrent(), fds: fds, fdErr: err}
}

// warmUp makes the runtime open, before a snapshot, the descriptors it
// opens once and keeps for the life of the process (the network poller's
// epoll instance and its wake-up eventfd), so that the first test to use
// the poller is not blamed for them.
func warmUp() {
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
}

// Leaks waits up to the Wait option for the goroutines started since s to
// end and the descriptors opened since s to close, and returns an error
// wrapping ErrGoroutines, ErrFDs or both, saying which, if some remain.
func (s *Snapshot) Leaks(opts ...Option) error {
	o := build(opts)
	deadline := time.Now().Add(o.wait)
	gopts := append([]goleak.Option{s.goroutines}, o.goroutines...)
	for {
		// goleak.Find itself retries for a few hundred milliseconds.
		gerr := goleak.Find(gopts...)
		fds, ferr := s.newFDs(o)
		if gerr == nil && ferr == nil && len(fds) == 0 || time.Now().After(deadline) {
			var errs []error
			if gerr != nil {
				errs = append(errs, fmt.Errorf("%w: %w", ErrGoroutines, gerr))
			}
			if ferr != nil {
				errs = append(errs, fmt.Errorf("leakcheck: reading /proc/self/fd: %w", ferr))
			} else if len(fds) > 0 {
				errs = append(errs, fmt.Errorf("%w: %d still open %v after the test: %s", ErrFDs, len(fds), o.wait, strings.Join(fds, ", ")))
			}
			return errors.Join(errs...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Opened lists the descriptors open now that were not at the snapshot (or
// were, to another file), as "fd 7 → pipe:[123]": for a test that bounds
// what something holds open.
func (s *Snapshot) Opened() ([]string, error) { return s.newFDs(build(nil)) }

// newFDs lists the descriptors open now that were not at the snapshot (or
// were, to another file), as "fd 7 → socket:[123]".
func (s *Snapshot) newFDs(o *options) ([]string, error) {
	if s.fdErr != nil {
		return nil, s.fdErr
	}
	now, err := openFDs()
	if err != nil {
		return nil, err
	}
	var out []string
	for fd, target := range now {
		if was, ok := s.fds[fd]; ok && was == target {
			continue
		}
		if slices.ContainsFunc(o.fdTargets, func(p string) bool { return strings.HasPrefix(target, p) }) {
			continue
		}
		out = append(out, fmt.Sprintf("fd %d → %s", fd, target))
	}
	slices.Sort(out)
	return out, nil
}

// openFDs reads /proc/self/fd: each open descriptor and its target. The
// descriptor of the directory being read is among them while it is read,
// and gone after: it is left out.
func openFDs() (map[int]string, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	self := int(d.Fd())
	fds := make(map[int]string, len(names))
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == self {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + name)
		if err != nil {
			continue // closed while we looked
		}
		fds[fd] = target
	}
	return fds, nil
}

// Check snapshots the goroutines and descriptors now, and registers a
// cleanup that fails t if, when t and its other cleanups are done, some
// started or opened since are still there. Call it first in the test, so
// that its cleanup runs last. A test that failed already, or was skipped,
// is not checked.
func Check(t testing.TB, opts ...Option) {
	t.Helper()
	s := Take()
	t.Cleanup(func() {
		if t.Failed() || t.Skipped() {
			return
		}
		if err := s.Leaks(opts...); err != nil {
			t.Error(err)
		}
	})
}

// Main runs the package's tests and, if they passed, checks that they left
// no goroutines or descriptors behind; it returns the exit code for
// os.Exit, 1 on a leak.
func Main(m *testing.M, opts ...Option) int {
	s := Take()
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := s.Leaks(opts...); err != nil {
		fmt.Fprintf(os.Stderr, "leakcheck: after a successful run: %v\n", err)
		return 1
	}
	return 0
}
