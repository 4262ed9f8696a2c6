package arbiter

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Scales of the evidence features (see the f* constants): the value at
// which the feature is 1, and caps so that no single detector dominates
// the learned weights. Secondary features (pool outlier, p99 syscall
// latency, log bursts) are capped lower: under the hand-set weights they
// cannot reach the threshold alone, only tip a primary one over it.
// rssShortWindow is the span of the short RSS fit: MinTrendPoints samples
// at the daemon's one a second.
const rssShortWindow = 4 * time.Second

const (
	imminenceCap     = 3    // (Target/2)/TTE, so TTE = Target/6 saturates
	latencyFireLog2  = 4    // call latency 16× its baseline
	p99FireLog2      = 4    // p99 syscall latency 16× its baseline
	errorsFireLog2   = 6    // syscall errors 64× their baseline (projected)
	ratioCap         = 3    //
	secondaryCap     = 1.0  // for features with the secondary weight
	errorShareScale  = 0.1  // share of syscalls failing, learned weight only
	maxScatterLog2   = 0.25 // the deadline is lowered by the scatter, at most to 84 %
	contractFire     = 0.5  // half the calls bad
	logBurstFire     = 10   // rarity-weighted stderr lines per second
	psiMemoryFire    = 80   // percent stalled
	maxLinesPerCheck = 256  // stderr lines templated per sample; the rest are counted
	smoothTau        = 2 * time.Second
	contractTau      = 5 * time.Second
	logTau           = 3 * time.Second
	poolFailureTau   = time.Minute
	minPoolForMedian = 3
	ratioMinSigma    = 0.15 // log2 units: about 11 %
	errorRateFloor   = 1.0  // errors/s added before ratios: 0→2/s is not a 100× change
)

// ratioDetector follows one positive series (call latency, p99 syscall
// latency, error rate) in log2 space against the agent's own baseline:
// smoothed current level, a CUSUM that says whether it has really moved,
// and a trend to project it Target ahead.
type ratioDetector struct {
	floor  float64
	med    median3
	smooth EWMA
	cusum  CUSUM
	trend  Trend
	seen   bool
	// Set by evidence, for the reasons.
	ratio, projected float64
}

func newRatioDetector(cfg *Config, floor float64) ratioDetector {
	return ratioDetector{
		floor:  floor,
		smooth: EWMA{Tau: smoothTau},
		cusum:  CUSUM{BaselineN: cfg.BaselineSamples, MinSigma: ratioMinSigma},
		trend:  Trend{Window: cfg.Window},
	}
}

func (d *ratioDetector) update(t time.Time, x float64) {
	v := d.med.filter(math.Log2(max(x, 0) + d.floor))
	d.smooth.Update(t, v)
	d.cusum.Update(v)
	d.trend.Add(t, v)
	d.seen = true
}

// evidence is 0 until the CUSUM sees a change, then the (projected) log2
// ratio to baseline over fire, capped.
func (d *ratioDetector) evidence(target time.Duration, fire float64) float64 {
	d.ratio, d.projected = 1, 1
	mean, _, ok := d.cusum.Baseline()
	if !d.seen || !ok {
		return 0
	}
	cur := d.smooth.Value() - mean
	proj := cur
	if f, ok := d.trend.Fit(); ok && f.Rising() {
		proj = max(cur, f.Level-mean+f.Slope*target.Seconds())
	}
	d.ratio, d.projected = math.Exp2(cur), math.Exp2(proj)
	gate := min(1, d.cusum.Level())
	return gate * clamp(proj/fire, 0, ratioCap)
}

// current and baseline in the series' own units.
func (d *ratioDetector) current() float64 { return math.Exp2(d.smooth.Value()) - d.floor }
func (d *ratioDetector) baseline() float64 {
	m, _, _ := d.cusum.Baseline()
	return math.Exp2(m) - d.floor
}

