package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

func TestQuantile(t *testing.T) {
	les := []float64{0.001, 0.002, 0.004, 0}
	for _, c := range []struct {
		counts []float64
		q      float64
		want   time.Duration
	}{
		{[]float64{0, 0, 0, 0}, 0.99, 0},
		{[]float64{100, 100, 100, 100}, 0.99, 990 * time.Microsecond}, // all in the first bucket
		{[]float64{0, 0, 100, 100}, 0.5, 3 * time.Millisecond},        // interpolated in (2, 4] ms
		{[]float64{0, 0, 0, 10}, 0.99, 4 * time.Millisecond},          // +Inf: the highest bound known
	} {
		if got := quantile(c.q, les, c.counts); got != c.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", c.q, c.counts, got, c.want)
		}
	}
}

// TestTopLinesFit: long names, reasons and errors never make a line wider
// than the screen, and a short screen keeps the pools and says how many
// agents it left out.
func TestTopLinesFit(t *testing.T) {
	long := strings.Repeat("x", 100)
	st := &api.Status{Node: long, Version: "v", Mode: api.Mode{Cgroup: "v2", EBPF: true}}
	st.Pools = []supervisor.PoolStatus{{Name: "a-very-long-pool-name", State: supervisor.PoolRunning, Replicas: 2, Active: 2, Breaker: "half-open"}}
	v := topView{now: time.Now(), status: st, risks: map[string]topRisk{}, rates: map[string]poolRate{"a-very-long-pool-name": {callsPerSec: 123456.7, p99: 3 * time.Millisecond}}}
	for i := range 40 {
		id := "agent-" + strings.Repeat("9", i%20)
		st.Agents = append(st.Agents, supervisor.AgentStatus{ID: id, Pool: st.Pools[0].Name, State: supervisor.AgentActive, Calls: 1 << 40, Started: time.Now()})
		v.risks[id] = topRisk{risk: float64(i) / 40, reasons: []string{long}}
	}
	v.recent = []api.Event{{Kind: supervisor.EventPrediction, Pool: long, Agent: long, Reason: long, Time: time.Now()}}
	for _, w := range []int{80, 60} {
		lines := v.lines(w, 24)
		if len(lines) > 24 {
			t.Errorf("width %d: %d lines on a 24-line screen", w, len(lines))
		}
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > w {
				t.Errorf("width %d: a line of %d: %q", w, n, l)
			}
		}
		all := strings.Join(lines, "\n")
		if !strings.Contains(all, "a-very-lon…") || !strings.Contains(all, "more agents") || !strings.Contains(all, "RECENT") {
			t.Errorf("width %d:\n%s", w, all)
		}
	}
}
