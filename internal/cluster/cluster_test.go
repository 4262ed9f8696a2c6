package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/session"
)

// wait is how long a test waits for something that should happen at
// once: generous, as the machine is shared.
const wait = 30 * time.Second

type testNode struct {
	*Node
	store *Store
	mu    sync.Mutex
	lost  []string     // pool/session of every OnLost
	clock atomic.Int64 // added to time.Now
}

func (tn *testNode) lostList() []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append([]string(nil), tn.lost...)
}

func join(t *testing.T, srv *etcdtest.Server, name string) *testNode {
	t.Helper()
	return joinAt(t, srv, name, name+":7946")
}

func joinAt(t testing.TB, srv *etcdtest.Server, name, advertise string) *testNode {
	t.Helper()
	tn := &testNode{}
	n, err := Join(t.Context(), srv.Client(t), Options{
		// A lease long enough that a machine loaded by other builds does
		// not lose it: the tests of a lost lease move the node's clock.
		Cluster: "t", Node: name, Advertise: advertise, Pools: []string{"p"}, LeaseTTL: 10 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Duration(tn.clock.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.Node = n
	tn.store = NewStore(n, StoreOptions{OnLost: func(pool, sess string, err error) {
		tn.mu.Lock()
		tn.lost = append(tn.lost, pool+"/"+sess)
		tn.mu.Unlock()
	}})
	t.Cleanup(func() {
		tn.store.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		tn.Node.Close(ctx)
	})
	return tn
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exchange(i int) session.Exchange {
	return session.Exchange{Input: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Output: json.RawMessage(fmt.Sprintf(`{"o":%d}`, i))}
}

func appendN(t *testing.T, s *Store, sess string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		ex, err := s.Append(t.Context(), "p", sess, exchange(i), session.Limit{}, "", nil)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if ex.Seq != uint64(i) {
			t.Fatalf("append %d: seq %d", i, ex.Seq)
		}
	}
}

// checkContext asserts the session's context is exactly exchanges from..to.
func checkContext(t *testing.T, exs []session.Exchange, from, to int) {
	t.Helper()
	if len(exs) != to-from+1 {
		t.Fatalf("context has %d exchanges, want %d..%d: %v", len(exs), from, to, exs)
	}
	for i, ex := range exs {
		want := exchange(from + i)
		if ex.Seq != uint64(from+i) || string(ex.Input) != string(want.Input) || string(ex.Output) != string(want.Output) {
			t.Fatalf("exchange %d: got seq %d %s→%s, want seq %d %s→%s", i, ex.Seq, ex.Input, ex.Output, from+i, want.Input, want.Output)
		}
	}
}

// stored reads every exchange record of the session in etcd.
func stored(t *testing.T, cli *clientv3.Client, sess string) []exchangeRecord {
	t.Helper()
	r, err := cli.Get(t.Context(), newKeys("t").ctx("p", sess), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []exchangeRecord
	for _, kv := range r.Kvs {
		var rec exchangeRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func TestMembershipAndRing(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	eventually(t, "a sees b", func() bool { _, ok := a.Member("b"); return ok })
	if m, ok := b.Member("a"); !ok || m.Advertise != "a:7946" || m.Health != Serving || len(m.Pools) != 1 {
		t.Fatalf("b's view of a: %+v %v", m, ok)
	}
	for i := range 100 {
		k := fmt.Sprint("s", i)
		pa, _ := a.Place(k)
		pb, _ := b.Place(k)
		if pa != pb {
			t.Fatalf("%s placed on %s by a, %s by b", k, pa, pb)
		}
	}
	if err := b.SetHealth(t.Context(), Isolated); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a takes isolated b off the ring", func() bool {
		for i := range 100 {
			if p, _ := a.Place(fmt.Sprint("s", i)); p != "a" {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Node.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b gone once its lease is revoked", func() bool { _, ok := a.Member("b"); return !ok })
}

func TestOwnershipAndForwardingError(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	eventually(t, "b sees a", func() bool { _, ok := b.Member("a"); return ok })
	exs, err := a.store.Context(t.Context(), "p", "s1")
	if err != nil || len(exs) != 0 {
		t.Fatalf("new session: %v %v", exs, err)
	}
	appendN(t, a.store, "s1", 1, 3)
	epoch, ok := a.store.Owned("p", "s1")
	if !ok {
		t.Fatal("a does not own s1")
	}
	_, err = b.store.Context(t.Context(), "p", "s1")
	var no *NotOwnerError
	if !errors.As(err, &no) || no.Node != "a" || no.Epoch != epoch || !errors.Is(err, ErrNotOwner) {
		t.Fatalf("b's context of a's session: %v, want NotOwnerError{a, %d}", err, epoch)
	}
	if _, err := b.store.Append(t.Context(), "p", "s1", exchange(4), session.Limit{}, "", nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("b's append to a's session: %v, want ErrFenced", err)
	}
	exs, err = a.store.Context(t.Context(), "p", "s1")
	if err != nil {
		t.Fatal(err)
	}
	checkContext(t, exs, 1, 3)
}

// TestStaleOwnerIsFenced: a node that lost a session (another took it over
// on the epoch it saw) cannot commit to it, and is told; the new owner
// continues the context with nothing lost or doubled.
func TestStaleOwnerIsFenced(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	appendN(t, a.store, "s", 1, 2)
	epochA, _ := a.store.Owned("p", "s")

	// b saw a dead (say its heartbeat stopped) and takes the session over.
	if _, err := b.store.TakeOver(t.Context(), "p", "s", epochA+1000); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("takeover on an epoch never seen: %v, want ErrNotOwner", err)
	}
	epochB, err := b.store.TakeOver(t.Context(), "p", "s", epochA)
	if err != nil {
		t.Fatal(err)
	}
	if epochB <= epochA {
		t.Fatalf("new epoch %d not after %d", epochB, epochA)
	}
	// A second takeover on the same old epoch fails: one winner.
	if _, err := a.store.TakeOver(t.Context(), "p", "s", epochA); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("second takeover on epoch %d: %v, want ErrNotOwner", epochA, err)
	}

	// a's write, stale, is refused by etcd, whether or not a's watch has
	// told it yet; make sure it has not by writing at once.
	a.store.mu.Lock()
	_, stillThinks := a.store.owned[sessionKey{"p", "s"}]
	a.store.mu.Unlock()
	_, err = a.store.Append(t.Context(), "p", "s", exchange(3), session.Limit{}, "", nil)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("stale owner's append (it still thought it owned: %v): %v, want ErrFenced", stillThinks, err)
	}
	eventually(t, "a is told it lost s", func() bool { return strings.Contains(strings.Join(a.lostList(), ","), "p/s") })
	if _, ok := a.store.Owned("p", "s"); ok {
		t.Fatal("a still owns s")
	}

	exs, err := b.store.Context(t.Context(), "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	checkContext(t, exs, 1, 2)
	appendN(t, b.store, "s", 3, 4)
	recs := stored(t, cli, "s")
	if len(recs) != 4 {
		t.Fatalf("etcd holds %d exchanges, want 4", len(recs))
	}
	for _, r := range recs {
		wantNode, wantEpoch := "a", epochA
		if r.Seq > 2 {
			wantNode, wantEpoch = "b", epochB
		}
		if r.Node != wantNode || r.Epoch != wantEpoch {
			t.Errorf("exchange %d committed by %s at epoch %d, want %s at %d", r.Seq, r.Node, r.Epoch, wantNode, wantEpoch)
		}
	}
	// a, asked for the session again, finds b serving it. Only while a
	// sees b serving: one that missed b's heartbeats (make test's load
	// delays them) takes a session from it, by design, fenced by etcd.
	eventually(t, "a sees b serving", func() bool { return a.store.serving("b") })
	if _, err := a.store.Context(t.Context(), "p", "s"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a's context after the takeover: %v, want ErrNotOwner", err)
	}
}

// TestRaceForNewSession: nodes asked at once for the same new session:
// exactly one owns it.
func TestRaceForNewSession(t *testing.T) {
	srv := etcdtest.Start(t)
	nodes := []*testNode{join(t, srv, "a"), join(t, srv, "b"), join(t, srv, "c")}
	for _, n := range nodes {
		eventually(t, "every node sees the others", func() bool { return len(n.Members()) == 3 })
	}
	for i := range 20 {
		sess := fmt.Sprint("r", i)
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for j, n := range nodes {
			wg.Go(func() { _, errs[j] = n.store.Context(t.Context(), "p", sess) })
		}
		wg.Wait()
		owners := 0
		for j, err := range errs {
			switch {
			case err == nil:
				owners++
			case !errors.Is(err, ErrNotOwner):
				t.Fatalf("%s on %s: %v", sess, nodes[j].Name(), err)
			}
		}
		if owners != 1 {
			t.Fatalf("%s: %d owners, want 1 (%v)", sess, owners, errs)
		}
	}
}

// TestSessionsOfAGoneNodeAreFree: when a node's lease ends (here revoked
// by its Close), another node takes its sessions on the next call, with
// their contexts, without any takeover call.
func TestSessionsOfAGoneNodeAreFree(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	appendN(t, a.store, "s", 1, 3)
	a.store.Close()
	if err := a.Node.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	exs, err := b.store.Context(t.Context(), "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	checkContext(t, exs, 1, 3)
	appendN(t, b.store, "s", 4, 4)
}

// TestIsolatedOwnerLosesItsSessions: a node that is not serving owns
// nothing: another node takes its sessions when asked.
func TestIsolatedOwnerLosesItsSessions(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	appendN(t, a.store, "s", 1, 1)
	if err := a.SetHealth(t.Context(), Isolated); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees a isolated", func() bool { m, _ := b.Member("a"); return m.Health == Isolated })
	exs, err := b.store.Context(t.Context(), "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	checkContext(t, exs, 1, 1)
	eventually(t, "a is told it lost s", func() bool { return len(a.lostList()) == 1 })
	if _, err := a.store.Append(t.Context(), "p", "s", exchange(2), session.Limit{}, "", nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("isolated node's append: %v, want ErrFenced", err)
	}
}

// TestUnconfirmedLeaseStopsServing: a node whose own clock says its lease
// may have expired serves none of its sessions and says it lost them.
func TestUnconfirmedLeaseStopsServing(t *testing.T) {
	srv := etcdtest.Start(t)
	a := join(t, srv, "a")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	a.clock.Store(int64(time.Hour)) // the keep-alive cannot keep up with this clock
	if _, err := a.store.Context(t.Context(), "p", "s"); !errors.Is(err, ErrLeaseExpiring) {
		t.Fatalf("context with the lease unconfirmed: %v, want ErrLeaseExpiring", err)
	}
	if _, err := a.store.Append(t.Context(), "p", "s", exchange(1), session.Limit{}, "", nil); !errors.Is(err, ErrLeaseExpiring) {
		t.Fatalf("append with the lease unconfirmed: %v, want ErrLeaseExpiring", err)
	}
	if l := a.lostList(); len(l) != 1 || l[0] != "p/s" {
		t.Fatalf("lost: %v, want [p/s]", l)
	}
	// A session another serving node owns is still found, so that the
	// call goes there rather than failing.
	b := join(t, srv, "b")
	if _, err := b.store.Context(t.Context(), "p", "t"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b", func() bool { _, ok := a.Member("b"); return ok })
	var no *NotOwnerError
	if _, err := a.store.Context(t.Context(), "p", "t"); !errors.As(err, &no) || no.Node != "b" {
		t.Fatalf("b's session through a, its lease unconfirmed: %v, want owned by b", err)
	}
	a.clock.Store(0)
	eventually(t, "a serves again once its lease is confirmed", func() bool {
		_, err := a.store.Context(t.Context(), "p", "s")
		return err == nil
	})
}

func TestWindowTrimmed(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := a.store.Append(t.Context(), "p", "s", exchange(i), session.Limit{Entries: 2}, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	exs, _ := a.store.Context(t.Context(), "p", "s")
	checkContext(t, exs, 4, 5)
	if recs := stored(t, cli, "s"); len(recs) != 2 || recs[0].Seq != 4 {
		t.Fatalf("etcd holds %v, want exchanges 4 and 5", recs)
	}
	epoch, _ := a.store.Owned("p", "s")
	if _, err := b.store.TakeOver(t.Context(), "p", "s", epoch); err != nil {
		t.Fatal(err)
	}
	exs, _ = b.store.Context(t.Context(), "p", "s")
	checkContext(t, exs, 4, 5)
	appendN(t, b.store, "s", 6, 6)
}

func TestIdempotentResults(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "a"), join(t, srv, "b")
	ctx := t.Context()
	if _, err := a.store.Context(ctx, "p", "s"); err != nil {
		t.Fatal(err)
	}
	ex := exchange(1)
	if _, err := a.store.Append(ctx, "p", "s", ex, session.Limit{}, "k1", ex.Output); err != nil {
		t.Fatal(err)
	}
	got, err := a.store.Append(ctx, "p", "s", ex, session.Limit{}, "k1", ex.Output)
	if !errors.Is(err, session.ErrDuplicate) || got.Seq != 1 {
		t.Fatalf("repeated key: %+v %v, want seq 1 and ErrDuplicate", got, err)
	}
	if _, err := a.store.Append(ctx, "p", "s", exchange(2), session.Limit{}, "k1", nil); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("key reused for another input: %v, want ErrConflict", err)
	}
	// Any node reads the result, bound to its request.
	out, ok, err := b.store.Result(ctx, "p", "k1", session.RequestDigest("s", ex.Input))
	if err != nil || !ok || string(out) != string(ex.Output) {
		t.Fatalf("result on b: %s %v %v", out, ok, err)
	}
	if _, _, err := b.store.Result(ctx, "p", "k1", session.RequestDigest("other", ex.Input)); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("result for another request: %v, want ErrConflict", err)
	}
	exs, _ := a.store.Context(ctx, "p", "s")
	checkContext(t, exs, 1, 1)

	d := session.RequestDigest("", json.RawMessage(`1`))
	if err := b.store.PutResult(ctx, "p", "k2", d, json.RawMessage(`2`)); err != nil {
		t.Fatal(err)
	}
	if err := a.store.PutResult(ctx, "p", "k2", d, json.RawMessage(`3`)); !errors.Is(err, session.ErrDuplicate) {
		t.Fatalf("second put: %v, want ErrDuplicate", err)
	}
	if err := a.store.PutResult(ctx, "p", "k2", session.RequestDigest("", json.RawMessage(`9`)), nil); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("put for another request: %v, want ErrConflict", err)
	}
	if out, ok, err := a.store.Result(ctx, "p", "k2", d); err != nil || !ok || string(out) != "2" {
		t.Fatalf("result k2: %s %v %v", out, ok, err)
	}
	if _, ok, err := a.store.Result(ctx, "p", "none", d); ok || err != nil {
		t.Fatalf("missing key: %v %v", ok, err)
	}
}

func TestTooLargeFailsClearly(t *testing.T) {
	srv := etcdtest.Start(t)
	a := join(t, srv, "a")
	if _, err := a.store.Context(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	big := json.RawMessage(`"` + strings.Repeat("x", DefaultMaxExchangeBytes) + `"`)
	_, err := a.store.Append(t.Context(), "p", "s", session.Exchange{Input: json.RawMessage(`1`), Output: big}, session.Limit{}, "", nil)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 1048576 bytes per exchange") {
		t.Fatalf("oversized exchange: %v", err)
	}
	if err := a.store.PutResult(t.Context(), "p", "k", nil, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized result: %v", err)
	}
	// Nothing was written, and the session goes on.
	appendN(t, a.store, "s", 1, 1)
}

func TestSessionIDsAreEscaped(t *testing.T) {
	srv := etcdtest.Start(t)
	a := join(t, srv, "a")
	for _, s := range []string{"x", "x/y", "x%2Fy"} {
		if _, err := a.store.Context(t.Context(), "p", s); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, a.store, "x/y", 1, 2)
	appendN(t, a.store, "x", 1, 1)
	exs, _ := a.store.Context(t.Context(), "p", "x")
	checkContext(t, exs, 1, 1)
	exs, _ = a.store.Context(t.Context(), "p", "x%2Fy")
	checkContext(t, exs, 1, 0)
	if _, err := a.store.Context(t.Context(), "p", ""); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("empty session id: %v", err)
	}
}
