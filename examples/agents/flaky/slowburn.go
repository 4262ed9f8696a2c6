package main

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"
)

// Slow-burn faults: the agent degrades steadily from an onset until it
// fails, and shows it for seconds before it does, as real agents do (and as
// the Arbiter is built to notice):
//
//   - -latency-ramp D: every call's delay grows by D per second since the
//     onset, until calls miss the pool's deadline;
//   - -error-ramp D: failing syscalls (stat of a missing file, counted by
//     the daemon's eBPF telemetry) start at -error-start per second at the
//     onset and double every D, with error lines on stderr, until they reach
//     -error-limit per second and the agent gives up and exits 1 — errors
//     snowballing, as retries of failing work make more failing work;
//   - -leak, when -ramp-after is given, leaks only from the onset.
//
// The onset is -ramp-after after the agent's first call, plus a share of
// -ramp-after-jitter drawn from -seed and the agent's name (given at
// initialize): agents of one pool share a command line, and their failures
// are spread out rather than simultaneous, reproducibly.

// rampState follows the onset of the slow-burn faults. It is shared with the
// error prober's goroutine.
type rampState struct {
	mu    sync.Mutex
	onset time.Time // zero until the first call
	extra time.Duration
}

// rampOffset draws the agent's share of the onset jitter.
func rampOffset(seed uint64, agent string, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(agent))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	return time.Duration(r.Int64N(int64(jitter)))
}

// firstCall sets the onset on the first call; later calls change nothing.
func (r *rampState) firstCall(now time.Time, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.onset.IsZero() {
		r.onset = now.Add(after + r.extra)
	}
}

// since is how long the slow burn has been going at now (0 before the onset
// or before the first call).
func (r *rampState) since(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.onset.IsZero() || now.Before(r.onset) {
		return 0
	}
	return now.Sub(r.onset)
}

// started reports whether the slow burn has begun at now.
func (r *rampState) started(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.onset.IsZero() && !now.Before(r.onset)
}

// rampDelay is the extra delay of a call made at now under -latency-ramp.
func (c *config) rampDelay(since time.Duration) time.Duration {
	if c.latencyRamp <= 0 || since <= 0 {
		return 0
	}
	return time.Duration(since.Seconds() * float64(c.latencyRamp))
}

// errorRate is the failing syscalls per second since into the error ramp.
func (c *config) errorRate(since time.Duration) float64 {
	if c.errorRamp <= 0 || since <= 0 {
		return 0
	}
	return c.errorStart * math.Exp2(since.Seconds()/c.errorRamp.Seconds())
}

// proberTick is how often the error prober makes its failing syscalls.
const proberTick = 10 * time.Millisecond

// maxErrorLines bounds the error lines written per second, so that the
// agent's log stays a signal rather than a flood.
const maxErrorLines = 50

// probeErrors runs while the agent lives, under -error-ramp: it makes the
// failing syscalls due at the current rate and logs some of them, and once
// the rate reaches -error-limit it logs that it gives up and calls exit(1).
func (a *agent) probeErrors(exit func(int)) {
	t := time.NewTicker(proberTick)
	defer t.Stop()
	var due, lines float64
	var n int
	last := time.Now()
	for now := range t.C {
		dt := now.Sub(last).Seconds()
		last = now
		since := a.ramp.since(now)
		if since <= 0 {
			continue
		}
		rate := a.cfg.errorRate(since)
		if rate >= a.cfg.errorLimit {
			a.logf("giving up: %.0f failing syscalls/s (limit %.0f) after %s of errors", rate, a.cfg.errorLimit, since.Round(time.Millisecond))
			exit(1)
			return
		}
		due += rate * dt
		lines = min(lines+min(rate, maxErrorLines)*dt, maxErrorLines)
		for ; due >= 1; due-- {
			n++
			path := "/nonexistent/flaky/shard-" + strconv.Itoa(n%997) + ".idx"
			_, err := os.Stat(path)
			if err != nil && lines >= 1 {
				lines--
				a.logf("shard %d: %v, retrying", n%997, err)
			}
		}
	}
}

// exitNow is how the error prober ends the process: stderr is unbuffered,
// so the last line is out already.
func exitNow(code int) { os.Exit(code) }
