// Package kfile reads and writes small kernel files (cgroup interface
// files, PSI, /proc) with plain system calls.
//
// os.ReadFile and os.OpenFile put a file that supports poll, as kernfs
// and PSI files do, in Go's netpoller, and take it out again at Close:
// four system calls more per access (fstat, two epoll_ctl, fcntl). The
// daemon reads and writes such files on the path of every agent start,
// teardown and telemetry sample, where those calls were a large part of
// the cost. Errors are *fs.PathError, so errors.Is(err, fs.ErrNotExist)
// and friends work as with package os.
package kfile
