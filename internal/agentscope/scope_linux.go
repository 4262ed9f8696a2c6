package agentscope

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// HoldEnv, set to "1" in the environment, makes the daemon's binary a
// holder: it waits for a signal and exits (see [Hold]).
const HoldEnv = "RESILIENCED_HOLD_SCOPE"

// ErrNotSystemd: the daemon does not run as a systemd service on a pure
// cgroup v2 host, so there is no scope to make.
var ErrNotSystemd = errors.New("agentscope: not a systemd service on pure cgroup v2")

// Scope is the agents' scope unit.
type Scope struct {
	Unit string // e.g. resilienced-agents.scope
	Dir  string // its cgroup directory, absolute
	// Created is true when this call made the scope, false when it was
	// already there (left by a previous instance of the daemon).
	Created bool
}

// UnitFor is the scope's name for a service: resilienced.service →
// resilienced-agents.scope.
func UnitFor(service string) string {
	return strings.TrimSuffix(service, ".service") + "-agents.scope"
}

// OwnService is the systemd service this process runs in, from
// /proc/self/cgroup on pure cgroup v2; "" otherwise.
func OwnService() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return serviceOf(string(b))
}

func serviceOf(procCgroup string) string {
	lines := strings.Split(strings.TrimSpace(procCgroup), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "0::") {
		return "" // hybrid or v1: the scope is for pure v2 only
	}
	parts := strings.Split(strings.TrimPrefix(lines[0], "0::"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if strings.HasSuffix(parts[i], ".service") {
			return parts[i]
		}
	}
	return ""
}

// connect opens systemd's private socket (root, no dbus-daemon needed),
// else the system bus.
func connect(ctx context.Context) (*sddbus.Conn, error) {
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err == nil {
		return c, nil
	}
	c, err2 := sddbus.NewSystemConnectionContext(ctx)
	if err2 != nil {
		return nil, fmt.Errorf("agentscope: systemd's bus: %w (private socket: %v)", err2, err)
	}
	return c, nil
}

// Ensure returns the agents' scope of service, creating it with a holder
// (the binary at exe, started with HoldEnv=1) when it is not active. mount
// is the cgroup2 mount point.
func Ensure(ctx context.Context, service, exe, mount string) (*Scope, error) {
	if service == "" || os.Getenv("INVOCATION_ID") == "" {
		return nil, ErrNotSystemd
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	s := &Scope{Unit: UnitFor(service)}
	if dir, ok := activeDir(ctx, c, s.Unit, mount); ok {
		s.Dir = dir
		return s, nil
	}
	hold := exec.Command(exe)
	hold.Env = append(os.Environ(), HoldEnv+"=1")
	hold.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := hold.Start(); err != nil {
		return nil, fmt.Errorf("agentscope: starting the holder %s: %w", exe, err)
	}
	pid := hold.Process.Pid
	go hold.Wait() // reaped if it ends while the daemon lives
	fail := func(err error) (*Scope, error) {
		hold.Process.Kill()
		return nil, err
	}
	done := make(chan string, 1)
	props := []sddbus.Property{
		sddbus.PropDescription("agents of " + service + " (they outlive its restarts)"),
		sddbus.PropSlice("system.slice"),
		sddbus.PropPids(uint32(pid)),
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		// The agents' own cgroups carry their limits; the scope has none.
		{Name: "TasksMax", Value: dbus.MakeVariant(uint64(^uint64(0)))},
	}
	if _, err := c.StartTransientUnitContext(ctx, s.Unit, "fail", props, done); err != nil {
		return fail(fmt.Errorf("agentscope: creating %s: %w", s.Unit, err))
	}
	select {
	case r := <-done:
		if r != "done" {
			return fail(fmt.Errorf("agentscope: creating %s: job %s", s.Unit, r))
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("agentscope: creating %s: %w", s.Unit, ctx.Err()))
	}
	dir, ok := activeDir(ctx, c, s.Unit, mount)
	if !ok {
		return fail(fmt.Errorf("agentscope: %s created but not active", s.Unit))
	}
	s.Dir, s.Created = dir, true
	return s, nil
}

// activeDir is the cgroup directory of unit when it is active.
func activeDir(ctx context.Context, c *sddbus.Conn, unit, mount string) (string, bool) {
	st, err := c.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil || strings.Trim(st.Value.String(), `"`) != "active" {
		return "", false
	}
	cg, err := c.GetUnitTypePropertyContext(ctx, unit, "Scope", "ControlGroup")
	if err != nil {
		return "", false
	}
	rel := strings.Trim(cg.Value.String(), `"`)
	if rel == "" {
		return "", false
	}
	dir := filepath.Join(mount, rel)
	if _, err := os.Stat(dir); err != nil {
		return "", false
	}
	return dir, true
}

// Stop stops the scope: systemd kills what is left in it (the holder)
// and removes its cgroup. For the daemon's final stop, once its agents
// are gone.
func Stop(ctx context.Context, unit string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, unit, "replace", done); err != nil {
		return fmt.Errorf("agentscope: stopping %s: %w", unit, err)
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("agentscope: stopping %s: job %s", unit, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agentscope: stopping %s: %w", unit, ctx.Err())
	}
}

// Hold is the holder's life: it waits for SIGTERM, SIGINT or SIGHUP (systemd
// stopping the scope) and returns. The daemon's main calls it first
// thing when HoldEnv is set.
func Hold() {
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	<-ch
}

// RestartPending reports whether systemd has a restart job for service:
// a SIGTERM then belongs to `systemctl restart` or a package upgrade's
// try-restart (collapsed to restart), not to a stop. systemd says nothing
// of this in the signal; its job list does (the job keeps the type
// restart while the unit stops).
func RestartPending(ctx context.Context, service string) (bool, error) {
	c, err := connect(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	jobs, err := c.ListJobsContext(ctx)
	if err != nil {
		return false, fmt.Errorf("agentscope: listing systemd's jobs: %w", err)
	}
	for _, j := range jobs {
		if j.Unit == service && (j.JobType == "restart" || j.JobType == "try-restart" || j.JobType == "reload-or-restart") {
			return true, nil
		}
	}
	return false, nil
}

// Kill kills every process of the scope (cgroup.kill on its cgroup, the
// frozen ones of isolated agents too, which a SIGTERM from systemd's stop
// would not reach before its timeout). The scope, empty, then ends.
func Kill(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("agentscope: %w", err)
	}
	return nil
}
