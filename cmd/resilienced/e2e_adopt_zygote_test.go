package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
)

// parentOf is pid's parent, 0 when it is gone.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var n int
	fmt.Sscan(f[1], &n)
	return n
}

// TestUpgradeKeepsZygoteChildren is issue #14 for a pool with start:
// zygote: the zygote's children are adopted across a handover (pids
// unchanged), the old zygote is killed, not leaked (its children live on
// in their own cgroups), and the next agent the pool starts comes from a
// new zygote of the new instance.
func TestUpgradeKeepsZygoteChildren(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: agents in cgroups, as the daemon runs in production")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3: the zygote example agent is Python")
	}
	script, err := filepath.Abs("../../examples/agents/python/agent.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := fmt.Sprintf(`pools:
  - name: zy
    command: [%s, %s]
    start: zygote
    replicas: 2
    spares: 1
`, py, script)
	d := startHandoverDaemon(t, writeConfig(t, dir, body), filepath.Join(dir, "state"))
	before := pidsByPool(t, d.client)["zy"]
	if len(before) != 3 {
		t.Fatalf("agents %v, want 3", before)
	}
	oldZygote := parentOf(before[0])
	for _, pid := range before {
		if p := parentOf(pid); p != oldZygote {
			t.Fatalf("agents %v have parents %d and %d: not one zygote's children", before, oldZygote, p)
		}
	}
	st, _ := d.client.Status(context.Background())
	if oldZygote == st.PID {
		t.Fatalf("agent %d is the daemon's child, not a zygote's", before[0])
	}

	cs := startCallers(d.client, []string{"zy"}, 4)
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(st.PID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	st = waitServing(t, d.client, st.PID)
	if err := d.first.Wait(); err != nil {
		t.Errorf("the first instance did not exit cleanly: %v", err)
	}
	if got := pidsByPool(t, d.client)["zy"]; !slices.Equal(got, before) {
		t.Errorf("the zygote's children changed across the handover: before %v after %v", before, got)
	}
	if !waitGone(oldZygote, 30*time.Second) {
		t.Errorf("the old instance's zygote (pid %d) still runs: leaked", oldZygote)
	}
	okAt := cs.ok.Load()
	deadline := time.Now().Add(30 * time.Second)
	for cs.ok.Load() < okAt+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cs.finish()
	if n := cs.failed.Load(); n > 0 {
		t.Errorf("%d calls failed for callers that retry (of %d): %v", n, cs.ok.Load()+n, cs.errs[:min(len(cs.errs), 5)])
	}

	// An adopted child that dies is replaced by a child of a new zygote.
	syscall.Kill(before[0], syscall.SIGKILL)
	deadline = time.Now().Add(60 * time.Second)
	var fresh int
	for fresh == 0 {
		for _, pid := range pidsByPool(t, d.client)["zy"] {
			if !slices.Contains(before, pid) {
				fresh = pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed child %d was not replaced: %v", before[0], pidsByPool(t, d.client)["zy"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if z := parentOf(fresh); z == oldZygote || z == st.PID || z == 0 {
		t.Errorf("the replacement %d has parent %d: want a new zygote (old %d, daemon %d)", fresh, z, oldZygote, st.PID)
	}
	if _, err := d.client.Call(context.Background(), "zy", api.CallRequest{Input: json.RawMessage(`"x"`)}); err != nil {
		t.Errorf("a call after the replacement: %v", err)
	}
}
