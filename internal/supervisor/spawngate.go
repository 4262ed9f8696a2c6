package supervisor

import (
	"slices"
	"sync"
)

// handshakesPerSpawn: an agent holds its place in the spawn budget while
// the daemon makes its cgroup and clones it, the daemon's own work; then
// it waits for its handshake holding a place among handshakesPerSpawn ×
// the budget instead. The wait is the agent's time, not the daemon's: at
// 4 places held across it, 100 replacements of a 2 ms C agent took
// seconds, each place idle in a wait most of the time. The second bound
// keeps an interpreter's start (tens of milliseconds of CPU each) from
// running a thousand at once on a small host, where all would miss
// their start timeout together.
const handshakesPerSpawn = 16

// spawnGate is the node's spawn budget: at most max agents starting at once,
// so that a storm of replacements cannot fork-bomb the host. Urgent starts
// (replacing a failed agent, refilling spares) are admitted before others
// (the initial start, scaling up, rollouts).
type spawnGate struct {
	mu      sync.Mutex
	max, n  int
	waiting [2][]chan struct{} // [0] urgent, [1] normal; each FIFO
}

func newSpawnGate(max int) *spawnGate {
	return &spawnGate{max: max}
}

// acquire waits for a place, or for cancel. It reports whether it got one,
// which must then be given back with release.
func (g *spawnGate) acquire(cancel <-chan struct{}, urgent bool) bool {
	q := 1
	if urgent {
		q = 0
	}
	g.mu.Lock()
	if g.n < g.max && len(g.waiting[0]) == 0 && (urgent || len(g.waiting[1]) == 0) {
		g.n++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	g.waiting[q] = append(g.waiting[q], ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-cancel:
		g.mu.Lock()
		i := slices.Index(g.waiting[q], ch)
		if i >= 0 {
			g.waiting[q] = slices.Delete(g.waiting[q], i, i+1)
		}
		g.mu.Unlock()
		if i < 0 { // granted as we gave up: pass it on
			g.release()
		}
		return false
	}
}

// release gives a place back, to the first urgent waiter if any.
func (g *spawnGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for q := range g.waiting {
		if len(g.waiting[q]) > 0 {
			ch := g.waiting[q][0]
			g.waiting[q] = g.waiting[q][1:]
			close(ch) // the place passes to it; n is unchanged
			return
		}
	}
	g.n--
}

// setMax changes the budget; a larger one admits waiters at once.
func (g *spawnGate) setMax(max int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.max = max
	for g.n < g.max {
		q := 0
		if len(g.waiting[0]) == 0 {
			q = 1
		}
		if len(g.waiting[q]) == 0 {
			return
		}
		close(g.waiting[q][0])
		g.waiting[q] = g.waiting[q][1:]
		g.n++
	}
}

// starting returns the number of places taken.
func (g *spawnGate) starting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// size returns the budget.
func (g *spawnGate) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max
}
