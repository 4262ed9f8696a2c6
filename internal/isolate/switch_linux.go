//go:build linux

package isolate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// linkKind names one of the links the Switch may hold for an agent; the
// name is also the pin's file name.
type linkKind int

const (
	kindIngress linkKind = iota // isolation, ingress
	kindEgress                  // isolation, egress
	kindPolicy                  // egress policy
	numKinds
)

func (k linkKind) String() string {
	return [...]string{"ingress", "egress", "policy"}[k]
}

// mapsPinDir is the pin directory of the maps, beside the directory of
// agent pins.
const mapsPinDir = "isolate_maps"

// breachBuffer is how many breaches wait for the consumer before new ones
// are dropped (the counters stay exact).
const breachBuffer = 256

// agentState is what the Switch holds for one agent.
type agentState struct {
	cgroupPath string
	cgroupID   uint64
	links      [numKinds]link.Link
}

func (a *agentState) empty() bool {
	for _, l := range a.links {
		if l != nil {
			return false
		}
	}
	return true
}

// Switch is the Kill Switch of one node. It is safe for concurrent use.
type Switch struct {
	log      *slog.Logger
	pinRoot  string
	stateDir string

	bpfErr     error // why BPF cannot be used; nil when it can
	objs       isolateObjects
	breaches   chan Breach
	reader     *ringbuf.Reader
	readerDone chan struct{}

	mu       sync.Mutex
	agents   map[string]*agentState
	byCgroup map[uint64]string
	closed   bool
	lost     uint64 // breaches dropped because the channel was full

	nodeMu sync.Mutex
	node   *nodeState
}

// New returns the node's Switch. It mounts bpffs at /sys/fs/bpf when
// Options.BPFFS is the default and nothing is mounted there, loads the BPF
// programs, and reads the node isolation state left by a previous daemon.
//
// When BPF cannot be used it returns a usable Switch (node isolation works,
// agent methods return ErrNotSupported) and an error wrapping
// [ErrNotSupported] that says why.
func New(ctx context.Context, opts Options) (*Switch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BPFFS == "" {
		opts.BPFFS = DefaultBPFFS
	}
	if opts.Name == "" {
		opts.Name = "resilienced"
	}
	if opts.Name != filepath.Base(opts.Name) || opts.Name == "." || opts.Name == ".." {
		return nil, fmt.Errorf("isolate: name %q is not one path element", opts.Name)
	}
	s := &Switch{
		log:      opts.Logger,
		pinRoot:  filepath.Join(opts.BPFFS, opts.Name, "isolate"),
		stateDir: opts.StateDir,
		breaches: make(chan Breach, breachBuffer),
		agents:   make(map[string]*agentState),
		byCgroup: make(map[uint64]string),
	}
	if err := s.loadNodeState(); err != nil {
		return nil, err
	}
	if err := s.initBPF(opts.BPFFS); err != nil {
		s.bpfErr = err
		close(s.breaches)
		return s, err
	}
	s.readerDone = make(chan struct{})
	go s.readBreaches()
	return s, nil
}

func (s *Switch) initBPF(bpffs string) error {
	if err := ensureBPFFS(bpffs); err != nil {
		return fmt.Errorf("%w: bpffs: %w", ErrNotSupported, err)
	}
	mapsDir := filepath.Join(filepath.Dir(s.pinRoot), mapsPinDir)
	if err := os.MkdirAll(mapsDir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		s.log.Debug("isolate: cannot raise RLIMIT_MEMLOCK", "err", err)
	}
	spec, err := loadIsolate()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapsDir}}
	err = spec.LoadAndAssign(&s.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// A different daemon version pinned maps of another layout. Links
		// it left keep their old maps; Reconcile moves them to ours.
		s.log.Warn("isolate: pinned maps have another layout; recreating them (counters and allowlists of surviving agents are lost)", "dir", mapsDir, "err", err)
		for _, name := range []string{isolateMapIsolateDrops, isolateMapIsolatePolicy} {
			_ = os.Remove(filepath.Join(mapsDir, name))
		}
		err = spec.LoadAndAssign(&s.objs, opts)
	}
	if err != nil {
		return fmt.Errorf("%w: load programs: %w", ErrNotSupported, err)
	}
	rd, err := ringbuf.NewReader(s.objs.IsolateBreaches)
	if err != nil {
		s.objs.Close()
		return fmt.Errorf("%w: breach ring buffer: %w", ErrNotSupported, err)
	}
	s.reader = rd
	return nil
}