// levelDetector follows a positive series in log2 space and projects it
// Target ahead when it rises significantly: an absolute level, no baseline.
type levelDetector struct {
	floor  float64
	med    median3
	smooth EWMA
	trend  Trend
}

func (d *levelDetector) update(t time.Time, x float64) {
	v := d.med.filter(math.Log2(max(x, 0) + d.floor))
	d.smooth.Update(t, v)
	d.trend.Add(t, v)
}

func (d *levelDetector) current() float64 { return math.Exp2(d.smooth.Value()) - d.floor }

// projected is the level expected Target ahead (the current one unless it
// is rising significantly).
func (d *levelDetector) projected(target time.Duration) float64 {
	if !d.smooth.Ready() {
		return 0
	}
	v := d.smooth.Value()
	if f, ok := d.trend.Fit(); ok && f.Rising() {
		v = max(v, f.Level+f.Slope*target.Seconds())
	}
	return math.Exp2(v) - d.floor
}

type pendingExample struct {
	t time.Time
	x featureVec
}

// agentState is everything the Arbiter keeps about one live agent.
type agentState struct {
	agent, pool string
	first, last time.Time
	n           int

	rss      Trend
	rssShort Trend // the last few seconds only: a leak's onset
	rssNow   float64
	memLimit float64
	memFit   Fit
	memTTE   time.Duration
	memOK    bool

	latMed         median3
	latLin, latLog Trend
	deadline       time.Duration
	dlExp          bool
	dlTTE          time.Duration
	dlOK           bool
	latency        ratioDetector
	p99            ratioDetector
	errs           ratioDetector
	errShare       levelDetector
	latMedian      float64

	contract    EWMA
	logRate     EWMA
	topTemplate string
	topRate     float64
	topAt       time.Time
	psiMem      float64
	psiCPU      float64

	working  bool       // a sample with calls has been seen
	x        featureVec // the latest features
	target   time.Duration
	pending  []pendingExample
	decided  bool
	heldOut  bool
	lastPred time.Time
	assess   Assessment
	// heldOpen are this agent's held-out predictions whose horizon is not
	// over yet, to be scored live (see LiveStats).
	heldOpen []time.Time
}

func newAgentState(cfg *Config, agent, pool string) *agentState {
	return &agentState{
		agent: agent, pool: pool, target: cfg.Target,
		rss:      Trend{Window: cfg.Window},
		rssShort: Trend{Window: rssShortWindow},
		latLin:   Trend{Window: cfg.Window},
		latLog:   Trend{Window: cfg.Window},
		latency:  newRatioDetector(cfg, 0),
		p99:      newRatioDetector(cfg, 0),
		errs:     newRatioDetector(cfg, errorRateFloor),
		errShare: levelDetector{floor: 1e-4, smooth: EWMA{Tau: smoothTau}, trend: Trend{Window: cfg.Window}},
		contract: EWMA{Tau: contractTau},
		logRate:  EWMA{Tau: logTau},
	}
}

// poolState is what the Arbiter keeps per pool: the templates of its
// agents' logs, their latencies (for the median), its failures and calls.
type poolState struct {
	templates *Templater
	latency   map[string]float64 // agent → smoothed call latency, seconds
	scratch   []float64
	// The median of latency, computed at most every medianMaxAge: a
	// sort of every agent's latency for each agent's features was
	// O(N log N) per sample, and after 100 deaths at 1,000 agents the
	// Arbiter's busiest code.
	medianAt  time.Time
	medianVal float64

	failures   float64 // decayed count, time constant poolFailureTau
	failuresAt time.Time

	calls    rateSeries
	failRate rateSeries
}

func newPoolState() *poolState {
	return &poolState{
		templates: NewTemplater(0),
		latency:   make(map[string]float64),
		calls:     newRateSeries(time.Second, 0.3, 0.05),
		failRate:  newRateSeries(10*time.Second, 0.2, 0.05),
	}
}

// medianMaxAge bounds how stale the pool's median latency may be: it
// moves with the smoothed latencies of many agents, slowly.
const medianMaxAge = time.Second

