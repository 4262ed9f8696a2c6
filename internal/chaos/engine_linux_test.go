package chaos

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

func rate(v float64) *Rate { r := Rate(v); return &r }

// TestEveryKind injects one fault of each kind into a real pool and checks
// its effect: the supervisor noticed, the faulted agent is gone, another
// took its place, and the pool served calls again.
func TestEveryKind(t *testing.T) {
	f := newFixture(t, poolOpts{replicas: 2, spares: 1, memory: 64 << 20})
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			switch k {
			case Sever, Leak, OOM:
				if !f.rooted {
					t.Skip("needs root and cgroups: " + string(k) + " acts on the agent's cgroup")
				}
			}
			if k == Sever && f.isoErr != nil {
				t.Skipf("BPF isolation not usable: %v", f.isoErr)
			}
			before := f.agentIDs(t)
			var seen []Progress
			rep, err := f.eng.Run(context.Background(), Spec{
				Faults: []Kind{k}, Target: f.pool, Count: 1, Seed: 7,
				Load: rate(200), Warmup: Duration(300 * time.Millisecond),
				LeakRate: 64 << 20, Timeout: Duration(10 * time.Second),
			}, func(p Progress) { seen = append(seen, p) })
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Faults) != 1 || rep.Faults[0].Kind != k {
				t.Fatalf("report faults = %+v", rep.Faults)
			}
			kr := rep.Faults[0]
			if kr.Injected != 1 || kr.Recovered != 1 || len(rep.Injections) != 1 {
				t.Fatalf("%s: injected %d, recovered %d; injections %+v", k, kr.Injected, kr.Recovered, rep.Injections[0])
			}
			in := rep.Injections[0]
			if _, ok := before[in.Agent]; !ok {
				t.Errorf("faulted agent %s was not one of the pool's agents %v", in.Agent, before)
			}
			if _, still := f.agentIDs(t)[in.Agent]; still {
				t.Errorf("agent %s is still there after its %s fault", in.Agent, k)
			}
			if in.Cause == "" || in.RecoverMS == nil || in.DetectMS == nil || in.How != "replaced" {
				t.Errorf("injection lacks measurements: %+v", in)
			}
			if kr.RecoverMS == nil || kr.RecoverMS.N != 1 {
				t.Errorf("recover summary %+v", kr.RecoverMS)
			}
			if k == Leak && in.OnsetMS == nil {
				t.Errorf("a leak has no onset: %+v", in)
			}
			if rep.Calls.Total == 0 || rep.Calls.Failed != 0 {
				t.Errorf("calls %+v", rep.Calls)
			}
			var types []string
			for _, p := range seen {
				types = append(types, p.Type)
			}
			if strings.Join(types, ",") != "started,injected,recovered" {
				t.Errorf("progress %v", types)
			}
			t.Logf("%s: cause %s, detect %.2f ms, recover %.2f ms (%s)", k, in.Cause, *in.DetectMS, *in.RecoverMS, in.Reason)
		})
	}
}