// ensureBPFFS checks that path is a bpffs mount and mounts it at the default
// path when nothing is there, as systemd would.
func ensureBPFFS(path string) error {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	if err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if path != DefaultBPFFS {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s is not a bpffs mount", path)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("bpf", path, "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", path, err)
	}
	return nil
}

// usable reports why agent methods cannot run; s.mu must be held.
func (s *Switch) usable() error {
	if s.bpfErr != nil {
		return s.bpfErr
	}
	if s.closed {
		return errors.New("isolate: switch closed")
	}
	return nil
}

// Isolate cuts the agent off the network: everything its cgroup sends or
// receives is dropped until Release, also if the daemon dies meanwhile.
// Isolating an isolated agent again is a no-op.
func (s *Switch) Isolate(agentID, cgroupPath string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	a, err := s.agentFor(agentID, cgroupPath)
	if err != nil {
		return err
	}
	// Partial failure leaves what was attached in place: half cut off is
	// closer to the request than not at all. Release removes it.
	for _, k := range []linkKind{kindIngress, kindEgress} {
		if err := s.ensureLink(agentID, a, k); err != nil {
			return fmt.Errorf("isolate agent %s: %w", agentID, err)
		}
	}
	s.log.Info("agent isolated", "agent", agentID, "cgroup", cgroupPath)
	return nil
}

// Release undoes Isolate: the isolation links are detached and unpinned. An
// egress policy stays. Releasing an agent that is not isolated is a no-op;
// it also works on pins a previous daemon left.
func (s *Switch) Release(agentID string) error {
	if err := validAgentID(agentID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	a := s.agents[agentID]
	var errs []error
	for _, k := range []linkKind{kindIngress, kindEgress} {
		if _, err := s.removeLink(agentID, a, k); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release agent %s: %w", agentID, err)
	}
	s.forgetIfEmpty(agentID, a)
	s.log.Info("agent released", "agent", agentID)
	return nil
}

// Isolated reports whether the agent's isolation links are pinned.
func (s *Switch) Isolated(agentID string) bool {
	if validAgentID(agentID) != nil || s.bpfErr != nil {
		return false
	}
	for _, k := range []linkKind{kindIngress, kindEgress} {
		if _, err := os.Stat(s.pinPath(agentID, k)); err != nil {
			return false
		}
	}
	return true
}

// Reconcile brings the pins in line with the agents that exist, given as
// agent id → cgroup path; the daemon calls it at start. A pinned agent that
// is live on the same cgroup keeps its links (switched to this daemon's
// programs, atomically); pins of agents that are not live, or on another
// cgroup, are removed, as are counters and allowlist entries of cgroups that
// no live agent has. kept and removed are sorted agent ids.
func (s *Switch) Reconcile(live map[string]string) (kept, removed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, nil, err
	}

	ids := make(map[string]bool)
	for id := range s.agents {
		ids[id] = true
	}
	entries, err := os.ReadDir(s.pinRoot)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if id, err := agentIDFromPin(e.Name()); err == nil {
			ids[id] = true
		} else {
			s.log.Warn("reconcile: ignoring a pin directory that no agent id names", "dir", filepath.Join(s.pinRoot, e.Name()))
		}
	}

	var errs []error
	liveCgroups := make(map[uint64]bool)
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		path, ok := live[id]
		var cgid uint64
		if ok {
			if cgid, err = cgroupID(path); err != nil {
				s.log.Warn("reconcile: live agent's cgroup is unusable; removing its pins", "agent", id, "cgroup", path, "err", err)
				ok = false
			}
		}
		if a := s.agents[id]; a != nil && (!ok || a.cgroupID != cgid) {
			if err := s.removeAgent(id, a); err != nil {
				errs = append(errs, err)
			}
		}
		if !ok {
			if err := s.removeAgent(id, nil); err != nil {
				errs = append(errs, err)
			}
			removed = append(removed, id)
			continue
		}

		a := s.agents[id]
		if a == nil {
			a = &agentState{cgroupPath: path, cgroupID: cgid}
		}
		for k := range numKinds {
			if a.links[k] == nil {
				if err := s.adoptPin(id, a, k, true); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if a.empty() {
			_ = os.Remove(s.agentDir(id))
			removed = append(removed, id)
			continue
		}
		s.agents[id] = a
		s.byCgroup[cgid] = id
		liveCgroups[cgid] = true
		kept = append(kept, id)
	}

	// Counters and allowlists of cgroups no live agent has are garbage.
	for id, path := range live {
		if cgid, err := cgroupID(path); err == nil {
			liveCgroups[cgid] = true
		} else {
			s.log.Debug("reconcile: live agent's cgroup unusable", "agent", id, "err", err)
		}
	}
	if err := s.collectGarbage(liveCgroups); err != nil {
		errs = append(errs, err)
	}
	if len(kept)+len(removed) > 0 {
		s.log.Info("isolation reconciled", "kept", kept, "removed", removed)
	}
	return kept, removed, errors.Join(errs...)
}

