package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// handoverDaemon is a daemon whose log is a file: the instance a handover
// starts inherits it (a pipe would keep the first instance's Wait
// waiting for the last one).
type handoverDaemon struct {
	first   *exec.Cmd
	socket  string
	logPath string
	client  *api.Client
}

func (d *handoverDaemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

func startHandoverDaemon(t *testing.T, configPath, stateDir string) *handoverDaemon {
	t.Helper()
	bin := binaries(t)
	dir := t.TempDir()
	d := &handoverDaemon{socket: filepath.Join(dir, "d.sock"), logPath: filepath.Join(dir, "daemon.log")}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.first = exec.Command(filepath.Join(bin, "resilienced"), "--config", configPath, "--socket", d.socket, "--state-dir", stateDir,
		"--cgroup-name", fmt.Sprintf("resilienced-test-%d", os.Getpid()), "--arbiter=false")
	d.first.Stderr = logf
	if err := d.first.Start(); err != nil {
		t.Fatal(err)
	}
	d.client = api.NewClient(d.socket)
	t.Cleanup(func() {
		// The daemon serving now may be a later instance than the first.
		if st, err := d.client.Status(context.Background()); err == nil {
			syscall.Kill(st.PID, syscall.SIGTERM)
			waitGone(st.PID, 60*time.Second)
		}
		if d.first.ProcessState == nil {
			d.first.Process.Signal(syscall.SIGTERM)
			d.first.Wait()
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log())
		}
	})
	waitServing(t, d.client, 0)
	return d
}

// waitServing waits until a daemon other than pid old answers with every
// pool ready, and returns its status.
func waitServing(t *testing.T, c *api.Client, old int) *api.Status {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.PID != old && ready(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new instance serving (old pid %d): %v", old, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// callers call the pools in a loop, each call retried with its
// idempotency key until it succeeds (as a client across a daemon restart
// does): a call that fails for good is counted as failed.
type callers struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func startCallers(c *api.Client, pools []string, n int) *callers {
	cs := &callers{stop: make(chan struct{})}
	for w := range n {
		pool := pools[w%len(pools)]
		cs.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-cs.stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				if err := callRetrying(c, pool, key, 60*time.Second); err != nil {
					cs.failed.Add(1)
					cs.mu.Lock()
					cs.errs = append(cs.errs, err.Error())
					cs.mu.Unlock()
					continue
				}
				cs.ok.Add(1)
			}
		})
	}
	return cs
}

func (cs *callers) finish() { close(cs.stop); cs.wg.Wait() }

