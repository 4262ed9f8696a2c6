package ring

import (
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"
)

// Benchmarks print the baseline beside the result in the same run:
//
//	go test -run '^$' -bench . ./internal/ring
//
// Imbalance and Move do their whole measurement once per iteration and
// report figures, not speed; their ns/op is the cost of building the rings.

const (
	benchMembers = 64
	benchKeys    = 100_000
)

var (
	sinkString string
	sinkBool   bool
)

func benchKeyNames(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		// Session ids are UUID-like in practice; 36 bytes.
		keys[i] = fmt.Sprintf("%s-%08x-4e2b-9c1d-%012d", prefix, i, i)
	}
	return keys
}

// benchRing is a ring of 64 active members holding 100k assigned keys, and
// the same assignments in a plain map, the baseline.
func benchRing(b *testing.B, opts Options) (*Ring, []string, map[string]string) {
	b.Helper()
	r := newActive(b, opts, memberNames(benchMembers)...)
	keys := benchKeyNames("held", benchKeys)
	plain := make(map[string]string, len(keys))
	for _, k := range keys {
		plain[k], _ = r.Assign(k)
	}
	return r, keys, plain
}

// timed runs n calls of f and returns wall-clock and thread-CPU ns per call.
// The caller must hold runtime.LockOSThread so that the thread CPU clock
// follows it.
func timed(n int, f func(i int)) (wall, cpu float64) {
	start, startCPU := time.Now(), threadCPU()
	for i := range n {
		f(i)
	}
	cpu = float64(threadCPU()-startCPU) / float64(n)
	return float64(time.Since(start).Nanoseconds()) / float64(n), cpu
}

// compare times op as the benchmark (ns/op) and then baseline, and reports
// both, with thread CPU time per op beside each: the box these run on is
// shared, and cpu-ns/op is the figure that waiting for a CPU does not
// inflate.
func compare(b *testing.B, op, baseline func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	_, cpu := timed(b.N, op)
	b.StopTimer()
	baseWall, baseCPU := timed(b.N, baseline)
	b.ReportMetric(cpu, "cpu-ns/op")
	b.ReportMetric(baseWall, "map-ns/op")
	b.ReportMetric(baseCPU, "map-cpu-ns/op")
}

// BenchmarkLookup: Lookup with 64 members and 100k assigned keys, beside a
// plain map lookup of the same keys. "held" keys are assigned (the common
// case: a call in an existing session); "fresh" keys are not, so Lookup
// walks the ring.
func BenchmarkLookup(b *testing.B) {
	r, held, plain := benchRing(b, Options{})
	fresh := benchKeyNames("fresh", benchKeys)
	for _, c := range []struct {
		name string
		keys []string
	}{{"held", held}, {"fresh", fresh}} {
		b.Run(c.name, func(b *testing.B) {
			keys := c.keys
			b.ReportAllocs()
			compare(b,
				func(i int) { sinkString, sinkBool = r.Lookup(keys[i%len(keys)]) },
				func(i int) { sinkString, sinkBool = plain[keys[i%len(keys)]] })
		})
	}
}

// BenchmarkAssign: "held" is Assign of an assigned key (sticky hit), beside
// a map lookup; "fresh+release" is Assign of a new key plus its Release,
// beside a map insert plus delete.
func BenchmarkAssign(b *testing.B) {
	r, held, plain := benchRing(b, Options{})
	b.Run("held", func(b *testing.B) {
		b.ReportAllocs()
		compare(b,
			func(i int) { sinkString, sinkBool = r.Assign(held[i%len(held)]) },
			func(i int) { sinkString, sinkBool = plain[held[i%len(held)]] })
	})
	b.Run("fresh+release", func(b *testing.B) {
		fresh := benchKeyNames("fresh", benchKeys)
		compare(b,
			func(i int) {
				k := fresh[i%len(fresh)]
				sinkString, sinkBool = r.Assign(k)
				r.Release(k)
			},
			func(i int) {
				k := fresh[i%len(fresh)]
				plain[k] = "agent"
				delete(plain, k)
			})
	})
}

