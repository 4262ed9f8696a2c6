package api

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	"github.com/resilienced/resilienced/internal/testagent"
)

var (
	benchConc      = flag.Int("callpath.c", 8, "BenchmarkCallPath: concurrency of the concurrent rows (callers, agents)")
	benchAgentName = flag.String("callpath.agent", "echo", "BenchmarkCallPath: the agent, echo (examples/agents/echo, C) or flaky (examples/agents/flaky, Go)")
	benchStore     = flag.String("callpath.dir", "", "BenchmarkCallPath: directory for the durable session store (default: a temp dir under /var/tmp, on the disk)")
	benchSchema    = json.RawMessage(`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"},"context_len":{"type":"integer"}}}`)
	benchInput     = json.RawMessage(`"what is the capital of France?"`)
	quiet          = slog.New(slog.DiscardHandler) // agents' stderr, not the measurement
)

// BenchmarkCallPath is the call path of the daemon against its limit, in
// one run. Every row drives the same echo agent binary: by default
// examples/agents/echo, in C, whose own cost per call is small beside the
// daemon's (-callpath.agent=flaky: the Go example agent, whose runtime
// alone costs some 70 µs of CPU per call on a 2-core VM, and so caps every
// row, the limit included, near 20,000 calls/s):
//
//   - direct: goroutines each driving their own agent over its pipes
//     (agent.Start, Initialize, Call) with the params the supervisor sends
//     for a sessionless call: the limit no supervisor can beat.
//   - inproc: supervisor.Call in the same process, without HTTP: the
//     supervisor's own share (dispatch, contract check, metrics hook).
//   - socket: api.Client → unix socket → api.Server → supervisor → agent,
//     kept-alive connections, no sessions.
//   - stream: the same calls through one call stream (POST
//     /v1/pools/{pool}/call/stream), each caller sending its call and
//     waiting for its answer: many calls share each write and read.
//     stream/agents=C is 64 callers over C agents on one stream, and
//     socket/agents=C the same 64 callers with one request per call.
//   - sessions/window=N: the same with a durable session per caller: the
//     context is read before every call and sent with it, and the exchange
//     appended after it (bbolt, fsync'd, group commit) before the answer;
//     the pool keeps the last N exchanges (64 is the default pool's).
//   - paired: one caller calls a direct agent and a one-agent pool behind
//     the socket by turns, so that both see the same moments of a busy
//     machine: the fair measure of the latency the daemon adds.
//
// The pools check a JSON Schema, like a real pool; socket/no-schema shows
// what the contract check costs. c=1 is one caller and one agent: its p50
// is the latency, and daemon-added-p50-µs is p50 of the row minus p50 of
// direct/c=1. c=C (-callpath.c, default 8) is C callers and C agents: the
// throughput. Sessions are also run with 64 callers over C agents, as
// group commit gains from many writers.
//
// Metrics: calls/s; p50-µs, p99-µs per call; cpu-µs/call is the CPU time
// of this process (caller and daemon) per call and agent-cpu-µs/call that
// of the agent processes, which waiting for a CPU on a busy machine does
// not inflate (much); rw-syscalls/call counts this process's reads and
// writes (sockets, pipes, files: /proc/self/io), which the load of the
// machine does not change; ceiling-calls/s is NumCPU/(cpu+agent-cpu), the
// throughput the machine would reach if nothing else ran on it; B/op and
// allocs/op are the whole process's per call; appends/commit is the
// writes sharing one fsync; restarts counts agents replaced during the row
// (0 unless one died or hung; the reasons are logged).
//
//	go test -run '^$' -bench BenchmarkCallPath -benchtime 20000x ./internal/api/
//	go test -run '^$' -bench BenchmarkCallPath -benchtime 20000x ./internal/api/ -args -callpath.agent=flaky
func BenchmarkCallPath(b *testing.B) {
	bin := benchAgent(b)
	c := *benchConc
	var directP50 time.Duration // direct/c=1, for daemon-added latency

	row := func(name string, conc int, run func(b *testing.B) stats) {
		b.Run(fmt.Sprintf("%s/c=%d", name, conc), func(b *testing.B) {
			b.ReportAllocs() // of the whole process (caller and daemon) per call
			st := run(b)
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
	direct := func(conc int) func(*testing.B) stats {
		return func(b *testing.B) stats { return benchDirect(b, bin, conc) }
	}
	daemon := func(s daemonRow) func(*testing.B) stats {
		return func(b *testing.B) stats { return benchDaemon(b, bin, s) }
	}
	b.Run("paired/c=1", func(b *testing.B) { benchPaired(b, bin) })
	for _, conc := range []int{1, c} {
		row("direct", conc, direct(conc))
		row("inproc", conc, daemon(daemonRow{callers: conc, agents: conc, schema: true}))
		row("socket", conc, daemon(daemonRow{callers: conc, agents: conc, schema: true, http: true}))
		row("socket/no-schema", conc, daemon(daemonRow{callers: conc, agents: conc, http: true}))
		row("stream", conc, daemon(daemonRow{callers: conc, agents: conc, schema: true, http: true, streams: 1}))
		for _, w := range []int{8, config.DefaultContextEntries} {
			row(fmt.Sprintf("sessions/window=%d", w), conc, daemon(daemonRow{callers: conc, agents: conc, schema: true, http: true, window: w}))
		}
	}
	row(fmt.Sprintf("socket/agents=%d", c), 64, daemon(daemonRow{callers: 64, agents: c, schema: true, http: true}))
	row(fmt.Sprintf("stream/agents=%d", c), 64, daemon(daemonRow{callers: 64, agents: c, schema: true, http: true, streams: 1}))
	for _, w := range []int{8, config.DefaultContextEntries} {
		row(fmt.Sprintf("sessions/window=%d/agents=%d", w, c), 64, daemon(daemonRow{callers: 64, agents: c, schema: true, http: true, window: w}))
	}
}

// BenchmarkAPI is the API's two ways in, side by side in one run, on the
// same pool (a JSON Schema contract, the echo agent): single calls, one
// POST /v1/pools/{pool}/call each on kept-alive connections served by
// net/http, and the same calls on one call stream. Each caller has one
// call in flight; c=64/agents=C is 64 callers over C agents, where the
// stream shares each read and write among many calls.
//
// ns/op is the wall time per call (elapsed / calls: with many callers,
// the inverse of throughput, not a latency) and calls/s its inverse;
// p50-µs and p99-µs are the latency per call; cpu-µs/call is this
// process's CPU (caller and daemon) per call; rw-syscalls/call its reads
// and writes per call, which the machine's load does not move.
//
//	go test -run '^$' -bench BenchmarkAPI -benchtime 20000x ./internal/api/
func BenchmarkAPI(b *testing.B) {
	bin := benchAgent(b)
	c := *benchConc
	for _, r := range []struct {
		callers, agents int
		name            string
	}{
		{1, 1, "c=1"},
		{c, c, fmt.Sprintf("c=%d", c)},
		{64, c, fmt.Sprintf("c=64/agents=%d", c)},
	} {
		for _, way := range []struct {
			name    string
			streams int
		}{{"single", 0}, {"stream", 1}} {
			b.Run(way.name+"/"+r.name, func(b *testing.B) {
				b.ReportAllocs() // of the whole process (caller and daemon) per call
				st := benchDaemon(b, bin, daemonRow{callers: r.callers, agents: r.agents, schema: true, http: true, streams: way.streams})
				st.report(b)
				b.ReportMetric(float64(st.elapsed.Nanoseconds())/float64(st.calls), "ns/op")
			})
		}
	}
}

// benchAgent returns the command of the agent every row drives.
func benchAgent(b *testing.B) []string {
	switch *benchAgentName {
	case "echo":
		return []string{testagent.Echo(b)}
	case "flaky":
		return []string{testagent.Flaky(b), "-seed", "1"}
	}
	b.Fatalf("-callpath.agent=%q: want echo or flaky", *benchAgentName)
	return nil
}

// stats is one row's measurement.
type stats struct {
	calls         int
	elapsed       time.Duration
	p50, p99      time.Duration
	cpu, agentCPU time.Duration // this process; the agents
	rwSyscalls    int64         // this process's read and write system calls
	extra         map[string]float64
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
	b.ReportMetric(float64(s.rwSyscalls)/float64(s.calls), "rw-syscalls/call")
	for k, v := range s.extra {
		b.ReportMetric(v, k)
	}
	b.ReportMetric(0, "ns/op") // wall time per op is calls/s, said once
}

// drive runs b.N calls of call spread over conc goroutines (goroutine i
// makes its calls with call(i)), after a warm-up of 50 calls each, and
// measures them. agentCPU reads the agents' CPU time so far; atStart runs
// between the warm-up and the measurement.
func drive(b *testing.B, conc int, call func(i int) error, agentCPU func() time.Duration, atStart ...func()) stats {
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
	for _, f := range atStart {
		f()
	}
	cpu0, acpu0, io0 := processCPU(), agentCPU(), processRWSyscalls()
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
		rwSyscalls: processRWSyscalls() - io0,
	}
}

// benchDirect: conc goroutines, each with its own agent and nothing
// between it and the agent's pipes.
func benchDirect(b *testing.B, bin []string, conc int) stats {
	call, agentCPU := startDirect(b, bin, conc)
	return drive(b, conc, call, agentCPU)
}

// startDirect starts n agents; call(i) calls the i-th.
func startDirect(b *testing.B, bin []string, n int) (call func(i int) error, agentCPU func() time.Duration) {
	agents := make([]*agent.Agent, n)
	for i := range agents {
		a, err := agent.Start(agent.Config{ID: fmt.Sprint("direct-", i), Pool: "bench", Command: bin, Logger: quiet})
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
	pids := make([]int, n)
	for i, a := range agents {
		pids[i] = a.PID()
	}
	return func(i int) error {
			_, err := agents[i].Call(ctx, params)
			return err
		}, func() time.Duration {
			return pidsCPU(pids)
		}
}

// benchPaired measures the latency the daemon adds in pairs: one caller
// calls a direct agent and a one-agent pool behind the socket by turns, so
// that both see the machine as it is at the same moments, which separate
// rows on a busy machine do not.
func benchPaired(b *testing.B, bin []string) {
	direct, _ := startDirect(b, bin, 1)
	d := startDaemon(b, bin, daemonRow{callers: 1, agents: 1, schema: true, http: true})
	defer d.unsubscribe()
	for range 100 {
		if err := direct(0); err != nil {
			b.Fatal(err)
		}
		if err := d.call(0); err != nil {
			b.Fatal(err)
		}
	}
	ds := make([]time.Duration, 0, b.N)
	ss := make([]time.Duration, 0, b.N)
	diff := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		var dd, sd time.Duration
		// Alternate which goes first, so that neither always finds the
		// CPUs as the other left them.
		for k := range 2 {
			t0 := time.Now()
			if (i+k)%2 == 0 {
				if err := direct(0); err != nil {
					b.Fatal(err)
				}
				dd = time.Since(t0)
			} else {
				if err := d.call(0); err != nil {
					b.Fatal(err)
				}
				sd = time.Since(t0)
			}
		}
		ds, ss, diff = append(ds, dd), append(ss, sd), append(diff, sd-dd)
	}
	b.StopTimer()
	q := func(s []time.Duration, f float64) float64 {
		slices.Sort(s)
		return float64(s[int(f*float64(len(s)-1))]) / 1e3
	}
	b.ReportMetric(q(ds, 0.5), "direct-p50-µs")
	b.ReportMetric(q(ss, 0.5), "socket-p50-µs")
	b.ReportMetric(q(ss, 0.5)-q(ds, 0.5), "daemon-added-p50-µs")
	b.ReportMetric(q(diff, 0.5), "pair-diff-p50-µs")
	b.ReportMetric(q(ds, 0.99), "direct-p99-µs")
	b.ReportMetric(q(ss, 0.99), "socket-p99-µs")
	b.ReportMetric(float64(d.replaced(b)), "restarts")
	b.ReportMetric(0, "ns/op")
}

// daemonRow is one row through the supervisor.
type daemonRow struct {
	callers, agents int
	schema          bool // the pool's contract has a JSON Schema
	http            bool // through the socket; else supervisor.Call in process
	window          int  // > 0: each caller has a durable session keeping this many exchanges
	streams         int  // > 0: the calls go through this many call streams (http only)
}

// benchDaemon: a pool of flaky agents behind a supervisor wired as the
// daemon wires it (metrics hook included), called in process or through the
// API's unix socket.
func benchDaemon(b *testing.B, bin []string, r daemonRow) stats {
	d := startDaemon(b, bin, r)
	defer d.unsubscribe()
	var before session.Stats
	st := drive(b, r.callers, d.call, d.agentCPU, func() {
		if d.store != nil {
			before = d.store.Stats()
		}
	})
	st.extra = map[string]float64{}
	if d.store != nil {
		after := d.store.Stats()
		if n := after.Commits - before.Commits; n > 0 {
			st.extra["appends/commit"] = float64(after.Writes-before.Writes) / float64(n)
		}
	}
	st.extra["restarts"] = float64(d.replaced(b))
	return st
}

// benchPool is a running pool under test.
type benchPool struct {
	sup         *supervisor.Supervisor
	store       *session.Store
	call        func(i int) error // a call by the i-th caller
	agentCPU    func() time.Duration
	events      <-chan supervisor.Event
	unsubscribe func()
}

func startDaemon(b *testing.B, bin []string, r daemonRow) *benchPool {
	var store *session.Store
	opts := supervisor.Options{Logger: quiet}
	if r.window > 0 {
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
		s, err := session.Open(context.Background(), session.Options{Path: filepath.Join(dir, fmt.Sprintf("state-%d.db", time.Now().UnixNano())), Logger: quiet})
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
	pc.Command = bin
	pc.Replicas, pc.Spares, pc.MaxSpares = r.agents, 0, 0
	pc.PingInterval = 0
	// The adaptive hang detector (10× the typical latency, at least
	// 100 ms) takes calls slowed by a starved CPU for hangs; on a shared
	// 2-core machine with 64 callers it kills agents until the pool gives
	// up. These rows measure the call path, so they use a fixed stall
	// timeout; docs/BENCHMARKS.md reports the detector's misfires apart.
	pc.StallTimeout = 10 * time.Second
	if r.schema {
		pc.Contract.Schema = benchSchema
	}
	if r.window > 0 {
		pc.ContextLimit.Entries = r.window
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
	events, unsubscribe := sup.Subscribe(4096)
	agents, _ := sup.Agents("bench")
	pids := make([]int, 0, len(agents))
	for _, a := range agents {
		pids = append(pids, a.PID)
	}
	agentCPU := func() time.Duration { return pidsCPU(pids) }

	ids := make([]string, r.callers)
	if r.window > 0 {
		for i := range ids {
			ids[i] = fmt.Sprintf("bench-%d-%d", i, time.Now().UnixNano())
		}
	}
	var call func(i int) error
	if r.http {
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
		call = func(i int) error {
			_, err := client.Call(context.Background(), "bench", CallRequest{Input: benchInput, Session: ids[i]})
			return err
		}
		if r.streams > 0 {
			call = streamCaller(b, client, r.streams, ids)
		}
	} else {
		call = func(i int) error {
			_, err := sup.Call(context.Background(), "bench", supervisor.CallRequest{Input: benchInput, Session: ids[i]})
			return err
		}
	}
	return &benchPool{sup: sup, store: store, call: call, agentCPU: agentCPU, events: events, unsubscribe: unsubscribe}
}

// streamCaller opens n call streams on the bench pool; call(i) sends the
// i-th caller's call on stream i%n and waits for its answer. A caller has
// one call in flight, so its index is the call's id.
func streamCaller(b *testing.B, client *Client, n int, sessions []string) func(i int) error {
	streams := make([]*CallStream, n)
	answers := make([]chan error, len(sessions))
	for i := range answers {
		answers[i] = make(chan error, 1)
	}
	ids := make([]json.RawMessage, len(sessions))
	for i := range ids {
		ids[i] = json.RawMessage(strconv.Itoa(i))
	}
	var recvs sync.WaitGroup
	for k := range streams {
		st, err := client.CallStream(context.Background(), "bench", StreamOptions{InFlight: max(DefaultStreamInFlight, len(sessions))})
		if err != nil {
			b.Fatal(err)
		}
		streams[k] = st
		recvs.Add(1)
		go func() {
			defer recvs.Done()
			for {
				a, err := st.Recv()
				if err != nil {
					if err != io.EOF {
						for _, ch := range answers {
							select {
							case ch <- err:
							default:
							}
						}
					}
					return
				}
				i, err := strconv.Atoi(string(a.ID))
				if err != nil || i < 0 || i >= len(answers) {
					b.Errorf("answer with id %s", a.ID)
					continue
				}
				answers[i] <- a.Err()
			}
		}()
	}
	b.Cleanup(func() {
		for _, st := range streams {
			st.CloseSend()
		}
		recvs.Wait()
	})
	return func(i int) error {
		if err := streams[i%n].Send(StreamCall{ID: ids[i], CallRequest: CallRequest{Input: benchInput, Session: sessions[i]}}); err != nil {
			return err
		}
		return <-answers[i]
	}
}

// replaced returns how many agents the pool replaced, and logs why: on a
// starved machine the stall detector takes a slow call for a hang.
func (p *benchPool) replaced(b *testing.B) int {
	restarts := 0
	for _, ps := range p.sup.Status() {
		restarts += ps.Restarts
	}
	why := map[string]int{}
	for len(p.events) > 0 {
		ev := <-p.events
		switch ev.Kind {
		case supervisor.EventExit, supervisor.EventViolation, supervisor.EventDeadline, supervisor.EventHang:
			reason := ev.Reason
			if i := strings.IndexAny(reason, "0123456789"); i > 0 {
				reason = reason[:i] // without the figures, so that reasons group
			}
			why[string(ev.Kind)+": "+reason]++
		}
	}
	for k, n := range why {
		b.Logf("%d× %s", n, k)
	}
	return restarts
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

// processRWSyscalls is the number of read and write system calls of this
// process so far (/proc/self/io: syscr, syscw; readv and writev count too).
func processRWSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseInt(v, 10, 64)
			n += c
		}
	}
	return n
}

// pidsCPU sums the user and system CPU time of live processes, from
// /proc/PID/stat: all their threads, exited ones included, in clock ticks
// (10 ms), so a row needs some thousands of calls for a precise figure.
func pidsCPU(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses and
		// may hold spaces: state is field 3, utime 14, stime 15.
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
