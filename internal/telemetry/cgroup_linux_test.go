package telemetry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountPoint returns the first mount point of a filesystem type in
// /proc/self/mountinfo whose super options contain option (if not empty).
func mountPoint(fstype, option string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || tail[0] != fstype {
			continue
		}
		if option != "" && !contains(strings.Split(tail[2], ","), option) {
			continue
		}
		return unescapeMount(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no %s mount with %q", fstype, option)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unescapeMount undoes the octal escapes of mountinfo (\040 for space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// requireRoot skips the test unless it runs as root on a host with cgroup2.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loads eBPF programs and creates cgroups")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		tb.Skipf("needs kernel BTF: %v", err)
	}
	if _, err := mountPoint("cgroup2", ""); err != nil {
		tb.Skipf("needs cgroup2: %v", err)
	}
}

// loadProbes loads the probes with bpffs on a private mount point that the
// test unmounts again, or skips when eBPF is not supported here.
func loadProbes(tb testing.TB) *Probes {
	tb.Helper()
	return loadProbesConfig(tb, loadConfig{})
}

func loadProbesConfig(tb testing.TB, cfg loadConfig) *Probes {
	tb.Helper()
	return loadProbesOptions(tb, Options{}, cfg)
}

// loadProbesOptions is loadProbes with opts, whose BPFFS and Logger it sets.
func loadProbesOptions(tb testing.TB, opts Options, cfg loadConfig) *Probes {
	tb.Helper()
	requireRoot(tb)
	bpffs := tb.TempDir()
	opts.BPFFS, opts.Logger = bpffs, testLogger(tb)
	p, err := load(tb.Context(), opts, cfg)
	if errors.Is(err, ErrNotSupported) {
		unix.Unmount(bpffs, 0)
		tb.Skipf("eBPF not supported here: %v", err)
	}
	if err != nil {
		unix.Unmount(bpffs, 0)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if err := unix.Unmount(bpffs, 0); err != nil {
			tb.Errorf("unmount bpffs: %v", err)
		}
	})
	for _, err := range p.Unavailable() {
		tb.Logf("unavailable: %v", err)
	}
	return p
}

// testLogger logs into the test's output.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var cgroupSeq atomic.Int64

// testCgroup is a cgroup2 directory made for one test.
type testCgroup struct {
	Path string
	ID   uint64
}

// newTestCgroup creates a cgroup2 directory that is emptied (cgroup.kill)
// and removed when the test ends.
func newTestCgroup(tb testing.TB) testCgroup {
	tb.Helper()
	root, err := mountPoint("cgroup2", "")
	if err != nil {
		tb.Skipf("needs cgroup2: %v", err)
	}
	dir := filepath.Join(root, fmt.Sprintf("telemetry-test-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { removeCgroup(tb, dir) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		tb.Fatal(err)
	}
	return testCgroup{Path: dir, ID: st.Ino}
}

// removeCgroup kills what is left in dir and removes it.
func removeCgroup(tb testing.TB, dir string) {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		// cgroup.kill appeared in Linux 5.14; fall back to killing the pids.
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			tb.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childCmd returns a command that re-executes the test binary as a child in
// mode (see runChild), placed into cg at fork time (clone3 CLONE_INTO_CGROUP).
func childCmd(tb testing.TB, cg testCgroup, mode string) *exec.Cmd {
	tb.Helper()
	fd, err := os.Open(cg.Path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fd.Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	return cmd
}

// startBlockedChild starts a child in cg that blocks on its stdin once its
// runtime is up; closing stdin lets it exit.
func startBlockedChild(tb testing.TB, cg testCgroup) (*exec.Cmd, io.WriteCloser) {
	tb.Helper()
	cmd := childCmd(tb, cg, "block")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	if _, err := stdout.Read(make([]byte, 16)); err != nil { // "ready": the runtime is up
		tb.Fatal(err)
	}
	return cmd, stdin
}

// runChildIn runs a child to completion and fails the test if it fails.
func runChildIn(tb testing.TB, cg testCgroup, mode string) {
	tb.Helper()
	if out, err := childCmd(tb, cg, mode).Output(); err != nil {
		tb.Fatalf("child %q: %v (output %q)", mode, err, out)
	}
}
