package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/testcert"
)

// TestClusterSessionSurvivesItsOwnerDaemon runs two real daemons in
// cluster mode on one in-process etcd: a session's calls through either
// daemon see one context; SIGKILL of its owner's daemon, and the next
// call through the other continues it, exchange after exchange, with
// nothing lost or doubled, as etcd shows afterwards.
func TestClusterSessionSurvivesItsOwnerDaemon(t *testing.T) {
	srv := etcdtest.Start(t)
	start := clusterDaemons(t, srv)
	a, b := start("a"), start("b")

	callSeq := func(d *daemonProc, i int) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := d.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Session: "s", Key: fmt.Sprint("k", i)})
		if err != nil {
			return 0, err
		}
		return res.Seq, nil
	}
	i := 0
	for _, d := range []*daemonProc{a, b, a, b, b} {
		i++
		seq, err := callSeq(d, i)
		if err != nil {
			t.Fatalf("call %d: %v\n%s", i, err, d.log)
		}
		if seq != uint64(i) {
			t.Fatalf("call %d: seq %d (lost or doubled)", i, seq)
		}
	}
	// The session's owner is the daemon its first call reached.
	cli := srv.Client(t)
	owner, err := cli.Get(t.Context(), "/resilienced/e2e/owners/echo/s")
	if err != nil || len(owner.Kvs) != 1 {
		t.Fatalf("owner record: %v %v", owner, err)
	}
	var rec struct{ Node string }
	json.Unmarshal(owner.Kvs[0].Value, &rec)
	if rec.Node != "a" {
		t.Fatalf("owner %q, want a", rec.Node)
	}

	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	for range 3 {
		i++
		seq, err := callSeq(b, i)
		if err != nil {
			t.Fatalf("call %d after the owner's daemon died: %v\n%s", i, err, b.log)
		}
		if seq != uint64(i) {
			t.Fatalf("call %d: seq %d (lost or doubled)", i, seq)
		}
	}
	// A repeated key is answered from etcd, not run again.
	if seq, err := callSeq(b, 2); err != nil || seq != 0 {
		t.Fatalf("repeated key: seq %d, %v; want the stored result (no new exchange)", seq, err)
	}
	// The killed daemon comes back (and reaps what its predecessor left),
	// rejoins, and serves the session through its new owner.
	a = start("a")
	i++
	if seq, err := callSeq(a, i); err != nil || seq != uint64(i) {
		t.Fatalf("call %d through the restarted daemon: seq %d, %v\n%s", i, seq, err, a.log)
	}
	r, err := cli.Get(t.Context(), "/resilienced/e2e/ctx/echo/s/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != i {
		t.Fatalf("etcd holds %d exchanges, want %d", len(r.Kvs), i)
	}
	for j, kv := range r.Kvs {
		var x struct {
			Seq  uint64
			Node string
		}
		json.Unmarshal(kv.Value, &x)
		want := "a"
		if j >= 5 {
			want = "b"
		}
		if x.Seq != uint64(j+1) || x.Node != want {
			t.Errorf("exchange %d: seq %d committed by %s, want %s", j+1, x.Seq, x.Node, want)
		}
	}
}

// clusterDaemons returns a function that starts a real daemon in cluster
// mode on srv under a node name, on the same advertise address each time
// that name is started again.
func clusterDaemons(t *testing.T, srv *etcdtest.Server) func(name string) *daemonProc {
	return clusterDaemonsWith(t, srv, poolYAML(binaries(t), "echo"))
}

// clusterDaemonsWith is clusterDaemons with the given pools (YAML list
// items).
func clusterDaemonsWith(t *testing.T, srv *etcdtest.Server, pools string) func(name string) *daemonProc {
	return clusterDaemonsTLS(t, srv, pools, "")
}

