package etcdtest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a real etcd cluster of several members in the test's
// process, each on its own loopback ports and directory, that a test can
// stop and start again member by member (quorum loss and return).
type Cluster struct {
	t         testing.TB
	cfgs      []*embed.Config
	members   []*embed.Etcd // nil: stopped
	Endpoints []string
}

// StartCluster starts an n-member cluster and stops it when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, members: make([]*embed.Etcd, n)}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprint("m", i)
		cfg.Dir = t.TempDir()
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		client, peer := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		initial = append(initial, cfg.Name+"="+peer.String())
		c.cfgs = append(c.cfgs, cfg)
		c.Endpoints = append(c.Endpoints, client.String())
	}
	for _, cfg := range c.cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	// Members wait for each other to form the cluster: start them all,
	// then wait.
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- c.start(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.Stop(i)
		}
	})
	for i := range n {
		c.ready(i)
	}
	return c
}

func (c *Cluster) start(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("member %d: %w", i, err)
	}
	c.members[i] = e
	return nil
}

func (c *Cluster) ready(i int) {
	select {
	case <-c.members[i].Server.ReadyNotify():
	case <-time.After(60 * time.Second): // generous: the machine is shared
		c.t.Fatalf("etcdtest: member %d not ready after 60s", i)
	}
}

// Server is the cluster as one Server: its endpoints are every member's.
func (c *Cluster) Server() *Server { return &Server{Endpoints: c.Endpoints} }

// Stop stops member i (its data stays for Restart).
func (c *Cluster) Stop(i int) {
	if c.members[i] != nil {
		c.members[i].Close()
		c.members[i] = nil
	}
}

// Restart starts member i again from its data, on the same ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
	c.ready(i)
}
