package isolate

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	for _, c := range []struct {
		egress string
		allow  []string
		want   Policy
	}{
		{"", nil, Policy{Egress: EgressAllow}},
		{"allow", nil, Policy{Egress: EgressAllow}},
		{"deny", nil, Policy{Egress: EgressDeny, Allow: []string{}}},
		{"deny", []string{"10.0.0.0/8", "127.0.0.1/32:8080"}, Policy{Egress: EgressDeny, Allow: []string{"10.0.0.0/8", "127.0.0.1/32:8080"}}},
		{"deny", []string{" 10.1.2.3/8 ", "192.0.2.7:53", "192.0.2.7:53"}, Policy{Egress: EgressDeny, Allow: []string{"10.0.0.0/8", "192.0.2.7/32:53"}}},
		{"deny", []string{"2001:db8::/32", "[2001:db8::1]:443", "::1"}, Policy{Egress: EgressDeny, Allow: []string{"2001:db8::/32", "::1/128", "[2001:db8::1/128]:443"}}},
		{"deny", []string{"::ffff:10.0.0.0/104"}, Policy{Egress: EgressDeny, Allow: []string{"10.0.0.0/8"}}},
	} {
		got, err := ParsePolicy(c.egress, c.allow)
		if err != nil {
			t.Errorf("ParsePolicy(%q, %q): %v", c.egress, c.allow, err)
			continue
		}
		if got.Egress != c.want.Egress || !slices.Equal(got.Allow, c.want.Allow) {
			t.Errorf("ParsePolicy(%q, %q) = %+v, want %+v", c.egress, c.allow, got, c.want)
		}
	}
}

func TestParsePolicyRejects(t *testing.T) {
	for _, c := range []struct {
		egress string
		allow  []string
	}{
		{"block", nil},
		{"allow", []string{"10.0.0.0/8"}},
		{"deny", []string{""}},
		{"deny", []string{"10.0.0.0/33"}},
		{"deny", []string{"10.0.0.0/8:0"}},
		{"deny", []string{"10.0.0.0/8:65536"}},
		{"deny", []string{"10.0.0.0/8:http"}},
		{"deny", []string{"example.com:443"}},
		{"deny", []string{"[10.0.0.1]:443"}},
		{"deny", []string{"[2001:db8::1]"}},
		{"deny", []string{"fe80::1%eth0"}},
	} {
		if _, err := ParsePolicy(c.egress, c.allow); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("ParsePolicy(%q, %q): %v, want ErrInvalidPolicy", c.egress, c.allow, err)
		}
	}
}

func TestParsePolicyLimitsPortsPerPrefix(t *testing.T) {
	var allow []string
	for p := range maxPortsPerPrefix {
		allow = append(allow, "10.0.0.0/8:"+itoaPort(1000+p))
	}
	if _, err := ParsePolicy(EgressDeny, allow); err != nil {
		t.Fatalf("%d ports: %v", maxPortsPerPrefix, err)
	}
	// The /24 inherits the /8's ports: one more is too many.
	allow = append(allow, "10.1.2.0/24:9")
	if _, err := ParsePolicy(EgressDeny, allow); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("%d ports on one prefix: %v", maxPortsPerPrefix+1, err)
	}
}

func itoaPort(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}

func TestCompileRulesFoldsContainingPrefixes(t *testing.T) {
	rules, err := parseRules([]string{"10.0.0.0/8:22", "10.1.0.0/16", "10.1.2.0/24:80", "10.2.0.0/16:443", "[2001:db8::/32]:53"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := compileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]allowEntry{
		"10.0.0.0/8":    {ports: []uint16{22}},
		"10.1.0.0/16":   {anyPort: true},
		"10.1.2.0/24":   {anyPort: true}, // inside the any-port /16
		"10.2.0.0/16":   {ports: []uint16{22, 443}},
		"2001:db8::/32": {ports: []uint16{53}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
	}
	for p, w := range want {
		g, ok := got[netip.MustParsePrefix(p)]
		if !ok || g.anyPort != w.anyPort || !slices.Equal(g.ports, w.ports) {
			t.Errorf("%s: %+v, want %+v", p, g, w)
		}
	}
}

func TestPinNameRoundTrip(t *testing.T) {
	for _, id := range []string{"web-0", "pool.3", "a/b", "100%", "x\ny", "ünï"} {
		name := pinName(id)
		if strings.ContainsAny(name, "./\n") {
			t.Errorf("pinName(%q) = %q", id, name)
		}
		back, err := agentIDFromPin(name)
		if err != nil || back != id {
			t.Errorf("agentIDFromPin(%q) = %q, %v; want %q", name, back, err, id)
		}
	}
	if _, err := agentIDFromPin("a%2"); err == nil {
		t.Error("agentIDFromPin accepted a broken escape")
	}
}

func TestMeshValidation(t *testing.T) {
	for _, m := range []Mesh{
		{},
		{Mode: MeshModeBlackhole, Interface: "eth0"},
		{Mode: "sideways", Interface: "eth0"},
		{CIDRs: []string{"10.0.0.0/33"}},
	} {
		if _, _, err := m.mode(); !errors.Is(err, ErrInvalidMesh) {
			t.Errorf("%+v: %v, want ErrInvalidMesh", m, err)
		}
	}
	mode, cidrs, err := Mesh{CIDRs: []string{"10.1.2.3/16"}}.mode()
	if err != nil || mode != MeshModeBlackhole || len(cidrs) != 1 || cidrs[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("CIDRs without mode: %s %v %v", mode, cidrs, err)
	}
	if mode, _, err := (Mesh{Interface: "eth1"}).mode(); err != nil || mode != MeshModeDown {
		t.Errorf("interface without CIDRs: %s %v", mode, err)
	}
}

func TestFormatDst(t *testing.T) {
	var v4, v6 [16]byte
	copy(v4[:], []byte{10, 0, 0, 1})
	v6 = netip.MustParseAddr("2001:db8::1").As16()
	for _, c := range []struct {
		family uint8
		addr   [16]byte
		port   uint16
		want   string
	}{
		{4, v4, 443, "10.0.0.1:443"},
		{4, v4, 0, "10.0.0.1"},
		{6, v6, 53, "[2001:db8::1]:53"},
		{0, v4, 1, ""},
	} {
		if got := formatDst(c.family, c.addr, c.port); got != c.want {
			t.Errorf("formatDst(%d, %v, %d) = %q, want %q", c.family, c.addr, c.port, got, c.want)
		}
	}
}

// FuzzParsePolicy: any allow list either fails with ErrInvalidPolicy or
// normalises to a fixed point that compiles.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1/32:8080", "[2001:db8::/32]:443", "::1", "1.2.3.4:0", "[::1]:", "a:b:c"} {
		f.Add(s, "192.0.2.0/24:53")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		p, err := ParsePolicy(EgressDeny, []string{a, b})
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error without ErrInvalidPolicy: %v", err)
			}
			return
		}
		again, err := ParsePolicy(p.Egress, p.Allow)
		if err != nil {
			t.Fatalf("normalised %q does not parse: %v", p.Allow, err)
		}
		if !slices.Equal(again.Allow, p.Allow) {
			t.Fatalf("normalisation not stable: %q → %q", p.Allow, again.Allow)
		}
		rules, err := parseRules(p.Allow)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := compileRules(rules); err != nil {
			t.Fatal(err)
		}
	})
}
