package supervisor

import (
	"fmt"
	"math"
	"time"
)

// Spares under fire. A pool's spares absorb the deaths that come while a
// replacement starts. The configured number is enough for the odd crash,
// not for a pool that loses 25 agents a second to hallucinations: each
// death then finds the spares used up, and the pool runs short of its
// replicas until a cold start ends. So the supervisor sizes its spares to
// the rate of runtime replacements: the smallest number that the deaths
// expected during one start (rate × start time, Poisson) exceed less than
// once in surgeRisk, up to surgeCap. The surge lasts surgeHold after the
// last death that called for it, then follows the rate down again.
const (
	surgeWindow = 10 * time.Second // the replacement rate is counted over this
	surgeRisk   = 1e-3
	surgeHold   = time.Minute
	// defaultStartTime stands for the start time until one is measured.
	defaultStartTime = 50 * time.Millisecond
)

// surgeCapLocked bounds the surge: the configured max_spares or four
// times the replicas and four, whichever is more. A pool of two agents
// hallucinating 5 % at 1,000 calls/s loses ~50 agents a second; with
// starts taking ~100 ms on a loaded 2-CPU host, the deaths during one
// start average 5 and exceed 6 (the old bound, 2 × replicas + 2) one
// start in four. Called with p.mu held.
func (p *Pool) surgeCapLocked() int {
	return max(p.cfg.MaxSpares, 4*p.effectiveReplicas()+4)
}

// spareTargetLocked is the number of spares the pool keeps: the configured
// (or the Arbiter's) number, or the surge if it is larger. Called with
// p.mu held.
func (p *Pool) spareTargetLocked() int { return max(p.sparesWanted, p.surge) }

// noteStartLocked feeds a successful start's duration. Called with p.mu
// held.
func (p *Pool) noteStartLocked(d time.Duration) {
	if p.startTime == 0 {
		p.startTime = d
		return
	}
	p.startTime += (d - p.startTime) / 8
}

// noteReplacementLocked counts a runtime replacement at now and sizes the
// surge. Called with p.mu held.
func (p *Pool) noteReplacementLocked(now time.Time) {
	p.replaced = append(p.replaced, now)
	if len(p.replaced) > 1024 {
		p.replaced = p.replaced[len(p.replaced)-1024:]
	}
	p.sizeSurgeLocked(now)
}

// sizeSurgeLocked sizes the surge to the replacement rate of the last
// surgeWindow at now: up at once, down only surgeHold after it was last
// raised. While a surge stands, a timer looks again when it may end, so
// that spares raised by a burst of deaths are let go when the deaths stop
// rather than at the next death. Called with p.mu held.
func (p *Pool) sizeSurgeLocked(now time.Time) {
	cut := now.Add(-surgeWindow)
	keep := p.replaced[:0]
	for _, t := range p.replaced {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	p.replaced = keep
	need := 0
	if len(p.replaced) > 0 {
		span := max(now.Sub(p.replaced[0]), time.Second)
		rate := float64(len(p.replaced)) / span.Seconds()
		start := p.startTime
		if start == 0 {
			start = defaultStartTime
		}
		need = min(sparesFor(rate*start.Seconds(), surgeRisk), p.surgeCapLocked())
	}
	switch {
	case need >= p.surge:
		p.surge, p.surgeAt = need, now
	case now.Sub(p.surgeAt) > surgeHold:
		p.surge = need
	}
	if p.surge > p.sparesWanted && p.surgeTimer == nil {
		wait := max(p.surgeAt.Add(surgeHold).Sub(now), 0) + surgeWindow
		p.surgeTimer = time.AfterFunc(wait, p.surgeCheck)
	}
}

// surgeCheck runs when a surge may have ended: it sizes the surge again
// and drains the spares above the new target, oldest first.
func (p *Pool) surgeCheck() {
	p.mu.Lock()
	p.surgeTimer = nil
	if p.state == PoolStopped || p.state == PoolFailed {
		p.mu.Unlock()
		return
	}
	was := p.surge
	p.sizeSurgeLocked(p.sup.opts.Now())
	if p.surge >= was {
		p.mu.Unlock()
		return
	}
	evs, extra := p.resizeLocked(fmt.Sprintf("surge over: spares %d", p.spareTargetLocked()))
	p.mu.Unlock()
	p.finishResize(evs, extra, "surge over")
}

// stopSurgeLocked stops the surge's timer (the pool stops). Called with
// p.mu held.
func (p *Pool) stopSurgeLocked() {
	if p.surgeTimer != nil {
		p.surgeTimer.Stop()
		p.surgeTimer = nil
	}
}

// sparesFor is the smallest s such that a Poisson variable of mean mean
// exceeds s with probability below risk.
func sparesFor(mean, risk float64) int {
	if mean <= 0 {
		return 0
	}
	term := math.Exp(-mean) // P(X = 0)
	cdf := term
	s := 0
	for 1-cdf >= risk && s < 1000 {
		s++
		term *= mean / float64(s)
		cdf += term
	}
	return s
}
