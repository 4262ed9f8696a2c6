package cgroup

import (
	"context"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkKillTree measures, from the kill until every process of the tree
// is gone, ways of killing an agent of 9 processes (sh and 8 sleeps), all in
// the same run:
//
//	cgroupkill-µs       cgroup.kill, "populated 0" seen by inotify (this package)
//	cgroupkill-poll-µs  cgroup.kill, cgroup.events polled every 5 ms
//	sigloop-µs          freeze + SIGKILL every member, polled (kernels < 5.14)
//	killpg-µs           baseline without cgroups: SIGKILL the process group
//	                    and reap until it is empty (misses anything that left
//	                    the group, e.g. a setsid daemon)
func BenchmarkKillTree(b *testing.B) {
	m := openTest(b)
	ctx := context.Background()
	const script = "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; wait"
	variants := []struct {
		metric               string
		signal, poll, killpg bool
	}{
		{"cgroupkill-µs", false, false, false},
		{"cgroupkill-poll-µs", false, true, false},
		{"sigloop-µs", true, true, false},
		{"killpg-µs", false, false, true},
	}
	total := make([]time.Duration, len(variants))
	for i := 0; b.Loop(); i++ {
		for vi, v := range variants {
			c, err := m.Create("bench", strconv.Itoa(i)+"-"+strconv.Itoa(vi), Limits{})
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command("sh", "-c", script)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, UseCgroupFD: true, CgroupFD: c.FD()}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			for { // untimed: until the whole tree runs
				if pids, _ := c.Procs(); len(pids) == 9 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			m.signalKill, m.pollOnly = v.signal, v.poll
			t0 := time.Now()
			if v.killpg {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				cmd.Wait()
				// The sleeps were reparented to this process (subreaper).
				for syscall.Kill(-cmd.Process.Pid, 0) == nil {
					var ws syscall.WaitStatus
					syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				}
			} else {
				if err := c.Kill(); err != nil {
					b.Fatal(err)
				}
				if err := c.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			total[vi] += time.Since(t0)
			m.signalKill, m.pollOnly = false, false
			cmd.Wait()
			if err := c.Remove(); err != nil {
				b.Fatal(err)
			}
		}
	}
	for vi, v := range variants {
		b.ReportMetric(float64(total[vi].Microseconds())/float64(b.N), v.metric)
	}
}
