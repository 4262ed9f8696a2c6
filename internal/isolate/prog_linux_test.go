//go:build linux

package isolate

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// packet builds an Ethernet frame carrying an IPv4 or IPv6 packet to dst
// (with a TCP/UDP header to port, or an ICMP header), as BPF_PROG_RUN wants
// it for cgroup_skb programs.
func packet(proto uint8, dst netip.Addr, port uint16) []byte {
	var l4 []byte
	switch proto {
	case protoTCP:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4 // data offset
	case protoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], 8)
	default:
		l4 = make([]byte, 8) // ICMP echo
		l4[0] = 8
	}
	if proto == protoTCP || proto == protoUDP {
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], port)
	}

	frame := make([]byte, 14)
	copy(frame[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(frame[6:12], []byte{2, 0, 0, 0, 0, 2})
	if dst.Is4() {
		binary.BigEndian.PutUint16(frame[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8] = 64
		ip[9] = proto
		copy(ip[12:16], []byte{10, 9, 9, 9})
		d := dst.As4()
		copy(ip[16:20], d[:])
		return append(append(frame, ip...), l4...)
	}
	if proto == protoICMP {
		proto = 58
	}
	binary.BigEndian.PutUint16(frame[12:], 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6] = proto
	ip[7] = 64
	src := netip.MustParseAddr("fd00::9").As16()
	copy(ip[8:24], src[:])
	d := dst.As16()
	copy(ip[24:40], d[:])
	return append(append(frame, ip...), l4...)
}

func selfDrops(t testing.TB, sw *Switch, cgid uint64) isolateDropStats {
	t.Helper()
	var v isolateDropStats
	if err := sw.objs.IsolateDrops.Lookup(cgid, &v); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatal(err)
	}
	return v
}

func setPolicy(t testing.TB, sw *Switch, cgid uint64, allow ...string) {
	t.Helper()
	rules, err := parseRules(allow)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := compileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.writePolicy(cgid, entries); err != nil {
		t.Fatal(err)
	}
}

// The programs run on synthetic packets with BPF_PROG_RUN. The kernel gives
// the test packet a socket in the calling process's cgroup, so the allowlist
// is written for that cgroup (in a private bpffs; nothing is attached).
func TestPolicyProgramVerdicts(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	self := selfCgroupID(t)
	setPolicy(t, sw, self, "10.1.2.0/24:80", "10.1.2.0/24:8080", "192.0.2.1", "10.0.0.0/8:22", "10.1.2.7/32", "[2001:db8::/32]:443")

	addr := netip.MustParseAddr
	for _, c := range []struct {
		name    string
		pkt     []byte
		want    uint32
		wantDst string
	}{
		{"tcp to allowed prefix and port", packet(protoTCP, addr("10.1.2.3"), 80), 1, ""},
		{"udp to allowed prefix and second port", packet(protoUDP, addr("10.1.2.3"), 8080), 1, ""},
		{"tcp to allowed prefix, other port", packet(protoTCP, addr("10.1.2.3"), 81), 0, "10.1.2.3:81"},
		{"port of the containing /8 applies inside the /24", packet(protoTCP, addr("10.1.2.3"), 22), 1, ""},
		{"any port of a more specific /32", packet(protoTCP, addr("10.1.2.7"), 9999), 1, ""},
		{"icmp to an any-port host", packet(protoICMP, addr("192.0.2.1"), 0), 1, ""},
		{"icmp to a port-only prefix", packet(protoICMP, addr("10.1.2.3"), 0), 0, "10.1.2.3"},
		{"udp elsewhere", packet(protoUDP, addr("198.51.100.53"), 53), 0, "198.51.100.53:53"},
		{"loopback is not exempt", packet(protoTCP, addr("127.0.0.1"), 8080), 0, "127.0.0.1:8080"},
		{"ipv6 allowed", packet(protoTCP, addr("2001:db8::1"), 443), 1, ""},
		{"ipv6 other port", packet(protoTCP, addr("2001:db8::1"), 80), 0, "[2001:db8::1]:80"},
		{"ipv6 elsewhere", packet(protoUDP, addr("2001:db9::1"), 443), 0, "[2001:db9::1]:443"},
	} {
		before := selfDrops(t, sw, self)
		got, err := sw.objs.PolicyEgress.Run(&ebpf.RunOptions{Data: c.pkt})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
			continue
		}
		after := selfDrops(t, sw, self)
		wantDrops := before.PolicyPackets
		if c.want == 0 {
			wantDrops++
		}
		if after.PolicyPackets != wantDrops {
			t.Errorf("%s: policy drops %d → %d, want %d", c.name, before.PolicyPackets, after.PolicyPackets, wantDrops)
		}
		if c.want == 0 {
			if dst := formatDst(after.LastFamily, after.LastAddr, after.LastPort); dst != c.wantDst {
				t.Errorf("%s: last dst %q, want %q", c.name, dst, c.wantDst)
			}
		}
	}

	// An IPv6 ::/0 must not open IPv4.
	setPolicy(t, sw, self, "::/0")
	if got, _ := sw.objs.PolicyEgress.Run(&ebpf.RunOptions{Data: packet(protoTCP, addr("10.1.2.3"), 80)}); got != 0 {
		t.Errorf("::/0 allowed IPv4")
	}
	if got, _ := sw.objs.PolicyEgress.Run(&ebpf.RunOptions{Data: packet(protoTCP, addr("2001:db9::1"), 80)}); got != 1 {
		t.Errorf("::/0 did not allow IPv6")
	}
	// An empty allowlist denies everything.
	setPolicy(t, sw, self)
	if n := countPolicyEntries(t, sw); n != 0 {
		t.Fatalf("%d entries left after writing an empty allowlist", n)
	}
	if got, _ := sw.objs.PolicyEgress.Run(&ebpf.RunOptions{Data: packet(protoTCP, addr("2001:db9::1"), 80)}); got != 0 {
		t.Errorf("empty allowlist allowed a packet")
	}
}

