// Package leakcheck fails a test that leaves goroutines or file
// descriptors behind.
//
// A daemon that supervises processes for months must release what each
// call, connection and agent took: a goroutine blocked for good on a
// channel, or a pipe to a dead agent left open, costs nothing in one test
// and exhausts the process over weeks. Tests are where such a leak is
// cheapest to see, so each test checks, when it ends, that the goroutines
// and the file descriptors it started with are all that is left.
//
// Use it at the top of a test; the check runs as the test's last cleanup,
// after the test's own (a fixture's Shutdown and Stop), which t.Cleanup's
// last-in-first-out order gives:
//
//	func TestX(t *testing.T) {
//		leakcheck.Check(t)
//		...
//	}
//
// and, for the whole package (parallel tests included), in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
//
// Goroutines are found by go.uber.org/goleak, which already ignores the
// testing package's and os/signal's own; [IgnoreGoroutine] adds others.
// File descriptors are those listed in /proc/self/fd (Linux), compared by
// number and target. Both are retried for a short while ([Wait]), because
// the end of a test does not wait for everything it set going to finish:
// net/http closes a connection on its own goroutine, a process's pipes
// close when its reaper runs.
//
// A descriptor whose *os.File or net.Conn nothing refers to any more may
// be closed by its finalizer, if the garbage collector runs during the
// wait, and then goes unreported: the check finds what a test still holds.
//
// Check cannot tell one test's goroutines from another's: do not use it
// in tests that call t.Parallel (Main covers them). A test that has
// already failed is not checked, so that its first failure stays the one
// reported.
package leakcheck
