package chaos

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestLatencyHistMatchesExactPercentiles(t *testing.T) {
	var h latencyHist
	if h.summary() != nil {
		t.Fatal("an empty histogram claims a distribution")
	}
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, 0, 50000)
	for range 50000 {
		x := math.Exp(r.NormFloat64()*1.5 + 2) // log-normal, ~7 ms median, a long tail
		xs = append(xs, x)
		h.add(x)
	}
	h.add(0) // below the first bucket
	xs = append(xs, 0)
	got, want := h.summary(), Summarize(xs)
	if got.N != want.N || got.Max != want.Max {
		t.Fatalf("n/max = %d/%v, want %d/%v", got.N, got.Max, want.N, want.Max)
	}
	for _, q := range []struct {
		name      string
		got, want float64
	}{{"p50", got.P50, want.P50}, {"p99", got.P99, want.P99}} {
		if rel := math.Abs(q.got-q.want) / q.want; rel > histGrowth-1 {
			t.Errorf("%s = %v, exact %v: off by %.2f %%", q.name, q.got, q.want, rel*100)
		}
	}
}

func TestRecentCallsKeepTheLatestInOrder(t *testing.T) {
	r := newRecentCalls(1) // the smallest ring: 4096
	n := cap(r.recs)
	t0 := time.Unix(1000, 0)
	for i := range n + 10 {
		start := t0.Add(time.Duration(i) * time.Millisecond)
		r.add(callRec{start: start, end: start.Add(time.Duration(i) * time.Microsecond), ok: i%2 == 0})
	}
	var got []callRec
	r.each(func(c callRec) { got = append(got, c) })
	if len(got) != n {
		t.Fatalf("kept %d calls, want %d", len(got), n)
	}
	for j, c := range got {
		i := j + 10 // the first ten were overwritten
		if want := t0.Add(time.Duration(i) * time.Millisecond); !c.start.Equal(want) {
			t.Fatalf("call %d started %v, want %v", j, c.start, want)
		}
		if took := c.end.Sub(c.start); took != time.Duration(i)*time.Microsecond || c.ok != (i%2 == 0) {
			t.Fatalf("call %d: took %v ok %v", j, took, c.ok)
		}
	}
}
