package leakcheck

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// short keeps the failing cases quick: what is checked is the verdict.
var short = Wait(50 * time.Millisecond)

func TestGoroutineLeak(t *testing.T) {
	s := Take()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { <-stop; close(done) }()
	err := s.Leaks(short)
	if !errors.Is(err, ErrGoroutines) || errors.Is(err, ErrFDs) {
		t.Fatalf("a blocked goroutine: %v, want ErrGoroutines only", err)
	}
	if !strings.Contains(err.Error(), "TestGoroutineLeak") {
		t.Errorf("the report does not show the goroutine's stack: %v", err)
	}
	close(stop)
	<-done
	if err := s.Leaks(); err != nil {
		t.Fatalf("after the goroutine ended: %v", err)
	}
}

func TestFDLeak(t *testing.T) {
	s := Take()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	err = s.Leaks(short)
	if !errors.Is(err, ErrFDs) || errors.Is(err, ErrGoroutines) {
		t.Fatalf("an open pipe: %v, want ErrFDs only", err)
	}
	for _, f := range []*os.File{r, w} {
		if want := fmt.Sprintf("fd %d → pipe:", f.Fd()); !strings.Contains(err.Error(), want) {
			t.Errorf("the report does not name %q: %v", want, err)
		}
	}
	if err := s.Leaks(short, IgnoreFD("pipe:")); err != nil {
		t.Errorf("with pipes ignored: %v", err)
	}
	r.Close()
	w.Close()
	if err := s.Leaks(); err != nil {
		t.Fatalf("after closing: %v", err)
	}
}

// TestWaitsForAsynchronousClose: a descriptor closed and a goroutine
// ended a little after the test, as a server's connection goroutines do,
// are not leaks.
func TestWaitsForAsynchronousClose(t *testing.T) {
	s := Take()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		r.Close()
		w.Close()
	}()
	if err := s.Leaks(); err != nil {
		t.Fatal(err)
	}
}

func TestIgnoreGoroutine(t *testing.T) {
	s := Take()
	stop := make(chan struct{})
	defer close(stop)
	go parked(stop)
	if err := s.Leaks(short, IgnoreGoroutine("github.com/resilienced/resilienced/internal/leakcheck.parked")); err != nil {
		t.Fatal(err)
	}
}

func parked(stop chan struct{}) { <-stop }

// fakeTB records what Check does with a test.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errs     []string
	failed   bool
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Error(args ...any) { f.errs = append(f.errs, fmt.Sprint(args...)) }
func (f *fakeTB) Failed() bool      { return f.failed || len(f.errs) > 0 }
func (f *fakeTB) Skipped() bool     { return false }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestCheck(t *testing.T) {
	// A leak fails the test, when its cleanups are done.
	ft := &fakeTB{TB: t}
	Check(ft, short)
	r, w, _ := os.Pipe()
	ft.runCleanups()
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], "leaked file descriptors") {
		t.Errorf("a leaked pipe: errors %q", ft.errs)
	}
	// A test that failed already is not checked.
	ft = &fakeTB{TB: t, failed: true}
	Check(ft, short)
	ft.runCleanups()
	if len(ft.errs) != 0 {
		t.Errorf("a failed test was checked: %q", ft.errs)
	}
	r.Close()
	w.Close()
	// Resources released by the test's own cleanups, registered after
	// Check, are not leaks.
	ft = &fakeTB{TB: t}
	Check(ft, short)
	r, w, _ = os.Pipe()
	ft.Cleanup(func() { r.Close(); w.Close() })
	ft.runCleanups()
	if len(ft.errs) != 0 {
		t.Errorf("released in a later cleanup: %q", ft.errs)
	}
}
