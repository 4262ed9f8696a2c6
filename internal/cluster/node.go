package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilienced/resilienced/internal/ring"
)

// Health is what a node says of itself in its registration.
type Health string

// Node health states. Only serving nodes are on the ring and may own
// sessions; the others' sessions may be taken over.
const (
	Serving  Health = "serving"
	Draining Health = "draining"
	Isolated Health = "isolated"
)

func (h Health) ringState() ring.State {
	switch h {
	case Serving:
		return ring.Active
	case Isolated:
		return ring.Isolated
	}
	return ring.Draining
}

// NodeInfo is a node's registration in etcd, under its lease.
type NodeInfo struct {
	Name      string    `json:"name"`
	Advertise string    `json:"advertise"`
	Pools     []string  `json:"pools"`
	Health    Health    `json:"health"`
	Started   time.Time `json:"started"`
}

// Options configure a Node.
type Options struct {
	// Cluster names the key space: /resilienced/<Cluster>/.
	Cluster string
	// Node is this node's name, unique in the cluster.
	Node string
	// Advertise is the host:port peers dial for inter-node calls.
	Advertise string
	// Pools are the pools this node serves.
	Pools []string
	// LeaseTTL is the node's lease; whole seconds, at least 2s.
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// Now is the node's clock, by which it judges its own lease.
	Now func() time.Time
	// QuorumTimeout: etcd not confirming a linearizable read for this
	// long is taken for quorum lost (session calls fail at once); 0
	// means DefaultQuorumTimeout.
	QuorumTimeout time.Duration
}

// leaseMargin is the part of the lease a node does not count on: its
// clock may run slower than the etcd leader's. Past TTL·(1-leaseMargin)
// since its last confirmed keep-alive was sent, a node serves nothing.
const leaseMargin = 0.2

// Node is this daemon's membership in the cluster: its registration under
// a lease kept alive, and a view of the other nodes (a watch) with a ring
// over the serving ones.
type Node struct {
	cli  *clientv3.Client
	opts Options
	keys keys
	log  *slog.Logger

	mu         sync.Mutex
	info       NodeInfo
	lease      clientv3.LeaseID // 0: none confirmed
	validUntil time.Time        // by this node's clock
	members    map[string]NodeInfo
	ring       *ring.Ring
	onLost     []func(error)
	changed    chan struct{} // closed and replaced when members change
	quorum     quorum
	// regStale: the last change of health could not be written; the
	// keep-alive writes the registration again once it can.
	regStale   bool
	isolated   map[string]Isolation // by node
	onIsolated []func(bool, Isolation)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Join registers the node in etcd under a new lease and starts keeping
// the lease alive and watching the other nodes. It returns once the node
// is registered and has read the membership.
func Join(ctx context.Context, cli *clientv3.Client, opts Options) (*Node, error) {
	if opts.Node == "" || opts.Cluster == "" {
		return nil, errors.New("cluster: a node needs a cluster name and a node name")
	}
	if opts.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("cluster: lease TTL %s is under 2s", opts.LeaseTTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.QuorumTimeout <= 0 {
		opts.QuorumTimeout = DefaultQuorumTimeout
	}
	n := &Node{
		cli: cli, opts: opts, keys: newKeys(opts.Cluster), log: opts.Logger.With("node", opts.Node),
		info:     NodeInfo{Name: opts.Node, Advertise: opts.Advertise, Pools: slices.Clone(opts.Pools), Health: Serving, Started: opts.Now().UTC()},
		members:  map[string]NodeInfo{},
		isolated: map[string]Isolation{},
		ring:     ring.New(ring.Options{}),
		changed:  make(chan struct{}),
	}
	n.resetQuorumLocked()
	if err := n.register(ctx); err != nil {
		return nil, err
	}
	rev, err := n.loadMembers(ctx)
	if err != nil {
		n.cli.Revoke(context.Background(), n.lease)
		return nil, err
	}
	isoRev, err := n.loadIsolations(ctx)
	if err != nil {
		n.cli.Revoke(context.Background(), n.lease)
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(4)
	go n.keepAlive(runCtx)
	go n.watch(runCtx, rev)
	go n.watchQuorum(runCtx)
	go n.watchIsolations(runCtx, isoRev)
	if eps := cli.Endpoints(); len(eps) > 1 {
		n.wg.Add(1)
		go n.watchEndpoints(runCtx, eps)
	}
	return n, nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.opts.Node }

// Info is this node's registration as last written.
func (n *Node) Info() NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info
}

// register grants a new lease and puts the registration on it.
func (n *Node) register(ctx context.Context) error {
	start := n.opts.Now()
	g, err := n.cli.Grant(ctx, int64(n.opts.LeaseTTL/time.Second))
	if err != nil {
		return fmt.Errorf("cluster: etcd lease: %w", err)
	}
	n.mu.Lock()
	info := n.info
	n.mu.Unlock()
	v, _ := json.Marshal(info)
	if _, err := n.cli.Put(ctx, n.keys.node(n.opts.Node), string(v), clientv3.WithLease(g.ID)); err != nil {
		n.cli.Revoke(context.Background(), g.ID)
		return fmt.Errorf("cluster: registering node %s: %w", n.opts.Node, err)
	}
	n.mu.Lock()
	n.lease = g.ID
	n.validUntil = start.Add(n.ttlUsable(time.Duration(g.TTL) * time.Second))
	n.mu.Unlock()
	n.log.Info("cluster: registered", "lease", fmt.Sprintf("%x", int64(g.ID)), "ttl", g.TTL)
	return nil
}

func (n *Node) ttlUsable(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl) * (1 - leaseMargin))
}