// clusterDaemonsTLS is clusterDaemonsWith; with certs (a testcert.CA
// directory holding NAME.pem for each node) the mesh is mutual TLS.
func clusterDaemonsTLS(t *testing.T, srv *etcdtest.Server, pools, certs string) func(name string) *daemonProc {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("e2e-cluster-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	return func(name string) *daemonProc {
		addr, ok := addrs[name]
		if !ok {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr = l.Addr().String()
			l.Close()
			addrs[name] = addr
		}
		ddir := filepath.Join(dir, name)
		os.MkdirAll(ddir, 0o755)
		tlsYAML := ""
		if certs != "" {
			tlsYAML = fmt.Sprintf("\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}",
				filepath.Join(certs, "ca.pem"), filepath.Join(certs, name+".pem"), filepath.Join(certs, name+".key"))
		}
		cfg := writeConfig(t, ddir, fmt.Sprintf(`cluster:
  name: e2e
  node: %s
  advertise: "%s"
  token_file: %s
  etcd: {endpoints: [%s]}
  lease_ttl: 10s%s
pools:%s`, name, addr, token, srv.Endpoints[0], tlsYAML, pools))
		return startDaemon(t, cfg, filepath.Join(ddir, "state"), "--cgroup-name", fmt.Sprintf("resilienced-test-%d-%s", os.Getpid(), name))
	}
}

