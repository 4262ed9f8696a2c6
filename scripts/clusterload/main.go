// Command clusterload drives `make cluster-demo`: a cluster-aware caller
// that spreads sessions over every node's API socket, moves to the next
// node when one fails, and at the end checks every session's context in
// etcd. It prints one JSON line:
//
//	{"nodes":3,"etcd_members":3,"calls":N,"failed":0,"lost":0,"doubled":0,"stale_commits":0,"gap_ms_p99":X}
//
// lost and doubled count exchanges missing from or repeated in a session's
// context, both as each answer saw it (the flaky agent reports the length
// of the context it was given) and as etcd holds it afterwards;
// stale_commits counts exchanges committed under an older epoch after a
// newer one had begun (a stale owner's write): one whose epoch is below
// an earlier exchange's, or whose key was written at a revision after
// another epoch of the session (another exchange's, or the owner
// record's) had begun; gap_ms_p99 is the p99 of
// the time a call took from its first attempt to its answer, failovers
// included. With -events (a file of "name unix_ms" lines that the demo
// writes as it kills and cuts nodes) the line also has when each event
// happened and, per phase of the run (the calls that began after each
// event, before the next), the gap's p50 and p99 and what the slow calls
// (over 300 ms) waited on: the first attempt (the node it reached was slow
// to answer) or a failed or hedged first attempt before another node's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/resilienced/resilienced/internal/api"
)

