package arbiter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// fate is what becomes of a generated agent.
type fate int

const (
	fateHealthy fate = iota // runs, then is stopped (gone)
	fateLeak                // RSS grows linearly to its limit: "oom"
	fateLatency             // call latency rises (linear or exponential) to the deadline: "deadline"
	fateErrors              // syscall errors snowball until it crashes: "exit"
	fateKill                // killed without warning: "kill"
)

var fateKinds = map[fate]string{fateLeak: "oom", fateLatency: "deadline", fateErrors: "exit", fateKill: "kill"}

type genPool struct {
	name     string
	limit    int64
	deadline time.Duration
	latency  [2]float64 // baseline call latency range, seconds
}

// genConfig shapes a generated history.
type genConfig struct {
	Seed     uint64
	Start    time.Time
	Duration time.Duration // per slot
	Slots    int           // concurrent agents per pool
	Pools    []genPool
	// Fate weights, in fate order.
	Fates [5]float64
	// Step is the sampling interval.
	Step time.Duration
}

func defaultGen(seed uint64) genConfig {
	return genConfig{
		Seed:     seed,
		Start:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Duration: 2 * time.Hour,
		Slots:    6,
		Pools: []genPool{
			{name: "llm", limit: 256 << 20, deadline: 2 * time.Second, latency: [2]float64{0.04, 0.15}},
			{name: "tool", limit: 512 << 20, deadline: time.Second, latency: [2]float64{0.01, 0.04}},
		},
		Fates: [5]float64{0.5, 0.15, 0.15, 0.1, 0.1},
		Step:  time.Second,
	}
}

type genStats struct {
	byFate   [5]int         // fates drawn
	failures map[string]int // failures recorded, by kind (an agent can outlive the history)
}

// generate produces a time-ordered history.
func generate(gc genConfig) ([]Record, genStats) {
	rng := rand.New(rand.NewPCG(gc.Seed, gc.Seed*7+1))
	var recs []Record
	var stats genStats
	for _, p := range gc.Pools {
		for slot := 0; slot < gc.Slots; slot++ {
			t := gc.Start.Add(time.Duration(rng.Float64() * float64(5*time.Second)))
			end := gc.Start.Add(gc.Duration)
			for n := 0; t.Before(end); n++ {
				id := fmt.Sprintf("%s-%d-%d", p.name, slot, n)
				f := pickFate(rng, gc.Fates)
				stats.byFate[f]++
				var last time.Time
				recs, last = genAgent(recs, rng, gc, p, id, f, t, end)
				t = last.Add(time.Second + time.Duration(rng.Float64()*float64(2*time.Second)))
			}
		}
	}
	sortRecords(recs)
	stats.failures = map[string]int{}
	for _, r := range recs {
		if r.Kind == RecordFailure {
			stats.failures[r.Failure]++
		}
	}
	return recs, stats
}

func pickFate(rng *rand.Rand, w [5]float64) fate {
	var sum float64
	for _, v := range w {
		sum += v
	}
	r := rng.Float64() * sum
	for i, v := range w {
		if r < v {
			return fate(i)
		}
		r -= v
	}
	return fateHealthy
}

func sortRecords(recs []Record) {
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Time.Compare(b.Time) })
}

