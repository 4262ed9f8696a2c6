package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// silencer is a TCP proxy to an etcd member that can go silent: the
// connections stay open and nothing passes, as with a machine cut off
// (no reset, no error), which loopback cannot otherwise give.
type silencer struct {
	ln     net.Listener
	target string
	silent atomic.Bool
	wg     sync.WaitGroup
}

func newSilencer(t *testing.T, target string) *silencer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silencer{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *silencer) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pipe := func(dst, src net.Conn) {
			defer dst.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if err != nil {
					return
				}
				if p.silent.Load() {
					continue // swallowed
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}

func (p *silencer) url() string { return "http://" + p.ln.Addr().String() }

// TestSilentMemberLeftOut reaches a 3-member etcd through proxies, one of
// which goes silent (the member is cut off from this node, not from the
// other members: etcd keeps its quorum). The node leaves that member out
// of its client's endpoints, and session calls go on, each answered at
// its first attempt; quorum is never taken for lost. Without it, the
// client's requests spread to the silent member hang until gRPC's
// keep-alive gives the connection up.
func TestSilentMemberLeftOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd")
	}
	c := etcdtest.StartCluster(t, 3)
	var proxies []*silencer
	var eps []string
	for _, ep := range c.Endpoints {
		p := newSilencer(t, strings.TrimPrefix(ep, "http://"))
		proxies = append(proxies, p)
		eps = append(eps, p.url())
	}
	a := startMesh(t, &etcdtest.Server{Endpoints: eps}, "a")
	for i := 1; i <= 3; i++ {
		call(t, a.mesh, "s", i)
	}

	proxies[2].silent.Store(true)
	eventually(t, "the silent member is left out of the endpoints", func() bool {
		return !slices.Contains(a.cli.Endpoints(), eps[2])
	})
	for i := 4; i <= 30; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		res, err := a.mesh.Call(ctx, "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage(fmt.Sprint(i)), IdempotencyKey: fmt.Sprint("s-", i)})
		cancel()
		if err != nil {
			t.Fatalf("call %d with one member silent: %v", i, err)
		}
		if string(res.Output) != fmt.Sprint(i-1) {
			t.Fatalf("call %d saw %s exchanges, want %d", i, res.Output, i-1)
		}
	}
	if err := a.Quorum(); err != nil {
		t.Fatalf("quorum taken for lost with two members of three answering: %v", err)
	}

	proxies[2].silent.Store(false)
	eventually(t, "the member is back in the endpoints once it answers", func() bool {
		return slices.Contains(a.cli.Endpoints(), eps[2])
	})
}

// TestUsableMembers: a member that knows no leader, or has more than
// maxMemberLag entries to apply behind the highest commit index reported,
// is left out; with none caught up, those that answered; with none
// answering, all.
func TestUsableMembers(t *testing.T) {
	all := []string{"a", "b", "c"}
	st := func(leader, committed, applied uint64) *clientv3.StatusResponse {
		return &clientv3.StatusResponse{Leader: leader, RaftIndex: committed, RaftAppliedIndex: applied}
	}
	for _, tc := range []struct {
		name string
		st   []*clientv3.StatusResponse
		want []string
	}{
		{"all caught up", []*clientv3.StatusResponse{st(1, 5000, 4990), st(1, 5003, 5000), st(1, 5001, 5001)}, all},
		{"one cut off", []*clientv3.StatusResponse{st(1, 5000, 5000), nil, st(1, 5001, 5001)}, []string{"a", "c"}},
		{"one back, catching up", []*clientv3.StatusResponse{st(1, 9000, 9000), st(1, 9000, 3000), st(1, 9001, 9001)}, []string{"a", "c"}},
		{"one back, no leader known yet", []*clientv3.StatusResponse{st(1, 9000, 9000), st(0, 9000, 9000), st(1, 9001, 9001)}, []string{"a", "c"}},
		{"lag at the bound", []*clientv3.StatusResponse{st(1, 9000, 9000-maxMemberLag), nil, nil}, []string{"a"}},
		{"no quorum: those that answer", []*clientv3.StatusResponse{nil, st(0, 100, 100), nil}, []string{"b"}},
		{"none answers", []*clientv3.StatusResponse{nil, nil, nil}, all},
	} {
		if got := usableMembers(all, tc.st); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