func TestPlanErrors(t *testing.T) {
	f := newFixture(t, poolOpts{replicas: 2, spares: 1})
	agents := f.agentIDs(t)
	var active string
	for id, a := range agents {
		if a.State == "active" {
			active = id
		}
	}
	cases := []struct {
		name string
		spec Spec
		want error
		text string
	}{
		{"unknown kind", Spec{Faults: []Kind{"kil"}, Target: f.pool}, ErrInvalidSpec, `did you mean "kill"`},
		{"no target", Spec{Faults: []Kind{Kill}, Target: "nope"}, ErrUnknownTarget, "no pool or agent"},
		{"rate zero", Spec{Faults: []Kind{Kill}, Target: f.pool, Rate: rate(0)}, ErrInvalidSpec, "rate of zero"},
		{"every agent at once", Spec{Faults: []Kind{Kill}, Target: f.pool, Share: 1}, ErrInvalidSpec, "--max-concurrent"},
		{"share beyond radius", Spec{Faults: []Kind{Kill}, Target: f.pool, Share: 1, MaxConcurrent: 1}, ErrInvalidSpec, "blast radius"},
		{"leak without limit", Spec{Faults: []Kind{Leak}, Target: f.pool}, ErrInvalidSpec, "memory limit"},
		{"agent twice", Spec{Faults: []Kind{Kill}, Target: active, Count: 2}, ErrInvalidSpec, "one fault"},
		{"spare agent", Spec{Faults: []Kind{Kill}, Target: spareOf(agents)}, ErrInvalidSpec, "spare"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "leak without limit" && !f.rooted {
				t.Skip("without cgroups leak is unsupported rather than refused")
			}
			_, err := f.eng.Run(context.Background(), c.spec, func(p Progress) { t.Errorf("progress %+v before the error", p) })
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("err = %v, want %v mentioning %q", err, c.want, c.text)
			}
		})
	}
	if got := f.agentIDs(t); len(got) != len(agents) {
		t.Errorf("agents changed by refused experiments: %v -> %v", agents, got)
	}
	for id := range agents {
		if _, ok := f.agentIDs(t)[id]; !ok {
			t.Errorf("agent %s was replaced by a refused experiment", id)
		}
	}
}

func spareOf(agents map[string]supervisor.AgentStatus) string {
	for id, a := range agents {
		if a.State == "spare" {
			return id
		}
	}
	return "no-spare"
}

func TestBusy(t *testing.T) {
	f := newFixture(t, poolOpts{replicas: 2, spares: 1, ping: 10 * time.Second})
	started := make(chan struct{})
	var once sync.Once
	done := make(chan *Report)
	go func() {
		rep, _ := f.eng.Run(context.Background(), Spec{Faults: []Kind{Latency}, Target: f.pool, Count: 1, Load: rate(0), Timeout: Duration(time.Minute), Latency: Duration(time.Minute)},
			func(p Progress) {
				if p.Type == "injected" {
					once.Do(func() { close(started) })
				}
			})
		done <- rep
	}()
	<-started
	if st := f.eng.Status(); !st.Running || st.Injected != 1 {
		t.Errorf("status %+v", st)
	}
	_, err := f.eng.Run(context.Background(), Spec{Faults: []Kind{Kill}, Target: f.pool}, nil)
	if !errors.Is(err, ErrBusy) {
		t.Errorf("second experiment: %v, want ErrBusy", err)
	}
	if !f.eng.Stop("test over") {
		t.Error("Stop found nothing running")
	}
	rep := <-done
	if rep == nil || rep.Aborted != "test over" {
		t.Fatalf("report %+v", rep)
	}
	if g := rep.Evaluate(time.Hour); g.Passed {
		t.Error("an aborted experiment passed the gate")
	}
}

