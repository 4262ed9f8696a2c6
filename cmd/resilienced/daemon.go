package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/chaos"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/idblock"
	"github.com/resilienced/resilienced/internal/jsonl"
	"github.com/resilienced/resilienced/internal/mcp"
	"github.com/resilienced/resilienced/internal/metrics"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// The daemon's binary doubles as the chaos engine's memory helper (leak and
// oom faults re-execute it in an agent's cgroups with chaos.HelperArg).
func init() { chaos.MaybeRunHelper() }

// daemon is the wiring of one running resilienced.
type daemon struct {
	log *slog.Logger
	fds fdBudget // the agents the open-file limit allows
	// The running config's generation and reload outcome, for status.
	reloadMu sync.Mutex // one reload at a time
	confMu   sync.Mutex
	conf     api.ConfigStatus
	name     string // its cgroup subtree's and bpffs pins' directory name
	cfg      atomic.Pointer[config.Config]
	cg       *cgroup.Manager
	store    *session.Store
	eventLog *jsonl.Journal[supervisor.Event]
	sup      *supervisor.Supervisor
	server   *api.Server
	sock     *api.Socket
	fatal    chan error

	metrics  *metrics.Metrics
	ks       *killSwitch
	tel      *telemetryWiring
	arb      atomic.Pointer[arbiterWiring]
	chaos    *chaos.Engine
	mode     api.Mode
	events   chan supervisor.Event
	bg       sync.WaitGroup
	stopBG   chan struct{}
	lastFail atomic.Pointer[supervisor.Event]
	mcp      *mcp.Server // the MCP front door (mcpfront.go); nil when off
	// closeLocalMCP ends the unix socket front door's streams.
	closeLocalMCP context.CancelFunc
	adopt         *adoption      // agents outliving the daemon (adopt.go)
	upgradeReq    chan struct{}  // POST /v1/upgrade asks the main loop
	cluster       *clusterWiring // cluster mode (cluster.go); nil on a single node
}

// startOptions are the daemon's command-line choices beyond the config.
type startOptions struct {
	arbiter    bool
	holdout    float64 // share of risky agents the Arbiter leaves alone; 1: it only watches; -1: adaptive
	cgroupName string
}

