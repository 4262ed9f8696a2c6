package api

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/metrics"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

var (
	benchConc   = flag.Int("callpath.c", 8, "BenchmarkCallPath: concurrency of the concurrent rows (callers, agents)")
	benchStore  = flag.String("callpath.dir", "", "BenchmarkCallPath: directory for the durable session store (default: a temp dir under /var/tmp, on the disk)")
	benchSchema = json.RawMessage(`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"},"context_len":{"type":"integer"}}}`)
	benchInput  = json.RawMessage(`"what is the capital of France?"`)
	quiet       = slog.New(slog.DiscardHandler) // agents' stderr, not the measurement
)

// BenchmarkCallPath is the call path of the daemon against its limit, in
// one run. Every row drives the same flaky echo agent binary:
//
//   - direct: goroutines each driving their own agent over its pipes
//     (agent.Start, Initialize, Call), with the params the supervisor
//     sends: the limit no supervisor can beat.
//   - inproc: supervisor.Call in the same process, without HTTP: the
//     supervisor's own share (dispatch, contract, retries bookkeeping).
//   - socket: api.Client → unix socket → api.Server → supervisor → agent,
//     keep-alive connections, no sessions.
//   - sessions: the same with a durable session per caller: the context is
//     read before and the exchange appended (bbolt, fsync'd, group commit)
//     after every call.
//
// Each runs at concurrency 1 (latency: daemon-added-p50-µs is p50 of the
// row minus p50 of direct/c=1) and at concurrency C (throughput, C agents
// and C callers; -callpath.c, default 8). The pools check a JSON Schema,
// like a real pool; the no-schema rows show what the contract check costs.
//
// Metrics: calls/s; p50-µs, p99-µs per call; cpu-µs/call is the CPU time
// of this process (caller and daemon) per call and agent-cpu-µs/call that
// of the agent processes, which waiting for a CPU on a busy machine does
// not inflate; ceiling-calls/s is NumCPU/(cpu+agent-cpu), the throughput
// the machine would reach if nothing else ran on it.
//
//	go test -run '^$' -bench BenchmarkCallPath -benchtime 20000x ./internal/api/
func BenchmarkCallPath(b *testing.B) {
	bin := flaky(b)
	c := *benchConc
	var directP50 time.Duration // direct/c=1, for daemon-added latency

	row := func(name string, conc int, run func(b *testing.B, conc int) stats) {
		b.Run(fmt.Sprintf("%s/c=%d", name, conc), func(b *testing.B) {
			st := run(b, conc)
			st.report(b)
			if conc == 1 {
				if name == "direct" {
					directP50 = st.p50
				} else if directP50 > 0 {
					b.ReportMetric(float64(st.p50-directP50)/1e3, "daemon-added-p50-µs")
				}
			}
		})
	}
	direct := func(b *testing.B, conc int) stats { return benchDirect(b, bin, conc) }
	pool := func(schema, sessions, http bool) func(*testing.B, int) stats {
		return func(b *testing.B, conc int) stats {
			return benchDaemon(b, bin, conc, schema, sessions, http)
		}
	}
	for _, conc := range []int{1, c} {
		row("direct", conc, direct)
		row("inproc", conc, pool(true, false, false))
		row("socket", conc, pool(true, false, true))
		row("socket/no-schema", conc, pool(false, false, true))
		row("sessions", conc, pool(true, true, true))
	}
}

// stats is one row's measurement.
type stats struct {
	calls         int
	elapsed       time.Duration
	p50, p99      time.Duration
	cpu, agentCPU time.Duration // this process; the agents
}

func (s stats) report(b *testing.B) {
	b.ReportMetric(float64(s.calls)/s.elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(s.p50)/1e3, "p50-µs")
	b.ReportMetric(float64(s.p99)/1e3, "p99-µs")
	cpu := float64(s.cpu) / float64(s.calls) / 1e3
	acpu := float64(s.agentCPU) / float64(s.calls) / 1e3
	b.ReportMetric(cpu, "cpu-µs/call")
	b.ReportMetric(acpu, "agent-cpu-µs/call")
	if cpu+acpu > 0 {
		b.ReportMetric(float64(runtime.NumCPU())*1e6/(cpu+acpu), "ceiling-calls/s")
	}
	b.ReportMetric(0, "ns/op") // wall time per op is calls/s, said once
}

