package cgroup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// noDelegation keeps tests out of the test binary's own cgroup even when it
// runs in a systemd unit with Delegate=yes (the VM test); TestRealDelegation
// covers that case.
var noDelegation = false

// testName keeps each test's tree apart from the daemon's and from others.
func testName(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "rtest-" + hex.EncodeToString(b)
}

// openTest opens a Manager of its own, skipping when cgroups are not usable
// here, and checks at the end that nothing of its tree is left.
func openTest(t testing.TB) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	m, err := Open(Options{Name: testName(t), Delegate: &noDelegation})
	if err != nil {
		t.Fatal(err)
	}
	if m.Mode() == ModeNone {
		t.Skipf("cgroups not usable: %v", m.Notes())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, d := range m.treeDirs() {
			if exists(d) {
				t.Errorf("left behind: %s", d)
			}
		}
	})
	return m
}

// treeDirs are the directories Close must remove.
func (m *Manager) treeDirs() []string {
	var out []string
	for _, r := range append([]string{m.root}, m.v1Roots()...) {
		out = append(out, filepath.Join(r, "agents"))
	}
	return append(out, m.named...)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start runs a command in c via clone3(CLONE_INTO_CGROUP) and joins its v1
// hierarchies. Its stdin stays open so a helper can be told to go on.
func start(t testing.TB, c *Cgroup, name string, args ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.FD()}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
	})
	return cmd, stdin
}

// procState returns the state letter of /proc/PID/stat, "" if gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return rest[:1]
}

// procCPU is utime+stime of PID in clock ticks.
func procCPU(t testing.TB, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest) // f[0] is field 3 (state)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func procPPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	n, _ := strconv.Atoi(f[1])
	return n
}

