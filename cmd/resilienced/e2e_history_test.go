package main

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// Events outlive the daemon: after a restart, `events` still shows an
// earlier instance's failures, with every field the ring had, from the
// journal in the state file.
func TestEventsOutliveTheDaemon(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "pools:"+poolYAML(binaries(t), "echo"))
	state := filepath.Join(dir, "state")
	d := startDaemon(t, cfg, state)
	ctx := context.Background()
	st, err := d.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var victim supervisor.AgentStatus
	for _, a := range st.Agents {
		if a.State == supervisor.AgentActive {
			victim = a
			break
		}
	}
	syscall.Kill(victim.PID, syscall.SIGKILL)
	exitOf := func(c *api.Client) *api.Event {
		var found *api.Event
		c.Events(ctx, api.EventQuery{EventFilter: api.EventFilter{Agent: victim.ID, Kinds: []string{"exit"}}}, func(ev api.Event) error {
			found = &ev
			return nil
		})
		return found
	}
	var first *api.Event
	waitUntil(t, "the exit event of the killed agent", func() bool { first = exitOf(d.client); return first != nil })
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, d.log)
	}

	d2 := startDaemon(t, cfg, state)
	ev := exitOf(d2.client)
	if ev == nil {
		t.Fatalf("after a restart, no exit event of %s (killed under the first instance)", victim.ID)
	}
	if ev.Pool != "echo" || ev.Class == "" || ev.Class != first.Class || ev.Reason != first.Reason || !ev.Time.Equal(first.Time) {
		t.Errorf("the earlier instance's exit event came back as\n%+v\nwhere it was\n%+v", ev, first)
	}
}
