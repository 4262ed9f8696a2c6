package telemetry

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitEvent returns the first event matching match, failing the test after
// a generous deadline. Events that do not match are passed to other.
func waitEvent(tb testing.TB, p *Probes, match func(Event) bool, other func(Event)) Event {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-p.Events():
			if !ok {
				tb.Fatal("events channel closed")
			}
			if match(ev) {
				return ev
			}
			if other != nil {
				other(ev)
			}
		case <-timeout:
			tb.Fatal("no matching event")
		}
	}
}

func TestSyscallCounters(t *testing.T) {
	// Every syscall timed, so that the histogram must hold them all.
	p := loadProbesConfig(t, loadConfig{timeEverySyscall: true})
	watched, unwatched := newTestCgroup(t), newTestCgroup(t)
	if err := p.Watch(watched.ID, ""); err != nil {
		t.Fatal(err)
	}

	const calls, failing = 10000, 100
	runChildIn(t, watched, "syscalls "+strconv.Itoa(calls)+" "+strconv.Itoa(failing))
	c, err := p.Read(watched.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("watched child: %d syscalls, %d errors, p50 %v, p99 %v",
		c.Syscalls, c.SyscallErrors, c.LatencyQuantile(0.5), c.LatencyQuantile(0.99))
	if c.Syscalls < calls+failing {
		t.Errorf("Syscalls = %d, want >= %d", c.Syscalls, calls+failing)
	}
	if c.SyscallErrors < failing {
		t.Errorf("SyscallErrors = %d, want >= %d", c.SyscallErrors, failing)
	}
	var inHist uint64
	for _, n := range c.LatencyHist {
		inHist += n
	}
	if inHist != c.Syscalls {
		t.Errorf("latency histogram holds %d syscalls, counter %d", inHist, c.Syscalls)
	}
	if c.LatencyQuantile(0.5) <= 0 {
		t.Errorf("median latency %v, want > 0", c.LatencyQuantile(0.5))
	}

	// A process in another cgroup adds nothing, and the unwatched cgroup has
	// no counters.
	runChildIn(t, unwatched, "syscalls "+strconv.Itoa(calls)+" 0")
	after, err := p.Read(watched.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after != c {
		t.Errorf("counters moved by an unwatched process: %+v -> %+v", c, after)
	}
	if _, err := p.Read(unwatched.ID); !errors.Is(err, ErrNotWatched) {
		t.Errorf("Read(unwatched) err = %v, want ErrNotWatched", err)
	}

	// Unwatch stops counting; watching again starts from zero.
	if err := p.Unwatch(watched.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(watched.ID); !errors.Is(err, ErrNotWatched) {
		t.Errorf("Read after Unwatch err = %v, want ErrNotWatched", err)
	}
	if err := p.Unwatch(watched.ID); !errors.Is(err, ErrNotWatched) {
		t.Errorf("second Unwatch err = %v, want ErrNotWatched", err)
	}
	if err := p.Watch(watched.ID, ""); err != nil {
		t.Fatal(err)
	}
	if c, err := p.Read(watched.ID); err != nil || c != (Counters{}) {
		t.Errorf("counters after re-Watch = %+v, %v; want zero", c, err)
	}
}

// With sampling on, one syscall in 2^shift is timed; every one is counted.
func TestSyscallLatencySampled(t *testing.T) {
	const shift = 4
	p := loadProbesConfig(t, loadConfig{latencySampleShift: shift})
	cg := newTestCgroup(t)
	if err := p.Watch(cg.ID, ""); err != nil {
		t.Fatal(err)
	}
	const calls, failing = 20000, 100
	runChildIn(t, cg, "syscalls "+strconv.Itoa(calls)+" "+strconv.Itoa(failing))
	c, err := p.Read(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Syscalls < calls+failing || c.SyscallErrors < failing {
		t.Errorf("Syscalls = %d, SyscallErrors = %d; want >= %d, >= %d", c.Syscalls, c.SyscallErrors, calls+failing, failing)
	}
	var inHist uint64
	for _, n := range c.LatencyHist {
		inHist += n
	}
	// Expected Syscalls/16; the bounds are many standard deviations away.
	want := c.Syscalls >> shift
	t.Logf("%d syscalls, %d timed (expected about %d), p50 %v", c.Syscalls, inHist, want, c.LatencyQuantile(0.5))
	if inHist < want/2 || inHist > want*2 {
		t.Errorf("latency histogram holds %d syscalls, want about %d", inHist, want)
	}
	if c.LatencyQuantile(0.5) <= 0 {
		t.Errorf("median latency %v, want > 0", c.LatencyQuantile(0.5))
	}
}

// Cgroup ids that share a bit of the watch filter: unwatching one must not
// stop the counting of the other.
func TestWatchFilterSharedBit(t *testing.T) {
	p := loadProbes(t)
	cg := newTestCgroup(t)
	twin := cg.ID + filterWords*64 // no such cgroup; same filter bit
	w1, b1 := filterBit(cg.ID)
	if w2, b2 := filterBit(twin); w1 != w2 || b1 != b2 {
		t.Fatalf("filterBit(%d) = %d,%#x; filterBit(%d) = %d,%#x", cg.ID, w1, b1, twin, w2, b2)
	}
	for _, id := range []uint64{twin, cg.ID} {
		if err := p.Watch(id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Unwatch(twin); err != nil {
		t.Fatal(err)
	}
	runChildIn(t, cg, "syscalls 1000 0")
	c, err := p.Read(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Syscalls < 1000 {
		t.Errorf("Syscalls = %d after unwatching a cgroup sharing the filter bit, want >= 1000", c.Syscalls)
	}

	// Unwatching the last cgroup of the bit clears it.
	if err := p.Unwatch(cg.ID); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := p.objs.WatchFilter.Lookup(w1, &v); err != nil {
		t.Fatal(err)
	}
	if v != 0 {
		t.Errorf("watch filter word %d = %#x with nothing watched, want 0", w1, v)
	}
}

// A task remembers its counter slot between syscalls; once its cgroup is
// unwatched and the slot goes to another cgroup, its syscalls must not be
// counted there.
func TestSlotReuse(t *testing.T) {
	p := loadProbes(t)
	first, second := newTestCgroup(t), newTestCgroup(t)
	if err := p.Watch(first.ID, ""); err != nil {
		t.Fatal(err)
	}
	cmd, stdin := startBlockedChild(t, first)
	if c, err := p.Read(first.ID); err != nil || c.Syscalls == 0 {
		t.Fatalf("first cgroup: %+v, %v; want syscalls counted", c, err)
	}
	slot := p.watched[first.ID].slot
	if err := p.Unwatch(first.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Watch(second.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := p.watched[second.ID].slot; got != slot {
		t.Fatalf("second cgroup got slot %d, not the freed %d", got, slot)
	}
	stdin.Close() // the child's last syscalls, in the first cgroup
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	c, err := p.Read(second.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Syscalls != 0 {
		t.Errorf("second cgroup counted %d syscalls of a task in the first", c.Syscalls)
	}
}

func TestExitEvents(t *testing.T) {
	t.Run("group_dead", func(t *testing.T) { testExitEvents(t, loadConfig{}) })
	// The path for kernels before 6.16, whose tracepoint lacks group_dead.
	t.Run("leader", func(t *testing.T) { testExitEvents(t, loadConfig{leaderExit: true}) })
}

func testExitEvents(t *testing.T, cfg loadConfig) {
	p := loadProbesConfig(t, cfg)
	for _, err := range p.Unavailable() {
		if strings.Contains(err.Error(), "sched_process_exit") {
			t.Skipf("exit events unavailable: %v", err)
		}
	}
	watched, unwatched := newTestCgroup(t), newTestCgroup(t)
	if err := p.Watch(watched.ID, ""); err != nil {
		t.Fatal(err)
	}

	// An unwatched process exits first; its event must not show up before
	// the watched one's.
	other := childCmd(t, unwatched, "exit 3")
	if err := other.Run(); err == nil {
		t.Fatal("child exit 3 succeeded")
	}
	otherPID := other.Process.Pid

	before := time.Now()
	exited := childCmd(t, watched, "exit 7")
	exited.Run()
	seen := map[int]int{}
	ev := waitEvent(t, p, func(ev Event) bool {
		seen[ev.PID]++
		return ev.PID == exited.Process.Pid
	}, nil)
	after := time.Now()
	if seen[otherPID] != 0 {
		t.Errorf("got an event for the unwatched process %d", otherPID)
	}
	want := Event{Kind: EventExit, CgroupID: watched.ID, PID: exited.Process.Pid, ExitCode: 7}
	got := ev
	got.Time = time.Time{}
	if got != want {
		t.Errorf("exit event = %+v, want %+v", got, want)
	}
	// The kernel timestamp converted to wall clock falls within the run
	// (with slack for the conversion, which reads two clocks).
	if slack := 50 * time.Millisecond; ev.Time.Before(before.Add(-slack)) || ev.Time.After(after.Add(slack)) {
		t.Errorf("event time %v not within [%v, %v]", ev.Time, before, after)
	}

	// SIGKILL, on a multi-threaded (Go) process: exactly one event for it.
	killed := childCmd(t, watched, "block")
	stdin, err := killed.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := killed.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := stdout.Read(make([]byte, 16)); err != nil { // "ready": the runtime's threads run
		t.Fatal(err)
	}
	killed.Process.Kill()
	killed.Wait()
	ev = waitEvent(t, p, func(ev Event) bool { return ev.PID == killed.Process.Pid }, nil)
	if ev.Kind != EventExit || ev.Signal != int(unix.SIGKILL) || ev.ExitCode != 0 || ev.CgroupID != watched.ID {
		t.Errorf("kill event = %+v, want exit by SIGKILL in cgroup %d", ev, watched.ID)
	}

	// A later process's event arrives after any duplicate of the killed one.
	last := childCmd(t, watched, "exit 0")
	last.Run()
	waitEvent(t, p, func(ev Event) bool { return ev.PID == last.Process.Pid }, func(ev Event) {
		if ev.PID == killed.Process.Pid {
			t.Errorf("second event for pid %d: %+v", ev.PID, ev)
		}
	})
}

func TestOOMEvent(t *testing.T) {
	p := loadProbes(t)
	for _, err := range p.Unavailable() {
		if errors.Is(err, ErrNotSupported) && strings.Contains(err.Error(), "mark_victim") {
			t.Skipf("OOM tracepoint unavailable: %v", err)
		}
	}
	cg := newTestCgroup(t)
	if err := p.Watch(cg.ID, ""); err != nil {
		t.Fatal(err)
	}
	const limit = "64M"
	cmd := childCmd(t, cg, "oom")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	limitMemory(t, cg, cmd.Process.Pid, limit)
	stdin.Write([]byte("go\n"))
	ev := waitEvent(t, p, func(ev Event) bool { return ev.PID == cmd.Process.Pid }, nil)
	if ev.Kind != EventOOM || ev.CgroupID != cg.ID || ev.Signal != int(unix.SIGKILL) {
		t.Errorf("first event = %+v, want an OOM kill in cgroup %d", ev, cg.ID)
	}
	ev = waitEvent(t, p, func(ev Event) bool { return ev.PID == cmd.Process.Pid }, nil)
	if ev.Kind != EventExit || ev.Signal != int(unix.SIGKILL) {
		t.Errorf("second event = %+v, want exit by SIGKILL", ev)
	}
	cmd.Wait()
}

// limitMemory caps the memory of pid: with memory.max in the cgroup2
// directory when the memory controller is enabled there, else in a cgroup v1
// memory hierarchy (hybrid hosts), which the test removes again.
func limitMemory(t *testing.T, cg testCgroup, pid int, limit string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cg.Path, "memory.max")); err == nil {
		if err := os.WriteFile(filepath.Join(cg.Path, "memory.max"), []byte(limit), 0); err != nil {
			t.Fatal(err)
		}
		return
	}
	root, err := mountPoint("cgroup", "memory")
	if err != nil {
		t.Skipf("no memory controller in cgroup2 or cgroup v1: %v", err)
	}
	dir := filepath.Join(root, filepath.Base(cg.Path))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeV1Cgroup(t, dir) })
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		err := os.WriteFile(filepath.Join(dir, f), []byte(limit), 0)
		if err != nil && !(f == "memory.memsw.limit_in_bytes" && errors.Is(err, os.ErrNotExist)) {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
}

func removeV1Cgroup(t *testing.T, dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove %s: %v", dir, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetworkCounters(t *testing.T) {
	p := loadProbes(t)
	cg := newTestCgroup(t)
	if err := p.Watch(cg.ID, cg.Path); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	t.Run("bytes", func(t *testing.T) {
		const size = 64 << 10
		before, _ := p.Read(cg.ID)
		done := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- -1
				return
			}
			defer c.Close()
			var n int64
			buf := make([]byte, 32<<10)
			for {
				m, err := c.Read(buf)
				n += int64(m)
				if err != nil {
					done <- n
					return
				}
			}
		}()
		runChildIn(t, cg, "tcp-send "+ln.Addr().String()+" "+strconv.Itoa(size))
		if got := <-done; got != size {
			t.Fatalf("server received %d bytes, want %d", got, size)
		}
		d := mustRead(t, p, cg.ID).Sub(before)
		t.Logf("tx %d bytes / %d packets, rx %d bytes / %d packets", d.TxBytes, d.TxPackets, d.RxBytes, d.RxPackets)
		if d.TxBytes < size || d.TxPackets == 0 {
			t.Errorf("tx = %d bytes, %d packets; want >= %d bytes", d.TxBytes, d.TxPackets, size)
		}
		if d.RxPackets == 0 || d.RxBytes == 0 {
			t.Errorf("rx = %d bytes, %d packets; want the server's SYN-ACK and ACKs", d.RxBytes, d.RxPackets)
		}
	})

	t.Run("reset", func(t *testing.T) {
		before, _ := p.Read(cg.ID)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0) // close sends RST
			c.Close()
		}()
		runChildIn(t, cg, "tcp-reset "+ln.Addr().String())
		if d := mustRead(t, p, cg.ID).Sub(before); d.Resets == 0 {
			t.Errorf("Resets did not move: %+v", d)
		}
	})

	t.Run("retransmit", func(t *testing.T) {
		// A listener with backlog 0 takes one connection into its accept
		// queue and drops the next SYN, which the client retransmits.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 0); err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
		before, _ := p.Read(cg.ID)
		runChildIn(t, cg, "tcp-syn-retransmit "+addr)
		if d := mustRead(t, p, cg.ID).Sub(before); d.Retransmits == 0 {
			t.Errorf("Retransmits did not move: %+v", d)
		}
	})
}

func mustRead(tb testing.TB, p *Probes, id uint64) Counters {
	tb.Helper()
	c, err := p.Read(id)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestWatchErrors(t *testing.T) {
	// More slots than the object is built with: the maps are sized at load.
	const slots = 3000
	p := loadProbesOptions(t, Options{Slots: slots}, loadConfig{})
	cg := newTestCgroup(t)
	if err := p.Watch(cg.ID, cg.Path); err != nil {
		t.Fatal(err)
	}
	if err := p.Watch(cg.ID, cg.Path); err != nil {
		t.Errorf("second Watch: %v", err)
	}
	// A path that is not a cgroup2 directory cannot take the net counters.
	if err := p.Watch(cg.ID+1<<40, t.TempDir()); err == nil {
		t.Error("Watch on a plain directory succeeded")
	}
	// Every slot in use.
	var n int
	for id := uint64(1 << 50); ; id++ {
		err := p.Watch(id, "")
		if errors.Is(err, ErrWatchLimit) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n++; n > 1<<20 {
			t.Fatal("no watch limit")
		}
	}
	if n+1 != slots {
		t.Errorf("watched %d cgroups before ErrWatchLimit, want the %d slots", n+1, slots)
	}
	// A slot beyond the object's own 1,024 counts.
	if c, err := p.Read(1<<50 + slots - 2); err != nil {
		t.Errorf("reading the last slot's counters: %v %+v", err, c)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Watch(cg.ID, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close err = %v, want ErrClosed", err)
	}
	if _, ok := <-p.Events(); ok {
		t.Error("Events not closed by Close")
	}
}

func TestLoadUnprivileged(t *testing.T) {
	dir, err := os.MkdirTemp("", "telemetry-bpffs-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		_, err := Load(t.Context(), Options{BPFFS: dir, Logger: testLogger(t)})
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("Load as uid %d: %v, want ErrNotSupported", os.Geteuid(), err)
		}
		t.Logf("Load as uid %d: %v", os.Geteuid(), err)
		return
	}
	// As root, drop to nobody in a child and load there.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=load-unprivileged "+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unprivileged Load: %v (%s)", err, out)
	}
	t.Logf("unprivileged Load: %s", strings.TrimSpace(string(out)))
}