// BenchmarkImbalance: max/mean load of 64 members after 100k keys, with the
// default ε = 0.25 and, as baseline, plain consistent hashing (ε = ∞) on the
// same virtual nodes; per virtual-node count, which is how the default was
// chosen. "bound" is ⌈1.25·mean⌉/mean.
func BenchmarkImbalance(b *testing.B) {
	for _, vn := range []int{16, 64, 128, 256} {
		b.Run(fmt.Sprint("vnodes=", vn), func(b *testing.B) {
			var bounded, plain float64
			for range b.N {
				r, _, _ := benchRing(b, Options{VirtualNodes: vn})
				p, _, _ := benchRing(b, Options{VirtualNodes: vn, Epsilon: math.Inf(1)})
				bounded, plain = r.Imbalance(), p.Imbalance()
			}
			mean := float64(benchKeys) / benchMembers
			b.ReportMetric(bounded, "max/mean")
			b.ReportMetric(plain, "plain-max/mean")
			b.ReportMetric(math.Ceil(1.25*mean)/mean, "bound")
		})
	}
}

// BenchmarkMove: the keys that change owner when one of n members leaves
// (Remove), counted by comparing every key's owner before and after, in
// units of keys/n (1.0 is the ideal: only the leaver's fair share moves).
// Each of up to 16 members leaves in turn from the same starting ring;
// "mean" and "max" are over those leavers. Baselines in the same run: plain
// consistent hashing (ε = ∞) and modulo hashing (hash % n → hash % (n-1)),
// which moves about (n-1)/n of all keys, n-1 in these units. "others"
// counts keys of members that did not leave that moved anyway (must be 0);
// "after-max/mean" is the worst imbalance after a leave.
func BenchmarkMove(b *testing.B) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			var m, p moveStats
			var modulo float64
			for range b.N {
				m = measureMoves(b, n, Options{})
				p = measureMoves(b, n, Options{Epsilon: math.Inf(1)})
				modulo = moduloMoves(n)
			}
			b.ReportMetric(m.mean, "moved/(keys/n)")
			b.ReportMetric(m.max, "max-moved/(keys/n)")
			b.ReportMetric(m.mean/float64(n), "moved-frac")
			b.ReportMetric(float64(m.others), "others")
			b.ReportMetric(m.after, "after-max/mean")
			b.ReportMetric(p.mean, "plain-moved/(keys/n)")
			b.ReportMetric(p.max, "plain-max-moved/(keys/n)")
			b.ReportMetric(modulo, "modulo-moved/(keys/n)")
			b.ReportMetric(modulo/float64(n), "modulo-moved-frac")
		})
	}
}

type moveStats struct {
	mean, max float64
	others    int
	after     float64 // worst max/mean after a leave
}

func measureMoves(b *testing.B, n int, opts Options) moveStats {
	b.Helper()
	names := memberNames(n)
	base := newActive(b, opts, names...)
	keys := benchKeyNames("held", benchKeys)
	for _, k := range keys {
		base.Assign(k)
	}
	before := assignments(base)
	// Up to 16 leavers, evenly spaced, keep the run short.
	var leavers []string
	for i := 0; i < n; i += max(1, n/16) {
		leavers = append(leavers, names[i])
	}
	var s moveStats
	for _, leaver := range leavers {
		r := cloneRing(base)
		r.Remove(leaver)
		moved := 0
		for k, m := range before {
			now, _ := r.Lookup(k)
			if now != m {
				moved++
				if m != leaver {
					s.others++
				}
			}
		}
		ratio := float64(moved) / (float64(len(keys)) / float64(n))
		s.mean += ratio / float64(len(leavers))
		s.max = max(s.max, ratio)
		s.after = max(s.after, r.Imbalance())
	}
	return s
}

func moduloMoves(n int) float64 {
	moved := 0
	for _, k := range benchKeyNames("held", benchKeys) {
		h := xxh64([]byte(k))
		if h%uint64(n) != h%uint64(n-1) {
			moved++
		}
	}
	return float64(moved) / (float64(benchKeys) / float64(n))
}

// cloneRing deep-copies r, so each leave in BenchmarkMove starts from the
// same assignments without assigning 100k keys again.
func cloneRing(r *Ring) *Ring {
	c := &Ring{
		vnodes:  r.vnodes,
		factor:  r.factor,
		hash:    r.hash,
		members: make(map[string]*member, len(r.members)),
		active:  r.active,
		points:  r.points,
		owner:   make(map[string]*member, len(r.owner)),
		index:   r.index,
		shift:   r.shift,
	}
	for name, m := range r.members {
		cm := &member{name: m.name, state: m.state, vnodes: m.vnodes, keys: make(map[string]struct{}, len(m.keys))}
		for k := range m.keys {
			cm.keys[k] = struct{}{}
			c.owner[k] = cm
		}
		c.members[name] = cm
	}
	c.owners = make([]*member, len(r.owners))
	for i, m := range r.owners {
		c.owners[i] = c.members[m.name]
	}
	return c
}
