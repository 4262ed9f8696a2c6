package ring

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRandomOperations drives rings through long random sequences of every
// operation (fixed seeds, so failures reproduce) and checks after each one:
//
//   - the ring is internally consistent and only active members own keys;
//   - Lookup of a fresh key names the member Assign then picks;
//   - a placement never takes a member above the bound at that moment;
//   - Add, Release and becoming active move no key; a member leaving Active
//     or the ring moves exactly its own keys, to active members, within the
//     bound; Rebalance moves exactly the excess over the bound;
//   - the strict bound (every member within ⌈(1+ε)·mean⌉) holds at all times
//     except after a Release or an activation lowered the mean, until the
//     next Rebalance;
//   - two rings given the same operations end with the same assignments.
func TestRandomOperations(t *testing.T) {
	runs := 200
	if testing.Short() {
		runs = 30
	}
	epsilons := []float64{1e-9, 0.1, 0.25, 1, math.Inf(1)}
	vnodes := []int{1, 4, 16}
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		opts := Options{
			Epsilon:      epsilons[rng.IntN(len(epsilons))],
			VirtualNodes: vnodes[rng.IntN(len(vnodes))],
		}
		h := newHarness(t, seed, opts)
		twin := New(opts)
		for step := range 500 {
			op := h.randomOp(rng)
			h.step = step
			h.apply(op)
			op.replay(twin)
		}
		if a, b := assignments(h.r), assignments(twin); !maps.Equal(a, b) {
			t.Fatalf("seed %d: two rings given the same operations disagree", seed)
		}
	}
}

type op struct {
	kind   string // assign, release, add, set, remove, rebalance
	key    string
	member string
	state  State
}

func (o op) replay(r *Ring) {
	switch o.kind {
	case "assign":
		r.Assign(o.key)
	case "release":
		r.Release(o.key)
	case "add":
		_ = r.Add(o.member, o.state)
	case "set":
		_, _ = r.SetState(o.member, o.state)
	case "remove":
		r.Remove(o.member)
	case "rebalance":
		r.Rebalance()
	}
}

type harness struct {
	t      *testing.T
	seed   uint64
	step   int
	eps    float64
	r      *Ring
	strict bool // the strict bound must hold now
}

func newHarness(t *testing.T, seed uint64, opts Options) *harness {
	return &harness{t: t, seed: seed, eps: opts.Epsilon, r: New(opts), strict: true}
}

var states = []State{Joining, Active, Draining, Isolated, Dead}

func (h *harness) randomOp(rng *rand.Rand) op {
	member := fmt.Sprint("m", rng.IntN(10))
	key := fmt.Sprint("k", rng.IntN(400))
	switch n := rng.IntN(100); {
	case n < 55:
		return op{kind: "assign", key: key}
	case n < 70:
		return op{kind: "release", key: key}
	case n < 80:
		st := Active
		if rng.IntN(3) == 0 {
			st = states[rng.IntN(len(states))]
		}
		return op{kind: "add", member: member, state: st}
	case n < 93:
		return op{kind: "set", member: member, state: states[rng.IntN(len(states))]}
	case n < 97:
		return op{kind: "remove", member: member}
	default:
		return op{kind: "rebalance"}
	}
}

func (h *harness) fail(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("seed %d step %d: %s", h.seed, h.step, fmt.Sprintf(format, args...))
}

func (h *harness) bound() int {
	r := h.r
	return boundFor(h.eps, len(r.owner), r.active)
}

func (h *harness) load(member string) int {
	if m := h.r.members[member]; m != nil {
		return len(m.keys)
	}
	return 0
}