func start(ctx context.Context, log *slog.Logger, cfg *config.Config, configPath string, so startOptions) (*daemon, error) {
	d := &daemon{log: log, fatal: make(chan error, 1), events: make(chan supervisor.Event, 4096), stopBG: make(chan struct{}), upgradeReq: make(chan struct{}, 1)}
	d.fds = raiseFDLimit(log)
	if err := d.fds.check(cfg); err != nil {
		return nil, err
	}
	d.cfg.Store(cfg)
	d.adopt = inherit(log)

	// cgroups: the daemon's own subtree; agents of a previous instance
	// that died are reaped before anything starts.
	cg, err := cgroup.Open(cgroup.Options{Logger: log, Name: so.cgroupName, Root: d.adopt.agentScope(ctx)})
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	d.cg = cg
	d.name = cmp.Or(so.cgroupName, "resilienced")
	d.mode.Cgroup = string(cg.Mode())
	d.mode.Notes = append(d.mode.Notes, cg.Notes()...)
	// Agents a previous instance kept isolated (frozen) are not reaped.
	kept := d.adoptKept(cfg.StateDir)
	isolated := d.adopt.claimCgroups(cg)
	if n, err := cg.Reap(ctx); err != nil {
		log.Warn("reaping agents of a previous instance", "err", err)
	} else if n > 0 {
		log.Info("reaped agents left by a previous instance", "count", n)
	}
	d.tel = d.startTelemetry(ctx)

	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	store, err := session.Open(ctx, session.Options{Path: filepath.Join(cfg.StateDir, "state.db"), Logger: log})
	if err != nil {
		return nil, err
	}
	d.store = store
	// The event journal is a jsonl file, not in bbolt: a history filling
	// the mmap'd state file grew the daemon's RSS with it.
	d.eventLog, err = jsonl.Open[supervisor.Event](filepath.Join(cfg.StateDir, "events"), jsonl.Options{
		Name: "event journal", SegmentBytes: eventSegmentBytes, Segments: eventSegments, FlushEvery: -1, Logger: log})
	if err != nil {
		store.Close()
		return nil, err
	}

	keptCg := keptCgroups(cg, kept)
	for id, path := range isolated {
		keptCg[id] = path
	}
	d.ks = d.startKillSwitch(ctx, cfg, keptCg)
	d.metrics = metrics.New(metricsSource{d})
	ids, err := idblock.Open(filepath.Join(cfg.StateDir, "agent-ids"), 0, log)
	if err != nil {
		return nil, fmt.Errorf("agent ids: %w", err)
	}
	opts := supervisor.Options{
		Logger:       log,
		Store:        store,
		OnEvent:      d.onEvent,
		OnCall:       d.metrics.Call,
		AgentNumbers: ids,
		Keeper:       d.adopt.keeper,
	}
	if cfg.Cluster.Enabled() {
		if d.cluster, err = d.joinCluster(ctx, cfg); err != nil {
			store.Close()
			return nil, err
		}
		opts.Store = d.cluster.store
	}
	if cg.Mode() != cgroup.ModeNone {
		opts.Sandboxes = supervisor.CgroupSandboxes(cg)
	}
	d.ks.supervisorOptions(&opts)
	policyHook, goneHook := opts.OnSandbox, opts.OnAgentGone
	opts.OnSandbox = func(pc config.Pool, id string, sb supervisor.Sandbox) error {
		d.tel.onSandbox(id, sb) // telemetry is an aid: never fails a spawn
		if policyHook != nil {
			return policyHook(pc, id, sb)
		}
		return nil
	}
	opts.OnAgentGone = func(id string, sb supervisor.Sandbox) {
		d.tel.onAgentGone(id, sb)
		if goneHook != nil {
			goneHook(id, sb)
		}
	}
	for _, n := range d.mode.Notes {
		log.Warn("feature off", "note", n)
	}
	opts.OnStderr = func(agentID, line string) {
		if a := d.arb.Load(); a != nil {
			a.onStderr(agentID, line)
		}
	}
	d.sup = supervisor.New(opts)
	if d.cluster != nil {
		if err := d.cluster.startMesh(d, d.sup); err != nil {
			d.cluster.close(ctx)
			store.Close()
			return nil, err
		}
		d.followIsolation()
	}
	go d.tel.sample()
	if so.arbiter {
		d.arb.Store(d.startArbiter(ctx, so.holdout))
	} else {
		d.mode.Notes = append(d.mode.Notes, "arbiter off (--arbiter=false): no predictive replacement")
	}

	// The socket: from systemd when socket-activated, else our own.
	d.sock, err = d.listenInherited(cfg.Socket)
	if err != nil {
		store.Close()
		return nil, err
	}
	var sessions api.Sessions = store
	if d.cluster != nil {
		sessions = clusterSessions{d.cluster.store}
	}
	d.server = api.NewServer(api.Options{
		Supervisor: d.sup,
		Caller:     d.caller(),
		Sessions:   sessions,
		Version:    version,
		Mode:       func() api.Mode { return d.mode },
		Config:     d.configStatus,
		Logger:     log,
		Journal:    eventJournal{d.eventLog},
	})
	d.conf = api.ConfigStatus{Path: configPath, Generation: 1, LoadedAt: time.Now()}
	d.server.Handle("POST /v1/reload", d.reloadRoute(configPath))
	d.server.Handle("POST /v1/upgrade", d.upgradeRoute())
	d.ks.routes(d.server)
	d.tel.routes(d.server)
	d.callsRoute(d.server)
	d.clusterRoutes(d.server)
	if d.cluster != nil && d.cluster.mesh != nil {
		d.cluster.mesh.SetViews(d.server.Views())
	}
	if a := d.arb.Load(); a != nil {
		a.routes(d.server)
	}
	// Chaos experiments run inside the daemon (resilientctl chaos); sever
	// needs the Kill Switch's agent isolation.
	co := chaos.Options{Supervisor: d.sup, Logger: log, IsolatorErr: errors.New("agent isolation is off in this daemon"), Arbiter: so.arbiter}
	for _, n := range d.mode.Notes {
		if strings.HasPrefix(n, "kill switch:") {
			co.IsolatorErr = errors.New(n)
		}
	}
	if d.ks.sw != nil {
		co.Isolator, co.IsolatorErr = d.ks.sw, nil
	}
	d.chaos = chaos.New(co)
	d.chaos.Register(d.server)
	d.serveLocalMCP()

	if err := d.startMCP(cfg); err != nil {
		d.server.Shutdown(ctx)
		d.cluster.close(ctx)
		store.Close()
		return nil, err
	}

	d.bg.Add(2)
	go d.journal()
	go d.expire()
	if cfg.MetricsAddr != "" {
		mctx, cancel := context.WithCancel(context.Background())
		go func() { <-d.stopBG; cancel() }()
		go func() {
			if err := d.metrics.Serve(mctx, cfg.MetricsAddr, log); err != nil {
				log.Error("metrics server", "addr", cfg.MetricsAddr, "err", err)
			}
		}()
	}

	d.adoptAgents(ctx)
	if err := d.sup.Apply(ctx, cfg); err != nil {
		log.Error("some pools did not start", "err", err)
	}
	d.restoreKept(cfg.StateDir, kept)
	// Served once the pools exist (Apply does not wait for their agents):
	// a call that waited in the socket's backlog through a restart finds
	// its pool, and its adopted agents, rather than "unknown pool".
	go func() {
		if err := d.server.Serve(d.sock); err != nil {
			d.fatal <- fmt.Errorf("api: %w", err)
		}
	}()
	log.Info("resilienced started", "version", version, "socket", d.sock.Path, "state_dir", cfg.StateDir, "cgroup", d.mode.Cgroup, "pools", len(cfg.Pools))

	go d.notifyReady(ctx)
	return d, nil
}