func (ps *poolState) median(now time.Time) float64 {
	if len(ps.latency) < minPoolForMedian {
		return 0
	}
	if !ps.medianAt.IsZero() && now.Sub(ps.medianAt) < medianMaxAge && now.Sub(ps.medianAt) >= 0 {
		return ps.medianVal
	}
	ps.medianAt, ps.medianVal = now, ps.computeMedian()
	return ps.medianVal
}

func (ps *poolState) computeMedian() float64 {
	ps.scratch = ps.scratch[:0]
	for _, v := range ps.latency {
		ps.scratch = append(ps.scratch, v)
	}
	slices.Sort(ps.scratch)
	n := len(ps.scratch)
	if n%2 == 1 {
		return ps.scratch[n/2]
	}
	return (ps.scratch[n/2-1] + ps.scratch[n/2]) / 2
}

func (ps *poolState) recentFailures(now time.Time) float64 {
	if ps.failuresAt.IsZero() {
		return 0
	}
	return ps.failures * math.Exp(-max(0, now.Sub(ps.failuresAt).Seconds())/poolFailureTau.Seconds())
}

func (ps *poolState) failed(at time.Time) {
	ps.failures = ps.recentFailures(at) + 1
	ps.failuresAt = at
	ps.failRate.add(at, 1)
}

// update feeds one sample to the agent's detectors.
func (st *agentState) update(cfg *Config, s *Sample, dt time.Duration, ps *poolState) {
	t := s.Time
	if s.Calls > 0 && !st.working {
		st.working = true
		if st.n > 0 {
			// A spare's first calls: its baselines were taken idle, and an
			// agent at work makes many more syscalls (and failing ones:
			// EAGAIN on its pipes) than an idle one. Its own baseline is
			// that of the agent at work, so it starts again.
			st.p99 = newRatioDetector(cfg, 0)
			st.errs = newRatioDetector(cfg, errorRateFloor)
		}
	}
	if s.RSS > 0 {
		st.rss.Add(t, float64(s.RSS))
		st.rssShort.Add(t, float64(s.RSS))
		st.rssNow = float64(s.RSS)
	}
	st.memLimit = float64(s.MemLimit)
	st.deadline = s.CallDeadline
	if s.CallLatency > 0 {
		sec := s.CallLatency.Seconds()
		st.latency.update(t, sec)
		m := st.latMed.filter(sec)
		st.latLin.Add(t, m)
		st.latLog.Add(t, math.Log2(m))
		ps.latency[st.agent] = st.latency.current()
	}
	if s.SyscallP99 > 0 {
		st.p99.update(t, s.SyscallP99.Seconds())
	}
	if s.SyscallsPerSec > 0 || s.SyscallErrorsPerSec > 0 {
		st.errs.update(t, s.SyscallErrorsPerSec)
		share := s.SyscallErrorsPerSec / max(s.SyscallsPerSec, s.SyscallErrorsPerSec)
		st.errShare.update(t, share)
	}
	if bad := s.Violations + s.Deadlines; s.Calls+bad > 0 {
		st.contract.Update(t, float64(bad)/float64(max(s.Calls, bad)))
	}
	st.psiMem, st.psiCPU = s.PSIMemory, s.PSICPU

	// Stderr: each line weighs its template's rarity in the pool; the rate
	// of that weight is the burst signal, and the template that weighs most
	// is kept to be named in the reasons.
	secs := max(dt.Seconds(), 0.05)
	var weighted float64
	var best string
	var bestW float64
	var perTemplate map[string]float64
	for i, line := range s.LogLines {
		if i == maxLinesPerCheck {
			// A flood: the rest weigh as the templated part did on average.
			weighted *= float64(len(s.LogLines)) / float64(maxLinesPerCheck)
			break
		}
		tmpl, r := ps.templates.Observe(line)
		weighted += r
		if perTemplate == nil {
			perTemplate = make(map[string]float64)
		}
		perTemplate[tmpl] += r
		if perTemplate[tmpl] > bestW {
			best, bestW = tmpl, perTemplate[tmpl]
		}
	}
	st.logRate.Update(t, weighted/secs)
	if !st.topAt.IsZero() {
		st.topRate *= math.Exp(-max(0, t.Sub(st.topAt).Seconds()) / logTau.Seconds())
	}
	st.topAt = t
	if r := bestW / secs; r > st.topRate && best != "" {
		st.topTemplate, st.topRate = best, r
	}
}

