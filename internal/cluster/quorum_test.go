package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// TestQuorumLossAndReturn runs a node on a real 3-member etcd, its calls
// through the mesh as the API makes them: the loss of one member changes
// nothing; the loss of a second (no quorum) makes the session's call
// fail with the mesh's no_quorum error, classified by the node's own
// quorum probe (not etcd's 7 s request timeout, not the caller's
// deadline), naming the session; the calls after it fail the same way
// at once, and a sessionless call goes on. When the member returns, the
// session goes on with every acknowledged exchange once.
func TestQuorumLossAndReturn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd")
	}
	c := etcdtest.StartCluster(t, 3)
	a := startMesh(t, c.Server(), "a")
	sessionCall := func(ctx context.Context, i int) (*supervisor.CallResult, error) {
		return a.mesh.Call(ctx, "p", supervisor.CallRequest{Session: "s", Input: json.RawMessage(fmt.Sprint(i)), IdempotencyKey: fmt.Sprint("k", i)})
	}
	call(t, a.mesh, "s", 1)

	c.Stop(2)
	call(t, a.mesh, "s", 2)
	if err := a.Quorum(); err != nil {
		t.Fatalf("with 2 members of 3: %v", err)
	}

	c.Stop(1)
	deadline := 60 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	start := time.Now()
	_, err := sessionCall(ctx, 3)
	took := time.Since(start)
	cancel()
	t.Logf("without quorum, after %s: %v", took.Round(time.Millisecond), err)
	checkNoQuorum(t, err)
	if !errors.Is(a.Quorum(), ErrNoQuorum) {
		t.Fatalf("the node's quorum: %v", a.Quorum())
	}

	// Known lost: the next session call is refused before it runs.
	start = time.Now()
	_, err = sessionCall(t.Context(), 3)
	t.Logf("the next call, after %s: %v", time.Since(start).Round(time.Millisecond), err)
	checkNoQuorum(t, err)
	// The call that is forwarded to a node without quorum gets the same.
	if _, err := a.store.Context(t.Context(), "p", "other"); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("a new session without quorum: %v", err)
	}
	// A sessionless call touches no etcd and goes on.
	if res, err := a.mesh.Call(t.Context(), "p", supervisor.CallRequest{Input: json.RawMessage("0")}); err != nil || res.Agent != "a" {
		t.Fatalf("a sessionless call without quorum: %+v %v", res, err)
	}

	c.Restart(1)
	eventually(t, "the node sees quorum again", func() bool { return a.Quorum() == nil })
	// The first call without quorum was in flight when quorum went: its
	// outcome was unknown, and once quorum is back its key answers (it
	// was committed once, and is answered from its stored result) or it
	// runs now.
	eventually(t, "the session is written again once quorum is back", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		res, err := sessionCall(ctx, 3)
		if err != nil {
			t.Logf("after quorum returned: %v", err)
			return false
		}
		if string(res.Output) != "2" {
			t.Fatalf("call 3 saw %s exchanges, want 2", res.Output)
		}
		return true
	})
	call(t, a.mesh, "s", 4)
	exs, err := a.store.Context(t.Context(), "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 4 {
		t.Fatalf("the context has %d exchanges, want 4: %v", len(exs), exs)
	}
	for i, ex := range exs {
		if ex.Seq != uint64(i+1) || string(ex.Input) != fmt.Sprint(i+1) || string(ex.Output) != fmt.Sprint(i) {
			t.Fatalf("exchange %d: seq %d %s→%s, want seq %d %d→%d", i, ex.Seq, ex.Input, ex.Output, i+1, i+1, i)
		}
	}
}

// checkNoQuorum checks that err is the mesh's no_quorum answer, naming
// the session.
func checkNoQuorum(t *testing.T, err error) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeNoQuorum || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("a session call without quorum: %v (%T), want the no_quorum API error", err, err)
	}
	if !strings.Contains(err.Error(), "p/s") || !strings.Contains(err.Error(), ErrNoQuorum.Error()) {
		t.Fatalf("error %q does not name the session and the cause", err)
	}
}

// TestMemberDroppedThenQuorumLost is the order CI met: the endpoint probe
// drops the member whose loss took quorum with it before the quorum probe
// has failed twice. The request given up for the drop is told there is
// no quorum once the node judges so, not "try again"; with quorum
// confirmed after the drop, it is told to try again.
func TestMemberDroppedThenQuorumLost(t *testing.T) {
	for _, lost := range []bool{true, false} {
		n := &Node{opts: Options{Now: time.Now, QuorumTimeout: 200 * time.Millisecond}, log: slog.New(slog.DiscardHandler)}
		n.resetQuorumLocked()
		qctx, done, err := n.withQuorum(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n.memberDropped(fmt.Errorf("%w: [m1]", ErrMemberDropped))
		<-qctx.Done() // as the request does: it fails when its ctx ends
		go func() {
			time.Sleep(50 * time.Millisecond)
			if lost {
				n.quorumLost(&QuorumError{Since: time.Now(), Cause: errors.New("probe timed out")})
				return
			}
			n.mu.Lock()
			n.quorum.confirmed = time.Now()
			n.mu.Unlock()
		}()
		got := n.quorumErr(t.Context(), qctx, context.Canceled)
		done()
		if lost != errors.Is(got, ErrNoQuorum) || lost == errors.Is(got, ErrMemberDropped) {
			t.Fatalf("quorum lost %v: %v", lost, got)
		}
	}
}
