// Command resilient-load drives calls into a running resilienced over its
// socket, concurrently, while a chaos experiment injects faults, and prints
// what callers saw: calls served, success rate, and the recovery of every
// fault kind against the 300 ms gate. It is the engine of `make demo`.
//
//	resilient-load run --socket PATH --pool POOL [--calls 100000] [--concurrency 32]
//	                   [--chaos FILE.yaml] [--report-html FILE] [--report-json FILE]
//	resilient-load upstream --listen 127.0.0.1:PORT
//
// run waits for the pool to be ready, keeps --concurrency callers busy (one
// keep-alive connection each), starts the chaos experiment of --chaos after
// a warm-up, and stops once at least --calls calls were made and the
// experiment has ended. Its calls are added to the experiment's report. It
// exits 0 when the gate passes, 1 when it fails, 2 on bad usage.
//
// upstream is a TCP echo service on loopback: the demo's agents make a
// round trip to it on every call (like a vector database), so that a sever
// fault, which cuts an agent's network, shows.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/chaos"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "upstream":
		os.Exit(upstreamCmd(os.Args[2:]))
	case "-h", "--help", "help":
		usage()
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "resilient-load: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  resilient-load run --socket PATH --pool POOL [--calls N] [--concurrency C] [--chaos FILE.yaml]
                     [--report-html FILE] [--report-json FILE] [--gate 300ms]
  resilient-load upstream --listen 127.0.0.1:PORT