func main() {
	sockets := flag.String("sockets", "", "the nodes' API sockets, comma-separated")
	endpoints := flag.String("etcd", "", "etcd endpoints, comma-separated")
	clusterName := flag.String("cluster", "demo", "cluster name")
	pool := flag.String("pool", "echo", "pool")
	sessions := flag.Int("sessions", 300, "sessions")
	callers := flag.Int("callers", 64, "concurrent callers")
	duration := flag.Duration("duration", 30*time.Second, "how long to call")
	attempt := flag.Duration("attempt", 2*time.Second, "timeout of one attempt on one node")
	hedge := flag.Duration("hedge", 250*time.Millisecond, "an attempt unanswered this long is joined by one on the next node")
	budget := flag.Duration("budget", 10*time.Second, "a call that no node answered within this long fails")
	eventsFile := flag.String("events", "", `file of "name unix_ms" lines: the run's events, for the per-phase breakdown`)
	flag.Parse()

	socks := strings.Split(*sockets, ",")
	clients := make([]*api.Client, len(socks))
	for i, s := range socks {
		clients[i] = api.NewClient(s)
	}
	acked := make([]int, *sessions) // calls acknowledged per session
	var (
		calls, failed, sawLost, sawDoubled atomic.Int64
		mu                                 sync.Mutex
		gaps                               []time.Duration
		traces                             []callTrace
		perSecond                          = map[int]int{} // answered calls by second of the run
	)
	begin := time.Now()
	stop := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for c := range *callers {
		wg.Go(func() {
			for round := 0; time.Now().Before(stop); round++ {
				for s := c; s < *sessions && time.Now().Before(stop); s += *callers {
					i := acked[s] + 1
					start := time.Now()
					tr := call(clients, (s+i)%len(clients), *pool, s, i, *attempt, *hedge, *budget)
					gap := time.Since(start)
					tr.start, tr.gap = start, gap
					calls.Add(1)
					ctxLen, ok := tr.ctxLen, tr.ok
					mu.Lock()
					traces = append(traces, tr)
					mu.Unlock()
					if !ok {
						failed.Add(1)
						continue
					}
					acked[s] = i
					switch {
					case ctxLen < i-1:
						sawLost.Add(1)
					case ctxLen > i-1:
						sawDoubled.Add(1)
					}
					mu.Lock()
					gaps = append(gaps, gap)
					perSecond[int(time.Since(begin)/time.Second)]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()

	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterload:", err)
		os.Exit(2)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members, err := cli.MemberList(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterload: etcd members:", err)
		os.Exit(2)
	}
	nodes, err := cli.Get(ctx, "/resilienced/"+*clusterName+"/nodes/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterload: nodes:", err)
		os.Exit(2)
	}
	lost, doubled, stale := sawLost.Load(), sawDoubled.Load(), int64(0)
	for s := range *sessions {
		r, err := cli.Get(ctx, fmt.Sprintf("/resilienced/%s/ctx/%s/s%d/", *clusterName, *pool, s), clientv3.WithPrefix())
		if err != nil {
			fmt.Fprintln(os.Stderr, "clusterload: context:", err)
			os.Exit(2)
		}
		owner, err := cli.Get(ctx, fmt.Sprintf("/resilienced/%s/owners/%s/s%d", *clusterName, *pool, s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "clusterload: owner:", err)
			os.Exit(2)
		}
		var inputs []int
		for _, kv := range r.Kvs {
			var x struct {
				Input struct{ I int } `json:"input"`
			}
			json.Unmarshal(kv.Value, &x)
			inputs = append(inputs, x.Input.I)
		}
		var ownerRev int64
		if len(owner.Kvs) > 0 {
			ownerRev = owner.Kvs[0].ModRevision
		}
		stale += staleCommits(r.Kvs, ownerRev)
		// Exactly 1..n in order, n at least what was acknowledged (a call
		// committed whose answer was lost counts as done, not lost).
		for j, in := range inputs {
			if in != j+1 {
				if slices.Contains(inputs[:j], in) {
					doubled++
				} else {
					lost++
				}
			}
		}
		if len(inputs) < acked[s] {
			lost += int64(acked[s] - len(inputs))
		}
	}
	slices.Sort(gaps)
	p99 := 0.0
	if len(gaps) > 0 {
		p99 = float64(gaps[len(gaps)*99/100].Microseconds()) / 1000
	}
	// The answered calls second by second show when the cluster stalled.
	var timeline []string
	for sec := 0; sec <= int(duration.Seconds()); sec++ {
		timeline = append(timeline, fmt.Sprint(perSecond[sec]))
	}
	fmt.Fprintf(os.Stderr, "clusterload: answered calls per second: %s\n", strings.Join(timeline, " "))
	for msg, n := range errors {
		fmt.Fprintf(os.Stderr, "clusterload: %d failed attempts: %s\n", n, msg)
	}
	extra := ""
	if *eventsFile != "" {
		events, err := readEvents(*eventsFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "clusterload:", err)
			os.Exit(2)
		}
		b, _ := json.Marshal(breakdown(begin, events, traces))
		extra = `,"phases":` + string(b)
	}
	fmt.Printf(`{"nodes":%d,"etcd_members":%d,"calls":%d,"failed":%d,"lost":%d,"doubled":%d,"stale_commits":%d,"gap_ms_p99":%.1f%s}`+"\n",
		nodes.Count, len(members.Members), calls.Load(), failed.Load(), lost, doubled, stale, p99, extra)
}

var (
	errMu  sync.Mutex
	errors = map[string]int{}
)

// digits are what differs between messages of one kind (session ids,
// keys, times).
var digits = regexp.MustCompile(`[0-9]+`)

// noteError counts attempts that failed, by their message's start, its
// numbers left out.
func noteError(err error) {
	msg := digits.ReplaceAllString(err.Error(), "#")
	if len(msg) > 120 {
		msg = msg[:120]
	}
	errMu.Lock()
	errors[msg]++
	errMu.Unlock()
}

// call makes call i of session s, first through node first, then through
// the others in turn, every attempt with the same idempotency key (the
// key makes them one call), until one answers or budget has passed: an
// attempt that fails is followed at once by one on the next node, and,
// once every node has failed it, after a pause that grows to 400 ms (the
// cluster is between owners, or without an etcd leader, for a moment);
// an attempt unanswered after hedge is joined by the next node's, two at
// most at a time (more would only add load to a cluster already slow to
// answer). It returns the context length the agent saw.
func call(clients []*api.Client, first int, pool string, s, i int, attempt, hedge, budget time.Duration) (tr callTrace) {
	req := api.CallRequest{
		Input:   json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
		Session: fmt.Sprint("s", s),
		Key:     fmt.Sprintf("s%d-%d", s, i),
		Timeout: attempt.String(),
	}
	type answer struct {
		n   int // which attempt
		out json.RawMessage
		err error
	}
	answers := make(chan answer)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	begin := time.Now()
	deadline := begin.Add(budget)
	launched, pending, fails := 0, 0, 0
	tr.firstEnd = -1
	launch := func() {
		c := clients[(first+launched)%len(clients)]
		n := launched
		launched++
		pending++
		if n == 1 && tr.firstEnd < 0 {
			tr.firstEnd = time.Since(begin) // the first attempt was hedged
		}
		go func() {
			actx, acancel := context.WithTimeout(ctx, attempt)
			defer acancel()
			a := answer{n: n}
			if res, err := c.Call(actx, pool, req); err != nil {
				a.err = err
			} else {
				a.out = res.Output
			}
			select {
			case answers <- a:
			case <-ctx.Done():
			}
		}()
	}
	pause := func() time.Duration {
		if fails < len(clients) {
			return 0
		}
		return min(50*time.Millisecond<<min(fails/len(clients)-1, 3), 400*time.Millisecond)
	}
	const maxPending = 2
	launch()
	next := time.NewTimer(hedge)
	defer next.Stop()
	for {
		select {
		case a := <-answers:
			pending--
			tr.attempts = launched
			if a.err == nil {
				var out struct {
					ContextLen int `json:"context_len"`
				}
				json.Unmarshal(a.out, &out)
				tr.ctxLen, tr.ok, tr.answeredBy = out.ContextLen, true, a.n
				return tr
			}
			if a.n == 0 && tr.firstEnd < 0 {
				tr.firstEnd = time.Since(begin)
			}
			noteError(a.err)
			fails++
			if time.Now().After(deadline) {
				if pending == 0 {
					return tr
				}
				continue
			}
			next.Reset(pause())
		case <-next.C:
			if time.Now().Before(deadline) && pending < maxPending {
				launch()
			} else if pending == 0 {
				tr.attempts = launched
				return tr
			}
			next.Reset(hedge)
		}
	}
}

// callTrace is what one call went through.
type callTrace struct {
	start      time.Time
	gap        time.Duration // first attempt to answer
	ok         bool
	ctxLen     int
	attempts   int           // launched
	answeredBy int           // which attempt answered (0: the first)
	firstEnd   time.Duration // when the first attempt failed or was hedged; -1: neither
}

type event struct {
	name string
	at   time.Time
}

func readEvents(path string) ([]event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	var evs []event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var name string
		var ms int64
		if _, err := fmt.Sscan(line, &name, &ms); err != nil {
			return nil, fmt.Errorf("events: %q: %w", line, err)
		}
		evs = append(evs, event{name, time.UnixMilli(ms)})
	}
	return evs, nil
}

// phase is the breakdown of the calls that began after one event of the
// run (or at its start) and before the next.
type phase struct {
	Name    string  `json:"name"`
	AtMS    int64   `json:"at_ms"` // since the load began
	Calls   int     `json:"calls"`
	Failed  int     `json:"failed"`
	GapP50  float64 `json:"gap_ms_p50"`
	GapP99  float64 `json:"gap_ms_p99"`
	GapMax  float64 `json:"gap_ms_max"`
	Slow    int     `json:"slow"` // answered after over 300 ms
	SlowOn1 int     `json:"slow_first_attempt"`
	// SlowFirstEndP50 is, for the slow calls answered by a later
	// attempt, when their first attempt failed or was hedged (p50).
	SlowFirstEndP50 float64 `json:"slow_first_end_ms_p50"`
	SlowAttemptsMax int     `json:"slow_attempts_max"`
}

func breakdown(begin time.Time, events []event, traces []callTrace) []phase {
	events = append([]event{{"start", begin}}, events...)
	out := make([]phase, len(events))
	var gaps = make([][]time.Duration, len(events))
	var firstEnds = make([][]time.Duration, len(events))
	for i, e := range events {
		out[i] = phase{Name: e.name, AtMS: e.at.Sub(begin).Milliseconds()}
	}
	for _, tr := range traces {
		i := 0
		for j, e := range events {
			if !tr.start.Before(e.at) {
				i = j
			}
		}
		p := &out[i]
		p.Calls++
		if !tr.ok {
			p.Failed++
			continue
		}
		gaps[i] = append(gaps[i], tr.gap)
		if tr.gap > 300*time.Millisecond {
			p.Slow++
			p.SlowAttemptsMax = max(p.SlowAttemptsMax, tr.attempts)
			if tr.answeredBy == 0 {
				p.SlowOn1++
			} else {
				firstEnds[i] = append(firstEnds[i], tr.firstEnd)
			}
		}
	}
	for i := range out {
		out[i].GapP50, out[i].GapP99, out[i].GapMax = pct(gaps[i], 50), pct(gaps[i], 99), pct(gaps[i], 100)
		out[i].SlowFirstEndP50 = pct(firstEnds[i], 50)
	}
	return out
}

// pct is the q-th percentile of ds in ms (0 for none).
func pct(ds []time.Duration, q int) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(len(ds)*q/100, len(ds)-1)
	return float64(ds[i].Microseconds()) / 1000
}

// staleCommits counts the exchanges of one session (its ctx keys, in seq
// order) committed by a stale owner: under an epoch below an earlier
// exchange's, or written (at their key's revision) after another epoch
// of the session had begun: another exchange's, or ownerRev, its owner
// record's now (0: none). An epoch is an owner record's revision, so
// each one seen proves the record was rewritten then; fencing must make
// a commit under an older one impossible, whatever seq it wrote.
func staleCommits(kvs []*mvccpb.KeyValue, ownerRev int64) int64 {
	epochs := map[int64]bool{}
	if ownerRev > 0 {
		epochs[ownerRev] = true
	}
	recEpochs := make([]int64, len(kvs))
	for j, kv := range kvs {
		var x struct {
			Epoch int64 `json:"epoch"`
		}
		json.Unmarshal(kv.Value, &x)
		recEpochs[j] = x.Epoch
		epochs[x.Epoch] = true
	}
	var stale, maxEpoch int64
	for j, kv := range kvs {
		newer := recEpochs[j] < maxEpoch
		for e := range epochs {
			if recEpochs[j] < e && e < kv.ModRevision {
				newer = true
			}
		}
		if newer {
			stale++
		}
		maxEpoch = max(maxEpoch, recEpochs[j])
	}
	return stale
}
