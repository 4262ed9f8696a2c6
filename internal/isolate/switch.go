package isolate

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBPFFS is where bpffs is mounted (and mounted by [New] if missing).
const DefaultBPFFS = "/sys/fs/bpf"

// Options configures a [Switch].
type Options struct {
	// BPFFS is a bpffs mount; default DefaultBPFFS. Pins live under
	// <BPFFS>/<Name>/isolate.
	BPFFS string
	// Name names the daemon's pin directory, as its cgroup subtree
	// (default "resilienced"): two daemons on one host must not list or
	// release each other's isolations.
	Name string
	// StateDir holds the node isolation state file. Node isolation fails
	// without it; agent isolation does not need it.
	StateDir string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DropStats are an agent's drop counters.
type DropStats struct {
	// Packets is the number of egress packets dropped by the agent's policy:
	// each one is a breach.
	Packets uint64
	// LastDst is the destination of the last policy drop: "10.0.0.1:443",
	// "[2001:db8::1]:53", or a bare address for protocols without ports.
	LastDst string
	// LastProto is the protocol of the last policy drop: "tcp", "udp",
	// "icmp", ... or the protocol number.
	LastProto string
	// IsolatedPackets is the number of packets (both directions) dropped
	// while the agent was isolated.
	IsolatedPackets uint64
}

// Breach is one report of egress policy drops.
type Breach struct {
	AgentID  string // "" when the cgroup is not one the Switch knows
	CgroupID uint64
	Dst      string // as DropStats.LastDst
	Proto    string
	Packets  uint64 // policy drops of the agent so far
	Time     time.Time
}

// Mesh is the network that connects this node to its peers.
type Mesh struct {
	// Interface is the mesh network interface.
	Interface string
	// CIDRs are the mesh networks; with Mode "blackhole" (or Mode empty and
	// CIDRs set) each gets a blackhole route.
	CIDRs []string
	// Mode is "blackhole", "down", or empty: blackhole when CIDRs are given,
	// otherwise down.
	Mode string
}

// Node isolation modes.
const (
	MeshModeBlackhole = "blackhole"
	MeshModeDown      = "down"
)

// mode resolves Mode and validates the mesh.
func (m Mesh) mode() (string, []netip.Prefix, error) {
	mode := m.Mode
	if mode == "" {
		mode = MeshModeDown
		if len(m.CIDRs) > 0 {
			mode = MeshModeBlackhole
		}
	}
	switch mode {
	case MeshModeDown:
		if m.Interface == "" {
			return "", nil, fmt.Errorf("%w: mode %q needs an interface", ErrInvalidMesh, mode)
		}
		return mode, nil, nil
	case MeshModeBlackhole:
	default:
		return "", nil, fmt.Errorf("%w: mode %q: want %q or %q", ErrInvalidMesh, m.Mode, MeshModeBlackhole, MeshModeDown)
	}
	if len(m.CIDRs) == 0 {
		return "", nil, fmt.Errorf("%w: mode %q needs CIDRs", ErrInvalidMesh, mode)
	}
	var cidrs []netip.Prefix
	for _, s := range m.CIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return "", nil, fmt.Errorf("%w: cidr %q: %v", ErrInvalidMesh, s, err)
		}
		cidrs = append(cidrs, p.Masked())
	}
	return mode, cidrs, nil
}

// validAgentID reports whether id can name a pin directory: any non-empty
// string whose escaped form (pinName) fits a file name.
func validAgentID(id string) error {
	if id == "" || strings.ContainsRune(id, 0) || len(pinName(id)) > 255 {
		return fmt.Errorf("%w: %q", ErrInvalidAgentID, id)
	}
	return nil
}

// pinName escapes an agent id into a bpffs directory name: bpffs refuses
// names with a dot, and a slash would nest. '%', '.', '/' and control
// characters become %XX.
func pinName(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == '%' || c == '.' || c == '/' || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// agentIDFromPin reverses pinName.
func agentIDFromPin(name string) (string, error) {
	id, err := url.PathUnescape(name)
	if err != nil || pinName(id) != name {
		return "", fmt.Errorf("%w: pin directory %q", ErrInvalidAgentID, name)
	}
	return id, nil
}

// formatDst renders a destination as DropStats.LastDst.
func formatDst(family uint8, addr [16]byte, port uint16) string {
	var a netip.Addr
	switch family {
	case 4:
		a = netip.AddrFrom4([4]byte(addr[:4]))
	case 6:
		a = netip.AddrFrom16(addr)
	default:
		return ""
	}
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// protoName names an IP protocol number.
func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}