// Lease returns the node's lease while the node can confirm it by its own
// clock; false when it cannot (then it must serve no session).
func (n *Node) Lease() (clientv3.LeaseID, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lease == 0 || !n.opts.Now().Before(n.validUntil) {
		return 0, false
	}
	return n.lease, true
}

// OnLeaseLost registers f, called (without locks held) each time the node
// stops being able to confirm its lease: its sessions are no longer its.
func (n *Node) OnLeaseLost(f func(error)) {
	n.mu.Lock()
	n.onLost = append(n.onLost, f)
	n.mu.Unlock()
}

// keepAlive renews the lease every third of its TTL with KeepAliveOnce,
// timing each from before it was sent, so that the node's idea of its
// lease never outlasts etcd's. A lease that etcd no longer knows, or that
// the node could not confirm in time, is lost: the node says so
// (OnLeaseLost) and registers again under a new lease.
func (n *Node) keepAlive(ctx context.Context) {
	defer n.wg.Done()
	every := n.opts.LeaseTTL / 3
	retry := 100 * time.Millisecond
	wait := every
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n.mu.Lock()
		lease := n.lease
		n.mu.Unlock()
		if lease == 0 {
			rctx, cancel := context.WithTimeout(ctx, every)
			err := n.register(rctx)
			cancel()
			if err != nil {
				n.log.Warn("cluster: registering again", "err", err)
				wait = retry
				continue
			}
			wait = every
			continue
		}
		start := n.opts.Now()
		// One attempt may take a third of the TTL: one stuck on a dead
		// connection must leave time for another (the client moves to
		// another member), and a slow one still counts from start.
		kctx, cancel := context.WithTimeout(ctx, every)
		r, err := n.cli.KeepAliveOnce(kctx, lease)
		cancel()
		switch {
		case err == nil:
			n.mu.Lock()
			n.validUntil = start.Add(n.ttlUsable(time.Duration(r.TTL) * time.Second))
			n.mu.Unlock()
			wait = every
			n.rewriteStale(ctx)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			n.loseLease(lease, fmt.Errorf("%w: etcd has no lease %x", ErrLeaseExpiring, int64(lease)))
			wait = 0
		default:
			if ctx.Err() != nil {
				return
			}
			n.mu.Lock()
			expired := !n.opts.Now().Before(n.validUntil)
			n.mu.Unlock()
			if expired {
				n.loseLease(lease, fmt.Errorf("%w: no keep-alive confirmed within the lease: %v", ErrLeaseExpiring, err))
			}
			wait = retry
		}
	}
}

func (n *Node) loseLease(lease clientv3.LeaseID, err error) {
	n.mu.Lock()
	if n.lease != lease {
		n.mu.Unlock()
		return
	}
	n.lease = 0
	fs := slices.Clone(n.onLost)
	n.mu.Unlock()
	n.log.Warn("cluster: lease lost", "err", err)
	for _, f := range fs {
		f(err)
	}
}

// SetHealth changes the node's registration: a node that is not serving
// leaves the ring, and its sessions may be taken over.
func (n *Node) SetHealth(ctx context.Context, h Health) error {
	n.mu.Lock()
	n.info.Health = h // the next registration says it if this put fails
	info := n.info
	n.mu.Unlock()
	lease, ok := n.Lease()
	if !ok {
		n.setRegStale(true)
		return ErrLeaseExpiring
	}
	v, _ := json.Marshal(info)
	_, err := n.cli.Put(ctx, n.keys.node(n.opts.Node), string(v), clientv3.WithLease(lease))
	n.setRegStale(err != nil)
	return err
}

