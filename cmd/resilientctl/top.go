package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// `resilientctl top` is plain ANSI on the terminal: a full redraw per
// refresh (cursor home, each line cleared to its end), the alternate
// screen, and raw input for q. That is all a once-a-second table needs,
// it works over SSH and in any terminal tmux works in, and it costs one
// small dependency (golang.org/x/term, for raw mode and the size) where
// a TUI framework would bring a dozen.

func init() { extraCommands = append(extraCommands, topCmd) }

func topCmd(g *globals) *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "top",
		Short: "A live view: pools, agents, calls/s, p99, violations, restarts, breaker, Arbiter risk, recent recoveries (q quits)",
		Long: "top refreshes from the daemon's status and event stream every --interval. On a terminal it takes\n" +
			"the screen until q (or Ctrl-C); otherwise it prints one view, measured over one interval, and exits.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return usageError{fmt.Errorf("--interval %s: at least 100ms", interval)}
			}
			return runTop(cmd.Context(), g.client(), os.Stdin, os.Stdout, interval)
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh period")
	return c
}

// topWidth is the width the view is laid out for; a narrower terminal
// cuts lines at its edge.
const topWidth = 80

// callStats is one pool's entry of GET /v1/calls.
type callStats struct {
	Pool     string            `json:"pool"`
	Outcomes map[string]uint64 `json:"outcomes"`
	Latency  []struct {
		LE    float64 `json:"le"`
		Count uint64  `json:"count"`
	} `json:"latency"`
}

// topSample is what one refresh read from the daemon.
type topSample struct {
	at     time.Time
	status *api.Status
	calls  map[string]callStats
	risks  map[string]topRisk // by agent; nil without an Arbiter
	err    error
}

type topRisk struct {
	risk    float64
	reasons []string
	heldOut bool
}

// topView is what one frame shows.
type topView struct {
	now    time.Time
	status *api.Status
	rates  map[string]poolRate // by pool; absent until two samples
	risks  map[string]topRisk
	viol   map[string]int // violations per pool in the last minute
	recent []api.Event    // recoveries and predictions, newest first
	err    error
}

type poolRate struct {
	callsPerSec float64
	p99         time.Duration // 0: no successful call in the interval
}

func read(ctx context.Context, c *api.Client) topSample {
	s := topSample{at: time.Now()}
	s.status, s.err = c.Status(ctx)
	if s.err != nil {
		return s
	}
	var cs []callStats
	if err := c.Get(ctx, "/v1/calls", &cs); err == nil {
		s.calls = make(map[string]callStats, len(cs))
		for _, p := range cs {
			s.calls[p.Pool] = p
		}
	}
	var arb arbiterStatus
	if err := c.Get(ctx, "/v1/arbiter", &arb); err == nil {
		s.risks = make(map[string]topRisk, len(arb.Risks))
		for _, r := range arb.Risks {
			s.risks[r.Agent] = topRisk{risk: r.Risk, reasons: r.Reasons, heldOut: r.HeldOut}
		}
	}
	return s
}

// rates turns two samples' counters into calls/s and p99 per pool.
func rates(prev, cur topSample) map[string]poolRate {
	if prev.calls == nil || cur.calls == nil {
		return nil
	}
	dt := cur.at.Sub(prev.at).Seconds()
	out := map[string]poolRate{}
	for pool, c := range cur.calls {
		p := prev.calls[pool]
		var n uint64
		for o, v := range c.Outcomes {
			n += v - min(v, p.Outcomes[o])
		}
		r := poolRate{callsPerSec: float64(n) / dt}
		if len(c.Latency) > 0 && len(p.Latency) == len(c.Latency) {
			les := make([]float64, len(c.Latency))
			counts := make([]float64, len(c.Latency))
			for i, b := range c.Latency {
				les[i] = b.LE
				counts[i] = float64(b.Count - min(b.Count, p.Latency[i].Count))
			}
			r.p99 = quantile(0.99, les, counts)
		}
		out[pool] = r
	}
	return out
}

