package supervisor

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Agents lists every agent in numeric order of its ID, and follows the
// pool's changes: the order it keeps between calls is checked, not trusted.
func TestVirtualAgentsOrderFollowsReplacements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAgents{}
		r := newFakeRun(t, f, fakePool("ordered", 12, 0))
		time.Sleep(time.Second)
		synctest.Wait()
		p, _ := r.sup.Pool("ordered")
		check := func(when string) []AgentStatus {
			as := p.Agents()
			p.mu.Lock()
			n := len(p.slots)
			p.mu.Unlock()
			if len(as) != n {
				t.Fatalf("%s: Agents lists %d agents, the pool has %d", when, len(as), n)
			}
			seen := map[string]bool{}
			for i, a := range as {
				if seen[a.ID] {
					t.Fatalf("%s: %s listed twice", when, a.ID)
				}
				seen[a.ID] = true
				if i > 0 && agentNum(as[i-1].ID) >= agentNum(a.ID) {
					t.Fatalf("%s: %s listed before %s", when, as[i-1].ID, a.ID)
				}
			}
			return as
		}
		before := check("at start")
		if err := r.sup.RestartAgent(before[3].ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		after := check("after a replacement")
		for _, a := range after {
			if a.ID == before[3].ID {
				t.Fatalf("the replaced agent %s is still listed", a.ID)
			}
		}
		if after[len(after)-1].ID == before[len(before)-1].ID {
			t.Fatalf("the replacement is not listed: %v", after)
		}
	})
}

func agentNum(id string) int {
	v, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	return v
}
