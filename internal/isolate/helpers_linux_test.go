//go:build linux

package isolate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the process put in test cgroups: with
// helperEnv set, TestMain runs a helper instead of the tests.
const helperEnv = "ISOLATE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// runHelper is the child side. "dial ADDR" connects over TCP and prints
// "ok <greeting>" or "err <error>". "udp ADDR" binds a UDP socket, prints
// "ready <port>", then answers commands on stdin: "poll" reads what has
// already arrived, "wait" waits for a datagram; both print "got <data>" or
// "none".
func runHelper(mode, addr string) int {
	switch mode {
	case "dial", "dial-blocked":
		// A dropped SYN is retransmitted, not refused: when the dial is
		// expected to be blocked, waiting long for it is pointless.
		timeout := 5 * time.Second
		if mode == "dial-blocked" {
			timeout = 500 * time.Millisecond
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			fmt.Println("err", err)
			return 0
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("err", err)
			return 0
		}
		fmt.Println("ok", strings.TrimSpace(line))
		return 0
	case "udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			fmt.Println("err", err)
			return 1
		}
		defer pc.Close()
		fmt.Println("ready", pc.LocalAddr().(*net.UDPAddr).Port)
		in := bufio.NewScanner(os.Stdin)
		buf := make([]byte, 1500)
		for in.Scan() {
			wait := time.Millisecond
			if in.Text() == "wait" {
				wait = 5 * time.Second
			}
			_ = pc.SetReadDeadline(time.Now().Add(wait))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				fmt.Println("none")
				continue
			}
			fmt.Println("got", string(buf[:n]))
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", mode)
	return 2
}

// requireBPF skips unless the process may load BPF and create cgroups,
// namespaces and bpffs mounts.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: BPF programs, cgroups, network namespaces and bpffs mounts")
	}
	if _, err := cgroup2Mount(); err != nil {
		t.Skipf("needs cgroup v2: %v", err)
	}
}

// cgroup2Mount finds the cgroup v2 mount in /proc/self/mountinfo.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if f := strings.Fields(post); len(f) > 0 && f[0] == "cgroup2" {
			if g := strings.Fields(pre); len(g) >= 5 {
				return g[4], nil
			}
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

// selfCgroupID returns the id of the cgroup v2 the test process is in.
func selfCgroupID(t testing.TB) uint64 {
	t.Helper()
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			id, err := cgroupID(filepath.Join(mnt, rest))
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	t.Fatal("no cgroup v2 line in /proc/self/cgroup")
	return 0
}

// newTestCgroup creates an empty cgroup v2 directory, removed (after killing
// whatever is left in it) at cleanup.
func newTestCgroup(t testing.TB) string {
	t.Helper()
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(mnt, fmt.Sprintf("rtest-isolate-%08x", rand.Uint32()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for range 100 {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("cannot remove test cgroup %s", dir)
	})
	return dir
}

// newBPFFS mounts a private bpffs instance; unmounting it at cleanup
// releases every pin made in it.
func newBPFFS(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bpffs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestSwitch returns a Switch on bpffs (a fresh private one if empty),
// closed at cleanup.
func newTestSwitch(t testing.TB, bpffs, stateDir string) *Switch {
	t.Helper()
	if bpffs == "" {
		bpffs = newBPFFS(t)
	}
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	s, err := New(context.Background(), Options{BPFFS: bpffs, StateDir: stateDir, Logger: testLogger(t)})
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("BPF not usable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// peerHost is a network namespace joined to this one by a veth pair: a
// /30 with hostIP on this side and peerIP inside.
type peerHost struct {
	ns       netns.NsHandle
	nsName   string
	hostIf   string
	prefix   netip.Prefix
	hostIP   netip.Addr
	peerIP   netip.Addr
	hostLink netlink.Link
}

func newPeerHost(t testing.TB) *peerHost {
	t.Helper()
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	p := &peerHost{nsName: "rtest-" + tag, hostIf: "rth" + tag}
	base := netip.AddrFrom4([4]byte{10, 213, byte(rand.IntN(256)), byte(rand.IntN(64) * 4)})
	p.prefix = netip.PrefixFrom(base, 30)
	p.hostIP = base.Next()
	p.peerIP = p.hostIP.Next()

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.NewNamed(p.nsName)
	if serr := netns.Set(orig); serr != nil {
		// This thread is stuck in the new namespace: never reuse it.
		t.Fatalf("return to the original netns: %v", serr)
	}
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	p.ns = ns
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(p.hostIf); err == nil {
			_ = netlink.LinkDel(l)
		}
		ns.Close()
		if err := netns.DeleteNamed(p.nsName); err != nil {
			t.Errorf("delete netns %s: %v", p.nsName, err)
		}
	})

	peerIf := "rtp" + tag
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.hostIf}, PeerName: peerIf, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	host, err := netlink.LinkByName(p.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	p.hostLink = host
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(p.hostIP, 30))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, err := h.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(p.peerIP, 30))}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{peerIf, "lo"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// inNS runs f on a thread in the peer's namespace. Sockets created there
// stay in that namespace when f returns.
func (p *peerHost) inNS(t testing.TB, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(p.ns); err != nil {
		t.Fatal(err)
	}
	f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked so that the runtime discards it.
		runtime.LockOSThread()
		t.Fatalf("return to the original netns: %v", err)
	}
}