// ApplyPolicy sets the agent's egress policy, replacing any previous one.
// Egress "allow" removes the policy.
func (s *Switch) ApplyPolicy(agentID, cgroupPath string, p Policy) error {
	p, err := ParsePolicy(p.Egress, p.Allow)
	if err != nil {
		return err
	}
	if p.Egress == EgressAllow {
		return s.RemovePolicy(agentID)
	}
	rules, err := parseRules(p.Allow)
	if err != nil {
		return err
	}
	entries, err := compileRules(rules)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	a, err := s.agentFor(agentID, cgroupPath)
	if err != nil {
		return err
	}
	// The allowlist goes in before the program so that allowed traffic is
	// never dropped while the policy is being applied.
	if err := s.writePolicy(a.cgroupID, entries); err != nil {
		return fmt.Errorf("apply policy to agent %s: %w", agentID, err)
	}
	if err := s.ensureLink(agentID, a, kindPolicy); err != nil {
		return fmt.Errorf("apply policy to agent %s: %w", agentID, err)
	}
	s.log.Debug("egress policy applied", "agent", agentID, "allow", p.Allow)
	return nil
}

// RemovePolicy detaches and unpins the agent's egress policy and deletes its
// allowlist. Once an agent has neither policy nor isolation its counters are
// deleted too: read Drops first. Removing a missing policy is a no-op.
func (s *Switch) RemovePolicy(agentID string) error {
	if err := validAgentID(agentID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	a := s.agents[agentID]
	cgid, err := s.removeLink(agentID, a, kindPolicy)
	if err != nil {
		return fmt.Errorf("remove policy of agent %s: %w", agentID, err)
	}
	if a != nil {
		cgid = a.cgroupID
	}
	if cgid != 0 {
		if err := s.deletePolicy(cgid); err != nil {
			return fmt.Errorf("remove policy of agent %s: %w", agentID, err)
		}
	}
	s.forgetIfEmpty(agentID, a)
	return nil
}

// Drops returns the agent's drop counters.
func (s *Switch) Drops(agentID string) (DropStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return DropStats{}, err
	}
	a := s.agents[agentID]
	if a == nil {
		return DropStats{}, fmt.Errorf("drops of agent %s: %w", agentID, ErrUnknownAgent)
	}
	var v isolateDropStats
	if err := s.objs.IsolateDrops.Lookup(a.cgroupID, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
		return DropStats{}, nil
	} else if err != nil {
		return DropStats{}, fmt.Errorf("drops of agent %s: %w", agentID, err)
	}
	st := DropStats{Packets: v.PolicyPackets, IsolatedPackets: v.IsolatedPackets}
	if v.PolicyPackets > 0 {
		st.LastDst = formatDst(v.LastFamily, v.LastAddr, v.LastPort)
		st.LastProto = protoName(v.LastProto)
	}
	return st, nil
}

// Breaches returns the channel of breach reports: at most one per agent per
// 100 ms while its policy drops packets. Reports the consumer does not take
// in time are dropped (the counters stay exact). The channel is closed by
// Close, and is closed from the start when BPF cannot be used.
func (s *Switch) Breaches() <-chan Breach {
	return s.breaches
}

