package cgroup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// limitControllers are the controllers whose limits an agent can get.
var limitControllers = []string{"memory", "pids", "cpu"}

// Manager owns the agents subtree. It is safe for concurrent use.
type Manager struct {
	log       *slog.Logger
	name      string
	mode      Mode
	notes     []string
	delegated bool
	own, leaf string            // a delegated root given in Options.Root, and its processes' leaf
	root      string            // v2 directory holding agents/
	v2        []string          // controllers enabled from the top down to agents/
	v1        map[string]string // controller → v1 directory holding agents/
	named     []string          // directories named Name that Close removes last
	hasKill   bool              // cgroup.kill exists (kernel >= 5.14)
	hasFreeze bool              // cgroup.freeze exists (kernel >= 5.2)
	cpuStat   bool              // cpu.stat usage_usec exists without the cpu controller

	// Test hooks: take the fallback paths an older kernel would.
	signalKill bool // kill by freeze + SIGKILL instead of cgroup.kill
	pollOnly   bool // wait by polling cgroup.events instead of inotify

	mu   sync.Mutex
	live map[string]*Cgroup // by "pool/agent"
	// enabled are the pool directories whose cgroup.subtree_control
	// already enables the cgroup2 controllers: read once, not per agent.
	enabled map[string]bool
	oom     *oomWatch // made by the first NotifyOOM
	left    int       // cgroups left in place for the next instance (Cgroup.Leave)
	closed  bool
}

// sysEnv is what Open reads from the host; tests substitute it.
type sysEnv struct {
	mountinfo  func() ([]byte, error)
	selfCgroup func() ([]byte, error)
	getenv     func(string) string
}

func hostEnv() sysEnv {
	return sysEnv{
		mountinfo:  func() ([]byte, error) { return os.ReadFile("/proc/self/mountinfo") },
		selfCgroup: func() ([]byte, error) { return os.ReadFile("/proc/self/cgroup") },
		getenv:     os.Getenv,
	}
}

// Open finds the cgroup hierarchies, sets up the agents subtree and returns
// its Manager. Missing or unwritable cgroups are not an error: the Manager
// is then in ModeNone and Notes say why. Errors are for real I/O failures.
func Open(opts Options) (*Manager, error) {
	return open(opts, hostEnv())
}

