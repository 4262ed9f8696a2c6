// Package isolate is the Kill Switch: it cuts a compromised agent or node off
// the network and enforces per-pool egress policies. (Per-pool circuit
// breakers are in package breaker.)
//
// # Agent isolation
//
// [Switch.Isolate] attaches two cgroup_skb programs (ingress and egress) to
// the agent's own cgroup; both drop every packet and count it. A socket is
// filtered by the cgroup it was created in, so the programs go on the agent's
// cgroup rather than moving the agent anywhere. The bpf_links are pinned under
// <BPFFS>/<name>/isolate/<agentID>/{ingress,egress} (the agent id with
// '.', '/', '%' and control characters escaped as %XX: bpffs refuses dots),
// so the agent stays cut off when the daemon dies (fail closed):
// [Switch.Close] closes file descriptors and never unpins. The counter and
// allowlist maps are pinned in <BPFFS>/<name>/isolate_maps. [Switch.Release] undoes an isolation exactly.
// At start the daemon calls [Switch.Reconcile] with the agents that still
// exist: their pinned links are kept (and switched to this daemon's program
// and maps), pins of agents that are gone are removed.
//
// # Egress policy
//
// A pool's network policy ([ParsePolicy]) is either egress "allow" (nothing
// attached) or "deny" with an allowlist of CIDRs, optionally with one port
// each ("10.0.0.0/8", "127.0.0.1/32:8080", "[2001:db8::/32]:443").
// [Switch.ApplyPolicy] writes the allowlist into a shared LPM trie keyed by
// (cgroup id, family, prefix) and attaches a cgroup_skb/egress program to the
// agent's cgroup, pinned like the isolation links (.../<agentID>/policy). Every packet the agent's
// sockets send to a destination that is not allowed is dropped, including
// loopback (127.0.0.0/8, ::1) and replies on connections the agent accepted:
// the daemon talks to agents over pipes, so nothing the daemon needs is lost.
// A drop is counted per cgroup with the last dropped destination
// ([Switch.Drops]) and reported on [Switch.Breaches] (at most one event per
// agent per 100 ms; the counter is exact). The supervisor decides what a
// breach means (count, isolate, kill). Isolation and policy programs are
// attached with bpf_link, which is multi-attach, so they coexist on one cgroup
// and a packet passes only if every program passes it.
//
// Policies, counters and isolation are keyed by the cgroup id of the packet's
// socket, which is the agent's cgroup because each agent lives in its own
// leaf cgroup. A socket created in a child cgroup of an agent finds no policy
// and is dropped: the policy fails closed.
//
// # Node isolation
//
// [Switch.IsolateNode] takes the node off the mesh with netlink. With mesh
// CIDRs it adds blackhole routes to the main table ("proto 176"): for each
// CIDR and for every more specific route inside it, which would otherwise
// still win. An IPv4 prefix that already has a route (such as the connected
// route of the mesh subnet, metric 0) is covered by its two halves; IPv6
// blackholes get metric 1, ahead of connected routes. A host route (/32,
// /128) inside a CIDR cannot be overridden this way and stays reachable.
// Inbound packets to the node's own addresses are still delivered; replies
// are not. Without CIDRs it sets the mesh interface down. What it changes and
// what was there before (link state, and the addresses and routes a
// link-down removes and the kernel does not restore) is written to a state
// file in Options.StateDir before each change, so [Switch.ReleaseNode]
// restores exactly that, also after a daemon restart.
//
// # Requirements
//
// Agent isolation and egress policy need root (CAP_BPF, CAP_NET_ADMIN),
// cgroup v2 and bpffs; [New] mounts bpffs at /sys/fs/bpf when it is missing.
// When BPF cannot be used, [New] returns a Switch whose agent methods return
// [ErrNotSupported], together with an error wrapping [ErrNotSupported]; node
// isolation still works.
package isolate
