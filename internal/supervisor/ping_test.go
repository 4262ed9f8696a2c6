package supervisor

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

func pingPool(name string, replicas int) config.Pool {
	pc := fakePool(name, replicas, 0)
	pc.PingInterval, pc.PingTimeout = time.Second, 500*time.Millisecond
	return pc
}

// Idle agents are pinged once per ping_interval each, all from one timer;
// none is killed while they answer.
func TestVirtualIdleAgentsArePingedEachInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f, pingPool("idle", 50))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		start := f.pings.Load()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := f.pings.Load() - start; got < 50*9 || got > 50*11 {
			t.Fatalf("%d pings of 50 idle agents in 10 intervals, want about 500", got)
		}
		if n := len(r.eventsOf(EventHang)); n != 0 {
			t.Fatalf("%d hang events for agents that answer", n)
		}
	})
}

// Past the node's ping budget, idle agents are pinged at the budget's rate,
// longest idle first, so that each gets its turn: the cost of idle
// liveness does not grow with the agents.
func TestVirtualPingBudgetBoundsTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f)
		// 200 agents at 20 pings/s: each is due every ping_interval (1 s),
		// so unbudgeted they would be pinged 10× as often as allowed.
		cfg := &config.Config{PingBudget: 20, Pools: []config.Pool{pingPool("many", 200)}}
		if err := r.sup.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		before := f.pings.Load()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if got := f.pings.Load() - before; got < 20*18 || got > 20*21 {
			t.Fatalf("%d pings in 20 s at a budget of 20/s, want about 400 (not 4,000)", got)
		}
		p, _ := r.sup.Pool("many")
		p.mu.Lock()
		var never int
		for _, sl := range p.slots {
			if sl.lastPing.Load() < time.Now().Add(-12*time.Second).UnixNano() {
				never++
			}
		}
		p.mu.Unlock()
		if never > 0 {
			t.Fatalf("%d of 200 agents not pinged in the last 12 s: the budget is not shared longest idle first", never)
		}
		if n := len(r.eventsOf(EventHang)); n != 0 {
			t.Fatalf("%d hang events for agents that answer", n)
		}
	})
}

// An agent that does not answer a ping is killed as hung and replaced.
func TestVirtualMissedPingKillsTheAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f, pingPool("hung", 1))
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		f.hangPings.Store(true)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		hangs := r.eventsOf(EventHang)
		if len(hangs) == 0 {
			t.Fatal("an agent that never answers pings was not found hung")
		}
		if !strings.Contains(hangs[0].Reason, "no answer to a ping") {
			t.Fatalf("hang reason %q", hangs[0].Reason)
		}
	})
}

// While the daemon itself is starved, a missed ping is no evidence: the
// agent is not killed, and is looked at again; once the daemon gets its
// CPU back, an agent that still does not answer is killed.
func TestVirtualStarvedDaemonDoesNotKillOnMissedPing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f, pingPool("starved", 3))
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		r.sup.sched.forced.Store(true)
		f.hangPings.Store(true)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(r.eventsOf(EventHang)); n != 0 {
			t.Fatalf("%d agents killed as hung while the daemon was starved", n)
		}
		r.sup.sched.forced.Store(false)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		hangs := r.eventsOf(EventHang)
		if len(hangs) < 3 {
			t.Fatalf("%d hang events once the daemon was no longer starved, want 3", len(hangs))
		}
		if !strings.Contains(hangs[0].Reason, "excused while the daemon was starved") {
			t.Fatalf("hang reason %q does not say the starved time was excused", hangs[0].Reason)
		}
	})
}

// The scheduling watch sees a late tick as starvation, for a while.
func TestSchedWatchSeesLateTicks(t *testing.T) {
	var w schedWatch
	now := time.Now()
	w.lastTick.Store(now.UnixNano())
	if w.starvedWithin(time.Second) {
		t.Fatal("starved with no late tick")
	}
	w.lateAt.Store(now.Add(-500 * time.Millisecond).UnixNano())
	if !w.starvedWithin(time.Second) {
		t.Fatal("not starved half a second after a late tick, asked about the last second")
	}
	if w.starvedWithin(100 * time.Millisecond) {
		t.Fatal("starved in the last 100 ms though the late tick was 500 ms ago")
	}
	w.lastTick.Store(now.Add(-time.Second).UnixNano())
	if !w.starvedWithin(0) {
		t.Fatal("not starved although the ticker is a second overdue")
	}
}
