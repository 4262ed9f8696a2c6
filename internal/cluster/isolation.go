package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrUnknownNode means a node name that is not registered in the cluster.
var ErrUnknownNode = errors.New("no such node in the cluster")

// Isolation is an operator's isolation of a node, from any node
// (resilientctl isolate --node NAME): durable in etcd, so that it holds
// across the node's restarts until it is released.
type Isolation struct {
	Node   string    `json:"node"`
	By     string    `json:"by"` // the node the command was given to
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// Isolate isolates node: it leaves the ring, takes no session, gives up
// the ones it owns (they move to the nodes that are asked for them), and
// is told through OnIsolated (the daemon cuts it off the mesh).
func (n *Node) Isolate(ctx context.Context, node, reason string) error {
	if _, ok := n.Member(node); !ok {
		return fmt.Errorf("cluster: isolate %q: %w", node, ErrUnknownNode)
	}
	v, _ := json.Marshal(Isolation{Node: node, By: n.opts.Node, Reason: reason, Since: n.opts.Now().UTC()})
	if _, err := n.cli.Put(ctx, n.keys.isolation(node), string(v)); err != nil {
		return fmt.Errorf("cluster: isolate %q: %w", node, err)
	}
	return nil
}

// Release ends node's isolation: it serves again.
func (n *Node) Release(ctx context.Context, node string) error {
	r, err := n.cli.Delete(ctx, n.keys.isolation(node))
	if err != nil {
		return fmt.Errorf("cluster: release %q: %w", node, err)
	}
	if r.Deleted == 0 {
		return fmt.Errorf("cluster: release %q: not isolated: %w", node, ErrUnknownNode)
	}
	return nil
}

// Isolations are the nodes isolated, by name.
func (n *Node) Isolations() []Isolation {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Isolation, 0, len(n.isolated))
	for _, iso := range n.isolated {
		out = append(out, iso)
	}
	slices.SortFunc(out, func(a, b Isolation) int { return a.Since.Compare(b.Since) })
	return out
}

// Serving reports whether this node serves sessions: registered as
// serving (not isolated or draining).
func (n *Node) Serving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info.Health == Serving
}

// Isolation reports whether this node is isolated, and by what.
func (n *Node) Isolation() (Isolation, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	iso, ok := n.isolated[n.opts.Node]
	return iso, ok && n.info.Health == Isolated
}

// OnIsolated registers f, called (without locks held) when this node is
// isolated (true) or released (false).
func (n *Node) OnIsolated(f func(isolated bool, iso Isolation)) {
	n.mu.Lock()
	n.onIsolated = append(n.onIsolated, f)
	n.mu.Unlock()
}

// loadIsolations reads every isolation; it returns the revision read.
func (n *Node) loadIsolations(ctx context.Context) (int64, error) {
	r, err := n.cli.Get(ctx, n.keys.isolations(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("cluster: reading the isolations: %w", err)
	}
	isolated := map[string]Isolation{}
	for _, kv := range r.Kvs {
		var iso Isolation
		if json.Unmarshal(kv.Value, &iso) == nil && iso.Node != "" {
			isolated[iso.Node] = iso
		}
	}
	n.mu.Lock()
	n.isolated = isolated
	n.mu.Unlock()
	n.applyIsolation(ctx)
	return r.Header.Revision, nil
}

// watchIsolations follows the isolations from rev on.
func (n *Node) watchIsolations(ctx context.Context, rev int64) {
	defer n.wg.Done()
	n.follow(ctx, n.keys.isolations(), rev, func(name string, ev *clientv3.Event) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if ev.Type == clientv3.EventTypeDelete {
			delete(n.isolated, name)
			return
		}
		var iso Isolation
		if json.Unmarshal(ev.Kv.Value, &iso) == nil {
			n.isolated[name] = iso
		}
	}, func() { n.applyIsolation(ctx) }, n.loadIsolations)
}

// applyIsolation makes this node's registration say what the isolations
// say of it, and tells OnIsolated when that changed.
func (n *Node) applyIsolation(ctx context.Context) {
	n.mu.Lock()
	iso, isolated := n.isolated[n.opts.Node]
	was := n.info.Health == Isolated
	fs := slices.Clone(n.onIsolated)
	n.mu.Unlock()
	if isolated == was {
		return
	}
	h := Serving
	if isolated {
		h = Isolated
	}
	// The registration is rewritten by the next registration if this
	// fails (the lease lost): register reads n.info.
	if err := n.SetHealth(ctx, h); err != nil {
		n.log.Warn("cluster: writing this node's health", "health", h, "err", err)
	}
	n.log.Warn("cluster: node isolation", "isolated", isolated, "by", iso.By, "reason", iso.Reason)
	for _, f := range fs {
		f(isolated, iso)
	}
}
