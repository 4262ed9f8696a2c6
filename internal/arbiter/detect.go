package arbiter

import (
	"math"
	"time"
)

// EWMA is an exponentially weighted moving average over irregularly spaced
// points: a point dt after the previous one gets weight 1-exp(-dt/Tau), so
// the smoothing means the same thing whatever the sampling rate.
type EWMA struct {
	// Tau is the time constant; zero means no smoothing (the last value).
	Tau time.Duration

	value float64
	last  time.Time
	set   bool
}

// Update adds x observed at t and returns the new average. A point at or
// before the previous one is averaged with the weight of a zero-length step
// rather than dropped.
func (e *EWMA) Update(t time.Time, x float64) float64 {
	if !e.set || e.Tau <= 0 {
		e.value, e.last, e.set = x, t, true
		return x
	}
	dt := t.Sub(e.last)
	if dt < 0 {
		dt = 0
	} else {
		e.last = t
	}
	// A zero step still moves the average a little, as a burst of
	// same-instant samples should.
	w := 1 - math.Exp(-float64(max(dt, time.Millisecond))/float64(e.Tau))
	e.value += w * (x - e.value)
	return e.value
}

// Value is the current average (0 before the first point).
func (e *EWMA) Value() float64 { return e.value }

// Ready reports whether a point has been seen.
func (e *EWMA) Ready() bool { return e.set }

// CUSUM is a one-sided (upward) cumulative-sum change detector. The first
// BaselineN points are its baseline (mean, and standard deviation at its
// upper confidence bound); after
// that each point x adds (x-mean)/sigma - K to a running sum that never
// drops below zero, and the detector alarms while the sum is at least H.
// A flat series with noise drifts down by K each step and stays near zero;
// a sustained upward shift of d sigma grows it by about d-K a step.
type CUSUM struct {
	// K is the slack in standard deviations (default 1): shifts smaller
	// than K sigma are ignored. The changes worth acting on are large
	// (several sigma), and a large K keeps a flat noisy series from ever
	// alarming.
	K float64
	// H is the decision threshold in standard deviations (default 8).
	H float64
	// BaselineN is how many points form the baseline (default 20).
	BaselineN int
	// MinSigma floors the baseline's standard deviation, so a baseline that
	// happened to be constant does not make every wobble a change.
	MinSigma float64

	n       int
	mean    float64
	m2      float64
	sum     float64
	alarmed bool
}

func (c *CUSUM) params() (k, h float64, n int) {
	k, h, n = c.K, c.H, c.BaselineN
	if k <= 0 {
		k = 1
	}
	if h <= 0 {
		h = 8
	}
	if n <= 0 {
		n = 20
	}
	return k, h, n
}

// Update adds x and reports whether the detector is in alarm. It never
// alarms while the baseline is still being learned.
func (c *CUSUM) Update(x float64) bool {
	k, h, bn := c.params()
	if c.n < bn {
		// Welford's running mean and variance.
		c.n++
		d := x - c.mean
		c.mean += d / float64(c.n)
		c.m2 += d * (x - c.mean)
		return false
	}
	z := (x - c.mean) / c.sigma()
	// Capped at 2H so the alarm clears within a few steps once the shift
	// ends, instead of after however long it lasted.
	c.sum = min(max(0, c.sum+z-k), 2*h)
	c.alarmed = c.sum >= h
	return c.alarmed
}

// sigma is the baseline's standard deviation at its 95 % upper confidence
// bound: from a few points the sample deviation is often well below the
// true one, and a baseline that underestimates its noise alarms on noise.
func (c *CUSUM) sigma() float64 {
	var s float64
	if c.n > 1 {
		k := float64(c.n - 1)
		// 5 % quantile of chi-square with k degrees of freedom
		// (Wilson-Hilferty).
		a := 2 / (9 * k)
		q := k * math.Pow(1-a-1.645*math.Sqrt(a), 3)
		s = math.Sqrt(c.m2 / max(q, 1e-9))
	}
	return max(s, c.MinSigma, 1e-12)
}

// Alarm reports whether the last Update was in alarm.
func (c *CUSUM) Alarm() bool { return c.alarmed }

// Level is the running sum relative to the threshold: 0 when nothing has
// changed, at least 1 in alarm, at most 2.
func (c *CUSUM) Level() float64 {
	_, h, _ := c.params()
	return c.sum / h
}

// Baseline returns the baseline mean and standard deviation, and whether it
// is complete.
func (c *CUSUM) Baseline() (mean, sigma float64, ok bool) {
	_, _, bn := c.params()
	return c.mean, c.sigma(), c.n >= bn
}

// Trend fits a least-squares line to the points of a sliding time window:
// the slope of RSS towards its limit, of latency towards a deadline.
type Trend struct {
	// Window is how far back points are kept (default 10 s).
	Window time.Duration
	// MaxPoints bounds the points kept, whatever the sampling rate
	// (default 64); the oldest go first.
	MaxPoints int

	epoch time.Time    // times are kept as seconds since epoch
	pts   []trendPoint // pts[head:] are live
	head  int
}

