package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/chaos"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// chaosDaemon serves a real supervisor (agents in process groups) and a
// chaos engine on a socket, as the daemon does.
func chaosDaemon(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	flaky := filepath.Join(dir, "flaky")
	if out, err := exec.Command("go", "build", "-o", flaky, "../../examples/agents/flaky").CombinedOutput(); err != nil {
		t.Fatalf("building flaky: %s", out)
	}
	sup := supervisor.New(supervisor.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	pc := config.DefaultPool()
	pc.Name = "echo"
	pc.Command = []string{flaky}
	pc.Replicas, pc.Spares = 2, 1
	pc.Contract.Schema = json.RawMessage(`{"type":"object","required":["answer"]}`)
	if err := sup.Apply(context.Background(), &config.Config{Pools: []config.Pool{pc}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sup.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	sock, err := api.Listen(filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(api.Options{Supervisor: sup})
	eng := chaos.New(chaos.Options{Supervisor: sup, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	eng.Register(srv)
	go srv.Serve(sock)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Close()
		srv.Shutdown(ctx)
		sup.Stop(ctx)
	})
	return sock.Path
}

// capture runs the CLI with args and returns its exit code and stdout.
func capture(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	code := run(context.Background(), args)
	os.Stdout = old
	w.Close()
	return code, <-out
}

func TestChaosGate(t *testing.T) {
	sock := chaosDaemon(t)
	base := []string{"--socket", sock, "chaos"}
	exp := []string{"--fault", "kill,hallucinate", "--target", "echo", "--count", "1", "--load", "50/s", "--warmup", "200ms", "--seed", "3", "-q"}

	// An impossible bound: the gate fails, exit 1, and says which kinds.
	code, out := capture(t, append(append(base, "gate", "--p99", "1ns"), exp...)...)
	if code != exitFailed {
		t.Errorf("gate with a 1ns bound: exit %d, want %d\n%s", code, exitFailed, out)
	}
	if !strings.Contains(out, "gate: FAIL") || !strings.Contains(out, "kill: p99 recovery") {
		t.Errorf("the failed gate does not say which kind:\n%s", out)
	}

	// A generous bound passes: exit 0, and -o json is the report.
	html := filepath.Join(t.TempDir(), "report.html")
	code, out = capture(t, append(append(base, "gate", "--p99", "10s", "-o", "json", "--report-html", html), exp...)...)
	if code != exitOK {
		t.Fatalf("gate with a 10s bound: exit %d\n%s", code, out)
	}
	var rep chaos.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if rep.Seed != 3 || len(rep.Faults) != 2 || rep.Faults[0].Injected != 1 || rep.Faults[0].Recovered != 1 || rep.Calls.Total == 0 || !rep.Gate.Passed {
		t.Errorf("report %+v", rep)
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("HTML report: %v", err)
	}

	// Bad input is refused before anything is injected.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--fault", "kil", "--target", "echo"}, exitUsage, "did you mean"},
		{[]string{"run", "--fault", "kill", "--target", "echo", "--rate", "0"}, exitUsage, "rate of zero"},
		{[]string{"run", "--fault", "kill", "--target", "nope"}, exitFailed, "no pool or agent"},
		{[]string{"run", "--fault", "kill", "--target", "echo", "--share", "1"}, exitFailed, "--max-concurrent"},
	} {
		stderr := captureStderr(t, func() {
			code, _ = capture(t, append(base, c.args...)...)
		})
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

func captureStderr(t *testing.T, f func()) string {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	f()
	os.Stderr = old
	w.Close()
	return <-out
}