func clamp(v, lo, hi float64) float64 { return min(max(v, lo), hi) }

// imminence turns a time to exhaustion into evidence: (Target/2)/TTE, so
// 1 when exhaustion is Target/2 away. The hand-set weights thus call a
// failure about half the Target ahead: estimates of time to exhaustion
// err both ways, and aiming at half leaves the other half as margin. The
// learned model moves that point to where this node's history puts it.
func imminence(tte time.Duration, target time.Duration) float64 {
	if tte <= 0 {
		return imminenceCap
	}
	return clamp(target.Seconds()/2/tte.Seconds(), 0, imminenceCap)
}

// deadlineTTE estimates when call latency reaches the deadline. A linear
// and an exponential trend are fitted; each alone is wrong on the other's
// shape: a linear fit lags an exponential rise, and an exponential fit of
// a linear rise from a flat baseline (convex, so it looks exponential)
// calls it many times too early. So: below 30 % of the deadline only the
// linear estimate is used; above, the exponential one when it fits the
// window better (in log space, where latency noise is about even), and
// past half the deadline the earlier of the two. An exponential estimate
// of a linear rise from 30 % is at most 2.3 times short, from 50 % 1.4
// times. The deadline is lowered by the calls' scatter around the trend,
// since the first call over it fails.
func (st *agentState) deadlineTTE() (tte time.Duration, exp, ok bool) {
	lin, okLin := st.latLin.Fit()
	lg, okLog := st.latLog.Fit()
	linPts, logPts := st.latLin.live(), st.latLog.live()
	if !okLin || !okLog || len(linPts) != len(logPts) {
		return 0, false, false
	}
	var ssrLin, ssrLog float64
	for i, p := range linPts {
		y := logPts[i].v
		r := y - math.Log2(max(lin.at(p.x), 1e-9))
		ssrLin += r * r
		r = y - lg.at(logPts[i].x)
		ssrLog += r * r
	}
	// Calls scatter around the trend, and the first one over the deadline
	// is the failure: aim at the deadline less the scatter (one standard
	// deviation in log space, as measured on the agent's baseline).
	_, sigma, _ := st.latency.cusum.Baseline()
	limit := st.deadline.Seconds() * math.Exp2(-min(sigma, maxScatterLog2))
	tLin, okLin := lin.TimeToReach(limit)
	tLog, okLog := lg.TimeToReach(math.Log2(limit))
	q := lin.Level / st.deadline.Seconds()
	switch {
	case q < 0.3 || !okLog:
		// Far from the deadline an exponential fit would call a linear rise
		// from a flat baseline (which looks convex) many times too early.
	case ssrLog < ssrLin:
		return tLog, true, true
	case q >= 0.5 && (!okLin || tLog < tLin):
		return tLog, true, true
	}
	return tLin, false, okLin
}