// TestInterruptUndoes interrupts experiments while their fault is in place
// and the supervisor cannot notice it (no load, no pings): the fault must be
// gone afterwards and the agent serve again.
func TestInterruptUndoes(t *testing.T) {
	for _, k := range []Kind{Hang, Latency, Sever, Leak, Hallucinate} {
		t.Run(string(k), func(t *testing.T) {
			if (k == Sever || k == Leak) && os.Geteuid() != 0 {
				t.Skip("needs root and cgroups")
			}
			f := newFixture(t, poolOpts{replicas: 1, spares: 1, memory: 256 << 20, ping: time.Hour})
			if k == Sever && f.isoErr != nil {
				t.Skipf("BPF isolation not usable: %v", f.isoErr)
			}
			ctx, cancel := context.WithCancel(context.Background())
			injected := make(chan Progress, 1)
			done := make(chan *Report, 1)
			go func() {
				rep, err := f.eng.Run(ctx, Spec{
					Faults: []Kind{k}, Target: f.pool, Count: 1, MaxConcurrent: 1, Load: rate(0),
					Latency: Duration(time.Minute), LeakRate: 1 << 20, Timeout: Duration(time.Minute),
				}, func(p Progress) {
					t.Logf("progress %s %s %s", p.Type, p.Agent, p.Message)
					if p.Type == "injected" {
						injected <- p
					}
				})
				if err != nil {
					t.Error(err)
				}
				done <- rep
			}()
			var p Progress
			select {
			case p = <-injected:
			case <-time.After(30 * time.Second):
				t.Fatal("no injection")
			}
			a := f.agentIDs(t)[p.Agent]
			if k == Hang && !eventually(func() bool { return procState(a.PID) == "T" || cgroupFrozen(a.Cgroup) }) {
				t.Errorf("hang: agent %s (pid %d) is neither stopped nor frozen", a.ID, a.PID)
			}
			if k == Sever && !f.iso.Isolated(a.ID) {
				t.Errorf("sever: agent %s is not isolated", a.ID)
			}
			time.Sleep(100 * time.Millisecond) // let a leak grow a little
			cancel()
			rep := <-done
			if rep == nil || !strings.Contains(rep.Aborted, "interrupted") {
				t.Fatalf("report %+v", rep)
			}
			if len(rep.Injections) != 1 || rep.Injections[0].Recovered {
				t.Errorf("injections %+v", rep.Injections)
			}
			// The agent is still there, unfaulted: the only active agent of
			// the pool answers a call promptly.
			now := f.agentIDs(t)
			if _, ok := now[a.ID]; !ok {
				t.Fatalf("agent %s was replaced; the fault should have been undone without the supervisor noticing", a.ID)
			}
			if s := procState(a.PID); s == "T" || cgroupFrozen(a.Cgroup) {
				t.Errorf("agent %s left stopped or frozen (state %s)", a.ID, s)
			}
			if f.iso != nil && f.iso.Isolated(a.ID) {
				t.Errorf("agent %s left severed", a.ID)
			}
			if f.rooted {
				if procs := cgroupProcs(t, a.Cgroup); len(procs) != 1 {
					t.Errorf("agent cgroup holds %v, want only the agent (the memory helper must be gone)", procs)
				}
			}
			if err := f.call(t, 5*time.Second); err != nil {
				t.Errorf("a call after the interrupted %s fault: %v", k, err)
			}
			if st := f.sup.Status()[0]; st.Restarts != 0 {
				t.Errorf("pool restarted %d agents; the fault should have been undone unnoticed", st.Restarts)
			}
		})
	}
}

func cgroupProcs(t *testing.T, dir string) []string {
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestCloseUndoes stops the engine as the daemon does when it stops, in the
// middle of a hang: the run reports, the agent is thawed, and no experiment
// starts afterwards.
func TestCloseUndoes(t *testing.T) {
	f := newFixture(t, poolOpts{replicas: 1, spares: 1, ping: time.Hour})
	injected := make(chan Progress, 4)
	done := make(chan *Report, 1)
	go func() {
		rep, err := f.eng.Run(context.Background(), Spec{Faults: []Kind{Hang}, Target: f.pool, Count: 1, MaxConcurrent: 1, Load: rate(0), Timeout: Duration(time.Minute)},
			func(p Progress) {
				if p.Type == "injected" {
					injected <- p
				}
			})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	p := <-injected
	a := f.agentIDs(t)[p.Agent]
	if !eventually(func() bool { return procState(a.PID) == "T" || cgroupFrozen(a.Cgroup) }) {
		t.Fatalf("agent %s is not hung", a.ID)
	}
	f.eng.Close()
	rep := <-done
	if rep == nil || rep.Aborted != "the daemon is stopping" {
		t.Fatalf("report %+v", rep)
	}
	if s := procState(a.PID); s == "T" || cgroupFrozen(a.Cgroup) {
		t.Errorf("agent %s left hung (state %s)", a.ID, s)
	}
	if err := f.call(t, 5*time.Second); err != nil {
		t.Errorf("call after Close: %v", err)
	}
	if _, err := f.eng.Run(context.Background(), Spec{Faults: []Kind{Kill}, Target: f.pool}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

// eventually polls cond for up to 5 s: a SIGSTOP is delivered when the
// process next runs, not when kill returns.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
