package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/resilienced/resilienced/internal/adopt"
	"github.com/resilienced/resilienced/internal/agentscope"
	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// Agents outlive the daemon (internal/adopt, issue #14). Under systemd
// every ready agent's files go into the service's fd store, and a
// SIGTERM that is part of a restart job (systemctl restart, the package's
// upgrade) leaves the agents to the next instance; a kill -9 leaves them
// too, since the store outlives the process. Without systemd, SIGUSR2 or
// POST /v1/upgrade (resilientctl upgrade) re-executes the binary from its
// path with the same arguments and hands it the files; the old instance
// exits once the new one serves.

// Names of the non-agent descriptors of a handover.
const (
	fdNameAPI   = "api"
	fdNameReady = "handover-ready"
)

// adoption is the daemon's side of internal/adopt.
type adoption struct {
	log    *slog.Logger
	keeper *adopt.Keeper
	store  *adopt.SystemdStore // nil outside systemd: no fd store
	agents []*adopt.Agent      // inherited, until the supervisor adopts them
	ln     net.Listener        // the API socket inherited, if any
	ready  *os.File            // the previous instance's ready pipe (handover)
	exe    string              // this binary's path, resolved at start
	// scope is the agents' systemd scope (internal/agentscope), "" when
	// they live in the daemon's own cgroup (no systemd, or no scope).
	scope, scopeDir string
}

// agentScope puts the agents in a systemd scope of their own, outside the
// service's cgroup, so that a restart of the service leaves them be. It
// returns the scope's cgroup directory, "" when there is none (not under
// systemd, or the scope could not be made: the agents then live in the
// service's cgroup and a restart replaces them).
func (ad *adoption) agentScope(ctx context.Context) string {
	svc := agentscope.OwnService()
	if svc == "" || ad.store == nil || ad.exe == "" {
		return ""
	}
	mount, err := cgroup.Mount2()
	if err != nil {
		return ""
	}
	s, err := agentscope.Ensure(ctx, svc, ad.exe, mount)
	if err != nil {
		ad.log.Warn("agents stay in the service's cgroup: a restart of the service replaces them", "err", err)
		return ""
	}
	ad.scope, ad.scopeDir = s.Unit, s.Dir
	ad.log.Info("agents live in a scope of their own", "scope", s.Unit, "cgroup", s.Dir, "created", s.Created)
	return s.Dir
}

// stopScope ends the agents' scope (its holder) when the daemon stops for
// good, its agents stopped.
func (ad *adoption) stopScope() {
	if ad.scope == "" {
		return
	}
	if err := agentscope.Kill(ad.scopeDir); err != nil {
		ad.log.Warn("killing what is left in the agents' scope", "scope", ad.scope, "err", err)
	}
	if err := agentscope.Stop(context.Background(), ad.scope); err != nil {
		ad.log.Warn("stopping the agents' scope", "scope", ad.scope, "err", err)
	}
}

// inherit takes the descriptors a previous instance left (the fd store,
// or a handover) and opens the fd store.
func inherit(log *slog.Logger) *adoption {
	ad := &adoption{log: log}
	if exe, err := os.Executable(); err == nil {
		ad.exe = strings.TrimSuffix(exe, " (deleted)")
	}
	named, err := adopt.Inherited()
	if err != nil {
		log.Warn("inherited descriptors", "err", err)
	}
	agents, others := adopt.Collect(named)
	ad.agents = agents
	for _, n := range others {
		if n.Name == fdNameReady {
			ad.ready = n.File
			continue
		}
		if ad.ln == nil {
			if ln, err := net.FileListener(n.File); err == nil {
				if ul, ok := ln.(*net.UnixListener); ok && n.Name == fdNameAPI {
					ul.SetUnlinkOnClose(true) // ours, as it was the previous instance's
				}
				ad.ln = ln
				n.File.Close() // FileListener made its own
				continue
			}
		}
		log.Warn("an inherited descriptor is neither an agent's nor the API socket: closed", "name", n.Name)
		n.File.Close()
	}
	if store, err := adopt.NewSystemdStore(); err == nil {
		ad.store = store
		ad.keeper = adopt.NewKeeper(store, log)
	} else {
		ad.keeper = adopt.NewKeeper(nil, log)
	}
	return ad
}

// claimCgroups checks the inherited agents and takes over the cgroups of
// those that may be adopted, so that the reaping of the previous
// instance's leftovers spares them. It returns the cgroups of the
// isolated ones (their isolation pins stay).
func (ad *adoption) claimCgroups(cg *cgroup.Manager) map[string]string {
	isolated := map[string]string{}
	for _, a := range ad.agents {
		if err := adopt.Check(a); err != nil {
			continue // refused, with its reason, by the supervisor
		}
		if a.Record.Cgroup == "" || cg.Mode() == cgroup.ModeNone {
			continue
		}
		c, err := cg.Adopt(a.Record.Pool, a.Record.ID)
		if err != nil {
			continue
		}
		if supervisor.AgentState(a.Record.State) == supervisor.AgentIsolated {
			isolated[a.Record.ID] = c.Path()
		}
	}
	return isolated
}

// adoptAgents hands the inherited agents to the supervisor, before the
// first Apply.
func (d *daemon) adoptAgents(ctx context.Context) {
	ad := d.adopt
	if len(ad.agents) == 0 {
		return
	}
	start := time.Now()
	out := d.sup.Adopt(ctx, d.cfg.Load(), ad.agents)
	ad.agents = nil
	n := 0
	for _, o := range out {
		if o.Adopted {
			n++
		}
	}
	d.log.Info("adopted agents left by the previous instance", "adopted", n, "refused", len(out)-n, "took", time.Since(start).Round(time.Millisecond))
}