// features computes the feature vector after an update.
func (st *agentState) features(cfg *Config, ps *poolState, now time.Time) featureVec {
	var x featureVec
	st.memOK = false
	if st.memLimit > 0 && st.rssNow > 0 {
		// The whole window, and its last seconds: a leak that starts
		// after a flat stretch shows its slope in the short fit seconds
		// before the long one, whose flat points dilute it. The earlier
		// exhaustion of the two counts.
		for _, tr := range []*Trend{&st.rss, &st.rssShort} {
			if f, ok := tr.Fit(); ok {
				if tte, ok := f.TimeToReach(st.memLimit); ok && (!st.memOK || tte < st.memTTE) {
					st.memFit, st.memTTE, st.memOK = f, tte, true
				}
			}
		}
		if st.memOK {
			// Memory runs into a hard limit at a steady slope: evidence 1 at
			// Target ahead (the latency detectors, whose rise may bend,
			// wait until Target/2).
			x[fMemory] = imminence(st.memTTE, 2*cfg.Target)
		}
		x[fRSSFraction] = clamp(st.rssNow/st.memLimit, 0, 1.2)
	}

	st.dlOK = false
	if st.deadline > 0 {
		st.dlTTE, st.dlExp, st.dlOK = st.deadlineTTE()
		if st.latency.seen {
			x[fDeadlineFraction] = clamp(st.latency.current()/st.deadline.Seconds(), 0, 1.5)
		}
		if st.dlOK {
			x[fDeadline] = imminence(st.dlTTE, cfg.Target)
		}
	} else {
		// With a deadline, the time to reach it says more than the ratio to
		// the baseline; without one the ratio is all there is.
		x[fLatency] = st.latency.evidence(cfg.Target, latencyFireLog2)
	}
	st.latMedian = 0
	if _, ok := ps.latency[st.agent]; ok {
		if m := ps.median(now); m > 0 {
			st.latMedian = m
			x[fOutlier] = clamp((math.Log2(st.latency.current()/m)-2)/3, 0, secondaryCap)
		}
	}
	x[fSyscallP99] = min(st.p99.evidence(cfg.Target, p99FireLog2), secondaryCap)
	x[fSyscallErrors] = st.errs.evidence(cfg.Target, errorsFireLog2)
	x[fErrorShare] = clamp(st.errShare.projected(cfg.Target)/errorShareScale, 0, 3)
	x[fContract] = clamp(st.contract.Value()/contractFire, 0, 2)
	x[fLogBurst] = clamp(st.logRate.Value()/logBurstFire, 0, secondaryCap)
	x[fPSIMemory] = clamp(st.psiMem/psiMemoryFire, 0, 1.5)
	x[fPSICPU] = clamp(st.psiCPU/100, 0, 1)
	x[fPoolFailures] = clamp(math.Log2(1+ps.recentFailures(now))/3, 0, 2)
	return x
}

// minReasonLogit is the smallest contribution (in log-odds) worth naming.
const minReasonLogit = 0.5

// maxReasons is how many reasons an assessment carries.
const maxReasons = 3

// reasons names the features that contribute most to the risk.
func (st *agentState) reasons(m *model, x *featureVec, ps *poolState, now time.Time) []string {
	type contrib struct {
		i int
		c float64
	}
	var cs []contrib
	for i, w := range m.weights {
		if c := w * x[i]; c >= minReasonLogit {
			cs = append(cs, contrib{i, c})
		}
	}
	if len(cs) == 0 {
		return nil
	}
	slices.SortStableFunc(cs, func(a, b contrib) int {
		switch {
		case a.c > b.c:
			return -1
		case a.c < b.c:
			return 1
		}
		return 0
	})
	out := make([]string, 0, min(len(cs), maxReasons))
	for _, c := range cs[:min(len(cs), maxReasons)] {
		out = append(out, st.reason(c.i, ps, now))
	}
	return out
}