// quantile estimates the q-quantile from a cumulative histogram (the last
// bucket is +Inf) by linear interpolation within the bucket, as
// Prometheus' histogram_quantile does; 0 without observations.
func quantile(q float64, les, counts []float64) time.Duration {
	n := len(counts)
	if n == 0 || counts[n-1] == 0 {
		return 0
	}
	rank := q * counts[n-1]
	for i := range n {
		if counts[i] < rank {
			continue
		}
		if i == n-1 { // +Inf: the highest finite bound is all we know
			return secs(les[n-2])
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = les[i-1], counts[i-1]
		}
		in := counts[i] - below
		if in == 0 {
			return secs(les[i])
		}
		return secs(lo + (les[i]-lo)*(rank-below)/in)
	}
	return 0
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// eventLog keeps what the event stream said that a frame shows.
type eventLog struct {
	mu     sync.Mutex
	recent []api.Event // oldest first, at most recentKeep
	viols  []api.Event // violations of the last minute
	err    error
}

const recentKeep = 50

func (l *eventLog) add(ev api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev.Kind {
	case supervisor.EventRecovered, supervisor.EventPrediction, supervisor.EventPoolFailed, supervisor.EventBreaker:
		l.recent = append(l.recent, ev)
		if len(l.recent) > recentKeep {
			l.recent = slices.Delete(l.recent, 0, len(l.recent)-recentKeep)
		}
	case supervisor.EventViolation, supervisor.EventDeadline, supervisor.EventHang:
		l.viols = append(l.viols, ev)
	}
}

// follow reads the event stream until ctx ends, reconnecting after errors
// (a daemon restart).
func (l *eventLog) follow(ctx context.Context, c *api.Client) {
	q := api.EventQuery{Since: time.Minute, Follow: true}
	for ctx.Err() == nil {
		err := c.Events(ctx, q, func(ev api.Event) error { l.add(ev); return nil })
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		q.Since = 5 * time.Second // what the gap may have missed, give or take
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// fill copies the log's view at now into v.
func (l *eventLog) fill(v *topView) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := v.now.Add(-time.Minute)
	l.viols = slices.DeleteFunc(l.viols, func(ev api.Event) bool { return ev.Time.Before(cut) })
	v.viol = map[string]int{}
	for _, ev := range l.viols {
		v.viol[ev.Pool]++
	}
	v.recent = slices.Clone(l.recent)
	slices.Reverse(v.recent)
	if v.err == nil && l.err != nil {
		v.err = fmt.Errorf("event stream: %w", l.err)
	}
}

func runTop(ctx context.Context, c *api.Client, in *os.File, out *os.File, interval time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := &eventLog{}
	go events.follow(ctx, c)

	tty := term.IsTerminal(int(out.Fd())) && term.IsTerminal(int(in.Fd()))
	if !tty {
		// One view, its rates measured over one interval.
		prev := read(ctx, c)
		if prev.err != nil {
			return prev.err
		}
		time.Sleep(interval)
		cur := read(ctx, c)
		if cur.err != nil {
			return cur.err
		}
		v := topView{now: cur.at, status: cur.status, rates: rates(prev, cur), risks: cur.risks}
		events.fill(&v)
		for _, line := range v.lines(topWidth, 0) {
			fmt.Fprintln(out, strings.TrimRight(line, " "))
		}
		return nil
	}

	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	// The alternate screen, cursor hidden; both undone on the way out.
	fmt.Fprint(out, "\x1b[?1049h\x1b[?25l")
	defer func() {
		fmt.Fprint(out, "\x1b[?25h\x1b[?1049l")
		term.Restore(int(in.Fd()), old)
	}()
	keys := make(chan byte, 16)
	go func() {
		b := make([]byte, 16)
		for {
			n, err := in.Read(b)
			for _, k := range b[:n] {
				keys <- k
			}
			if err != nil {
				close(keys)
				return
			}
		}
	}()

	tick := time.NewTicker(interval)
	defer tick.Stop()
	var prev topSample
	for {
		cur := read(ctx, c)
		v := topView{now: cur.at, err: cur.err}
		if cur.err == nil {
			v.status, v.risks, v.rates = cur.status, cur.risks, rates(prev, cur)
			prev = cur
		} else {
			prev = topSample{}
		}
		events.fill(&v)
		w, h, err := term.GetSize(int(out.Fd()))
		if err != nil {
			w, h = topWidth, 24
		}
		var b strings.Builder
		b.WriteString("\x1b[H")
		for _, line := range v.lines(min(w, topWidth), h) {
			b.WriteString(line)
			b.WriteString("\x1b[K\r\n")
		}
		b.WriteString("\x1b[J")
		io.WriteString(out, b.String())
		select {
		case <-ctx.Done():
			return nil
		case k, ok := <-keys:
			if !ok || k == 'q' || k == 'Q' || k == 3 || k == 4 { // q, Ctrl-C, Ctrl-D
				return nil
			}
		case <-tick.C:
		}
	}
}

// lines renders the view: every line at most width runes; at most height
// lines (0: no limit), the agents' table giving way first.
func (v *topView) lines(width, height int) []string {
	var head, pools, agents, recent []string
	title := "resilienced"
	if st := v.status; st != nil {
		ebpf := "off"
		if st.Mode.EBPF {
			ebpf = "on"
		}
		title = fmt.Sprintf("resilienced %s on %s  cgroup %s  eBPF %s", st.Version, st.Node, st.Mode.Cgroup, ebpf)
	}
	head = append(head, pad(title, width-9)+" "+v.now.Format("15:04:05"), "q quits")
	if v.err != nil {
		head = append(head, "! "+v.err.Error())
	}
	if v.status == nil {
		return clip(head, width, height)
	}

	pools = append(pools, "", fmt.Sprintf("%-11s %-8s %5s %5s %8s %7s %6s %7s %-9s %4s",
		"POOL", "STATE", "ACT", "SPARE", "CALLS/S", "P99", "VIOL/m", "RESTART", "BREAKER", "RISK"))
	poolRisk := map[string]float64{}
	for _, a := range v.status.Agents {
		if r, ok := v.risks[a.ID]; ok {
			poolRisk[a.Pool] = max(poolRisk[a.Pool], r.risk)
		}
	}
	for _, p := range v.status.Pools {
		calls, p99 := "-", "-"
		if r, ok := v.rates[p.Name]; ok {
			calls = fmt.Sprintf("%.1f", r.callsPerSec)
			if r.p99 > 0 {
				p99 = fmtLatency(r.p99)
			}
		}
		risk := "-"
		if v.risks != nil {
			risk = fmt.Sprintf("%.2f", poolRisk[p.Name])
		}
		pools = append(pools, fmt.Sprintf("%-11s %-8s %5s %5s %8s %7s %6d %7d %-9s %4s",
			cut(p.Name, 11), cut(string(p.State), 8), fmt.Sprintf("%d/%d", p.Active, p.Replicas),
			fmt.Sprintf("%d/%d", p.Spares, p.SparesWanted), calls, p99, v.viol[p.Name], p.Restarts, cut(p.Breaker, 9), risk))
	}

	as := slices.Clone(v.status.Agents)
	slices.SortFunc(as, func(a, b supervisor.AgentStatus) int {
		if c := cmp.Compare(v.risks[b.ID].risk, v.risks[a.ID].risk); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	agents = append(agents, "", fmt.Sprintf("%-14s %-11s %-8s %8s %6s %4s %s", "AGENT", "POOL", "STATE", "CALLS", "UP", "RISK", "WHY"))
	for _, a := range as {
		risk, why := "-", ""
		if r, ok := v.risks[a.ID]; ok {
			risk = fmt.Sprintf("%.2f", r.risk)
			why = strings.Join(r.reasons, "; ")
			if r.heldOut {
				why = "[held out] " + why
			}
		}
		agents = append(agents, fmt.Sprintf("%-14s %-11s %-8s %8d %6s %4s %s",
			cut(a.ID, 14), cut(a.Pool, 11), cut(string(a.State), 8), a.Calls, fmtUp(v.now.Sub(a.Started)), risk, why))
	}

	recent = append(recent, "", "RECENT RECOVERIES AND PREDICTIONS")
	for _, ev := range v.recent {
		recent = append(recent, eventLine(ev))
	}
	if len(v.recent) == 0 {
		recent = append(recent, "(none in the last minute)")
	}

	if height > 0 {
		// Head and pools first; then the recent list (at most 8 lines) and
		// the agents share what is left.
		left := height - len(head) - len(pools)
		recentMax := min(len(recent), 8, max(left/2, 3))
		recent = recent[:min(len(recent), recentMax)]
		agents = agents[:max(0, min(len(agents), left-len(recent)))]
		if n := len(v.status.Agents) - (len(agents) - 2); len(agents) >= 2 && n > 0 {
			agents[len(agents)-1] = fmt.Sprintf("... %d more agents", n+1)
		}
	}
	return clip(slices.Concat(head, pools, agents, recent), width, height)
}

func eventLine(ev api.Event) string {
	t := ev.Time.Local().Format("15:04:05.000")
	switch ev.Kind {
	case supervisor.EventRecovered:
		line := fmt.Sprintf("%s %-11s %-14s %-10s", t, cut(ev.Pool, 11), cut(ev.Agent, 14), cut(string(ev.Cause), 10))
		if ev.DetectMS != nil && ev.RecoverMS != nil {
			line += fmt.Sprintf(" detect %s recover %s", fmtMS(*ev.DetectMS), fmtMS(*ev.RecoverMS))
		}
		return line
	default:
		return fmt.Sprintf("%s %-11s %-14s %-10s %s", t, cut(ev.Pool, 11), cut(ev.Agent, 14), ev.Kind, ev.Reason)
	}
}

func fmtMS(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		return fmtMS(float64(d) / float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

func fmtUp(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(math.Floor(d.Hours()/24)))
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// pad is s cut or padded with spaces to n runes.
func pad(s string, n int) string {
	s = cut(s, n)
	return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s)))
}

// clip cuts every line to width runes and the list to height lines (0: no
// limit).
func clip(lines []string, width, height int) []string {
	if height > 0 && len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		lines[i] = cut(l, width)
	}
	return lines
}
