package arbiter

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// healthySample is one noisy sample of a healthy agent at second i.
func healthySample(rng *rand.Rand, agent string, i int) Sample {
	return Sample{
		Time: at(float64(i)), Agent: agent, Pool: "p",
		RSS: int64((100 + 3*math.Mod(float64(i)/20, 1) + rng.NormFloat64()) * (1 << 20)), MemLimit: 256 << 20,
		SyscallsPerSec: 2000 * (0.9 + 0.2*rng.Float64()), SyscallErrorsPerSec: max(0, 1+rng.NormFloat64()),
		SyscallP99:   time.Duration(400*math.Exp(0.2*rng.NormFloat64())) * time.Microsecond,
		CallLatency:  time.Duration(80*math.Exp(0.1*rng.NormFloat64())) * time.Millisecond,
		CallDeadline: 2 * time.Second,
		Calls:        5,
	}
}

// runToFailure feeds a healthy agent until onset, then mutate's slow burn
// until it reports failure; it returns the first prediction's time and the
// failure time.
func runToFailure(t *testing.T, a *Arbiter, seed uint64, onset int,
	mutate func(s *Sample, since float64) (failed bool)) (pred, fail time.Time, reasons []string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	for i := 0; i < onset+600; i++ {
		s := healthySample(rng, "a", i)
		if i >= onset && mutate(&s, float64(i-onset)) {
			a.Failed("a", s.Time, "x")
			return pred, s.Time, reasons
		}
		as := a.Observe(s)
		if as.Predicted && pred.IsZero() {
			pred, reasons = s.Time, as.Reasons
		}
	}
	t.Fatal("never failed")
	return
}

// TestSlowBurnDetectedAfterOnset: each slow-burn shape, started at a known
// point in a noisy series, is predicted after the onset, never before, and
// at least a second before the failure, with reasons naming it.
func TestSlowBurnDetectedAfterOnset(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *Sample, since float64) bool
		reason string
	}{
		{"memory leak", func(s *Sample, since float64) bool {
			s.RSS += int64(since * (4 << 20))
			return s.RSS >= s.MemLimit
		}, "RSS reaches its 256 MiB limit in"},
		{"linear latency", func(s *Sample, since float64) bool {
			s.CallLatency += time.Duration(since * 40 * float64(time.Millisecond))
			return s.CallLatency >= s.CallDeadline
		}, "deadline"},
		{"exponential latency", func(s *Sample, since float64) bool {
			s.CallLatency = time.Duration(float64(s.CallLatency) * math.Exp2(since/5))
			return s.CallLatency >= s.CallDeadline
		}, "deadline"},
		{"error snowball", func(s *Sample, since float64) bool {
			s.SyscallErrorsPerSec = 2 * math.Exp2(since/3)
			return s.SyscallErrorsPerSec >= 0.15*s.SyscallsPerSec
		}, "syscall errors"},
	}
	for _, c := range cases {
		for seed := range uint64(5) {
			const onset = 120
			a := New(Config{Holdout: -1})
			pred, fail, reasons := runToFailure(t, a, seed, onset, c.mutate)
			switch {
			case pred.IsZero():
				t.Errorf("%s seed %d: not predicted (failed at %v)", c.name, seed, fail.Sub(t0))
			case pred.Before(at(onset)):
				t.Errorf("%s seed %d: predicted at %v, before the onset at %ds", c.name, seed, pred.Sub(t0), onset)
			case fail.Sub(pred) < time.Second:
				t.Errorf("%s seed %d: lead %v, want at least 1s", c.name, seed, fail.Sub(pred))
			case fail.Sub(pred) > 10*time.Second:
				t.Errorf("%s seed %d: lead %v, beyond the 10s horizon", c.name, seed, fail.Sub(pred))
			case !strings.Contains(strings.Join(reasons, "; "), c.reason):
				t.Errorf("%s seed %d: reasons %q do not say %q", c.name, seed, reasons, c.reason)
			}
			if seed == 0 {
				t.Logf("%s: lead %v, reasons %q", c.name, fail.Sub(pred), reasons)
			}
		}
	}
}

// TestNoPredictionOnHealthyNoise: agents with noisy but healthy telemetry
// (GC sawtooth, latency spikes, error noise, routine logs) for hours are
// never predicted to fail.
func TestNoPredictionOnHealthyNoise(t *testing.T) {
	a := New(Config{Holdout: -1})
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 4 * 3600 {
		for k := range 3 {
			s := healthySample(rng, fmt.Sprint("h", k), i)
			if rng.Float64() < 0.01 {
				s.CallLatency *= 6 // a slow call
			}
			if rng.Float64() < 0.01 {
				s.SyscallP99 *= 8
			}
			if rng.Float64() < 0.3 {
				s.LogLines = []string{fmt.Sprintf("served %d in %dms", rng.IntN(1e6), rng.IntN(200))}
			}
			if as := a.Observe(s); as.Predicted {
				t.Fatalf("healthy agent predicted at %v: risk %.2f %q", s.Time.Sub(t0), as.Risk, as.Reasons)
			}
		}
	}
}

