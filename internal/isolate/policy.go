package isolate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Egress modes of a [Policy].
const (
	EgressAllow = "allow"
	EgressDeny  = "deny"
)

// maxPortsPerPrefix is POLICY_MAX_PORTS in bpf/isolate.c.
const maxPortsPerPrefix = 16

// Policy is a pool's egress policy. With Egress "allow" (or empty) the agents
// may send anywhere and nothing is attached. With Egress "deny" they may send
// only to the destinations in Allow; everything else is dropped, counted and
// reported as a breach.
//
// An Allow entry is a CIDR or a bare address, optionally with one destination
// port that then applies to TCP, UDP, SCTP and UDP-Lite:
//
//	10.0.0.0/8            any port
//	127.0.0.1/32:8080     port 8080 only
//	192.0.2.7:53          a bare address is a /32 (or /128)
//	2001:db8::/32         IPv6
//	[2001:db8::1]:443     IPv6 with a port needs brackets
//
// Protocols without ports (ICMP) are allowed only by entries without a port.
type Policy struct {
	Egress string
	Allow  []string
}

// ParsePolicy validates a policy and returns it with Egress defaulted and
// Allow normalised (canonical prefixes, duplicates removed, sorted).
func ParsePolicy(egress string, allow []string) (Policy, error) {
	switch egress {
	case "", EgressAllow:
		if len(allow) > 0 {
			return Policy{}, fmt.Errorf("%w: egress %q with an allow list: the list has no effect; use egress %q", ErrInvalidPolicy, EgressAllow, EgressDeny)
		}
		return Policy{Egress: EgressAllow}, nil
	case EgressDeny:
	default:
		return Policy{}, fmt.Errorf("%w: egress %q: want %q or %q", ErrInvalidPolicy, egress, EgressAllow, EgressDeny)
	}
	rules, err := parseRules(allow)
	if err != nil {
		return Policy{}, err
	}
	if _, err := compileRules(rules); err != nil {
		return Policy{}, err
	}
	p := Policy{Egress: EgressDeny, Allow: make([]string, 0, len(rules))}
	for _, r := range rules {
		p.Allow = append(p.Allow, r.String())
	}
	slices.Sort(p.Allow)
	p.Allow = slices.Compact(p.Allow)
	return p, nil
}

// allowRule is one parsed allowlist entry; port 0 means any port.
type allowRule struct {
	prefix netip.Prefix
	port   uint16
}

func (r allowRule) String() string {
	if r.port == 0 {
		return r.prefix.String()
	}
	if r.prefix.Addr().Is6() {
		return "[" + r.prefix.String() + "]:" + strconv.Itoa(int(r.port))
	}
	return r.prefix.String() + ":" + strconv.Itoa(int(r.port))
}

func parseRules(allow []string) ([]allowRule, error) {
	rules := make([]allowRule, 0, len(allow))
	for _, s := range allow {
		r, err := parseRule(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: allow %q: %v", ErrInvalidPolicy, s, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(s string) (allowRule, error) {
	if s == "" {
		return allowRule{}, fmt.Errorf("empty entry")
	}
	if p, err := parsePrefix(s); err == nil {
		return allowRule{prefix: p}, nil
	}

	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return allowRule{}, fmt.Errorf("want [IPv6 CIDR]:port")
		}
		host, port = s[1:end], s[end+2:]
		if p, err := parsePrefix(host); err != nil || !p.Addr().Is6() {
			return allowRule{}, fmt.Errorf("want an IPv6 address or CIDR inside brackets")
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 || strings.Count(s, ":") > 1 {
			return allowRule{}, fmt.Errorf("want CIDR, CIDR:port or [IPv6 CIDR]:port")
		}
		host, port = s[:i], s[i+1:]
	}
	p, err := parsePrefix(host)
	if err != nil {
		return allowRule{}, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return allowRule{}, fmt.Errorf("port %q: want 1-65535", port)
	}
	return allowRule{prefix: p, port: uint16(n)}, nil
}

// parsePrefix parses a CIDR or a bare address (a full-length prefix). An
// IPv4-mapped IPv6 address is taken as the IPv4 address it maps, because
// that is what the packets carry.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%s: zones are not supported", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%s: invalid prefix", s)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// allowEntry is what one LPM trie entry allows.
type allowEntry struct {
	anyPort bool
	ports   []uint16 // sorted, when !anyPort
}

// compileRules turns rules into LPM trie entries. The trie returns only the
// longest matching prefix, so each entry carries the ports of every shorter
// prefix that contains it: "10.0.0.0/8" and "10.0.0.1/32:443" make the /32
// entry allow any port, as the /8 does.
func compileRules(rules []allowRule) (map[netip.Prefix]allowEntry, error) {
	own := make(map[netip.Prefix]allowEntry)
	for _, r := range rules {
		e := own[r.prefix]
		if r.port == 0 {
			e.anyPort = true
		} else {
			e.ports = append(e.ports, r.port)
		}
		own[r.prefix] = e
	}
	out := make(map[netip.Prefix]allowEntry, len(own))
	for p := range own {
		var merged allowEntry
		for q, e := range own {
			if q.Addr().BitLen() != p.Addr().BitLen() || q.Bits() > p.Bits() || !q.Contains(p.Addr()) {
				continue
			}
			merged.anyPort = merged.anyPort || e.anyPort
			merged.ports = append(merged.ports, e.ports...)
		}
		if merged.anyPort {
			merged.ports = nil
		} else {
			slices.Sort(merged.ports)
			merged.ports = slices.Compact(merged.ports)
			if len(merged.ports) > maxPortsPerPrefix {
				return nil, fmt.Errorf("%w: %s allows %d ports (with the prefixes containing it); at most %d", ErrInvalidPolicy, p, len(merged.ports), maxPortsPerPrefix)
			}
		}
		out[p] = merged
	}
	return out, nil
}
