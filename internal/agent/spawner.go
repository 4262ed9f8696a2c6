package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spawner threads start agents from a descriptor table of their own.
//
// A child gets a copy of its parent's descriptor table at clone, and at
// exec the kernel closes every close-on-exec descriptor in that copy one
// by one. A daemon with a thousand agents holds four thousand descriptors
// (each agent's pipes and pidfd), so every start paid for copying and
// closing them all: ~20 % of the CPU of a mass restart on a 2-CPU host
// (perf: do_close_on_exec 18.8 %, dup_fd 2.7 %), and a restart of 10 % of
// N agents cost O(N²). A spawner is a goroutine locked to an OS thread
// that unshared its descriptor table (unshare(CLONE_FILES)) and closed in
// it every copy but the Go runtime's: its children copy and close a dozen
// descriptors, however many agents the daemon holds. The child's ends of its pipes and its cgroup cross over to
// the spawner's table as SCM_RIGHTS over a socketpair made before the
// unshare (so both tables hold it), and the spawner closes its copies
// once the child runs. The process stays our child: reaping, pidfds and
// exit statuses are as before.
//
// Go starts new OS threads from a locked thread through its template
// thread (runtime.LockOSThread), so the runtime's other threads never
// inherit a spawner's table; a spawner's goroutine never unlocks, so its
// thread ends with it instead of going back to the scheduler. A spawner
// is never the main thread, whose table is the one /proc/self shows.
type spawner struct {
	sendFD int // main table's end: any thread but the spawner's writes it
	recvFD int // the spawner's end, read on its own thread
	req    chan *spawnRequest
}

type spawnRequest struct {
	path string
	argv []string
	attr syscall.ProcAttr // Files and Sys.CgroupFD are set by the spawner
	// nfds descriptors ride with the request: stdin, stdout, stderr,
	// and the cgroup when Sys.UseCgroupFD.
	nfds int
	pid  int
	err  error
	done chan struct{}
}

var spawners struct {
	once sync.Once
	free chan *spawner // idle spawners; nil when they could not start
	err  error
}

// StartSpawners starts the node's spawner threads now, one per CPU (at
// most 8), and reports why they could not start: agents then start
// through os/exec. Without it they start with the first agent. They live
// as long as the process, like the pollers: a test that checks for
// leaked goroutines and descriptors calls this first.
func StartSpawners() error {
	spawners.once.Do(func() {
		n := min(max(runtime.NumCPU(), 1), 8)
		free := make(chan *spawner, n)
		for range n {
			s, err := newSpawner()
			if err != nil {
				spawners.err = err
				break
			}
			free <- s
		}
		if len(free) > 0 {
			spawners.free = free
		}
	})
	return spawners.err
}

func newSpawner() (*spawner, error) {
	// Go's netpoller makes its descriptors at its first use: make them
	// before the unshare, so that the runtime finds them in both tables
	// whatever thread it runs on.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("spawner: %w", os.NewSyscallError("socketpair", err))
	}
	s := &spawner{sendFD: fds[0], recvFD: fds[1], req: make(chan *spawnRequest)}
	started := make(chan error, 1)
	go s.run(started, nil)
	if err := <-started; err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	// The main table's copy of the spawner's end is not used.
	unix.Close(s.recvFD)
	return s, nil
}

func (s *spawner) run(started chan<- error, onOwnThread chan<- struct{}) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The main thread's table is the one /proc/self shows, which
		// libraries read (cilium/ebpf reads /proc/self/fdinfo): it must
		// stay the daemon's. Held here, it cannot take the spawner,
		// which runs on another thread; then it goes back.
		locked := make(chan struct{})
		go s.run(started, locked)
		<-locked
		runtime.UnlockOSThread()
		return
	}
	if onOwnThread != nil {
		close(onOwnThread)
	}
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		runtime.UnlockOSThread() // the table is still shared: the thread may go back
		started <- fmt.Errorf("spawner: %w", os.NewSyscallError("unshare(CLONE_FILES)", err))
		return
	}
	closeCopies(s.recvFD)
	started <- nil
	for r := range s.req {
		r.pid, r.err = s.spawn(r)
		close(r.done)
	}
}

