package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The last lines of each agent's stderr are kept, so that a failure can
// say why ("can't open file 'agent.py'") where the operator looks (the
// event's reason, `resilientctl logs`), not only in the daemon's journal.
const (
	tailLines     = 50  // per agent
	tailLineBytes = 512 // longer lines are cut
	tailGone      = 32  // agents of a pool whose tails outlive them
	reasonLines   = 3   // stderr lines quoted in a failure's reason
)

// LogLine is one line an agent wrote to its stderr.
type LogLine struct {
	Time  time.Time `json:"time"`
	Agent string    `json:"agent"`
	Line  string    `json:"line"`
}

// logTail is a bounded ring of an agent's last stderr lines.
type logTail struct {
	mu    sync.Mutex
	agent string
	lines []LogLine
	next  int
}

func newLogTail(agent string) *logTail { return &logTail{agent: agent} }

func (t *logTail) add(now time.Time, line string) {
	if len(line) > tailLineBytes {
		line = line[:tailLineBytes] + "…"
	}
	l := LogLine{Time: now, Agent: t.agent, Line: line}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) < tailLines {
		t.lines = append(t.lines, l)
		return
	}
	t.lines[t.next] = l
	t.next = (t.next + 1) % tailLines
}

// last returns up to n of the newest lines, oldest first (n <= 0: all).
func (t *logTail) last(n int) []LogLine {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := append(append([]LogLine(nil), t.lines[t.next:]...), t.lines[:t.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// withStderr appends the agent's last stderr lines to a failure's reason.
func (t *logTail) withStderr(reason string) string {
	if t == nil {
		return reason
	}
	ls := t.last(reasonLines)
	if len(ls) == 0 {
		return reason
	}
	texts := make([]string, len(ls))
	for i, l := range ls {
		texts[i] = l.Line
	}
	return fmt.Sprintf("%s; its stderr ended: %s", reason, strings.Join(texts, " | "))
}

// goneTails keeps the tails of a pool's latest dead agents, oldest first.
type goneTails struct {
	mu    sync.Mutex
	tails []*logTail
}

func (g *goneTails) add(t *logTail) {
	if t == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tails = append(g.tails, t)
	if len(g.tails) > tailGone {
		g.tails = g.tails[len(g.tails)-tailGone:]
	}
}

func (g *goneTails) find(agent string) *logTail {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.tails {
		if t.agent == agent {
			return t
		}
	}
	return nil
}

func (g *goneTails) all() []*logTail {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*logTail(nil), g.tails...)
}

// stderrSettleTime bounds the wait for a dead agent's last stderr lines:
// they are in the pipe when it exits, unless a child it left still holds
// the pipe open.
const stderrSettleTime = 10 * time.Millisecond

// awaitStderr waits, briefly, for the stderr of a process that has exited
// to be read to its end, so that its last lines can be quoted.
func awaitStderr(a process) {
	sd, ok := a.(interface{ StderrDone() <-chan struct{} })
	if !ok {
		return
	}
	t := time.NewTimer(stderrSettleTime)
	defer t.Stop()
	select {
	case <-sd.StderrDone():
	case <-t.C:
	}
}

// Logs returns the last stderr lines of an agent (live, or among its
// pool's latest dead), or of every such agent of a pool, oldest first: at
// most n (0: all kept).
func (s *Supervisor) Logs(target string, n int) ([]LogLine, error) {
	var tails []*logTail
	if p, err := s.Pool(target); err == nil {
		p.mu.Lock()
		for _, sl := range p.slots {
			tails = append(tails, sl.tail)
		}
		p.mu.Unlock()
		tails = append(tails, p.gone.all()...)
	} else {
		for _, p := range s.Pools() {
			if sl := p.slotByID(target); sl != nil {
				tails = append(tails, sl.tail)
				break
			}
			if t := p.gone.find(target); t != nil {
				tails = append(tails, t)
				break
			}
		}
		if len(tails) == 0 {
			return nil, fmt.Errorf("%w %q (nor a pool; a dead agent's lines are kept for its pool's latest %d)", ErrUnknownAgent, target, tailGone)
		}
	}
	var out []LogLine
	for _, t := range tails {
		if t != nil {
			out = append(out, t.last(0)...)
		}
	}
	slices.SortStableFunc(out, func(a, b LogLine) int { return a.Time.Compare(b.Time) })
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}
