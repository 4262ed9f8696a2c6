package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An agent started from a spawner thread does not see descriptors the
// daemon opened after the spawners started: they are not in the table
// its clone copies. A descriptor left inheritable on purpose shows it (an
// inheritable one in the daemon's table would reach a child of os/exec).
func TestSpawnerChildDoesNotCopyLaterDescriptors(t *testing.T) {
	if err := StartSpawners(); err != nil {
		t.Skipf("no spawner threads here: %v", err)
	}
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil { // no O_CLOEXEC
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	out := filepath.Join(t.TempDir(), "fds")
	a, err := Start(Config{
		ID:      "spawned",
		Command: []string{"/bin/sh", "-c", `ls /proc/self/fd > "$0"; cat >/dev/null`, out},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Close(); <-a.Done() }() // cat sees its stdin's end
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(out)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			seen = strings.Fields(string(b))
			break
		}
	}
	if seen == nil {
		t.Fatal("the agent did not list its descriptors within 10 s")
	}
	for _, fd := range seen {
		if fd == strconv.Itoa(p[0]) || fd == strconv.Itoa(p[1]) {
			t.Fatalf("the agent holds the daemon's inheritable descriptor %s (its descriptors: %v): it was not started from a spawner's table", fd, seen)
		}
	}
	for _, want := range []string{"0", "1", "2"} {
		if !strings.Contains(" "+strings.Join(seen, " ")+" ", " "+want+" ") {
			t.Fatalf("the agent has no descriptor %s: %v", want, seen)
		}
	}
	if a.PID() <= 0 {
		t.Fatalf("pid %d", a.PID())
	}
}

// The spawners never take the main thread: its table is the one
// /proc/self shows, and libraries read descriptors' details there
// (cilium/ebpf: /proc/self/fdinfo). TestMain started them from the main
// goroutine, which may run on the main thread.
func TestSpawnersLeaveTheMainThreadsTable(t *testing.T) {
	if err := StartSpawners(); err != nil {
		t.Skipf("no spawner threads here: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := os.Stat("/proc/self/fdinfo/" + strconv.Itoa(int(r.Fd()))); err != nil {
		t.Fatalf("a descriptor just opened is not in /proc/self: the main thread's table is not the daemon's: %v", err)
	}
}

// A start that cannot happen says what and where, as os/exec would.
func TestSpawnerStartErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"missing binary", Config{ID: "x", Command: []string{"/nonexistent/agent"}}, []string{"fork/exec /nonexistent/agent", "no such file or directory"}},
		{"not in PATH", Config{ID: "x", Command: []string{"no-such-agent-binary"}}, []string{"no-such-agent-binary", "not found"}},
		{"missing directory", Config{ID: "x", Command: []string{"/bin/true"}, Dir: "/nonexistent-dir"}, []string{"chdir /nonexistent-dir", "no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Start(tc.cfg)
			if err == nil {
				a.Close()
				<-a.Done()
				t.Fatal("started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A pool's variable overrides the daemon's of the same name, once, as
// os/exec would start the agent: the spawner passes cmd.Environ().
func TestSpawnedAgentsEnvironment(t *testing.T) {
	t.Setenv("RESILIENT_SPAWN_ENV_TEST", "daemon")
	out := filepath.Join(t.TempDir(), "env")
	a, err := Start(Config{
		ID:      "env",
		Command: []string{"/bin/sh", "-c", `env > "$0.tmp" && mv "$0.tmp" "$0"; cat >/dev/null`, out},
		Env:     []string{"RESILIENT_SPAWN_ENV_TEST=pool"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Close(); <-a.Done() }()
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err = os.ReadFile(out); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("the agent did not write its environment within 10 s: %v", err)
	}
	var got []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RESILIENT_SPAWN_ENV_TEST=") {
			got = append(got, l)
		}
	}
	if len(got) != 1 || got[0] != "RESILIENT_SPAWN_ENV_TEST=pool" {
		t.Fatalf("the agent's RESILIENT_SPAWN_ENV_TEST: %q, want the pool's value once", got)
	}
	if !strings.Contains(string(b), "RESILIENT_AGENT_ID=env\n") {
		t.Fatalf("no RESILIENT_AGENT_ID in the agent's environment:\n%s", b)
	}
}