// closeCopies closes, in the calling thread's own table, every copy of the
// daemon's descriptors but keep and the Go runtime's netpoller (an epoll
// and an eventfd, which the runtime may use on any thread): the agents'
// pipes and pidfds of a daemon that adopted them, its sockets, its BPF
// objects. Each would be copied into every child and closed at its exec.
func closeCopies(keep int) {
	const dir = "/proc/thread-self/fd" // /proc/self is the main thread's table
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // the spawner still works, with a larger table
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || fd == keep {
			continue
		}
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
			continue // gone (ReadDir's own), or maybe the runtime's
		}
		unix.Close(fd)
	}
}

// spawn runs on the spawner's thread: it takes the request's descriptors
// into its own table, forks and execs, and closes them.
func (s *spawner) spawn(r *spawnRequest) (int, error) {
	fds, err := recvFDs(s.recvFD, r.nfds)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err != nil {
		return 0, fmt.Errorf("spawner: %w", err)
	}
	attr := r.attr
	sys := *attr.Sys
	attr.Sys = &sys
	attr.Files = []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	if sys.UseCgroupFD {
		sys.CgroupFD = fds[3]
	}
	sys.PidFD = nil // it would be in this table; the caller opens its own
	pid, err := syscall.ForkExec(r.path, r.argv, &attr)
	if err != nil {
		return 0, &os.PathError{Op: "fork/exec", Path: r.path, Err: err} // as os/exec says it
	}
	return pid, nil
}

// recvFDs reads one message of n descriptors, which land in the calling
// thread's table close-on-exec.
func recvFDs(sock, n int) ([]int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(n*4))
	for {
		_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("recvmsg", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		var fds []int
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			fds = append(fds, got...)
		}
		if len(fds) != n {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("received %d descriptors, want %d", len(fds), n)
		}
		return fds, nil
	}
}

// errNoSpawner means the spawner threads could not start (a kernel or
// sandbox without unshare(CLONE_FILES)): agents start the plain way.
var errNoSpawner = errors.New("no spawner thread")

// spawnProcess starts cmd (resolved by exec.Command, not started), with
// its Stdin, Stdout and Stderr, which must be *os.File, and its
// SysProcAttr (into the cgroup SysProcAttr.CgroupFD when UseCgroupFD),
// from a spawner thread, and returns the child's pid. errNoSpawner means
// no spawner could start.
func spawnProcess(cmd *exec.Cmd) (int, error) {
	if StartSpawners(); spawners.free == nil {
		return 0, errNoSpawner
	}
	if cmd.Err != nil {
		return 0, cmd.Err
	}
	if cmd.Dir != "" {
		// As os.StartProcess: the child's failed chdir would be a bare
		// errno, with no word of the directory.
		if _, err := os.Stat(cmd.Dir); err != nil {
			if pe, ok := err.(*os.PathError); ok {
				pe.Op = "chdir"
			}
			return 0, err
		}
	}
	stdin, stdout, stderr := cmd.Stdin.(*os.File), cmd.Stdout.(*os.File), cmd.Stderr.(*os.File)
	sys := cmd.SysProcAttr
	fds := []int{int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())}
	if sys.UseCgroupFD {
		fds = append(fds, sys.CgroupFD)
	}
	r := &spawnRequest{
		path: cmd.Path,
		argv: cmd.Args,
		attr: syscall.ProcAttr{Dir: cmd.Dir, Env: cmd.Environ(), Sys: sys}, // deduplicated, with PWD, as os/exec starts it
		nfds: len(fds),
		done: make(chan struct{}),
	}
	s := <-spawners.free
	defer func() { spawners.free <- s }()
	// One request at a time per spawner, so the message read is this
	// request's. Sent before the request: the spawner reads it at once.
	err := sendFDs(s.sendFD, fds)
	runtime.KeepAlive(stdin)
	runtime.KeepAlive(stdout)
	runtime.KeepAlive(stderr)
	if err != nil {
		return 0, fmt.Errorf("spawner: %w", err)
	}
	s.req <- r
	<-r.done
	return r.pid, r.err
}

func sendFDs(sock int, fds []int) error {
	for {
		err := unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fds...), nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return os.NewSyscallError("sendmsg", err)
	}
}