// serveTCP starts a TCP server in the peer's namespace that greets every
// connection with greeting; it returns the server's address.
func (p *peerHost) serveTCP(t testing.TB, greeting string) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	var err error
	p.inNS(t, func() { ln, err = net.Listen("tcp", netip.AddrPortFrom(p.peerIP, 0).String()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveGreeting(ln, greeting)
	return netip.MustParseAddrPort(ln.Addr().String())
}

func serveGreeting(ln net.Listener, greeting string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, greeting+"\n")
		c.Close()
	}
}

// sendUDP sends one datagram from the peer's namespace to dst.
func (p *peerHost) sendUDP(t testing.TB, dst netip.AddrPort, msg string) {
	t.Helper()
	var c net.Conn
	var err error
	p.inNS(t, func() { c, err = net.Dial("udp", dst.String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// startInCgroup starts the test binary as helper mode with arg, inside the
// cgroup.
func startInCgroup(t testing.TB, cgroup, mode, arg string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	fd, err := unix.Open(cgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(stdout)
}

// dialFrom connects to addr from a process in the cgroup and returns "ok
// <greeting>" or "err <error>".
func dialFrom(t testing.TB, cgroup string, addr netip.AddrPort) string {
	t.Helper()
	return dial(t, cgroup, "dial", addr)
}

// dialBlocked is dialFrom for a connection that should not get through.
func dialBlocked(t testing.TB, cgroup string, addr netip.AddrPort) string {
	t.Helper()
	return dial(t, cgroup, "dial-blocked", addr)
}

func dial(t testing.TB, cgroup, mode string, addr netip.AddrPort) string {
	t.Helper()
	cmd, _, out := startInCgroup(t, cgroup, mode, addr.String())
	var line string
	if out.Scan() {
		line = out.Text()
	}
	_ = cmd.Wait()
	if line == "" {
		t.Fatalf("dial helper printed nothing")
	}
	return line
}

// udpReceiver is a helper process in a cgroup with a bound UDP socket.
type udpReceiver struct {
	t     testing.TB
	stdin io.Writer
	out   *bufio.Scanner
	port  uint16
}

func startUDPReceiver(t testing.TB, cgroup string, ip netip.Addr) *udpReceiver {
	t.Helper()
	_, stdin, out := startInCgroup(t, cgroup, "udp", netip.AddrPortFrom(ip, 0).String())
	if !out.Scan() {
		t.Fatal("udp helper printed nothing")
	}
	var port uint16
	if _, err := fmt.Sscanf(out.Text(), "ready %d", &port); err != nil {
		t.Fatalf("udp helper: %q", out.Text())
	}
	return &udpReceiver{t: t, stdin: stdin, out: out, port: port}
}

// ask sends "poll" or "wait" and returns the answer.
func (r *udpReceiver) ask(cmd string) string {
	r.t.Helper()
	if _, err := fmt.Fprintln(r.stdin, cmd); err != nil {
		r.t.Fatal(err)
	}
	if !r.out.Scan() {
		r.t.Fatal("udp helper exited")
	}
	return r.out.Text()
}

// eventually polls cond until it holds or 10 s have passed. It waits for
// the kernel to do something asynchronous; it never asserts a duration.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !poll(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// poll reports whether cond held within 10 s.
func poll(cond func() bool) bool {
	for range 1000 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