// drive runs b.N calls of call spread over conc goroutines (goroutine i
// makes its calls with call(i)), after a warm-up, and measures them.
// agentCPU reads the agents' CPU time so far.
func drive(b *testing.B, conc int, call func(i int) error, agentCPU func() time.Duration) stats {
	b.Helper()
	var wg sync.WaitGroup
	// Warm-up: connections, the pool's latency tracker, the page cache.
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := call(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	var failed atomic.Value
	cpu0, acpu0 := processCPU(), agentCPU()
	b.ResetTimer()
	start := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls := make([]time.Duration, 0, b.N/conc+1)
			defer func() { lats[i] = ls }()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := call(i); err != nil {
					failed.Store(err)
					return
				}
				ls = append(ls, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	q := func(f float64) time.Duration { return all[int(f*float64(len(all)-1))] }
	return stats{
		calls: len(all), elapsed: elapsed, p50: q(0.50), p99: q(0.99),
		cpu: processCPU() - cpu0, agentCPU: agentCPU() - acpu0,
	}
}

// benchDirect: conc goroutines, each with its own agent and nothing
// between it and the agent's pipes.
func benchDirect(b *testing.B, bin string, conc int) stats {
	agents := make([]*agent.Agent, conc)
	for i := range agents {
		a, err := agent.Start(agent.Config{ID: fmt.Sprint("direct-", i), Pool: "bench", Command: []string{bin, "-seed", "1"}, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { a.SignalGroup(syscall.SIGKILL); <-a.Done(); a.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = a.Initialize(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		agents[i] = a
	}
	// What the supervisor sends for a sessionless call.
	params, _ := json.Marshal(map[string]any{"session": nil, "context": []any{}, "input": benchInput})
	ctx := context.Background()
	pids := make([]int, conc)
	for i, a := range agents {
		pids[i] = a.PID()
	}
	return drive(b, conc, func(i int) error {
		_, err := agents[i].Call(ctx, params)
		return err
	}, func() time.Duration { return pidsCPU(pids) })
}

// benchDaemon: a pool of conc flaky agents behind a supervisor wired as
// the daemon wires it (metrics hook included), called in process or
// through the API's unix socket.
func benchDaemon(b *testing.B, bin string, conc int, schema, sessions, http bool) stats {
	var store *session.Store
	opts := supervisor.Options{Logger: quiet}
	if sessions {
		dir := *benchStore
		if dir == "" {
			// /tmp may be a tmpfs elsewhere; /var/tmp is on the disk.
			d, err := os.MkdirTemp("/var/tmp", "resilienced-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(d) })
			dir = d
		}
		s, err := session.Open(context.Background(), session.Options{Path: filepath.Join(dir, fmt.Sprintf("state-%d.db", time.Now().UnixNano()))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close(); os.Remove(s.Path()) })
		store = s
		opts.Store = s
	}
	var sup *supervisor.Supervisor
	m := metrics.New(benchMetricsSource{&sup})
	opts.OnCall = m.Call
	sup = supervisor.New(opts)
	pc := config.DefaultPool()
	pc.Name = "bench"
	pc.Command = []string{bin, "-seed", "1"}
	pc.Replicas, pc.Spares, pc.MaxSpares = conc, 0, 0
	pc.PingInterval = 0
	if schema {
		pc.Contract.Schema = benchSchema
	}
	if err := sup.Apply(context.Background(), &config.Config{Pools: []config.Pool{pc}}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sup.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sup.Stop(ctx)
	})
	agents, _ := sup.Agents("bench")
	pids := make([]int, 0, len(agents))
	for _, a := range agents {
		pids = append(pids, a.PID)
	}
	agentCPU := func() time.Duration { return pidsCPU(pids) }

	sessionOf := func(i int) string {
		if !sessions {
			return ""
		}
		return fmt.Sprintf("bench-%d-%d", i, time.Now().UnixNano())
	}
	ids := make([]string, conc)
	for i := range ids {
		ids[i] = sessionOf(i)
	}
	if !http {
		return drive(b, conc, func(i int) error {
			_, err := sup.Call(context.Background(), "bench", supervisor.CallRequest{Input: benchInput, Session: ids[i]})
			return err
		}, agentCPU)
	}

	sock, err := Listen(filepath.Join(b.TempDir(), "api.sock"))
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(Options{Supervisor: sup, Sessions: store, Version: "bench", Logger: quiet})
	go srv.Serve(sock)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	client := NewClient(sock.Path)
	return drive(b, conc, func(i int) error {
		_, err := client.Call(context.Background(), "bench", CallRequest{Input: benchInput, Session: ids[i]})
		return err
	}, agentCPU)
}

type benchMetricsSource struct{ sup **supervisor.Supervisor }

func (s benchMetricsSource) Status() []supervisor.PoolStatus { return (*s.sup).Status() }
func (s benchMetricsSource) Agents(pool string) ([]supervisor.AgentStatus, error) {
	return (*s.sup).Agents(pool)
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidsCPU sums the user+system CPU time of live processes, all threads,
// from /proc/PID/stat (clock ticks).
func pidsCPU(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is field 3, utime 14, stime 15.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}