func (h *harness) apply(o op) {
	h.t.Helper()
	r := h.r
	before := assignments(r)
	wasActive := func() bool { m := r.members[o.member]; return m != nil && m.state == Active }()
	mine := func() []string {
		var ks []string
		for k, m := range before {
			if m == o.member {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return ks
	}()
	var excess int
	if o.kind == "rebalance" && r.active > 0 {
		limit := h.bound()
		for _, m := range r.members {
			excess += max(0, len(m.keys)-limit)
		}
	}

	var moved []string
	switch o.kind {
	case "assign":
		want, wantOK := r.Lookup(o.key)
		got, ok := r.Assign(o.key)
		if got != want || ok != wantOK {
			h.fail("Lookup(%s) = %q,%v but Assign = %q,%v", o.key, want, wantOK, got, ok)
		}
		if ok != (r.active > 0) {
			h.fail("Assign ok = %v with %d active members", ok, r.active)
		}
		if prev, held := before[o.key]; held && got != prev {
			h.fail("Assign moved held key %s from %s to %s", o.key, prev, got)
		} else if !held && ok && h.load(got) > h.bound() {
			h.fail("placing %s took %s to %d keys, bound %d", o.key, got, h.load(got), h.bound())
		}
	case "release":
		r.Release(o.key)
		if r.owner[o.key] != nil {
			h.fail("%s still assigned after Release", o.key)
		}
		if _, held := before[o.key]; held {
			h.strict = false // the mean fell under sticky loads
		}
	case "add":
		err := r.Add(o.member, o.state)
		if _, existed := r.members[o.member]; !existed {
			h.fail("Add(%s): %v, member not on the ring", o.member, err)
		}
		if err == nil && o.state == Active && len(before) > 0 {
			h.strict = false
		}
	case "set":
		var err error
		moved, err = r.SetState(o.member, o.state)
		if err != nil && r.members[o.member] != nil {
			h.fail("SetState(%s, %s): %v", o.member, o.state, err)
		}
		if err == nil && !wasActive && o.state == Active && len(before) > 0 {
			h.strict = false
		}
	case "remove":
		moved = r.Remove(o.member)
		if r.members[o.member] != nil {
			h.fail("Remove(%s) left it on the ring", o.member)
		}
	case "rebalance":
		moved = r.Rebalance()
		if len(moved) != excess {
			h.fail("Rebalance moved %d keys, want the excess %d", len(moved), excess)
		}
		h.strict = true
	}

	if err := checkInvariants(r); err != nil {
		h.fail("after %+v: %v", o, err)
	}
	after := assignments(r)
	movedSet := map[string]bool{}
	for _, k := range moved {
		movedSet[k] = true
	}
	leaving := (o.kind == "set" && o.state != Active || o.kind == "remove") && wasActive
	if leaving && !slices.Equal(moved, mine) {
		h.fail("%s %s moved %v, want exactly its keys %v", o.kind, o.member, moved, mine)
	}
	if !leaving && o.kind != "rebalance" && len(moved) != 0 {
		h.fail("%+v moved %v", o, moved)
	}
	for k, m := range before {
		now, held := after[k]
		switch {
		case o.kind == "release" && k == o.key:
			if held {
				h.fail("released %s still held by %s", k, now)
			}
		case movedSet[k]:
			if held && now == m {
				h.fail("%s listed as moved but stayed on %s", k, m)
			}
			if !held && r.active > 0 {
				h.fail("%s lost its owner though %d members are active", k, r.active)
			}
		case !held || now != m:
			h.fail("%+v moved %s from %s to %q", o, k, m, now)
		}
	}
	if r.active > 0 {
		limit := h.bound()
		for _, k := range moved {
			if m := after[k]; h.load(m) > limit {
				h.fail("%s was moved to %s, now %d keys, bound %d", k, m, h.load(m), limit)
			}
		}
		if h.strict {
			for name, m := range r.members {
				if len(m.keys) > limit {
					h.fail("%s holds %d keys, bound %d (%d keys, %d active)", name, len(m.keys), limit, len(r.owner), r.active)
				}
			}
		}
	}
}

func assignments(r *Ring) map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a := make(map[string]string, len(r.owner))
	for k, m := range r.owner {
		a[k] = m.name
	}
	return a
}
