package kfile

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// Read reads a whole small kernel file. It does not trust the size that
// fstat reports (kernfs files say 4096 whatever they hold).
func Read(path string) ([]byte, error) {
	fd, err := open(path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// Write writes s in one write(2): the kernel parses each write of an
// interface file on its own.
func Write(path, s string) error {
	fd, err := open(path, unix.O_WRONLY)
	if err != nil {
		return err
	}
	_, werr := unix.Write(fd, []byte(s))
	cerr := unix.Close(fd)
	if werr != nil {
		return &fs.PathError{Op: "write", Path: path, Err: werr}
	}
	if cerr != nil {
		return &fs.PathError{Op: "close", Path: path, Err: cerr}
	}
	return nil
}

func open(path string, mode int) (int, error) {
	for {
		fd, err := unix.Open(path, mode|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}