// Close releases the Switch's file descriptors. It does not unpin anything:
// isolated agents stay isolated and policies stay enforced after the daemon
// exits, until a new Switch releases them.
func (s *Switch) Close() error {
	s.mu.Lock()
	if s.closed || s.bpfErr != nil {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for _, a := range s.agents {
		for k, l := range a.links {
			if l != nil {
				errs = append(errs, l.Close())
				a.links[k] = nil
			}
		}
	}
	s.agents = nil
	s.mu.Unlock()

	errs = append(errs, s.reader.Close())
	<-s.readerDone
	errs = append(errs, s.objs.Close())
	// With no isolation pinned, the pinned maps serve no program once
	// this daemon is gone: unpin them, so that a daemon that isolated
	// nothing leaves nothing in bpffs (a test run's daemons would
	// otherwise leave a directory each).
	if ents, err := os.ReadDir(s.pinRoot); (err == nil && len(ents) == 0) || errors.Is(err, fs.ErrNotExist) {
		if err := os.RemoveAll(filepath.Dir(s.pinRoot)); err != nil {
			s.log.Debug("isolate: removing the unused pins", "err", err)
		}
	}
	return errors.Join(errs...)
}

func (s *Switch) agentDir(agentID string) string { return filepath.Join(s.pinRoot, pinName(agentID)) }

func (s *Switch) pinPath(agentID string, k linkKind) string {
	return filepath.Join(s.agentDir(agentID), k.String())
}

func (s *Switch) program(k linkKind) (*ebpf.Program, ebpf.AttachType) {
	switch k {
	case kindIngress:
		return s.objs.IsolateIngress, ebpf.AttachCGroupInetIngress
	case kindEgress:
		return s.objs.IsolateEgress, ebpf.AttachCGroupInetEgress
	default:
		return s.objs.PolicyEgress, ebpf.AttachCGroupInetEgress
	}
}

// agentFor returns the agent's state for cgroupPath, adopting pins a
// previous daemon left. An agent id already attached to another live cgroup
// is an error; one whose old cgroup is gone starts afresh. s.mu must be held.
func (s *Switch) agentFor(agentID, cgroupPath string) (*agentState, error) {
	if err := validAgentID(agentID); err != nil {
		return nil, err
	}
	cgid, err := cgroupID(cgroupPath)
	if err != nil {
		return nil, err
	}
	a := s.agents[agentID]
	if a != nil && a.cgroupID != cgid {
		for _, l := range a.links {
			if l == nil {
				continue
			}
			if old, err := linkCgroupID(l); err != nil || old != 0 {
				return nil, fmt.Errorf("%w: agent %s is attached to %s; release it first", ErrCgroupMismatch, agentID, a.cgroupPath)
			}
		}
		if err := s.removeAgent(agentID, a); err != nil {
			return nil, err
		}
		a = nil
	}
	if a == nil {
		a = &agentState{cgroupPath: cgroupPath, cgroupID: cgid}
	}
	for k := range numKinds {
		if a.links[k] == nil {
			if err := s.adoptPin(agentID, a, k, false); err != nil {
				return nil, err
			}
		}
	}
	s.agents[agentID] = a
	s.byCgroup[cgid] = agentID
	return a, nil
}

// adoptPin takes over the pinned link of kind k, if there is one on a's
// cgroup, and switches it to this Switch's program. A pin on a cgroup that
// is gone is removed; one on another live cgroup is removed when force is
// set (Reconcile knows the agent's cgroup) and an error otherwise.
func (s *Switch) adoptPin(agentID string, a *agentState, k linkKind, force bool) error {
	path := s.pinPath(agentID, k)
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load pin %s: %w", path, err)
	}
	cgid, err := linkCgroupID(l)
	switch {
	case err == nil && cgid == a.cgroupID:
		prog, _ := s.program(k)
		if err := l.Update(prog); err != nil {
			l.Close()
			return fmt.Errorf("update pinned link %s: %w", path, err)
		}
		a.links[k] = l
		return nil
	case err == nil && cgid != 0 && !force:
		l.Close()
		return fmt.Errorf("%w: agent %s has a %s link pinned on cgroup id %d, not %s; release it first", ErrCgroupMismatch, agentID, k, cgid, a.cgroupPath)
	}
	s.log.Info("removing stale pin", "agent", agentID, "pin", path, "cgroup_id", cgid)
	return s.dropLink(path, l)
}

