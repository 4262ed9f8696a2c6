package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/resilienced/resilienced/internal/chaos"
)

func init() { extraCommands = append(extraCommands, chaosCmd) }

func chaosCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "chaos",
		Short: "Inject faults into running agents, measure recovery, gate deployments on it",
		Long: "Inject faults into the agents of the running daemon and measure how fast the pool recovers:\n" +
			"detect_ms (injection → the supervisor acted) and recover_ms (injection → the pool back at full\n" +
			"strength and a call served), with p50, p99 and max per fault kind. `chaos gate` fails (exit 1)\n" +
			"when a kind's p99 recovery exceeds the bound or any call failed.",
		Args: args(cobra.NoArgs),
	}
	c.AddCommand(chaosRunCmd(g, false), chaosRunCmd(g, true), chaosStopCmd(g), chaosStatusCmd(g), chaosKindsCmd(g))
	return c
}

// chaosFlags are the experiment's command-line options.
type chaosFlags struct {
	faults, target                   string
	share                            float64
	count                            int
	rate                             string
	duration                         time.Duration
	maxConcurrent                    int
	seed                             uint64
	load                             string
	warmup, latency, jitter, timeout time.Duration
	halRate                          float64
	halKind                          string
	leakRate                         string
	abortAfter                       int
	reportHTML                       string
	quiet                            bool
	p99                              time.Duration
}

func (f *chaosFlags) add(c *cobra.Command, gate bool) {
	fl := c.Flags()
	fl.StringVar(&f.faults, "fault", "", "fault kinds, comma-separated, or all: "+kindNames())
	fl.StringVar(&f.target, "target", "", "a pool, or one agent")
	fl.Float64Var(&f.share, "share", 0, "fault this share of the pool's active agents at once, in (0, 1]")
	fl.IntVar(&f.count, "count", 0, "faults of each kind (default 5, or 1 for an agent)")
	fl.StringVar(&f.rate, "rate", "", "rounds per second, e.g. 2/s or 30/m (default: one after another)")
	fl.DurationVar(&f.duration, "duration", 0, "end the schedule after this long")
	fl.IntVar(&f.maxConcurrent, "max-concurrent", 0, "blast radius: at most N agents faulted at once (default 1)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the experiment's choices, to replay it (default: random, reported)")
	fl.StringVar(&f.load, "load", "", "calls per second the daemon makes on the pool during the experiment (default 100/s; 0 for none)")
	fl.DurationVar(&f.warmup, "warmup", 0, "load before the first fault, to measure normal latency (default 1s)")
	fl.DurationVar(&f.latency, "latency", 0, "latency fault: delay of each reply (default 250ms)")
	fl.DurationVar(&f.jitter, "jitter", 0, "latency fault: ± jitter of the delay (default 50ms)")
	fl.Float64Var(&f.halRate, "hallucinate-rate", 0, "hallucinate fault: share of outputs replaced (default 1)")
	fl.StringVar(&f.halKind, "hallucinate-kind", "", "hallucinate fault: schema, invalid_json or oversize (default: a mix)")
	fl.StringVar(&f.leakRate, "leak-rate", "", "leak fault: growth per second (default 32MiB/s)")
	fl.DurationVar(&f.timeout, "timeout", 0, "a fault not recovered after this long counts as not recovered and is undone (default 5s)")
	fl.IntVar(&f.abortAfter, "abort-after-failures", 0, "abort once more than N calls failed (default 20; -1: never)")
	fl.StringVar(&f.reportHTML, "report-html", "", "write a self-contained HTML report to FILE")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "do not print progress")
	if gate {
		fl.DurationVar(&f.p99, "p99", chaos.DefaultGate, "fail when a fault kind's p99 recovery exceeds this")
	}
}

