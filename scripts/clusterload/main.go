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
// newer one had begun (a stale owner's write); gap_ms_p99 is the p99 of
// the time a call took from its first attempt to its answer, failovers
// included.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
					ctxLen, ok := call(clients, (s+i)%len(clients), *pool, s, i, *attempt, *hedge, *budget)
					gap := time.Since(start)
					calls.Add(1)
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
		var inputs []int
		var maxEpoch int64
		for _, kv := range r.Kvs {
			var x struct {
				Input struct{ I int } `json:"input"`
				Epoch int64           `json:"epoch"`
			}
			json.Unmarshal(kv.Value, &x)
			inputs = append(inputs, x.Input.I)
			if x.Epoch < maxEpoch {
				stale++
			}
			maxEpoch = max(maxEpoch, x.Epoch)
		}
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
	fmt.Printf(`{"nodes":%d,"etcd_members":%d,"calls":%d,"failed":%d,"lost":%d,"doubled":%d,"stale_commits":%d,"gap_ms_p99":%.1f}`+"\n",
		nodes.Count, len(members.Members), calls.Load(), failed.Load(), lost, doubled, stale, p99)
}

var (
	errMu  sync.Mutex
	errors = map[string]int{}
)

// noteError counts attempts that failed, by their message's start.
func noteError(err error) {
	msg := err.Error()
	if len(msg) > 90 {
		msg = msg[:90]
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
func call(clients []*api.Client, first int, pool string, s, i int, attempt, hedge, budget time.Duration) (int, bool) {
	req := api.CallRequest{
		Input:   json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
		Session: fmt.Sprint("s", s),
		Key:     fmt.Sprintf("s%d-%d", s, i),
		Timeout: attempt.String(),
	}
	type answer struct {
		out json.RawMessage
		err error
	}
	answers := make(chan answer)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deadline := time.Now().Add(budget)
	launched, pending, fails := 0, 0, 0
	launch := func() {
		c := clients[(first+launched)%len(clients)]
		launched++
		pending++
		go func() {
			actx, acancel := context.WithTimeout(ctx, attempt)
			defer acancel()
			var a answer
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
			if a.err == nil {
				var out struct {
					ContextLen int `json:"context_len"`
				}
				json.Unmarshal(a.out, &out)
				return out.ContextLen, true
			}
			noteError(a.err)
			fails++
			if time.Now().After(deadline) {
				if pending == 0 {
					return 0, false
				}
				continue
			}
			next.Reset(pause())
		case <-next.C:
			if time.Now().Before(deadline) && pending < maxPending {
				launch()
			} else if pending == 0 {
				return 0, false
			}
			next.Reset(hedge)
		}
	}
}
