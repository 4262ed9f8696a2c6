package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An agent isolated with action keep stays isolated and listed across a
// daemon restart, frozen in its cgroup, until it is released; and the
// next agent ids never repeat the previous daemon's.
func TestKeptIsolatedAgentSurvivesRestart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kept agent waits frozen in its cgroup")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir, "pools:"+poolYAML(binaries(t), "keep"))
	ctl := resilientctl(t)
	d := startOwnDaemon(t, cfg, state)
	run := func(d *daemonProc, args ...string) string {
		t.Helper()
		out, err := exec.Command(ctl, append([]string{"--socket", d.socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("resilientctl %v: %v\n%s\n%s", args, err, out, d.log)
		}
		return string(out)
	}
	as, err := d.client.Agents(context.Background(), "keep")
	if err != nil {
		t.Fatal(err)
	}
	victim := as[0]
	seen := map[string]bool{}
	for _, a := range as {
		seen[a.ID] = true
	}
	run(d, "isolate", victim.ID, "--action", "keep", "--reason", "evidence")

	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, d.log)
	}
	if !alive(victim.PID) {
		t.Fatalf("the kept agent %s (pid %d) died with the daemon\n%s", victim.ID, victim.PID, d.log)
	}
	if b, err := os.ReadFile(filepath.Join(victim.Cgroup, "cgroup.freeze")); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("the kept agent's cgroup is not frozen: %q %v", b, err)
	}

	d2 := startOwnDaemon(t, cfg, state)
	as, err = d2.client.Agents(context.Background(), "keep")
	if err != nil {
		t.Fatal(err)
	}
	var listed bool
	for _, a := range as {
		if a.ID == victim.ID {
			listed = a.State == "isolated" && a.PID == victim.PID
			continue
		}
		if seen[a.ID] {
			t.Errorf("agent id %s given again by the next daemon", a.ID)
		}
	}
	if !listed {
		t.Fatalf("the kept agent is not listed isolated after the restart: %+v\n%s", as, d2.log)
	}
	run(d2, "release", victim.ID)
	deadline := time.Now().Add(10 * time.Second)
	for alive(victim.PID) {
		if time.Now().After(deadline) {
			t.Fatalf("the released agent %d still runs", victim.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(victim.Cgroup); err == nil {
		t.Errorf("the released agent's cgroup %s is left", victim.Cgroup)
	}
	as, _ = d2.client.Agents(context.Background(), "keep")
	for _, a := range as {
		if a.ID == victim.ID {
			t.Errorf("the released agent is still listed: %+v", a)
		}
	}
}
