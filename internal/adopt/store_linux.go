package adopt

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// SystemdStore is systemd's file descriptor store for this service
// (sd_notify FDSTORE=1 / FDSTOREREMOVE=1, systemd ≥ 236). The unit must
// allow it with FileDescriptorStoreMax=; a file sent beyond the maximum is
// refused by systemd with a warning in its journal and simply not kept.
// go-systemd v22.7.0 has no SdNotifyWithFds: the message is sent by hand.
type SystemdStore struct {
	mu   sync.Mutex
	fd   int // an unbound datagram socket
	addr *unix.SockaddrUnix
}

// NewSystemdStore connects to $NOTIFY_SOCKET. It returns ErrNoStore when
// the daemon does not run under systemd, or systemd says the store holds
// nothing ($FDSTORE=0, systemd ≥ 254).
func NewSystemdStore() (*SystemdStore, error) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil, ErrNoStore
	}
	if v, ok := os.LookupEnv("FDSTORE"); ok && v == "0" {
		return nil, fmt.Errorf("%w: FileDescriptorStoreMax=0", ErrNoStore)
	}
	// Raw sendmsg: net.UnixConn's WriteMsgUnix refuses a connected
	// datagram socket here ("use of WriteTo with pre-connected connection").
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt: notify socket: %w", err)
	}
	// x/sys/unix takes a leading '@' for an abstract address, as systemd
	// writes it.
	return &SystemdStore{fd: fd, addr: &unix.SockaddrUnix{Name: sock}}, nil
}

// Store sends f to the store under name.
func (s *SystemdStore) Store(name string, f *os.File) error {
	// Not f.Fd(): that would put a pipe in blocking mode for good.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = s.send("FDSTORE=1\nFDNAME="+name, unix.UnixRights(int(fd)))
	})
	if err != nil {
		return err
	}
	return serr
}

// Remove removes the files stored under name.
func (s *SystemdStore) Remove(name string) error {
	return s.send("FDSTOREREMOVE=1\nFDNAME="+name, nil)
}

func (s *SystemdStore) send(state string, oob []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		err := unix.Sendmsg(s.fd, []byte(state), oob, s.addr, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// Close closes the socket.
func (s *SystemdStore) Close() error { return unix.Close(s.fd) }
