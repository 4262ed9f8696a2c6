package ring

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
)

// State is the health state of a member. Only Active members own keys.
type State string

// The member states. The ring does not enforce a lifecycle: any state may
// follow any other; the supervisor decides.
const (
	// Joining members are starting and own nothing yet.
	Joining State = "joining"
	// Active members own keys and receive new ones.
	Active State = "active"
	// Draining members are being retired: their keys moved away and they
	// receive no new ones.
	Draining State = "draining"
	// Isolated members are cut off (Kill Switch) and own nothing.
	Isolated State = "isolated"
	// Dead members are gone but still listed until Remove.
	Dead State = "dead"
)

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	switch s {
	case Joining, Active, Draining, Isolated, Dead:
		return true
	}
	return false
}

// Defaults for the zero Options.
const (
	// DefaultVirtualNodes is the number of points each member has on the
	// ring. With 256, plain consistent hashing already keeps 64 members
	// within about 1.16 × mean (1.24 in the worst of 20 random pools), so
	// the ε = 0.25 bound rarely has to push a key past its first choice;
	// 128 gives 1.24 (worst 1.33). A ring of 64 members is 16384 points:
	// 256 KiB plus a 64 KiB bucket index. See BenchmarkImbalance.
	DefaultVirtualNodes = 256
	// DefaultEpsilon bounds every member to ⌈1.25 × mean⌉ keys.
	DefaultEpsilon = 0.25
)

// Options configure a Ring. The zero value gives the defaults.
type Options struct {
	// VirtualNodes is the number of points per member; 0 means
	// DefaultVirtualNodes.
	VirtualNodes int
	// Epsilon is the load slack ε: no member is given a key that takes it
	// above ⌈(1+ε)·mean⌉. 0 means DefaultEpsilon; math.Inf(1) disables the
	// bound (plain consistent hashing). For the tightest bound, ⌈mean⌉, use
	// a tiny positive value such as 1e-9.
	Epsilon float64
	// Hash maps keys and virtual-node names to ring positions; nil means
	// XXH64 with seed 0. It must be deterministic across processes (no
	// per-process seed), must not modify or keep its argument (keys are
	// passed without copying), and must be safe for concurrent use.
	Hash func([]byte) uint64
}

// Validate reports whether o is usable, wrapping ErrInvalidOptions if not.
func (o Options) Validate() error {
	if o.VirtualNodes < 0 {
		return fmt.Errorf("%w: VirtualNodes %d is negative", ErrInvalidOptions, o.VirtualNodes)
	}
	if o.Epsilon < 0 || math.IsNaN(o.Epsilon) {
		return fmt.Errorf("%w: Epsilon %v is not >= 0", ErrInvalidOptions, o.Epsilon)
	}
	return nil
}

// MemberInfo describes one member, as returned by Members.
type MemberInfo struct {
	Name  string
	State State
	// Keys is the number of keys the member owns.
	Keys int
	// Share is the fraction of the hash space for which the member is the
	// first active point clockwise: the share plain consistent hashing
	// would give it. 0 unless Active.
	Share float64
}

// Ring is a consistent hash ring with bounded loads. It is safe for
// concurrent use. See the package documentation for its guarantees.
type Ring struct {
	vnodes int
	factor float64 // 1+ε; +Inf when unbounded
	hash   func([]byte) uint64

	mu      sync.RWMutex
	members map[string]*member
	active  int
	// points and owners are the ring: the virtual nodes of the active
	// members, sorted by (hash, member name). owners[i] holds points[i].
	points []uint64
	owners []*member
	// index[b] is the first point whose top bits (hash >> shift) are >= b,
	// with about one point per bucket, so a lookup searches a bucket instead
	// of the whole ring (several times faster than a binary search over
	// 16384 points).
	index []uint32
	shift uint
	// stale: members became active or left since points was built, which
	// is rebuilt when next wanted (fresh). A pool of a thousand agents is
	// a ring of 256,000 points; rebuilding it at every start and death
	// made each replacement copy megabytes under the pool's lock, and a
	// stateless pool never looks a key up at all.
	stale bool
	// owner maps every assigned key to its (always active) member.
	owner map[string]*member
}

