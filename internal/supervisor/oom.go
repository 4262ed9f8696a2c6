package supervisor

import (
	"fmt"
	"time"
)

// oomPollInterval is how often agents' cgroups are checked for OOM kills.
// An OOM kill of the agent process itself is seen at once as its exit; the
// poll catches the kills of other processes in its cgroup (a helper, a
// child), after which the agent is in an unknown state and is replaced.
const oomPollInterval = 50 * time.Millisecond

// watchOOM runs until s.quit is closed.
func (s *Supervisor) watchOOM() {
	t := time.NewTicker(oomPollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		for _, p := range s.Pools() {
			p.checkOOM()
		}
	}
}

func (p *Pool) checkOOM() {
	p.mu.Lock()
	var cs []*slot
	for _, sl := range p.slots {
		if sl.sb != nil && (sl.state == AgentActive || sl.state == AgentSpare) {
			cs = append(cs, sl)
		}
	}
	p.mu.Unlock()
	for _, sl := range cs {
		// Each sandbox is made for one agent, so it counts only that
		// agent's OOM kills (its handshake's too).
		me, err := sl.sb.MemoryEvents()
		if err != nil || me.OOMKill == 0 {
			continue
		}
		p.fail(sl, evidence{kind: EventOOM, reason: fmt.Sprintf("OOM kill in its cgroup (%d since start)", me.OOMKill), at: p.sup.opts.Now()})
	}
}
