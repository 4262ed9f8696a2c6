//go:build ignore

// isolate.c: the Kill Switch's cgroup_skb programs (internal/isolate).
//
// Three programs, one object, loaded once per daemon and attached with
// bpf_link (multi-attach) to agent cgroups:
//
//   isolate_ingress, isolate_egress  drop every packet of a cut-off agent and
//                                    count it;
//   policy_egress                    drops every packet whose destination is
//                                    not in the agent's allowlist, counts it,
//                                    remembers the destination and reports the
//                                    breach on a ring buffer.
//
// Everything is keyed by the cgroup id of the packet's socket
// (bpf_skb_cgroup_id), which is the agent's cgroup because agents live in
// their own leaf cgroup. A socket in an unknown cgroup finds no policy entry
// and is dropped: the policy program fails closed.
//
// The counter and policy maps are pinned by name so that a restarted daemon
// finds the counters and allowlists its pinned links are still enforcing.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define VERDICT_DROP 0
#define VERDICT_PASS 1

// At most one breach event per cgroup per interval; the counters keep the
// exact number.
#define BREACH_EVENT_INTERVAL_NS (100ULL * 1000 * 1000)

// Distinct ports one allowlist prefix may carry (after folding in the ports
// of the shorter prefixes that contain it).
#define POLICY_MAX_PORTS 16

// Bits of struct policy_key before the address: the cgroup id and family.
#define POLICY_KEY_FIXED_BITS 96

// IPv6 extension headers skipped before the transport header.
#define IPV6_MAX_EXT_HEADERS 4

// drop_stats is the per-cgroup counter. Policy and isolation drops are
// counted apart: only policy drops are breaches.
struct drop_stats {
	__u64 isolated_packets;
	__u64 policy_packets;
	__u64 last_event_ns;
	__u8 last_addr[16]; // IPv4 in the first four bytes
	__u16 last_port;    // host order; 0 when the protocol has no ports
	__u8 last_proto;
	__u8 last_family;   // 4 or 6; 0 when the packet was not IP
	__u8 _pad[4];
};

// policy_key is an LPM trie key: the cgroup id and the address family
// (always fully matched), then the destination address (IPv4 in the first
// four bytes). The family keeps IPv6 prefixes such as ::/0 from matching IPv4.
// The cgroup id is split in two u32 so that the struct has no padding.
struct policy_key {
	__u32 prefixlen;
	__u32 cgroup_lo;
	__u32 cgroup_hi;
	__u32 family; // 4 or 6
	__u8 addr[16];
};

// policy_ports is what an allowlist prefix allows: any port, or the listed
// destination ports (TCP, UDP, SCTP, UDP-Lite).
struct policy_ports {
	__u32 any_port;
	__u32 nports;
	__u16 ports[POLICY_MAX_PORTS];
};

// breach_event reports a policy drop to user space.
struct breach_event {
	__u64 cgroup_id;
	__u64 policy_packets;
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 family;
	__u8 _pad[4];
};

// Emits BTF for breach_event, which user space decodes (bpf2go -type).
const struct breach_event *unused_breach_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct drop_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} isolate_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_ports);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} isolate_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} isolate_breaches SEC(".maps");

static __always_inline struct drop_stats *stats_for(__u64 cgroup_id)
{
	struct drop_stats *s = bpf_map_lookup_elem(&isolate_drops, &cgroup_id);
	if (s)
		return s;

	struct drop_stats zero = {};
	bpf_map_update_elem(&isolate_drops, &cgroup_id, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&isolate_drops, &cgroup_id);
}

static __always_inline int drop_isolated(struct __sk_buff *skb)
{
	struct drop_stats *s = stats_for(bpf_skb_cgroup_id(skb));
	if (s)
		__sync_fetch_and_add(&s->isolated_packets, 1);
	return VERDICT_DROP;
}

SEC("cgroup_skb/ingress")
int isolate_ingress(struct __sk_buff *skb)
{
	return drop_isolated(skb);
}

SEC("cgroup_skb/egress")
int isolate_egress(struct __sk_buff *skb)
{
	return drop_isolated(skb);
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP ||
	       proto == IPPROTO_SCTP || proto == IPPROTO_UDPLITE;
}

