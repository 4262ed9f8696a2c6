//go:build linux

package isolate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIsolateCutsAgentOffAndReleaseRestores(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	cg := newTestCgroup(t)
	peer := newPeerHost(t)
	srv := peer.serveTCP(t, "hello")

	if got := dialFrom(t, cg, srv); got != "ok hello" {
		t.Fatalf("before isolation: %q, want ok hello", got)
	}

	if err := sw.Isolate("a1", cg); err != nil {
		t.Fatal(err)
	}
	if !sw.Isolated("a1") {
		t.Fatal("Isolated = false after Isolate")
	}
	if err := sw.Isolate("a1", cg); err != nil {
		t.Fatalf("isolating again: %v", err)
	}

	// Sending: the SYN is dropped at egress, connect fails.
	if got := dialBlocked(t, cg, srv); !strings.HasPrefix(got, "err") {
		t.Fatalf("isolated agent connected: %q", got)
	}
	// Receiving: a datagram from the peer is dropped at ingress; once the
	// drop is counted it provably never reached the socket.
	rx := startUDPReceiver(t, cg, peer.hostIP)
	before := mustDrops(t, sw, "a1").IsolatedPackets
	peer.sendUDP(t, netip.AddrPortFrom(peer.hostIP, rx.port), "ping-isolated")
	eventually(t, "the ingress drop to be counted", func() bool {
		return mustDrops(t, sw, "a1").IsolatedPackets > before
	})
	if got := rx.ask("poll"); got != "none" {
		t.Fatalf("isolated agent received %q", got)
	}

	if err := sw.Release("a1"); err != nil {
		t.Fatal(err)
	}
	if sw.Isolated("a1") {
		t.Fatal("Isolated = true after Release")
	}
	if _, err := os.Stat(sw.agentDir("a1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left after Release: %v", err)
	}
	if got := dialFrom(t, cg, srv); got != "ok hello" {
		t.Fatalf("after release: %q", got)
	}
	peer.sendUDP(t, netip.AddrPortFrom(peer.hostIP, rx.port), "ping-released")
	if got := rx.ask("wait"); got != "got ping-released" {
		t.Fatalf("released agent received %q", got)
	}
	if err := sw.Release("a1"); err != nil {
		t.Fatalf("releasing again: %v", err)
	}
}