func kindNames() string {
	s := make([]string, len(chaos.Kinds))
	for i, k := range chaos.Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// spec builds the experiment from an optional YAML file and the flags;
// flags given on the command line win over the file.
func (f *chaosFlags) spec(c *cobra.Command, file string) (chaos.Spec, error) {
	var s chaos.Spec
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return s, usageError{err}
		}
		s, err = chaos.ParseSpec(file, b)
		if err != nil {
			return s, usageError{err}
		}
	}
	set := func(name string) bool { return c.Flags().Changed(name) }
	if set("fault") {
		ks, err := chaos.ParseKinds(f.faults)
		if err != nil {
			return s, usageError{err}
		}
		s.Faults = ks
	}
	if set("target") {
		s.Target = f.target
	}
	if set("share") {
		s.Share = f.share
	}
	if set("count") {
		s.Count = f.count
	}
	if set("rate") {
		r, err := chaos.ParseRate(f.rate)
		if err != nil {
			return s, usageError{fmt.Errorf("--rate: %w", err)}
		}
		s.Rate = &r
	}
	if set("duration") {
		s.Duration = chaos.Duration(f.duration)
	}
	if set("max-concurrent") {
		if f.maxConcurrent < 1 {
			return s, usageError{fmt.Errorf("--max-concurrent %d: at least 1", f.maxConcurrent)}
		}
		s.MaxConcurrent = f.maxConcurrent
	}
	if set("seed") {
		s.Seed = f.seed
	}
	if set("load") {
		r, err := chaos.ParseRate(f.load)
		if err != nil {
			return s, usageError{fmt.Errorf("--load: %w", err)}
		}
		s.Load = &r
	}
	durs := []struct {
		name string
		v    time.Duration
		dst  *chaos.Duration
	}{{"warmup", f.warmup, &s.Warmup}, {"latency", f.latency, &s.Latency}, {"jitter", f.jitter, &s.Jitter}, {"timeout", f.timeout, &s.Timeout}}
	for _, d := range durs {
		if set(d.name) {
			*d.dst = chaos.Duration(d.v)
		}
	}
	if set("hallucinate-rate") {
		s.HallucinateRate = f.halRate
	}
	if set("hallucinate-kind") {
		s.HallucinateKind = f.halKind
	}
	if set("leak-rate") {
		r, err := chaos.ParseByteRate(f.leakRate)
		if err != nil {
			return s, usageError{fmt.Errorf("--leak-rate: %w", err)}
		}
		s.LeakRate = r
	}
	if set("abort-after-failures") {
		s.AbortAfterFailures = f.abortAfter
	}
	if set("p99") {
		s.Gate = chaos.Duration(f.p99)
	}
	if len(s.Faults) == 0 {
		return s, usageError{fmt.Errorf("no fault kinds: --fault KIND[,KIND…] (%s, or all)", kindNames())}
	}
	if s.Target == "" {
		return s, usageError{errors.New("no target: --target POOL|AGENT")}
	}
	if err := s.Normalize(); err != nil {
		return s, usageError{err}
	}
	return s, nil
}

func chaosRunCmd(g *globals, gate bool) *cobra.Command {
	f := &chaosFlags{}
	c := &cobra.Command{
		Use:   "run [FILE.yaml] --fault KIND[,KIND…] --target POOL [--count N | --rate R/s | --duration D] [--max-concurrent N] [--seed S] [--load CALLS/s] [--report-html FILE]",
		Short: "Run a chaos experiment and report recovery times per fault kind",
		Long: "Run a chaos experiment on the daemon. The experiment comes from flags, or from a YAML file\n" +
			"whose keys are those of the flags with underscores (faults, target, count, rate, duration,\n" +
			"max_concurrent, seed, load, latency, jitter, hallucinate_rate, hallucinate_kind, leak_rate,\n" +
			"timeout, abort_after_failures, gate); flags override the file.\n\n" +
			"Ctrl-C stops the experiment: every fault it injected is undone and the report shows what was\n" +
			"measured until then. Fault kinds:\n" + kindHelp(),
		Args: args(cobra.MaximumNArgs(1)),
	}
	if gate {
		c.Use = "gate [FILE.yaml] --p99 300ms [options of run]"
		c.Short = "Run a chaos experiment; exit 1 if a kind's p99 recovery exceeds the bound or a call failed"
		c.Long = "Run a chaos experiment like `chaos run` and judge it: exit 1 when any fault kind's p99\n" +
			"recovery exceeds --p99, a fault did not recover, a kind cannot be injected here, any call\n" +
			"failed, or the experiment was aborted, printing which; exit 0 otherwise."
	}
	f.add(c, gate)
	c.RunE = func(cmd *cobra.Command, a []string) error {
		file := ""
		if len(a) == 1 {
			file = a[0]
		}
		spec, err := f.spec(cmd, file)
		if err != nil {
			return err
		}
		rep, err := runExperiment(cmd.Context(), g, spec, f.quiet || g.json())
		if err != nil {
			return err
		}
		bound := time.Duration(rep.Spec.Gate)
		if gate {
			bound = f.p99
			rep.Gate = rep.Evaluate(bound)
		}
		if g.json() {
			if err := printJSON(rep); err != nil {
				return err
			}
		} else {
			rep.WriteText(os.Stdout)
		}
		if f.reportHTML != "" {
			if err := writeHTML(f.reportHTML, rep); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "HTML report: %s\n", f.reportHTML)
		}
		switch {
		case gate && !rep.Gate.Passed:
			return fmt.Errorf("gate failed (p99 recovery bound %s): %s", bound, strings.Join(rep.Gate.Failures, "; "))
		case rep.Aborted != "":
			return fmt.Errorf("experiment aborted: %s", rep.Aborted)
		}
		return nil
	}
	return c
}

