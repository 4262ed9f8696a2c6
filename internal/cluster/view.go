package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodeView is one node of the cluster as this node sees it
// (resilientctl nodes).
type NodeView struct {
	Name      string    `json:"name"`
	Advertise string    `json:"advertise"`
	Health    Health    `json:"health"`
	Started   time.Time `json:"started"`
	// RingShare is the node's share of the ring's hash space (0 unless
	// serving).
	RingShare float64 `json:"ring_share"`
	// Sessions is the number of owner records in etcd naming the node.
	Sessions int `json:"sessions"`
	// Heartbeat is "self", "alive" or "dead", as this node's heartbeat
	// judges it, or "none" without a connection.
	Heartbeat string     `json:"heartbeat"`
	Isolation *Isolation `json:"isolation,omitempty"`
}

// ClusterView is the cluster as one node sees it.
type ClusterView struct {
	Node  string     `json:"node"` // the node answering
	Nodes []NodeView `json:"nodes"`
	// Quorum is empty while etcd confirms reads, else why not.
	Quorum string `json:"quorum,omitempty"`
}

// View returns the cluster as this node sees it: the registered nodes,
// their ring share, the sessions each owns (read from etcd: one range
// read of the owner records) and this node's heartbeat of each.
func (m *Mesh) View(ctx context.Context) (ClusterView, error) {
	v := ClusterView{Node: m.node.Name()}
	if err := m.node.Quorum(); err != nil {
		v.Quorum = err.Error()
	}
	owned := map[string]int{}
	r, err := m.node.cli.Get(ctx, m.node.keys.owners(), clientv3.WithPrefix())
	if err != nil {
		return v, fmt.Errorf("cluster: reading the owner records: %w", err)
	}
	for _, kv := range r.Kvs {
		var rec ownerRecord
		if json.Unmarshal(kv.Value, &rec) == nil {
			owned[rec.Node]++
		}
	}
	share := map[string]float64{}
	for _, mi := range m.node.Ring() {
		share[mi.Name] = mi.Share
	}
	isolated := map[string]Isolation{}
	for _, iso := range m.node.Isolations() {
		isolated[iso.Node] = iso
	}
	for _, info := range m.node.Members() {
		nv := NodeView{Name: info.Name, Advertise: info.Advertise, Health: info.Health, Started: info.Started,
			RingShare: share[info.Name], Sessions: owned[info.Name], Heartbeat: "none"}
		switch p := m.peer(info.Name); {
		case info.Name == m.node.Name():
			nv.Heartbeat = "self"
		case p == nil:
		case p.dead():
			nv.Heartbeat = "dead"
		default:
			nv.Heartbeat = "alive"
		}
		if iso, ok := isolated[info.Name]; ok {
			nv.Isolation = &iso
		}
		v.Nodes = append(v.Nodes, nv)
	}
	return v, nil
}
