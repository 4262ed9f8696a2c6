//go:build linux

package isolate

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// ip runs iproute2; the tests use it to set up and inspect what the
// package does through netlink, so that both sides are not the same code.
func ip(t testing.TB, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

type ipRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
	Metric   int    `json:"metric"`
	Table    string `json:"table"`
	Prefsrc  string `json:"prefsrc"`
}

func (r ipRoute) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

func ipRoutes(t testing.TB, args ...string) []string {
	t.Helper()
	var routes []ipRoute
	if err := json.Unmarshal(ip(t, append([]string{"-j"}, args...)...), &routes); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// mainRoutes lists the main table, both families.
func mainRoutes(t testing.TB) []string {
	return append(ipRoutes(t, "-4", "route", "show", "table", "main"), ipRoutes(t, "-6", "route", "show", "table", "main")...)
}

// linkRoutes lists every route through the link, all tables, both families.
func linkRoutes(t testing.TB, dev string) []string {
	return append(ipRoutes(t, "-4", "route", "show", "table", "all", "dev", dev), ipRoutes(t, "-6", "route", "show", "table", "all", "dev", dev)...)
}

func linkAddrs(t testing.TB, dev string) []string {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(ip(t, "-j", "addr", "show", "dev", dev), &links); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if !strings.HasPrefix(a.Local, "fe80:") {
				out = append(out, a.Local+"/"+itoa(a.Prefixlen)+" "+a.Scope)
			}
		}
	}
	slices.Sort(out)
	return out
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func linkUp(t testing.TB, dev string) bool {
	t.Helper()
	var links []struct {
		Flags []string `json:"flags"`
	}
	if err := json.Unmarshal(ip(t, "-j", "link", "show", "dev", dev), &links); err != nil {
		t.Fatal(err)
	}
	return len(links) == 1 && slices.Contains(links[0].Flags, "UP")
}

// routeTo is the route the kernel picks to dst.
func routeTo(t testing.TB, dst netip.Addr) ipRoute {
	t.Helper()
	var routes []ipRoute
	out, err := exec.Command("ip", "-j", "route", "get", dst.String()).Output()
	if err != nil {
		// "ip route get" fails for a blackhole / unreachable destination.
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(ee.Stderr), "No route") {
			return ipRoute{Type: "unreachable"}
		}
		if errors.As(err, &ee) && strings.Contains(string(ee.Stderr), "Invalid argument") {
			return ipRoute{Type: "blackhole"}
		}
		t.Fatalf("ip route get %s: %v", dst, err)
	}
	if err := json.Unmarshal(out, &routes); err != nil || len(routes) != 1 {
		t.Fatalf("ip route get %s: %s (%v)", dst, out, err)
	}
	return routes[0]
}

// dialDirect connects from the test process (no cgroup of ours) and checks
// the outcome.
func dialDirect(t testing.TB, addr netip.AddrPort, wantOK bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err == nil {
		c.Close()
	}
	if wantOK && err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if !wantOK && err == nil {
		t.Fatalf("dial %s succeeded, want it cut off", addr)
	}
}
