package config

import (
	"strings"
	"testing"
	"time"
)

func TestClusterOffByDefault(t *testing.T) {
	c, err := Parse("t.yaml", []byte("pools: [{name: a, command: [x]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Enabled() {
		t.Fatal("cluster mode must be off by default")
	}
	if c.Cluster.Name != DefaultClusterName || c.Cluster.LeaseTTL != DefaultLeaseTTL || c.Cluster.ReplicasPerSession != DefaultReplicasPerSession {
		t.Fatalf("defaults not applied: %+v", c.Cluster)
	}
}

func TestClusterParse(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`
cluster:
  name: prod
  node: n1
  advertise: "10.0.0.1:7946"
  token_file: /etc/resilienced/cluster.token
  etcd:
    endpoints: [http://10.0.0.10:2379, "https://etcd-2:2379"]
    tls: {ca_file: /ca, cert_file: /c, key_file: /k}
  lease_ttl: 3s
  replicas_per_session: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if !cl.Enabled() || cl.Name != "prod" || cl.Node != "n1" || cl.Advertise != "10.0.0.1:7946" ||
		cl.TokenFile != "/etc/resilienced/cluster.token" || len(cl.Etcd.Endpoints) != 2 ||
		cl.Etcd.TLS.KeyFile != "/k" || cl.LeaseTTL != 3*time.Second || cl.ReplicasPerSession != 3 ||
		cl.Etcd.DialTimeout != DefaultEtcdDialTimeout {
		t.Fatalf("got %+v", cl)
	}
}

func TestClusterMeshAwayFromEtcd(t *testing.T) {
	in := "mesh: {interface: eth1, cidrs: [10.1.0.0/16]}\ncluster: {node: n1, advertise: \"10.1.0.1:7946\", token_file: /t, etcd: {endpoints: [http://10.2.0.9:2379, http://etcd-3:2379]}}\n"
	if _, err := Parse("t.yaml", []byte(in)); err != nil {
		t.Fatalf("a mesh apart from etcd: %v", err)
	}
}

func TestClusterErrors(t *testing.T) {
	const ok = "node: n1, advertise: \"10.0.0.1:7946\", token_file: /t, etcd: {endpoints: [http://e:2379]}"
	for in, want := range map[string]string{
		"cluster: {etcd: {endpoints: [http://e:2379]}}": "cluster.node: required in cluster mode",
		"cluster: {node: n1}":                           "cluster.etcd.endpoints: required when cluster.node",
		"cluster: {" + ok + ", name: Prod}":             `cluster.name: "Prod" is not a name`,
		"cluster: {node: n_1, advertise: \"h:1\", token_file: /t, etcd: {endpoints: [http://e:2379]}}": `cluster.node: "n_1" is not a name`,
		"cluster: {node: n1, advertise: x, token_file: /t, etcd: {endpoints: [http://e:2379]}}":        `cluster.advertise: "x" is not host:port`,
		"cluster: {node: n1, advertise: \"h:0\", token_file: /t, etcd: {endpoints: [http://e:2379]}}":  `cluster.advertise: "h:0": port "0" is not a number in 1..65535`,
		"cluster: {node: n1, advertise: \"h:1\", token_file: /t, etcd: {endpoints: [e:2379]}}":         `t.yaml:1:74: cluster.etcd.endpoints[0]: "e:2379" is not an etcd endpoint URL`,
		"cluster: {" + ok + ", lease_ttl: 1s}":                                                         "cluster.lease_ttl: 1s: must be whole seconds, at least 2s",
		"cluster: {" + ok + ", lease_ttl: 2500ms}":                                                     "cluster.lease_ttl: 2.5s: must be whole seconds",
		"cluster: {" + ok + ", replicas_per_session: 0}":                                               "cluster.replicas_per_session: 0 is not in 1..16",
		"cluster: {" + ok + ", tls: {ca_file: /ca}}":                                                   "cluster.tls: ca_file, cert_file and key_file go together",
		"cluster: {" + ok + ", lease_tl: 3s}":                                                          `cluster.lease_tl: unknown key; did you mean "lease_ttl"?`,
		"mesh: {interface: eth1}\ncluster: {" + ok + "}":                                               `mesh.cidrs: required in cluster mode`,
		"mesh: {interface: eth1, cidrs: [10.1.0.0/16, 10.2.0.0/16]}\ncluster: {node: n1, advertise: \"10.1.0.1:7946\", token_file: /t, etcd: {endpoints: [http://10.2.0.9:2379]}}": `mesh.cidrs[1]: 10.2.0.0/16 holds etcd endpoint http://10.2.0.9:2379`,
	} {
		_, err := Parse("t.yaml", []byte(in+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %q", in, err, want)
		}
	}
	in := "cluster: {node: n1, advertise: \"h:1\", token_file: /t, etcd: {endpoints: [http://e:2379], tls: {cert_file: /c}}}\n"
	if _, err := Parse("t.yaml", []byte(in)); err == nil || !strings.Contains(err.Error(), "cluster.etcd.tls: cert_file and key_file go together") {
		t.Errorf("tls: got %v", err)
	}
}
