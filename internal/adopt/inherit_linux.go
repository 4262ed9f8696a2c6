package adopt

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EnvHandover names the descriptors a previous instance handed to a
// re-executed binary, from fd 3 on, separated by ':' as LISTEN_FDNAMES.
const EnvHandover = "RESILIENT_HANDOVER_FDNAMES"

// EnvReady is the number of the descriptor on which a re-executed binary
// writes one byte once it serves (see cmd/resilienced).
const EnvReady = "RESILIENT_HANDOVER_READY_FD"

const firstFD = 3

// Inherited returns the descriptors this process inherited, with their
// names: from systemd (LISTEN_FDS for this pid, named by LISTEN_FDNAMES:
// the API socket's, then the store's) or from a previous instance's
// handover ($RESILIENT_HANDOVER_FDNAMES). The variables are unset, so
// that no agent inherits them, and the descriptors are close-on-exec.
func Inherited() ([]Named, error) {
	defer func() {
		for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", EnvHandover} {
			os.Unsetenv(v)
		}
	}()
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err == nil && pid == os.Getpid() {
		n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("adopt: LISTEN_FDS=%q", os.Getenv("LISTEN_FDS"))
		}
		var names []string
		if v := os.Getenv("LISTEN_FDNAMES"); v != "" {
			names = strings.Split(v, ":")
		}
		return wrap(n, names), nil
	}
	if v, ok := os.LookupEnv(EnvHandover); ok {
		var names []string
		if v != "" {
			names = strings.Split(v, ":")
		}
		return wrap(len(names), names), nil
	}
	return nil, nil
}

// HandoverEnv is the environment entry naming files handed over in order
// from fd 3.
func HandoverEnv(named []Named) string {
	names := make([]string, len(named))
	for i, n := range named {
		names[i] = n.Name
	}
	return EnvHandover + "=" + strings.Join(names, ":")
}

func wrap(n int, names []string) []Named {
	out := make([]Named, 0, n)
	for i := range n {
		fd := firstFD + i
		unix.CloseOnExec(fd)
		// Pipes and sockets go into Go's netpoller only when non-blocking;
		// the previous instance's were, but nothing guarantees it.
		unix.SetNonblock(fd, true)
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		out = append(out, Named{Name: name, File: os.NewFile(uintptr(fd), name)})
	}
	return out
}

// Dup duplicates f's descriptor (close-on-exec) without f.Fd, which would
// put a pipe in blocking mode for good.
func Dup(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}