func mustDrops(t testing.TB, sw *Switch, agentID string) DropStats {
	t.Helper()
	st, err := sw.Drops(agentID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestEgressPolicyAllowsAndDrops(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	cg := newTestCgroup(t)
	peer := newPeerHost(t)
	allowed := peer.serveTCP(t, "allowed")
	denied := peer.serveTCP(t, "denied")

	loop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	go serveGreeting(loop, "loopback")
	loopAddr := netip.MustParseAddrPort(loop.Addr().String())

	p, err := ParsePolicy(EgressDeny, []string{netip.PrefixFrom(allowed.Addr(), 32).String() + ":" + strconv.Itoa(int(allowed.Port()))})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.ApplyPolicy("a1", cg, p); err != nil {
		t.Fatal(err)
	}

	if got := dialFrom(t, cg, allowed); got != "ok allowed" {
		t.Fatalf("allowed destination: %q", got)
	}
	if got := dialBlocked(t, cg, denied); !strings.HasPrefix(got, "err") {
		t.Fatalf("denied destination connected: %q", got)
	}
	st := mustDrops(t, sw, "a1")
	if st.Packets == 0 || st.LastDst != denied.String() || st.LastProto != "tcp" {
		t.Fatalf("drops = %+v, want packets > 0 and last dst tcp %s", st, denied)
	}
	select {
	case b := <-sw.Breaches():
		if b.AgentID != "a1" || b.Dst != denied.String() || b.Proto != "tcp" || b.Packets == 0 {
			t.Fatalf("breach = %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no breach reported")
	}

	// Loopback is not exempt.
	if got := dialBlocked(t, cg, loopAddr); !strings.HasPrefix(got, "err") {
		t.Fatalf("loopback connected under egress deny: %q", got)
	}
	if st := mustDrops(t, sw, "a1"); st.LastDst != loopAddr.String() {
		t.Fatalf("last dst %q, want %s", st.LastDst, loopAddr)
	}

	// Isolation and policy coexist on one cgroup: both must pass a packet.
	if err := sw.Isolate("a1", cg); err != nil {
		t.Fatal(err)
	}
	if got := dialBlocked(t, cg, allowed); !strings.HasPrefix(got, "err") {
		t.Fatalf("isolated agent with policy reached an allowed destination: %q", got)
	}
	if err := sw.Release("a1"); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cg, allowed); got != "ok allowed" {
		t.Fatalf("allowed destination after release: %q", got)
	}
	if got := dialBlocked(t, cg, denied); !strings.HasPrefix(got, "err") {
		t.Fatalf("policy lost on release: %q", got)
	}

	// A new allowlist replaces the old one.
	p2, err := ParsePolicy(EgressDeny, []string{denied.String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.ApplyPolicy("a1", cg, p2); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cg, denied); got != "ok denied" {
		t.Fatalf("newly allowed destination: %q", got)
	}
	if got := dialBlocked(t, cg, allowed); !strings.HasPrefix(got, "err") {
		t.Fatalf("no longer allowed destination connected: %q", got)
	}

	if err := sw.RemovePolicy("a1"); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cg, allowed); got != "ok allowed" {
		t.Fatalf("after RemovePolicy: %q", got)
	}
	if _, err := sw.Drops("a1"); !errors.Is(err, ErrUnknownAgent) {
		t.Fatalf("Drops after the last link went: %v, want ErrUnknownAgent", err)
	}
	if n := countPolicyEntries(t, sw); n != 0 {
		t.Fatalf("%d allowlist entries left after RemovePolicy", n)
	}
}

func countPolicyEntries(t testing.TB, sw *Switch) int {
	t.Helper()
	var (
		k isolatePolicyKey
		v isolatePolicyPorts
		n int
	)
	it := sw.objs.IsolatePolicy.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// After the daemon dies (Close without Release) the agent stays isolated; a
// new daemon's Reconcile keeps it and removes the pins of agents that are
// gone.
func TestIsolationSurvivesDaemonAndReconcile(t *testing.T) {
	requireBPF(t)
	bpffs := newBPFFS(t)
	cgLive := newTestCgroup(t)
	cgGone := newTestCgroup(t)
	cgOld, cgNew := newTestCgroup(t), newTestCgroup(t)
	peer := newPeerHost(t)
	srv := peer.serveTCP(t, "hello")

	sw1 := newTestSwitch(t, bpffs, "")
	if err := sw1.Isolate("live", cgLive); err != nil {
		t.Fatal(err)
	}
	if err := sw1.Isolate("gone", cgGone); err != nil {
		t.Fatal(err)
	}
	if err := sw1.Isolate("moved", cgOld); err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePolicy(EgressDeny, []string{"192.0.2.0/24"})
	if err := sw1.ApplyPolicy("live", cgLive, p); err != nil {
		t.Fatal(err)
	}
	if err := sw1.Close(); err != nil {
		t.Fatal(err)
	}

	if got := dialBlocked(t, cgLive, srv); !strings.HasPrefix(got, "err") {
		t.Fatalf("agent reached the network after the daemon closed: %q", got)
	}

	sw2 := newTestSwitch(t, bpffs, "")
	if !sw2.Isolated("live") || !sw2.Isolated("gone") {
		t.Fatal("pins not visible to a new Switch")
	}
	// "moved" is live, but in another cgroup than its pins: they go.
	kept, removed, err := sw2.Reconcile(map[string]string{"live": cgLive, "moved": cgNew})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept, []string{"live"}) || !slices.Equal(removed, []string{"gone", "moved"}) {
		t.Fatalf("kept %v removed %v, want [live] [gone moved]", kept, removed)
	}
	if sw2.Isolated("moved") {
		t.Fatal("pin on the old cgroup of a moved agent kept")
	}
	if got := dialFrom(t, cgOld, srv); got != "ok hello" {
		t.Fatalf("old cgroup of a moved agent still cut off: %q", got)
	}
	if sw2.Isolated("gone") {
		t.Fatal("pin of a gone agent kept")
	}
	if _, err := os.Stat(sw2.agentDir("gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory of a gone agent left: %v", err)
	}
	if got := dialFrom(t, cgGone, srv); got != "ok hello" {
		t.Fatalf("removed agent's cgroup still cut off: %q", got)
	}
	if got := dialBlocked(t, cgLive, srv); !strings.HasPrefix(got, "err") {
		t.Fatalf("kept agent reached the network: %q", got)
	}
	// The kept links run this Switch's programs: drops land in its maps.
	if st := mustDrops(t, sw2, "live"); st.IsolatedPackets == 0 {
		t.Fatalf("kept agent's drops not counted: %+v", st)
	}

	if err := sw2.Release("live"); err != nil {
		t.Fatal(err)
	}
	// The policy pin survived too: only 192.0.2.0/24 is allowed.
	if got := dialBlocked(t, cgLive, srv); !strings.HasPrefix(got, "err") {
		t.Fatalf("policy lost across the restart: %q", got)
	}
	if err := sw2.RemovePolicy("live"); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cgLive, srv); got != "ok hello" {
		t.Fatalf("after release: %q", got)
	}
}

func TestIsolateRejectsBadInput(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	cg := newTestCgroup(t)
	for _, id := range []string{"", "nul\x00", strings.Repeat(".", 100)} {
		if err := sw.Isolate(id, cg); !errors.Is(err, ErrInvalidAgentID) {
			t.Errorf("Isolate(%q): %v, want ErrInvalidAgentID", id, err)
		}
	}
	if err := sw.Isolate("a1", t.TempDir()); err == nil {
		t.Error("Isolate on a directory that is not a cgroup succeeded")
	}
	if _, err := sw.Drops("nobody"); !errors.Is(err, ErrUnknownAgent) {
		t.Errorf("Drops(unknown): %v", err)
	}
	other := newTestCgroup(t)
	if err := sw.Isolate("a1", cg); err != nil {
		t.Fatal(err)
	}
	if err := sw.Isolate("a1", other); !errors.Is(err, ErrCgroupMismatch) {
		t.Errorf("Isolate on a second live cgroup: %v, want ErrCgroupMismatch", err)
	}
	if err := sw.Release("a1"); err != nil {
		t.Fatal(err)
	}
}

func TestNodeIsolationBlackhole(t *testing.T) {
	requireBPF(t)
	state := t.TempDir()
	sw := newTestSwitch(t, "", state)
	peer := newPeerHost(t)
	srv := peer.serveTCP(t, "hello")
	before := mainRoutes(t)
	dialDirect(t, srv, true)

	mesh := Mesh{Interface: peer.hostIf, CIDRs: []string{peer.prefix.String()}}
	if err := sw.IsolateNode(context.Background(), mesh); err != nil {
		t.Fatal(err)
	}
	if !sw.NodeIsolated() {
		t.Fatal("NodeIsolated = false")
	}
	if err := sw.IsolateNode(context.Background(), mesh); err != nil {
		t.Fatalf("isolating again with the same mesh: %v", err)
	}
	if err := sw.IsolateNode(context.Background(), Mesh{Interface: peer.hostIf, Mode: MeshModeDown}); !errors.Is(err, ErrNodeIsolated) {
		t.Fatalf("isolating with another mesh: %v", err)
	}
	// The connected /30 is covered by two blackhole /31s.
	r := routeTo(t, peer.peerIP)
	if r.Type != "blackhole" {
		t.Fatalf("route to the peer: %+v, want blackhole", r)
	}
	dialDirect(t, srv, false)

	// A new daemon finds the isolation in the state dir and releases it.
	sw2 := newTestSwitch(t, "", state)
	if !sw2.NodeIsolated() {
		t.Fatal("new Switch does not see the node isolation")
	}
	if err := sw2.ReleaseNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sw2.NodeIsolated() {
		t.Fatal("NodeIsolated after ReleaseNode")
	}
	if after := mainRoutes(t); !slices.Equal(before, after) {
		t.Fatalf("routes not restored:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(state, nodeStateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file left: %v", err)
	}
	dialDirect(t, srv, true)
}

func TestNodeIsolationLinkDown(t *testing.T) {
	requireBPF(t)
	state := t.TempDir()
	sw := newTestSwitch(t, "", state)
	peer := newPeerHost(t)
	srv := peer.serveTCP(t, "hello")

	// A static route via the peer and an IPv6 address: link-down removes
	// both, release must put them back.
	o := peer.peerIP.As4()
	ip(t, "route", "add", fmt.Sprintf("10.214.%d.%d/32", o[2], o[3]), "via", peer.peerIP.String(), "dev", peer.hostIf)
	ip(t, "-6", "addr", "add", fmt.Sprintf("fd00:213:%x:%x::1/64", o[2], o[3]), "dev", peer.hostIf, "nodad")
	beforeRoutes, beforeAddrs := linkRoutes(t, peer.hostIf), linkAddrs(t, peer.hostIf)

	if err := sw.IsolateNode(context.Background(), Mesh{Interface: peer.hostIf, Mode: MeshModeDown}); err != nil {
		t.Fatal(err)
	}
	if linkUp(t, peer.hostIf) {
		t.Fatal("mesh link still up")
	}
	if r := routeTo(t, peer.peerIP); r.Dev == peer.hostIf {
		t.Fatalf("route to the peer still via the mesh link: %+v", r)
	}

	if err := sw.ReleaseNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !linkUp(t, peer.hostIf) {
		t.Fatal("mesh link not up after release")
	}
	// The kernel re-adds its own routes (local, connected) asynchronously
	// after link-up; wait for the whole picture to settle.
	var afterRoutes, afterAddrs []string
	if !poll(func() bool {
		afterRoutes, afterAddrs = linkRoutes(t, peer.hostIf), linkAddrs(t, peer.hostIf)
		return slices.Equal(beforeRoutes, afterRoutes) && slices.Equal(beforeAddrs, afterAddrs)
	}) {
		t.Fatalf("not restored:\nroutes before %v\nroutes after  %v\naddrs before %v\naddrs after  %v", beforeRoutes, afterRoutes, beforeAddrs, afterAddrs)
	}
	dialDirect(t, srv, true)
}

// A link that was down before stays down after release.
func TestNodeIsolationKeepsDownLinkDown(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	peer := newPeerHost(t)
	ip(t, "link", "set", peer.hostIf, "down")
	if err := sw.IsolateNode(context.Background(), Mesh{Interface: peer.hostIf}); err != nil {
		t.Fatal(err)
	}
	if err := sw.ReleaseNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if linkUp(t, peer.hostIf) {
		t.Fatal("release set up a link that was down before isolation")
	}
}

// Without BPF (here: BPFFS is not a bpffs) New still returns a Switch:
// agent methods say ErrNotSupported, node isolation and Close work.
func TestNewWithoutBPF(t *testing.T) {
	sw, err := New(context.Background(), Options{BPFFS: t.TempDir(), StateDir: t.TempDir(), Logger: testLogger(t)})
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("New: %v, want ErrNotSupported", err)
	}
	if sw == nil {
		t.Fatal("New returned no Switch")
	}
	if err := sw.Isolate("a1", t.TempDir()); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Isolate: %v", err)
	}
	if _, _, err := sw.Reconcile(nil); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Reconcile: %v", err)
	}
	if _, ok := <-sw.Breaches(); ok {
		t.Error("Breaches channel open without BPF")
	}
	if sw.Isolated("a1") || sw.NodeIsolated() {
		t.Error("reports isolation without BPF")
	}
	if err := sw.ReleaseNode(context.Background()); err != nil {
		t.Errorf("ReleaseNode of a node that is not isolated: %v", err)
	}
	if err := sw.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A mesh CIDR wider than the interface's subnet: the connected /30 inside