// reap collects the zombies of pids this process is parent (or subreaper) of.
func reap(pids []int) {
	for _, pid := range pids {
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}

// eventually polls cond until it holds or ctx ends.
func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenWithoutCgroups(t *testing.T) {
	for name, env := range map[string]sysEnv{
		"no mounts": fakeEnv(noneMountinfo, "", nil),
		"v1 only":   fakeEnv(v1OnlyMountinfo, v1OnlyCgroup, nil),
	} {
		t.Run(name, func(t *testing.T) {
			m, err := open(Options{Name: "rtest-none"}, env)
			if err != nil {
				t.Fatal(err)
			}
			if m.Mode() != ModeNone || m.Root() != "" || len(m.Notes()) == 0 {
				t.Fatalf("mode %s root %q notes %v, want none with notes", m.Mode(), m.Root(), m.Notes())
			}
			if _, err := m.Create("p", "a", Limits{}); !errors.Is(err, ErrNotSupported) {
				t.Errorf("Create = %v, want ErrNotSupported", err)
			}
			if n, err := m.Reap(context.Background()); n != 0 || err != nil {
				t.Errorf("Reap = %d, %v", n, err)
			}
			if err := m.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := open(Options{Name: "bad/name"}, fakeEnv(noneMountinfo, "", nil)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v, want ErrInvalid", err)
	}
}

func TestOpenNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("checks the non-root outcome; running as root")
	}
	m, err := Open(Options{Name: testName(t)})
	if err != nil {
		t.Fatalf("Open must not fail without privileges: %v", err)
	}
	if m.Mode() != ModeNone || len(m.Notes()) == 0 {
		t.Errorf("mode %s notes %v, want none with a reason", m.Mode(), m.Notes())
	}
}

func fakeEnv(mountinfo, cgroup string, env map[string]string) sysEnv {
	return sysEnv{
		mountinfo:  func() ([]byte, error) { return []byte(mountinfo), nil },
		selfCgroup: func() ([]byte, error) { return []byte(cgroup), nil },
		getenv:     func(k string) string { return env[k] },
	}
}

func TestMount2(t *testing.T) {
	p, err := Mount2()
	if errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("%s is not cgroup2: %v", p, err)
	}
}

// TestKillTree is the heart of it: a double-forked grandchild, which a
// process-group kill would miss, dies with the rest.
func TestKillTree(t *testing.T) {
	m := openTest(t)
	for _, tc := range []struct {
		name               string
		signalKill, polled bool
	}{
		{"cgroup.kill+inotify", false, false},
		{"freeze+sigkill+poll", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.signalKill, m.pollOnly = tc.signalKill, tc.polled
			defer func() { m.signalKill, m.pollOnly = false, false }()
			ctx := ctxT(t)
			c, err := m.Create("kill", "a"+strconv.FormatBool(tc.signalKill), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			cmd, _ := start(t, c, "sh", "-c", "(sleep 1000 &) ; sleep 1000")
			var pids []int
			eventually(t, ctx, "grandchild started", func() bool {
				pids, _ = c.Procs()
				return slices.ContainsFunc(pids, func(p int) bool {
					return p != cmd.Process.Pid && procPPid(p) != cmd.Process.Pid
				})
			})
			if err := c.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err == nil {
				t.Error("sh exited cleanly, want killed")
			}
			reap(pids)
			for _, p := range pids {
				if s := procState(p); s != "" && s != "Z" {
					t.Errorf("pid %d still alive (state %s) after Kill+Wait", p, s)
				}
			}
			if left, err := c.Procs(); err != nil || len(left) != 0 {
				t.Errorf("Procs after kill = %v, %v", left, err)
			}
			if err := c.Remove(); err != nil {
				t.Fatal(err)
			}
			if exists(c.Path()) {
				t.Error("cgroup dir still there after Remove")
			}
			for _, d := range c.v1Dirs() {
				if exists(d) {
					t.Errorf("v1 dir %s still there after Remove", d)
				}
			}
			if c.FD() != -1 {
				t.Error("FD still open after Remove")
			}
		})
	}
}

func TestRemoveBusy(t *testing.T) {
	m := openTest(t)
	c, err := m.Create("busy", "a", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, c, "sleep", "1000")
	if err := c.Remove(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of a populated cgroup = %v, want ErrBusy", err)
	}
	if err := m.Close(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Close with a live agent = %v, want ErrBusy", err)
	}
	if err := c.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close after Destroy: %v", err)
	}
}

func TestWaitCancel(t *testing.T) {
	m := openTest(t)
	c, err := m.Create("wait", "a", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, c, "sleep", "1000")
	for _, polled := range []bool{false, true} {
		m.pollOnly = polled
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("poll=%v: Wait on a live cgroup = %v, want context.Canceled", polled, err)
		}
	}
	m.pollOnly = false
	if err := c.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// A removed cgroup is empty.
	if err := c.Wait(ctxT(t)); err != nil {
		t.Errorf("Wait after Remove = %v", err)
	}
	if err := c.Kill(); !errors.Is(err, ErrNotExist) {
		t.Errorf("Kill after Remove = %v, want ErrNotExist", err)
	}
}

