package session

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// crashChildEnv makes the test binary a crash-test child that appends to
// the store at its value (a path) until it is killed.
const crashChildEnv = "SESSION_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(3) // unreachable: the child runs until killed
	}
	os.Exit(m.Run())
}

const (
	crashWriters  = 16
	crashSessions = 4
)

// crashChild appends from many goroutines, printing "try KEY" before each
// append and "ack SESSION SEQ KEY" once Append has returned, i.e. once the
// caller would have been answered.
func crashChild(path string) {
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.WriteString(line) // one write(2) per line: unbuffered
	}
	for w := 0; w < crashWriters; w++ {
		go func() {
			sess := fmt.Sprint("s", w%crashSessions)
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				in := json.RawMessage(strconv.Quote(key))
				say("try %s %s", sess, key)
				ex, err := s.Append(context.Background(), "crash", sess, Exchange{Input: in, Output: in}, Limit{}, key, in)
				if err != nil {
					say("err %v", err)
					os.Exit(2)
				}
				say("ack %s %d %s", sess, ex.Seq, key)
			}
		}()
	}
	select {}
}

// TestCrashKeepsAcknowledgedExchanges kills (SIGKILL) a process in the
// middle of appending, reopens the file, and checks that every exchange
// acknowledged before the kill is there, none twice, and that retrying
// every call that was in flight (same idempotency key) appends none twice.
func TestCrashKeepsAcknowledgedExchanges(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	type ack struct {
		session string
		seq     uint64
	}
	acks := map[string]ack{}     // key → where it was acknowledged
	tried := map[string]string{} // key → session
	const killAfter = 400
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "try":
			tried[f[2]] = f[1]
		case len(f) == 4 && f[0] == "ack":
			seq, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", sc.Text())
			}
			acks[f[3]] = ack{f[1], seq}
		default:
			t.Fatalf("child: %q", sc.Text())
		}
		if len(acks) == killAfter && !killed {
			// Kill mid-run; keep reading what the child wrote before it died.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("child exited after %d acks: %v", len(acks), sc.Err())
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	inFlight := len(tried) - len(acks)
	t.Logf("%d appends acknowledged, %d in flight at the kill", len(acks), inFlight)

	s := openTest(t, Options{Path: path})
	ctx := context.Background()
	stored := map[string]Exchange{} // key → exchange
	check := func(when string) {
		clear(stored)
		for i := 0; i < crashSessions; i++ {
			sess := fmt.Sprint("s", i)
			for j, ex := range mustContext(t, s, "crash", sess) {
				if ex.Seq != uint64(j+1) {
					t.Fatalf("%s: %s exchange %d has seq %d", when, sess, j, ex.Seq)
				}
				key, err := strconv.Unquote(string(ex.Input))
				if err != nil {
					t.Fatal(err)
				}
				if prev, dup := stored[key]; dup {
					t.Fatalf("%s: %s stored twice (seq %d and %d)", when, key, prev.Seq, ex.Seq)
				}
				if tried[key] != sess {
					t.Fatalf("%s: %s in session %s, tried in %q", when, key, sess, tried[key])
				}
				stored[key] = ex
			}
		}
	}
	check("after restart")
	for key, a := range acks {
		ex, ok := stored[key]
		if !ok {
			t.Fatalf("acknowledged %s (%s seq %d) lost", key, a.session, a.seq)
		}
		if ex.Seq != a.seq {
			t.Fatalf("acknowledged %s at seq %d, stored at %d", key, a.seq, ex.Seq)
		}
		if r, ok, err := s.Result(ctx, "crash", key, nil); err != nil || !ok || string(r) != string(ex.Input) {
			t.Fatalf("result of acknowledged %s = %s %v %v", key, r, ok, err)
		}
	}

	// Retry every call the child tried, as clients would after the
	// restart: the ones that reached the disk must not be appended again.
	for key, sess := range tried {
		in := json.RawMessage(strconv.Quote(key))
		_, err := s.Append(ctx, "crash", sess, Exchange{Input: in, Output: in}, Limit{}, key, in)
		_, wasStored := stored[key]
		switch {
		case wasStored && !errors.Is(err, ErrDuplicate):
			t.Fatalf("retry of stored %s: err = %v, want ErrDuplicate", key, err)
		case !wasStored && err != nil:
			t.Fatalf("retry of unstored %s: %v", key, err)
		}
	}
	check("after retries")
	if len(stored) != len(tried) {
		t.Fatalf("%d calls stored after retries, %d tried", len(stored), len(tried))
	}
}
