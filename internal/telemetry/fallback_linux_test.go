package telemetry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestProcStats(t *testing.T) {
	before, err := ProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSBytes == 0 || before.Threads < 1 || before.Processes != 1 || before.OpenFDs < 3 {
		t.Errorf("own process: %+v; want RSS > 0, threads >= 1, 1 process, >= 3 fds", before)
	}
	const extra = 8
	for range extra {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	after, err := ProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.OpenFDs < before.OpenFDs+extra {
		t.Errorf("open fds %d after opening %d more than %d", after.OpenFDs, extra, before.OpenFDs)
	}
	if after.CPUSeconds < before.CPUSeconds {
		t.Errorf("CPU time went backwards: %v -> %v", before.CPUSeconds, after.CPUSeconds)
	}

	if _, err := ProcStats(1 << 30); err == nil {
		t.Error("ProcStats of a pid that cannot exist succeeded")
	}
}

func TestReadPSI(t *testing.T) {
	sys, err := ReadPSI("")
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("no PSI on this kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if sys.Scope != "system" {
		t.Errorf("Scope = %q, want system", sys.Scope)
	}
	if sys.CPU.Some.Total == 0 && sys.Memory.Some.Total == 0 && sys.IO.Some.Total == 0 {
		t.Logf("system PSI all zero: %+v", sys)
	}

	// A directory without *.pressure files falls back to the system figures.
	if psi, err := ReadPSI(t.TempDir()); err != nil || psi.Scope != "system" {
		t.Errorf("plain directory: %+v, %v; want system scope", psi, err)
	}

	// A cgroup with its own files, written here as the kernel does.
	dir := t.TempDir()
	line := "some avg10=12.50 avg60=1.00 avg300=0.10 total=5000\nfull avg10=2.00 avg60=0.00 avg300=0.00 total=100\n"
	for _, f := range []string{"cpu.pressure", "memory.pressure", "io.pressure"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	psi, err := ReadPSI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if psi.Scope != "cgroup" || psi.Memory.Some.Avg10 != 12.5 || psi.IO.Full.Total != 100*time.Microsecond {
		t.Errorf("cgroup PSI = %+v", psi)
	}

	if err := os.WriteFile(filepath.Join(dir, "io.pressure"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPSI(dir); err == nil {
		t.Error("malformed io.pressure accepted")
	}
}

func TestCgroupStats(t *testing.T) {
	requireRoot(t)
	cg := newTestCgroup(t)
	cmd, stdin := startBlockedChild(t, cg)
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()

	s, err := CgroupProcStats(cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Processes != 1 || s.RSSBytes == 0 || s.Threads < 1 {
		t.Errorf("cgroup with one child: %+v", s)
	}

	// The cgroup2 directory's own PSI files, when the kernel has them.
	if _, err := os.Stat(filepath.Join(cg.Path, "cpu.pressure")); err == nil {
		psi, err := ReadPSI(cg.Path)
		if err != nil || psi.Scope != "cgroup" {
			t.Errorf("ReadPSI(test cgroup) = %+v, %v; want cgroup scope", psi, err)
		}
	}

	c := Collector{}
	st, err := c.Collect(Agent{CgroupPath: cg.Path})
	if err != nil {
		t.Fatal(err)
	}
	if !st.HaveProc || st.Proc.Processes != 1 || st.HaveRates {
		t.Errorf("Collect without eBPF = %+v", st)
	}
}

// fakeCounters is a CounterReader with settable counters.
type fakeCounters struct {
	c   Counters
	err error
}

func (f *fakeCounters) Read(uint64) (Counters, error) { return f.c, f.err }

func TestCollector(t *testing.T) {
	clock := &fakeClock{t: time.Unix(5000, 0)}
	counters := &fakeCounters{}
	c := Collector{Probes: counters, Now: clock.Now}
	agent := Agent{CgroupID: 42, PID: os.Getpid()}

	s, err := c.Collect(agent)
	if err != nil {
		t.Fatal(err)
	}
	if s.HaveRates || !s.HaveProc || s.Proc.Processes != 1 || !s.Time.Equal(clock.t) {
		t.Errorf("first Collect = %+v; want procfs stats and no rates yet", s)
	}
	clock.Advance(time.Second)
	counters.c.Syscalls = 300
	s, err = c.Collect(agent)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HaveRates || s.Rates.SyscallsPerSec != 300 {
		t.Errorf("second Collect rates = %+v (have %v), want 300 syscalls/s", s.Rates, s.HaveRates)
	}

	// eBPF failing leaves the other sources.
	counters.err = ErrNotWatched
	s, err = c.Collect(agent)
	if err != nil || s.HaveRates || !s.HaveProc {
		t.Errorf("Collect with unwatched cgroup = %+v, %v", s, err)
	}

	// A vanished process and no counters leave only the system PSI, or an
	// error when this kernel has no PSI either.
	c.Forget(agent)
	s, err = (&Collector{Probes: counters}).Collect(Agent{CgroupID: 42, PID: 1 << 30})
	if s.HaveRates || s.HaveProc || s.HavePSI == (err != nil) {
		t.Errorf("Collect of a vanished agent = %+v, %v; want PSI only or an error", s, err)
	}
}
