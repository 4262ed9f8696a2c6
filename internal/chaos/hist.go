package chaos

import "math"

// latencyHist is a distribution of latencies in fixed memory: buckets whose
// bounds grow by histGrowth, from histMinMS up. An experiment may run for
// hours, and the daemon that runs it must not grow with it (a slice of
// every call did: ~1 MiB per 10 minutes at 20 calls/s). Percentiles are
// the nearest rank's bucket, within histGrowth of the exact value (and
// never above the exact maximum, which is kept).
type latencyHist struct {
	counts []uint32
	n      int
	max    float64
}

const (
	histMinMS  = 0.001 // 1 µs: below it, the first bucket
	histGrowth = 1.005 // relative width of a bucket: 0.5 %
	// histBuckets reach 10 minutes, longer than any call may take.
	histBuckets = 4100
)

var histLogGrowth = math.Log(histGrowth)

func (h *latencyHist) add(ms float64) {
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	i := 0
	if ms > histMinMS {
		i = min(int(math.Log(ms/histMinMS)/histLogGrowth)+1, histBuckets-1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, ms)
}

// upper is bucket i's upper bound in milliseconds.
func upper(i int) float64 { return histMinMS * math.Pow(histGrowth, float64(i)) }

// summary returns the distribution, or nil when nothing was added.
func (h *latencyHist) summary() *Summary {
	if h.n == 0 {
		return nil
	}
	rank := func(q float64) float64 {
		want := max(1, int(math.Ceil(q*float64(h.n))))
		seen := 0
		for i, c := range h.counts {
			if seen += int(c); seen >= want {
				return min(upper(i), h.max)
			}
		}
		return h.max
	}
	return &Summary{N: h.n, P50: rank(0.50), P99: rank(0.99), Max: h.max}
}
