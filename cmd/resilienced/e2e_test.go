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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
)

// These tests run the real daemon binary, as a user would.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "resilienced-e2e")
		if buildErr != nil {
			return
		}
		for pkg, name := range map[string]string{".": "resilienced", "../../examples/agents/flaky": "flaky"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	socket string
	log    *strings.Builder
	client *api.Client
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func poolYAML(bin, name string) string {
	return fmt.Sprintf(`
  - name: %s
    command: [%s, -seed, "1"]
    replicas: 2
    spares: 1
    contract:
      schema: {type: object, required: [answer]}
      deadline: 5s
`, name, filepath.Join(bin, "flaky"))
}

// startDaemon starts resilienced with its own socket and state dir and
// waits until its pools are ready; args are extra flags.
func startDaemon(t *testing.T, configPath, stateDir string, args ...string) *daemonProc {
	t.Helper()
	bin := binaries(t)
	sock := filepath.Join(t.TempDir(), "d.sock")
	// A cgroup subtree of this test binary's own: a daemon reaps the
	// agents it finds in its subtree at start, and other daemons on the
	// host (another test run, a benchmark, the demo) use the default one.
	if !slices.Contains(args, "--cgroup-name") {
		args = append([]string{"--cgroup-name", fmt.Sprintf("resilienced-test-%d", os.Getpid())}, args...)
	}
	cmd := exec.Command(filepath.Join(bin, "resilienced"), append([]string{"--config", configPath, "--socket", sock, "--state-dir", stateDir}, args...)...)
	log := &strings.Builder{}
	cmd.Stderr = &lockedWriter{b: log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{t: t, cmd: cmd, socket: sock, log: log, client: api.NewClient(sock)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := d.client.Status(context.Background())
		if err == nil && ready(st) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ready(st *api.Status) bool {
	for _, p := range st.Pools {
		if p.Active < p.Replicas || p.Spares < p.SparesWanted {
			return false
		}
	}
	return len(st.Pools) > 0
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func agentPIDs(t *testing.T, c *api.Client) []int {
	as, err := c.Agents(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, a := range as {
		pids = append(pids, a.PID)
	}
	return pids
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestBadConfigExits2WithEveryError(t *testing.T) {
	bin := binaries(t)
	cfg := writeConfig(t, t.TempDir(), `pools:
  - name: a
    command: [x]
    replicas: -1
    contract: {deadline: 5x}
`)
	out, err := exec.Command(filepath.Join(bin, "resilienced"), "--config", cfg).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2\n%s", err, out)
	}
	for _, want := range []string{"config.yaml:4:", "replicas", "config.yaml:5:", `"5x" is not a duration`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSigtermStopsEverything(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, writeConfig(t, dir, "pools:"+poolYAML(binaries(t), "echo")), filepath.Join(dir, "state"))
	pids := agentPIDs(t, d.client)
	st, _ := d.client.Status(context.Background())
	var cgroups []string
	for _, a := range st.Agents {
		if a.Cgroup != "" {
			cgroups = append(cgroups, a.Cgroup)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, d.log)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("agent %d alive after SIGTERM", pid)
		}
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left behind", cg)
		}
	}
	if _, err := os.Stat(d.socket); err == nil {
		t.Error("socket left behind")
	}
}

// After kill -9 of the daemon and a restart, every acknowledged exchange
// is there, none is duplicated, and the old agents are gone.
func TestKill9KeepsAcknowledgedSessions(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "pools:"+poolYAML(binaries(t), "echo"))
	state := filepath.Join(dir, "state")
	d := startDaemon(t, cfg, state)
	ctx := context.Background()
	acked := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := fmt.Sprintf("s%d", w)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := d.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(`"turn"`), Session: sess})
				if err != nil {
					return // the daemon died under us
				}
				mu.Lock()
				acked[sess] = int(res.Seq)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	old := agentPIDs(t, d.client)
	d.cmd.Process.Kill()
	d.cmd.Wait()
	close(stop)
	wg.Wait()

	d2 := startDaemon(t, cfg, state)
	for sess, seq := range acked {
		s, err := d2.client.Session(ctx, "echo", sess)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Context) == 0 || int(s.Context[len(s.Context)-1].Seq) < seq {
			t.Fatalf("session %s: acknowledged seq %d, stored %d entries", sess, seq, len(s.Context))
		}
		for i := 1; i < len(s.Context); i++ {
			if s.Context[i].Seq != s.Context[i-1].Seq+1 {
				t.Fatalf("session %s: seq %d follows %d (gap or duplicate)", sess, s.Context[i].Seq, s.Context[i-1].Seq)
			}
		}
	}
	if len(acked) == 0 {
		t.Fatal("no call was acknowledged before the kill")
	}
	for _, pid := range old {
		if alive(pid) {
			t.Errorf("agent %d of the killed daemon still alive after restart", pid)
		}
	}
}

func TestSighupReloadStartsNewPool(t *testing.T) {
	dir := t.TempDir()
	bin := binaries(t)
	cfg := writeConfig(t, dir, "pools:"+poolYAML(bin, "one"))
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))
	writeConfig(t, dir, "pools:"+poolYAML(bin, "one")+poolYAML(bin, "two"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := d.client.Call(context.Background(), "two", api.CallRequest{Input: json.RawMessage(`"hi"`)})
		if err == nil && strings.Contains(string(res.Output), "hi") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool two never served after SIGHUP: %v\n%s", err, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resilientctl reload applies the file and says what changed; an invalid
// file exits 2 with every error and its location, keeps the running
// config, and shows in status until a good reload.
func TestReloadCommandReportsChangesAndErrors(t *testing.T) {
	dir := t.TempDir()
	bin := binaries(t)
	cfg := writeConfig(t, dir, "pools:"+poolYAML(bin, "one"))
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))
	ctl := func(args ...string) (string, int) {
		cmd := exec.Command(resilientctl(t), append([]string{"--socket", d.socket}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}

	writeConfig(t, dir, "pools:"+poolYAML(bin, "one")+poolYAML(bin, "two"))
	out, code := ctl("reload")
	if code != 0 || !strings.Contains(out, "generation 2") || !strings.Contains(out, "added: two") {
		t.Fatalf("reload adding pool two: exit %d\n%s", code, out)
	}

	writeConfig(t, dir, "pools:"+poolYAML(bin, "one")+"\n  - name: bad\n    command: [x]\n    replicaz: 2\n")
	out, code = ctl("reload")
	if code != 2 || !strings.Contains(out, "replicaz: unknown key") || !strings.Contains(out, "config.yaml:") {
		t.Fatalf("reload of an invalid file: exit %d, want 2 with the error and its location\n%s", code, out)
	}
	st, err := d.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Config == nil || st.Config.Generation != 2 || !strings.Contains(st.Config.LastReloadError, "replicaz") {
		t.Fatalf("status after a failed reload: %+v", st.Config)
	}
	if len(st.Pools) != 2 {
		t.Fatalf("the failed reload changed the pools: %+v", st.Pools)
	}
	out, _ = ctl("status")
	if !strings.Contains(out, "the last reload failed") {
		t.Errorf("status does not show the failed reload:\n%s", out)
	}
	out, _ = ctl("events", "--kind", "reload_failed", "-o", "json")
	if !strings.Contains(out, "replicaz") {
		t.Errorf("no reload_failed event:\n%s", out)
	}
}
