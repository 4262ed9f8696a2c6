package agent

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// An agent's stderr read on the poller comes out line by line: a CR before
// the newline dropped, a long line cut at stderrLineBytes, the last line
// without a newline kept, and StderrDone closed once the agent is gone.
func TestStderrOnPollerLines(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	script := `printf 'a\r\nbb\n'; head -c 10000 /dev/zero | tr '\0' x; printf '\nlast'`
	a, err := Start(Config{ID: "stderr-1", Command: []string{"sh", "-c", "{ " + script + "; } >&2"},
		OnStderr: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.stderrWatch == nil {
		t.Fatal("stderr is not read on the poller")
	}
	select {
	case <-a.StderrDone():
	case <-time.After(30 * time.Second):
		t.Fatal("StderrDone not closed after the agent exited")
	}
	<-a.Done()
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, l := range lines {
		if strings.Trim(l, "x") == "" && l != "" {
			l = "x*" + strconv.Itoa(len(l))
		}
		got = append(got, l)
	}
	if want := []string{"a", "bb", "x*4096", "x*4096", "x*1808", "last"}; !slices.Equal(got, want) {
		t.Fatalf("stderr lines %q, want %q", got, want)
	}
	if got := a.ExitStatus(); got != "exit status 0" {
		t.Fatalf("exit status %q", got)
	}
}

// Closing an agent whose stderr is still open (its process alive) ends
// the watch: StderrDone closes, and the agent is still killed and reaped.
func TestStderrWatchEndsAtClose(t *testing.T) {
	a, err := Start(Config{ID: "stderr-2", Command: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	select {
	case <-a.StderrDone():
	case <-time.After(30 * time.Second):
		t.Fatal("StderrDone not closed by Close")
	}
	if err := a.Signal(9); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("exit not seen")
	}
	if got := a.ExitStatus(); got != "signal: killed" {
		t.Fatalf("exit status %q", got)
	}
}

// Idle agents cost one goroutine each (the stdout reader), not three: the
// exit and stderr are watched by the node's pollers.
func TestIdleAgentsCostOneGoroutineEach(t *testing.T) {
	const n = 20
	before := runtime.NumGoroutine()
	var as []*Agent
	for i := range n {
		a, err := Start(Config{ID: "idle-" + strconv.Itoa(i), Command: []string{"sleep", "600"}})
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	defer func() {
		for _, a := range as {
			a.Signal(9)
			<-a.Done()
			a.Close()
		}
	}()
	// The pollers' own goroutines (2) start with the first agent.
	if got := runtime.NumGoroutine() - before; got > n+2 {
		t.Fatalf("%d agents added %d goroutines, want at most %d", n, got, n+2)
	}
}