func TestIsolationProgramsDropAndCount(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	self := selfCgroupID(t)
	pkt := packet(protoTCP, netip.MustParseAddr("10.1.2.3"), 80)
	before := selfDrops(t, sw, self).IsolatedPackets
	for _, prog := range []*ebpf.Program{sw.objs.IsolateIngress, sw.objs.IsolateEgress} {
		got, err := prog.Run(&ebpf.RunOptions{Data: pkt})
		if err != nil {
			t.Fatal(err)
		}
		if got != 0 {
			t.Errorf("%v: verdict %d, want 0 (drop)", prog, got)
		}
	}
	if after := selfDrops(t, sw, self).IsolatedPackets; after != before+2 {
		t.Fatalf("isolated drops %d → %d, want +2", before, after)
	}
}

// BenchmarkPolicyProgram measures the egress policy program per packet
// (BPF_PROG_RUN, in-kernel time) beside an always-allow cgroup_skb program
// run on the same packet.
func BenchmarkPolicyProgram(b *testing.B) {
	requireBPF(b)
	sw := newTestSwitch(b, "", "")
	self := selfCgroupID(b)
	setPolicy(b, sw, self, "10.0.0.0/8:22", "10.1.2.0/24:80", "10.1.2.0/24:443", "192.0.2.0/24",
		"198.51.100.7:53", "127.0.0.1:8080", "[2001:db8::/32]:443", "172.16.0.0/12:5432")
	baseline, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupSKB,
		AttachType:   ebpf.AttachCGroupInetEgress,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer baseline.Close()

	for _, c := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"allowed-ipv4", packet(protoTCP, netip.MustParseAddr("10.1.2.3"), 443), 1},
		{"denied-ipv4", packet(protoTCP, netip.MustParseAddr("203.0.113.9"), 443), 0},
		{"allowed-ipv6", packet(protoTCP, netip.MustParseAddr("2001:db8::1"), 443), 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			n := max(b.N, 1)
			got, policy, err := sw.objs.PolicyEgress.Benchmark(c.pkt, n, nil)
			if err != nil {
				b.Fatal(err)
			}
			if got != c.want {
				b.Fatalf("verdict %d, want %d", got, c.want)
			}
			_, base, err := baseline.Benchmark(c.pkt, n, nil)
			if err != nil {
				b.Fatal(err)
			}
			// ns/op is the policy program's in-kernel time per packet,
			// not the wall time of the two runs.
			b.ReportMetric(float64(policy.Nanoseconds()), "ns/op")
			b.ReportMetric(float64(base.Nanoseconds()), "baseline-ns/op")
		})
	}
}
