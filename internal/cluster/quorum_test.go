package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/session"
)

// TestQuorumLossAndReturn runs a node on a real 3-member etcd: the loss of
// one member changes nothing; the loss of a second (no quorum) makes a
// session's write fail with an error, well before the caller's deadline,
// rather than wait for it; when the member returns, the session goes on
// with every acknowledged exchange.
func TestQuorumLossAndReturn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd")
	}
	c := etcdtest.StartCluster(t, 3)
	a := join(t, c.Server(), "a")
	appendOne := func(ctx context.Context, i int) error {
		if _, err := a.store.Context(ctx, "p", "s"); err != nil {
			return err
		}
		_, err := a.store.Append(ctx, "p", "s", exchange(i), session.Limit{}, fmt.Sprint("k", i), nil)
		return err
	}
	if err := appendOne(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	c.Stop(2)
	if err := appendOne(t.Context(), 2); err != nil {
		t.Fatalf("with 2 members of 3: %v", err)
	}

	c.Stop(1)
	deadline := 60 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	start := time.Now()
	err := appendOne(ctx, 3)
	took := time.Since(start)
	waited := ctx.Err() != nil
	cancel()
	if err == nil {
		t.Fatal("a session write without quorum succeeded")
	}
	if waited {
		t.Fatalf("without quorum the write waited for the caller's %s deadline: %v", deadline, err)
	}
	if !strings.Contains(err.Error(), "p/s") {
		t.Fatalf("error %q does not name the session", err)
	}
	t.Logf("without quorum, after %s: %v", took.Round(time.Millisecond), err)

	c.Restart(1)
	// The write that timed out may have been committed once quorum came
	// back (its outcome was unknown): then its key answers ErrDuplicate,
	// and the exchange is there once, not twice.
	eventually(t, "the session is written again once quorum is back", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		err := appendOne(ctx, 3)
		if err != nil {
			t.Logf("after quorum returned: %v", err)
		}
		return err == nil || errors.Is(err, session.ErrDuplicate)
	})
	exs, err := a.store.Context(t.Context(), "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	checkContext(t, exs, 1, 3)
}