`)
}

func upstreamCmd(args []string) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:47017", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "resilient-load upstream: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			fmt.Fprintf(os.Stderr, "resilient-load upstream: %v\n", err)
			return 1
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.Copy(c, c)
		}()
	}
}

type options struct {
	socket, pool, chaosFile, html, jsonOut string
	calls, concurrency, abortAfter         int
	warmup, readyTimeout, callTimeout      time.Duration
	gate, duration                         time.Duration
	quiet                                  bool
}

func runCmd(args []string) int {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.socket, "socket", os.Getenv("RESILIENT_SOCKET"), "daemon socket")
	fs.StringVar(&o.pool, "pool", "", "pool to call")
	fs.IntVar(&o.calls, "calls", 100000, "make at least this many calls")
	fs.DurationVar(&o.duration, "duration", 0, "call for this long instead of counting calls (and at least as long as the chaos experiment)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent callers")
	fs.StringVar(&o.chaosFile, "chaos", "", "chaos experiment (YAML, as `resilientctl chaos run FILE`) to run meanwhile")
	fs.StringVar(&o.html, "report-html", "", "write the HTML report here")
	fs.StringVar(&o.jsonOut, "report-json", "", "write the JSON report here")
	fs.DurationVar(&o.gate, "gate", 0, "p99 recovery bound (default: the experiment's gate, 300ms)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "calls before the first fault")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", time.Minute, "wait this long for the pool to be ready")
	fs.DurationVar(&o.callTimeout, "call-timeout", 30*time.Second, "give up on a call after this long")
	fs.IntVar(&o.abortAfter, "abort-after-failures", 100, "stop once more than N calls failed (-1: never)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.socket == "" || o.pool == "" || o.calls < 1 || o.concurrency < 1 {
		fmt.Fprintln(os.Stderr, "resilient-load run: --socket, --pool, a positive --calls and --concurrency are required")
		return 2
	}
	var spec *chaos.Spec
	if o.chaosFile != "" {
		b, err := os.ReadFile(o.chaosFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "resilient-load:", err)
			return 2
		}
		s, err := chaos.ParseSpec(o.chaosFile, b)
		if err != nil {
			fmt.Fprintln(os.Stderr, "resilient-load:", err)
			return 2
		}
		if s.Target == "" {
			s.Target = o.pool
		}
		if err := s.Normalize(); err != nil {
			fmt.Fprintln(os.Stderr, "resilient-load:", err)
			return 2
		}
		spec = &s
	}
	code, err := run(o, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resilient-load:", err)
	}
	return code
}

// load is the callers' shared state.
type load struct {
	client               *api.Client
	o                    options
	seq                  atomic.Uint64
	total, ok, failed    atomic.Int64
	retried              atomic.Int64
	stop                 chan struct{}
	stopOnce             sync.Once
	why                  string // why the calls stopped early
	mu                   sync.Mutex
	lat                  [][]float64 // per caller, ms
	errs                 []string
	faultsIn, faultsDone atomic.Int64
}

func (l *load) halt(why string) {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.why = why
		l.mu.Unlock()
		close(l.stop)
	})
}

func (l *load) caller(i int, wg *sync.WaitGroup) {
	defer wg.Done()
	lat := make([]float64, 0, l.o.calls/l.o.concurrency+1024)
	timeout := l.o.callTimeout.String()
	for {
		select {
		case <-l.stop:
			l.mu.Lock()
			l.lat[i] = lat
			l.mu.Unlock()
			return
		default:
		}
		n := l.seq.Add(1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), l.o.callTimeout+5*time.Second)
		res, err := l.client.Call(ctx, l.o.pool, api.CallRequest{Input: json.RawMessage(chaos.CallInput(n)), Timeout: timeout})
		cancel()
		d := time.Since(start)
		l.total.Add(1)
		if err != nil {
			f := l.failed.Add(1)
			l.mu.Lock()
			if msg := err.Error(); len(l.errs) < 8 && !slices.Contains(l.errs, msg) {
				l.errs = append(l.errs, msg)
			}
			l.mu.Unlock()
			var ue *api.UnreachableError
			switch {
			case errors.As(err, &ue):
				l.halt("the daemon went away: " + err.Error())
			case l.o.abortAfter >= 0 && f > int64(l.o.abortAfter):
				l.halt(fmt.Sprintf("%d calls failed, beyond resilient-load's bound of %d", f, l.o.abortAfter))
			}
			continue
		}
		l.ok.Add(1)
		if res.Attempts > 1 {
			l.retried.Add(1)
		}
		lat = append(lat, float64(d)/float64(time.Millisecond))
	}
}

func run(o options, spec *chaos.Spec) (int, error) {
	client := api.NewClient(o.socket)
	if err := waitReady(client, o.pool, o.readyTimeout); err != nil {
		return 1, err
	}
	l := &load{client: client, o: o, stop: make(chan struct{}), lat: make([][]float64, o.concurrency)}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	interrupted := atomic.Bool{}

	start := time.Now()
	var wg sync.WaitGroup
	for i := range o.concurrency {
		wg.Add(1)
		go l.caller(i, &wg)
	}

	// The experiment runs in the daemon; this streams its progress.
	remote := chaos.NewRemote(o.socket)
	var rep *chaos.Report
	var repErr error
	chaosDone := make(chan struct{})
	if spec == nil {
		close(chaosDone)
	} else {
		go func() {
			defer close(chaosDone)
			select {
			case <-time.After(o.warmup):
			case <-l.stop:
				return
			}
			rep, repErr = remote.Run(context.Background(), *spec, func(p chaos.Progress) {
				switch p.Type {
				case "injected":
					l.faultsIn.Add(1)
				case "recovered":
					l.faultsDone.Add(1)
				case "not_recovered":
					l.faultsDone.Add(1)
					fmt.Fprintf(os.Stderr, "  %s %s NOT RECOVERED: %s\n", p.Kind, p.Agent, p.Message)
				case "skipped":
					fmt.Fprintf(os.Stderr, "  %s skipped: %s\n", p.Kind, p.Message)
				}
			})
		}()
	}

	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var lastTotal int64
	lastAt := start
	chaosOver := spec == nil
	for running := true; running; {
		select {
		case <-sigs:
			if interrupted.Swap(true) {
				return 130, errors.New("interrupted twice: leaving")
			}
			fmt.Fprintln(os.Stderr, "interrupted: stopping the experiment (its faults are undone) and the calls")
			l.halt("interrupted (Ctrl-C in resilient-load)")
		case <-chaosDone:
			chaosDone, chaosOver = nil, true
		case now := <-tick.C:
			total := l.total.Load()
			if !o.quiet {
				faults := ""
				if spec != nil {
					faults = fmt.Sprintf("  faults: %d injected, %d closed", l.faultsIn.Load(), l.faultsDone.Load())
				}
				fmt.Fprintf(os.Stderr, "  %4.0fs %9d calls %7.0f/s %4d failed %6d retried%s\n",
					now.Sub(start).Seconds(), total, float64(total-lastTotal)/now.Sub(lastAt).Seconds(), l.failed.Load(), l.retried.Load(), faults)
			}
			lastTotal, lastAt = total, now
		case <-l.stop:
		}
		select {
		case <-l.stop:
			running = false
		default:
			enough := l.total.Load() >= int64(o.calls)
			if o.duration > 0 {
				enough = time.Since(start) >= o.duration
			}
			if chaosOver && enough {
				l.halt("")
				running = false
			}
		}
	}
	if !chaosOver {
		// Stopped early (interrupt, failures): the experiment undoes its
		// faults and still reports.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.mu.Lock()
		why := l.why
		l.mu.Unlock()
		remote.Stop(sctx, why)
		cancel()
		<-chaosDone
	}
	wg.Wait()
	elapsed := time.Since(start)

	var lat []float64
	for _, xs := range l.lat {
		lat = append(lat, xs...)
	}
	calls := chaos.Calls{
		Total: int(l.total.Load()), OK: int(l.ok.Load()), Failed: int(l.failed.Load()), Retried: int(l.retried.Load()),
		LatencyMS: chaos.Summarize(lat), Errors: l.errs,
		By: []string{fmt.Sprintf("resilient-load: %d concurrent callers over the socket", o.concurrency)},
	}
	printCalls(calls, elapsed, o.concurrency)
	l.mu.Lock()
	why := l.why
	l.mu.Unlock()
	if why != "" {
		fmt.Printf("STOPPED EARLY after %d of the %d calls asked for: %s\n", calls.Total, o.calls, why)
	}

	if spec == nil {
		if o.jsonOut != "" {
			// No experiment: the report is what callers saw.
			if err := writeFile(o.jsonOut, func(w io.Writer) error {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Calls    chaos.Calls `json:"calls"`
					ElapsedS float64     `json:"elapsed_s"`
				}{calls, elapsed.Seconds()})
			}); err != nil {
				return 1, err
			}
		}
		if calls.Failed > 0 || why != "" {
			return 1, nil
		}
		return 0, nil
	}
	if repErr != nil {
		return 1, fmt.Errorf("chaos experiment: %w", repErr)
	}
	if rep == nil {
		return 1, errors.New("the chaos experiment did not start")
	}
	// One report for what callers saw: this program's calls and the
	// engine's own.
	merged := calls
	merged.Add(rep.Calls)
	rep.Calls = merged
	bound := time.Duration(rep.Spec.Gate)
	if o.gate > 0 {
		bound = o.gate
	}
	rep.Gate = rep.Evaluate(bound)
	fmt.Println()
	rep.WriteText(os.Stdout)
	if o.html != "" {
		if err := writeFile(o.html, func(w io.Writer) error { return chaos.WriteHTML(w, rep) }); err != nil {
			return 1, err
		}
		fmt.Printf("\nHTML report: %s\n", o.html)
	}
	if o.jsonOut != "" {
		if err := writeFile(o.jsonOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}); err != nil {
			return 1, err
		}
	}
	if !rep.Gate.Passed || why != "" {
		return 1, nil
	}
	return 0, nil
}

func printCalls(c chaos.Calls, elapsed time.Duration, conc int) {
	fmt.Printf("\ncalls served: %d in %s (%.0f calls/s, %d concurrent callers over the socket)\n",
		c.OK, elapsed.Round(100*time.Millisecond), float64(c.Total)/elapsed.Seconds(), conc)
	fmt.Printf("success rate: %s  (%d of %d failed; the claim to beat: 99.999 %%)\n", rate(c), c.Failed, c.Total)
	fmt.Printf("retried:      %d calls were served by another agent after a failure\n", c.Retried)
	if c.LatencyMS != nil {
		fmt.Printf("latency:      p50 %.2f ms, p99 %.2f ms, max %.0f ms\n", c.LatencyMS.P50, c.LatencyMS.P99, c.LatencyMS.Max)
	}
	for _, e := range c.Errors {
		fmt.Printf("  failed: %s\n", e)
	}
}

func rate(c chaos.Calls) string {
	if c.Total == 0 {
		return "-"
	}
	// Floor, so that 99.99995 % is not shown as 100 %.
	v := float64(int64(float64(c.OK)/float64(c.Total)*1e7)) / 1e5
	return fmt.Sprintf("%.5f %%", v)
}

func writeFile(path string, write func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(fh); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// waitReady waits until the pool has its replicas active and its spares
// ready.
func waitReady(c *api.Client, pool string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil {
			var names []string
			for _, p := range st.Pools {
				names = append(names, p.Name)
				if p.Name != pool {
					continue
				}
				if p.Active >= p.Replicas && p.Spares >= p.SparesWanted {
					return nil
				}
				last = fmt.Sprintf("pool %s: %d/%d active, %d/%d spares, %s %s", p.Name, p.Active, p.Replicas, p.Spares, p.SparesWanted, p.State, p.Reason)
			}
			if !slices.Contains(names, pool) {
				sort.Strings(names)
				last = fmt.Sprintf("no pool %q (pools: %s)", pool, strings.Join(names, ", "))
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pool %s not ready after %s: %s", pool, timeout, last)
}
