package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cluster"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/session"
)

// clusterWiring is cluster mode (config cluster:, internal/cluster): the
// node's registration in etcd, the session store on etcd that the
// supervisor uses instead of the local one, and the mesh that routes a
// session's call to its owner. nil in single-node mode.
type clusterWiring struct {
	cli   *clientv3.Client
	node  *cluster.Node
	store *cluster.Store
	mesh  *cluster.Mesh
	ln    net.Listener
	token []byte
	tls   *tls.Config // the mesh's mutual TLS; nil: h2c
}

// joinCluster connects to etcd, registers the node and listens on its
// advertise address; the mesh starts with startMesh, once the supervisor
// exists.
func (d *daemon) joinCluster(ctx context.Context, cfg *config.Config) (*clusterWiring, error) {
	cc := cfg.Cluster
	token, err := readClusterToken(cc.TokenFile)
	if err != nil {
		return nil, err
	}
	var meshTLS *tls.Config
	if t := cc.TLS; t.CAFile != "" {
		if meshTLS, err = cluster.MeshTLS(t.CAFile, t.CertFile, t.KeyFile); err != nil {
			return nil, err
		}
	}
	var tlsCfg *tls.Config
	if t := cc.Etcd.TLS; t.CAFile != "" || t.CertFile != "" {
		tlsCfg, err = (&transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster.etcd.tls: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cc.Etcd.Endpoints, DialTimeout: cc.Etcd.DialTimeout, TLS: tlsCfg, Logger: zap.NewNop(),
		// A connection to a member that went silent (its machine cut
		// off) is found within seconds, and one that comes back is dialed
		// again within a second, not after gRPC's default backoff of up
		// to two minutes: the node must be able to renew its lease.
		// (etcd refuses keep-alive pings more often than its
		// --grpc-keepalive-min-time, 5s by default, with GOAWAY.)
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd: %w", err)
	}
	ln, err := net.Listen("tcp", cc.Advertise)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("cluster.advertise: %w", err)
	}
	pools := make([]string, len(cfg.Pools))
	for i, p := range cfg.Pools {
		pools[i] = p.Name
	}
	jctx, cancel := context.WithTimeout(ctx, cc.Etcd.DialTimeout+cc.LeaseTTL)
	defer cancel()
	node, err := cluster.Join(jctx, cli, cluster.Options{
		Cluster: cc.Name, Node: cc.Node, Advertise: cc.Advertise, Pools: pools, LeaseTTL: cc.LeaseTTL, Logger: d.log,
	})
	if err != nil {
		ln.Close()
		cli.Close()
		return nil, err
	}
	store := cluster.NewStore(node, cluster.StoreOptions{Logger: d.log, OnLost: func(pool, sess string, err error) {
		// The store serves the session no more. Its agents hold nothing
		// of it between calls (the context travels with each call), but
		// one running a call of it now acts on a context another node
		// owns: the Kill Switch takes it out.
		d.log.Warn("cluster: session no longer owned here", "pool", pool, "session", sess, "err", err)
		if d.sup != nil && d.ks != nil {
			go d.ks.isolateServing(pool, sess, err) // not under the store's locks
		}
	}})
	d.log.Info("cluster: joined", "cluster", cc.Name, "node", cc.Node, "advertise", cc.Advertise, "etcd", cc.Etcd.Endpoints)
	return &clusterWiring{cli: cli, node: node, store: store, ln: ln, token: token, tls: meshTLS}, nil
}

// startMesh serves peers and routes calls through local, the supervisor.
func (c *clusterWiring) startMesh(d *daemon, local cluster.Caller) error {
	mesh, err := cluster.NewMesh(c.node, c.store, cluster.MeshOptions{Token: c.token, Local: local, Logger: d.log, TLS: c.tls})
	if err != nil {
		return err
	}
	c.mesh = mesh
	go func() {
		if err := mesh.Serve(c.ln); err != nil {
			d.fatal <- fmt.Errorf("cluster mesh: %w", err)
		}
	}()
	return nil
}

