// Package ring is the Registry: a consistent hash ring with virtual nodes
// and bounded loads that maps keys (session ids) to members (agents), with
// member health states. It is a plain data structure: no goroutines, no I/O,
// no knowledge of processes. A Ring is safe for concurrent use; reads take a
// read lock, and Lookup, and Assign of a key already assigned, do not
// allocate.
//
// # Placement
//
// Each member has VirtualNodes points on a 64-bit ring, at
// Hash(name + "#" + i) for i in [0, VirtualNodes); Hash defaults to XXH64
// with seed 0, so the ring is the same in every process and after every
// restart, and depends only on which members are active (not on the order
// they were added). A new key is placed as in Mirrokni, Thorup and
// Zadimoghaddam, "Consistent Hashing with Bounded Loads" (arXiv:1608.01350,
// 2016; SODA 2018): walk clockwise from Hash(key) over the points of the
// active members and take the first member holding fewer than
//
//	bound(m, n) = max(⌈(1+ε)·m/n⌉, ⌈m/n⌉)
//
// keys, where m is the number of assigned keys counting the one being
// placed and n the number of active members (ε is Options.Epsilon, 0.25 by
// default; the ⌈m/n⌉ floor only matters for ε near 0 and guarantees room).
// The n members together have room for at least m keys, so the walk always
// finds one. With ε = +Inf this is plain consistent hashing.
//
// # Guarantees
//
//  1. Only Active members own keys. Every assigned key's owner is Active;
//     Joining, Draining, Isolated and Dead members own nothing. Lookup and
//     Assign fail (ok false) only when no member is Active.
//  2. Stickiness. An assigned key keeps its owner until the key is
//     released, the owner leaves Active (SetState or Remove), or Rebalance
//     moves it. Assign of an assigned key returns its owner.
//  3. Minimal movement. When a member leaves Active, exactly its keys move
//     (SetState and Remove return them) and no other key changes owner; they
//     go to the remaining active members, within bound(m, n) for the new n.
//     A member entering Active, Add, Assign and Release move no key. When no
//     active member remains, the departing member's keys are released.
//  4. Bound at placement. A key is only ever placed (Assign, a departing
//     member's keys, Rebalance) on a member that then holds at most
//     bound(m, n) keys, m and n as of that moment.
//  5. Bound at all times, while it can be kept without moving live keys.
//     bound grows with m and shrinks with n, so while keys are only added and
//     members only leave, every member holds at most bound(m, n) keys at all
//     times, hence max/mean ≤ 1+ε up to rounding. Release and a member
//     entering Active lower the mean without moving anyone's sessions
//     (guarantee 2 wins), so a member can then sit above the current bound;
//     it receives no new key until it is below it again. Rebalance restores
//     the bound by moving exactly each member's excess (the fewest moves
//     possible), preferring keys that had been pushed past their first
//     choice; from then on the bound holds again as above.
//  6. Consistency. Lookup of an unassigned key names the member Assign would
//     pick at that moment. Given the same sequence of operations, two rings
//     make the same assignments (keys that move are placed in sorted order).
//
// # Cost
//
// Lookup and Assign of an assigned key are one map lookup under a read lock.
// Placing a new key is a hash, a binary search over n·VirtualNodes points
// and a walk that skips full members. The walk is short in expectation (the
// paper bounds it by a function of ε alone), and with the default 256
// virtual nodes plain consistent hashing already keeps most members within
// the bound, so it usually stops at the first point. Membership changes rebuild the
// point list (O(n·VirtualNodes)) and place the departing member's keys.
package ring