func TestLogBurstIsAReason(t *testing.T) {
	a := New(Config{Holdout: -1})
	rng := rand.New(rand.NewPCG(1, 1))
	var as Assessment
	for i := range 60 {
		s := healthySample(rng, "a", i)
		s.LogLines = []string{fmt.Sprintf("served %d", i)}
		if i >= 50 {
			for k := range 40 {
				s.LogLines = append(s.LogLines, fmt.Sprintf("panic: shard %d lost quorum (term %d)", k, i))
			}
		}
		as = a.Observe(s)
	}
	got := strings.Join(as.Reasons, "; ")
	if !strings.Contains(got, `burst of rare stderr lines`) || !strings.Contains(got, `panic: shard <num> lost quorum (term <num>)`) {
		t.Errorf("reasons %q do not name the burst and its template", as.Reasons)
	}
}

// TestHoldoutHonoured: about Holdout of the agents that reach the
// threshold are held out, and a held-out agent is never acted on, even
// when predicted again.
func TestHoldoutHonoured(t *testing.T) {
	for _, c := range []struct {
		holdout  float64
		min, max float64
	}{{0.5, 0.42, 0.58}, {-1, 0, 0}, {1, 1, 1}, {0.1, 0.05, 0.15}} {
		a := New(Config{Holdout: c.holdout, Rand: rand.New(rand.NewPCG(3, 3))})
		const agents = 400
		held := 0
		for k := range agents {
			agent := fmt.Sprint("a", k)
			var heldOut bool
			for i := range 25 {
				// Half the calls violate the contract: evidence 2, risk ≈ 1.
				as := a.Observe(Sample{Time: at(float64(i)), Agent: agent, Pool: "p", Calls: 2, Violations: 2})
				if as.Act && as.HeldOut {
					t.Fatalf("held-out agent %s acted on", agent)
				}
				if as.Predicted {
					if i > 0 && heldOut != as.HeldOut {
						t.Fatalf("agent %s changed holdout", agent)
					}
					heldOut = as.HeldOut
					if as.Act == as.HeldOut {
						t.Fatalf("predicted %s: act %v held out %v", agent, as.Act, as.HeldOut)
					}
				}
			}
			if heldOut {
				held++
			}
			a.Forget(agent)
		}
		share := float64(held) / agents
		if share < c.min || share > c.max {
			t.Errorf("holdout %v: %.2f held out, want [%v, %v]", c.holdout, share, c.min, c.max)
		}
	}
}

// TestPredictionEpisodes: a prediction stands for Horizon; the next comes
// only after it expires.
func TestPredictionEpisodes(t *testing.T) {
	a := New(Config{Holdout: -1, Horizon: 10 * time.Second})
	var preds []int
	for i := range 35 {
		if as := a.Observe(Sample{Time: at(float64(i)), Agent: "a", Pool: "p", Calls: 2, Violations: 2}); as.Predicted {
			preds = append(preds, i)
		}
	}
	if len(preds) != 4 || preds[1]-preds[0] != 10 || preds[2]-preds[1] != 10 {
		t.Errorf("predictions at %v, want one every 10 s", preds)
	}
}

func TestForgetFailedAndStale(t *testing.T) {
	a := New(Config{StaleAfter: 30 * time.Second})
	for _, agent := range []string{"a", "b", "c"} {
		a.Observe(Sample{Time: at(0), Agent: agent, Pool: "p"})
	}
	a.Forget("a")
	a.Failed("b", at(1), "oom")
	a.Failed("zzz", at(1), "oom") // unknown: ignored
	if r := a.Risks(); len(r) != 1 || r[0].Agent != "c" {
		t.Fatalf("risks %+v, want only c", r)
	}
	a.Observe(Sample{Time: at(100), Agent: "d", Pool: "p"})
	if r := a.Risks(); len(r) != 1 || r[0].Agent != "d" {
		t.Fatalf("risks %+v: stale c not swept", r)
	}
}

func TestRisksOrder(t *testing.T) {
	a := New(Config{Holdout: -1})
	a.Observe(Sample{Time: at(0), Agent: "calm", Pool: "p", Calls: 2})
	a.Observe(Sample{Time: at(0), Agent: "bad", Pool: "p", Calls: 2, Violations: 2})
	r := a.Risks()
	if len(r) != 2 || r[0].Agent != "bad" || r[0].Risk < r[1].Risk || len(r[0].Reasons) == 0 {
		t.Fatalf("risks %+v", r)
	}
	if !strings.Contains(r[0].Reasons[0], "violate the contract") {
		t.Errorf("reason %q", r[0].Reasons[0])
	}
}