type member struct {
	name   string
	state  State
	vnodes []uint64 // the member's points, sorted; nil until the ring is first built with it
	keys   map[string]struct{}
}

// New returns an empty ring. It panics if opts.Validate fails: options are
// fixed by the program or checked with Validate when they come from
// configuration.
func New(opts Options) *Ring {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	r := &Ring{
		vnodes:  opts.VirtualNodes,
		factor:  1 + opts.Epsilon,
		hash:    opts.Hash,
		members: make(map[string]*member),
		owner:   make(map[string]*member),
	}
	if r.vnodes == 0 {
		r.vnodes = DefaultVirtualNodes
	}
	if opts.Epsilon == 0 {
		r.factor = 1 + DefaultEpsilon
	}
	if r.hash == nil {
		r.hash = xxh64
	}
	return r
}

// Add puts a new member on the ring in state st. A member that is added
// Active takes no existing keys; it receives new ones.
func (r *Ring) Add(name string, st State) error {
	if !st.Valid() {
		return fmt.Errorf("%w: %q for member %q", ErrInvalidState, st, name)
	}
	// The virtual-node hashes are computed when the ring is first
	// wanted (fresh): a pool whose calls carry no session never asks,
	// and 256 points are 2 KiB of memory and ~10 µs per agent start.
	m := &member{name: name, state: st, keys: make(map[string]struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.members[name]; ok {
		return fmt.Errorf("%w: %q", ErrMemberExists, name)
	}
	r.members[name] = m
	if st == Active {
		r.activate(m)
	}
	return nil
}

// SetState changes a member's state. When the member leaves Active, its keys
// are placed again on the remaining active members, within the bound; these
// keys, in sorted order, are returned, and no other key moves. When no active
// member remains they are released instead. Entering Active moves nothing.
func (r *Ring) SetState(name string, st State) ([]string, error) {
	if !st.Valid() {
		return nil, fmt.Errorf("%w: %q for member %q", ErrInvalidState, st, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	if m.state == st {
		return nil, nil
	}
	wasActive := m.state == Active
	m.state = st
	switch {
	case st == Active:
		r.activate(m)
	case wasActive:
		return r.deactivate(m), nil
	}
	return nil, nil
}

// Remove takes a member off the ring. Its keys are placed again as for
// SetState and returned; removing an unknown member returns nil.
func (r *Ring) Remove(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[name]
	if !ok {
		return nil
	}
	delete(r.members, name)
	if m.state == Active {
		return r.deactivate(m)
	}
	return nil
}

// Lookup reports where key is or would be: its owner if assigned, otherwise
// the member Assign would choose now. It changes nothing and does not
// allocate. ok is false when no member is active.
func (r *Ring) Lookup(key string) (owner string, ok bool) {
	r.rlockFresh()
	defer r.mu.RUnlock()
	if m, ok := r.owner[key]; ok {
		return m.name, true
	}
	if r.active == 0 {
		return "", false
	}
	return r.place(r.hashKey(key), r.capacity(len(r.owner)+1), nil).name, true
}

// Assign returns key's owner, assigning it first if it has none: clockwise
// from the key's hash, the first active member holding fewer than
// ⌈(1+ε)·(assigned+1)/active⌉ keys. The key stays with that member until
// Release, until the member leaves Active, or until Rebalance moves it.
// ok is false when no member is active.
func (r *Ring) Assign(key string) (owner string, ok bool) {
	r.mu.RLock()
	m, ok := r.owner[key]
	r.mu.RUnlock()
	if ok {
		return m.name, true
	}
	h := r.hashKey(key)
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.owner[key]; ok {
		return m.name, true
	}
	if r.active == 0 {
		return "", false
	}
	r.fresh()
	m = r.place(h, r.capacity(len(r.owner)+1), nil)
	r.owner[key] = m
	m.keys[key] = struct{}{}
	return m.name, true
}

// Release forgets key's assignment (the session ended). Other keys keep
// their owners, even if the mean load falls; see Rebalance.
func (r *Ring) Release(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.owner[key]; ok {
		delete(r.owner, key)
		delete(m.keys, key)
	}
}

// Rebalance restores the bound after Releases or new active members lowered
// the mean: each member above ⌈(1+ε)·mean⌉ gives exactly its excess to
// members below it, preferring keys that were placed past their first
// choice. It returns the moved keys, in the order moved; nothing moves when
// every member is within the bound. Rebalance breaks stickiness for the
// moved keys, so the caller decides when it is worth it.
func (r *Ring) Rebalance() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == 0 {
		return nil
	}
	r.fresh()
	limit := r.capacity(len(r.owner))
	var over []*member
	for _, m := range r.members {
		if len(m.keys) > limit {
			over = append(over, m)
		}
	}
	slices.SortFunc(over, func(a, b *member) int { return cmp.Compare(a.name, b.name) })
	var moved []string
	for _, m := range over {
		type candidate struct {
			key     string
			spilled bool
		}
		keys := make([]candidate, 0, len(m.keys))
		for k := range m.keys {
			home := r.place(r.hashKey(k), math.MaxInt, nil)
			keys = append(keys, candidate{k, home != m})
		}
		slices.SortFunc(keys, func(a, b candidate) int {
			if a.spilled != b.spilled {
				if a.spilled {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.key, b.key)
		})
		for _, c := range keys[:len(m.keys)-limit] {
			delete(m.keys, c.key)
			to := r.place(r.hashKey(c.key), limit, m)
			r.owner[c.key] = to
			to.keys[c.key] = struct{}{}
			moved = append(moved, c.key)
		}
	}
	return moved
}

// Members lists the members sorted by name.
func (r *Ring) Members() []MemberInfo {
	r.rlockFresh()
	defer r.mu.RUnlock()
	share := make(map[*member]float64, r.active)
	if r.active == 1 {
		share[r.owners[0]] = 1
	} else {
		// Point i takes the keys hashing into (points[i-1], points[i]];
		// point 0's arc wraps around, which unsigned subtraction does.
		for i, p := range r.points {
			prev := r.points[(i+len(r.points)-1)%len(r.points)]
			share[r.owners[i]] += float64(p-prev) / (1 << 64)
		}
	}
	infos := make([]MemberInfo, 0, len(r.members))
	for _, m := range r.members {
		infos = append(infos, MemberInfo{Name: m.name, State: m.state, Keys: len(m.keys), Share: share[m]})
	}
	slices.SortFunc(infos, func(a, b MemberInfo) int { return cmp.Compare(a.Name, b.Name) })
	return infos
}

// Imbalance is the largest load of an active member divided by the mean
// load of the active members: 1 is perfect balance. It is 0 when no key is
// assigned or no member is active.
func (r *Ring) Imbalance() float64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.active == 0 || len(r.owner) == 0 {
		return 0
	}
	most := 0
	for _, m := range r.members {
		most = max(most, len(m.keys))
	}
	return float64(most) * float64(r.active) / float64(len(r.owner))
}

// Len is the number of keys assigned.
func (r *Ring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.owner)
}

func (r *Ring) hashKey(key string) uint64 { return r.hash(stringBytes(key)) }

// virtualNodes returns the sorted points of member name: the hashes of
// name + "#" + i for i in [0, VirtualNodes).
func (r *Ring) virtualNodes(name string) []uint64 {
	vn := make([]uint64, r.vnodes)
	buf := make([]byte, 0, len(name)+1+20)
	buf = append(buf, name...)
	buf = append(buf, '#')
	for i := range vn {
		vn[i] = r.hash(strconv.AppendInt(buf, int64(i), 10))
	}
	slices.Sort(vn)
	return vn
}

// capacity is the most keys a member may hold once keys keys are assigned:
// ⌈(1+ε)·keys/active⌉, and never below ⌈keys/active⌉ so that the active
// members together always have room (float rounding, tiny ε). It requires
// r.active > 0.
func (r *Ring) capacity(keys int) int {
	n := r.active
	floor := (keys + n - 1) / n
	c := math.Ceil(r.factor * float64(keys) / float64(n))
	if c >= math.MaxInt { // also +Inf
		return math.MaxInt
	}
	return max(int(c), floor)
}

// place walks clockwise from h and returns the first active member other
// than skip holding fewer than limit keys. Callers guarantee that one exists
// (the active members' capacities sum to at least the keys assigned plus the
// one being placed); if none does, the first member clockwise is returned so
// that a broken invariant degrades to plain consistent hashing, not a panic.
// It requires r.active > 0.
func (r *Ring) place(h uint64, limit int, skip *member) *member {
	n := len(r.points)
	// The first point >= h, wrapping to 0: binary search within h's bucket
	// (a bucket holds the points with the same top bits; ending at the
	// bucket's end means the next bucket's first point).
	b := h >> r.shift
	lo, hi := int(r.index[b]), int(r.index[b+1])
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo
	for range n {
		if i == n {
			i = 0
		}
		if m := r.owners[i]; m != skip && len(m.keys) < limit {
			return m
		}
		i++
	}
	if lo == n {
		lo = 0
	}
	return r.owners[lo]
}

// setPoints installs a new ring and builds its bucket index: the smallest
// power of two of buckets not below the number of points.
func (r *Ring) setPoints(points []uint64, owners []*member) {
	r.points, r.owners = points, owners
	if len(points) == 0 {
		r.index, r.shift = nil, 0
		return
	}
	width := bits.Len(uint(len(points) - 1))
	r.shift = uint(64 - width) // 64 for one point: h >> 64 is 0 in Go
	buckets := 1 << width
	index := make([]uint32, buckets+1)
	j := 0
	for b := range buckets {
		for j < len(points) && points[j]>>r.shift < uint64(b) {
			j++
		}
		index[b] = uint32(j)
	}
	index[buckets] = uint32(len(points))
	r.index = index
}

// activate counts m in; its points join the ring when it is next wanted.
// Nothing moves: m starts empty.
func (r *Ring) activate(m *member) {
	r.active++
	r.stale = true
}

// rlockFresh read-locks r with its points current.
func (r *Ring) rlockFresh() {
	r.mu.RLock()
	for r.stale {
		r.mu.RUnlock()
		r.mu.Lock()
		r.fresh()
		r.mu.Unlock()
		r.mu.RLock()
	}
}

// fresh rebuilds the ring from the active members if it is stale: their
// points sorted by (hash, member name), so the ring depends only on which
// members are active, not on the order they became so. r.mu is held.
func (r *Ring) fresh() {
	if !r.stale {
		return
	}
	r.stale = false
	type point struct {
		h uint64
		m *member
	}
	all := make([]point, 0, r.active*r.vnodes)
	for _, m := range r.members {
		if m.state == Active {
			if m.vnodes == nil {
				m.vnodes = r.virtualNodes(m.name)
			}
			for _, h := range m.vnodes {
				all = append(all, point{h, m})
			}
		}
	}
	slices.SortFunc(all, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return cmp.Compare(a.m.name, b.m.name)
	})
	points := make([]uint64, len(all))
	owners := make([]*member, len(all))
	for i, p := range all {
		points[i], owners[i] = p.h, p.m
	}
	r.setPoints(points, owners)
}

// deactivate takes m's points off the ring and places its keys again, in
// sorted order so that the outcome does not depend on map iteration order.
// It returns those keys. m is no longer Active (or no longer a member).
func (r *Ring) deactivate(m *member) []string {
	r.active--
	if len(m.keys) == 0 {
		r.stale = true // rebuilt when next wanted
		return nil
	}
	if r.stale {
		r.fresh() // without m: it is not Active
	} else {
		points := make([]uint64, 0, max(len(r.points)-r.vnodes, 0))
		owners := make([]*member, 0, cap(points))
		for i, o := range r.owners {
			if o != m {
				points = append(points, r.points[i])
				owners = append(owners, o)
			}
		}
		r.setPoints(points, owners)
	}

	keys := make([]string, 0, len(m.keys))
	for k := range m.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	clear(m.keys)
	if r.active == 0 {
		for _, k := range keys {
			delete(r.owner, k)
		}
		return keys
	}
	// The moving keys are still counted in len(r.owner), so the limit is
	// the bound for the final state and is the same for each placement.
	limit := r.capacity(len(r.owner))
	for _, k := range keys {
		to := r.place(r.hashKey(k), limit, nil)
		r.owner[k] = to
		to.keys[k] = struct{}{}
	}
	return keys
}
