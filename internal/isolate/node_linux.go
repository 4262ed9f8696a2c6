//go:build linux

package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nodeStateFile is the node isolation state file in Options.StateDir.
const nodeStateFile = "isolate-node.json"

// meshRouteProtocol marks the blackhole routes this package adds ("proto
// 176" in `ip route`), so that deleting them can never delete anyone
// else's route of the same prefix.
const meshRouteProtocol = 176

// nodeState is what node isolation changed and what was there before. It is
// written before every change, so it may name routes that were never added
// (deleting those is a no-op).
type nodeState struct {
	Mode      string   `json:"mode"`
	Interface string   `json:"interface,omitempty"`
	CIDRs     []string `json:"cidrs,omitempty"`
	// Complete is set once every change was made; a partial isolation
	// (an error midway) is completed by the next IsolateNode.
	Complete bool `json:"complete"`

	// Blackhole mode: the routes added.
	Added []savedRoute `json:"added,omitempty"`

	// Down mode: the link before, and what a link-down removes that the
	// kernel does not put back on link-up.
	WasUp  bool         `json:"was_up,omitempty"`
	Addrs  []savedAddr  `json:"addrs,omitempty"`
	Routes []savedRoute `json:"routes,omitempty"`
}

type savedRoute struct {
	Dst      string `json:"dst,omitempty"` // empty: default route
	Gw       string `json:"gw,omitempty"`
	Src      string `json:"src,omitempty"`
	Family   int    `json:"family"`
	Table    int    `json:"table"`
	Type     int    `json:"type"`
	Protocol int    `json:"protocol"`
	Scope    int    `json:"scope"`
	Priority int    `json:"priority,omitempty"`
}

type savedAddr struct {
	Prefix string `json:"prefix"`
	Label  string `json:"label,omitempty"`
	Scope  int    `json:"scope"`
	Flags  int    `json:"flags,omitempty"`
}

func (st *nodeState) sameMesh(mode string, m Mesh) bool {
	return st.Mode == mode && st.Interface == m.Interface && slices.Equal(st.CIDRs, m.CIDRs)
}

// IsolateNode takes the node off the mesh (see the package documentation).
// Isolating an isolated node again with the same mesh is a no-op; with
// another mesh it is an error wrapping [ErrNodeIsolated].
func (s *Switch) IsolateNode(ctx context.Context, m Mesh) error {
	mode, cidrs, err := m.mode()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	if s.stateDir == "" {
		return errors.New("isolate node: Options.StateDir is not set")
	}
	st := &nodeState{Mode: mode, Interface: m.Interface, CIDRs: slices.Clone(m.CIDRs)}
	if s.node != nil {
		if !s.node.sameMesh(mode, m) {
			return fmt.Errorf("%w: %s mode on %q; release it first", ErrNodeIsolated, s.node.Mode, s.node.Interface)
		}
		if s.node.Complete {
			return nil
		}
		st = s.node // finish a partial isolation
	}
	switch mode {
	case MeshModeBlackhole:
		err = s.isolateBlackhole(ctx, st, cidrs)
	case MeshModeDown:
		err = s.isolateDown(st)
	}
	if err != nil {
		if len(st.Added) > 0 {
			// Partly isolated: the state file records what was done, so
			// ReleaseNode undoes it.
			s.node = st
		} else if rerr := os.Remove(s.nodeStatePath()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("isolate node (%s): %w", mode, err)
	}
	st.Complete = true
	if err := s.saveNodeState(st); err != nil {
		s.node = st
		return fmt.Errorf("isolate node (%s): %w", mode, err)
	}
	s.node = st
	s.log.Warn("node isolated from the mesh", "mode", mode, "interface", m.Interface, "cidrs", m.CIDRs)
	return nil
}

func (s *Switch) isolateBlackhole(ctx context.Context, st *nodeState, cidrs []netip.Prefix) error {
	existing, err := listRoutes(&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	// Targets: each CIDR, then every more specific route inside it, which
	// would otherwise still win over the CIDR's blackhole.
	var targets []netip.Prefix
	for _, c := range cidrs {
		targets = append(targets, c)
		for _, r := range existing {
			if int(r.Protocol) == meshRouteProtocol {
				continue
			}
			p, ok := routePrefix(r)
			if ok && p.Addr().BitLen() == c.Addr().BitLen() && p.Bits() > c.Bits() && c.Contains(p.Addr()) {
				targets = append(targets, p)
			}
		}
	}
	ours := make(map[netip.Prefix]bool)
	for _, sr := range st.Added {
		if p, err := netip.ParsePrefix(sr.Dst); err == nil {
			ours[p] = true
		}
	}
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.addBlackhole(st, t, ours); err != nil {
			return err
		}
	}
	return nil
}

// addBlackhole adds a blackhole route for p, recording it first. When p
// already has an IPv4 route (say the connected route of the mesh subnet),
// it covers p with its two halves instead, which are more specific and win.
func (s *Switch) addBlackhole(st *nodeState, p netip.Prefix, ours map[netip.Prefix]bool) error {
	if ours[p] {
		return nil
	}
	r := blackholeRoute(p)
	st.Added = append(st.Added, saveRoute(*r))
	if err := s.saveNodeState(st); err != nil {
		st.Added = st.Added[:len(st.Added)-1]
		return err
	}
	err := netlink.RouteAdd(r)
	if err == nil {
		ours[p] = true
		return nil
	}
	st.Added = st.Added[:len(st.Added)-1]
	if serr := s.saveNodeState(st); serr != nil {
		return errors.Join(err, serr)
	}
	if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("blackhole %s: %w", p, err)
	}
	if p.Bits() == p.Addr().BitLen() {
		s.log.Warn("isolate node: a host route cannot be overridden in the main table; it stays reachable", "route", p)
		return nil
	}
	lo, hi := splitPrefix(p)
	if err := s.addBlackhole(st, lo, ours); err != nil {
		return err
	}
	return s.addBlackhole(st, hi, ours)
}