// dest parses the destination of the packet at the network header into the
// key's family, address and prefix length, *proto and *port (0 when unknown).
// It returns -1 for a packet that is neither IPv4 nor IPv6.
static __always_inline int dest(struct __sk_buff *skb, struct policy_key *key,
				__u8 *proto, __u16 *port)
{
	__u8 first;
	__u32 l4 = 0;
	int fragment = 0;

	if (bpf_skb_load_bytes(skb, 0, &first, 1))
		return -1;

	if ((first >> 4) == 4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return -1;
		key->family = 4;
		key->prefixlen = POLICY_KEY_FIXED_BITS + 32;
		__builtin_memcpy(key->addr, &ip.daddr, 4);
		*proto = ip.protocol;
		l4 = ip.ihl * 4;
		fragment = (ip.frag_off & bpf_htons(0x1fff)) != 0;
	} else if ((first >> 4) == 6) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		key->family = 6;
		key->prefixlen = POLICY_KEY_FIXED_BITS + 128;
		__builtin_memcpy(key->addr, &ip6.daddr, 16);
		__u8 next = ip6.nexthdr;
		l4 = sizeof(ip6);
		for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
			__u8 ext[2];
			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
			    next != IPPROTO_DSTOPTS && next != IPPROTO_FRAGMENT)
				break;
			if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
				return 0;
			if (next == IPPROTO_FRAGMENT) {
				__be16 off;
				if (bpf_skb_load_bytes(skb, l4 + 2, &off, sizeof(off)))
					return 0;
				fragment = (off & bpf_htons(0xfff8)) != 0;
				l4 += 8;
			} else {
				l4 += ((__u32)ext[1] + 1) * 8;
			}
			next = ext[0];
		}
		*proto = next;
	} else {
		return -1;
	}

	if (!fragment && has_ports(*proto)) {
		__be16 ports[2];
		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) == 0)
			*port = bpf_ntohs(ports[1]);
	}
	return 0;
}

static __always_inline int port_allowed(const struct policy_ports *p, __u16 port)
{
	if (p->any_port)
		return 1;
	if (port == 0)
		return 0;
	for (int i = 0; i < POLICY_MAX_PORTS; i++) {
		if (i >= p->nports)
			break;
		if (p->ports[i] == port)
			return 1;
	}
	return 0;
}

SEC("cgroup_skb/egress")
int policy_egress(struct __sk_buff *skb)
{
	__u64 cgroup_id = bpf_skb_cgroup_id(skb);
	struct policy_key key = {
		.cgroup_lo = (__u32)cgroup_id,
		.cgroup_hi = (__u32)(cgroup_id >> 32),
	};
	__u8 proto = 0;
	__u16 port = 0;

	if (dest(skb, &key, &proto, &port) == 0) {
		struct policy_ports *allowed = bpf_map_lookup_elem(&isolate_policy, &key);
		if (allowed && port_allowed(allowed, port))
			return VERDICT_PASS;
	}

	struct drop_stats *s = stats_for(cgroup_id);
	if (!s)
		return VERDICT_DROP;

	__sync_fetch_and_add(&s->policy_packets, 1);
	__builtin_memcpy(s->last_addr, key.addr, sizeof(s->last_addr));
	s->last_port = port;
	s->last_proto = proto;
	s->last_family = key.family;

	__u64 now = bpf_ktime_get_ns();
	if (s->last_event_ns != 0 && now - s->last_event_ns < BREACH_EVENT_INTERVAL_NS)
		return VERDICT_DROP;
	s->last_event_ns = now;

	struct breach_event *e = bpf_ringbuf_reserve(&isolate_breaches, sizeof(*e), 0);
	if (!e)
		return VERDICT_DROP;
	__builtin_memset(e, 0, sizeof(*e));
	e->cgroup_id = cgroup_id;
	e->policy_packets = s->policy_packets;
	__builtin_memcpy(e->addr, key.addr, sizeof(e->addr));
	e->port = port;
	e->proto = proto;
	e->family = key.family;
	bpf_ringbuf_submit(e, 0);
	return VERDICT_DROP;
}
