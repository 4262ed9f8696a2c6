package supervisor

import (
	"testing"
)

func TestIsolateTakesAgentOutOfServiceAndReleaseStopsIt(t *testing.T) {
	for _, action := range []string{IsolateKeep, IsolateFreeze, IsolateKill} {
		t.Run(action, func(t *testing.T) {
			h := newHarness(t, cfgOf(testPool(t, "iso")))
			h.ready()
			victim := h.agentsIn("iso", AgentActive)[0]
			if err := h.sup.Isolate(victim.ID, action, "test"); err != nil {
				t.Fatal(err)
			}
			h.ready() // back at full strength: a spare took its place
			for range 10 {
				if out := h.mustCall("iso", "", `{"text":"x"}`); int(out["pid"].(float64)) == victim.PID {
					t.Fatal("a call reached the isolated agent")
				}
			}
			if action == IsolateKill {
				h.waitFor("killed", func() bool { return !alive(victim.PID) })
				return
			}
			if got := h.agentsIn("iso", AgentIsolated); len(got) != 1 || got[0].ID != victim.ID || !alive(victim.PID) {
				t.Fatalf("isolated agents %+v", got)
			}
			if err := h.sup.Release(victim.ID); err != nil {
				t.Fatal(err)
			}
			h.waitFor("released agent stopped", func() bool { return !alive(victim.PID) })
			if n := len(h.eventsOf(EventRelease)); n != 1 {
				t.Fatalf("%d release events", n)
			}
		})
	}
}

func TestIsolateRejectsUnknownAction(t *testing.T) {
	h := newHarness(t, cfgOf(testPool(t, "iso")))
	h.ready()
	if err := h.sup.Isolate(h.agentsIn("iso", AgentActive)[0].ID, "explode", ""); err == nil {
		t.Fatal("unknown action accepted")
	}
}