func (s *Switch) isolateDown(st *nodeState) error {
	l, err := netlink.LinkByName(st.Interface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", st.Interface, err)
	}
	idx := l.Attrs().Index
	st.WasUp = l.Attrs().Flags&net.FlagUp != 0

	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("addresses of %q: %w", st.Interface, err)
	}
	for _, a := range addrs {
		// IPv6 drops its addresses on link-down (keep_addr_on_down=0);
		// link-local and autoconfigured ones come back by themselves.
		if a.IPNet == nil || a.IP.IsLinkLocalUnicast() || (a.IP.To4() == nil && a.Flags&unix.IFA_F_PERMANENT == 0) {
			continue
		}
		st.Addrs = append(st.Addrs, savedAddr{Prefix: a.IPNet.String(), Label: a.Label, Scope: a.Scope, Flags: a.Flags & settableAddrFlags})
	}

	routes, err := listRoutes(&netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, r := range routes {
		// The kernel recreates its own routes; the local table follows
		// the addresses; router advertisements and redirects are learnt.
		switch {
		case r.Protocol == unix.RTPROT_KERNEL, r.Protocol == unix.RTPROT_RA, r.Protocol == unix.RTPROT_REDIRECT,
			r.Table == unix.RT_TABLE_LOCAL, len(r.MultiPath) > 0:
			continue
		}
		st.Routes = append(st.Routes, saveRoute(r))
	}

	if err := s.saveNodeState(st); err != nil {
		return err
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("set %q down: %w", st.Interface, err)
	}
	return nil
}

// ReleaseNode undoes IsolateNode, also one done by a previous daemon:
// blackhole routes are deleted; a link that was up is set up with the
// addresses and routes it had. Releasing a node that is not isolated is a
// no-op. On error the state is kept so that ReleaseNode can be retried.
func (s *Switch) ReleaseNode(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	st := s.node
	if st == nil {
		return nil
	}
	var errs []error
	switch st.Mode {
	case MeshModeBlackhole:
		for _, sr := range st.Added {
			r, err := sr.route(0)
			if err == nil {
				err = netlink.RouteDel(r)
			}
			if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete blackhole %s: %w", sr.Dst, err))
			}
		}
	case MeshModeDown:
		errs = append(errs, restoreLink(s.log, st))
	default:
		errs = append(errs, fmt.Errorf("unknown mode %q in %s", st.Mode, s.nodeStatePath()))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release node: %w", err)
	}
	if err := os.Remove(s.nodeStatePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release node: %w", err)
	}
	s.node = nil
	s.log.Warn("node released to the mesh", "mode", st.Mode, "interface", st.Interface)
	return nil
}

func restoreLink(log *slog.Logger, st *nodeState) error {
	if !st.WasUp {
		return nil // it was down before: nothing was changed
	}
	l, err := netlink.LinkByName(st.Interface)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		// The link was deleted meanwhile: there is nothing to restore.
		log.Warn("release node: the mesh interface is gone; nothing to restore", "interface", st.Interface)
		return nil
	}
	if err != nil {
		return fmt.Errorf("interface %q: %w", st.Interface, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %q up: %w", st.Interface, err)
	}
	var errs []error
	for _, sa := range st.Addrs {
		ipn, err := netlink.ParseIPNet(sa.Prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a := &netlink.Addr{IPNet: ipn, Label: sa.Label, Scope: sa.Scope, Flags: sa.Flags & settableAddrFlags}
		if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore address %s: %w", sa.Prefix, err))
		}
	}
	// A route via a gateway needs the route to the gateway first: retry
	// the failures while each pass makes progress.
	pending := st.Routes
	for len(pending) > 0 {
		var failed []savedRoute
		var lastErr error
		for _, sr := range pending {
			r, err := sr.route(l.Attrs().Index)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := netlink.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
				failed = append(failed, sr)
				lastErr = fmt.Errorf("restore route %s: %w", sr.Dst, err)
			}
		}
		if len(failed) == len(pending) {
			errs = append(errs, lastErr)
			break
		}
		pending = failed
	}
	return errors.Join(errs...)
}

