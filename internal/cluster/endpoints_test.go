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
