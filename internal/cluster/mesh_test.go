package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// storeCaller stands in for the supervisor's call path, which does with
// the store exactly this: the context, the call, the exchange appended.
// Its output is the number of exchanges the call saw, so that a test sees
// a context with one lost or doubled.
type storeCaller struct {
	node  string
	store *Store
	block chan struct{} // when set, calls wait for it
}

func (c *storeCaller) Call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error) {
	if req.Session == "" && req.IdempotencyKey == "" {
		// The supervisor's sessionless call touches no store.
		return &supervisor.CallResult{Output: json.RawMessage(`"sessionless"`), Agent: c.node, Attempts: 1}, nil
	}
	if req.IdempotencyKey != "" {
		if out, ok, err := c.store.Result(ctx, pool, req.IdempotencyKey, session.RequestDigest(req.Session, req.Input)); err != nil || ok {
			return &supervisor.CallResult{Output: out, Cached: true}, err
		}
	}
	exs, err := c.store.Context(ctx, pool, req.Session)
	if err != nil {
		return nil, err
	}
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := json.RawMessage(fmt.Sprint(len(exs)))
	ex, err := c.store.Append(ctx, pool, req.Session, session.Exchange{Agent: c.node, Input: req.Input, Output: out}, session.Limit{}, req.IdempotencyKey, out)
	if err != nil {
		return nil, err
	}
	return &supervisor.CallResult{Output: out, Agent: c.node, Attempts: 1, Seq: ex.Seq}, nil
}

type meshNode struct {
	*testNode
	mesh   *Mesh
	local  *storeCaller
	ln     net.Listener
	closed sync.Once
}

var testToken = []byte("0123456789abcdef-test")

func startMesh(t testing.TB, srv *etcdtest.Server, name string, mod ...func(*MeshOptions)) *meshNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := joinAt(t, srv, name, ln.Addr().String())
	mn := &meshNode{testNode: tn, ln: ln, local: &storeCaller{node: name, store: tn.store}}
	opts := MeshOptions{Token: testToken, Local: mn.local}
	for _, f := range mod {
		f(&opts)
	}
	mn.mesh, err = NewMesh(tn.Node, tn.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	go mn.mesh.Serve(ln)
	t.Cleanup(mn.stop) // before the node's cleanup: last in, first out
	return mn
}

// stop kills the node's mesh as a dead daemon's: its connections reset.
func (mn *meshNode) stop() { mn.closed.Do(func() { mn.mesh.Close() }) }

func call(t *testing.T, m *Mesh, sess string, i int) *supervisor.CallResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	res, err := m.Call(ctx, "p", supervisor.CallRequest{Session: sess, Input: json.RawMessage(fmt.Sprint(i)), IdempotencyKey: fmt.Sprintf("%s-%d", sess, i)})
	if err != nil {
		t.Fatalf("call %d of %s: %v", i, sess, err)
	}
	if string(res.Output) != fmt.Sprint(i-1) {
		t.Fatalf("call %d of %s saw %s exchanges, want %d (lost or doubled)", i, sess, res.Output, i-1)
	}
	return res
}

func TestForwardToOwner(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a"), startMesh(t, srv, "b")
	eventually(t, "b has a connection to a", func() bool { return !b.mesh.PeerDead("a") })
	if res := call(t, a.mesh, "s", 1); res.Agent != "a" {
		t.Fatalf("served by %s", res.Agent)
	}
	for i := 2; i <= 5; i++ {
		if res := call(t, b.mesh, "s", i); res.Agent != "a" {
			t.Fatalf("call %d through b served by %s, want the owner a", i, res.Agent)
		}
	}
	// A repeated key through any node is answered from the stored result.
	res, err := b.mesh.Call(t.Context(), "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage("3"), IdempotencyKey: "s-3"})
	if err != nil || !res.Cached || string(res.Output) != "2" {
		t.Fatalf("repeated key: %+v %v", res, err)
	}
	// A sessionless call runs where it lands.
	if res, err := b.mesh.Call(t.Context(), "p", supervisor.CallRequest{Input: json.RawMessage("1")}); err != nil || res.Agent != "b" {
		t.Fatalf("sessionless call through b: %+v %v", res, err)
	}
}

func TestMeshRefusesWrongToken(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startMesh(t, srv, "a")
	body := strings.NewReader(`{"pool":"p","session":"s","input":1}`)
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token", "Bearer " + string(testToken) + "x"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+a.ln.Addr().String()+"/cluster/v1/call", body)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r, err := a.mesh.peerClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusUnauthorized || r.ProtoMajor != 2 {
			t.Fatalf("token %q: %s over %s, want 401 over HTTP/2", auth, r.Status, r.Proto)
		}
	}
	if _, ok := a.store.Owned("p", "s"); ok {
		t.Fatal("a refused call took the session")
	}
}

