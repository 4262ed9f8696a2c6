package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/resilienced/resilienced/internal/cgroup"
)

// The cold path (an agent dies and no spare is left) runs: detect, create
// the new agent's cgroup, start, handshake. Creating a cgroup (a mkdir and
// limits in cgroup2 and, on hybrid hosts, in each v1 hierarchy), placing
// the process in the v1 ones, and removing the dead agent's cgroup all
// compete with that start for the CPU and the kernel's cgroup locks. So
// each pool keeps the next agent's cgroup made ahead of need (its "spare
// sandbox", limits set and OnSandbox called), and a dead agent's cgroup is
// removed once its replacement has started.

// spareSandbox is an agent cgroup made ahead of need for agent id.
type spareSandbox struct {
	id     string
	sb     Sandbox
	cfgGen int // the pool configuration it was made for
}

// replacementWait bounds how long a dead agent's cleanup waits for its
// replacement's start: past it, the cleanup goes ahead anyway.
const replacementWait = 2 * time.Second

// takeSandboxLocked returns the id and sandbox of the next agent: the
// sandbox made ahead of need if it is current, else a new id and no
// sandbox (spawn makes it). Called with p.mu held.
func (p *Pool) takeSandboxLocked() (string, Sandbox) {
	sp := p.nextSandbox
	p.nextSandbox = nil
	if sp != nil && sp.cfgGen == p.cfgGen {
		return sp.id, sp.sb
	}
	if sp != nil {
		p.live.Add(1)
		go func() { defer p.live.Done(); p.discardSandbox(sp) }()
	}
	return p.newAgentIDLocked(), nil
}

// newAgentIDLocked names the next agent. Called with p.mu held.
func (p *Pool) newAgentIDLocked() string {
	if nums := p.sup.opts.AgentNumbers; nums != nil {
		return fmt.Sprintf("%s-%d", p.name, nums.Next())
	}
	p.nextN++
	return fmt.Sprintf("%s-%d", p.name, p.nextN)
}

// prepareSandboxLocked starts making the next agent's sandbox in the
// background, unless one is ready or on its way. Called with p.mu held.
func (p *Pool) prepareSandboxLocked() {
	sbs := p.sup.opts.Sandboxes
	// Made while no agent is starting, so as not to slow a start down.
	if sbs == nil || p.preparing || p.nextSandbox != nil || p.starting > 0 || p.state == PoolFailed || p.state == PoolStopped {
		return
	}
	p.preparing = true
	sp := &spareSandbox{id: p.newAgentIDLocked(), cfgGen: p.cfgGen}
	pc := p.cfg
	p.live.Add(1) // Stop waits for it, then removes what it made
	go func() {
		defer p.live.Done()
		sb, err := sbs.Create(p.name, sp.id, cgroup.Limits{Memory: pc.Limits.Memory, Pids: pc.Limits.Pids, CPUWeight: pc.Limits.CPUWeight})
		if err == nil {
			sp.sb = sb
			if hook := p.sup.opts.OnSandbox; hook != nil {
				err = hook(pc, sp.id, sb)
			}
		}
		p.mu.Lock()
		p.preparing = false
		keep := err == nil && sp.cfgGen == p.cfgGen && p.state != PoolStopped && p.state != PoolFailed
		if keep {
			p.nextSandbox = sp
		}
		p.mu.Unlock()
		if err != nil {
			// Not fatal: the next spawn makes its sandbox itself, and
			// reports the error if it persists.
			p.log.Debug("making a sandbox ahead of need", "agent", sp.id, "err", err)
		}
		if !keep {
			p.discardSandbox(sp)
		}
	}()
}

// discardSandbox removes a sandbox made ahead of need and not used.
func (p *Pool) discardSandbox(sp *spareSandbox) {
	if sp.sb == nil {
		return
	}
	if hook := p.sup.opts.OnAgentGone; hook != nil {
		hook(sp.id, sp.sb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sp.sb.Destroy(ctx); err != nil {
		p.log.Error("removing unused agent cgroup", "agent", sp.id, "err", err)
	}
}

// dropSandbox removes the pool's spare sandbox (the pool stops).
func (p *Pool) dropSandbox() {
	p.mu.Lock()
	sp := p.nextSandbox
	p.nextSandbox = nil
	p.mu.Unlock()
	if sp != nil {
		p.discardSandbox(sp)
	}
}

// awaitReplacements lets the start of a dead slot's replacements go
// before the slot's cleanup (its cgroup was killed at once; what is left
// is waiting for the processes to go and removing directories).
func (p *Pool) awaitReplacements(sl *slot) {
	p.mu.Lock()
	rs := sl.replacements
	sl.replacements = nil
	p.mu.Unlock()
	if len(rs) == 0 {
		return
	}
	t := time.NewTimer(replacementWait)
	defer t.Stop()
	for _, r := range rs {
		select {
		case <-r.up:
		case <-t.C:
			return
		}
	}
}