func (st *agentState) reason(i int, ps *poolState, now time.Time) string {
	switch i {
	case fMemory:
		if st.memTTE <= 0 {
			return fmt.Sprintf("RSS at its %s limit", fmtBytes(st.memLimit))
		}
		return fmt.Sprintf("RSS reaches its %s limit in %s (+%s/s)",
			fmtBytes(st.memLimit), fmtSoon(st.memTTE), fmtBytes(st.memFit.Slope))
	case fDeadline:
		cur := time.Duration(st.latency.current() * float64(time.Second))
		if st.dlTTE <= 0 {
			return fmt.Sprintf("call latency %s close to its %s deadline", fmtLatency(cur), fmtLatency(st.deadline))
		}
		return fmt.Sprintf("call latency %s reaches its %s deadline in %s",
			fmtLatency(cur), fmtLatency(st.deadline), fmtSoon(st.dlTTE))
	case fLatency:
		return fmt.Sprintf("call latency %s its baseline (%s vs %s)%s", fmtRatio(st.latency.ratio),
			fmtLatency(secs(st.latency.current())), fmtLatency(secs(st.latency.baseline())), rising(&st.latency))
	case fOutlier:
		cur := st.latency.current()
		return fmt.Sprintf("call latency %s the pool median (%s vs %s)", fmtRatio(cur/st.latMedian),
			fmtLatency(secs(cur)), fmtLatency(secs(st.latMedian)))
	case fSyscallP99:
		return fmt.Sprintf("p99 syscall latency %s its baseline (%s vs %s)%s", fmtRatio(st.p99.ratio),
			fmtLatency(secs(st.p99.current())), fmtLatency(secs(st.p99.baseline())), rising(&st.p99))
	case fSyscallErrors:
		return fmt.Sprintf("syscall errors %s their baseline (%s/s vs %s/s)%s", fmtRatio(st.errs.ratio),
			fmtRate(st.errs.current()), fmtRate(st.errs.baseline()), rising(&st.errs))
	case fContract:
		return fmt.Sprintf("%.0f%% of calls violate the contract or miss the deadline", 100*st.contract.Value())
	case fLogBurst:
		tmpl := st.topTemplate
		if len(tmpl) > 80 {
			tmpl = tmpl[:77] + "..."
		}
		return fmt.Sprintf("burst of rare stderr lines (%s/s), most %q", fmtRate(st.logRate.Value()), tmpl)
	case fPSIMemory:
		return fmt.Sprintf("memory pressure: stalled %.0f%% of the time (PSI)", st.psiMem)
	case fPSICPU:
		return fmt.Sprintf("CPU pressure: stalled %.0f%% of the time (PSI)", st.psiCPU)
	case fPoolFailures:
		return fmt.Sprintf("pool lost ~%.0f agents in the last minute", ps.recentFailures(now))
	case fErrorShare:
		cur, proj := st.errShare.current(), st.errShare.projected(st.target)
		if proj > cur*1.05 {
			return fmt.Sprintf("%.0f%% of syscalls fail, %.0f%% in %s", 100*cur, 100*proj, fmtSoon(st.target))
		}
		return fmt.Sprintf("%.0f%% of syscalls fail", 100*cur)
	case fDeadlineFraction:
		return fmt.Sprintf("call latency at %.0f%% of its %s deadline", 100*st.latency.current()/st.deadline.Seconds(), fmtLatency(st.deadline))
	case fRSSFraction:
		return fmt.Sprintf("RSS at %.0f%% of its %s limit", 100*st.rssNow/st.memLimit, fmtBytes(st.memLimit))
	}
	return featureNames[i]
}

func rising(d *ratioDetector) string {
	if d.projected > d.ratio*1.05 {
		return ", rising"
	}
	return ""
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func fmtRatio(r float64) string {
	if r >= 3 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.1f×", r)
}

func fmtRate(r float64) string {
	switch {
	case r >= 10:
		return strconv.FormatFloat(math.Round(r), 'f', -1, 64)
	case r >= 1:
		return strconv.FormatFloat(math.Round(r*10)/10, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(r*100)/100, 'f', -1, 64)
}

// fmtSoon says how soon: "<1 s", "~4 s", "~3 min".
func fmtSoon(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1 s"
	case d < 2*time.Minute:
		return fmt.Sprintf("~%.0f s", d.Seconds())
	}
	return fmt.Sprintf("~%.0f min", d.Minutes())
}

// fmtLatency rounds to about three significant digits.
func fmtLatency(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func fmtBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(b) >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	v := math.Round(b*10) / 10
	if math.Abs(v) >= 100 {
		v = math.Round(b)
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + " " + units[i]
}
