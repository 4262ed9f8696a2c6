package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is one agent's cgroup. Its methods are safe for concurrent use.
type Cgroup struct {
	m           *Manager
	pool, agent string
	path        string            // cgroup2 directory
	v1          map[string]string // controller → v1 directory (hybrid hosts)
	id          uint64

	mu      sync.Mutex
	fd      int // directory fd, -1 when closed (ReleaseFD), removed, or for orphans
	removed bool
}

// Path is the cgroup2 directory.
func (c *Cgroup) Path() string { return c.path }

// Pool is the pool name given to Create.
func (c *Cgroup) Pool() string { return c.pool }

// Agent is the agent name given to Create.
func (c *Cgroup) Agent() string { return c.agent }

// ID is the cgroup v2 id (the directory's inode number), as
// bpf_get_current_cgroup_id returns it for the cgroup's tasks.
func (c *Cgroup) ID() uint64 { return c.id }

// FD is a read-only directory descriptor, for exec.Cmd's
// SysProcAttr{UseCgroupFD: true, CgroupFD: c.FD()} (clone3
// CLONE_INTO_CGROUP, kernel >= 5.7) and for attaching BPF programs. It
// stays open until ReleaseFD or Remove; after ReleaseFD it is opened
// again. -1 once the cgroup is removed (or cannot be opened).
func (c *Cgroup) FD() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 && !c.removed && c.id != 0 {
		if fd, err := unix.Open(c.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			c.fd = fd
		}
	}
	return c.fd
}

// ReleaseFD closes the directory descriptor once the agent's process has
// been cloned into the cgroup: held for the agent's whole life it would
// be one descriptor per agent for nothing (descriptors bound the agents a
// node can run). FD opens it again when wanted.
func (c *Cgroup) ReleaseFD() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

func (c *Cgroup) file(name string) string { return filepath.Join(c.path, name) }

// v1Dirs are the distinct v1 directories of this cgroup.
func (c *Cgroup) v1Dirs() []string {
	var out []string
	for _, d := range c.v1 {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// onlyV1For keeps, of a new cgroup's v1 hierarchies (hybrid hosts), those
// that hold one of lim's limits: a v1 directory is a mkdir, a write to
// place each agent and an rmdir more per agent start, and a v1 memory
// cgroup costs the kernel more again to make and tear down, for nothing
// when it limits nothing. What reads an agent's usage reads /proc.
// cpuacct stays where it shares the cpu directory.
func (c *Cgroup) onlyV1For(lim Limits) {
	want := map[string]bool{"memory": lim.Memory > 0, "pids": lim.Pids > 0, "cpu": lim.CPUWeight > 0}
	for ctrl, d := range c.v1 {
		if want[ctrl] || ctrl == "cpuacct" && want["cpu"] && d == c.v1["cpu"] {
			continue
		}
		delete(c.v1, ctrl)
	}
}

func notExist(err error, what string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s: %w", ErrNotExist, what, err)
	}
	return fmt.Errorf("cgroup: %w", err)
}

// Join puts pid into this cgroup's v1 hierarchies (hybrid hosts). The
// cgroup2 placement is done by clone (UseCgroupFD); on pure v2 Join does
// nothing. Call it right after start: until then the process is charged to
// the daemon's v1 cgroups, and so is anything it forks before Join.
func (c *Cgroup) Join(pid int) error {
	for _, d := range c.v1Dirs() {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return notExist(err, d)
		}
	}
	return nil
}

