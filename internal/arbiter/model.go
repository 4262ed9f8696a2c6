package arbiter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// The features of the model, each an "evidence" scaled so that 1 is what
// one detector alone needs to reach the default threshold under the
// hand-set weights. They are 0 on a healthy agent.
const (
	fMemory           = iota // (Target/2) / time until RSS reaches its limit
	fDeadline                // (Target/2) / time until call latency reaches the deadline
	fLatency                 // call latency vs its own baseline (CUSUM-gated)
	fOutlier                 // call latency vs the pool median
	fSyscallP99              // p99 syscall latency vs its baseline (CUSUM-gated)
	fSyscallErrors           // syscall error rate vs its baseline, projected (CUSUM-gated)
	fContract                // share of calls violating the contract or missing deadlines
	fLogBurst                // rate of stderr lines of rare templates
	fPSIMemory               // memory pressure stall
	fPSICPU                  // CPU pressure stall
	fPoolFailures            // recent failures in the agent's pool
	fRSSFraction             // RSS over its limit
	fErrorShare              // share of syscalls failing
	fDeadlineFraction        // call latency over the deadline
	numFeatures
)

// featureNames are the model's features in weight order, as persisted and
// as [ModelInfo] names them.
var featureNames = [numFeatures]string{
	"memory_exhaustion", "latency_deadline", "latency_baseline", "latency_pool",
	"syscall_p99", "syscall_errors", "contract", "log_burst",
	"psi_memory", "psi_cpu", "pool_failures", "rss_fraction", "syscall_error_share", "deadline_fraction",
}

type featureVec [numFeatures]float64

// The hand-set model: bias -8 (risk 0.03 % with no evidence) and weight
// 8+ln 4 on each primary detector, so that evidence 1 from any one of
// them gives risk 0.8, and a detector at half that gives 0.07: evidence
// must come from one clear signal, not from several vague ones that are
// often the same trouble seen twice. Secondary detectors weigh a quarter
// (and are capped at 1, see features.go): they only tip a primary one
// over. Features with weight 0 are left for the learned model to weigh.
const (
	priorBias      = -8.0
	priorWeight    = 8 + 1.3862943611198906 // 8 + ln(4)
	priorSecondary = priorWeight / 4
)

var priorWeights = featureVec{
	fMemory: priorWeight, fDeadline: priorWeight, fLatency: priorWeight,
	fSyscallErrors: priorWeight, fContract: priorWeight, fPSIMemory: priorWeight,
	fOutlier: priorSecondary, fSyscallP99: priorSecondary, fLogBurst: priorSecondary,
}

// model is a logistic regression on featureVec.
type model struct {
	bias    float64
	weights featureVec
}

func priorModel() model { return model{bias: priorBias, weights: priorWeights} }

