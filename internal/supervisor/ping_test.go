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
// none is killed while they answer. (10 agents: within the default ping
// budget of 16 a second per CPU, even on one CPU.)
func TestVirtualIdleAgentsArePingedEachInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f, pingPool("idle", 10))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		start := f.pings.Load()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := f.pings.Load() - start; got < 10*9 || got > 10*11 {
			t.Fatalf("%d pings of 10 idle agents in 10 intervals, want about 100", got)
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

// On default settings, one hung agent among idle ones well past the ping
// budget (four times as many as it pings a second: each pinged every ~4 s,
// not every second) is found by the pinger within the time the budget
// takes to go round them all and a timeout, and only it is killed: the
// lower default budget keeps idle liveness real. (At 1,000 agents the same
// holds with a round of ~31 s on 2 CPUs, but takes minutes under -race.)
func TestVirtualHungIdleAgentFoundAtDefaultBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := (&config.Config{}).EffectivePingBudget()
		n := 4 * budget
		f := &fakeAgents{}
		r := newFakeRun(t, f, pingPool("idle", n))
		round := time.Duration(n/budget+1) * time.Second
		// A round of pings so that every agent has been seen answering.
		time.Sleep(round)
		synctest.Wait()
		p, _ := r.sup.Pool("idle")
		var pid int
		var id string
		p.mu.Lock()
		for _, sl := range p.slots {
			if sl.a != nil && sl.state == AgentActive {
				pid, id = sl.a.PID(), sl.id
				break
			}
		}
		p.mu.Unlock()
		if pid == 0 {
			t.Fatal("no active agent")
		}
		f.hangPID.Store(int64(pid))
		hungAt := time.Now()
		for time.Since(hungAt) < 2*round+time.Second && len(r.eventsOf(EventHang)) == 0 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		hangs := r.eventsOf(EventHang)
		if len(hangs) != 1 {
			t.Fatalf("%d hang events %v after %v, want the one hung agent of %d found within two rounds of the default budget (%d pings/s)",
				len(hangs), hangs, time.Since(hungAt), n, budget)
		}
		if hangs[0].Agent != id || !strings.Contains(hangs[0].Reason, "no answer to a ping") {
			t.Fatalf("hang event %+v, want agent %s and a missed ping", hangs[0], id)
		}
		t.Logf("1 hung agent of %d found %v after it hung (default budget %d pings/s)", n, time.Since(hungAt), budget)
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

// The scheduling watch ticks only while held (and a tick after): an idle
// node is not woken ten times a second for nobody; held again, it ticks
// again and does not read as starved.
func TestSchedWatchTicksOnlyWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &schedWatch{wake: make(chan struct{}, 1)}
		quit := make(chan struct{})
		done := make(chan struct{})
		go func() { w.run(quit); close(done) }()
		time.Sleep(time.Second)
		synctest.Wait()
		stopped := w.lastTick.Load()
		time.Sleep(time.Second)
		synctest.Wait()
		if w.lastTick.Load() != stopped {
			t.Fatal("the watch still ticks with nobody holding it")
		}
		w.hold()
		synctest.Wait()
		time.Sleep(3 * schedPeriod / 2)
		synctest.Wait()
		if w.lastTick.Load() == stopped {
			t.Fatal("held, the watch did not tick again")
		}
		if w.starvedWithin(time.Second) {
			t.Fatal("held and ticking on time, the watch reads as starved")
		}
		time.Sleep(time.Second)
		if w.starvedWithin(time.Second) {
			t.Fatal("held for a second on time, the watch reads as starved")
		}
		w.release()

		// A watch woken late after a kick saw starvation: the check
		// that kicked it was waiting meanwhile.
		time.Sleep(time.Second)
		synctest.Wait()
		w.holds.Add(1)
		w.kickAt.Store(time.Now().Add(-200 * time.Millisecond).UnixNano())
		w.wake <- struct{}{}
		synctest.Wait()
		if !w.starvedWithin(time.Second) {
			t.Fatal("woken 200 ms after its kick, the watch does not read as starved")
		}
		w.holds.Add(-1)
		close(quit)
		<-done
	})
}