// TestClusterIsolateNodeByName isolates a node of a cluster of two real
// daemons by name, with resilientctl through the other node: the
// isolated node leaves the ring, its session moves, and every call
// through either daemon goes on with the session's context whole,
// committed by the node still serving; `resilientctl nodes` shows it;
// release brings the node back into service.
func TestClusterIsolateNodeByName(t *testing.T) {
	srv := etcdtest.Start(t)
	start := clusterDaemons(t, srv)
	a, b := start("a"), start("b")
	ctlB := ctlRunner(t, b)
	callSeq := func(d *daemonProc, i int) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := d.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Session: "s", Key: fmt.Sprint("k", i)})
		if err != nil {
			t.Fatalf("call %d: %v\n%s", i, err, d.log)
		}
		if res.Seq != uint64(i) {
			t.Fatalf("call %d: seq %d (lost or doubled)", i, res.Seq)
		}
		return res.Seq
	}
	callSeq(a, 1) // a owns s
	callSeq(b, 2)

	if out, code := ctlB("isolate", "--node", "nope"); code == 0 {
		t.Fatalf("isolating an unknown node succeeded: %s", out)
	}
	if out, code := ctlB("isolate", "--node", "a", "--reason", "e2e"); code != 0 {
		t.Fatalf("isolate --node a: %d %s", code, out)
	}
	nodes := func() map[string]map[string]any {
		out, code := ctlB("nodes", "-o", "json")
		if code != 0 {
			t.Fatalf("nodes: %d %s", code, out)
		}
		var v struct{ Nodes []map[string]any }
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("nodes -o json: %v: %s", err, out)
		}
		m := map[string]map[string]any{}
		for _, n := range v.Nodes {
			m[n["name"].(string)] = n
		}
		return m
	}
	deadline := time.Now().Add(30 * time.Second)
	for nodes()["a"]["health"] != "isolated" {
		if time.Now().After(deadline) {
			t.Fatalf("a not isolated after 30s: %v", nodes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, d := range []*daemonProc{a, b, a, b} {
		callSeq(d, 3+i)
	}
	cli := srv.Client(t)
	r, err := cli.Get(t.Context(), "/resilienced/e2e/ctx/echo/s/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for j, kv := range r.Kvs {
		var x struct{ Node string }
		json.Unmarshal(kv.Value, &x)
		if j >= 2 && x.Node != "b" {
			t.Errorf("exchange %d committed by %s while a was isolated", j+1, x.Node)
		}
	}
	if out, _ := ctlB("nodes"); !strings.Contains(out, "isolated") || !strings.Contains(out, "e2e") {
		t.Errorf("nodes does not show the isolation:\n%s", out)
	}
	if out, code := ctlB("release", "--node", "a"); code != 0 {
		t.Fatalf("release --node a: %d %s", code, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for nodes()["a"]["health"] != "serving" {
		if time.Now().After(deadline) {
			t.Fatalf("a not serving after 30s: %v", nodes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	callSeq(a, 7)
}

// TestClusterViews asks one node of a cluster of two real daemons, with
// resilientctl, for every node's status, sessions and ring (--cluster):
// each node answers with its own view, sessions listed on their owner
// only; `session show` on a node that does not own the session is a
// clear not-found and takes nothing over; a node whose daemon was killed
// is listed with why it did not answer.
func TestClusterViews(t *testing.T) {
	srv := etcdtest.Start(t)
	start := clusterDaemons(t, srv)
	a, b := start("a"), start("b")
	ctlB := ctlRunner(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		if _, err := a.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Session: "s", Key: fmt.Sprint("k", i)}); err != nil {
			t.Fatalf("call %d through a: %v\n%s", i, err, a.log)
		}
	}
	type answers struct {
		Node  string
		Nodes []struct {
			Node  string
			View  json.RawMessage
			Error string
		}
	}
	views := func(args ...string) (map[string]json.RawMessage, map[string]string) {
		t.Helper()
		out, code := ctlB(append(args, "--cluster", "-o", "json")...)
		if code != 0 {
			t.Fatalf("%v --cluster: exit %d: %s", args, code, out)
		}
		var v answers
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Node != "b" {
			t.Fatalf("%v --cluster -o json: %v (asked node %q): %s", args, err, v.Node, out)
		}
		ok, failed := map[string]json.RawMessage{}, map[string]string{}
		for _, n := range v.Nodes {
			if n.Error != "" {
				failed[n.Node] = n.Error
			} else {
				ok[n.Node] = n.View
			}
		}
		return ok, failed
	}

	// Every node's status, each its own.
	deadline := time.Now().Add(30 * time.Second)
	var st map[string]json.RawMessage
	for {
		var failed map[string]string
		if st, failed = views("status"); len(st) == 2 || time.Now().After(deadline) {
			if len(st) != 2 {
				t.Fatalf("status --cluster: answers from %d nodes, want 2; failed: %v", len(st), failed)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range []string{"a", "b"} {
		var s api.Status
		if err := json.Unmarshal(st[name], &s); err != nil || len(s.Pools) != 1 || s.Pools[0].Name != "echo" || len(s.Agents) == 0 {
			t.Errorf("node %s's status: %v %+v", name, err, s)
		}
	}
	if sa, sb := string(st["a"]), string(st["b"]); sa == sb {
		t.Errorf("both nodes answered the same status: %s", sa)
	}

	// Sessions: on their owner, a, only.
	ss, failed := views("sessions", "echo")
	if len(failed) > 0 {
		t.Fatalf("sessions --cluster: %v", failed)
	}
	var onA, onB []api.SessionInfo
	json.Unmarshal(ss["a"], &onA)
	json.Unmarshal(ss["b"], &onB)
	if len(onA) != 1 || onA[0].ID != "s" || onA[0].Entries != 3 || len(onB) != 0 {
		t.Fatalf("sessions --cluster: a %+v, b %+v; want s with 3 entries on a only", onA, onB)
	}
	if out, code := ctlB("session", "show", "s", "--pool", "echo"); code == 0 || !strings.Contains(out, "not owned by this node") {
		t.Errorf("session show s on b, which does not own it: exit %d: %s", code, out)
	}
	if out, code := ctlRunner(t, a)("session", "show", "s"); code != 0 || !strings.Contains(out, "3 entries") {
		t.Errorf("session show s on its owner a: exit %d: %s", code, out)
	}

	// The ring, in the table form.
	out, code := ctlB("ring", "echo", "--cluster")
	if code != 0 || !strings.Contains(out, "== node a") || !strings.Contains(out, "== node b") || !strings.Contains(out, "HASH SHARE") {
		t.Errorf("ring echo --cluster: exit %d:\n%s", code, out)
	}

	// a's daemon killed: listed with why, b still answers.
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	st, failed = views("status")
	if _, ok := st["b"]; !ok {
		t.Fatalf("status --cluster after a died: b did not answer: %v", failed)
	}
	if _, ok := st["a"]; ok {
		t.Fatalf("status --cluster after a died: a answered")
	}
	// Its registration stays until its lease (10 s) ends: listed, with why.
	if failed["a"] == "" {
		t.Errorf("a, killed, not listed with a reason: %v", failed)
	}
}

// TestClusterLostSessionIsolatesItsAgent: a node that loses a session
// (here isolated by name from the other node) while one of its agents
// runs a call of it takes that agent out with the Kill Switch (the pool's
// isolate_action, kill: it is replaced); the call goes on through the
// other node, with the session's context whole.
func TestClusterLostSessionIsolatesItsAgent(t *testing.T) {
	srv := etcdtest.Start(t)
	bin := binaries(t)
	start := clusterDaemonsWith(t, srv, fmt.Sprintf(`
  - name: slow
    command: [%s, -seed, "1", -latency, 2s]
    replicas: 2
    spares: 1
    contract:
      schema: {type: object, required: [answer]}
      deadline: 10s
`, filepath.Join(bin, "flaky")))
	a, b := start("a"), start("b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	call := func(d *daemonProc, i int) (*api.CallResponse, error) {
		return d.client.Call(ctx, "slow", api.CallRequest{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Session: "s", Key: fmt.Sprint("k", i)})
	}
	if _, err := call(a, 1); err != nil { // a owns s
		t.Fatalf("call 1: %v\n%s", err, a.log)
	}
	inFlight := make(chan error, 1)
	go func() { _, err := call(a, 2); inFlight <- err }()
	time.Sleep(500 * time.Millisecond) // call 2 runs on an agent of a
	if out, code := ctlRunner(t, b)("isolate", "--node", "a", "--reason", "e2e"); code != 0 {
		t.Fatalf("isolate --node a: %d %s", code, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	var isolated string
	for isolated == "" {
		err := a.client.Events(ctx, api.EventQuery{}, func(ev api.Event) error {
			if ev.Kind == "isolate" && strings.Contains(ev.Reason, "serving session slow/s, which this node lost") {
				isolated = ev.Agent
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent of a isolated for the lost session; a's log:\n%s", a.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-inFlight // its outcome on a is not the point: the agent was taken out mid-call
	// The session goes on through b, which takes it over, context whole.
	res, err := call(b, 3)
	if err != nil {
		t.Fatalf("call 3 through b: %v\n%s", err, b.log)
	}
	if res.Seq < 2 || res.Seq > 3 {
		t.Fatalf("call 3: seq %d; want 3, or 2 if the in-flight call 2 was not committed", res.Seq)
	}
	t.Logf("agent %s of a isolated mid-call; call 3 at seq %d", isolated, res.Seq)
}

// TestClusterMeshMutualTLS: two real daemons with cluster.tls forward a
// session's calls to its owner over mutual TLS, its context whole.
func TestClusterMeshMutualTLS(t *testing.T) {
	srv := etcdtest.Start(t)
	start := clusterDaemonsTLS(t, srv, poolYAML(binaries(t), "echo"), testcert.CA(t, []string{"a", "b"}))
	a, b := start("a"), start("b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, d := range []*daemonProc{a, b, b, a, b} {
		res, err := d.client.Call(ctx, "echo", api.CallRequest{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i+1)), Session: "s", Key: fmt.Sprint("k", i+1)})
		if err != nil {
			t.Fatalf("call %d: %v\n%s", i+1, err, d.log)
		}
		if res.Seq != uint64(i+1) {
			t.Fatalf("call %d: seq %d (lost or doubled)", i+1, res.Seq)
		}
	}
	// b's calls were served by the owner a: forwarded over TLS, and a's
	// mesh answers nothing in h2c.
	out, code := ctlRunner(t, b)("nodes", "-o", "json")
	if code != 0 || !strings.Contains(out, `"alive"`) {
		t.Fatalf("nodes through b: exit %d:\n%s", code, out)
	}
	var v struct {
		Nodes []struct{ Name, Advertise string }
	}
	json.Unmarshal([]byte(out), &v)
	for _, n := range v.Nodes {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &protos}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Advertise+"/cluster/v1/ping", nil)
		req.Header.Set("Authorization", "Bearer e2e-cluster-token-0123456789")
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("node %s's mesh answered a ping in h2c: it is not on TLS", n.Name)
			}
		}
	}
	if len(v.Nodes) != 2 {
		t.Fatalf("nodes: %s", out)
	}
	r, err := srv.Client(t).Get(t.Context(), "/resilienced/e2e/ctx/echo/s/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for j, kv := range r.Kvs {
		var x struct{ Node string }
		json.Unmarshal(kv.Value, &x)
		if x.Node != "a" {
			t.Errorf("exchange %d committed by %s, want the owner a (b forwards over TLS)", j+1, x.Node)
		}
	}
	if len(r.Kvs) != 5 {
		t.Fatalf("etcd holds %d exchanges, want 5", len(r.Kvs))
	}
}