// Attach moves an already running process into the cgroup, cgroup2 and v1:
// for processes not started with UseCgroupFD (kernels < 5.7). Its threads
// move with it; children it forked before stay where they are.
func (c *Cgroup) Attach(pid int) error {
	if err := writeFile(c.file("cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return notExist(err, c.path)
	}
	return c.Join(pid)
}

// Kill sends SIGKILL to every process in the cgroup and its descendants,
// double-forked grandchildren included, and returns without waiting (see
// Wait). It writes cgroup.kill; on kernels without it, it freezes the cgroup
// so nothing forks, SIGKILLs every member until none is left, and thaws.
func (c *Cgroup) Kill() error {
	if !c.m.hasKill || c.m.signalKill {
		return c.killBySignal()
	}
	if err := writeFile(c.file("cgroup.kill"), "1"); err != nil {
		return notExist(err, c.path)
	}
	return nil
}

// killBySignal is Kill for kernels < 5.14. A pid read from cgroup.procs could
// in theory be reused between the read and the kill; the cgroup is frozen,
// so its members cannot exit on their own, which keeps that window to pids
// killed in an earlier round.
func (c *Cgroup) killBySignal() error {
	if !exists(c.path) {
		return fmt.Errorf("%w: %s", ErrNotExist, c.path)
	}
	if c.m.hasFreeze && writeFile(c.file("cgroup.freeze"), "1") == nil {
		// Frozen tasks still die of SIGKILL on cgroup2.
		defer writeFile(c.file("cgroup.freeze"), "0")
	}
	return killProcsIn(c.path)
}

// killProcsIn SIGKILLs the members of dir (and its children) until none is
// left: a process may fork while its siblings are being killed.
func killProcsIn(dir string) error {
	delay := 100 * time.Microsecond
	for round := 0; ; round++ {
		pids, err := readProcs(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL) // ESRCH: already gone
		}
		if round == 1000 {
			// Tasks stuck in uninterruptible sleep (D state) die when the
			// kernel lets them; waiting longer here would hang the caller.
			return fmt.Errorf("%w: %d processes in %s survive SIGKILL", ErrBusy, len(pids), dir)
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// Freeze stops every process in the cgroup and returns once the kernel
// reports it frozen ("frozen 1" in cgroup.events). Frozen processes keep
// their memory and can still be killed.
func (c *Cgroup) Freeze(ctx context.Context) error { return c.setFrozen(ctx, true) }

// Thaw resumes a frozen cgroup and returns once it reports "frozen 0".
func (c *Cgroup) Thaw(ctx context.Context) error { return c.setFrozen(ctx, false) }

func (c *Cgroup) setFrozen(ctx context.Context, on bool) error {
	if !c.m.hasFreeze {
		return fmt.Errorf("%w: no cgroup.freeze (kernel < 5.2)", ErrNotSupported)
	}
	v := "0"
	if on {
		v = "1"
	}
	if err := writeFile(c.file("cgroup.freeze"), v); err != nil {
		return notExist(err, c.path)
	}
	return waitEvent(ctx, c.path, "frozen", on, c.m.pollOnly)
}

// Wait blocks until the cgroup holds no process ("populated 0" in
// cgroup.events), or ctx ends. A cgroup that is gone is empty.
func (c *Cgroup) Wait(ctx context.Context) error {
	err := waitEvent(ctx, c.path, "populated", false, c.m.pollOnly)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// Populated reports whether any process is in the cgroup or below it.
func (c *Cgroup) Populated() (bool, error) {
	b, err := readFile(c.file("cgroup.events"))
	if err != nil {
		return false, notExist(err, c.path)
	}
	return parseFlatKeyed(b)["populated"] != 0, nil
}

// Remove deletes the cgroup's directories (cgroup2 and v1) and closes FD. It
// fails with an error wrapping ErrBusy while processes remain. Removing a
// removed cgroup does nothing.
func (c *Cgroup) Remove() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	// No check of cgroup.events first: rmdir refuses a populated cgroup
	// (EBUSY), and the teardown of every agent pays for each file read.
	if err := rmdir(c.path); err != nil {
		if errors.Is(err, ErrBusy) {
			return fmt.Errorf("%w: %s still holds processes or child cgroups", ErrBusy, c.path)
		}
		return err
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	var errs []error
	for _, d := range c.v1Dirs() {
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // a retry removes what is left
	}
	c.removed = true
	c.m.forget(c)
	c.m.forgetOOM(c)
	return nil
}

// Destroy kills the cgroup's processes, waits until they are gone and
// removes the cgroup. A cgroup found empty is removed at once: the usual
// teardown, after the agent's exit was seen, costs a read and an rmdir.
func (c *Cgroup) Destroy(ctx context.Context) error {
	pop, err := c.Populated()
	if errors.Is(err, ErrNotExist) {
		return c.Remove() // its v1 directories, if any, and the handle
	}
	if err != nil || pop {
		if err := c.Kill(); err != nil && !errors.Is(err, ErrNotExist) {
			return err
		}
		if err := c.Wait(ctx); err != nil {
			return err
		}
	}
	return c.Remove()
}

// destroyOrphan is Destroy for a cgroup left by a previous instance, which
// may exist in only some of the hierarchies.
func (c *Cgroup) destroyOrphan(ctx context.Context) error {
	if exists(c.path) {
		if err := c.Kill(); err != nil && !errors.Is(err, ErrNotExist) {
			return err
		}
		if err := c.Wait(ctx); err != nil {
			return err
		}
	}
	// v1 members that are not in the cgroup2 directory (never are, unless
	// the previous instance died between the two placements).
	for _, d := range c.v1Dirs() {
		if err := killProcsIn(d); err != nil {
			return err
		}
	}
	return c.Remove()
}

// Procs lists the pids in the cgroup and its descendants.
func (c *Cgroup) Procs() ([]int, error) {
	pids, err := readProcs(c.path)
	if err != nil {
		return nil, notExist(err, c.path)
	}
	return pids, nil
}

// Stats reads the cgroup's counters. Fields whose controller is off are 0.
func (c *Cgroup) Stats() (Stats, error) {
	var s Stats
	var err error
	read := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	m := c.m
	switch {
	case slices.Contains(m.v2, "memory"):
		read(func() (e error) { s.MemoryCurrent, e = readInt(c.file("memory.current")); return })
		read(func() (e error) { s.MemoryMax, e = readLimit(c.file("memory.max")); return })
		read(func() error {
			b, e := readFile(c.file("memory.events"))
			s.OOMKills = parseFlatKeyed(b)["oom_kill"]
			return e
		})
	case c.v1["memory"] != "":
		d := c.v1["memory"]
		read(func() (e error) { s.MemoryCurrent, e = readInt(filepath.Join(d, "memory.usage_in_bytes")); return })
		read(func() (e error) { s.MemoryMax, e = readLimit(filepath.Join(d, "memory.limit_in_bytes")); return })
		read(func() error {
			b, e := readFile(filepath.Join(d, "memory.oom_control"))
			s.OOMKills = parseFlatKeyed(b)["oom_kill"]
			return e
		})
	}
	pidsDir := ""
	switch {
	case slices.Contains(m.v2, "pids"):
		pidsDir = c.path
	case c.v1["pids"] != "":
		pidsDir = c.v1["pids"]
	}
	if pidsDir != "" {
		read(func() (e error) { s.PidsCurrent, e = readInt(filepath.Join(pidsDir, "pids.current")); return })
		read(func() (e error) { s.PidsMax, e = readLimit(filepath.Join(pidsDir, "pids.max")); return })
	}
	switch {
	case m.cpuStat:
		read(func() error {
			b, e := readFile(c.file("cpu.stat"))
			s.CPUUsage = time.Duration(parseFlatKeyed(b)["usage_usec"]) * time.Microsecond
			return e
		})
	case c.v1["cpuacct"] != "":
		read(func() error {
			n, e := readInt(filepath.Join(c.v1["cpuacct"], "cpuacct.usage"))
			s.CPUUsage = time.Duration(n)
			return e
		})
	}
	if err != nil {
		return Stats{}, notExist(err, c.path)
	}
	return s, nil
}

func readLimit(p string) (int64, error) {
	b, err := readFile(p)
	if err != nil {
		return 0, err
	}
	n, err := parseLimit(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return n, nil
}

// MemoryEvents reads the memory event counters: memory.events on cgroup2;
// on v1, memory.failcnt (as Max) and the oom_kill line of memory.oom_control.
func (c *Cgroup) MemoryEvents() (MemoryEvents, error) {
	switch {
	case slices.Contains(c.m.v2, "memory"):
		b, err := readFile(c.file("memory.events"))
		if err != nil {
			return MemoryEvents{}, notExist(err, c.path)
		}
		kv := parseFlatKeyed(b)
		return MemoryEvents{Low: kv["low"], High: kv["high"], Max: kv["max"], OOM: kv["oom"],
			OOMKill: kv["oom_kill"], OOMGroupKill: kv["oom_group_kill"]}, nil
	case c.v1["memory"] != "":
		d := c.v1["memory"]
		b, err := readFile(filepath.Join(d, "memory.oom_control"))
		if err != nil {
			return MemoryEvents{}, notExist(err, d)
		}
		fail, err := readInt(filepath.Join(d, "memory.failcnt"))
		if err != nil {
			return MemoryEvents{}, notExist(err, d)
		}
		return MemoryEvents{Max: uint64(fail), OOMKill: parseFlatKeyed(b)["oom_kill"]}, nil
	}
	return MemoryEvents{}, fmt.Errorf("%w: no memory controller", ErrNotSupported)
}