func open(opts Options, env sysEnv) (*Manager, error) {
	name := cmp.Or(opts.Name, DefaultName)
	if err := validName(name); err != nil {
		return nil, err
	}
	m := &Manager{
		log:  cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		name: name,
		mode: ModeNone,
		v1:   map[string]string{},
		live: map[string]*Cgroup{},
	}
	mi, err := env.mountinfo()
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	mounts, err := parseMountinfo(mi)
	if err != nil {
		return nil, fmt.Errorf("cgroup: /proc/self/mountinfo: %w", err)
	}
	sc, err := env.selfCgroup()
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cgs, err := parseProcCgroup(sc)
	if err != nil {
		return nil, fmt.Errorf("cgroup: /proc/self/cgroup: %w", err)
	}
	lay := resolveLayout(mounts, cgs)
	if lay.V2 == nil {
		m.note("cgroups off: no cgroup2 mount in /proc/self/mountinfo (v1-only hosts are not supported); agents run without cgroups")
		return m.opened(), nil
	}
	m.delegated = m.detectDelegation(opts.Delegate, lay.V2, env.getenv)
	if err := m.useRoot(opts.Root, lay.V2); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if err := m.setupV2(lay.V2); err != nil {
		m.undoV2()
		if notPermitted(err) {
			m.v2 = nil
			m.note(fmt.Sprintf("cgroups off: %v (not root, or cgroup not delegated); agents run without cgroups", err))
			return m.opened(), nil
		}
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	m.setupV1(lay)

	agents := filepath.Join(m.root, "agents")
	m.hasKill = exists(filepath.Join(agents, "cgroup.kill"))
	m.hasFreeze = exists(filepath.Join(agents, "cgroup.freeze"))
	m.cpuStat = exists(filepath.Join(agents, "cpu.stat"))
	switch {
	case slices.Contains(m.v2, "memory"):
		m.mode = ModeV2
	case m.v1["memory"] != "":
		m.mode = ModeHybrid
	default:
		m.mode = ModeV2
		m.note("memory limits off: no memory controller in cgroup2 or v1")
	}
	if !m.has("pids") {
		m.note("pids limits off: no pids controller in cgroup2 or v1")
	}
	if !m.has("cpu") {
		m.note("cpu weights off: no cpu controller in cgroup2 or v1")
	}
	if !m.cpuStat && m.v1["cpuacct"] == "" {
		m.note("cpu usage off: no cpu.stat in cgroup2 and no cpuacct v1 hierarchy")
	}
	if !m.hasKill {
		m.note("cgroup.kill missing (kernel < 5.14): kill falls back to freeze and SIGKILL of every process")
	}
	if !m.hasFreeze {
		m.note("freeze off: no cgroup.freeze (kernel < 5.2)")
	}
	return m.opened(), nil
}

// opened logs the outcome once.
func (m *Manager) opened() *Manager {
	m.log.Info("cgroups", "mode", m.mode, "root", m.root, "delegated", m.delegated,
		"v2", strings.Join(m.v2, ","), "v1", m.v1Summary())
	for _, n := range m.notes {
		m.log.Info("cgroup feature off", "note", n)
	}
	return m
}

func (m *Manager) v1Summary() string {
	return strings.Join(slices.Sorted(maps.Keys(m.v1)), ",")
}

func (m *Manager) note(s string) {
	if !slices.Contains(m.notes, s) {
		m.notes = append(m.notes, s)
	}
	if strings.HasPrefix(s, "cgroups off") {
		m.mode = ModeNone
	}
}

// has reports whether a limit controller is usable, in v2 or v1.
func (m *Manager) has(ctrl string) bool {
	return slices.Contains(m.v2, ctrl) || m.v1[ctrl] != ""
}

func (m *Manager) detectDelegation(force *bool, own *hierarchy, getenv func(string) string) bool {
	usable := own.Dir != "" && own.Path != "/" && own.Path != ""
	if force != nil {
		if *force && !usable {
			m.note(fmt.Sprintf("delegation off: own cgroup %q is the root or not reachable through the cgroup2 mount", own.Path))
			return false
		}
		return *force
	}
	return usable &&
		(strings.HasSuffix(own.Path, ".service") || strings.HasSuffix(own.Path, ".scope")) &&
		getenv("INVOCATION_ID") != "" &&
		unix.Access(own.Dir, unix.W_OK) == nil
}

// useRoot makes the Manager own root, a delegated cgroup2 directory
// outside the daemon's own cgroup, when one is given.
func (m *Manager) useRoot(root string, h *hierarchy) error {
	if root == "" {
		return nil
	}
	if !filepath.IsAbs(root) || !strings.HasPrefix(filepath.Clean(root)+"/", filepath.Clean(h.Mount)+"/") || filepath.Clean(root) == filepath.Clean(h.Mount) {
		return fmt.Errorf("%w: root %q is not a cgroup below the cgroup2 mount %s", ErrInvalid, root, h.Mount)
	}
	m.delegated = true
	m.own, m.leaf = filepath.Clean(root), "hold"
	return nil
}

// setupV2 creates the agents directory and enables the limit controllers
// from the top of the subtree down to it.
func (m *Manager) setupV2(h *hierarchy) error {
	var chain []string // cgroups whose subtree_control must list the controllers
	if m.delegated {
		// The no-internal-process rule: a cgroup that distributes controllers
		// to children holds no processes itself, so ours move to a leaf.
		own, leaf := h.Dir, filepath.Join(h.Dir, "daemon")
		if m.own != "" {
			own, leaf = m.own, filepath.Join(m.own, m.leaf)
		}
		if _, err := mkdir(leaf); err != nil {
			return err
		}
		if err := moveProcs(own, leaf); err != nil {
			return err
		}
		m.root = own
		chain = []string{own}
	} else {
		m.root = filepath.Join(h.Mount, m.name)
		if _, err := mkdir(m.root); err != nil {
			return err
		}
		m.named = append(m.named, m.root)
		chain = []string{h.Mount, m.root}
	}
	agents := filepath.Join(m.root, "agents")
	if _, err := mkdir(agents); err != nil {
		return err
	}
	chain = append(chain, agents)

	avail, err := os.ReadFile(filepath.Join(chain[0], "cgroup.controllers"))
	if err != nil {
		return err
	}
	for _, c := range limitControllers {
		if !slices.Contains(strings.Fields(string(avail)), c) {
			continue
		}
		if err := enableControllers(chain, []string{c}); err != nil {
			m.note(fmt.Sprintf("cgroup2 %s controller off: %v", c, err))
			continue
		}
		m.v2 = append(m.v2, c)
	}
	return nil
}

// undoV2 removes what a failed setupV2 made (best effort: rmdir leaves
// anything in use).
func (m *Manager) undoV2() {
	if m.root == "" {
		return
	}
	rmdir(filepath.Join(m.root, "agents"))
	for _, d := range m.named {
		rmdir(d)
	}
}

// moveProcs moves every process of from into to.
func moveProcs(from, to string) error {
	b, err := os.ReadFile(filepath.Join(from, "cgroup.procs"))
	if err != nil {
		return err
	}
	pids, err := parsePids(b)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		err := writeFile(filepath.Join(to, "cgroup.procs"), strconv.Itoa(pid))
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// enableControllers writes "+ctrl" into cgroup.subtree_control of each dir
// in order, skipping those that already list it.
func enableControllers(chain []string, ctrls []string) error {
	for _, dir := range chain {
		f := filepath.Join(dir, "cgroup.subtree_control")
		cur, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		have := strings.Fields(string(cur))
		for _, c := range ctrls {
			if slices.Contains(have, c) {
				continue
			}
			if err := writeFile(f, "+"+c); err != nil {
				return fmt.Errorf("enable %s in %s: %w", c, f, err)
			}
		}
	}
	return nil
}

// setupV1 picks v1 hierarchies for the limit controllers cgroup2 lacks (and
// cpuacct when cgroup2 has no cpu.stat), nested under this process's own
// cgroup in each.
func (m *Manager) setupV1(lay layout) {
	need := slices.DeleteFunc(slices.Clone(limitControllers), func(c string) bool { return slices.Contains(m.v2, c) })
	if !exists(filepath.Join(m.root, "agents", "cpu.stat")) {
		need = append(need, "cpuacct")
	}
	for _, c := range need {
		h := lay.V1[c]
		if h == nil {
			continue
		}
		if h.Dir == "" {
			m.note(fmt.Sprintf("cgroup v1 %s off: own cgroup not reachable through %s", c, h.Mount))
			continue
		}
		rel := m.name
		if m.delegated && h.Path != "/" {
			rel = "" // the unit's own v1 cgroup is delegated too
		}
		if err := mkdirAll(h.Dir, filepath.Join(rel, "agents")); err != nil {
			m.note(fmt.Sprintf("cgroup v1 %s off: %v", c, err))
			continue
		}
		m.v1[c] = filepath.Join(h.Dir, rel)
		if rel != "" && !slices.Contains(m.named, m.v1[c]) {
			m.named = append(m.named, m.v1[c])
		}
	}
}

// v1Roots are the distinct v1 directories holding agents/ (cpu and cpuacct
// often share one hierarchy).
func (m *Manager) v1Roots() []string {
	var out []string
	for _, d := range m.v1 {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// Mode says where limits come from.
func (m *Manager) Mode() Mode { return m.mode }

// Notes say, in words, which features are off and why.
func (m *Manager) Notes() []string { return slices.Clone(m.notes) }

// Root is the cgroup2 directory that holds agents/ ("" in ModeNone).
func (m *Manager) Root() string {
	if m.mode == ModeNone {
		return ""
	}
	return m.root
}

// Delegated reports whether the Manager uses the daemon's own
// systemd-delegated cgroup.
func (m *Manager) Delegated() bool { return m.delegated }

// Create makes the cgroup of one agent, at agents/<pool>/<agent>, with the
// limits the host supports. It fails with ErrExist if the cgroup exists
// (a leftover: call Reap at start).
func (m *Manager) Create(pool, agent string, lim Limits) (*Cgroup, error) {
	if m.mode == ModeNone {
		return nil, fmt.Errorf("cgroup: create %s/%s: %w (%s)", pool, agent, ErrNotSupported, strings.Join(m.notes, "; "))
	}
	if err := validName(pool); err != nil {
		return nil, err
	}
	if err := validName(agent); err != nil {
		return nil, err
	}
	if err := lim.validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	key := pool + "/" + agent
	if m.live[key] != nil {
		return nil, fmt.Errorf("%w: %s", ErrExist, key)
	}
	poolDir := filepath.Join(m.root, "agents", pool)
	if !m.enabled[poolDir] { // made and enabled once; removeEmptyPools forgets it
		if _, err := mkdir(poolDir); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		if err := enableControllers([]string{poolDir}, m.v2); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		if m.enabled == nil {
			m.enabled = map[string]bool{}
		}
		m.enabled[poolDir] = true
	}
	c := m.handle(pool, agent)
	c.onlyV1For(lim)
	made, err := mkdir(c.path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if !made {
		return nil, fmt.Errorf("%w: %s (left over: Reap removes it)", ErrExist, c.path)
	}
	fail := func(err error) (*Cgroup, error) {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		rmdir(c.path)
		for _, d := range c.v1Dirs() {
			rmdir(d)
		}
		return nil, fmt.Errorf("cgroup: create %s: %w", key, err)
	}
	for _, root := range m.v1Roots() {
		if !slices.Contains(c.v1Dirs(), filepath.Join(root, "agents", pool, agent)) {
			continue // no limit of lim is in this hierarchy
		}
		if err := mkdirAll(root, filepath.Join("agents", pool, agent)); err != nil {
			return fail(err)
		}
	}
	if err := m.applyLimits(c, lim); err != nil {
		return fail(err)
	}
	fd, err := unix.Open(c.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(&fs.PathError{Op: "open", Path: c.path, Err: err})
	}
	c.fd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&fs.PathError{Op: "fstat", Path: c.path, Err: err})
	}
	c.id = st.Ino
	m.live[key] = c
	return c, nil
}

// Adopt takes over the agent cgroup pool/agent that a previous instance
// left on purpose (an agent isolated with isolate_action keep): it becomes
// live, so Reap leaves it, and its handle kills, freezes and destroys it as
// one this instance made. It fails with ErrNotExist when it is gone.
func (m *Manager) Adopt(pool, agent string) (*Cgroup, error) {
	if m.mode == ModeNone {
		return nil, ErrNotSupported
	}
	if err := validName(pool); err != nil {
		return nil, err
	}
	if err := validName(agent); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	key := pool + "/" + agent
	if c := m.live[key]; c != nil {
		return c, nil
	}
	c := m.handle(pool, agent)
	fd, err := unix.Open(c.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, c.path)
		}
		return nil, fmt.Errorf("cgroup: adopt %s: %w", key, &fs.PathError{Op: "open", Path: c.path, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("cgroup: adopt %s: %w", key, &fs.PathError{Op: "fstat", Path: c.path, Err: err})
	}
	// Its agent runs already: the directory is opened again only if
	// wanted (FD), not held for the agent's life.
	unix.Close(fd)
	c.id = st.Ino
	m.live[key] = c
	return c, nil
}

// Leave leaves the agent cgroup in place, with whatever runs in it, for the
// next instance to Adopt: the handle is closed and the Manager forgets it,
// so that Close removes neither it nor the directories above it.
func (c *Cgroup) Leave() error {
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live[c.pool+"/"+c.agent] == c {
		delete(m.live, c.pool+"/"+c.agent)
		m.left++
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	return nil
}

// handle describes the agent cgroup at pool/agent; it opens nothing.
func (m *Manager) handle(pool, agent string) *Cgroup {
	c := &Cgroup{
		m:     m,
		pool:  pool,
		agent: agent,
		path:  filepath.Join(m.root, "agents", pool, agent),
		v1:    map[string]string{},
		fd:    -1,
	}
	for ctrl, root := range m.v1 {
		c.v1[ctrl] = filepath.Join(root, "agents", pool, agent)
	}
	return c
}

func (m *Manager) applyLimits(c *Cgroup, lim Limits) error {
	set := func(dir, file, val string) error { return writeFile(filepath.Join(dir, file), val) }
	optional := func(err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no swap accounting, or an older kernel
		}
		return err
	}
	switch {
	case slices.Contains(m.v2, "memory"):
		if err := optional(set(c.path, "memory.oom.group", "1")); err != nil {
			return err
		}
		if lim.Memory > 0 {
			if err := set(c.path, "memory.max", strconv.FormatInt(lim.Memory, 10)); err != nil {
				return err
			}
			if err := optional(set(c.path, "memory.swap.max", "0")); err != nil {
				return err
			}
		}
	case c.v1["memory"] != "" && lim.Memory > 0:
		d := c.v1["memory"]
		if err := set(d, "memory.limit_in_bytes", strconv.FormatInt(lim.Memory, 10)); err != nil {
			return err
		}
		// OOM killer on (oom_kill_disable 0): a stuck agent is worse than a dead one.
		if err := set(d, "memory.oom_control", "0"); err != nil {
			return err
		}
	}
	if lim.Pids > 0 {
		switch {
		case slices.Contains(m.v2, "pids"):
			if err := set(c.path, "pids.max", strconv.FormatInt(lim.Pids, 10)); err != nil {
				return err
			}
		case c.v1["pids"] != "":
			if err := set(c.v1["pids"], "pids.max", strconv.FormatInt(lim.Pids, 10)); err != nil {
				return err
			}
		}
	}
	if lim.CPUWeight > 0 {
		switch {
		case slices.Contains(m.v2, "cpu"):
			if err := set(c.path, "cpu.weight", strconv.Itoa(lim.CPUWeight)); err != nil {
				return err
			}
		case c.v1["cpu"] != "":
			if err := set(c.v1["cpu"], "cpu.shares", strconv.FormatInt(cpuShares(lim.CPUWeight), 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Manager) forget(c *Cgroup) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live[c.pool+"/"+c.agent] == c {
		delete(m.live, c.pool+"/"+c.agent)
	}
}

// forgetOOM ends the OOM notifications of c, if any.
func (m *Manager) forgetOOM(c *Cgroup) {
	m.mu.Lock()
	w := m.oom
	m.mu.Unlock()
	if w != nil {
		w.forget(c)
	}
}

// Reap kills and removes agent cgroups under agents/ that this Manager did
// not create: the orphans of a previous instance that died. Call it once at
// start, before Create. It returns how many it removed.
func (m *Manager) Reap(ctx context.Context) (int, error) {
	if m.mode == ModeNone {
		return 0, nil
	}
	found := map[string]bool{}
	for _, root := range append([]string{m.root}, m.v1Roots()...) {
		pools, err := subdirs(filepath.Join(root, "agents"))
		if err != nil {
			return 0, fmt.Errorf("cgroup: reap: %w", err)
		}
		for _, p := range pools {
			agents, err := subdirs(filepath.Join(root, "agents", p))
			if err != nil {
				return 0, fmt.Errorf("cgroup: reap: %w", err)
			}
			for _, a := range agents {
				found[p+"/"+a] = true
			}
		}
	}
	m.mu.Lock()
	for k := range m.live {
		delete(found, k)
	}
	m.mu.Unlock()

	n := 0
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(found)) {
		pool, agent, _ := strings.Cut(key, "/")
		c := m.handle(pool, agent)
		if err := c.destroyOrphan(ctx); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		m.log.Info("reaped orphan agent cgroup", "pool", pool, "agent", agent)
		n++
	}
	// Pools left empty by the reaping go too; busy ones stay.
	m.mu.Lock()
	m.removeEmptyPools(false)
	m.mu.Unlock()
	return n, errors.Join(errs...)
}

// removeEmptyPools removes pool directories with no agent cgroups in them
// (rmdir fails on the others); strict reports those failures.
func (m *Manager) removeEmptyPools(strict bool) error {
	var errs []error
	for _, root := range append([]string{m.root}, m.v1Roots()...) {
		pools, err := subdirs(filepath.Join(root, "agents"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range pools {
			live := false
			for k := range m.live {
				live = live || strings.HasPrefix(k, p+"/")
			}
			if live && !strict {
				continue
			}
			err := rmdir(filepath.Join(root, "agents", p))
			if err == nil {
				delete(m.enabled, filepath.Join(root, "agents", p))
			} else if strict {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Close removes the empty agent cgroups, the pool directories, agents/ and
// (when not delegated) the Name directory, in cgroup2 and every v1
// hierarchy. Agents still holding processes stay, and Close returns an error
// wrapping ErrBusy; kill them first (or use Shutdown). Close may be called
// again after such an error.
func (m *Manager) Close() error {
	if m.mode == ModeNone {
		return nil
	}
	m.mu.Lock()
	m.closed = true
	live := slices.Collect(maps.Values(m.live))
	oom := m.oom
	m.oom = nil
	m.mu.Unlock()
	if oom != nil {
		oom.close()
	}

	var errs []error
	for _, c := range live {
		if err := c.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left > 0 {
		// Agents left for the next instance live below: keep the tree.
		return m.removeEmptyPools(false)
	}
	if err := m.removeEmptyPools(true); err != nil {
		return err
	}
	for _, root := range append([]string{m.root}, m.v1Roots()...) {
		if err := rmdir(filepath.Join(root, "agents")); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, d := range m.named {
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Shutdown destroys every agent cgroup this Manager created, then Closes.
func (m *Manager) Shutdown(ctx context.Context) error {
	if m.mode == ModeNone {
		return nil
	}
	m.mu.Lock()
	m.closed = true
	live := slices.Collect(maps.Values(m.live))
	m.mu.Unlock()
	var errs []error
	for _, c := range live {
		if err := c.Destroy(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, m.Close())...)
}

// Mount2 returns the cgroup2 mount point listed in /proc/self/mountinfo, or
// an error wrapping ErrNotSupported if there is none.
func Mount2() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	mounts, err := parseMountinfo(b)
	if err != nil {
		return "", fmt.Errorf("cgroup: /proc/self/mountinfo: %w", err)
	}
	for _, mt := range mounts {
		if mt.FSType == "cgroup2" {
			return mt.MountPoint, nil
		}
	}
	return "", fmt.Errorf("%w: no cgroup2 mount in /proc/self/mountinfo", ErrNotSupported)
}

// CgroupIDOf returns the cgroup v2 id of the directory at path: its inode
// number, which is what bpf_get_current_cgroup_id returns for its tasks.
func CgroupIDOf(path string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("%w: %s", ErrNotExist, path)
		}
		return 0, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("%w: %s is not on cgroup2", ErrInvalid, path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Ino, nil
}
