package metrics

import (
	"cmp"
	"slices"

	dto "github.com/prometheus/client_model/go"
)

// CallStats are one pool's call counters and the latency histogram of its
// successful calls since the daemon started, for readers without a
// Prometheus (`resilientctl top`), who take differences between two reads.
type CallStats struct {
	Pool     string            `json:"pool"`
	Outcomes map[string]uint64 `json:"outcomes"`
	// Latency is the cumulative histogram: calls that took at most LE
	// seconds; the last bucket's LE is +Inf (as JSON: omitted, 0).
	Latency []Bucket `json:"latency"`
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	LE    float64 `json:"le,omitempty"`
	Count uint64  `json:"count"`
}

// CallStats reads every pool's call counters and latency histogram.
func (m *Metrics) CallStats() ([]CallStats, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	byPool := map[string]*CallStats{}
	get := func(pool string) *CallStats {
		cs := byPool[pool]
		if cs == nil {
			cs = &CallStats{Pool: pool, Outcomes: map[string]uint64{}}
			byPool[pool] = cs
		}
		return cs
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "resilienced_calls_total":
			for _, mt := range mf.GetMetric() {
				cs := get(label(mt, "pool"))
				cs.Outcomes[label(mt, "outcome")] += uint64(mt.GetCounter().GetValue())
			}
		case "resilienced_call_duration_seconds":
			for _, mt := range mf.GetMetric() {
				cs := get(label(mt, "pool"))
				h := mt.GetHistogram()
				for _, b := range h.GetBucket() {
					cs.Latency = append(cs.Latency, Bucket{LE: b.GetUpperBound(), Count: b.GetCumulativeCount()})
				}
				cs.Latency = append(cs.Latency, Bucket{Count: h.GetSampleCount()}) // +Inf
			}
		}
	}
	out := make([]CallStats, 0, len(byPool))
	for _, cs := range byPool {
		out = append(out, *cs)
	}
	slices.SortFunc(out, func(a, b CallStats) int { return cmp.Compare(a.Pool, b.Pool) })
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
