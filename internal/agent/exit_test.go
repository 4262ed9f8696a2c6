package agent

import (
	"context"
	"log/slog"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/testagent"
)

// Idle agents hold no OS thread each: neither waiting for their exit nor
// reading their stdout (the hang detector's look at the pipe included).
// With a thread blocked in waitid per agent, 200 agents made 200 threads.
func TestIdleAgentsHoldNoThreads(t *testing.T) {
	echo := testagent.Echo(t)
	const n = 200
	threads := pprof.Lookup("threadcreate")
	before := threads.Count()
	agents := make([]*Agent, 0, n)
	defer func() {
		for _, a := range agents {
			a.SignalGroup(syscall.SIGKILL)
			<-a.Done()
			a.Close()
		}
	}()
	for i := range n {
		a, err := Start(Config{ID: "t-" + string(rune('a'+i%26)), Command: []string{echo}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range agents {
		if err := a.Initialize(ctx); err != nil {
			t.Fatal(err)
		}
		a.Progress()
	}
	if made := threads.Count() - before; made > n/4 {
		t.Errorf("%d idle agents made %d OS threads, want far fewer than one each", n, made)
	}
	// Every exit is still seen, with its cause.
	for _, a := range agents[:n/2] {
		a.SignalGroup(syscall.SIGKILL)
	}
	for _, a := range agents[:n/2] {
		select {
		case <-a.Done():
		case <-ctx.Done():
			t.Fatal("an exit was not seen")
		}
		if got := a.ExitStatus(); got != "signal: killed" {
			t.Fatalf("ExitStatus = %q, want signal: killed", got)
		}
		if a.ExitedOK() {
			t.Fatal("ExitedOK for a killed agent")
		}
	}
}

func TestExitString(t *testing.T) {
	for _, c := range []struct {
		ws   syscall.WaitStatus
		want string
	}{
		{0, "exit status 0"},
		{3 << 8, "exit status 3"},
		{syscall.WaitStatus(syscall.SIGKILL), "signal: killed"},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, "signal: segmentation fault (core dumped)"},
	} {
		if got := exitString(c.ws); got != c.want {
			t.Errorf("exitString(%#x) = %q, want %q", uint32(c.ws), got, c.want)
		}
	}
}
