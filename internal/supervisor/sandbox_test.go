package supervisor

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
)

// needSandboxes skips unless agents run in real cgroups here.
func needSandboxes(t *testing.T, h *harness) {
	t.Helper()
	if h.sup.opts.Sandboxes == nil {
		if os.Geteuid() != 0 {
			t.Skip("needs root: agents run in process groups, there is no sandbox to make ahead")
		}
		t.Skip("no usable cgroup2 here: agents run in process groups")
	}
}

// spareSandboxPath waits until the pool has made the next agent's cgroup
// ahead of need, and returns its path.
func spareSandboxPath(h *harness, pool string) string {
	h.t.Helper()
	p, err := h.sup.Pool(pool)
	if err != nil {
		h.t.Fatal(err)
	}
	var path string
	h.waitFor("a sandbox made ahead of need", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.nextSandbox != nil {
			path = p.nextSandbox.sb.Path()
		}
		return path != ""
	})
	return path
}

// TestColdReplacementUsesTheSandboxMadeAhead: with no spare left, the
// replacement of a dead agent starts in the cgroup the pool made ahead of
// need (limits set); the dead agent's cgroup is removed only after its
// replacement is up; and Stop removes the sandbox made for the next one
// (the harness fails on any cgroup left behind).
func TestColdReplacementUsesTheSandboxMadeAhead(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "cold", func(p *config.Pool) {
		p.Replicas, p.Spares = 1, 0
		p.Limits.Memory = 128 << 20
	})))
	needSandboxes(t, h)
	h.ready()
	next := spareSandboxPath(h, "cold")
	if _, err := os.Stat(next); err != nil {
		t.Fatalf("sandbox made ahead: %v", err)
	}
	victim := h.agentsIn("cold", AgentActive)[0]
	if victim.Cgroup == next {
		t.Fatal("the sandbox made ahead is the running agent's")
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var repl AgentStatus
	h.waitFor("replacement", func() bool {
		as := h.agentsIn("cold", AgentActive)
		if len(as) == 1 && as[0].ID != victim.ID {
			repl = as[0]
			return true
		}
		return false
	})
	if repl.Cgroup != next {
		t.Fatalf("replacement runs in %s, want the sandbox made ahead %s", repl.Cgroup, next)
	}
	h.mustCall("cold", "", `{"text":"after"}`)
	h.waitFor("the dead agent's cgroup removed", func() bool {
		_, err := os.Stat(victim.Cgroup)
		return os.IsNotExist(err)
	})
	// Its replacement's start went first.
	readyAt, killAt := -1, -1
	h.mu.Lock()
	for i, ev := range h.events {
		switch {
		case ev.Kind == EventReady && ev.Agent == repl.ID:
			readyAt = i
		case ev.Kind == EventKill && ev.Agent == victim.ID:
			killAt = i
		}
	}
	h.mu.Unlock()
	if readyAt < 0 || killAt < 0 || killAt < readyAt {
		t.Fatalf("events: replacement ready #%d, dead agent's cleanup #%d; want the cleanup after", readyAt, killAt)
	}
	// And the pool makes the next one.
	if again := spareSandboxPath(h, "cold"); again == next {
		t.Fatal("no new sandbox made ahead after the old one was used")
	}
}

// TestSandboxMadeAheadFollowsTheConfig: a sandbox made for an older
// configuration (other limits) is not used; the agents of the new one get
// its limits.
func TestSandboxMadeAheadFollowsTheConfig(t *testing.T) {
	pc := testPool(t, "cfg", func(p *config.Pool) {
		p.Replicas, p.Spares = 1, 0
		p.Limits.Memory = 128 << 20
	})
	h := newHarness(t, cfgOf(pc))
	needSandboxes(t, h)
	h.ready()
	stale := spareSandboxPath(h, "cfg")
	old := h.agentsIn("cfg", AgentActive)[0]
	pc2 := testPool(t, "cfg", func(p *config.Pool) {
		p.Replicas, p.Spares = 1, 0
		p.Limits.Memory = 96 << 20
	})
	if err := h.sup.Apply(context.Background(), cfgOf(pc2)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("rolled", func() bool {
		as := h.agentsIn("cfg", AgentActive)
		return len(as) == 1 && as[0].ID != old.ID
	})
	h.ready()
	p, _ := h.sup.Pool("cfg")
	sl := p.slotByID(h.agentsIn("cfg", AgentActive)[0].ID)
	if sl == nil {
		t.Fatal("agent gone")
	}
	if sl.sb.Path() == stale {
		t.Fatalf("the new agent runs in the sandbox made for the old config")
	}
	cg, ok := sl.sb.(*cgroup.Cgroup)
	if !ok {
		t.Fatalf("sandbox is %T", sl.sb)
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryMax != 96<<20 {
		t.Fatalf("memory max %d, want %d", st.MemoryMax, 96<<20)
	}
	h.waitFor("the stale sandbox removed", func() bool {
		_, err := os.Stat(stale)
		return os.IsNotExist(err)
	})
}