// NodeIsolated reports whether the node is isolated from the mesh (by this
// Switch or by a previous daemon whose state file is still there).
func (s *Switch) NodeIsolated() bool {
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	return s.node != nil
}

func (s *Switch) nodeStatePath() string { return filepath.Join(s.stateDir, nodeStateFile) }

func (s *Switch) loadNodeState() error {
	if s.stateDir == "" {
		return nil
	}
	b, err := os.ReadFile(s.nodeStatePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node isolation state: %w", err)
	}
	var st nodeState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("node isolation state %s: %w", s.nodeStatePath(), err)
	}
	s.node = &st
	s.log.Warn("node is isolated from the mesh (state left by a previous run)", "mode", st.Mode, "interface", st.Interface)
	return nil
}

// saveNodeState writes st durably: temporary file, fsync, rename, fsync of
// the directory.
func (s *Switch) saveNodeState(st *nodeState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.stateDir, nodeStateFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), s.nodeStatePath()); err != nil {
		return err
	}
	d, err := os.Open(s.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// blackholeRoute is the route that drops traffic to p. IPv4 prefers the
// lowest metric among routes of one prefix but the connected route already
// has metric 0, hence the split on EEXIST in addBlackhole. IPv6 defaults a
// metric of 0 to 1024, behind connected routes (256): metric 1 wins.
func blackholeRoute(p netip.Prefix) *netlink.Route {
	r := &netlink.Route{
		Dst:      prefixIPNet(p),
		Family:   unix.AF_INET,
		Table:    unix.RT_TABLE_MAIN,
		Type:     unix.RTN_BLACKHOLE,
		Protocol: meshRouteProtocol,
	}
	if p.Addr().Is6() {
		r.Family = unix.AF_INET6
		r.Priority = 1
	}
	return r
}

func saveRoute(r netlink.Route) savedRoute {
	sr := savedRoute{
		Family:   r.Family,
		Table:    r.Table,
		Type:     r.Type,
		Protocol: int(r.Protocol),
		Scope:    int(r.Scope),
		Priority: r.Priority,
	}
	if p, ok := routePrefix(r); ok {
		sr.Dst = p.String()
	}
	if r.Gw != nil {
		sr.Gw = r.Gw.String()
	}
	if r.Src != nil {
		sr.Src = r.Src.String()
	}
	return sr
}

// route rebuilds the route on link ifindex (0 for routes without a device).
func (sr savedRoute) route(ifindex int) (*netlink.Route, error) {
	r := &netlink.Route{
		LinkIndex: ifindex,
		Family:    sr.Family,
		Table:     sr.Table,
		Type:      sr.Type,
		Protocol:  netlink.RouteProtocol(sr.Protocol),
		Scope:     netlink.Scope(sr.Scope),
		Priority:  sr.Priority,
	}
	if sr.Dst != "" {
		p, err := netip.ParsePrefix(sr.Dst)
		if err != nil {
			return nil, fmt.Errorf("saved route %q: %w", sr.Dst, err)
		}
		r.Dst = prefixIPNet(p)
	}
	if sr.Gw != "" {
		r.Gw = net.ParseIP(sr.Gw)
	}
	if sr.Src != "" {
		r.Src = net.ParseIP(sr.Src)
	}
	if r.Dst == nil && r.Gw == nil && r.Src == nil {
		// A default route without a gateway (a device route).
		bits := 32
		if sr.Family == unix.AF_INET6 {
			bits = 128
		}
		r.Dst = &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
	}
	return r, nil
}

func routePrefix(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := r.Dst.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	if bits == 32 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// splitPrefix returns the two halves of p (p.Bits() < address length).
func splitPrefix(p netip.Prefix) (lo, hi netip.Prefix) {
	bits := p.Bits() + 1
	lo = netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	b[p.Bits()/8] |= 0x80 >> (p.Bits() % 8)
	a, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(a, bits)
}

// settableAddrFlags are the address flags user space may set.
const settableAddrFlags = unix.IFA_F_NODAD | unix.IFA_F_HOMEADDRESS | unix.IFA_F_MANAGETEMPADDR |
	unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_MCAUTOJOIN

func listRoutes(filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, mask)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return routes, nil
}

// retryDump repeats a netlink dump the kernel interrupted (the table
// changed meanwhile), so that what is recorded is consistent.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		if out, err = dump(); err == nil {
			return out, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, err
}
