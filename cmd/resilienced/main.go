// Command resilienced is the node daemon: it supervises pools of agent
// processes, checks every output against its contract, and replaces an
// agent that fails before the caller notices.
//
//	resilienced --config /etc/resilienced/resilienced.yaml [--socket PATH] [--state-dir DIR]
//
// It exits 2 with every config error on a bad config. SIGTERM stops it
// gracefully (drain, stop agents, remove cgroups); SIGHUP reloads the
// config (new pools start, removed ones stop, changed ones roll agent by
// agent). SIGUSR2 (or resilientctl upgrade) hands the agents over to the
// binary on disk, started again; under systemd a SIGTERM of a restart
// leaves them to the next instance (see adopt.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/agentscope"
	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/tracectx"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if os.Getenv(agentscope.HoldEnv) == "1" {
		agentscope.Hold() // the agents' scope's holder (internal/agentscope)
		return
	}
	os.Exit(run())
}

func run() int {
	var (
		configPath = flag.String("config", "", "config file (YAML)")
		socket     = flag.String("socket", "", "API socket path (overrides the config's socket:)")
		stateDir   = flag.String("state-dir", "", "state directory (overrides the config's state_dir:)")
		logLevel   = flag.String("log-level", "info", "debug | info | warn | error")
		logFormat  = flag.String("log-format", "auto", "text | json | journal | auto (journal under systemd)")
		showVer    = flag.Bool("version", false, "print the version and exit")
		check      = flag.Bool("check", false, "check the config and exit (0 valid, 2 invalid)")
		useArbiter = flag.Bool("arbiter", true, "predict failures and replace agents before they fail")
		holdout    = flag.Float64("arbiter-holdout", -1, "share of agents predicted to fail that the Arbiter leaves alone, so that its precision can be measured; 1: it predicts and journals but never acts; -1: adaptive, one in two until the held-out predictions give a confident precision, then one in twenty")
		cgroupName = flag.String("cgroup-name", "", "name of the cgroup subtree for agents when not delegated by systemd, and of the Kill Switch's bpffs pin directory (default resilienced); lets two daemons share a host")
		pprofAddr  = flag.String("pprof", "", "serve Go's profiles (net/http/pprof) on this loopback host:port, for diagnosing the daemon itself")
		procs      = flag.Int("procs", 0, "CPUs the daemon's own threads run on (0: GOMAXPROCS when set, else every CPU allowed); 1 serves more sessionless calls on a 2-CPU node, fewer durable session calls")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: resilienced --config FILE [--socket PATH] [--state-dir DIR]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVer {
		fmt.Println("resilienced", version)
		return 0
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "resilienced: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		return 2
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resilienced:", err)
		return 2
	}
	slog.SetDefault(log)
	if err := agent.StartSpawners(); err != nil {
		// Agents still start, each copying the daemon's whole
		// descriptor table and closing it at exec.
		log.Warn("agents start without spawner threads", "err", err)
	}

	cfg := config.Default()
	if *configPath != "" {
		load := config.Load
		if *check {
			load = config.Check // also against this host: dirs, users, commands
		}
		cfg, err = load(*configPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "resilienced: invalid config:\n%v\n", err)
			return 2
		}
	}
	if (*holdout < 0 && *holdout != -1) || *holdout > 1 {
		fmt.Fprintf(os.Stderr, "resilienced: --arbiter-holdout: %g is not a share between 0 and 1 (or -1, adaptive)\n", *holdout)
		return 2
	}
	if *procs < 0 {
		fmt.Fprintf(os.Stderr, "resilienced: --procs: %d is negative; 0 means the runtime's choice\n", *procs)
		return 2
	}
	if *check {
		fmt.Printf("%s: valid (%d pools, %d groups)\n", *configPath, len(cfg.Pools), len(cfg.Groups))
		return 0
	}
	if *socket != "" {
		cfg.Socket = *socket
	}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocketPath()
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	if cfg.StateDir == "" {
		cfg.StateDir = defaultStateDir()
	}

	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			fmt.Fprintln(os.Stderr, "resilienced: --pprof:", err)
			return 2
		}
	}

	nprocs, why, err := setProcs(*procs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resilienced:", err)
		return 2
	}
	log.Info("daemon threads", "cpus", nprocs, "by", why, "host_cpus", runtime.NumCPU())
	gcPercent, gcBy := tuneGC()
	log.Info("daemon GC", "gogc", gcPercent, "by", gcBy)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)

	d, err := start(ctx, log, cfg, *configPath, startOptions{arbiter: *useArbiter, holdout: *holdout, cgroupName: *cgroupName})
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintln(os.Stderr, "resilienced:", err)
		return 1
	}
	for {
		select {
		case <-ctx.Done():
			if d.adopt.restartQueued() {
				log.Info("restarting: the agents are left to the next instance")
				d.stop(true)
				d.adopt.keeper.Close()
				log.Info("stopped; agents left running")
				return 0
			}
			log.Info("stopping")
			d.shutdown()
			log.Info("stopped")
			return 0
		case <-usr2:
			if err := d.canUpgrade(); err != nil {
				log.Error("upgrade refused", "err", err)
				continue
			}
			if status, done := d.runUpgrade(); done {
				return status
			}
		case <-d.upgradeReq:
			if status, done := d.runUpgrade(); done {
				return status
			}
		case <-hup:
			d.reload(*configPath) // errors are logged, evented and in status
		case err := <-d.fatal:
			log.Error("fatal", "err", err)
			d.shutdown()
			return 1
		}
	}
}

func defaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/resilienced"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "resilienced")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "resilienced")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("resilienced-%d-state", os.Getuid()))
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	if format == "auto" {
		format = "text"
		if os.Getenv("JOURNAL_STREAM") != "" {
			format = "journal"
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	// Every handler adds the trace context a call carries (an MCP
	// client's traceparent) to the lines logged with its context.
	switch format {
	case "text":
		return slog.New(tracectx.NewHandler(slog.NewTextHandler(os.Stderr, opts))), nil
	case "json":
		return slog.New(tracectx.NewHandler(slog.NewJSONHandler(os.Stderr, opts))), nil
	case "journal":
		return slog.New(tracectx.NewHandler(newJournalHandler(os.Stderr, opts))), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not one of text, json, journal, auto", format)
}
