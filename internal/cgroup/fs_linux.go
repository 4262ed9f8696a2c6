package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/resilienced/resilienced/internal/kfile"
)

// writeFile writes s to a cgroup interface file in one write(2), as the
// kernel parses each write separately; readFile reads one. Both skip the
// netpoller (package kfile), on the path of every agent start and
// teardown.
func writeFile(p, s string) error { return kfile.Write(p, s) }

func readFile(p string) ([]byte, error) { return kfile.Read(p) }

func readInt(p string) (int64, error) {
	b, err := readFile(p)
	if err != nil {
		return 0, err
	}
	var n int64
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), &n)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return n, nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// notPermitted reports errors that mean "not allowed here" (not root,
// read-only cgroupfs, a cgroup we do not own) rather than an I/O failure.
func notPermitted(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
}

// mkdir creates one cgroup directory; it reports whether it made it.
func mkdir(p string) (bool, error) {
	err := os.Mkdir(p, 0o755)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return false, err
}

// mkdirAll creates p and missing parents below base (which must exist).
func mkdirAll(base, rel string) error {
	p := base
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		if part == "" {
			continue
		}
		p = filepath.Join(p, part)
		if _, err := mkdir(p); err != nil {
			return err
		}
	}
	return nil
}

// rmdir removes a cgroup directory; a missing one is not an error, a busy
// one wraps ErrBusy.
func rmdir(p string) error {
	err := unix.Rmdir(p)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("%w: rmdir %s: %w", ErrBusy, p, err)
	}
	return &fs.PathError{Op: "rmdir", Path: p, Err: err}
}

// subdirs lists the child cgroups of dir (missing dir: none).
func subdirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// readProcs returns the pids in dir/cgroup.procs and, recursively, in its
// child cgroups.
func readProcs(dir string) ([]int, error) {
	b, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	pids, err := parsePids(b)
	if err != nil {
		return nil, err
	}
	subs, err := subdirs(dir)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		p, err := readProcs(filepath.Join(dir, s))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		pids = append(pids, p...)
	}
	return pids, nil
}
