package config

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// Cluster is cluster mode (top-level `cluster:`): the node registers in
// etcd, keeps a ring over the nodes, and keeps its sessions' owner records
// and contexts in etcd instead of the local bbolt file. It is off unless
// etcd.endpoints is set; single-node mode (bbolt, no etcd) is the default.
type Cluster struct {
	// Name is the cluster's name: every key lives under
	// /resilienced/<name>/ in etcd, so clusters can share an etcd.
	Name string `yaml:"name"`
	// Node is this node's name, unique in the cluster.
	Node string `yaml:"node"`
	// Advertise is the host:port other nodes dial for inter-node calls.
	Advertise string `yaml:"advertise"`
	// TokenFile holds the cluster token that authenticates nodes to each
	// other on the inter-node connection (one line, at least 16 bytes).
	TokenFile string      `yaml:"token_file"`
	Etcd      ClusterEtcd `yaml:"etcd"`
	// TLS, when set, makes the inter-node connection mutual TLS: each
	// node serves with its certificate and key, dials with them, and
	// accepts only peers whose certificate the CA signed (the cluster
	// token is still required). All empty: h2c, the token alone.
	TLS ClusterTLS `yaml:"tls"`
	// LeaseTTL is the node's etcd lease: the authority for cleaning up a
	// node that is gone and for rebuilding the ring.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// ReplicasPerSession is how many nodes are to hold a session, the
	// owner first in ring order. Read and checked; not used yet.
	ReplicasPerSession int `yaml:"replicas_per_session"`
}

// ClusterEtcd is how the node reaches etcd.
type ClusterEtcd struct {
	Endpoints   []string      `yaml:"endpoints"`
	DialTimeout time.Duration `yaml:"dial_timeout"`
	TLS         ClusterTLS    `yaml:"tls"`
}

// ClusterTLS are TLS files: for etcd (cluster.etcd.tls), a client's,
// all empty for plain TCP; for the mesh (cluster.tls), all three or none.
type ClusterTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults of cluster mode.
const (
	DefaultClusterName        = "default"
	DefaultLeaseTTL           = 5 * time.Second
	DefaultEtcdDialTimeout    = 5 * time.Second
	DefaultReplicasPerSession = 2
	minClusterTokenBytes      = 16
	maxReplicasPerSession     = 16
	minLeaseTTL               = 2 * time.Second // etcd's own minimum is about 2 s (its election timeout)
)

// Enabled reports whether cluster mode is on: etcd endpoints are set.
func (c Cluster) Enabled() bool { return len(c.Etcd.Endpoints) > 0 }

// MinClusterTokenBytes is the shortest cluster token the daemon accepts.
const MinClusterTokenBytes = minClusterTokenBytes

func defaultCluster() Cluster {
	return Cluster{
		Name:               DefaultClusterName,
		LeaseTTL:           DefaultLeaseTTL,
		ReplicasPerSession: DefaultReplicasPerSession,
		Etcd:               ClusterEtcd{DialTimeout: DefaultEtcdDialTimeout},
	}
}

func (v *validator) cluster(c Cluster) {
	if c.Name != "" && !validName(c.Name) {
		v.errorf("cluster.name", "%q is not a name: lowercase letters, digits and '-', starting with a letter, at most %d", c.Name, maxNameLen)
	}
	if c.Node != "" && !validName(c.Node) {
		v.errorf("cluster.node", "%q is not a name: lowercase letters, digits and '-', starting with a letter, at most %d", c.Node, maxNameLen)
	}
	if c.Advertise != "" {
		if host, port, err := net.SplitHostPort(c.Advertise); err != nil || host == "" {
			v.errorf("cluster.advertise", "%q is not host:port", c.Advertise)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			v.errorf("cluster.advertise", "%q: port %q is not a number in 1..65535", c.Advertise, port)
		}
	}
	for i, e := range c.Etcd.Endpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(joinIndex("cluster.etcd.endpoints", i), "%q is not an etcd endpoint URL (http://host:port or https://host:port)", e)
		}
	}
	t := c.Etcd.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf("cluster.etcd.tls", "cert_file and key_file go together")
	}
	if m := c.TLS; m != (ClusterTLS{}) && (m.CAFile == "" || m.CertFile == "" || m.KeyFile == "") {
		v.errorf("cluster.tls", "ca_file, cert_file and key_file go together: the mesh is mutual TLS (each node shows its certificate and checks its peers' against the CA)")
	}
	if !c.Enabled() {
		if c.Node != "" || c.Advertise != "" || c.TokenFile != "" {
			v.errorf("cluster.etcd.endpoints", "required when cluster.node, cluster.advertise or cluster.token_file is set: cluster mode is off without etcd")
		}
		return
	}
	v.positive("cluster.etcd.dial_timeout", c.Etcd.DialTimeout)
	if c.LeaseTTL < minLeaseTTL || c.LeaseTTL%time.Second != 0 {
		v.errorf("cluster.lease_ttl", "%s: must be whole seconds, at least %s (etcd leases count seconds)", c.LeaseTTL, minLeaseTTL)
	}
	if c.ReplicasPerSession < 1 || c.ReplicasPerSession > maxReplicasPerSession {
		v.errorf("cluster.replicas_per_session", "%d is not in 1..%d", c.ReplicasPerSession, maxReplicasPerSession)
	}
	for key, val := range map[string]string{"cluster.node": c.Node, "cluster.advertise": c.Advertise, "cluster.token_file": c.TokenFile} {
		if val == "" {
			v.errorf(key, "required in cluster mode (cluster.etcd.endpoints is set)")
		}
	}
}

// clusterMesh checks that isolating a node in cluster mode leaves it its
// etcd: a node cut off from etcd could never learn that it was released,
// and would lose its lease. Cutting the whole mesh interface (no CIDRs)
// cannot be checked against etcd's addresses, so cluster mode asks for
// the CIDRs; an endpoint named by host name is not resolved here.
func (v *validator) clusterMesh(m Mesh, c Cluster) {
	if !c.Enabled() || m.Interface == "" && len(m.CIDRs) == 0 {
		return
	}
	if len(m.CIDRs) == 0 {
		v.errorf("mesh.cidrs", "required in cluster mode: without them node isolation sets %q down, which would cut the node off etcd too; name the peers' networks, not etcd's", m.Interface)
		return
	}
	for i, s := range m.CIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue // reported by cidr
		}
		for _, e := range c.Etcd.Endpoints {
			u, err := url.Parse(e)
			if err != nil {
				continue
			}
			if a, err := netip.ParseAddr(u.Hostname()); err == nil && p.Contains(a.Unmap()) {
				v.errorf(joinIndex("mesh.cidrs", i), "%s holds etcd endpoint %s: isolating this node would cut it off etcd, so that it could never learn it was released; give etcd and the mesh different networks", s, e)
			}
		}
	}
}