// callRetrying retries a call with the same idempotency key until it
// succeeds or patience runs out.
func callRetrying(c *api.Client, pool, key string, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.Call(ctx, pool, api.CallRequest{Input: json.RawMessage(`"x"`), Key: key})
		cancel()
		if err == nil {
			return nil
		}
		var e *api.Error
		if errors.As(err, &e) && e.Status < 500 {
			return err // the caller's mistake: no retry
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("call %s on %s: %w", key, pool, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pidsByPool(t *testing.T, c *api.Client) map[string][]int {
	t.Helper()
	as, err := c.Agents(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]int{}
	for _, a := range as {
		m[a.Pool] = append(m[a.Pool], a.PID)
	}
	for _, pids := range m {
		slices.Sort(pids)
	}
	return m
}

// TestUpgradeKeepsAgents is issue #14 without systemd: `resilientctl
// upgrade` and SIGUSR2 start the binary on disk again, hand it the agents'
// pipes, and the old instance exits once the new one serves. Every
// agent's pid is unchanged and calls retried with their idempotency key
// all succeed. Then a handover across a config change: the changed pool's
// agents are rolled, the removed pool's stopped.
func TestUpgradeKeepsAgents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: agents in cgroups, as the daemon runs in production")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	bin := binaries(t)
	body := "pools:" + poolYAML(bin, "a") + poolYAML(bin, "b") + poolYAML(bin, "c")
	cfgPath := writeConfig(t, dir, body)
	d := startHandoverDaemon(t, cfgPath, state)
	ctl := resilientctl(t)
	before := pidsByPool(t, d.client)
	st, _ := d.client.Status(context.Background())
	firstPID := st.PID

	cs := startCallers(d.client, []string{"a", "b", "c"}, 64) // the 64 callers
	time.Sleep(300 * time.Millisecond)

	// 1. resilientctl upgrade.
	out, err := exec.Command(ctl, "--socket", d.socket, "upgrade").CombinedOutput()
	if err != nil {
		t.Fatalf("resilientctl upgrade: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	if err := d.first.Wait(); err != nil {
		t.Errorf("the first instance did not exit cleanly: %v", err)
	}
	st = waitServing(t, d.client, firstPID)
	if got := pidsByPool(t, d.client); !mapsEqual(got, before) {
		t.Errorf("agent pids changed across resilientctl upgrade:\nbefore %v\nafter  %v", before, got)
	}
	// Pools adopted whole are running, not degraded until something happens.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, err := d.client.Status(context.Background())
		var notRunning []string
		for _, p := range st.Pools {
			if p.State != supervisor.PoolRunning {
				notRunning = append(notRunning, p.Name+" "+string(p.State))
			}
		}
		if err == nil && len(notRunning) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("pools not running after the upgrade: %v %v", notRunning, err)
			break
		}
	}
	okAt := cs.ok.Load()

	// 2. SIGUSR2.
	second := st.PID
	if err := syscall.Kill(second, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	st = waitServing(t, d.client, second)
	if !waitGone(second, 60*time.Second) {
		t.Errorf("the second instance (pid %d) did not exit after the handover", second)
	}
	if got := pidsByPool(t, d.client); !mapsEqual(got, before) {
		t.Errorf("agent pids changed across SIGUSR2:\nbefore %v\nafter  %v", before, got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for cs.ok.Load() < okAt+50 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cs.finish()
	if n := cs.failed.Load(); n > 0 {
		t.Errorf("%d calls failed for callers that retry (of %d): %v", n, cs.ok.Load()+n, cs.errs[:min(len(cs.errs), 5)])
	}
	if cs.ok.Load() <= okAt {
		t.Errorf("no call succeeded after the second handover")
	}
	t.Logf("64 callers across two handovers: %d calls ok, %d failed", cs.ok.Load(), cs.failed.Load())
	adopted := 0
	err = d.client.Events(context.Background(), api.EventQuery{EventFilter: api.EventFilter{Kinds: []string{"adopt", "adopt_refused"}}}, func(ev api.Event) error {
		if ev.Kind == "adopt_refused" {
			t.Errorf("refused: %s %s", ev.Agent, ev.Reason)
		}
		adopted++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if adopted == 0 {
		t.Errorf("no adopt event in the new instance's journal")
	}

	// 3. A handover across a config change: b's contract changes (its
	// agents are rolled once adopted), c is gone (its agents stopped).
	changed := "pools:" + poolYAML(bin, "a") + strings.Replace(poolYAML(bin, "b"), "deadline: 5s", "deadline: 6s", 1)
	if err := os.WriteFile(cfgPath, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	third := st.PID
	syscall.Kill(third, syscall.SIGUSR2)
	waitServing(t, d.client, third)
	for _, pid := range before["c"] {
		if !waitGone(pid, 30*time.Second) {
			t.Errorf("agent %d of the removed pool c still runs", pid)
		}
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		got := pidsByPool(t, d.client)
		if len(got["b"]) > 0 && !slices.ContainsFunc(got["b"], func(p int) bool { return slices.Contains(before["b"], p) }) && len(got["a"]) > 0 {
			if !mapsEqual(map[string][]int{"a": got["a"]}, map[string][]int{"a": before["a"]}) {
				t.Errorf("pool a's agents changed across a handover that did not change a: before %v after %v", before["a"], got["a"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool b's agents were not rolled after its config changed: before %v now %v", before["b"], got["b"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := d.client.Call(context.Background(), "b", api.CallRequest{Input: json.RawMessage(`"x"`)}); err != nil {
		t.Errorf("a call on the rolled pool: %v", err)
	}
}

func mapsEqual(a, b map[string][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
