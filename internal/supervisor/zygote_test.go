package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
)

// zygotePool runs the README's Python agent template as a zygote.
func zygotePool(t testing.TB) config.Pool {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3: the zygote example agent is Python")
	}
	script, err := filepath.Abs("../../examples/agents/python/agent.py")
	if err != nil {
		t.Fatal(err)
	}
	return testPool(t, "zy", func(pc *config.Pool) {
		pc.Command = []string{py, script}
		pc.Env = nil
		pc.Start = config.StartZygote
	})
}

// ppid is the parent of pid.
func ppid(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var n int
	fmt.Sscan(f[1], &n)
	return n
}

// Every agent of a zygote pool is a child of one zygote, serves in its own
// cgroup (as root), and is replaced by another child when it dies; a
// zygote that dies is started again for the next agent.
func TestZygoteForksAgentsIntoTheirCgroups(t *testing.T) {
	h := newHarness(t, cfgOf(zygotePool(t)))
	h.ready()
	// check checks every agent and returns the parent of the newest (the
	// agents of a zygote that died are orphans, adopted by init).
	check := func() int {
		t.Helper()
		as := append(h.agentsIn("zy", AgentActive), h.agentsIn("zy", AgentSpare)...)
		zyg, newest := 0, 0
		for _, a := range as {
			parent := ppid(t, a.PID)
			if parent == os.Getpid() {
				t.Fatalf("agent %s (pid %d) is the daemon's child, not a zygote's", a.ID, a.PID)
			}
			var n int
			fmt.Sscan(a.ID[strings.LastIndexByte(a.ID, '-')+1:], &n)
			if n > newest {
				zyg, newest = parent, n
			}
			if h.cg != nil && h.cg.Mode() != cgroup.ModeNone && a.Cgroup == "" {
				t.Fatalf("agent %s has no cgroup", a.ID)
			}
			if a.Cgroup != "" {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", a.PID))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), strings.TrimPrefix(a.Cgroup, mount2(t))+"\n") {
					t.Fatalf("agent %s not in its cgroup %s: %s", a.ID, a.Cgroup, b)
				}
			}
		}
		if got := h.mustCall("zy", "", `"hello"`)["answer"]; got != "hello" {
			t.Fatalf("answer %v", got)
		}
		return zyg
	}
	zyg := check()
	victim := h.agentsIn("zy", AgentActive)[0]
	syscall.Kill(victim.PID, syscall.SIGKILL)
	h.waitFor("the replacement", func() bool { return !h.poolAlive("zy", victim.PID) && strength(h) })
	if again := check(); again != zyg {
		t.Fatalf("replacement from zygote %d, want %d", again, zyg)
	}
	syscall.Kill(zyg, syscall.SIGKILL)
	h.waitFor("the zygote to die", func() bool { return !alive(zyg) })
	victim = h.agentsIn("zy", AgentActive)[0]
	syscall.Kill(victim.PID, syscall.SIGKILL)
	h.waitFor("a replacement from a new zygote", func() bool {
		return !h.poolAlive("zy", victim.PID) && strength(h)
	})
	if again := check(); again == zyg {
		t.Fatalf("replacement from the dead zygote %d", zyg)
	}
}

// strength: the zygote pool has its replicas and at least a spare.
func strength(h *harness) bool {
	return len(h.agentsIn("zy", AgentActive)) == 2 && len(h.agentsIn("zy", AgentSpare)) >= 1
}

func mount2(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 8 && strings.Contains(l, " - cgroup2 ") {
			return f[4]
		}
	}
	return ""
}

// A zygote's child enters its cgroup itself, through the cgroup.procs sent
// with the fork request, before it answers the initialize written ahead of
// its fork; a zygote that ignores that file (an older one: three
// descriptors) gets its children placed by the daemon, after their
// handshake and before their first call.
func TestZygoteChildPlacesItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: agents in cgroups")
	}
	for _, tc := range []struct {
		name, step  string
		ignoreProcs bool
	}{
		{"self", "placed-itself", false},
		{"three-fds", "placed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			steps := map[string][]string{}
			hook := func(agent, step string) {
				mu.Lock()
				steps[agent] = append(steps[agent], step)
				mu.Unlock()
			}
			zygoteStepHook.Store(&hook)
			defer zygoteStepHook.Store(nil)
			pc := zygotePool(t)
			if tc.ignoreProcs {
				// The example, taking at most three descriptors a request:
				// the kernel drops the fourth.
				wrapper := filepath.Join(t.TempDir(), "three.py")
				os.WriteFile(wrapper, []byte(`import runpy, socket, sys
recv = socket.recv_fds
socket.recv_fds = lambda sock, size, maxfds, flags=0: recv(sock, size, 3, flags)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
`), 0o644)
				pc.Command = []string{pc.Command[0], wrapper, pc.Command[1]}
			}
			h := newHarness(t, cfgOf(pc))
			if h.cg == nil || h.cg.Mode() == cgroup.ModeNone {
				t.Skip("no cgroup host")
			}
			h.ready()
			for _, a := range append(h.agentsIn("zy", AgentActive), h.agentsIn("zy", AgentSpare)...) {
				mu.Lock()
				got := steps[a.ID]
				mu.Unlock()
				if !slices.Contains(got, tc.step) {
					t.Errorf("agent %s: steps %q, want %q", a.ID, got, tc.step)
				}
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", a.PID))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), strings.TrimPrefix(a.Cgroup, mount2(t))+"\n") {
					t.Errorf("agent %s not in its cgroup %s: %s", a.ID, a.Cgroup, b)
				}
			}
			if got := h.mustCall("zy", "", `"hello"`)["answer"]; got != "hello" {
				t.Fatalf("answer %v", got)
			}
		})
	}
}
