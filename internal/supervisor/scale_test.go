package supervisor

import (
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/adopt"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/leakcheck"
)

// fdsPerAgent is what a running agent may hold open in the daemon: its
// stdin, stdout and stderr pipes and its pidfd. Not a duplicate of them
// for a handover (the Keeper makes those at the handover), nor its cgroup
// directory (closed once the agent is cloned into it): descriptors bound
// how many agents a node can run.
const fdsPerAgent = 4

// Scaling a pool up by n agents costs at most fdsPerAgent descriptors
// each, with the Keeper that lets agents outlive the daemon, and in real
// cgroups when the test runs as root.
func TestAgentsHoldFewDescriptors(t *testing.T) {
	const n = 24
	k := adopt.NewKeeper(nil, nil)
	defer k.Close()
	pc := testPool(t, "fds", func(pc *config.Pool) { pc.Replicas = 1 })
	h := newHarnessWith(t, cfgOf(pc), true, func(o *Options) { o.Keeper = k })
	h.ready()
	before := leakcheck.Take()
	pc.Replicas = 1 + n
	if err := h.sup.Apply(t.Context(), cfgOf(pc)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the pool at full strength", func() bool {
		st := h.sup.Status()[0]
		return st.Active == 1+n && st.Spares == 1 && st.Starting == 0
	})
	// The next agent's cgroup, made ahead of need, holds its directory
	// open until it is used: one per pool.
	opened, err := before.Opened()
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	if got, most := len(opened), n*fdsPerAgent+1; got > most {
		t.Errorf("%d more agents hold %d more descriptors (%.1f each), want at most %d each: %v", n, got, float64(got)/n, fdsPerAgent, opened)
	}
	if k.Len() != 2+n {
		t.Errorf("the Keeper keeps %d agents, want %d", k.Len(), 2+n)
	}
}

// Many agents killed at once are all replaced, and the pool is back at
// full strength with none of their processes.
func TestManyKilledAtOnceAreAllReplaced(t *testing.T) {
	const replicas, kill = 24, 12
	pc := testPool(t, "mass", func(pc *config.Pool) {
		pc.Replicas = replicas
		pc.MinUptime = time.Millisecond // their deaths are runtime faults
	})
	h := newHarness(t, cfgOf(pc))
	h.ready()
	time.Sleep(10 * time.Millisecond) // past min_uptime
	actives := h.agentsIn("mass", AgentActive)
	if len(actives) != replicas {
		t.Fatalf("%d active agents, want %d", len(actives), replicas)
	}
	killed := map[string]int{}
	for _, a := range actives[:kill] {
		killed[a.ID] = a.PID
	}
	t0 := time.Now()
	for _, pid := range killed {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	defer func() { t.Logf("%d of %d killed: back at strength after %v", kill, replicas, time.Since(t0)) }()
	h.waitFor("every killed agent recovered", func() bool {
		n := 0
		for _, ev := range h.eventsOf(EventRecovered) {
			if _, ok := killed[ev.Agent]; ok {
				n++
			}
		}
		return n == kill
	})
	h.waitFor("the pool at full strength", func() bool {
		st := h.sup.Status()[0]
		return st.Active == replicas && st.Starting == 0 && st.State == PoolRunning
	})
	for _, a := range h.agentsIn("mass", AgentActive) {
		if pid, ok := killed[a.ID]; ok {
			t.Errorf("killed agent %s (pid %d) still listed active", a.ID, pid)
		}
	}
	if st := h.sup.Status()[0]; st.State != PoolRunning {
		t.Errorf("pool %s: %s", st.State, st.Reason)
	}
}