// metricsSource lets the metrics read the supervisor, which is created
// after them.
type metricsSource struct{ d *daemon }

func (m metricsSource) Status() []supervisor.PoolStatus { return m.d.sup.Status() }
func (m metricsSource) Agents(pool string) ([]supervisor.AgentStatus, error) {
	return m.d.sup.Agents(pool)
}

// notifyReady tells systemd READY=1 once every pool has its agents (or
// after the longest start timeout, degraded), then keeps STATUS current
// and pets the watchdog while the supervisor answers.
func (d *daemon) notifyReady(ctx context.Context) {
	timeout := 30 * time.Second
	for _, p := range d.cfg.Load().Pools {
		if p.StartTimeout > timeout {
			timeout = p.StartTimeout
		}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	if err := d.sup.WaitReady(wctx); err != nil {
		d.log.Warn("not every pool is ready", "err", err)
	}
	cancel()
	d.adopt.serving()
	sddaemon.SdNotify(false, sddaemon.SdNotifyReady+"\nSTATUS="+d.statusLine())
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return // not under systemd: nobody reads STATUS or a watchdog
	}
	interval, err := sddaemon.SdWatchdogEnabled(false)
	tick := 2 * time.Second
	if err == nil && interval > 0 {
		tick = interval / 3
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.stopBG:
			return
		case <-t.C:
		}
		// The watchdog is fed only if the supervisor's own state answers
		// promptly: a wedged supervisor stops the petting.
		ok := make(chan string, 1)
		go func() { ok <- d.statusLine() }()
		select {
		case line := <-ok:
			msg := "STATUS=" + line
			if interval > 0 {
				msg = sddaemon.SdNotifyWatchdog + "\n" + msg
			}
			sddaemon.SdNotify(false, msg)
		case <-time.After(tick):
			d.log.Error("supervisor did not answer a health check; withholding the watchdog")
		}
	}
}

