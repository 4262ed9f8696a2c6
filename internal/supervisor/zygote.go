package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/agent"
	"github.com/resilienced/resilienced/internal/config"
	"golang.org/x/sys/unix"
)

// Zygotes (start: zygote, docs/PROTOCOL.md). Most of an agent's start is
// its own: an interpreter that starts and imports its libraries, model
// clients that connect. A zygote does that once, then forks a ready child
// for each agent the pool starts, as gunicorn's preload or Android's
// zygote. The daemon asks over a SOCK_SEQPACKET socket (the zygote's fd
// RESILIENT_ZYGOTE_FD): a message {"id": AGENT} carrying the child's stdin,
// stdout and stderr and, where one file places it, its cgroup's
// cgroup.procs (SCM_RIGHTS); the answer {"id": AGENT, "pid": PID}. The
// child serves nothing outside its cgroup: it enters it itself before
// reading the initialize written ahead (zygoteProcess), or the daemon
// places it before sending initialize (v1 directories). The zygote
// runs with the daemon's limits, is started when the pool's first agent
// is, again after it dies or the pool's command changes, and is killed
// when the pool stops.

// ErrZygote is a zygote that could not start or fork.
var ErrZygote = errors.New("zygote")

// zygoteStepHook, when set (BenchmarkZygoteColdReplacement sets it), is
// told when each step of a zygote start ends, so that a benchmark can time
// the steps apart.
var zygoteStepHook atomic.Pointer[func(agent, step string)]

// zygoteTwoHandoffs, when set (by the same benchmark, for its baseline),
// makes every zygote start take the two hand-offs of a cgroup with v1
// directories: the fork, the daemon places the child, then initialize.
var zygoteTwoHandoffs atomic.Bool

func zygoteStep(agent, step string) {
	if f := zygoteStepHook.Load(); f != nil {
		(*f)(agent, step)
	}
}

// zygote is a pool's zygote process and our end of its socket.
type zygote struct {
	mu   sync.Mutex // one fork request at a time
	cmd  *exec.Cmd
	conn *net.UnixConn
	argv []string
	env  map[string]string
	done chan struct{} // closed once it exited
}

// attacher is a sandbox that can move a running process into itself
// (cgroup2 and v1): a zygote's child is not started into its cgroup.
type attacher interface{ Attach(pid int) error }

// selfPlacer is a sandbox that a zygote's child can enter itself, through
// its cgroup2 cgroup.procs opened by us (cgroup.Cgroup without v1
// directories), and that says whether it holds a process.
type selfPlacer interface {
	attacher
	ProcsFile() (*os.File, error)
	Holds(pid int) (bool, error)
}

// zygoteProcess starts the agent of cfg as a child of the pool's zygote,
// starting the zygote first if it is not running, and places it in sb.
//
// Where the child can place itself (a sandbox that is only a cgroup2
// directory, or none), the start is one hand-off: initialize is written to
// the child's stdin and the cgroup's cgroup.procs sent with the fork
// request, so the child enters its cgroup, reads initialize and answers,
// with no round trip through the daemon between its fork and its
// handshake. The handshake's wait then checks that the child is in its
// cgroup (a zygote that ignores the file gets it placed then, having
// answered nothing but initialize outside). Otherwise (v1 directories on a
// hybrid host) the daemon places the child after the fork, then shakes
// hands.
func (p *Pool) zygoteProcess(cfg agent.Config, pc config.Pool, cred *syscall.Credential, sb Sandbox, down chan struct{}) (process, error) {
	var at attacher
	if sb != nil {
		var ok bool
		if at, ok = sb.(attacher); !ok {
			return nil, fmt.Errorf("%w: the sandbox cannot take a running process", ErrZygote)
		}
	}
	z, err := p.runningZygote(pc, cred, down)
	if err != nil {
		return nil, err
	}
	zygoteStep(cfg.ID, "zygote")
	var procs *os.File
	sp, self := sb.(selfPlacer)
	oneHandoff := !zygoteTwoHandoffs.Load()
	if self && oneHandoff {
		if procs, err = sp.ProcsFile(); err != nil {
			self, procs = false, nil
		} else {
			defer procs.Close()
		}
	}
	if (sb == nil || self) && oneHandoff {
		a, hs, err := agent.StartForkedHandshaking(cfg, func(in, out, errw *os.File) (int, error) {
			return z.fork(cfg.ID, pc.StartTimeout, in, out, errw, procs)
		})
		if err != nil {
			return nil, err
		}
		zygoteStep(cfg.ID, "forked")
		return &handshakingProcess{realProcess{a}, hs, sp}, nil
	}
	a, err := agent.StartForked(cfg, func(in, out, errw *os.File) (int, error) {
		return z.fork(cfg.ID, pc.StartTimeout, in, out, errw, nil)
	})
	if err != nil {
		return nil, err
	}
	zygoteStep(cfg.ID, "forked")
	if at != nil {
		if err := at.Attach(a.PID()); err != nil {
			syscall.Kill(a.PID(), syscall.SIGKILL)
			a.Close()
			return nil, fmt.Errorf("%w: placing child %d in its cgroup: %w", ErrZygote, a.PID(), err)
		}
		zygoteStep(cfg.ID, "placed")
	}
	return realProcess{a}, nil
}