// ensureLink attaches and pins the link of kind k on a's cgroup unless a
// already holds it. s.mu must be held.
func (s *Switch) ensureLink(agentID string, a *agentState, k linkKind) error {
	if a.links[k] != nil {
		return nil
	}
	prog, attach := s.program(k)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: a.cgroupPath, Attach: attach, Program: prog})
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", k, a.cgroupPath, err)
	}
	if err := os.MkdirAll(s.agentDir(agentID), 0o700); err != nil {
		l.Close()
		return err
	}
	if err := l.Pin(s.pinPath(agentID, k)); err != nil {
		l.Close()
		if errors.Is(err, link.ErrNotSupported) {
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return fmt.Errorf("pin %s link: %w", k, err)
	}
	a.links[k] = l
	return nil
}

// removeLink detaches, unpins and closes the agent's link of kind k, held
// by a or only pinned. It returns the cgroup id the link was on (0 if
// unknown or none). s.mu must be held.
func (s *Switch) removeLink(agentID string, a *agentState, k linkKind) (uint64, error) {
	path := s.pinPath(agentID, k)
	var l link.Link
	if a != nil && a.links[k] != nil {
		l, a.links[k] = a.links[k], nil
	} else {
		var err error
		l, err = link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("load pin %s: %w", path, err)
		}
	}
	cgid, _ := linkCgroupID(l)
	if err := s.dropLink(path, l); err != nil {
		return cgid, err
	}
	_ = os.Remove(s.agentDir(agentID)) // only when empty
	return cgid, nil
}

// dropLink detaches l now (whoever else holds it), removes its pin and
// closes it.
func (s *Switch) dropLink(path string, l link.Link) error {
	if err := l.Detach(); err != nil {
		// Closing the last reference detaches as well.
		s.log.Debug("isolate: detach link", "pin", path, "err", err)
	}
	var errs []error
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	errs = append(errs, l.Close())
	return errors.Join(errs...)
}

// removeAgent removes every link of the agent (held in a, if not nil, or
// pinned) with its counters and allowlist. s.mu must be held.
func (s *Switch) removeAgent(agentID string, a *agentState) error {
	cgroups := make(map[uint64]bool)
	if a != nil {
		cgroups[a.cgroupID] = true
	}
	var errs []error
	for k := range numKinds {
		cgid, err := s.removeLink(agentID, a, k)
		if err != nil {
			errs = append(errs, err)
		}
		if cgid != 0 {
			cgroups[cgid] = true
		}
	}
	_ = os.Remove(s.agentDir(agentID))
	for cgid := range cgroups {
		errs = append(errs, s.deleteCounters(cgid), s.deletePolicy(cgid))
		if s.byCgroup[cgid] == agentID {
			delete(s.byCgroup, cgid)
		}
	}
	if s.agents[agentID] == a {
		delete(s.agents, agentID)
	}
	return errors.Join(errs...)
}

// forgetIfEmpty drops the state of an agent that holds no links any more,
// with its counters. s.mu must be held.
func (s *Switch) forgetIfEmpty(agentID string, a *agentState) {
	if a == nil || !a.empty() {
		return
	}
	if err := s.deleteCounters(a.cgroupID); err != nil {
		s.log.Warn("isolate: delete counters", "agent", agentID, "err", err)
	}
	delete(s.agents, agentID)
	if s.byCgroup[a.cgroupID] == agentID {
		delete(s.byCgroup, a.cgroupID)
	}
}

func (s *Switch) deleteCounters(cgid uint64) error {
	if err := s.objs.IsolateDrops.Delete(cgid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete counters of cgroup %d: %w", cgid, err)
	}
	return nil
}

// policyKey is the LPM trie key of prefix p for cgroup cgid.
func policyKey(cgid uint64, p netip.Prefix) isolatePolicyKey {
	k := isolatePolicyKey{
		Prefixlen: 96 + uint32(p.Bits()),
		CgroupLo:  uint32(cgid),
		CgroupHi:  uint32(cgid >> 32),
	}
	if a := p.Addr(); a.Is4() {
		k.Family = 4
		b := a.As4()
		copy(k.Addr[:], b[:])
	} else {
		k.Family = 6
		k.Addr = a.As16()
	}
	return k
}