func genAgent(recs []Record, rng *rand.Rand, gc genConfig, p genPool, id string, f fate, start, end time.Time) ([]Record, time.Time) {
	limit := float64(p.limit)
	rss0 := limit * (0.25 + 0.35*rng.Float64())
	gcPeriod := 15 + 25*rng.Float64()
	gcAmp := limit * (0.02 + 0.06*rng.Float64())
	lat0 := p.latency[0] + (p.latency[1]-p.latency[0])*rng.Float64()
	p990 := 200e-6 + 800e-6*rng.Float64()
	err0 := 3 * rng.Float64()
	sys0 := 1000 + 3000*rng.Float64()
	callRate := 2 + 6*rng.Float64()

	life := time.Duration((10 + 20*rng.Float64()) * float64(time.Minute))
	onset := time.Duration((60 + 540*rng.Float64()) * float64(time.Second))
	if f == fateKill {
		onset = time.Duration((30 + 900*rng.Float64()) * float64(time.Second))
	}
	// Slow-burn shapes.
	leakRate := (1 + 7*rng.Float64()) * (1 << 20) * (limit / (256 << 20))
	expLatency := rng.Float64() < 0.5
	latDoubling := 4 + 8*rng.Float64()
	latSlope := (p.deadline.Seconds() - lat0) / (30 + 60*rng.Float64())
	errDoubling := 2.5 + 3.5*rng.Float64()
	errCrash := 0.10 + 0.05*rng.Float64() // share of syscalls failing
	rareTmpl := fmt.Sprintf("dial tcp %d.%d.%d.%d:%d: connect: connection refused", 10, rng.IntN(255), rng.IntN(255), rng.IntN(255), 8000+rng.IntN(100))

	t := start
	var leaked float64
	for i := 0; ; i++ {
		if t.After(end) || (f == fateHealthy && t.Sub(start) >= life) {
			recs = append(recs, GoneRecord(id, p.name, t))
			return recs, t
		}
		el := t.Sub(start).Seconds()
		since := el - onset.Seconds()
		s := Sample{
			Time: t, Agent: id, Pool: p.name,
			MemLimit:     p.limit,
			CallDeadline: p.deadline,
		}
		// Memory: a GC sawtooth plus noise, plus the leak.
		rss := rss0 + gcAmp*math.Mod(el/gcPeriod, 1) + rng.NormFloat64()*limit*0.005
		if f == fateLeak && since > 0 {
			leaked += leakRate * gc.Step.Seconds() * (0.8 + 0.4*rng.Float64())
			rss += leaked
		}
		// Latency: lognormal noise and rare single-sample spikes.
		lat := lat0 * math.Exp(0.1*rng.NormFloat64())
		if rng.Float64() < 0.01 {
			lat *= 4 + 4*rng.Float64()
		}
		p99 := p990 * math.Exp(0.2*rng.NormFloat64())
		if rng.Float64() < 0.01 {
			p99 *= 3 + 5*rng.Float64()
		}
		errs := math.Max(0, err0+math.Sqrt(err0+0.5)*rng.NormFloat64())
		var psi float64
		if rng.Float64() < 0.05 {
			psi = 5 * rng.Float64()
		}
		var failKind string
		switch {
		case f == fateLeak && since > 0:
			if frac := rss / limit; frac > 0.9 {
				psi = 60 * (frac - 0.9) / 0.1
			}
			if rss >= limit {
				failKind = "oom"
			}
		case f == fateLatency && since > 0:
			var trend float64
			if expLatency {
				trend = lat0 * math.Exp2(since/latDoubling)
			} else {
				trend = lat0 + latSlope*since
			}
			lat = trend * math.Exp(0.1*rng.NormFloat64())
			p99 *= 1 + trend/lat0/4
			if lat >= p.deadline.Seconds() {
				// The first call over its deadline.
				failKind = "deadline"
			}
		case f == fateErrors && since > 0:
			level := (err0 + 1) * math.Exp2(since/errDoubling)
			errs = level * (0.8 + 0.4*rng.Float64())
			if level >= errCrash*sys0 {
				failKind = "exit"
			}
		case f == fateKill && since > 0:
			failKind = "kill"
		}
		if failKind != "" {
			recs = append(recs, FailureRecord(id, p.name, t, failKind))
			return recs, t
		}
		s.RSS = int64(rss)
		s.CallLatency = time.Duration(lat * float64(time.Second))
		s.SyscallP99 = time.Duration(p99 * float64(time.Second))
		s.SyscallsPerSec = sys0 * (0.9 + 0.2*rng.Float64())
		s.SyscallErrorsPerSec = errs
		s.Calls = poisson(rng, callRate*gc.Step.Seconds())
		s.PSIMemory = psi
		if rng.Float64() < 0.3 {
			s.LogLines = append(s.LogLines, fmt.Sprintf("handled request %08x in %dms", rng.Uint32(), int(lat*1000)))
		}
		if rng.Float64() < 0.002 {
			s.LogLines = append(s.LogLines, fmt.Sprintf("warning: %s cache %s evicted", words[rng.IntN(len(words))], words[rng.IntN(len(words))]))
		}
		if f == fateErrors && since > 0 {
			for k := 0; k < int(errs/20); k++ {
				s.LogLines = append(s.LogLines, rareTmpl)
			}
		}
		recs = append(recs, SampleRecord(s))
		t = t.Add(gc.Step + time.Duration((rng.Float64()-0.5)*0.1*float64(gc.Step)))
	}
}

var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"}

func poisson(rng *rand.Rand, lambda float64) int {
	l := math.Exp(-lambda)
	k, p := 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
