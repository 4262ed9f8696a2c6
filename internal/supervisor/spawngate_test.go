package supervisor

import (
	"testing"
	"time"
)

func TestSpawnGateBoundsAndPrefersUrgent(t *testing.T) {
	g := newSpawnGate(2)
	never := make(chan struct{})
	if !g.acquire(never, false) || !g.acquire(never, false) {
		t.Fatal("the first two starts must not wait")
	}
	order := make(chan string, 3)
	waiter := func(name string, urgent bool) {
		if g.acquire(never, urgent) {
			order <- name
		}
	}
	go waiter("normal", false)
	waitGate(t, g, 0, 1)
	go waiter("urgent", true)
	waitGate(t, g, 1, 1)
	cancel := make(chan struct{})
	gaveUp := make(chan bool)
	go func() { gaveUp <- g.acquire(cancel, true) }()
	waitGate(t, g, 2, 1)
	close(cancel)
	if <-gaveUp {
		t.Fatal("a canceled wait got a place")
	}
	if n := g.starting(); n != 2 {
		t.Fatalf("%d starting, want the budget of 2", n)
	}
	g.release()
	if got := <-order; got != "urgent" {
		t.Fatalf("%s went first, want the urgent start", got)
	}
	g.release()
	if got := <-order; got != "normal" {
		t.Fatalf("got %s", got)
	}
	g.release()
	g.release()
	if n := g.starting(); n != 0 {
		t.Fatalf("%d starting after every release", n)
	}
}

func waitGate(t *testing.T, g *spawnGate, urgent, normal int) {
	t.Helper()
	for range 2000 {
		g.mu.Lock()
		u, n := len(g.waiting[0]), len(g.waiting[1])
		g.mu.Unlock()
		if u == urgent && n == normal {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("waiters never reached %d urgent, %d normal", urgent, normal)
}
