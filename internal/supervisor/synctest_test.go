package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/fault"
)

// The supervisor's logic under virtual time: fake agents, no process, no
// cgroup; time passes only when every goroutine waits on a timer.

type fakeRun struct {
	t      *testing.T
	f      *fakeAgents
	sup    *Supervisor
	mu     sync.Mutex
	events []Event
}

func newFakeRun(t *testing.T, f *fakeAgents, pcs ...config.Pool) *fakeRun {
	r := &fakeRun{t: t, f: f}
	r.sup = New(Options{
		Logger:       slog.New(slog.DiscardHandler),
		OnEvent:      r.record,
		Rand:         func() float64 { return 0.5 }, // no jitter
		startProcess: f.start,
	})
	if err := r.sup.Apply(context.Background(), &config.Config{Pools: pcs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sup.Stop(context.Background()) })
	return r
}

func (r *fakeRun) record(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *fakeRun) eventsOf(kind EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func fakePool(name string, replicas, spares int) config.Pool {
	pc := config.DefaultPool()
	pc.Name, pc.Command = name, []string{"fake"}
	pc.Replicas, pc.Spares, pc.MaxSpares = replicas, spares, spares
	pc.PingInterval = 0
	pc.Contract.Schema = answerSchema
	return pc
}

func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

// A command that cannot start: each start failure backs off twice as long
// as the one before (10 ms, 20 ms, ...), and the eleventh within 10 s
// exceeds the default intensity: the pool gives up.
func TestVirtualCrashLoopBacksOffThenGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		f.failStart.Store(true)
		r := newFakeRun(t, f, fakePool("loop", 1, 0))
		time.Sleep(time.Minute)
		synctest.Wait()
		p, _ := r.sup.Pool("loop")
		if st := p.Status(); st.State != PoolFailed {
			t.Fatalf("pool %+v, want failed", st)
		}
		ms := time.Millisecond
		want := []time.Duration{0, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, 1280 * ms, 2560 * ms}
		got := gaps(f.starts())
		if len(got) != len(want) {
			t.Fatalf("%d starts %v, want %d with gaps %v", len(got)+1, got, len(want)+1, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("gaps between starts %v, want %v", got, want)
			}
		}
		for _, ev := range r.eventsOf(EventSpawnFail) {
			if ev.Class != fault.Start {
				t.Fatalf("spawn_failed of class %q", ev.Class)
			}
		}
	})
}

// Agents that served and then break their contract are replaced at once:
// 120 runtime faults, twelve times the intensity limit, and not a
// nanosecond of virtual time passes in backoff.
func TestVirtualRuntimeFaultsReplaceAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		f.badFrom.Store(2) // each agent answers its first call, then breaks
		r := newFakeRun(t, f, fakePool("rt", 2, 1))
		synctest.Wait()
		t0 := time.Now()
		p, _ := r.sup.Pool("rt")
		ok := 0
		for range 200 {
			res, err := p.Call(context.Background(), CallRequest{Input: json.RawMessage(`{"text":"x"}`)})
			if err == nil {
				ok++
				continue
			}
			if !errors.Is(err, ErrRetriesExhausted) {
				t.Fatalf("call: %v (%+v)", err, res)
			}
		}
		synctest.Wait()
		if d := time.Since(t0); d != 0 {
			t.Fatalf("%v of virtual time passed: something backed off", d)
		}
		violations := r.eventsOf(EventViolation)
		if len(violations) < 100 {
			t.Fatalf("%d violations, want over 100", len(violations))
		}
		for _, ev := range violations {
			if ev.Class != fault.Runtime {
				t.Fatalf("violation of class %q: %+v", ev.Class, ev)
			}
		}
		// Spares grew with the rate of replacements (surge.go).
		if st := p.Status(); st.State != PoolRunning || st.Active != 2 || st.Spares < 1 || st.Spares != st.SparesWanted {
			t.Fatalf("pool after %d runtime faults: %+v", len(violations), st)
		}
		if ok == 0 {
			t.Fatal("no call succeeded")
		}
	})
}

