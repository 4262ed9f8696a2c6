package cgroup

import (
	"sync/atomic"
	"testing"
	"time"
)

// A real OOM kill in one of two watched cgroups is reported for that one
// alone, without polling either, and stop and Remove end the watch.
func TestNotifyOOM(t *testing.T) {
	m := openTest(t)
	if !m.has("memory") {
		t.Skipf("no memory controller: %v", m.Notes())
	}
	const limit = 32 << 20
	victim, err := m.Create("oomw", "victim", Limits{Memory: limit})
	if err != nil {
		t.Fatal(err)
	}
	bystander, err := m.Create("oomw", "bystander", Limits{Memory: limit})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 4)
	var others atomic.Int32
	stopV, err := victim.NotifyOOM(func() { got <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stopV()
	stopB, err := bystander.NotifyOOM(func() { others.Add(1) })
	if err != nil {
		t.Fatal(err)
	}

	cmd, out := startAllocHelper(t, victim)
	cmd.Wait()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		me, _ := victim.MemoryEvents()
		t.Fatalf("no OOM notification (memory events %+v, helper output %q)", me, out.String())
	}
	if n := others.Load(); n != 0 {
		t.Errorf("the bystander cgroup was notified %d times, want 0", n)
	}
	stopB()
	stopB() // idempotent

	w := m.oom
	if err := victim.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bystander.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	left := len(w.byWD) + len(w.byFD)
	w.mu.Unlock()
	if left != 0 {
		t.Errorf("%d watches left after both cgroups were removed", left)
	}
}

func TestNotifyOOMAfterClose(t *testing.T) {
	m := openTest(t)
	if !m.has("memory") {
		t.Skipf("no memory controller: %v", m.Notes())
	}
	c, err := m.Create("oomc", "a", Limits{Memory: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NotifyOOM(func() {}); err == nil {
		t.Error("NotifyOOM on a removed cgroup: no error")
	}
}