// statusLine is the one-line summary systemctl status shows.
func (d *daemon) statusLine() string {
	var parts []string
	agents := 0
	for _, p := range d.sup.Status() {
		agents += p.Active + p.Spares
		parts = append(parts, fmt.Sprintf("%s %d/%d+%d %s", p.Name, p.Active, p.Replicas, p.Spares, p.State))
	}
	s := fmt.Sprintf("%d pools, %d agents", len(parts), agents)
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	if ev := d.lastFail.Load(); ev != nil {
		s += fmt.Sprintf("; last failure %s %s %s ago", ev.Agent, ev.Kind, time.Since(ev.Time).Round(time.Second))
	}
	return s
}

// onEvent is the supervisor's event hook: never blocks.
func (d *daemon) onEvent(ev supervisor.Event) {
	d.metrics.Event(ev)
	switch ev.Kind {
	case supervisor.EventExit, supervisor.EventViolation, supervisor.EventDeadline, supervisor.EventHang, supervisor.EventOOM:
		e := ev
		d.lastFail.Store(&e)
		d.log.Warn("agent failed", "agent", ev.Agent, "pool", ev.Pool, "kind", ev.Kind, "reason", ev.Reason)
	case supervisor.EventPoolFailed, supervisor.EventEscalate, supervisor.EventPrediction, supervisor.EventIsolate, supervisor.EventBreaker:
		d.log.Warn(string(ev.Kind), "agent", ev.Agent, "pool", ev.Pool, "reason", ev.Reason)
	case supervisor.EventRecovered:
		d.log.Info("recovered", "agent", ev.Agent, "pool", ev.Pool, "cause", ev.Cause, "detect_ms", *ev.DetectMS, "recover_ms", *ev.RecoverMS)
	}
	select {
	case d.events <- ev:
	default:
		// The journal is behind; the in-memory ring still has the event.
	}
}

// journalFlushDelay bounds how long an event waits to be journaled.
const journalFlushDelay = 100 * time.Millisecond

// journal writes events to the event journal in batches.
func (d *daemon) journal() {
	defer d.bg.Done()
	batch := make([]supervisor.Event, 0, 256)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := d.eventLog.Append(context.Background(), batch...); err != nil {
			d.log.Warn("journaling events", "err", err, "count", len(batch))
		}
		clear(batch) // no strings kept alive past their time
		batch = batch[:0]
	}
	// The flush timer runs only while a batch waits: an idle node's
	// journal wakes nobody (a 10 Hz ticker was a tenth of its wake-ups).
	t := time.NewTimer(journalFlushDelay)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case ev := <-d.events:
			if len(batch) == 0 {
				t.Reset(journalFlushDelay)
			}
			batch = append(batch, ev)
			if len(batch) == cap(batch) {
				t.Stop()
				flush()
			}
		case <-t.C:
			flush()
		case <-d.stopBG:
			for {
				select {
				case ev := <-d.events:
					batch = append(batch, ev)
				default:
					flush()
					return
				}
			}
		}
	}
}

// expire removes idle sessions now and then.
func (d *daemon) expire() {
	defer d.bg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if n, err := d.store.Expire(ctx); err != nil {
				d.log.Warn("expiring sessions", "err", err)
			} else if n > 0 {
				d.log.Info("expired idle sessions", "count", n)
			}
			cancel()
		case <-d.stopBG:
			return
		}
	}
}