// An agent that dies before min_uptime without serving a call failed to
// start: backed off. One that dies after it is a runtime fault: replaced
// at once, however often.
func TestVirtualMinUptimeTellsStartFromRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		f.exitAfter.Store(int64(300 * time.Millisecond))
		r := newFakeRun(t, f, fakePool("short", 1, 0))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		got := gaps(f.starts())
		if len(got) < 3 || got[0] != 300*time.Millisecond || got[1] != 310*time.Millisecond || got[2] != 320*time.Millisecond {
			t.Fatalf("gaps between starts %v, want 300ms, then 300ms plus a growing backoff", got)
		}
		for _, ev := range r.eventsOf(EventExit) {
			if ev.Class != fault.Start {
				t.Fatalf("death at 300 ms of class %q, want start", ev.Class)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		f.exitAfter.Store(int64(2 * time.Second))
		r := newFakeRun(t, f, fakePool("long", 1, 0))
		time.Sleep(time.Minute)
		synctest.Wait()
		p, _ := r.sup.Pool("long")
		if st := p.Status(); st.State == PoolFailed {
			t.Fatalf("pool failed on runtime faults: %+v", st)
		}
		got := gaps(f.starts())
		if len(got) < 25 {
			t.Fatalf("%d restarts in a minute of agents dying every 2 s", len(got))
		}
		// The pool's agents (its surge spares too) each die 2 s after their
		// start and are replaced at that instant: every start is on the 2 s
		// beat.
		for _, g := range got {
			if g != 0 && g != 2*time.Second {
				t.Fatalf("gaps between starts %v, want 0 or 2s: no backoff", got)
			}
		}
		for _, ev := range r.eventsOf(EventExit) {
			if ev.Class != fault.Runtime {
				t.Fatalf("death at 2 s of class %q, want runtime", ev.Class)
			}
		}
	})
}

// A pool that was whole stays running while a runtime replacement is under
// way, and is degraded once it has been short for degradedAfter.
func TestVirtualDegradedAfterAGrace(t *testing.T) {
	for _, tc := range []struct {
		start time.Duration // a replacement's handshake
		want  PoolState     // 1.5 s after the agents died
	}{
		{300 * time.Millisecond, PoolRunning},
		{2 * time.Second, PoolDegraded},
	} {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAgents{}
			f.initDelay.Store(int64(tc.start))
			f.exitAfter.Store(int64(5 * time.Second))
			r := newFakeRun(t, f, fakePool("grace", 2, 0))
			p, _ := r.sup.Pool("grace")
			time.Sleep(tc.start / 2)
			if st := p.Status(); st.State != PoolDegraded {
				t.Fatalf("starting pool: %+v, want degraded until it is whole", st)
			}
			// Both agents die at start+5s; their replacements take start.
			time.Sleep(tc.start/2 + 5*time.Second + 100*time.Millisecond)
			if st := p.Status(); st.State != PoolRunning || st.Active == 2 {
				t.Fatalf("100 ms into the replacement of a whole pool: %+v, want running and short", st)
			}
			time.Sleep(1400 * time.Millisecond)
			if st := p.Status(); st.State != tc.want {
				t.Fatalf("1.5 s after the deaths, replacements taking %v: %+v, want %s", tc.start, st, tc.want)
			}
		})
	}
}

// Spares raised by a burst of deaths are let go once the deaths stop:
// surgeHold after the last raise the surge follows the rate down, and the
// spares above the configured number are drained, oldest first.
func TestVirtualSurgeSparesDrainAfterTheBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		f.badFrom.Store(2)
		r := newFakeRun(t, f, fakePool("burst", 2, 1))
		p, _ := r.sup.Pool("burst")
		for range 200 {
			p.Call(context.Background(), CallRequest{Input: json.RawMessage(`{"text":"x"}`)})
		}
		synctest.Wait()
		raised := p.Status()
		if raised.SparesWanted <= 1 || raised.Spares <= 1 {
			t.Fatalf("after a burst of violations: %+v, want the surge to have raised the spares", raised)
		}
		f.badFrom.Store(0)
		time.Sleep(surgeHold / 2)
		synctest.Wait()
		if st := p.Status(); st.SparesWanted != raised.SparesWanted {
			t.Fatalf("%v after the burst: %+v, want the surge held (%d spares)", surgeHold/2, st, raised.SparesWanted)
		}
		time.Sleep(surgeHold + 2*surgeWindow)
		synctest.Wait()
		st := p.Status()
		if st.State != PoolRunning || st.Active != 2 || st.SparesWanted != 1 || st.Spares != 1 {
			t.Fatalf("%v after the burst: %+v, want 2 active and the configured 1 spare", surgeHold/2+surgeHold+2*surgeWindow, st)
		}
		drained := 0
		for _, ev := range r.eventsOf(EventScale) {
			if strings.HasPrefix(ev.Reason, "surge over") {
				drained++
			}
		}
		if drained == 0 {
			t.Fatal("no scale event says the surge is over")
		}
		want := raised.Spares - 1
		if got := len(r.eventsOf(EventDrain)); got != want {
			t.Fatalf("%d agents drained, want the %d surge spares", got, want)
		}
		for _, ev := range r.eventsOf(EventDrain) {
			if ev.Reason != "surge over" {
				t.Fatalf("drain %+v, want reason \"surge over\"", ev)
			}
		}
	})
}
