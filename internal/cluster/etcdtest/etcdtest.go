// Package etcdtest runs a real etcd server in the test's process
// (go.etcd.io/etcd/server/v3/embed) for tests of cluster mode: the same
// server code as the etcd binary, with its Raft, its MVCC store and its
// transactions, on loopback ports and a temporary directory.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is one in-process etcd member.
type Server struct {
	Etcd      *embed.Etcd
	Endpoints []string
}

// Start starts a single-member etcd and stops it when the test ends. It
// does not fsync (a test's data need not survive power loss); benchmarks
// that compare durable writes use StartDurable.
func Start(t testing.TB) *Server { return start(t, false) }

// StartDurable is Start with etcd's fsyncs, as in production.
func StartDurable(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, fsync bool) *Server {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = !fsync
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("etcdtest: start: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second): // generous: the machine is shared
		t.Fatal("etcdtest: etcd not ready after 60s")
	}
	return &Server{Etcd: e, Endpoints: []string{client.String()}}
}

// Client returns a client of s, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freeURL picks a free loopback port. Another process may take it before
// etcd binds it; the test then fails at Start, saying so.
func freeURL(t testing.TB) url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: fmt.Sprint(l.Addr())}
}