// TestOwnerDaemonDies: the owner's daemon is gone but its machine (and its
// etcd lease) is not: the next call through another node finds the
// connection refused, takes the session over on the epoch it saw, and
// continues the context; the old owner's writes are fenced.
func TestOwnerDaemonDies(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a"), startMesh(t, srv, "b")
	eventually(t, "b has a connection to a", func() bool { return !b.mesh.PeerDead("a") })
	call(t, a.mesh, "s", 1)
	call(t, b.mesh, "s", 2)
	a.stop()
	if _, ok := b.Member("a"); !ok {
		t.Fatal("a's lease should still be alive: the test is of the fast path")
	}
	if res := call(t, b.mesh, "s", 3); res.Agent != "b" {
		t.Fatalf("served by %s after a died", res.Agent)
	}
	call(t, b.mesh, "s", 4)
	if _, err := a.store.Append(t.Context(), "p", "s", exchange(9), session.Limit{}, "", nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("the dead owner's late write: %v, want ErrFenced", err)
	}
}

// TestSilentOwnerSeenByHeartbeat: an owner that answers nothing (its
// machine cut off: no reset, no answer) is taken for dead by the
// heartbeat, and a call waiting on it moves to the forwarding node.
func TestSilentOwnerSeenByHeartbeat(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a"), startMesh(t, srv, "b")
	eventually(t, "b has a connection to a", func() bool { return !b.mesh.PeerDead("a") })
	call(t, a.mesh, "s", 1)

	// a goes silent: its listener is replaced by one that accepts and
	// never answers; calls on it block too.
	addr := a.ln.Addr().String()
	a.local.block = make(chan struct{})
	a.stop()
	silent, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not take over a's port to make it silent: %v", err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if res := call(t, b.mesh, "s", 2); res.Agent != "b" {
		t.Fatalf("served by %s", res.Agent)
	}
	if !b.mesh.PeerDead("a") {
		t.Fatal("a is not taken for dead")
	}
	call(t, b.mesh, "s", 3)
	close(a.local.block)
}

