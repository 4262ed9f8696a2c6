package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/telemetry"
)

// Idle agents cost a bounded number of samples a second, however many.
func TestIdleSampleEveryBoundsTheRate(t *testing.T) {
	for _, n := range []int{1, 100, 1000, 2000, 10000} {
		every := idleSampleEvery(n)
		if every < 10*time.Second {
			t.Errorf("idleSampleEvery(%d) = %v, want >= 10s", n, every)
		}
		if rate := float64(n) / every.Seconds(); rate > idleSamplesPerSecond+1 {
			t.Errorf("%d idle agents sampled every %v: %.0f samples/s, want <= %d", n, every, rate, idleSamplesPerSecond)
		}
	}
}

// The telemetry loop's plan over 300 s of 1,000 agents: a busy agent is
// sampled every second; idle ones at most idleSamplesPerSecond a second
// after their first sample, yet each within twice its period (the first
// round after all started at once is spread out over a period); an idle
// agent whose memory grows is sampled every idleSampleMin.
func TestSamplePlanFollowsWork(t *testing.T) {
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("a%d", i)
	}
	const busy, leaking = "a1", "a2"
	var p samplePlan
	start := time.Unix(1_000_000, 0)
	count := map[string]int{}
	lastAt := map[string]time.Time{}
	var calls uint64
	var rss uint64 = 1 << 20
	for sec := 0; sec < 300; sec++ {
		now := start.Add(time.Duration(sec) * time.Second)
		calls++
		p.begin(n)
		idle := 0
		for _, id := range ids {
			c := uint64(0)
			if id == busy {
				c = calls
			}
			if !p.due(id, c, now) {
				continue
			}
			if sec > 0 && id != busy {
				idle++
			}
			if prev, ok := lastAt[id]; ok && id != busy && id != leaking {
				if gap := now.Sub(prev); gap > 2*idleSampleEvery(n) {
					t.Fatalf("idle agent %s sampled %v after its previous sample, want within 2 × %v", id, gap, idleSampleEvery(n))
				}
			}
			lastAt[id] = now
			count[id]++
			st := telemetry.Stats{HaveProc: true}
			st.Proc.RSSBytes = 1 << 20
			if id == leaking {
				rss += 4096
				st.Proc.RSSBytes = rss
			}
			p.sampled(id, c, now, st)
		}
		p.end()
		if idle > idleSamplesPerSecond {
			t.Fatalf("second %d: %d idle samples, want <= %d", sec, idle, idleSamplesPerSecond)
		}
	}
	if count[busy] != 300 {
		t.Errorf("busy agent sampled %d times in 300 s, want 300", count[busy])
	}
	// Once its second sample (at the first period, 100 s) shows growth,
	// every 10 s: ~20 more.
	if c := count[leaking]; c < 19 {
		t.Errorf("idle agent whose memory grows sampled %d times in 300 s, want ~21", c)
	}
	if c := count["a500"]; c < 3 || c > 5 {
		t.Errorf("idle agent sampled %d times in 300 s at 1,000 agents, want 3-4 (every %v)", c, idleSampleEvery(n))
	}
}