// it would win over the CIDR's blackhole, so it is covered too. IPv6 too.
func TestNodeIsolationBlackholeCoversMoreSpecificRoutes(t *testing.T) {
	requireBPF(t)
	sw := newTestSwitch(t, "", "")
	peer := newPeerHost(t)
	o := peer.peerIP.As4()
	v6 := netip.MustParsePrefix(fmt.Sprintf("fd00:213:%x:%x::/64", o[2], o[3]))
	ip(t, "-6", "addr", "add", netip.PrefixFrom(v6.Addr().Next(), 64).String(), "dev", peer.hostIf, "nodad")
	v6peer := v6.Addr().Next().Next()
	before := mainRoutes(t)

	wide := netip.PrefixFrom(peer.prefix.Addr(), 24).Masked()
	v6wide := netip.PrefixFrom(v6.Addr(), 48).Masked()
	if err := sw.IsolateNode(context.Background(), Mesh{Interface: peer.hostIf, CIDRs: []string{wide.String(), v6wide.String()}}); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Addr{peer.peerIP, v6peer} {
		if r := routeTo(t, dst); r.Type != "blackhole" {
			t.Errorf("route to %s: %+v, want blackhole", dst, r)
		}
	}
	if err := sw.ReleaseNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := mainRoutes(t); !slices.Equal(before, after) {
		t.Fatalf("routes not restored:\nbefore %v\nafter  %v", before, after)
	}
}

