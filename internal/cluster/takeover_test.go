package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/session"
)

// TestTakeOverWhileAppending races a takeover of a session with a write
// of its old ownership, over and over: the write is fenced, and neither
// waits for the other forever (a takeover that waited for the session's
// lock while holding the store's deadlocked with a failing write, which
// holds the session's lock and then takes the store's).
func TestTakeOverWhileAppending(t *testing.T) {
	srv := etcdtest.Start(t)
	a := join(t, srv, "a")
	ctx := t.Context()
	if _, err := a.store.Context(ctx, "p", "s"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 100 && ctx.Err() == nil; i++ {
			epoch, ok := a.store.Owned("p", "s")
			if !ok {
				a.store.Context(ctx, "p", "s")
				continue
			}
			var wg sync.WaitGroup
			wg.Go(func() { a.store.Append(ctx, "p", "s", exchange(i), session.Limit{}, "", nil) })
			wg.Go(func() { a.store.TakeOver(ctx, "p", "s", epoch) })
			wg.Wait()
		}
	}()
	select {
	case <-done:
	case <-time.After(4 * wait):
		t.Fatal("a takeover racing a write did not finish: deadlock")
	}
}
