package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runChild is the body of a test child process. mode is "name arg...".
func runChild(mode string) int {
	args := strings.Fields(mode)
	atoi := func(i int) int {
		n, err := strconv.Atoi(args[i])
		if err != nil {
			panic(err)
		}
		return n
	}
	switch args[0] {
	case "syscalls": // syscalls OK ERRS: OK cheap syscalls, ERRS failing ones
		for range atoi(1) {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
		for range atoi(2) {
			syscall.RawSyscall(syscall.SYS_CLOSE, ^uintptr(0), 0, 0) // EBADF
		}
		return 0
	case "exit": // exit CODE
		return atoi(1)
	case "block": // says "ready", then waits for stdin to close (or a signal)
		fmt.Println("ready")
		var b [1]byte
		os.Stdin.Read(b[:])
		return 0
	case "oom": // on a line from stdin, touch memory until killed
		var b [1]byte
		os.Stdin.Read(b[:])
		var hold [][]byte
		for {
			chunk := make([]byte, 1<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			hold = append(hold, chunk)
		}
	case "tcp-send": // tcp-send ADDR BYTES
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if _, err := c.Write(make([]byte, atoi(2))); err != nil {
			return 3
		}
		c.Close()
		return 0
	case "tcp-reset": // tcp-reset ADDR: exits 0 once the peer reset the connection
		c, err := net.Dial("tcp", args[1])
		if errors.Is(err, syscall.ECONNRESET) {
			return 0 // the reset beat the end of connect
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		var b [1]byte
		_, err = c.Read(b[:])
		if errors.Is(err, syscall.ECONNRESET) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "read:", err)
		return 3
	case "tcp-syn-retransmit": // tcp-syn-retransmit ADDR: the second SYN goes unanswered
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer c.Close()
		ap, err := net.ResolveTCPAddr("tcp4", args[1])
		if err != nil {
			return 2
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return 2
		}
		sa := &unix.SockaddrInet4{Port: ap.Port}
		copy(sa.Addr[:], ap.IP.To4())
		if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
			return 3
		}
		time.Sleep(1500 * time.Millisecond) // the initial SYN timeout is 1 s
		unix.Close(fd)
		return 0
	case "load-unprivileged": // load-unprivileged BPFFS: exits 0 if Load says ErrNotSupported
		if err := syscall.Setgid(65534); err != nil {
			return 2
		}
		if err := syscall.Setuid(65534); err != nil {
			return 2
		}
		p, err := Load(context.Background(), Options{BPFFS: args[1]})
		if err == nil {
			p.Close()
			return 1
		}
		fmt.Println(err)
		if !errors.Is(err, ErrNotSupported) {
			return 1
		}
		return 0
	case "loop": // loop N: N getppid calls; prints wall and thread CPU ns
		n := atoi(1)
		fmt.Println(timed(func() {
			for range n {
				syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
			}
		}))
		return 0
	case "mixed": // mixed UNITS SPIN: each unit is 50 getppid and SPIN rounds of work; prints wall and CPU ns
		units, spin := atoi(1), atoi(2)
		fmt.Println(timed(func() {
			for range units {
				for range syscallsPerUnit {
					syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
				}
				spinSink = work(spin)
			}
		}))
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 100
}

// syscallsPerUnit is the syscalls in one millisecond unit of the mixed
// benchmark child: 50 per ms is 50,000 syscalls/s.
const syscallsPerUnit = 50

var spinSink uint64

// timed runs f on a locked OS thread and returns "wallns cpuns": the wall
// time and the CPU time (user and system) of the thread, which other load on
// the machine does not inflate.
func timed(f func()) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &r0)
	start := time.Now()
	f()
	wall := time.Since(start)
	unix.Getrusage(unix.RUSAGE_THREAD, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	return fmt.Sprintf("%d %d", wall.Nanoseconds(), cpu.Nanoseconds())
}

// work is a fixed amount of CPU work that makes no syscalls.
func work(rounds int) uint64 {
	x := uint64(88172645463325252)
	for range rounds {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}
