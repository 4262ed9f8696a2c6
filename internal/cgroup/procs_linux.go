package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// ProcsFile opens the cgroup's cgroup2 cgroup.procs for writing, for a
// process that places itself in the cgroup: a zygote's child writes "0" to
// it before it serves (docs/PROTOCOL.md). The kernel checks the opener's
// credentials and cgroup namespace (ours), not the writer's, so the child
// needs no rights of its own. It fails with ErrNotSupported when the
// cgroup also has v1 directories (a hybrid host and a pool with limits):
// one file cannot place a process in those.
func (c *Cgroup) ProcsFile() (*os.File, error) {
	if len(c.v1Dirs()) > 0 {
		return nil, fmt.Errorf("%w: %s has v1 directories", ErrNotSupported, c.path)
	}
	f, err := os.OpenFile(c.file("cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return nil, notExist(err, c.path)
	}
	return f, nil
}

// Holds reports whether pid is a member of the cgroup (cgroup2).
func (c *Cgroup) Holds(pid int) (bool, error) {
	b, err := readFile(c.file("cgroup.procs"))
	if err != nil {
		return false, notExist(err, c.path)
	}
	want := []byte(strconv.Itoa(pid))
	for line := range bytes.Lines(b) {
		if bytes.Equal(bytes.TrimSpace(line), want) {
			return true, nil
		}
	}
	return false, nil
}
