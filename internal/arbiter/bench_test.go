package arbiter

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"
)

// BenchmarkObserve measures the Arbiter's cost per sample on the generated
// history, beside the baseline of merely JSON-encoding the same samples (what
// journalling them costs anyway). agents/core is how many agents one core
// can assess at one sample per second.
func BenchmarkObserve(b *testing.B) {
	gc := defaultGen(1)
	gc.Duration = 30 * time.Minute
	recs, _ := generate(gc)
	var samples []Sample
	for _, r := range recs {
		if r.Kind == RecordSample {
			samples = append(samples, *r.Sample)
		}
	}
	start := time.Now()
	for _, s := range samples {
		if _, err := json.Marshal(&s); err != nil {
			b.Fatal(err)
		}
	}
	baseline := float64(time.Since(start).Nanoseconds()) / float64(len(samples))

	b.ResetTimer()
	var n int
	for b.Loop() {
		a := New(Config{Holdout: -1})
		for _, s := range samples {
			a.Observe(s)
		}
		n += len(samples)
	}
	per := float64(b.Elapsed().Nanoseconds()) / float64(n)
	b.ReportMetric(per, "ns/sample")
	b.ReportMetric(baseline, "baseline-json-ns/sample")
	b.ReportMetric(1e9/per, "agents/core")
}

var maskRegexps = []*regexp.Regexp{
	regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`),
	regexp.MustCompile(`\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`),
	regexp.MustCompile(`\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b`),
	regexp.MustCompile(`-?\b\d+(?:\.\d+)*(?:[eE][-+]?\d+)?`),
}

// regexpTemplate is the usual way to template log lines, the baseline.
func regexpTemplate(line string) string {
	for i, re := range maskRegexps {
		line = re.ReplaceAllString(line, [...]string{`"<str>"`, "<uuid>", "<hex>", "<num>"}[i])
	}
	return line
}

// BenchmarkTemplate compares the hand-written scanner with a regexp-based
// masker on the same lines.
func BenchmarkTemplate(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	lines := make([]string, 256)
	for i := range lines {
		lines[i] = fmt.Sprintf(`%s conn %d to 10.0.%d.%d:%d reset after %dms (req %08x, user "u%d")`,
			[]string{"WARN", "ERROR", "INFO"}[i%3], rng.IntN(1e5), rng.IntN(255), rng.IntN(255),
			8000+rng.IntN(100), rng.IntN(900), rng.Uint32(), rng.IntN(1e4))
	}
	b.Run("scanner", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			Template(lines[i%len(lines)])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/line")
	})
	b.Run("baseline-regexp", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			regexpTemplate(lines[i%len(lines)])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/line")
	})
}

// BenchmarkEvaluate replays half an hour of a generated node.
func BenchmarkEvaluate(b *testing.B) {
	gc := defaultGen(1)
	gc.Duration = 30 * time.Minute
	recs, _ := generate(gc)
	for b.Loop() {
		Evaluate(recs, Config{})
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