// separableHistory is agents whose CPU pressure (a feature the hand-set
// weights ignore) climbs to 100 % and then fail, and healthy agents with
// low pressure, interleaved in time.
func separableHistory(n int) []Record {
	rng := rand.New(rand.NewPCG(11, 11))
	var recs []Record
	start := 0
	for k := range n {
		agent := fmt.Sprint("a", k)
		failing := k%2 == 0
		for i := range 40 {
			s := Sample{Time: at(float64(start + i)), Agent: agent, Pool: "p", PSICPU: 5 * rng.Float64()}
			if failing && i >= 20 {
				s.PSICPU = 5 * float64(i-19)
				if s.PSICPU >= 100 {
					recs = append(recs, FailureRecord(agent, "p", s.Time, "exit"))
					break
				}
			}
			recs = append(recs, SampleRecord(s))
		}
		if !failing {
			recs = append(recs, GoneRecord(agent, "p", at(float64(start+40))))
		}
		start += 15 // agents overlap in time
	}
	sortRecords(recs)
	return recs
}

// TestModelLearnsSeparableHistory: on a time-ordered split, a model trained
// on the first 70 % of a history predicts the last 30 %, through a feature
// it had no hand-set weight for.
func TestModelLearnsSeparableHistory(t *testing.T) {
	recs := separableHistory(200)
	split := recs[len(recs)*7/10].Time
	a := New(Config{Holdout: -1})
	if w := a.Model().Weights["psi_cpu"]; w != 0 {
		t.Fatalf("hand-set psi_cpu weight %v, want 0", w)
	}
	var train, test []Record
	for _, r := range recs {
		if r.Time.Before(split) {
			train = append(train, r)
		} else {
			test = append(test, r)
		}
	}
	replayInto(a, train)
	mi := a.Model()
	if !mi.Learned || mi.Weights["psi_cpu"] < 3 {
		t.Fatalf("model after training: %+v", mi)
	}
	t.Logf("learned: bias %.2f psi_cpu %.2f after %d fits", mi.Bias, mi.Weights["psi_cpu"], mi.Fits)

	// Score the test part without learning from it: a copy of the model.
	blob, err := a.MarshalModel()
	if err != nil {
		t.Fatal(err)
	}
	b := New(Config{Holdout: -1, MinFailures: 1 << 30})
	if err := b.UnmarshalModel(blob); err != nil {
		t.Fatal(err)
	}
	fails := map[string]time.Time{}
	for _, r := range test {
		if r.Kind == RecordFailure {
			fails[r.Agent] = r.Time
		}
	}
	var right, wrong int
	for _, r := range test {
		if r.Kind != RecordSample {
			continue
		}
		as := b.Observe(*r.Sample)
		f, ok := fails[r.Agent]
		positive := ok && f.Sub(r.Time) <= b.cfg.Target
		if (as.Risk >= 0.5) == positive {
			right++
		} else {
			wrong++
		}
	}
	if acc := float64(right) / float64(right+wrong); acc < 0.95 {
		t.Errorf("accuracy on the later 30 %%: %.3f (%d wrong of %d)", acc, wrong, right+wrong)
	}
}

func replayInto(a *Arbiter, recs []Record) {
	for _, r := range recs {
		switch r.Kind {
		case RecordSample:
			a.Observe(*r.Sample)
		case RecordFailure:
			a.Failed(r.Agent, r.Time, r.Failure)
		case RecordGone:
			a.Forget(r.Agent)
		}
	}
}

