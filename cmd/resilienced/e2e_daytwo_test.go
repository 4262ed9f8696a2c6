package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// ctlRunner runs resilientctl against one daemon and returns its stdout
// and stderr together with its exit code.
func ctlRunner(t *testing.T, d *daemonProc) func(args ...string) (string, int) {
	ctl := resilientctl(t)
	return func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(ctl, append([]string{"--socket", d.socket}, args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
}

func poolStatus(t *testing.T, d *daemonProc, pool string) (supervisor.PoolStatus, []supervisor.AgentStatus) {
	t.Helper()
	st, err := d.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var agents []supervisor.AgentStatus
	for _, a := range st.Agents {
		if a.Pool == pool {
			agents = append(agents, a)
		}
	}
	for _, p := range st.Pools {
		if p.Name == pool {
			return p, agents
		}
	}
	t.Fatalf("no pool %s in status", pool)
	return supervisor.PoolStatus{}, nil
}

// Issue #19's table, row by row, through resilientctl against a real
// daemon: each row's old failure is now the behaviour asserted here.
func TestDayTwoOperations(t *testing.T) {
	dir := t.TempDir()
	bin := binaries(t)
	echo := poolYAML(bin, "echo")
	dep := fmt.Sprintf(`
  - name: dep
    command: [%s, -upstream, "127.0.0.1:1", -upstream-unavailable]
    replicas: 2
    spares: 1
    contract:
      schema: {type: object, required: [answer]}
`, filepath.Join(bin, "flaky"))
	slow := fmt.Sprintf(`
  - name: slow
    command: [%s, -startup-delay, 3s]
    replicas: 1
    spares: 0
    contract:
      schema: {type: object, required: [answer]}
`, filepath.Join(bin, "flaky"))
	cfg := writeConfig(t, dir, "pools:"+echo+dep+slow)
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))
	ctl := ctlRunner(t, d)
	ctx := context.Background()

	t.Run("scale is bounded and a newer scale calls off older starts", func(t *testing.T) {
		out, code := ctl("scale", "echo", "1000")
		if code == 0 || !strings.Contains(out, "max_replicas") || !strings.Contains(out, "--force") {
			t.Fatalf("scale echo 1000: exit %d, want a refusal naming the bound and --force:\n%s", code, out)
		}
		out, code = ctl("scale", "echo", "0")
		if code == 0 || !strings.Contains(out, "--allow-zero") {
			t.Fatalf("scale echo 0: exit %d, want a refusal naming --allow-zero:\n%s", code, out)
		}
		// The scale to 2 calls off the starts of the scale to 40 that are
		// still under way. The slow pool's agents take 3 s to answer their
		// handshake (an interpreter loading its model), so the 39 starts
		// are all under way when the second scale comes, whatever the load:
		// none of them may become ready.
		if out, code = ctl("scale", "slow", "40"); code != 0 {
			t.Fatalf("scale slow 40: exit %d\n%s", code, out)
		}
		out, code = ctl("-o", "json", "scale", "slow", "2")
		var ans struct {
			Pool     string `json:"pool"`
			Replicas int    `json:"replicas"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || ans.Pool != "slow" || ans.Replicas != 2 {
			t.Fatalf("-o json scale slow 2: exit %d, want {pool, replicas}:\n%s", code, out)
		}
		waitUntil(t, "slow back at 2 active agents and no more", func() bool {
			p, agents := poolStatus(t, d, "slow")
			return p.State == "running" && p.Active == 2 && len(agents) <= 2+p.SparesWanted
		})
		out, _ = ctl("-o", "json", "events", "--pool", "slow", "--kind", "ready")
		if n := strings.Count(out, `"kind":"ready"`); n > 2 {
			t.Errorf("%d agents of pool slow became ready, want 2: the scale to 2 did not call off the starts of the scale to 40", n)
		}
	})

	t.Run("a change of replicas in the file touches no agent", func(t *testing.T) {
		_, before := poolStatus(t, d, "echo")
		writeConfig(t, dir, "pools:"+strings.Replace(echo, "replicas: 2", "replicas: 3", 1)+dep+slow)
		if out, code := ctl("reload"); code != 0 || !strings.Contains(out, "echo") {
			t.Fatalf("reload: exit %d\n%s", code, out)
		}
		waitUntil(t, "echo at 3 active agents", func() bool {
			p, _ := poolStatus(t, d, "echo")
			return p.Active == 3
		})
		_, after := poolStatus(t, d, "echo")
		pids := map[int]bool{}
		for _, a := range after {
			pids[a.PID] = true
		}
		for _, a := range before {
			if !pids[a.PID] || !alive(a.PID) {
				t.Errorf("agent %s (pid %d) was replaced by a change of replicas", a.ID, a.PID)
			}
		}
	})

	t.Run("restart rolls agent by agent under calls", func(t *testing.T) {
		_, before := poolStatus(t, d, "echo")
		var failed, done atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := d.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(`"x"`)}); err != nil {
						failed.Add(1)
						t.Logf("call failed during the rolling restart: %v", err)
					}
					done.Add(1)
				}
			}()
		}
		out, code := ctl("-o", "json", "restart", "echo")
		var ans struct {
			Pool       string `json:"pool"`
			Restarting bool   `json:"restarting"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || ans.Pool != "echo" || !ans.Restarting {
			t.Errorf("-o json restart echo: exit %d\n%s", code, out)
		}
		waitUntil(t, "every agent of echo replaced", func() bool {
			for _, a := range before {
				if alive(a.PID) {
					return false
				}
			}
			p, _ := poolStatus(t, d, "echo")
			return p.Active == 3
		})
		close(stop)
		wg.Wait()
		if failed.Load() > 0 || done.Load() == 0 {
			t.Errorf("%d of %d calls failed during a rolling restart", failed.Load(), done.Load())
		}
	})

	t.Run("the same idempotency key with another input is a conflict", func(t *testing.T) {
		if out, code := ctl("call", "echo", `"a"`, "--key", "k1"); code != 0 {
			t.Fatalf("first call: exit %d\n%s", code, out)
		}
		out, code := ctl("-o", "json", "call", "echo", `"b"`, "--key", "k1")
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if code == 0 || json.Unmarshal([]byte(out), &e) != nil || e.Error.Code != "idempotency_conflict" {
			t.Fatalf("same key, other input: exit %d, want a JSON idempotency_conflict:\n%s", code, out)
		}
	})

	t.Run("a JSON Schema keyword typo is a config error", func(t *testing.T) {
		bad := strings.Replace(echo, "required: [answer]", "requird: [answer]", 1)
		writeConfig(t, dir, "pools:"+bad+dep+slow)
		out, code := ctl("reload")
		if code != 2 || !strings.Contains(out, "requird") || !strings.Contains(out, "config.yaml:") {
			t.Fatalf("reload with requird: exit %d, want 2 naming the keyword and where:\n%s", code, out)
		}
	})

	t.Run("an agent that says its dependency is down is not killed", func(t *testing.T) {
		_, before := poolStatus(t, d, "dep")
		_, err := d.client.Call(ctx, "dep", api.CallRequest{Input: json.RawMessage(`"x"`)})
		var e *api.Error
		if !asAPIError(err, &e) || e.Code != api.CodeDependencyUnavailable {
			t.Fatalf("call on a pool whose upstream is down: %v, want %s", err, api.CodeDependencyUnavailable)
		}
		for _, a := range before {
			if !alive(a.PID) {
				t.Errorf("agent %s (pid %d) was killed for its dependency", a.ID, a.PID)
			}
		}
		out, _ := ctl("-o", "json", "events", "--pool", "dep", "--kind", "kill,exit,violation")
		if strings.TrimSpace(out) != "" {
			t.Errorf("events of killed agents in pool dep:\n%s", out)
		}
	})

	t.Run("a failing agent's stderr is in the reason, logs and filtered events", func(t *testing.T) {
		broken := `
  - name: broken
    command: [sh, -c, "echo \"can't open file 'agent.py'\" >&2; exit 2"]
    replicas: 1
`
		writeConfig(t, dir, "pools:"+strings.Replace(echo, "replicas: 2", "replicas: 3", 1)+dep+slow+broken)
		if out, code := ctl("reload"); code != 0 || !strings.Contains(out, "broken") {
			t.Fatalf("reload adding pool broken: exit %d\n%s", code, out)
		}
		var last string
		waitUntil(t, "a failed start of pool broken", func() bool {
			last, _ = ctl("-o", "json", "events", "--pool", "broken", "--kind", "spawn_failed", "--tail", "1")
			return strings.TrimSpace(last) != ""
		})
		if lines := strings.Split(strings.TrimSpace(last), "\n"); len(lines) != 1 {
			t.Errorf("--tail 1 gave %d lines:\n%s", len(lines), last)
		}
		if !strings.Contains(last, "can't open file") {
			t.Errorf("the spawn_failed event's reason does not quote the agent's stderr:\n%s", last)
		}
		out, code := ctl("logs", "broken")
		if code != 0 || !strings.Contains(out, "can't open file 'agent.py'") {
			t.Errorf("logs broken: exit %d\n%s", code, out)
		}
		out, _ = ctl("events", "--pool", "broken", "--tail", "3")
		if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, "KIND") {
			t.Errorf("events in table mode has no header:\n%s", out)
		}
		if strings.Contains(out, " echo ") || strings.Contains(out, " dep ") {
			t.Errorf("events --pool broken shows other pools:\n%s", out)
		}
	})
}

func asAPIError(err error, target **api.Error) bool {
	e, ok := err.(*api.Error)
	if !ok {
		return false
	}
	*target = e
	return true
}
