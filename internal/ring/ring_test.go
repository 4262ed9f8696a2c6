package ring

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"testing"
)

func newActive(t testing.TB, opts Options, names ...string) *Ring {
	t.Helper()
	r := New(opts)
	for _, n := range names {
		if err := r.Add(n, Active); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func memberNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%02d", i)
	}
	return names
}

func TestEmptyRingHasNoOwner(t *testing.T) {
	r := New(Options{})
	if m, ok := r.Lookup("k"); ok {
		t.Fatalf("Lookup on empty ring = %q, true", m)
	}
	if m, ok := r.Assign("k"); ok {
		t.Fatalf("Assign on empty ring = %q, true", m)
	}
	if err := r.Add("a", Joining); err != nil {
		t.Fatal(err)
	}
	if m, ok := r.Assign("k"); ok {
		t.Fatalf("Assign with only a joining member = %q, true", m)
	}
	if r.Len() != 0 || r.Imbalance() != 0 {
		t.Fatalf("Len %d Imbalance %v, want 0 0", r.Len(), r.Imbalance())
	}
}

func TestErrors(t *testing.T) {
	r := New(Options{})
	if err := r.Add("a", "sleepy"); !errors.Is(err, ErrInvalidState) {
		t.Errorf("Add with bad state: %v, want ErrInvalidState", err)
	}
	if err := r.Add("a", Active); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("a", Joining); !errors.Is(err, ErrMemberExists) {
		t.Errorf("second Add: %v, want ErrMemberExists", err)
	}
	if _, err := r.SetState("b", Active); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("SetState of unknown member: %v, want ErrUnknownMember", err)
	}
	if _, err := r.SetState("a", ""); !errors.Is(err, ErrInvalidState) {
		t.Errorf("SetState with empty state: %v, want ErrInvalidState", err)
	}
	if got := r.Remove("nobody"); got != nil {
		t.Errorf("Remove of unknown member = %v, want nil", got)
	}
	for _, o := range []Options{{VirtualNodes: -1}, {Epsilon: -0.1}, {Epsilon: math.NaN()}} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
	if err := (Options{Epsilon: math.Inf(1)}).Validate(); err != nil {
		t.Errorf("Validate with infinite Epsilon: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("New with invalid options did not panic")
		}
	}()
	New(Options{VirtualNodes: -1})
}