func kindHelp() string {
	var b strings.Builder
	for _, k := range chaos.Kinds {
		fmt.Fprintf(&b, "  %-14s %s\n", k, k.Describe())
	}
	return b.String()
}

// runExperiment runs spec on the daemon, printing progress on stderr. The
// first Ctrl-C asks the daemon to stop the experiment (it undoes its faults
// and still reports); a second one leaves at once.
func runExperiment(ctx context.Context, g *globals, spec chaos.Spec, quiet bool) (*chaos.Report, error) {
	remote := chaos.NewRemote(g.socket)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
			}
			n++
			if n > 1 {
				fmt.Fprintln(os.Stderr, "resilientctl: leaving; the daemon undoes the faults when the connection closes")
				cancel()
				return
			}
			fmt.Fprintln(os.Stderr, "resilientctl: stopping the experiment and undoing its faults (Ctrl-C again to leave at once)")
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := remote.Stop(sctx, "interrupted (Ctrl-C in resilientctl)"); err != nil {
				fmt.Fprintln(os.Stderr, "resilientctl: stop:", err)
			}
			scancel()
		}
	}()
	var progress func(chaos.Progress)
	if !quiet {
		progress = func(p chaos.Progress) { printProgress(os.Stderr, p) }
	}
	rep, err := remote.Run(ctx, spec, progress)
	if err != nil && ctx.Err() != nil {
		return nil, errors.New("interrupted")
	}
	return rep, err
}

func printProgress(w io.Writer, p chaos.Progress) {
	at := p.Time.Format("15:04:05.000")
	switch p.Type {
	case "started":
		fmt.Fprintf(w, "%s  started: %s\n", at, p.Message)
	case "injected":
		fmt.Fprintf(w, "%s  %-14s %-16s injected\n", at, p.Kind, p.Agent)
	case "recovered":
		fmt.Fprintf(w, "%s  %-14s %-16s recovered: detect %s, recover %s (%s)\n", at, p.Kind, p.Agent, optMS(p.DetectMS), optMS(p.RecoverMS), p.Message)
	case "not_recovered":
		fmt.Fprintf(w, "%s  %-14s %-16s NOT RECOVERED: %s\n", at, p.Kind, p.Agent, p.Message)
	default:
		fmt.Fprintf(w, "%s  %s %s %s\n", at, p.Type, p.Kind, p.Message)
	}
}

func optMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", *v)
}

func writeHTML(path string, rep *chaos.Report) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := chaos.WriteHTML(fh, rep); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func chaosStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop the running chaos experiment (its faults are undone; its report is still delivered)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			stopped, err := chaos.NewRemote(g.socket).Stop(cmd.Context(), "stopped by `resilientctl chaos stop`")
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(map[string]bool{"stopped": stopped})
			}
			if stopped {
				fmt.Println("chaos experiment stopped; its faults are being undone")
			} else {
				fmt.Println("no chaos experiment is running")
			}
			return nil
		},
	}
}

func chaosStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running chaos experiment",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := chaos.NewRemote(g.socket).Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(st)
			}
			if !st.Running {
				fmt.Println("no chaos experiment is running")
				return nil
			}
			fmt.Printf("chaos experiment on %s since %s: %d faults injected, %d recovered\n  replay: %s\n",
				st.Spec.Target, st.Started.Format(time.TimeOnly), st.Injected, st.Recovered, st.Spec.Command())
			return nil
		},
	}
}

func chaosKindsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "kinds",
		Short: "List the fault kinds",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json() {
				out := map[string]string{}
				for _, k := range chaos.Kinds {
					out[string(k)] = k.Describe()
				}
				return printJSON(out)
			}
			fmt.Print(kindHelp())
			return nil
		},
	}
}
