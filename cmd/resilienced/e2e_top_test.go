package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// TestTopUnderTmux drives `resilientctl top` in a real terminal (a tmux
// pane of 80 columns): it shows the pool and its agents, a SIGKILLed
// agent's recovery appears among the recent ones, no line is wider than
// the pane, and q quits with status 0.
func TestTopUnderTmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed: top is tested in a real terminal")
	}
	bin := binaries(t)
	ctl := filepath.Join(t.TempDir(), "resilientctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "../resilientctl").CombinedOutput(); err != nil {
		t.Fatalf("go build resilientctl: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "pools:"+poolYAML(bin, "echo"))
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))

	// A tmux server of this test's own, without the user's config.
	sock := fmt.Sprintf("resilienced-top-%d", os.Getpid())
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// top's exit status goes to a file: tmux reports a dead pane's status
	// only once it has reaped the process, which a loaded machine delays.
	statusFile := filepath.Join(dir, "top.status")
	if out, err := tm("new-session", "-d", "-s", "top", "-x", "80", "-y", "30",
		ctl+" --socket "+d.socket+" top --interval 200ms; echo $? >"+statusFile); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	if out, err := tm("set-option", "-t", "top", "remain-on-exit", "on"); err != nil {
		t.Fatalf("tmux set-option: %v\n%s", err, out)
	}
	capture := func() string {
		out, _ := tm("capture-pane", "-p", "-t", "top")
		return out
	}
	waitFor := func(what string, ok func(screen string) bool) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := capture()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("top never showed %s; the screen:\n%s", what, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	screen := waitFor("the pool and its agents", func(s string) bool {
		return strings.Contains(s, "POOL") && strings.Contains(s, "echo ") && strings.Contains(s, "running") &&
			strings.Contains(s, "AGENT") && strings.Contains(s, "echo-")
	})

	// Calls, then a SIGKILL: its recovery appears under the recent ones.
	for range 20 {
		if _, err := d.client.Call(context.Background(), "echo", api.CallRequest{Input: json.RawMessage(`{"q":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	as, err := d.client.Agents(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	for _, a := range as {
		if a.State == supervisor.AgentActive {
			victim = a.ID
			if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	screen = waitFor("the recovery of "+victim, func(s string) bool {
		_, recent, ok := strings.Cut(s, "RECENT RECOVERIES")
		return ok && strings.Contains(recent, victim) && strings.Contains(recent, "exit")
	})
	for _, line := range strings.Split(screen, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("a line of %d columns in an 80-column pane: %q", n, line)
		}
	}

	if out, err := tm("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("tmux send-keys: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, err := os.ReadFile(statusFile)
		if err == nil && strings.HasSuffix(string(status), "\n") {
			if strings.TrimSpace(string(status)) != "0" {
				t.Fatalf("top quit on q with status %s; the screen:\n%s", status, capture())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top did not quit on q; the screen:\n%s", capture())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
