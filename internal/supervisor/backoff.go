package supervisor

import (
	"math/rand/v2"
	"time"
)

// backoff computes the delays before replacing agents that failed to
// start (only start failures are backed off; see package fault): the first
// restart is immediate (as in OTP), then each further consecutive start
// failure waits initial·2^(k-2), capped at max, with ±20 % jitter so that
// agents failing together do not restart in lockstep. The count resets when
// an agent serves its first valid call, or after resetAfter without a start
// failure.
type backoff struct {
	initial, max, resetAfter time.Duration
	consecutive              int
	last                     time.Time
	rand                     func() float64
}

func newBackoff(initial, max, resetAfter time.Duration, rnd func() float64) *backoff {
	if rnd == nil {
		rnd = rand.Float64
	}
	return &backoff{initial: initial, max: max, resetAfter: resetAfter, rand: rnd}
}

// failure records a start failure at now, and returns the delay before
// the agent's replacement is started.
func (b *backoff) failure(now time.Time) time.Duration {
	if b.resetAfter > 0 && !b.last.IsZero() && now.Sub(b.last) >= b.resetAfter {
		b.consecutive = 0
	}
	b.last = now
	b.consecutive++
	return b.delay()
}

// delay is the current delay without recording anything.
func (b *backoff) delay() time.Duration {
	if b.consecutive <= 1 || b.initial <= 0 {
		return 0
	}
	d := b.initial
	for i := 2; i < b.consecutive && d < b.max; i++ {
		d *= 2
	}
	if b.max > 0 && d > b.max {
		d = b.max
	}
	jitter := 0.8 + 0.4*b.rand()
	return time.Duration(float64(d) * jitter)
}

func (b *backoff) reset() { b.consecutive = 0 }

// intensity is OTP's restart intensity: it reports exceeded when more than
// max restarts happened within period.
type intensity struct {
	max    int
	period time.Duration
	times  []time.Time
}

func newIntensity(max int, period time.Duration) *intensity {
	return &intensity{max: max, period: period}
}

// restart records a restart at now and reports whether the intensity is
// exceeded.
func (in *intensity) restart(now time.Time) bool {
	cut := now.Add(-in.period)
	keep := in.times[:0]
	for _, t := range in.times {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	in.times = append(keep, now)
	return len(in.times) > in.max
}

func (in *intensity) reset() { in.times = in.times[:0] }