// serving tells the previous instance of a handover that this one serves.
func (ad *adoption) serving() {
	if ad.ready == nil {
		return
	}
	ad.ready.Write([]byte{1})
	ad.ready.Close()
	ad.ready = nil
}

// restartQueued reports whether systemd has a restart job for the
// daemon's unit: the SIGTERM is then a restart (systemctl restart, the
// package's upgrade), and the agents are left to the next instance.
// systemd says nothing of this in the signal; its job list does.
func (ad *adoption) restartQueued() bool {
	// The agents outlive the daemon only outside its unit's cgroup, which
	// systemd empties on a restart (KillMode=mixed).
	if ad.store == nil || ad.scope == "" {
		return false
	}
	// Well within TimeoutStopSec: a loaded host answers slowly.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ok, err := agentscope.RestartPending(ctx, agentscope.OwnService())
	if err != nil {
		ad.log.Warn("asking systemd whether this stop is a restart; stopping the agents", "err", err)
		return false
	}
	return ok
}

// errUpgradeUnderSystemd: under systemd the service manager restarts the
// daemon, keeping the agents through its fd store.
var errUpgradeUnderSystemd = errors.New("the daemon runs under systemd: `systemctl restart resilienced` (or installing the new package) restarts it and keeps the agents")

// upgradeRoute serves POST /v1/upgrade: it answers, then the main loop
// hands over to a new instance of the binary on disk.
func (d *daemon) upgradeRoute() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := d.canUpgrade(); err != nil {
			api.WriteError(w, &api.Error{Status: http.StatusConflict, Code: api.CodeBadRequest, Message: err.Error()})
			return
		}
		select {
		case d.upgradeReq <- struct{}{}:
		default:
		}
		api.WriteJSON(w, http.StatusAccepted, api.UpgradeResult{PID: os.Getpid(), Executable: d.adopt.exe})
	}
}

func (d *daemon) canUpgrade() error {
	if d.adopt.store != nil {
		return errUpgradeUnderSystemd
	}
	if d.adopt.exe == "" {
		return errors.New("the daemon's executable path is unknown")
	}
	if fi, err := os.Stat(d.adopt.exe); err != nil {
		return fmt.Errorf("the daemon's executable: %w", err)
	} else if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("the daemon's executable %s is not executable", d.adopt.exe)
	}
	return nil
}

// upgrade hands the agents to a new instance of the binary on disk,
// started with the same arguments, and returns once it serves (or
// failed). The caller then exits. Plain ExtraFiles and an environment
// variable, as systemd's LISTEN_FDS, rather than cloudflare/tableflip:
// tableflip hands over listeners and runs both instances side by side,
// but an agent's pipes can have one reader only, so the old instance
// stops first and only the fds and a ready pipe are needed.
func (d *daemon) upgrade() (stopped bool, err error) {
	if err := d.canUpgrade(); err != nil {
		return false, err
	}
	// The API socket stays open (and its path in place) across the
	// handover: callers queue in its backlog.
	var apiFile *os.File
	if ul, ok := d.sock.Listener.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
		f, err := ul.File()
		if err != nil {
			return false, fmt.Errorf("the API socket: %w", err)
		}
		apiFile = f
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return false, err
	}
	defer readyR.Close()
	d.stop(true)

	named := d.adopt.keeper.Handover()
	if apiFile != nil {
		named = append(named, adopt.Named{Name: fdNameAPI, File: apiFile})
	}
	named = append(named, adopt.Named{Name: fdNameReady, File: readyW})
	cmd := exec.Command(d.adopt.exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), adopt.HandoverEnv(named))
	for _, n := range named {
		cmd.ExtraFiles = append(cmd.ExtraFiles, n.File)
	}
	start := time.Now()
	err = cmd.Start()
	readyW.Close()
	if apiFile != nil {
		apiFile.Close()
	}
	if err != nil {
		d.adopt.keeper.Close()
		return true, fmt.Errorf("starting %s: %w", d.adopt.exe, err)
	}
	d.log.Info("handed over to a new instance", "pid", cmd.Process.Pid, "exe", d.adopt.exe, "agents", d.adopt.keeper.Len())
	served := make(chan bool, 1)
	go func() {
		b := make([]byte, 1)
		n, _ := readyR.Read(b)
		served <- n == 1
	}()
	ok := false
	select {
	case ok = <-served:
	case <-time.After(5 * time.Minute):
	}
	d.adopt.keeper.Close()
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if !ok {
		return true, fmt.Errorf("the new instance (pid %d) did not report serving: the agents go with it", pid)
	}
	d.log.Info("the new instance serves; exiting", "pid", pid, "took", time.Since(start).Round(time.Millisecond))
	return true, nil
}

// listenInherited is listen with the API socket a previous instance (or
// systemd) handed over, if any.
func (d *daemon) listenInherited(path string) (*api.Socket, error) {
	if ln := d.adopt.ln; ln != nil {
		d.adopt.ln = nil
		return api.FromListener(ln), nil
	}
	return api.Listen(path)
}

// runUpgrade upgrades. done says whether this instance has stopped, with
// its exit status; if not, it goes on serving.
func (d *daemon) runUpgrade() (status int, done bool) {
	stopped, err := d.upgrade()
	if err != nil {
		d.log.Error("upgrade", "err", err)
		if !stopped {
			return 0, false
		}
		return 1, true
	}
	return 0, true
}