func TestModelMarshalRoundTrip(t *testing.T) {
	a := New(Config{Holdout: -1})
	replayInto(a, separableHistory(60))
	blob, err := a.MarshalModel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stored model: %d bytes", len(blob))
	b := New(Config{Holdout: -1})
	if err := b.UnmarshalModel(blob); err != nil {
		t.Fatal(err)
	}
	ma, mb := a.Model(), b.Model()
	if fmt.Sprint(ma) != fmt.Sprint(mb) {
		t.Fatalf("model changed in the round trip:\n%+v\n%+v", ma, mb)
	}
	if len(b.train.pos.items) != len(a.train.pos.items) || b.train.cold.seen != a.train.cold.seen {
		t.Errorf("training set changed in the round trip")
	}
	s := Sample{Time: at(0), Agent: "x", Pool: "fresh", PSICPU: 90} // a pool without failures in a
	if ra, rb := a.Observe(s).Risk, b.Observe(s).Risk; ra != rb {
		t.Errorf("risk %v before, %v after the round trip", ra, rb)
	}

	for _, c := range []struct {
		name string
		blob string
		want error
	}{
		{"garbage", "{", ErrModelCorrupt},
		{"version", `{"version": 99}`, ErrModelMismatch},
		{"features", `{"version": 1, "features": ["x"]}`, ErrModelMismatch},
		{"weights", strings.Replace(string(blob), `"weights":[`, `"weights":[1,`, 1), ErrModelCorrupt},
	} {
		if err := b.UnmarshalModel([]byte(c.blob)); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
	if fmt.Sprint(b.Model()) != fmt.Sprint(mb) {
		t.Error("a failed UnmarshalModel changed the model")
	}
}

func TestReasonFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtBytes(256 << 20), "256 MiB"},
		{fmtBytes(1.5 * (1 << 30)), "1.5 GiB"},
		{fmtBytes(3.25 * (1 << 20)), "3.3 MiB"},
		{fmtSoon(4200 * time.Millisecond), "~4 s"},
		{fmtSoon(300 * time.Millisecond), "<1 s"},
		{fmtSoon(5 * time.Minute), "~5 min"},
		{fmtRatio(8.2), "8×"},
		{fmtRatio(1.46), "1.5×"},
		{fmtLatency(1234567 * time.Microsecond), "1.23s"},
		{fmtLatency(254321 * time.Microsecond), "254ms"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestConcurrentUse: the Arbiter may be fed by one goroutine while others
// report failures and read risks (run with -race).
func TestConcurrentUse(t *testing.T) {
	a := New(Config{Holdout: 0.5, Rand: rand.New(rand.NewPCG(1, 1))})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			a.Observe(Sample{Time: at(float64(i) / 10), Agent: fmt.Sprint("a", i%7), Pool: "p", Calls: 2, Violations: i % 3})
		}
	}()
	for i := range 200 {
		a.Failed(fmt.Sprint("a", i%7), at(float64(i)), "exit")
		a.Risks()
		a.Demand("p", time.Second)
		if _, err := a.MarshalModel(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	before := a.Model().SlowFailures
	a.Observe(Sample{Time: at(999), Agent: "z", Pool: "p"})
	a.Failed("z", at(1000), "exit")
	if got := a.Model().SlowFailures; got != before+1 {
		t.Errorf("slow failures %d after %d and one more", got, before)
	}
}

// TestSpareBaselineRestartsAtWork: a spare idles with no syscall errors,
// then is promoted and makes the errors every agent at work makes (EAGAIN
// on its pipes). That is its normal, not a change: no prediction. The same
// rise on an agent that was at work from the start is one.
func TestSpareBaselineRestartsAtWork(t *testing.T) {
	for _, spare := range []bool{true, false} {
		a := New(Config{Holdout: -1})
		rng := rand.New(rand.NewPCG(3, 3))
		predicted := false
		for i := range 300 {
			s := healthySample(rng, "s", i)
			working := !spare || i >= 60
			if !working {
				s.Calls, s.CallLatency, s.SyscallErrorsPerSec, s.SyscallsPerSec = 0, 0, 0, 50
			}
			if i >= 60 {
				s.SyscallErrorsPerSec = 60 + 5*rng.NormFloat64()
			}
			if as := a.Observe(s); as.Predicted {
				predicted = true
				if spare {
					t.Fatalf("promoted spare predicted at %ds: %q", i, as.Reasons)
				}
			}
		}
		if !spare && !predicted {
			t.Error("a 60× jump in syscall errors of an agent at work was not predicted")
		}
	}
}

// A pool whose agents fail per call (hallucinations) loses agents all the
// time, and a model learned on it weighs that; but a fresh agent would
// carry the same risk, so no agent is predicted on the pool's losses
// alone, while one with its own evidence still is.
func TestPoolLossesAloneDoNotPredict(t *testing.T) {
	a := New(Config{Holdout: -1, MinFailures: 1 << 30}) // no refit: the weight below stands
	a.model.weights[fPoolFailures] = 2 * priorWeight    // as learned on such a pool
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 600 {
		dead := healthySample(rng, fmt.Sprint("dead", i), i)
		a.Observe(dead)
		a.Failed(dead.Agent, at(float64(i)), "violation") // one a second
		s := healthySample(rng, "h", i)
		if as := a.Observe(s); as.Predicted {
			t.Fatalf("a healthy agent predicted at %ds on its pool's losses: risk %.2f %q", i, as.Risk, as.Reasons)
		}
	}
	if as := a.Observe(healthySample(rng, "h", 600)); as.Risk < a.cfg.Threshold {
		t.Fatalf("risk %.2f: the test's pool losses do not weigh enough to tell anything", as.Risk)
	}
	// Its own evidence: RSS at its limit.
	s := healthySample(rng, "h", 601)
	s.RSS = s.MemLimit
	var predicted bool
	for i := 601; i < 640 && !predicted; i++ {
		s.Time = at(float64(i))
		predicted = a.Observe(s).Predicted
	}
	if !predicted {
		t.Error("an agent at its memory limit was not predicted")
	}
}