func policyValue(e allowEntry) isolatePolicyPorts {
	var v isolatePolicyPorts
	if e.anyPort {
		v.AnyPort = 1
		return v
	}
	v.Nports = uint32(copy(v.Ports[:], e.ports))
	return v
}

// writePolicy makes the allowlist of cgroup cgid exactly entries: new and
// changed entries first, then stale ones are deleted.
func (s *Switch) writePolicy(cgid uint64, entries map[netip.Prefix]allowEntry) error {
	want := make(map[isolatePolicyKey]bool, len(entries))
	for p, e := range entries {
		k := policyKey(cgid, p)
		want[k] = true
		if err := s.objs.IsolatePolicy.Put(k, policyValue(e)); err != nil {
			return fmt.Errorf("allowlist %s: %w", p, err)
		}
	}
	return s.deletePolicyWhere(func(k isolatePolicyKey) bool {
		return keyCgroup(k) == cgid && !want[k]
	})
}

func (s *Switch) deletePolicy(cgid uint64) error {
	return s.deletePolicyWhere(func(k isolatePolicyKey) bool { return keyCgroup(k) == cgid })
}

func keyCgroup(k isolatePolicyKey) uint64 { return uint64(k.CgroupHi)<<32 | uint64(k.CgroupLo) }

func (s *Switch) deletePolicyWhere(match func(isolatePolicyKey) bool) error {
	var (
		k    isolatePolicyKey
		v    isolatePolicyPorts
		dead []isolatePolicyKey
	)
	it := s.objs.IsolatePolicy.Iterate()
	for it.Next(&k, &v) {
		if match(k) {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate allowlists: %w", err)
	}
	for _, k := range dead {
		if err := s.objs.IsolatePolicy.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete allowlist entry: %w", err)
		}
	}
	return nil
}

// collectGarbage deletes counters and allowlist entries of cgroups not in
// keep.
func (s *Switch) collectGarbage(keep map[uint64]bool) error {
	var (
		cgid  uint64
		stats isolateDropStats
		dead  []uint64
	)
	it := s.objs.IsolateDrops.Iterate()
	for it.Next(&cgid, &stats) {
		if !keep[cgid] {
			dead = append(dead, cgid)
		}
	}
	errs := []error{it.Err()}
	for _, id := range dead {
		errs = append(errs, s.deleteCounters(id))
	}
	errs = append(errs, s.deletePolicyWhere(func(k isolatePolicyKey) bool { return !keep[keyCgroup(k)] }))
	return errors.Join(errs...)
}

func (s *Switch) readBreaches() {
	defer close(s.readerDone)
	defer close(s.breaches)
	var ev isolateBreachEvent
	for {
		rec, err := s.reader.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("isolate: read breach", "err", err)
			continue
		}
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
			s.log.Warn("isolate: decode breach", "err", err)
			continue
		}
		b := Breach{
			CgroupID: ev.CgroupId,
			Dst:      formatDst(ev.Family, ev.Addr, ev.Port),
			Proto:    protoName(ev.Proto),
			Packets:  ev.PolicyPackets,
			Time:     time.Now(),
		}
		s.mu.Lock()
		b.AgentID = s.byCgroup[ev.CgroupId]
		s.mu.Unlock()
		select {
		case s.breaches <- b:
		default:
			s.mu.Lock()
			s.lost++
			if s.lost&(s.lost-1) == 0 { // log at powers of two
				s.log.Warn("isolate: breach reports dropped; the consumer is slow", "dropped", s.lost)
			}
			s.mu.Unlock()
		}
	}
}

// cgroupID returns the id of the cgroup v2 directory path (its inode
// number), the id bpf_skb_cgroup_id reports for sockets created in it.
func cgroupID(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup %s: not a cgroup v2 directory", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// linkCgroupID returns the cgroup a cgroup link is attached to; 0 once the
// cgroup has been released.
func linkCgroupID(l link.Link) (uint64, error) {
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	cg := info.Cgroup()
	if cg == nil {
		return 0, fmt.Errorf("link %d is not a cgroup link", info.ID)
	}
	return cg.CgroupId, nil
}