func TestAssignIsSticky(t *testing.T) {
	r := newActive(t, Options{}, memberNames(4)...)
	first, ok := r.Assign("session")
	if !ok {
		t.Fatal("Assign failed with active members")
	}
	// New members, other keys and state changes of other members do not
	// move the key.
	for _, n := range memberNames(12)[4:] {
		if err := r.Add(n, Active); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		r.Assign(fmt.Sprint("other-", i))
	}
	for _, n := range memberNames(4) {
		if n != first {
			if _, err := r.SetState(n, Draining); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, _ := r.Assign("session"); got != first {
		t.Fatalf("session moved from %s to %s while its owner stayed active", first, got)
	}
	if got, _ := r.Lookup("session"); got != first {
		t.Fatalf("Lookup = %s, want owner %s", got, first)
	}
}

func TestLeavingMemberMovesOnlyItsKeys(t *testing.T) {
	for _, leave := range []func(r *Ring, name string) []string{
		func(r *Ring, name string) []string { return r.Remove(name) },
		func(r *Ring, name string) []string { moved, _ := r.SetState(name, Dead); return moved },
		func(r *Ring, name string) []string { moved, _ := r.SetState(name, Draining); return moved },
		func(r *Ring, name string) []string { moved, _ := r.SetState(name, Isolated); return moved },
	} {
		r := newActive(t, Options{}, memberNames(8)...)
		before := map[string]string{}
		for i := range 2000 {
			k := fmt.Sprint("k", i)
			before[k], _ = r.Assign(k)
		}
		victim := "agent-03"
		var want []string
		for k, m := range before {
			if m == victim {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		moved := leave(r, victim)
		if !slices.Equal(moved, want) {
			t.Fatalf("moved %d keys, want exactly the victim's %d", len(moved), len(want))
		}
		for k, m := range before {
			got, ok := r.Lookup(k)
			switch {
			case !ok:
				t.Fatalf("%s lost its owner", k)
			case m == victim && got == victim:
				t.Fatalf("%s still on the departed member", k)
			case m != victim && got != m:
				t.Fatalf("%s moved from %s to %s, but only %s left", k, m, got, victim)
			}
		}
	}
}

func TestLastActiveMemberLeavingReleasesKeys(t *testing.T) {
	r := newActive(t, Options{}, "a")
	r.Assign("k1")
	r.Assign("k2")
	moved, err := r.SetState("a", Isolated)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(moved, []string{"k1", "k2"}) {
		t.Fatalf("moved = %v, want [k1 k2]", moved)
	}
	if r.Len() != 0 {
		t.Fatalf("Len = %d after the last active member left, want 0", r.Len())
	}
	if _, ok := r.Lookup("k1"); ok {
		t.Fatal("k1 still has an owner with no active member")
	}
	// Back to active: keys are assigned afresh.
	if _, err := r.SetState("a", Active); err != nil {
		t.Fatal(err)
	}
	if m, ok := r.Assign("k1"); !ok || m != "a" {
		t.Fatalf("Assign after reactivation = %q, %v", m, ok)
	}
}

func TestReleaseForgetsKey(t *testing.T) {
	r := newActive(t, Options{}, "a", "b")
	r.Assign("k")
	r.Assign("other")
	r.Release("k")
	r.Release("never-assigned")
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
	total := 0
	for _, mi := range r.Members() {
		total += mi.Keys
	}
	if total != 1 {
		t.Fatalf("members hold %d keys, want 1", total)
	}
}

func TestBoundHoldsWhileKeysArrive(t *testing.T) {
	// 16 members with a single virtual node each are badly unbalanced
	// under plain consistent hashing; the bound must hold anyway.
	names := memberNames(16)
	for _, eps := range []float64{1e-9, 0.1, 0.25, 1} {
		r := newActive(t, Options{VirtualNodes: 1, Epsilon: eps}, names...)
		for i := range 5000 {
			r.Assign(fmt.Sprint("key-", i))
			limit := boundFor(eps, i+1, len(names))
			for _, mi := range r.Members() {
				if mi.Keys > limit {
					t.Fatalf("ε=%v after %d keys: %s holds %d > bound %d", eps, i+1, mi.Name, mi.Keys, limit)
				}
			}
		}
	}
}

func TestUnboundedIsPlainConsistentHashing(t *testing.T) {
	r := newActive(t, Options{VirtualNodes: 4, Epsilon: math.Inf(1)}, memberNames(8)...)
	for i := range 2000 {
		k := fmt.Sprint("key-", i)
		got, _ := r.Assign(k)
		r.mu.RLock()
		home := r.place(r.hashKey(k), math.MaxInt, nil).name
		r.mu.RUnlock()
		if got != home {
			t.Fatalf("%s went to %s, want its first member clockwise %s", k, got, home)
		}
	}
}

func TestRebalanceRestoresBoundWithFewestMoves(t *testing.T) {
	names := memberNames(8)
	r := newActive(t, Options{}, names...)
	for i := range 4000 {
		r.Assign(fmt.Sprint("key-", i))
	}
	// Ending most sessions of all members but one lowers the mean under
	// the survivor's sticky load.
	owners := map[string]string{}
	for i := range 4000 {
		k := fmt.Sprint("key-", i)
		m, _ := r.Lookup(k)
		if m != names[0] && i%10 != 0 {
			r.Release(k)
			continue
		}
		owners[k] = m
	}
	limit := boundFor(DefaultEpsilon, r.Len(), len(names))
	excess := 0
	for _, mi := range r.Members() {
		excess += max(0, mi.Keys-limit)
	}
	if excess == 0 {
		t.Fatal("setup did not push a member over the bound")
	}
	moved := r.Rebalance()
	if len(moved) != excess {
		t.Fatalf("Rebalance moved %d keys, want the excess %d", len(moved), excess)
	}
	for _, mi := range r.Members() {
		if mi.Keys > limit {
			t.Fatalf("%s holds %d > bound %d after Rebalance", mi.Name, mi.Keys, limit)
		}
	}
	isMoved := map[string]bool{}
	for _, k := range moved {
		isMoved[k] = true
	}
	for k, m := range owners {
		if got, _ := r.Lookup(k); got != m && !isMoved[k] {
			t.Fatalf("%s moved from %s to %s but is not in Rebalance's list", k, m, got)
		}
	}
	if again := r.Rebalance(); len(again) != 0 {
		t.Fatalf("second Rebalance moved %d keys, want 0", len(again))
	}
}

func TestMembersShareAndImbalance(t *testing.T) {
	r := newActive(t, Options{}, memberNames(5)...)
	if err := r.Add("spare", Joining); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		r.Assign(fmt.Sprint("key-", i))
	}
	infos := r.Members()
	if len(infos) != 6 {
		t.Fatalf("Members() has %d entries, want 6", len(infos))
	}
	var share float64
	most := 0
	for i, mi := range infos {
		if i > 0 && infos[i-1].Name >= mi.Name {
			t.Fatalf("Members() not sorted by name: %q before %q", infos[i-1].Name, mi.Name)
		}
		share += mi.Share
		most = max(most, mi.Keys)
		if mi.Name == "spare" && (mi.State != Joining || mi.Keys != 0 || mi.Share != 0) {
			t.Fatalf("joining member: %+v, want no keys and no share", mi)
		}
	}
	if math.Abs(share-1) > 1e-9 {
		t.Fatalf("shares sum to %v, want 1", share)
	}
	if got, want := r.Imbalance(), float64(most)/(1000.0/5); math.Abs(got-want) > 1e-9 {
		t.Fatalf("Imbalance = %v, want %v", got, want)
	}
	single := newActive(t, Options{VirtualNodes: 1}, "only")
	if got := single.Members()[0].Share; got != 1 {
		t.Fatalf("single member's share = %v, want 1", got)
	}
}

func TestRingDependsOnlyOnActiveSet(t *testing.T) {
	names := memberNames(10)
	a := newActive(t, Options{VirtualNodes: 16}, names...)
	rev := slices.Clone(names)
	slices.Reverse(rev)
	b := New(Options{VirtualNodes: 16})
	for _, n := range rev {
		if err := b.Add(n, Joining); err != nil {
			t.Fatal(err)
		}
		if _, err := b.SetState(n, Active); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add("x", Active); err != nil {
		t.Fatal(err)
	}
	b.Remove("x")
	for i := range 1000 {
		k := fmt.Sprint("key-", i)
		ma, _ := a.Lookup(k)
		mb, _ := b.Lookup(k)
		if ma != mb {
			t.Fatalf("%s: %s on one ring, %s on the same members added in another order", k, ma, mb)
		}
	}
}

// The placement of keys is part of the contract with other processes and
// other nodes (the same ring must give the same answer after a restart): it
// must not change by accident. The digits are the last digit of the member
// that each of session-0..session-31 lands on among agent-00..agent-07.
func TestPlacementIsStable(t *testing.T) {
	r := newActive(t, Options{}, memberNames(8)...)
	const want = "41237113470704572360615174537410"
	got := ""
	for i := range 32 {
		m, _ := r.Lookup(fmt.Sprint("session-", i))
		got += m[len(m)-1:]
	}
	if got != want {
		t.Fatalf("placement of session-0..31 = %s, want %s", got, want)
	}
}

func TestCustomHash(t *testing.T) {
	fnv64 := func(b []byte) uint64 {
		h := fnv.New64a()
		h.Write(b)
		return h.Sum64()
	}
	r := newActive(t, Options{Hash: fnv64, VirtualNodes: 8}, memberNames(4)...)
	seen := map[string]bool{}
	for i := range 500 {
		m, ok := r.Assign(fmt.Sprint("key-", i))
		if !ok {
			t.Fatal("Assign failed")
		}
		seen[m] = true
	}
	if len(seen) != 4 {
		t.Fatalf("keys landed on %d of 4 members", len(seen))
	}
}

// A hash that puts every point and key in the same place (the worst a
// custom Hash can do) degrades balance to the walk, never correctness.
func TestDegenerateHashStillBounded(t *testing.T) {
	for _, h := range []func([]byte) uint64{
		func([]byte) uint64 { return 0 },
		func([]byte) uint64 { return math.MaxUint64 },
		func(b []byte) uint64 { return uint64(len(b)) << 60 },
	} {
		r := newActive(t, Options{Hash: h, VirtualNodes: 8}, memberNames(6)...)
		for i := range 600 {
			r.Assign(fmt.Sprint("key-", i))
		}
		if _, err := r.SetState("agent-02", Dead); err != nil {
			t.Fatal(err)
		}
		if err := checkInvariants(r); err != nil {
			t.Fatal(err)
		}
		limit := boundFor(DefaultEpsilon, 600, 5)
		for _, mi := range r.Members() {
			if mi.Keys > limit {
				t.Fatalf("%s holds %d keys, bound %d", mi.Name, mi.Keys, limit)
			}
		}
	}
}

func TestReadPathDoesNotAllocate(t *testing.T) {
	r := newActive(t, Options{}, memberNames(64)...)
	r.Assign("held")
	for name, f := range map[string]func(){
		"Lookup held":  func() { r.Lookup("held") },
		"Lookup fresh": func() { r.Lookup("fresh") },
		"Assign held":  func() { r.Assign("held") },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	names := memberNames(8)
	r := newActive(t, Options{VirtualNodes: 16}, names...)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 3000 {
				k := fmt.Sprint("w", w, "-", i%300)
				switch i % 3 {
				case 0:
					if _, ok := r.Assign(k); !ok {
						t.Error("Assign failed while members are active")
						return
					}
				case 1:
					r.Lookup(k)
				case 2:
					r.Release(fmt.Sprint("w", w, "-", (i*7)%300))
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 300 {
			n := names[1+i%(len(names)-1)] // names[0] stays active
			if _, err := r.SetState(n, Draining); err != nil {
				t.Error(err)
			}
			r.Members()
			r.Imbalance()
			if _, err := r.SetState(n, Active); err != nil {
				t.Error(err)
			}
			r.Rebalance()
		}
	})
	wg.Wait()
	if err := checkInvariants(r); err != nil {
		t.Fatal(err)
	}
}

// boundFor is the bound of the package documentation, computed
// independently of Ring.capacity.
func boundFor(eps float64, keys, active int) int {
	if math.IsInf(eps, 1) {
		return math.MaxInt
	}
	return max(int(math.Ceil((1+eps)*float64(keys)/float64(active))), (keys+active-1)/active)
}

// checkInvariants checks the ring's internal consistency: only active
// members own keys, counts agree, the ring holds exactly the active members'
// points in order.
func checkInvariants(r *Ring) error {
	r.rlockFresh() // the points as the next lookup sees them
	defer r.mu.RUnlock()
	active, held := 0, 0
	for name, m := range r.members {
		if m.name != name {
			return fmt.Errorf("member %q filed under %q", m.name, name)
		}
		if m.state == Active {
			active++
		} else if len(m.keys) != 0 {
			return fmt.Errorf("%s member %s owns %d keys", m.state, name, len(m.keys))
		}
		held += len(m.keys)
		for k := range m.keys {
			if r.owner[k] != m {
				return fmt.Errorf("%s lists %s, owner map says %v", name, k, r.owner[k])
			}
		}
	}
	if held != len(r.owner) {
		return fmt.Errorf("members hold %d keys, %d assigned", held, len(r.owner))
	}
	for k, m := range r.owner {
		if r.members[m.name] != m || m.state != Active {
			return fmt.Errorf("%s owned by %s member %s", k, m.state, m.name)
		}
	}
	if active != r.active || len(r.points) != active*r.vnodes || len(r.owners) != len(r.points) {
		return fmt.Errorf("%d active, counter %d, %d points", active, r.active, len(r.points))
	}
	if len(r.points) > 0 {
		if len(r.index) != 1<<(64-r.shift)+1 || int(r.index[len(r.index)-1]) != len(r.points) {
			return fmt.Errorf("index of %d buckets for %d points", len(r.index)-1, len(r.points))
		}
		for b := range len(r.index) - 1 {
			for i := r.index[b]; i < r.index[b+1]; i++ {
				if r.points[i]>>r.shift != uint64(b) {
					return fmt.Errorf("point %d (%#x) filed in bucket %d", i, r.points[i], b)
				}
			}
		}
	}
	for i, m := range r.owners {
		if m.state != Active || r.members[m.name] != m {
			return fmt.Errorf("point %d belongs to %s member %s", i, m.state, m.name)
		}
		if i > 0 && (r.points[i-1] > r.points[i] || r.points[i-1] == r.points[i] && r.owners[i-1].name > m.name) {
			return fmt.Errorf("points out of order at %d", i)
		}
	}
	return nil
}
