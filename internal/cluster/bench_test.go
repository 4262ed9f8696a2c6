package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// sessionAppender is what both stores offer a session call.
type sessionAppender interface {
	Context(ctx context.Context, pool, session string) ([]session.Exchange, error)
	Append(ctx context.Context, pool, session string, ex session.Exchange, lim session.Limit, idemKey string, result json.RawMessage) (session.Exchange, error)
}

// BenchmarkDurableAppend: a session call's durable part (its context
// read, its exchange committed with an idempotent result) on the local
// bbolt store, the baseline, and on etcd (one member, fsync on, on this
// machine's disk), side by side; each parallel caller has its own session.
//
//	go test -run X -bench DurableAppend -cpu 1,16 ./internal/cluster
func BenchmarkDurableAppend(b *testing.B) {
	b.Run("bbolt", func(b *testing.B) {
		st, err := session.Open(b.Context(), session.Options{Path: filepath.Join(b.TempDir(), "state.db")})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchAppend(b, st)
	})
	b.Run("etcd", func(b *testing.B) {
		srv := etcdtest.StartDurable(b)
		n, err := Join(b.Context(), srv.Client(b), Options{Cluster: "b", Node: "a", LeaseTTL: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close(context.Background())
		st := NewStore(n, StoreOptions{})
		defer st.Close()
		benchAppend(b, st)
	})
}

func benchAppend(b *testing.B, st sessionAppender) {
	var sessions atomic.Int64
	in, out := json.RawMessage(`{"q":"what is the weather"}`), json.RawMessage(`{"answer":"sunny, 21 degrees"}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sess := fmt.Sprint("s", sessions.Add(1))
		i := 0
		for pb.Next() {
			i++
			if _, err := st.Context(b.Context(), "p", sess); err != nil {
				b.Error(err)
				return
			}
			if _, err := st.Append(b.Context(), "p", sess, session.Exchange{Input: in, Output: out}, session.Limit{Entries: 64}, fmt.Sprint(sess, "-", i), out); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkForwardedCall: a session call served by its owner (the
// baseline) against the same call landing on another node and forwarded
// to the owner over the mesh; both commit to the same etcd (no fsync: the
// difference is the forwarding).
//
//	go test -run X -bench ForwardedCall ./internal/cluster
func BenchmarkForwardedCall(b *testing.B) {
	srv := etcdtest.Start(b)
	owner, other := startMesh(b, srv, "a").mesh, startMesh(b, srv, "b").mesh
	deadline := time.Now().Add(wait)
	for other.PeerDead("a") {
		if time.Now().After(deadline) {
			b.Fatal("no connection to a")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := owner.Call(b.Context(), "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage("0")}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *Mesh
	}{{"local", owner}, {"forwarded", other}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.m.Call(b.Context(), "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage("1")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
