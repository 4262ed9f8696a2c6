package arbiter

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type leakSampler struct {
	i   int
	now *time.Time
}

func (s *leakSampler) Samples(context.Context) ([]Sample, error) {
	s.i++
	*s.now = at(float64(s.i))
	leak := max(0, s.i-30) * (5 << 20)
	return []Sample{
		{Agent: "leaky", Pool: "p", RSS: int64(100<<20 + leak), MemLimit: 256 << 20},
		{Agent: "calm", Pool: "p", RSS: 100 << 20, MemLimit: 256 << 20},
	}, nil
}

type recorder struct {
	replaced []Assessment
	records  []Record
	fail     error
}

func (r *recorder) Replace(_ context.Context, a Assessment) error {
	r.replaced = append(r.replaced, a)
	return r.fail
}

func (r *recorder) Append(_ context.Context, rec Record) error {
	r.records = append(r.records, rec)
	return nil
}

func TestLoopStep(t *testing.T) {
	var now time.Time
	rec := &recorder{}
	l := &Loop{
		Arbiter:  New(Config{Holdout: -1, Now: func() time.Time { return now }}),
		Sampler:  &leakSampler{now: &now},
		Replacer: rec,
		Journal:  rec,
	}
	ctx := context.Background()
	for range 60 {
		if _, err := l.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if len(rec.replaced) > 0 {
			break
		}
	}
	if len(rec.replaced) != 1 || rec.replaced[0].Agent != "leaky" {
		t.Fatalf("replaced %+v, want leaky once", rec.replaced)
	}
	if r := rec.replaced[0].Reasons; len(r) == 0 || !strings.HasPrefix(r[0], "RSS reaches its 256 MiB limit") {
		t.Errorf("reasons %q", r)
	}
	kinds := map[string]int{}
	for _, r := range rec.records {
		kinds[r.Kind]++
		if r.Kind == RecordSample && (r.Sample == nil || r.Sample.Time.IsZero()) {
			t.Fatalf("sample record without a dated sample: %+v", r)
		}
	}
	if kinds[RecordPrediction] != 1 || kinds[RecordSample] < 60 {
		t.Errorf("journal kinds %v", kinds)
	}
	if err := l.Gone(ctx, "leaky", "p", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Failed(ctx, "calm", "p", time.Time{}, "kill"); err != nil {
		t.Fatal(err)
	}
	last := rec.records[len(rec.records)-2:]
	if last[0].Kind != RecordGone || last[1].Kind != RecordFailure || last[1].Failure != "kill" || !last[1].Time.Equal(now) {
		t.Errorf("last records %+v", last)
	}
	if len(l.Arbiter.Risks()) != 0 {
		t.Errorf("agents still known: %+v", l.Arbiter.Risks())
	}

	// The journalled history replays.
	rep := Evaluate(rec.records, Config{})
	if rep.Sudden != 1 || rep.Predictions != 1 || rep.FalsePositives != 0 || rep.Unverifiable != 1 || rep.Acted != 1 {
		t.Errorf("replay of the journal: %+v", rep)
	}
}

func TestLoopErrors(t *testing.T) {
	var now time.Time
	boom := errors.New("boom")
	rec := &recorder{fail: boom}
	l := &Loop{Arbiter: New(Config{Holdout: -1, Now: func() time.Time { return now }}), Sampler: &leakSampler{now: &now}, Replacer: rec}
	var err error
	for range 60 {
		if _, err = l.Step(context.Background()); err != nil {
			break
		}
	}
	if !errors.Is(err, boom) {
		t.Errorf("step error %v, want the replacer's", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run on a cancelled context: %v", err)
	}
}

func TestRecordsRoundTripJSON(t *testing.T) {
	s := Sample{Time: at(1), Agent: "a", Pool: "p", RSS: 5, SyscallP99: time.Millisecond, LogLines: []string{"x"}}
	recs := []Record{SampleRecord(s), FailureRecord("a", "p", at(2), "oom"),
		PredictionRecord(Assessment{Agent: "a", Pool: "p", Time: at(1), Risk: 0.9, Reasons: []string{"r"}, HeldOut: true}),
		GoneRecord("b", "p", at(3))}
	blob, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	var back []Record
	if err := json.Unmarshal(blob, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, recs) {
		t.Errorf("round trip:\n%+v\n%+v", back, recs)
	}
}