type trendPoint struct {
	x, v float64
}

// MinTrendPoints is how many points a [Trend] needs before it fits a line.
const MinTrendPoints = 5

// minTrendT is the t-statistic a slope needs to count as rising: about a
// 1 % chance that noise around a flat line produces it over ten points.
const minTrendT = 3

// Add appends v observed at t. A point older than the newest is ignored.
func (tr *Trend) Add(t time.Time, v float64) {
	window, maxPts := tr.Window, tr.MaxPoints
	if window <= 0 {
		window = 10 * time.Second
	}
	if maxPts <= 0 {
		maxPts = 64
	}
	if tr.epoch.IsZero() {
		tr.epoch = t
	}
	x := t.Sub(tr.epoch).Seconds()
	if n := len(tr.pts); n > tr.head && x < tr.pts[n-1].x {
		return
	}
	tr.pts = append(tr.pts, trendPoint{x, v})
	w := window.Seconds()
	for tr.head < len(tr.pts)-1 && (x-tr.pts[tr.head].x > w || len(tr.pts)-tr.head > maxPts) {
		tr.head++
	}
	// Compact now and then rather than on every point.
	if tr.head >= 32 && tr.head*2 >= len(tr.pts) {
		n := copy(tr.pts, tr.pts[tr.head:])
		tr.pts, tr.head = tr.pts[:n], 0
	}
}

// Reset forgets every point.
func (tr *Trend) Reset() { tr.pts, tr.head, tr.epoch = tr.pts[:0], 0, time.Time{} }

func (tr *Trend) live() []trendPoint { return tr.pts[tr.head:] }

// Fit is a least-squares line through a [Trend]'s window.
type Fit struct {
	// Slope is the change per second.
	Slope float64
	// Level is the line's value at the newest point: the current value with
	// the noise averaged out.
	Level float64
	// T is the slope's t-statistic (slope over its standard error);
	// +Inf for points exactly on a rising line.
	T float64
	// SE is the slope's standard error.
	SE float64
	// N is the number of points.
	N int

	epoch  time.Time
	mx, my float64
}

// At is the line's value at t.
func (f Fit) At(t time.Time) float64 { return f.at(t.Sub(f.epoch).Seconds()) }

func (f Fit) at(x float64) float64 { return f.my + f.Slope*(x-f.mx) }

// Fit fits the line; ok is false with fewer than [MinTrendPoints] points or
// when they all share one instant.
func (tr *Trend) Fit() (f Fit, ok bool) {
	pts := tr.live()
	n := len(pts)
	if n < MinTrendPoints {
		return Fit{N: n}, false
	}
	var sx, sy float64
	for _, p := range pts {
		sx += p.x
		sy += p.v
	}
	mx, my := sx/float64(n), sy/float64(n)
	var sxx, sxy, syy float64
	for _, p := range pts {
		dx, dy := p.x-mx, p.v-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return Fit{N: n}, false
	}
	b := sxy / sxx
	ssr := max(syy-b*sxy, 0)
	f = Fit{Slope: b, N: n, epoch: tr.epoch, mx: mx, my: my}
	f.Level = f.at(pts[n-1].x)
	se := math.Sqrt(ssr/float64(n-2)) / math.Sqrt(sxx)
	// Relative floor on the error: floating-point residue on a perfect line
	// must not turn a tiny slope into a "significant" one.
	se = max(se, 1e-9*math.Abs(my))
	f.SE = se
	switch {
	case se > 0:
		f.T = b / se
	case b > 0:
		f.T = math.Inf(1)
	case b < 0:
		f.T = math.Inf(-1)
	}
	return f, true
}

// Rising reports whether the slope is positive and significant.
func (f Fit) Rising() bool { return f.N >= MinTrendPoints && f.Slope > 0 && f.T >= minTrendT }

// TimeToReach extrapolates the line to limit: how long until the value
// reaches it (0 when it already has). It uses the slope less one standard
// error, so that noise lengthens the estimate rather than shortening it: a
// noisy series is not called about to burst on its luckiest reading. ok is
// false unless the line is [Fit.Rising].
func (f Fit) TimeToReach(limit float64) (d time.Duration, ok bool) {
	if !f.Rising() {
		return 0, false
	}
	if f.Level >= limit {
		return 0, true
	}
	s := (limit - f.Level) / (f.Slope - f.SE)
	if s > 1e6 {
		s = 1e6
	}
	return time.Duration(s * float64(time.Second)), true
}

// median3 passes on the median of the last three values, so that a single
// spike (a GC pause, one slow call) never looks like a trend, at the cost
// of one sample of lag.
type median3 struct {
	v [3]float64
	n int
}

func (m *median3) filter(x float64) float64 {
	m.v[m.n%3] = x
	m.n++
	switch m.n {
	case 1:
		return x
	case 2:
		// The spikes to suppress are upward ones.
		return min(m.v[0], m.v[1])
	}
	a, b, c := m.v[0], m.v[1], m.v[2]
	return max(min(a, b), min(max(a, b), c))
}