// clusterIsolationMarker, in the state directory, says that this node's
// cut from the mesh is the cluster's doing (resilientctl isolate --node
// NAME), not an operator's on this node alone.
const clusterIsolationMarker = "cluster-isolation"

// followIsolation cuts this node off the mesh (config mesh:) while the
// cluster holds it isolated, and puts it back when it is released. The
// marker lets a daemon that starts after a release it did not see undo
// its predecessor's cut, and leaves alone a cut made with `isolate --node`
// on this node only. Without mesh: the isolation takes the node out of
// service and no more.
func (d *daemon) followIsolation() {
	if sw, done, err := d.ks.nodeSwitch(context.Background()); err == nil {
		if sw.NodeIsolated() { // by a previous daemon
			d.cluster.mesh.SetCutOff("cut off the mesh before this daemon started")
		}
		done()
	}
	if d.cfg.Load().Mesh.Interface == "" {
		d.log.Info("cluster: no mesh: in the config, so an isolation of this node takes it out of service without cutting its network")
		return
	}
	marker := filepath.Join(d.cfg.Load().StateDir, clusterIsolationMarker)
	var mu sync.Mutex
	apply := func(isolated bool, iso cluster.Isolation) {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if isolated {
			if err := os.WriteFile(marker, []byte(iso.By+": "+iso.Reason+"\n"), 0o600); err != nil {
				d.log.Error("cluster: recording the isolation", "err", err)
			}
			if err := d.ks.isolateNode(ctx, fmt.Sprintf("node isolated by %s (%s): cut off mesh %s", iso.By, iso.Reason, d.cfg.Load().Mesh.Interface)); err != nil {
				d.log.Error("cluster: this node is isolated but could not cut itself off the mesh", "err", err)
			}
			return
		}
		if _, err := os.Stat(marker); err != nil {
			return // not cut by the cluster
		}
		if err := d.ks.releaseNode(ctx, "node released in the cluster: back on the mesh"); err != nil {
			d.log.Error("cluster: this node is released but could not restore its mesh", "err", err)
			return
		}
		os.Remove(marker)
	}
	d.cluster.node.OnIsolated(apply)
	iso, isolated := d.cluster.node.Isolation()
	apply(isolated, iso)
}

// close leaves the cluster: the lease is revoked, so the node's sessions
// are free for the other nodes at once.
func (c *clusterWiring) close(ctx context.Context) {
	if c == nil {
		return
	}
	if c.mesh != nil {
		c.mesh.Close()
	} else {
		c.ln.Close()
	}
	c.store.Close()
	c.node.Close(ctx)
	c.cli.Close()
}

// clusterSessions is what `resilientctl sessions` and `session show`
// read in cluster mode: the sessions this node owns, from its cache (the
// others: sessions --cluster). Reading one takes nothing over.
type clusterSessions struct{ store *cluster.Store }

func (c clusterSessions) Sessions(_ context.Context, pool string) ([]session.SessionInfo, error) {
	return c.store.OwnedSessions(pool), nil
}

func (c clusterSessions) Context(_ context.Context, pool, sess string) ([]session.Exchange, error) {
	if exs, ok := c.store.OwnedContext(pool, sess); ok {
		return exs, nil
	}
	return nil, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound,
		Message: fmt.Sprintf("session %s/%s is not owned by this node (resilientctl sessions --cluster shows where each is)", pool, sess)}
}

// caller is what runs the API's and the MCP front door's calls: the mesh
// in cluster mode, else the supervisor.
func (d *daemon) caller() api.Caller {
	if d.cluster != nil && d.cluster.mesh != nil {
		return d.cluster.mesh
	}
	return d.sup
}

func readClusterToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster.token_file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < config.MinClusterTokenBytes {
		return nil, fmt.Errorf("cluster.token_file: %s: %w", path, errShortToken)
	}
	return b, nil
}

var errShortToken = fmt.Errorf("the cluster token must be at least %d bytes", config.MinClusterTokenBytes)