func (n *Node) setRegStale(stale bool) {
	n.mu.Lock()
	n.regStale = stale
	n.mu.Unlock()
}

// rewriteStale writes the registration again if a change of health could
// not be written (the node was cut off from etcd when it was isolated).
func (n *Node) rewriteStale(ctx context.Context) {
	n.mu.Lock()
	stale, h := n.regStale, n.info.Health
	n.mu.Unlock()
	if stale {
		if err := n.SetHealth(ctx, h); err != nil {
			n.log.Warn("cluster: writing this node's health again", "health", h, "err", err)
		}
	}
}

// loadMembers reads every registration and rebuilds the ring; it returns
// the revision read.
func (n *Node) loadMembers(ctx context.Context) (int64, error) {
	r, err := n.cli.Get(ctx, n.keys.nodes(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("cluster: reading the nodes: %w", err)
	}
	members := map[string]NodeInfo{}
	for _, kv := range r.Kvs {
		var info NodeInfo
		if json.Unmarshal(kv.Value, &info) == nil && info.Name != "" {
			members[info.Name] = info
		}
	}
	n.mu.Lock()
	for name := range n.members {
		if _, ok := members[name]; !ok {
			n.ring.Remove(name)
		}
	}
	n.members = map[string]NodeInfo{}
	n.mu.Unlock()
	for _, info := range members {
		n.setMember(info)
	}
	return r.Header.Revision, nil
}

func (n *Node) setMember(info NodeInfo) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.members[info.Name]; ok {
		n.ring.SetState(info.Name, info.Health.ringState())
	} else {
		n.ring.Add(info.Name, info.Health.ringState())
	}
	n.members[info.Name] = info
	n.notifyLocked()
}

func (n *Node) removeMember(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.members[name]; !ok {
		return
	}
	delete(n.members, name)
	n.ring.Remove(name)
	n.notifyLocked()
}

func (n *Node) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// watch follows the registrations from rev on.
func (n *Node) watch(ctx context.Context, rev int64) {
	defer n.wg.Done()
	n.follow(ctx, n.keys.nodes(), rev, func(name string, ev *clientv3.Event) {
		if ev.Type == clientv3.EventTypeDelete {
			n.removeMember(name)
			return
		}
		var info NodeInfo
		if json.Unmarshal(ev.Kv.Value, &info) == nil && info.Name == name {
			n.setMember(info)
		}
	}, nil, n.loadMembers)
}

// follow watches the keys under prefix from rev on, calling apply for
// each event (with the key's name under prefix) and then batch, if set,
// after each response; after a watch error (a compacted revision, etcd
// unreachable) it reads them all again with load.
func (n *Node) follow(ctx context.Context, prefix string, rev int64, apply func(name string, ev *clientv3.Event), batch func(), load func(context.Context) (int64, error)) {
	for ctx.Err() == nil {
		wch := n.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				rev = ev.Kv.ModRevision
				apply(string(ev.Kv.Key[len(prefix):]), ev)
			}
			if batch != nil {
				batch()
			}
		}
		for ctx.Err() == nil {
			r, err := load(ctx)
			if err == nil {
				rev = r
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// Members are the registered nodes, by name.
func (n *Node) Members() []NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]NodeInfo, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member is one node's registration; false if it is not registered (its
// lease expired, or it left).
func (n *Node) Member(name string) (NodeInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.members[name]
	return m, ok
}

// Changed is closed at the next change of the membership.
func (n *Node) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// Place names the serving node a new session key goes to: consistent
// hashing over the serving nodes, the same on every node that sees the
// same membership. It does not assign the key: the owner record in etcd
// does, so nodes with different views cannot both own a session.
func (n *Node) Place(key string) (string, bool) {
	return n.ring.Lookup(key)
}

// Ring describes the ring over the nodes.
func (n *Node) Ring() []ring.MemberInfo { return n.ring.Members() }

// Close stops the keep-alive and the watch and revokes the lease: the
// node's registration and its owner records go at once, and its sessions
// may be taken over without waiting for the TTL.
func (n *Node) Close(ctx context.Context) error {
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	lease := n.lease
	n.lease = 0
	n.mu.Unlock()
	if lease == 0 {
		return nil
	}
	_, err := n.cli.Revoke(ctx, lease)
	return err
}
