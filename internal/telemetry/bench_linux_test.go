package telemetry

import (
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// BenchmarkSyscallOverhead measures what the syscall programs cost a process,
// against the same process with no program on sys_enter/sys_exit, in the same
// run. Each iteration is one round of five child runs:
//
//   - base: no program on sys_enter/sys_exit;
//   - empty: a program that only returns 0 on both, the price of the
//     tracepoints themselves (every task then takes the syscall slow path);
//   - unwatched: the telemetry programs, the child's cgroup not watched;
//   - watched: the telemetry programs loaded to time every syscall
//     (latency_sample_shift 0), the child's cgroup watched;
//   - sampled: the telemetry programs of a second Probes loaded with
//     latency_sample_shift 4 (one syscall in 16 timed, the package's
//     default), attached instead of the first one's, the child's cgroup
//     watched.
//
// The order of the five rotates by one each round, so that a drift of the
// machine's speed during the run does not always fall on the same
// configuration. The child reports the CPU time of its measuring thread
// (immune to other load on the machine); metrics are medians over rounds,
// and sampling-saves-ns/syscall the median of each round's watched minus
// sampled.
// Run with -benchtime=10x for ten rounds. Sub-benchmarks:
//
//   - max: a tight loop of getppid, the loop's maximum rate;
//   - 50k: CPU work with 50 getppid per millisecond of it, about 50,000
//     syscalls/s; the slowdown is the extra CPU time for the same work.
//   - prog-ns: with the kernel's BPF run-time statistics switched on (they
//     cost a clock read per program run, so the slowdowns above are measured
//     without them), the mean run time in ns of one invocation of sys_enter
//     and sys_exit for an unwatched, a watched and a sampled task, beside
//     the empty program's. This is the programs' own body; the price of
//     reaching them at all is the empty configuration's slowdown.
func BenchmarkSyscallOverhead(b *testing.B) {
	p := loadProbesConfig(b, loadConfig{timeEverySyscall: true})
	watched, unwatched := newTestCgroup(b), newTestCgroup(b)
	if err := p.Watch(watched.ID, ""); err != nil {
		b.Fatal(err)
	}
	sampled := loadProbesOptions(b, Options{}, loadConfig{latencySampleShift: 4})
	sampled.detachSyscalls()
	if err := sampled.Watch(watched.ID, ""); err != nil {
		b.Fatal(err)
	}
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.RawTracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	o := &overhead{p: p, sampled: sampled, empty: empty, watched: watched, unwatched: unwatched}
	// Leave the main programs attached, as Load does, whatever ran last.
	defer o.use(b, "watched")

	b.Run("max", func(b *testing.B) {
		const calls = 200_000
		r, saved := o.rounds(b, "loop "+strconv.Itoa(calls))
		for _, c := range configs {
			b.ReportMetric(float64(r[c])/calls, c+"-ns/syscall")
		}
		b.ReportMetric(float64(saved)/calls, "sampling-saves-ns/syscall")
		b.ReportMetric(calls/time.Duration(r["base"]).Seconds(), "base-syscalls/cpu-s")
		o.reportSlowdowns(b, r)
	})

	b.Run("50k", func(b *testing.B) {
		spin := o.calibrate(b)
		const units = 400
		r, _ := o.rounds(b, "mixed "+strconv.Itoa(units)+" "+strconv.Itoa(spin))
		b.ReportMetric(units*syscallsPerUnit/time.Duration(r["base"]).Seconds(), "base-syscalls/cpu-s")
		o.reportSlowdowns(b, r)
	})

	b.Run("prog-ns", func(b *testing.B) {
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			b.Skipf("BPF run-time statistics unavailable: %v", err)
		}
		// Statistics stay on only while some holder of such a descriptor
		// (or kernel.bpf_stats_enabled) asks for them.
		defer stats.Close()
		costs := map[string][]float64{}
		for i := 0; i < b.N; i++ {
			for k, v := range o.progCosts(b, 200_000) {
				costs[k] = append(costs[k], v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(costs)) {
			b.ReportMetric(medianFloat(costs[k]), k+"-ns/run")
		}
	})
}

// progCosts runs the loop child once with the empty program, once unwatched,
// once watched and once watched by the sampling programs, and returns the
// mean ns per run of each program in each case. Programs run for every task
// on the machine, so the watched figures take out the runs of other tasks,
// priced at the unwatched cost, using the watched cgroup's own syscall count.
func (o *overhead) progCosts(b *testing.B, calls int) map[string]float64 {
	mode := "loop " + strconv.Itoa(calls)
	type snap struct{ enter, exit ebpf.ProgramStats }
	progs := func(p *Probes) (s snap) {
		for _, x := range []struct {
			prog *ebpf.Program
			to   *ebpf.ProgramStats
		}{{p.objs.SysEnter, &s.enter}, {p.objs.SysExit, &s.exit}} {
			st, err := x.prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			*x.to = *st
		}
		return s
	}
	nsPerRun := func(a, z ebpf.ProgramStats) (float64, float64) {
		runs := float64(z.RunCount - a.RunCount)
		return float64(z.Runtime-a.Runtime) / runs, runs
	}
	r := map[string]float64{}

	cg := o.use(b, "empty")
	e0, err := o.empty.Stats()
	if err != nil {
		b.Fatal(err)
	}
	o.run(b, cg, mode)
	e1, err := o.empty.Stats()
	if err != nil {
		b.Fatal(err)
	}
	r["empty"], _ = nsPerRun(*e0, *e1)

	cg = o.use(b, "unwatched")
	s0 := progs(o.p)
	o.run(b, cg, mode)
	s1 := progs(o.p)
	r["sys_enter-unwatched"], _ = nsPerRun(s0.enter, s1.enter)
	r["sys_exit-unwatched"], _ = nsPerRun(s0.exit, s1.exit)

	for _, c := range []struct {
		config string
		p      *Probes
	}{{"watched", o.p}, {"sampled", o.sampled}} {
		cg = o.use(b, c.config)
		c0, err := c.p.Read(cg.ID)
		if err != nil {
			b.Fatal(err)
		}
		s0 = progs(c.p)
		o.run(b, cg, mode)
		s1 = progs(c.p)
		c1, err := c.p.Read(cg.ID)
		if err != nil {
			b.Fatal(err)
		}
		own := float64(c1.Syscalls - c0.Syscalls)
		for _, x := range []struct {
			name      string
			a, z      ebpf.ProgramStats
			unwatched float64
		}{
			{"sys_enter-" + c.config, s0.enter, s1.enter, r["sys_enter-unwatched"]},
			{"sys_exit-" + c.config, s0.exit, s1.exit, r["sys_exit-unwatched"]},
		} {
			mean, runs := nsPerRun(x.a, x.z)
			others := max(0, runs-own)
			r[x.name] = (mean*runs - others*x.unwatched) / own
		}
	}
	return r
}

func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

var configs = []string{"base", "empty", "unwatched", "watched", "sampled"}

type overhead struct {
	p                  *Probes
	sampled            *Probes // loaded with latency_sample_shift 4
	empty              *ebpf.Program
	empties            []link.Link // the empty program's, while attached
	watched, unwatched testCgroup
}

// use sets up configuration c (one of configs) on sys_enter/sys_exit and
// returns the cgroup its child runs in.
func (o *overhead) use(b *testing.B, c string) testCgroup {
	closeLinks(o.empties)
	o.empties = nil
	o.p.detachSyscalls()
	o.sampled.detachSyscalls()
	var err error
	switch c {
	case "base":
	case "empty":
		o.empties = attachEmpty(b, o.empty)
	case "unwatched", "watched":
		err = o.p.attachSyscalls()
	case "sampled":
		err = o.sampled.attachSyscalls()
	default:
		b.Fatalf("unknown configuration %q", c)
	}
	if err != nil {
		b.Fatal(err)
	}
	if c == "unwatched" {
		return o.unwatched
	}
	return o.watched
}

func (o *overhead) reportSlowdowns(b *testing.B, r map[string]int64) {
	for _, c := range configs[1:] {
		b.ReportMetric((float64(r[c])/float64(r["base"])-1)*100, c+"-slowdown-%")
	}
}

// run runs the child once in cg and returns its CPU ns.
func (o *overhead) run(b *testing.B, cg testCgroup, mode string) int64 {
	out, err := childCmd(b, cg, mode).Output()
	if err != nil {
		b.Fatalf("child %q: %v", mode, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("child %q printed %q", mode, out)
	}
	cpu, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// rounds runs b.N rounds of the configurations, the order rotated by one
// each round, and returns the median CPU ns of each, and the median over
// rounds of watched minus sampled: a paired difference, less noisy than the
// difference of the two medians since the two runs of a round are (but for
// one round in five) next to each other.
func (o *overhead) rounds(b *testing.B, mode string) (cpu map[string]int64, samplingSaves int64) {
	samples := map[string][]int64{}
	var saves []int64
	for i := 0; i < b.N; i++ {
		for j := range configs {
			c := configs[(i+j)%len(configs)]
			samples[c] = append(samples[c], o.run(b, o.use(b, c), mode))
		}
		saves = append(saves, samples["watched"][i]-samples["sampled"][i])
	}
	cpu = map[string]int64{}
	for c, s := range samples {
		cpu[c] = median(s)
	}
	return cpu, median(saves)
}

// calibrate returns the work rounds that, with 50 getppid, take one
// millisecond of CPU without programs attached.
func (o *overhead) calibrate(b *testing.B) int {
	cg := o.use(b, "base")
	const units = 100
	spin := 100_000
	for range 4 {
		cpu := o.run(b, cg, "mixed "+strconv.Itoa(units)+" "+strconv.Itoa(spin))
		perUnit := float64(cpu) / units
		spin = max(1, int(float64(spin)*float64(time.Millisecond)/perUnit))
	}
	return spin
}

func median(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkExitEventLatency measures, for SIGKILL of a process in a watched
// cgroup:
//
//   - death: from the process's death (the event's own timestamp, taken in
//     sched_process_exit) to the event coming out of Events: the delivery
//     that telemetry is responsible for;
//   - event: from the kill(2) call to the same moment, which adds the time
//     the signal takes to end the process;
//   - pidfd: from the kill(2) call to the process's pidfd becoming readable,
//     the kernel's own exit notification, for the same kill.
//
// Run with -benchtime=300x for 300 kills.
func BenchmarkExitEventLatency(b *testing.B) {
	// A clock that reads CLOCK_MONOTONIC makes Event.Time the event's
	// kernel timestamp itself, on the clock the receiver reads.
	p := loadProbesOptions(b, Options{Now: monotonicNow}, loadConfig{})
	cg := newTestCgroup(b)
	if err := p.Watch(cg.ID, ""); err != nil {
		b.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		b.Skip("needs sleep(1)")
	}
	dir, err := unix.Open(cg.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(dir)

	var deathLat, evLat, pidfdLat []time.Duration
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(sleep, "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: dir}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pid := cmd.Process.Pid
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			b.Fatal(err)
		}
		readable := make(chan time.Time, 1)
		go func() {
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					break
				}
			}
			readable <- time.Now()
		}()

		t0 := time.Now()
		unix.Kill(pid, unix.SIGKILL)
		for ev := range p.Events() {
			if ev.PID == pid {
				evLat = append(evLat, time.Since(t0))
				deathLat = append(deathLat, monotonicNow().Sub(ev.Time))
				break
			}
		}
		pidfdLat = append(pidfdLat, (<-readable).Sub(t0))
		unix.Close(pidfd)
		cmd.Wait()
	}
	b.ReportMetric(float64(percentile(deathLat, 0.50).Microseconds()), "death-p50-µs")
	b.ReportMetric(float64(percentile(deathLat, 0.99).Microseconds()), "death-p99-µs")
	b.ReportMetric(float64(percentile(evLat, 0.50).Microseconds()), "event-p50-µs")
	b.ReportMetric(float64(percentile(evLat, 0.99).Microseconds()), "event-p99-µs")
	b.ReportMetric(float64(percentile(pidfdLat, 0.50).Microseconds()), "pidfd-p50-µs")
	b.ReportMetric(float64(percentile(pidfdLat, 0.99).Microseconds()), "pidfd-p99-µs")
}

// monotonicNow reads CLOCK_MONOTONIC as a time.Time since its epoch.
func monotonicNow() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return time.Unix(0, ts.Nano())
}

// percentile returns the nearest-rank q-quantile of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// attachEmpty attaches the empty program to sys_enter and sys_exit: the
// price of the tracepoints themselves.
func attachEmpty(b *testing.B, empty *ebpf.Program) []link.Link {
	var links []link.Link
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: empty})
		if err != nil {
			b.Fatal(err)
		}
		links = append(links, l)
	}
	return links
}
