package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketGroup is the group whose members may use the socket.
const SocketGroup = "resilienced"

// Socket is the daemon's listening unix socket.
type Socket struct {
	net.Listener
	Path  string
	Group string // "" when the socket is 0600
	GID   int    // -1 when the socket is 0600
}

// DefaultSocketPath is /run/resilienced/resilienced.sock for root and
// $XDG_RUNTIME_DIR/resilienced/resilienced.sock (or /tmp/resilienced-UID/)
// for anyone else.
func DefaultSocketPath() string {
	if os.Geteuid() == 0 {
		return SystemSocketPath
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "resilienced", "resilienced.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("resilienced-%d", os.Getuid()), "resilienced.sock")
}

// SystemSocketPath is where the system daemon (the systemd service) listens.
const SystemSocketPath = "/run/resilienced/resilienced.sock"

// ClientSocketPath is where a client looks by default: the system daemon's
// socket when there is one (members of group resilienced use it), else
// DefaultSocketPath, where a daemon run by this user would listen.
func ClientSocketPath() string {
	if fi, err := os.Stat(SystemSocketPath); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return SystemSocketPath
	}
	return DefaultSocketPath()
}

// Listen creates the socket at path: 0660 with group resilienced when that
// group exists, else 0600. A stale socket left by a dead daemon is
// replaced; a live one, or a path that is not a socket, is an error.
func Listen(path string) (*Socket, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another --socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is already listening on %s", path)
		}
		os.Remove(path) // stale
	}
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	s := &Socket{Listener: l, Path: path, GID: -1}
	if g, err := user.LookupGroup(SocketGroup); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err == nil {
			if err := os.Chmod(path, 0o660); err == nil {
				s.Group, s.GID = SocketGroup, gid
			}
		}
	}
	return s, nil
}

// FromListener wraps a listener handed over by systemd socket activation.
func FromListener(l net.Listener) *Socket {
	s := &Socket{Listener: l, GID: -1}
	if a, ok := l.Addr().(*net.UnixAddr); ok {
		s.Path = a.Name
		var st syscall.Stat_t
		if syscall.Stat(a.Name, &st) == nil && st.Mode&0o070 != 0 {
			s.GID = int(st.Gid)
			if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err == nil {
				s.Group = g.Name
			}
		}
	}
	return s
}

// PeerCred is the identity of the process at the other end of a connection.
type PeerCred struct {
	PID      int32
	UID, GID uint32
}

// inGroup reports whether the peer's primary or supplementary groups
// include gid (supplementary groups are read from /proc/PID/status).
func (c PeerCred) inGroup(gid uint32) bool {
	if c.GID == gid {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.PID))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(rest) {
				if f == strconv.Itoa(int(gid)) {
					return true
				}
			}
		}
	}
	return false
}

type peerKey struct{}

// peerCred reads the credentials of a unix socket's peer (SO_PEERCRED).
func peerCred(c net.Conn) (PeerCred, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, false
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if credErr != nil || cred == nil {
		return PeerCred{}, false
	}
	return PeerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, true
}

func peerFrom(ctx context.Context) (PeerCred, bool) {
	c, ok := ctx.Value(peerKey{}).(PeerCred)
	return c, ok
}