// TestManyCallersThroughEveryNode: sessions called through every node at
// once, the owners spread; every call sees exactly one more exchange.
func TestManyCallersThroughEveryNode(t *testing.T) {
	srv := etcdtest.Start(t)
	nodes := []*meshNode{startMesh(t, srv, "a"), startMesh(t, srv, "b"), startMesh(t, srv, "c")}
	for _, n := range nodes {
		eventually(t, "every node has a connection to the others", func() bool {
			for _, o := range nodes {
				if o != n && n.mesh.PeerDead(o.Name()) {
					return false
				}
			}
			return true
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for s := range 12 {
		wg.Go(func() {
			sess := fmt.Sprint("s", s)
			for i := 1; i <= 6; i++ {
				m := nodes[(s+i)%len(nodes)].mesh
				res, err := m.Call(t.Context(), "p", supervisor.CallRequest{Session: sess, Input: json.RawMessage(fmt.Sprint(i)), IdempotencyKey: fmt.Sprintf("%s-%d", sess, i)})
				if err != nil {
					errs <- err
					return
				}
				if string(res.Output) != fmt.Sprint(i-1) {
					errs <- fmt.Errorf("%s call %d saw %s exchanges", sess, i, res.Output)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var msgs []string
	for err := range errs {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		t.Fatal(strings.Join(msgs, "\n"))
	}
}

// TestIsolateNodeMovesItsSessions isolates the owner of sessions from
// another node, as `resilientctl isolate --node` does: it leaves the
// ring and serves no session; every call through any node, the isolated
// one included, is answered by another node with the session's context
// whole, and the isolated node reports each session lost. Released, it
// serves again.
func TestIsolateNodeMovesItsSessions(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b, c := startMesh(t, srv, "a"), startMesh(t, srv, "b"), startMesh(t, srv, "c")
	for _, mn := range []*meshNode{a, b, c} {
		for _, peer := range []string{"a", "b", "c"} {
			if peer != mn.Name() {
				eventually(t, mn.Name()+" has a connection to "+peer, func() bool { return !mn.mesh.PeerDead(peer) })
			}
		}
	}
	sessions := []string{"s1", "s2", "s3", "s4"}
	for _, s := range sessions {
		if res := call(t, a.mesh, s, 1); res.Agent != "a" {
			t.Fatalf("%s served by %s", s, res.Agent)
		}
	}
	if err := b.Isolate(t.Context(), "nope", "test"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("isolating an unknown node: %v", err)
	}
	if err := b.Isolate(t.Context(), "a", "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a isolated, as c sees it", func() bool {
		m, ok := c.Member("a")
		return ok && m.Health == Isolated && !a.Serving()
	})
	for i, s := range sessions {
		// Through every node, the isolated one first.
		for j, mn := range []*meshNode{a, b, c} {
			n := 2 + j
			if res := call(t, mn.mesh, s, n); res.Agent == "a" {
				t.Fatalf("call %d of %s (session %d) through %s served by the isolated node", n, s, i, mn.Name())
			}
		}
	}
	eventually(t, "a reports its sessions lost", func() bool { return len(a.lostList()) >= len(sessions) })
	if isos := c.Isolations(); len(isos) != 1 || isos[0].Node != "a" || isos[0].By != "b" {
		t.Fatalf("isolations as c sees them: %+v", isos)
	}

	if err := c.Release(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a serving again, as b sees it", func() bool {
		m, ok := b.Member("a")
		return ok && m.Health == Serving && a.Serving()
	})
	if res := call(t, a.mesh, "new", 1); res.Agent != "a" {
		t.Fatalf("a new session through a, released, served by %s", res.Agent)
	}
	if err := c.Release(t.Context(), "a"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("releasing a node not isolated: %v", err)
	}
}

// TestCutOffNodeRefusesSessionCalls: a node whose mesh network is cut
// refuses session calls at once with node_isolated, naming why, and
// still serves sessionless calls; restored, it forwards again.
func TestCutOffNodeRefusesSessionCalls(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a"), startMesh(t, srv, "b")
	eventually(t, "b has a connection to a", func() bool { return !b.mesh.PeerDead("a") })
	call(t, a.mesh, "s", 1)
	b.mesh.SetCutOff("isolated by a: test")
	_, err := b.mesh.Call(t.Context(), "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage("2"), IdempotencyKey: "s-2"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeNodeIsolated || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "isolated by a: test") {
		t.Fatalf("session call through a cut-off node: %v, want node_isolated (503) saying why", err)
	}
	if res, err := b.mesh.Call(t.Context(), "p", supervisor.CallRequest{Input: json.RawMessage("1")}); err != nil || res.Agent != "b" {
		t.Fatalf("sessionless call through a cut-off node: %+v %v", res, err)
	}
	b.mesh.SetCutOff("")
	if res := call(t, b.mesh, "s", 2); res.Agent != "a" {
		t.Fatalf("after the cut ended, served by %s, want the owner a", res.Agent)
	}
}

// TestGather asks every node for a view: each answers its own, a node
// whose views are not set yet, or that refuses the path, is listed with
// why.
func TestGather(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a"), startMesh(t, srv, "b")
	startMesh(t, srv, "c") // its views not set
	for _, mn := range []*meshNode{a, b} {
		name := mn.Name()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"node":%q,"q":%q}`, name, r.URL.Query().Get("q"))
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":"not_found","message":"no such view"}`)
		})
		mn.mesh.SetViews(mux)
	}
	eventually(t, "a has connections to b and c", func() bool { return !a.mesh.PeerDead("b") && !a.mesh.PeerDead("c") })
	got := a.mesh.Gather(t.Context(), "/v1/status?q=x")
	if len(got) != 3 {
		t.Fatalf("answers: %+v", got)
	}
	for i, name := range []string{"a", "b"} {
		if got[i].Node != name || string(got[i].View) != fmt.Sprintf(`{"node":%q,"q":"x"}`, name) || got[i].Error != "" {
			t.Errorf("node %s's answer: %+v", name, got[i])
		}
	}
	if got[2].Node != "c" || got[2].View != nil || !strings.Contains(got[2].Error, "serves no views yet") {
		t.Errorf("c, without views: %+v", got[2])
	}
	got = b.mesh.Gather(t.Context(), "/v1/nope")
	if got[0].Error != "no such view" || got[1].Error != "no such view" {
		t.Errorf("a path not served: %+v", got)
	}
}
