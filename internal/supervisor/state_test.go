package supervisor

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/ring"
)

var allAgentStates = []AgentState{AgentStarting, AgentSpare, AgentActive, AgentDraining, AgentIsolated, AgentDead}

// bareSlot is a slot in a pool of no supervisor: enough for the state
// machine, which touches only the pool's books.
func bareSlot(p *Pool, id string, st AgentState) *slot {
	sl := &slot{id: id, pool: p, state: st, dead: make(chan struct{})}
	p.slots[id] = sl
	switch st {
	case AgentStarting:
		p.starting++
	case AgentSpare:
		p.spares = append(p.spares, sl)
	case AgentActive:
		p.activeN++
		p.ring.Add(id, ring.Active)
		sl.accepting.Store(true)
	}
	return sl
}

func barePool() *Pool {
	return &Pool{name: "p", log: slog.New(slog.DiscardHandler), slots: map[string]*slot{}, ring: ring.New(ring.Options{})}
}

func TestEveryIllegalTransitionIsRefused(t *testing.T) {
	for _, from := range allAgentStates {
		for _, to := range allAgentStates {
			if legalMove(from, to) {
				continue
			}
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				p := barePool()
				sl := bareSlot(p, "p-1", from)
				before := [3]int{p.starting, p.activeN, len(p.spares)}
				err := p.transitionLocked(sl, to, time.Now())
				var te *TransitionError
				if !errors.Is(err, ErrInvalidTransition) || !errors.As(err, &te) || te.From != from || te.To != to {
					t.Fatalf("transition %s -> %s: err %v, want a TransitionError", from, to, err)
				}
				if sl.state != from || [3]int{p.starting, p.activeN, len(p.spares)} != before {
					t.Fatalf("a refused move changed the books: state %s, starting/active/spares %d/%d/%d, before %v", sl.state, p.starting, p.activeN, len(p.spares), before)
				}
			})
		}
	}
}

func TestLegalTransitionsKeepTheBooks(t *testing.T) {
	for _, from := range allAgentStates {
		for _, to := range legalMoves[from] {
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				p := barePool()
				sl := bareSlot(p, "p-1", from)
				if err := p.transitionLocked(sl, to, time.Now()); err != nil {
					t.Fatal(err)
				}
				want := func(name string, got, n int) {
					t.Helper()
					if got != n {
						t.Errorf("%s = %d, want %d", name, got, n)
					}
				}
				want("starting", p.starting, b2i(to == AgentStarting))
				want("active", p.activeN, b2i(to == AgentActive))
				want("spares", len(p.spares), b2i(to == AgentSpare))
				if got := sl.accepting.Load(); got != (to == AgentActive) {
					t.Errorf("accepting = %v in state %s", got, to)
				}
				if inRing := len(p.ring.Members()) == 1; inRing != (to == AgentActive) {
					t.Errorf("in the ring = %v in state %s", inRing, to)
				}
				_, inMap := p.slots[sl.id]
				if inMap == (to == AgentDead) {
					t.Errorf("in the slot map = %v in state %s", inMap, to)
				}
				select {
				case <-sl.dead:
					if to != AgentDead {
						t.Errorf("dead channel closed in state %s", to)
					}
				default:
					if to == AgentDead {
						t.Error("dead channel open once dead")
					}
				}
			})
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
