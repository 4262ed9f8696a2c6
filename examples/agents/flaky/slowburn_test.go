package main

import (
	"strings"
	"testing"
	"time"
)

func TestRampDelayAndErrorRate(t *testing.T) {
	c := config{latencyRamp: 20 * time.Millisecond, errorRamp: 2 * time.Second, errorStart: 2}
	for _, tc := range []struct {
		since time.Duration
		delay time.Duration
		rate  float64
	}{
		{0, 0, 0},
		{-time.Second, 0, 0},
		{time.Second, 20 * time.Millisecond, 2.8284271247461903},
		{10 * time.Second, 200 * time.Millisecond, 64},
	} {
		if d := c.rampDelay(tc.since); d != tc.delay {
			t.Errorf("rampDelay(%s) = %s, want %s", tc.since, d, tc.delay)
		}
		if r := c.errorRate(tc.since); r < tc.rate*0.999999 || r > tc.rate*1.000001 {
			t.Errorf("errorRate(%s) = %v, want %v", tc.since, r, tc.rate)
		}
	}
	var off config
	if off.rampDelay(time.Hour) != 0 || off.errorRate(time.Hour) != 0 {
		t.Error("ramps without their flags are not zero")
	}
}

func TestRampOnset(t *testing.T) {
	var r rampState
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if r.started(t0) || r.since(t0.Add(time.Hour)) != 0 {
		t.Fatal("the ramp started before the first call")
	}
	r.extra = 3 * time.Second
	r.firstCall(t0, 5*time.Second)
	r.firstCall(t0.Add(time.Minute), 5*time.Second) // later calls move nothing
	if r.started(t0.Add(7 * time.Second)) {
		t.Error("started before -ramp-after plus its jitter")
	}
	if !r.started(t0.Add(8*time.Second)) || r.since(t0.Add(10*time.Second)) != 2*time.Second {
		t.Errorf("since(10 s) = %s, want 2s", r.since(t0.Add(10*time.Second)))
	}
}

func TestRampOffsetSeeded(t *testing.T) {
	const jitter = time.Minute
	seen := map[time.Duration]bool{}
	for _, name := range []string{"p-1", "p-2", "p-3", "p-4"} {
		d := rampOffset(7, name, jitter)
		if d < 0 || d >= jitter {
			t.Errorf("%s: offset %s outside [0, %s)", name, d, jitter)
		}
		if d != rampOffset(7, name, jitter) {
			t.Errorf("%s: the offset is not reproducible", name)
		}
		seen[d] = true
	}
	if len(seen) < 3 {
		t.Errorf("agents of one pool share their onsets: %v", seen)
	}
	if rampOffset(7, "p-1", 0) != 0 {
		t.Error("an offset without jitter")
	}
}

// TestLatencyRampSlowsCalls: once the ramp runs, a call waits at least the
// ramped delay (a lower bound the agent guarantees, not a speed claim).
func TestLatencyRampSlowsCalls(t *testing.T) {
	p := startFlaky(t, "-latency-ramp", "200ms")
	p.handshake()
	if r := p.request("task/run", newCall("first", nil, "")); r.Error != nil {
		t.Fatal(r.Error)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if r := p.request("task/run", newCall("second", nil, "")); r.Error != nil {
		t.Fatal(r.Error)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("a call 0.5 s into a 200ms/s ramp took %s, want at least 100ms", d)
	}
}

// TestErrorRampExits: failing syscalls and error lines snowball from the
// first call until the agent gives up and exits 1.
func TestErrorRampExits(t *testing.T) {
	p := startFlaky(t, "-error-ramp", "50ms", "-error-start", "100", "-error-limit", "20000", "-seed", "3")
	p.handshake()
	if r := p.request("task/run", newCall("go", nil, "")); r.Error != nil {
		t.Fatal(r.Error)
	}
	if code := p.exitCode(); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "no such file or directory, retrying") {
		t.Errorf("no error lines before the exit:\n%s", log)
	}
	if !strings.Contains(log, "giving up: ") {
		t.Errorf("no last words:\n%s", log)
	}
}

// TestRampAfterDefers: before its onset the error ramp does nothing.
func TestRampAfterDefers(t *testing.T) {
	p := startFlaky(t, "-error-ramp", "10ms", "-error-start", "1000", "-error-limit", "2000", "-ramp-after", "1h")
	p.handshake()
	for i := range 3 {
		if r := p.request("task/run", newCall(i, nil, "")); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	time.Sleep(100 * time.Millisecond)
	p.stdin.Close()
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0 (the ramp had not started)", code)
	}
	if log := p.stderr.String(); strings.Contains(log, "retrying") || strings.Contains(log, "giving up") {
		t.Errorf("errors before the onset:\n%s", log)
	}
}

func TestSlowBurnBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-latency-ramp", "-1s"}, {"-ramp-after", "-1s"},
		{"-error-ramp", "1s", "-error-start", "0"},
		{"-error-ramp", "1s", "-error-start", "10", "-error-limit", "5"},
	} {
		p := startFlaky(t, args...)
		if code := p.exitCode(); code != 2 {
			t.Errorf("flaky %v: exit code %d, want 2", args, code)
		}
	}
}