func TestPlacementAndID(t *testing.T) {
	m := openTest(t)
	// A pids limit, so that on a hybrid host the v1 pids hierarchy holds
	// the agent too.
	c, err := m.Create("place", "a", Limits{Pids: 1000})
	if err != nil {
		t.Fatal(err)
	}
	id, err := CgroupIDOf(c.Path())
	if err != nil || id != c.ID() || id == 0 {
		t.Errorf("CgroupIDOf = %d, %v; ID() = %d", id, err, c.ID())
	}
	if _, err := CgroupIDOf(os.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Errorf("CgroupIDOf(non-cgroup) = %v, want ErrInvalid", err)
	}
	cmd, _ := start(t, c, "sleep", "1000")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	cgs, _ := parseProcCgroup(b)
	mnt, _ := Mount2()
	for _, l := range cgs {
		if l.ID == 0 && filepath.Join(mnt, l.Path) != c.Path() {
			t.Errorf("child in %s, want %s", filepath.Join(mnt, l.Path), c.Path())
		}
		for _, ctrl := range l.Controllers {
			if d := c.v1[ctrl]; d != "" && !strings.HasSuffix(d, l.Path) {
				t.Errorf("child's %s cgroup %s, want %s", ctrl, l.Path, d)
			}
		}
	}
	if pids, err := c.Procs(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("Procs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// On v1 a process's earlier pages stay charged where it was before Join.
	if slices.Contains(m.v2, "memory") && s.MemoryCurrent <= 0 {
		t.Errorf("MemoryCurrent = %d with a process charged", s.MemoryCurrent)
	}
	if m.has("pids") && s.PidsCurrent != 1 {
		t.Errorf("PidsCurrent = %d, want 1", s.PidsCurrent)
	}
	if err := c.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestCreateErrors(t *testing.T) {
	m := openTest(t)
	c, err := m.Create("dup", "a", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("dup", "a", Limits{}); !errors.Is(err, ErrExist) {
		t.Errorf("duplicate Create = %v, want ErrExist", err)
	}
	for _, bad := range [][2]string{{"", "a"}, {"p", "../x"}, {"p", "memory.max"}} {
		if _, err := m.Create(bad[0], bad[1], Limits{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q, %q) = %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
	if _, err := m.Create("p", "a", Limits{CPUWeight: 20000}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad weight: %v, want ErrInvalid", err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("dup", "b", Limits{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v, want ErrClosed", err)
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	m := openTest(t)
	if !m.has("memory") {
		t.Skipf("no memory controller: %v", m.Notes())
	}
	const limit = 32 << 20
	c, err := m.Create("oom", "a", Limits{Memory: limit})
	if err != nil {
		t.Fatal(err)
	}
	cmd, out := startAllocHelper(t, c)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v (output %q), want killed by SIGKILL", err, out.String())
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OOMKills < 1 {
		t.Errorf("Stats.OOMKills = %d, want >= 1", s.OOMKills)
	}
	if s.MemoryMax != limit {
		t.Errorf("Stats.MemoryMax = %d, want %d", s.MemoryMax, limit)
	}
	ev, err := c.MemoryEvents()
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOMKill < 1 || ev.Max < 1 {
		t.Errorf("MemoryEvents = %+v, want oom_kill and max >= 1", ev)
	}
	if err := c.Destroy(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestFreezeThaw(t *testing.T) {
	m := openTest(t)
	if !m.hasFreeze {
		t.Skip("no cgroup.freeze (kernel < 5.2)")
	}
	ctx := ctxT(t)
	c, err := m.Create("freeze", "a", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, c, "sh", "-c", "while :; do :; done")
	pid := cmd.Process.Pid
	eventually(t, ctx, "spinner uses CPU", func() bool { return procCPU(t, pid) > 0 })

	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(c.Path(), "cgroup.events"))
	if parseFlatKeyed(b)["frozen"] != 1 {
		t.Fatalf("cgroup.events after Freeze: %q", b)
	}
	if s := procState(pid); s == "R" {
		t.Errorf("frozen spinner is running (state %s)", s)
	}
	before := procCPU(t, pid)
	time.Sleep(100 * time.Millisecond) // a spinner would use ~10 ticks here
	if after := procCPU(t, pid); after != before {
		t.Errorf("frozen spinner progressed: cpu ticks %d -> %d", before, after)
	}

	if err := c.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "thawed spinner progresses", func() bool { return procCPU(t, pid) > before })
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUUsage <= 0 && (m.cpuStat || c.v1["cpuacct"] != "") {
		t.Errorf("CPUUsage = %v after spinning", s.CPUUsage)
	}
	// A frozen cgroup can still be killed.
	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPidsLimit(t *testing.T) {
	m := openTest(t)
	if !m.has("pids") {
		t.Skipf("no pids controller: %v", m.Notes())
	}
	const limit = 4
	ctx := ctxT(t)
	c, err := m.Create("pids", "a", Limits{Pids: limit})
	if err != nil {
		t.Fatal(err)
	}
	// sh plus as many sleeps as it can fork, after it is in all hierarchies.
	cmd, stdin := start(t, c, "sh", "-c", "read x; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; wait")
	io.WriteString(stdin, "go\n")
	pidsDir := c.path
	if !slices.Contains(m.v2, "pids") {
		pidsDir = c.v1["pids"]
	}
	eventually(t, ctx, "fork refused (pids.events max >= 1)", func() bool {
		b, _ := os.ReadFile(filepath.Join(pidsDir, "pids.events"))
		return parseFlatKeyed(b)["max"] >= 1
	})
	pids, err := c.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) > limit {
		t.Errorf("%d processes in a cgroup limited to %d", len(pids), limit)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.PidsMax != limit || s.PidsCurrent > limit {
		t.Errorf("Stats pids %d/%d, want <= %d/%d", s.PidsCurrent, s.PidsMax, limit, limit)
	}
	if err := c.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	reap(pids)
}

// TestRealDelegation runs only inside a systemd unit with Delegate=yes (the
// VM test runs this binary as one): Open detects the delegation by itself.
func TestRealDelegation(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(b)), ".service") || os.Getenv("INVOCATION_ID") == "" {
		t.Skip("not running as a systemd service (the VM test runs it with Delegate=yes)")
	}
	m, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode %s root %s delegated %v v2 %v v1 %v notes %q", m.Mode(), m.Root(), m.Delegated(), m.v2, m.v1, m.Notes())
	if !m.Delegated() {
		t.Fatalf("not delegated in a Delegate=yes unit: %v", m.Notes())
	}
	c, err := m.Create("p", "a", Limits{Memory: 64 << 20, Pids: 16, CPUWeight: 50})
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, c, "sh", "-c", "(sleep 1000 &) ; sleep 1000")
	eventually(t, ctxT(t), "processes start", func() bool { p, _ := c.Procs(); return len(p) >= 2 })
	for _, f := range []string{"memory.max", "pids.max", "cpu.weight"} {
		if b, err := os.ReadFile(filepath.Join(c.Path(), f)); err != nil {
			t.Errorf("%s: %v", f, err)
		} else {
			t.Logf("%s = %s", f, strings.TrimSpace(string(b)))
		}
	}
	if err := m.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if exists(filepath.Join(m.Root(), "agents")) {
		t.Error("agents/ left after Shutdown")
	}
}

func TestReapOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	name := testName(t)
	// The previous instance: creates agents, then "dies" (never closes).
	dead, err := Open(Options{Name: name, Delegate: &noDelegation})
	if err != nil {
		t.Fatal(err)
	}
	if dead.Mode() == ModeNone {
		t.Skipf("cgroups not usable: %v", dead.Notes())
	}
	var pids []int
	for _, a := range []string{"a", "b"} {
		c, err := dead.Create("orphans", a, Limits{Memory: 64 << 20, Pids: 10})
		if err != nil {
			t.Fatal(err)
		}
		cmd, _ := start(t, c, "sh", "-c", "(sleep 1000 &) ; sleep 1000")
		pids = append(pids, cmd.Process.Pid)
		unix.Close(c.fd) // the dead daemon's descriptors die with it
	}
	// An empty one: a sandbox made ahead of need (the supervisor's spare),
	// whose parked launcher thread died with the daemon.
	spare, err := dead.Create("orphans", "spare", Limits{Memory: 64 << 20, Pids: 10})
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(spare.fd)
	// A v1-only leftover (died between the two mkdirs).
	for _, r := range dead.v1Roots() {
		if err := mkdirAll(r, "agents/orphans/c"); err != nil {
			t.Fatal(err)
		}
	}

	m2, err := Open(Options{Name: name, Delegate: &noDelegation})
	if err != nil {
		t.Fatal(err)
	}
	live, err := m2.Create("orphans", "live", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := 3
	if len(dead.v1Roots()) > 0 {
		want = 4
	}
	n, err := m2.Reap(ctxT(t))
	if err != nil || n != want {
		t.Fatalf("Reap = %d, %v; want %d", n, err, want)
	}
	for _, a := range []string{"a", "b", "c", "spare"} {
		h := m2.handle("orphans", a)
		for _, d := range append([]string{h.path}, h.v1Dirs()...) {
			if exists(d) {
				t.Errorf("orphan %s left", d)
			}
		}
	}
	for _, p := range pids {
		if s := procState(p); s != "" && s != "Z" {
			t.Errorf("orphan pid %d alive (state %s)", p, s)
		}
	}
	if !exists(live.Path()) {
		t.Error("Reap removed a live cgroup")
	}
	if err := live.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range m2.treeDirs() {
		if exists(d) {
			t.Errorf("Close left %s", d)
		}
	}
}

// TestDelegated runs the systemd Delegate=yes layout on a scratch cgroup
// standing in for the unit's: the processes in it move to a daemon leaf and
// agents go beside it.
func TestDelegated(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mnt, err := Mount2()
	if err != nil {
		t.Skip(err)
	}
	unit := testName(t) + ".service"
	own := filepath.Join(mnt, unit)
	if err := os.Mkdir(own, 0o755); err != nil {
		if notPermitted(err) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killProcsIn(own)
		time.Sleep(10 * time.Millisecond)
		rmdir(filepath.Join(own, "daemon"))
		if err := rmdir(own); err != nil {
			t.Error(err)
		}
	})
	// The "daemon": a process in the unit's cgroup.
	cmd := exec.Command("sleep", "1000")
	fd, err := unix.Open(own, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	err = cmd.Start()
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	mi, _ := os.ReadFile("/proc/self/mountinfo")
	env := fakeEnv(string(mi), "0::/"+unit+"\n", map[string]string{"INVOCATION_ID": "0123"})
	m, err := open(Options{Name: "unused"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Delegated() || m.Root() != own {
		t.Fatalf("delegated %v root %q, want true %q (notes %v)", m.Delegated(), m.Root(), own, m.Notes())
	}
	b, _ := os.ReadFile(filepath.Join(own, "daemon", "cgroup.procs"))
	if pids, _ := parsePids(b); !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("daemon leaf holds %v, want %d", pids, cmd.Process.Pid)
	}
	if b, _ := os.ReadFile(filepath.Join(own, "cgroup.procs")); len(b) != 0 {
		t.Errorf("unit cgroup still holds %q", b)
	}
	c, err := m.Create("p", "a", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(own, "agents", "p", "a"); c.Path() != want {
		t.Errorf("agent at %s, want %s", c.Path(), want)
	}
	if err := m.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(own, "agents")) || !exists(filepath.Join(own, "daemon")) {
		t.Error("Close must remove agents/ and keep the daemon leaf")
	}
	// Without INVOCATION_ID it is not a delegated unit.
	env.getenv = func(string) string { return "" }
	m, err = open(Options{Name: testName(t)}, env)
	if err != nil {
		t.Fatal(err)
	}
	if m.Delegated() {
		t.Error("delegated without INVOCATION_ID")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLogMode(t *testing.T) {
	m := openTest(t)
	t.Logf("mode %s root %s v2 %v v1 %v kill %v freeze %v cpu.stat %v notes %q",
		m.Mode(), m.Root(), m.v2, m.v1, m.hasKill, m.hasFreeze, m.cpuStat, m.Notes())
}

// startAllocHelper starts the test binary in c allocating memory until the
// OOM killer ends it.
func startAllocHelper(t *testing.T, c *Cgroup) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.FD()}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &strings.Builder{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	return cmd, out
}

// An agent cgroup without limits has no v1 directories (hybrid hosts):
// each would cost a mkdir, a placement and an rmdir per agent for nothing.
// One with a memory limit has the v1 memory directory and no other.
func TestV1OnlyForLimits(t *testing.T) {
	m := openTest(t)
	if len(m.v1) == 0 {
		t.Skip("no v1 hierarchies here (pure cgroup2 host)")
	}
	bare, err := m.Create("v1", "bare", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Destroy(ctxT(t))
	for ctrl, root := range m.v1 {
		if exists(filepath.Join(root, "agents", "v1", "bare")) {
			t.Errorf("v1 %s directory made for an agent without limits", ctrl)
		}
	}
	if m.v1["memory"] == "" {
		return
	}
	lim, err := m.Create("v1", "mem", Limits{Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Destroy(ctxT(t))
	for ctrl, root := range m.v1 {
		made := exists(filepath.Join(root, "agents", "v1", "mem"))
		if want := root == m.v1["memory"]; made != want {
			t.Errorf("v1 %s directory made: %v, want %v", ctrl, made, want)
		}
	}
}

// TestRoot runs the agents' scope layout (Options.Root, internal/agentscope)
// on a scratch cgroup standing in for the scope: its holder moves to the
// "hold" leaf, agents go beside it, the daemon's own cgroup is untouched,
// and a second Manager (the next instance) takes the same root over.
func TestRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mnt, err := Mount2()
	if err != nil {
		t.Skip(err)
	}
	scope := filepath.Join(mnt, testName(t)+"-agents.scope")
	if err := os.Mkdir(scope, 0o755); err != nil {
		if notPermitted(err) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killProcsIn(filepath.Join(scope, "hold"))
		time.Sleep(10 * time.Millisecond)
		rmdir(filepath.Join(scope, "hold"))
		if err := rmdir(scope); err != nil {
			t.Error(err)
		}
	})
	// The holder: a process in the scope's cgroup.
	holder := exec.Command("sleep", "1000")
	fd, err := unix.Open(scope, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	holder.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	err = holder.Start()
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })

	if _, err := Open(Options{Name: testName(t), Root: "relative/dir"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a relative Root: %v, want ErrInvalid", err)
	}
	m, err := Open(Options{Name: testName(t), Root: scope})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Delegated() || m.Root() != scope {
		t.Fatalf("delegated %v root %q, want true %q (notes %v)", m.Delegated(), m.Root(), scope, m.Notes())
	}
	b, _ := os.ReadFile(filepath.Join(scope, "hold", "cgroup.procs"))
	if pids, _ := parsePids(b); !slices.Contains(pids, holder.Process.Pid) {
		t.Errorf("hold leaf holds %v, want %d", pids, holder.Process.Pid)
	}
	if exists(filepath.Join(scope, "daemon")) {
		t.Error("a daemon leaf was made in the scope: the daemon stays in its own cgroup")
	}
	c, err := m.Create("p", "a", Limits{Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(scope, "agents", "p", "a"); c.Path() != want {
		t.Errorf("agent at %s, want %s", c.Path(), want)
	}
	if m.Mode() == ModeV2 {
		if v, _ := readInt(c.file("pids.max")); v != 8 {
			t.Errorf("pids.max %d, want 8", v)
		}
	}
	// The next instance opens the same root and adopts the agent's cgroup.
	m2, err := Open(Options{Name: testName(t), Root: scope})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := m2.Adopt("p", "a")
	if err != nil {
		t.Fatalf("adopting the agent's cgroup in the next instance: %v", err)
	}
	if c2.Path() != c.Path() {
		t.Errorf("adopted %s, want %s", c2.Path(), c.Path())
	}
	if err := m2.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if exists(filepath.Join(scope, "agents")) || !exists(filepath.Join(scope, "hold")) {
		t.Error("Shutdown must remove agents/ and keep the hold leaf")
	}
}