func (m *model) logit(x *featureVec) float64 {
	z := m.bias
	for i, w := range m.weights {
		z += w * x[i]
	}
	return z
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// reservoir keeps a uniform sample of at most cap examples out of seen, so
// each kept example stands for seen/len of them.
type reservoir struct {
	cap   int
	seen  int64
	items []featureVec
}

func (r *reservoir) add(x featureVec, rng *rand.Rand) {
	r.seen++
	if len(r.items) < r.cap {
		r.items = append(r.items, x)
		return
	}
	if j := rng.Int64N(r.seen); j < int64(r.cap) {
		r.items[j] = x
	}
}

func (r *reservoir) weight() float64 {
	if len(r.items) == 0 {
		return 0
	}
	return float64(r.seen) / float64(len(r.items))
}

// trainSet holds labelled examples in three strata: positives, negatives
// with some evidence ("hot": the boundary the model must learn, kept
// densely) and negatives with none ("cold": plentiful, sampled sparsely
// and weighted back up). Weighting keeps the fitted probabilities
// calibrated although the strata are sampled at different rates.
type trainSet struct {
	pos, hot, cold reservoir
	rng            *rand.Rand
}

const (
	posCap  = 2048
	hotCap  = 2048
	coldCap = 1024
)

func newTrainSet() trainSet {
	return trainSet{
		pos:  reservoir{cap: posCap},
		hot:  reservoir{cap: hotCap},
		cold: reservoir{cap: coldCap},
		// Its own fixed stream: the holdout draws do not shift it and a
		// replay is reproducible.
		rng: rand.New(rand.NewPCG(0x5eed, 0xa7b1)),
	}
}

// isHot: some detector says something (the hand-set logit is at least one
// above its floor).
func isHot(x *featureVec) bool {
	p := priorModel()
	return p.logit(x) > priorBias+1
}

func (ts *trainSet) add(x featureVec, positive bool) {
	switch {
	case positive:
		ts.pos.add(x, ts.rng)
	case isHot(&x):
		ts.hot.add(x, ts.rng)
	default:
		ts.cold.add(x, ts.rng)
	}
}

// priorStrength is the weight, in examples, of the pull towards the
// hand-set weights: with little data the model stays near them, and a
// feature that the history never exercised keeps its hand-set weight.
const priorStrength = 2.0

// fit fits a logistic regression by damped Newton iterations, maximising
// the weighted log-likelihood with a Gaussian prior centred on the
// hand-set model. It starts from start (the current model) and returns it
// unchanged if the data are empty.
func (ts *trainSet) fit(start model) model {
	type wx struct {
		x *featureVec
		y float64
		c float64
	}
	var data []wx
	for _, s := range []struct {
		r *reservoir
		y float64
	}{{&ts.pos, 1}, {&ts.hot, 0}, {&ts.cold, 0}} {
		c := s.r.weight()
		for i := range s.r.items {
			data = append(data, wx{&s.r.items[i], s.y, c})
		}
	}
	if len(ts.pos.items) == 0 || len(data) == len(ts.pos.items) {
		return start
	}
	const p = numParams
	prior := priorModel()
	theta := [p]float64{start.bias}
	theta0 := [p]float64{prior.bias}
	copy(theta[1:], start.weights[:])
	copy(theta0[1:], prior.weights[:])

	loss := func(th *[p]float64) float64 {
		var l float64
		for _, d := range data {
			z := th[0]
			for i := range numFeatures {
				z += th[i+1] * d.x[i]
			}
			// log(1+e^z) - y z, computed stably.
			l += d.c * (softplus(z) - d.y*z)
		}
		for i := range p {
			l += priorStrength / 2 * (th[i] - theta0[i]) * (th[i] - theta0[i])
		}
		return l
	}

	cur := loss(&theta)
	for iter := 0; iter < 50; iter++ {
		var g [p]float64
		var h [p][p]float64
		var xi [p]float64
		xi[0] = 1
		for _, d := range data {
			copy(xi[1:], d.x[:])
			z := 0.0
			for i := range p {
				z += theta[i] * xi[i]
			}
			q := sigmoid(z)
			r := d.c * (q - d.y)
			s := d.c * q * (1 - q)
			for i := range p {
				if xi[i] == 0 {
					continue
				}
				g[i] += r * xi[i]
				for j := i; j < p; j++ {
					h[i][j] += s * xi[i] * xi[j]
				}
			}
		}
		for i := range p {
			g[i] += priorStrength * (theta[i] - theta0[i])
			h[i][i] += priorStrength
			for j := 0; j < i; j++ {
				h[i][j] = h[j][i]
			}
		}
		step, ok := solveSPD(h, g)
		if !ok {
			break
		}
		// Backtrack until the loss drops: Newton overshoots on nearly
		// separable data.
		t := 1.0
		var next [p]float64
		var nl float64
		for k := 0; k < 30; k++ {
			for i := range p {
				next[i] = theta[i] - t*step[i]
			}
			nl = loss(&next)
			if nl <= cur {
				break
			}
			t /= 2
		}
		if nl > cur {
			break
		}
		var move float64
		for i := range p {
			move = max(move, math.Abs(next[i]-theta[i]))
		}
		theta, cur = next, nl
		if move < 1e-6 {
			break
		}
	}
	out := model{bias: theta[0]}
	copy(out.weights[:], theta[1:])
	return out
}

func softplus(z float64) float64 {
	if z > 30 {
		return z
	}
	if z < -30 {
		return math.Exp(z)
	}
	return math.Log1p(math.Exp(z))
}

const numParams = numFeatures + 1

// solveSPD solves a x = b for a symmetric positive definite a by Cholesky
// decomposition; ok is false if a is not positive definite.
func solveSPD(a [numParams][numParams]float64, b [numParams]float64) (x [numParams]float64, ok bool) {
	const n = numParams
	var l [n][n]float64
	for i := range n {
		for j := 0; j <= i; j++ {
			s := a[i][j]
			for k := 0; k < j; k++ {
				s -= l[i][k] * l[j][k]
			}
			if i == j {
				if s <= 0 || math.IsNaN(s) {
					return x, false
				}
				l[i][i] = math.Sqrt(s)
			} else {
				l[i][j] = s / l[j][j]
			}
		}
	}
	var y [n]float64
	for i := range n {
		s := b[i]
		for k := 0; k < i; k++ {
			s -= l[i][k] * y[k]
		}
		y[i] = s / l[i][i]
	}
	for i := n - 1; i >= 0; i-- {
		s := y[i]
		for k := i + 1; k < n; k++ {
			s -= l[k][i] * x[k]
		}
		x[i] = s / l[i][i]
	}
	return x, true
}

// modelFile is the persisted model: weights plus the training set, so that
// a restarted daemon keeps learning where it stopped.
type modelFile struct {
	Version      int           `json:"version"`
	Features     []string      `json:"features"`
	Bias         float64       `json:"bias"`
	Weights      []float64     `json:"weights"`
	Learned      bool          `json:"learned"`
	Fits         int           `json:"fits"`
	SlowFailures int           `json:"slow_failures"`
	Positives    reservoirFile `json:"positives"`
	Hot          reservoirFile `json:"hot_negatives"`
	Cold         reservoirFile `json:"cold_negatives"`
}

type reservoirFile struct {
	Seen  int64       `json:"seen"`
	Items [][]float32 `json:"items"`
}

const modelVersion = 1

func (r *reservoir) file() reservoirFile {
	f := reservoirFile{Seen: r.seen, Items: make([][]float32, len(r.items))}
	for i, x := range r.items {
		row := make([]float32, numFeatures)
		for j, v := range x {
			// Three decimals are plenty for evidence features and make
			// the stored set about three times smaller.
			row[j] = float32(math.Round(v*1000) / 1000)
		}
		f.Items[i] = row
	}
	return f
}

func (r *reservoir) load(f reservoirFile) error {
	if f.Seen < int64(len(f.Items)) {
		return fmt.Errorf("%w: reservoir holds %d items but saw %d", ErrModelCorrupt, len(f.Items), f.Seen)
	}
	items := make([]featureVec, 0, min(len(f.Items), r.cap))
	for _, row := range f.Items {
		if len(row) != numFeatures {
			return fmt.Errorf("%w: example with %d features, want %d", ErrModelCorrupt, len(row), numFeatures)
		}
		var x featureVec
		for j, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%w: non-finite feature", ErrModelCorrupt)
			}
			x[j] = float64(v)
		}
		if len(items) < r.cap {
			items = append(items, x)
		}
	}
	r.items, r.seen = items, f.Seen
	return nil
}

func checkFeatures(names []string) error {
	if !slices.Equal(names, featureNames[:]) {
		return fmt.Errorf("%w: features %v, want %v", ErrModelMismatch, names, featureNames)
	}
	return nil
}