// reload applies the config file again (SIGHUP, POST /v1/reload). An
// invalid file is refused whole, the running config kept, and the refusal
// is an event, a metric (events_total{kind="reload_failed"}) and the
// status's last_reload_error.
func (d *daemon) reload(path string) (api.ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if path == "" {
		d.log.Warn("reload ignored: started without --config")
		return api.ReloadResult{}, errors.New("the daemon was started without --config: there is no file to reload")
	}
	sddaemon.SdNotify(false, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	cfg, err := config.Load(path)
	if err == nil {
		err = d.fds.check(cfg)
	}
	if err != nil {
		d.log.Error("reload refused: invalid config; keeping the running one", "err", err)
		d.setReloadError(err.Error())
		d.sup.Emit(supervisor.Event{Kind: supervisor.EventReloadFailed, Reason: err.Error()})
		return api.ReloadResult{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidConfig, Message: err.Error()}
	}
	old := d.cfg.Load()
	cfg.Socket, cfg.StateDir = old.Socket, old.StateDir // these need a restart
	if cfg.MCP != old.MCP {
		d.log.Warn("reload: the mcp front door's settings change at the next restart")
		cfg.MCP = old.MCP
	}
	res := api.ReloadResult{Added: []string{}, Removed: []string{}, Changed: []string{}}
	for _, p := range cfg.Pools {
		if was := old.Pool(p.Name); was == nil {
			res.Added = append(res.Added, p.Name)
		} else if !was.Equal(p) {
			res.Changed = append(res.Changed, p.Name)
		}
	}
	for _, p := range old.Pools {
		if cfg.Pool(p.Name) == nil {
			res.Removed = append(res.Removed, p.Name)
		}
	}
	applyErr := d.sup.Apply(context.Background(), cfg)
	if applyErr != nil {
		d.log.Error("reload: some pools did not start", "err", applyErr)
	}
	d.cfg.Store(cfg)
	d.confMu.Lock()
	d.conf.Generation++
	d.conf.LoadedAt = time.Now()
	d.conf.LastReloadError = ""
	if applyErr != nil {
		d.conf.LastReloadError = applyErr.Error()
	}
	res.ConfigStatus = d.conf
	d.confMu.Unlock()
	d.log.Info("reloaded", "pools", len(cfg.Pools), "generation", res.Generation, "added", res.Added, "removed", res.Removed, "changed", res.Changed)
	return res, nil
}

func (d *daemon) setReloadError(msg string) {
	d.confMu.Lock()
	d.conf.LastReloadError = msg
	d.confMu.Unlock()
}

func (d *daemon) configStatus() api.ConfigStatus {
	d.confMu.Lock()
	defer d.confMu.Unlock()
	return d.conf
}

// reloadRoute serves POST /v1/reload.
func (d *daemon) reloadRoute(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := d.reload(path)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) {
				e = &api.Error{Status: http.StatusConflict, Code: api.CodeBadRequest, Message: err.Error()}
			}
			api.WriteError(w, e)
			return
		}
		api.WriteJSON(w, http.StatusOK, res)
	}
}

func (d *daemon) shutdown() {
	d.stop(false)
	d.adopt.keeper.Close()
	d.adopt.stopScope()
}

// stop stops the daemon; with handover its agents are left running, for
// a next instance to adopt (adopt.go), and the caller closes the Keeper.
func (d *daemon) stop(handover bool) {
	sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.chaos.Close() // undoes the faults of a running experiment, which then reports
	d.stopMCP(ctx)  // first: its streams would hold the API's shutdown
	d.server.Shutdown(ctx)
	d.cluster.close(ctx) // before the agents stop: the sessions move now
	if handover {
		left := d.sup.Handover(ctx)
		d.log.Info("agents left running for the next instance", "count", len(left))
	} else {
		d.sup.Stop(ctx)
		d.saveKept(d.cfg.Load().StateDir, d.sup.KeptAgents())
	}
	close(d.stopBG)
	d.bg.Wait()
	d.ks.close()
	d.tel.close()
	if a := d.arb.Load(); a != nil {
		a.close()
	}
	if err := d.eventLog.Close(); err != nil {
		d.log.Error("closing the event journal", "err", err)
	}
	if err := d.store.Close(); err != nil {
		d.log.Error("closing state", "err", err)
	}
	if err := d.cg.Close(); err != nil {
		d.log.Error("removing cgroups", "err", err)
	}
}