// Two daemons on one host (--cgroup-name) keep their pins apart, and one
// that isolated nothing leaves nothing in bpffs when it closes.
func TestPinsNamespacedAndUnusedPinsRemoved(t *testing.T) {
	requireBPF(t)
	bpffs := newBPFFS(t)
	cg := newTestCgroup(t)
	a := newTestSwitch(t, bpffs, "")
	b, err := New(context.Background(), Options{BPFFS: bpffs, StateDir: t.TempDir(), Name: "other", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Isolate("agent-1", cg); err != nil {
		t.Fatal(err)
	}
	if b.Isolated("agent-1") {
		t.Fatal("a daemon named other sees the default daemon's isolation")
	}
	if err := b.Release("agent-1"); err != nil { // nothing of its own: a no-op
		t.Fatal(err)
	}
	if !a.Isolated("agent-1") {
		t.Fatal("a daemon named other released the default daemon's isolation")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bpffs, "other")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a daemon that isolated nothing left %s/other behind (err %v)", bpffs, err)
	}
	if !a.Isolated("agent-1") {
		t.Fatal("closing the other daemon's switch undid an isolation")
	}
	if _, err := New(context.Background(), Options{BPFFS: bpffs, Name: "../x"}); err == nil {
		t.Error("a name that is not one path element was accepted")
	}
}
