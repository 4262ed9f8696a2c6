package supervisor

import (
	"context"
	"fmt"
	"sync"

	"github.com/resilienced/resilienced/internal/config"
)

// node is a child in the supervision tree: a pool or a group.
type node interface {
	nodeName() string
	// restartNode stops and starts the child afresh (its intensity reset).
	restartNode(ctx context.Context, reason string)
	// failNode stops the child for good: it gave up at the top.
	failNode(ctx context.Context, reason string)
	setParent(g *group)
}

// group is a supervisor of supervisors: when a child gives up (its
// restart intensity was exceeded), the group applies its strategy, within
// its own intensity; past that it gives up in turn.
type group struct {
	sup      *Supervisor
	name     string
	strategy config.Strategy
	children []node
	parent   *group

	mu        sync.Mutex
	intensity *intensity
}

func (g *group) nodeName() string   { return g.name }
func (g *group) setParent(p *group) { g.parent = p }

func (g *group) restartNode(ctx context.Context, reason string) {
	g.mu.Lock()
	g.intensity.reset()
	g.mu.Unlock()
	for _, c := range g.children {
		c.restartNode(ctx, reason)
	}
}

func (g *group) failNode(ctx context.Context, reason string) {
	for _, c := range g.children {
		c.failNode(ctx, reason)
	}
}

// childFailed is called (in its own goroutine) when a child gave up.
func (g *group) childFailed(ctx context.Context, child node, reason string) {
	g.mu.Lock()
	exceeded := g.intensity.restart(g.sup.opts.Now())
	g.mu.Unlock()
	if exceeded {
		why := fmt.Sprintf("group %s: restart intensity exceeded (%d in %s) after %s: %s",
			g.name, g.intensity.max, g.intensity.period, child.nodeName(), reason)
		g.sup.emit(Event{Kind: EventEscalate, Reason: why})
		escalate(ctx, g.sup, g, why)
		return
	}
	var restart []node
	switch g.strategy {
	case config.StrategyOneForAll:
		restart = g.children
	case config.StrategyRestForOne:
		for i, c := range g.children {
			if c == child {
				restart = g.children[i:]
				break
			}
		}
	default:
		restart = []node{child}
	}
	why := fmt.Sprintf("group %s (%s): %s gave up: %s", g.name, g.strategy, child.nodeName(), reason)
	g.sup.emit(Event{Kind: EventRestart, Reason: why})
	// OTP stops the affected children in reverse start order, then
	// starts them in order.
	for i := len(restart) - 1; i >= 0; i-- {
		if p, ok := restart[i].(*Pool); ok {
			p.stopAgents(ctx)
		}
	}
	for _, c := range restart {
		c.restartNode(ctx, why)
	}
}

// escalate hands a child that gave up to its parent group, or, at the top,
// fails it for good.
func escalate(ctx context.Context, s *Supervisor, n node, reason string) {
	var parent *group
	switch v := n.(type) {
	case *Pool:
		parent = v.parentGroup()
	case *group:
		parent = v.parent
	}
	if parent != nil {
		parent.childFailed(ctx, n, reason)
		return
	}
	n.failNode(ctx, reason)
}

// buildTree wires pools into groups. Called with s.mu held. The config
// package has already checked that children exist, are unique, and that
// there are no cycles.
func (s *Supervisor) buildTree(groups []config.Group) {
	s.groups = make(map[string]*group, len(groups))
	for _, gc := range groups {
		in := gc.Intensity
		if in.MaxRestarts == 0 && in.Period == 0 {
			in = config.Intensity{MaxRestarts: 5, Period: 30e9}
		}
		s.groups[gc.Name] = &group{sup: s, name: gc.Name, strategy: gc.Strategy, intensity: newIntensity(in.MaxRestarts, in.Period)}
	}
	for _, p := range s.pools {
		p.setParent(nil)
	}
	isChild := make(map[string]bool)
	for _, gc := range groups {
		g := s.groups[gc.Name]
		for _, c := range gc.Children {
			isChild[c] = true
			if cg, ok := s.groups[c]; ok {
				cg.setParent(g)
				g.children = append(g.children, cg)
			} else if p, ok := s.pools[c]; ok {
				p.setParent(g)
				g.children = append(g.children, p)
			}
		}
	}
	s.roots = s.roots[:0]
	for _, gc := range groups {
		if !isChild[gc.Name] {
			s.roots = append(s.roots, s.groups[gc.Name])
		}
	}
	for _, name := range s.order {
		if p, ok := s.pools[name]; ok && !isChild[name] {
			s.roots = append(s.roots, p)
		}
	}
}