// handshakingProcess is a zygote's child whose initialize went ahead of
// its fork (agent.StartForkedHandshaking).
type handshakingProcess struct {
	realProcess
	hs *agent.Pending
	sb selfPlacer // nil: no cgroup
}

// Initialize waits for the answer to the initialize sent ahead, then makes
// sure the child is in its cgroup, placing it if it did not place itself.
func (h *handshakingProcess) Initialize(ctx context.Context) error {
	hs := h.hs
	if hs == nil {
		return h.realProcess.Initialize(ctx)
	}
	h.hs = nil
	_, err := hs.Wait(ctx, nil)
	hs.Close()
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if h.sb == nil {
		return nil
	}
	pid := h.PID()
	if in, err := h.sb.Holds(pid); err == nil && in {
		zygoteStep(h.ID(), "placed-itself")
		return nil
	}
	if err := h.sb.Attach(pid); err != nil {
		return fmt.Errorf("%w: placing child %d in its cgroup: %w", ErrZygote, pid, err)
	}
	zygoteStep(h.ID(), "placed")
	return nil
}

// runningZygote returns the pool's zygote for pc, started if need be.
func (p *Pool) runningZygote(pc config.Pool, cred *syscall.Credential, down chan struct{}) (*zygote, error) {
	p.zygMu.Lock()
	defer p.zygMu.Unlock()
	if z := p.zyg; z != nil {
		select {
		case <-z.done:
		default:
			if slices.Equal(z.argv, pc.Command) && maps.Equal(z.env, pc.Env) {
				return z, nil
			}
			z.kill() // the command changed (a reload)
		}
		p.zyg = nil
	}
	z, err := startZygote(p, pc, cred)
	if err != nil {
		return nil, err
	}
	p.zyg = z
	p.goTracked(func() {
		select {
		case <-down:
			z.kill()
		case <-z.done:
		}
		<-z.done
	})
	return z, nil
}

func startZygote(p *Pool, pc config.Pool, cred *syscall.Credential) (*zygote, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: socketpair: %w", ErrZygote, err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "zygote"), os.NewFile(uintptr(fds[1]), "zygote-child")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrZygote, err)
	}
	cmd := exec.Command(pc.Command[0], pc.Command[1:]...)
	cmd.Dir = pc.Dir
	cmd.Env = os.Environ()
	for k, v := range pc.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "RESILIENT_ZYGOTE_FD=3", "RESILIENT_POOL="+p.name)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %w", ErrZygote, err)
	}
	if err := cmd.Start(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: start %q: %w", ErrZygote, pc.Command[0], err)
	}
	z := &zygote{cmd: cmd, conn: c.(*net.UnixConn), argv: slices.Clone(pc.Command), env: pc.Env, done: make(chan struct{})}
	log := p.log.With("zygote", cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Info(sc.Text(), "source", "stderr")
		}
		err := cmd.Wait()
		z.conn.Close()
		log.Info("zygote exited", "status", fmt.Sprint(err))
		close(z.done)
	}()
	p.log.Info("zygote started", "pid", cmd.Process.Pid)
	return z, nil
}

// fork asks the zygote for a child on the given stdio and returns its pid;
// procs, when not nil, is the cgroup.procs the child enters itself.
func (z *zygote) fork(id string, timeout time.Duration, in, out, errw, procs *os.File) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	req, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	fds := []int{int(in.Fd()), int(out.Fd()), int(errw.Fd())}
	if procs != nil {
		fds = append(fds, int(procs.Fd()))
	}
	z.conn.SetDeadline(time.Now().Add(timeout))
	zygoteStep(id, "request")
	if _, _, err := z.conn.WriteMsgUnix(req, unix.UnixRights(fds...), nil); err != nil {
		return 0, fmt.Errorf("%w: asking for a child: %w", ErrZygote, err)
	}
	buf := make([]byte, 4096)
	n, err := z.conn.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("%w: no answer to the fork request: %w", ErrZygote, err)
	}
	var rep struct {
		ID    string `json:"id"`
		PID   int    `json:"pid"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(buf[:n], &rep); err != nil {
		return 0, fmt.Errorf("%w: answer %.80q is not JSON: %w", ErrZygote, buf[:n], err)
	}
	switch {
	case rep.Error != "":
		return 0, fmt.Errorf("%w: %s", ErrZygote, rep.Error)
	case rep.ID != id || rep.PID <= 0:
		return 0, fmt.Errorf("%w: answer %.80q does not name %s and a pid", ErrZygote, buf[:n], id)
	}
	return rep.PID, nil
}

// kill kills the zygote (its children live on, each in its own cgroup).
func (z *zygote) kill() {
	z.cmd.Process.Signal(syscall.SIGKILL)
}

// downChan is the channel closed when the pool stops or fails.
func (p *Pool) downChan() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}
