package arbiter

import (
	"math"
	"time"
)

// Forecaster is Holt's linear exponential smoothing (EWMA with trend) over
// a series sampled at roughly regular intervals: a level, smoothed with
// Alpha, and a slope per second, smoothed with Beta. It forecasts call
// rates and failure rates a short time ahead.
type Forecaster struct {
	Alpha, Beta float64

	level, trend float64
	last         time.Time
	n            int
}

// NewForecaster returns a Forecaster; alpha and beta are clamped to (0, 1].
func NewForecaster(alpha, beta float64) *Forecaster {
	clamp := func(v float64) float64 { return min(max(v, 1e-3), 1) }
	return &Forecaster{Alpha: clamp(alpha), Beta: clamp(beta)}
}

// Observe adds value observed at t. A point not after the previous one is
// ignored.
func (f *Forecaster) Observe(t time.Time, value float64) {
	switch {
	case f.n == 0:
		f.level = value
	case !t.After(f.last):
		return
	default:
		dt := t.Sub(f.last).Seconds()
		if f.n == 1 {
			f.trend = (value - f.level) / dt
			f.level = value
			break
		}
		prev := f.level
		f.level = f.Alpha*value + (1-f.Alpha)*(f.level+f.trend*dt)
		f.trend = f.Beta*(f.level-prev)/dt + (1-f.Beta)*f.trend
	}
	f.last = t
	f.n++
}

// Forecast is the expected value ahead of the last observation (0 before
// any). It is not clamped: a falling series can forecast below zero.
func (f *Forecaster) Forecast(ahead time.Duration) float64 {
	if f.n == 0 {
		return 0
	}
	return f.level + f.trend*ahead.Seconds()
}

// Level is the smoothed value at the last observation.
func (f *Forecaster) Level() float64 { return f.level }

// Trend is the smoothed slope, per second.
func (f *Forecaster) Trend() float64 { return f.trend }

// rateSeries turns events (calls, failures) into a per-second rate per
// fixed bucket and forecasts it.
type rateSeries struct {
	bucket  time.Duration
	start   time.Time
	sum     float64
	started bool
	f       *Forecaster
}

func newRateSeries(bucket time.Duration, alpha, beta float64) rateSeries {
	return rateSeries{bucket: bucket, f: NewForecaster(alpha, beta)}
}

// maxGapBuckets bounds the empty buckets filled in after a silence; past
// it the series restarts at the current value rather than loop.
const maxGapBuckets = 120

func (r *rateSeries) roll(t time.Time) {
	if !r.started {
		r.start, r.started = t.Truncate(r.bucket), true
		return
	}
	for k := 0; !t.Before(r.start.Add(r.bucket)); k++ {
		if k == maxGapBuckets {
			r.start = t.Truncate(r.bucket)
			return
		}
		r.start = r.start.Add(r.bucket)
		r.f.Observe(r.start, r.sum/r.bucket.Seconds())
		r.sum = 0
	}
}

func (r *rateSeries) add(t time.Time, v float64) {
	r.roll(t)
	r.sum += v
}

func (r *rateSeries) forecast(now time.Time, ahead time.Duration) float64 {
	r.roll(now)
	return max(0, r.f.Forecast(ahead))
}

// SparePolicy is a pool's spare configuration, from its config.
type SparePolicy struct {
	// Min and Max bound the spare count (the pool's spares and
	// max_spares).
	Min, Max int
	// ReplaceTime is how long a new spare takes to become ready (spawn
	// and handshake): the spares must cover what is consumed meanwhile.
	ReplaceTime time.Duration
	// PerAgentCapacity is the call rate one agent sustains (calls/s);
	// 0 leaves load out of the count.
	PerAgentCapacity float64
}

// SpareDemand is what a pool is expected to need ReplaceTime from now.
type SpareDemand struct {
	// FailuresPerSec is the forecast failure rate.
	FailuresPerSec float64 `json:"failures_per_sec"`
	// AtRisk is the expected number of agents about to be lost: 1 for each
	// agent at or over the threshold (it will be replaced now), its risk
	// for each other agent with a risk of at least 5 %.
	AtRisk float64 `json:"at_risk"`
	// CallRate is the forecast call rate (calls/s).
	CallRate float64 `json:"call_rate"`
	// Active is the number of agents serving now.
	Active int `json:"active"`
}

// SpareTarget is the number of spares a pool should hold, between Min and
// Max: enough for the failures expected while a replacement starts
// (forecast rate × ReplaceTime, plus the agents at risk), with one Poisson
// standard deviation of margin, plus the agents the forecast load needs
// beyond those active.
func SpareTarget(p SparePolicy, d SpareDemand) int {
	expected := max(0, d.FailuresPerSec)*p.ReplaceTime.Seconds() + max(0, d.AtRisk)
	n := 0
	if expected > 0 {
		n = int(math.Ceil(expected + math.Sqrt(expected) - 1e-9))
	}
	if p.PerAgentCapacity > 0 && d.CallRate > 0 {
		need := int(math.Ceil(d.CallRate/p.PerAgentCapacity-1e-9)) - d.Active
		n += max(0, need)
	}
	return min(max(n, p.Min), max(p.Max, p.Min))
}
