// Package cluster is resilienced's cluster mode on etcd: node membership,
// a ring over the nodes, and sessions owned by one node at a time, with
// their contexts and idempotent results in etcd. Single-node mode (bbolt,
// no etcd) does not use it and stays the default; the daemon turns it on
// when the configuration has cluster.etcd.endpoints.
//
// Nothing here replicates data by a protocol of its own: etcd (Raft) holds
// everything that must survive a node, and every write is an etcd
// transaction that returns once a quorum has it.
//
// # Membership
//
// [Join] registers the node under /resilienced/<cluster>/nodes/<node>
// (its advertise address, pools, health) on a lease of cluster.lease_ttl,
// renews it every third of the TTL, and watches the other registrations.
// The node judges its lease by its own clock: each renewal is timed from
// before it was sent, and a lease not confirmed within 80 % of the TTL
// since is taken as lost ([Node.Lease] false, [Node.OnLeaseLost] told), so
// the node stops serving before etcd can have given its sessions away;
// it then registers again under a new lease. [Node.Place] puts a new
// session on the serving nodes by consistent hashing (internal/ring; no
// key is assigned, so every node with the same view places a key alike).
// The ring only proposes: the owner record in etcd decides.
//
// # Ownership and fencing
//
// A session's owner record, /resilienced/<cluster>/owners/<pool>/<session>,
// names its node and is put on that node's lease; its ModRevision is the
// session's epoch. A node takes a session in one transaction conditioned
// on the record it saw: absent (CreateRevision 0), or at the revision it
// read; the same transaction reads the session's window, so the new owner
// starts from exactly what etcd holds at its epoch. Every commit of an
// exchange is one transaction conditioned on ModRevision(owner) = the
// node's epoch: after a takeover the old owner's writes fail ([ErrFenced])
// and nothing of them is stored, whatever the old owner believes. This is
// etcd's own advice (the revision is the fencing token); a lock alone is
// not mutual exclusion.
//
// A session is free to take, on the first call that asks for it, when it
// has no owner record (new, or its owner's lease ended) or its owner is not
// a serving node. A serving owner's session is refused with a
// [*NotOwnerError] naming the owner and its epoch: the call belongs there.
// A node that has seen the owner dead before etcd has (the inter-node
// connection reset, its heartbeat missed) takes it with [Store.TakeOver]
// on the epoch it saw.
//
// A node stops serving a session, and says so through
// [StoreOptions.OnLost] so that the daemon can isolate the agents that
// served it, when a write of it is fenced, when its watch of the owner
// records sees another node take it or the record deleted, and when it
// cannot confirm its own lease.
//
// # Contexts in etcd
//
// Each validated exchange is a key ctx/<pool>/<session>/<seq>, written in
// the owner-fenced transaction with the session's next seq and, for a call
// with an idempotency key, the result (results/<pool>/<key>, bound to the
// request's digest as in the local store); the same transaction deletes
// the exchanges that fall out of the window. [Store.Append] returns once
// etcd committed it, so an acknowledged exchange is on a quorum. The owner
// keeps the window in memory and reads nothing per call. An exchange (with
// its result) over [DefaultMaxExchangeBytes] (1 MiB: etcd refuses requests
// over 1.5 MiB by default) fails with [ErrTooLarge], and nothing is stored.
// Each exchange record carries the epoch and node that committed it, so
// stale commits can be looked for in etcd afterwards.
//
// [Store] has the methods of the supervisor's SessionStore, so the
// supervisor's call path is the same in both modes.
//
// # Quorum
//
// The node probes etcd with a linearizable read every quarter of
// [Options.QuorumTimeout]; when none was confirmed for the whole timeout
// it takes etcd for without quorum ([Node.Quorum] returns a
// [*QuorumError], errors.Is [ErrNoQuorum]): session calls fail at once,
// requests in flight are cancelled, rather than waiting for etcd's own
// request timeout; sessionless calls, which touch no etcd, go on. The
// next confirmed probe serves sessions again. The etcd client's endpoints
// are kept to the members that answer their status, know a leader and
// are caught up (a member back from a cut serves slowly until it is),
// and requests in flight on a member dropped are given up
// ([ErrMemberDropped]).
//
// # The mesh
//
// [Mesh] carries calls between nodes: one HTTP/2 connection per peer
// (h2c, or mutual TLS with [MeshOptions].TLS from [MeshTLS]),
// authenticated by the cluster token, on which a session's call is
// forwarded to its owner and a heartbeat runs. A refused connection or a
// heartbeat that hears nothing for its allowed silence (Misses
// heartbeats, longer while the peer's answers are slow; ticks this daemon
// missed while starved of CPU do not count) takes the peer for dead, and
// the sessions it owned are taken over on the epoch seen as they are
// called. A false alarm costs a takeover, never an exchange: the live
// owner's next write is fenced.
//
// # Isolation
//
// [Node.Isolate] from any node marks a node isolated in etcd (durable,
// until [Node.Release]); the node named leaves the ring, drops its
// sessions and takes none: a call for a session that reaches it is sent
// to the serving node the ring places the session on, which takes it.
// The daemon also cuts the node off the mesh network and calls
// [Mesh.SetCutOff]: from then its session calls are refused at once
// (node_isolated) so that callers go to another node.
// [Mesh.View] is the cluster as one node sees it (resilientctl nodes);
// [Mesh.Gather] asks every node for its own view of something (status,
// sessions, a pool's ring: resilientctl --cluster), each node serving
// its views to its peers with the handler given to [Mesh.SetViews].
//
// Not yet in cluster mode: session and result expiry (TTL).
package cluster
