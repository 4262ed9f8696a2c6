package telemetry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Values of event.kind in bpf/telemetry.c.
const (
	bpfEventExit = 1
	bpfEventOOM  = 2
)

// latencySampleShift makes the syscall programs time one syscall in
// 2^latencySampleShift of each task (picked pseudo-randomly), while counting
// every syscall and error exactly. Timing costs two CLOCK_MONOTONIC reads per
// syscall, which on a VM whose kvm-clock has no stable TSC are the dearest
// part of the programs: in same-run comparisons (BenchmarkSyscallOverhead,
// sampling-saves-ns/syscall, load 4-8) timing one syscall in 16 saved
// 120-195 ns per watched syscall, 60-90 % of what the programs add beyond
// empty ones. The price is a histogram of 1/16 of the syscalls: Rates
// leaves P99 out when an interval has too few timed syscalls (see
// minP99Samples).
const latencySampleShift = 4

// filterWords is the size of watch_filter in bpf/telemetry.c, in 64-bit words.
const filterWords = 512

// eventsBuffer is the capacity of the Events channel; the ring buffer in the
// kernel (256 KiB, about 6,500 events) absorbs bursts beyond it.
const eventsBuffer = 256

// Probes are the loaded and attached telemetry programs. Their methods are
// safe for concurrent use.
type Probes struct {
	log *slog.Logger
	now func() time.Time

	objs        telemetryObjects
	ncpu        int
	sysLinks    []link.Link // sys_enter, sys_exit
	otherLinks  []link.Link
	unavailable []error

	events   chan Event
	reader   *ringbuf.Reader
	closing  chan struct{}
	readerWG sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	watched map[uint64]*watch
	free    []uint32 // unused counter slots
	// onBit counts the watched cgroups on each watch_filter bit (ids
	// share a bit modulo its size), so that a word is rewritten from its
	// 64 bits, not from every watched cgroup on every start and exit.
	onBit map[uint32]uint32
}

type watch struct {
	slot uint32
	net  *netAttach // cgroup_skb ingress, egress; nil without a path
}

// netAttach is the network counters attached to one cgroup with
// BPF_PROG_ATTACH (BPF_F_ALLOW_MULTI, which mixes with the Kill Switch's
// links there), not as bpf_links: a link is a descriptor held as long as
// the cgroup is watched, two per agent, and descriptors bound how many
// agents a node runs. The kernel drops the attachment with the cgroup.
type netAttach struct {
	path  string
	progs []netProg
}

type netProg struct {
	attach ebpf.AttachType
	prog   *ebpf.Program
}

// attachNet attaches progs to the cgroup at path.
func attachNet(path string, progs []netProg) (*netAttach, error) {
	dir, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	n := &netAttach{path: path}
	for _, a := range progs {
		detachStale(dir, a)
		err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: int(dir.Fd()), Program: a.prog, Attach: a.attach, Flags: unix.BPF_F_ALLOW_MULTI})
		if err != nil {
			n.detach(dir)
			return nil, err
		}
		n.progs = append(n.progs, a)
	}
	return n, nil
}

// detachStale detaches from dir what a previous instance of the daemon
// attached there as a (a cgroup adopted with its agent): a program of the
// same name that is not a's. Unlike a link, an attachment outlives the
// process that made it.
func detachStale(dir *os.File, a netProg) {
	info, err := progInfo(a.prog)
	if err != nil {
		return
	}
	mine, _ := info.ID()
	q, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: a.attach})
	if err != nil {
		return
	}
	for _, ap := range q.Programs {
		if ap.ID == mine {
			continue
		}
		if _, isLink := ap.LinkID(); isLink {
			continue // a link's (the Kill Switch's): its owner detaches it
		}
		old, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			continue
		}
		if oi, err := old.Info(); err == nil && oi.Name == info.Name {
			link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir.Fd()), Program: old, Attach: a.attach})
		}
		old.Close()
	}
}

// progInfos caches the info of the daemon's own programs (read from
// /proc, at every agent's start otherwise).
var progInfos sync.Map // *ebpf.Program → *ebpf.ProgramInfo

func progInfo(p *ebpf.Program) (*ebpf.ProgramInfo, error) {
	if v, ok := progInfos.Load(p); ok {
		return v.(*ebpf.ProgramInfo), nil
	}
	info, err := p.Info()
	if err == nil {
		progInfos.Store(p, info)
	}
	return info, err
}

// Close detaches the programs, unless the cgroup is gone (and they with it).
func (n *netAttach) Close() error {
	if n == nil {
		return nil
	}
	dir, err := os.Open(n.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	return n.detach(dir)
}

func (n *netAttach) detach(dir *os.File) error {
	var errs []error
	for _, a := range n.progs {
		errs = append(errs, link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir.Fd()), Program: a.prog, Attach: a.attach}))
	}
	n.progs = nil
	return errors.Join(errs...)
}

// Load loads the telemetry programs into the kernel and attaches them. Nothing
// is counted until Watch. The error wraps ErrNotSupported when eBPF cannot be
// used here, and says why.
func Load(ctx context.Context, opts Options) (*Probes, error) {
	return load(ctx, opts, loadConfig{})
}

// loadConfig holds choices Load makes from the kernel, for tests to force.
type loadConfig struct {
	// leaderExit reports exits on thread-group leaders even when the kernel
	// passes group_dead, as on kernels before 6.16.
	leaderExit bool
	// latencySampleShift, when not 0, replaces the package's.
	latencySampleShift uint32
	// timeEverySyscall times every syscall (shift 0), for tests that
	// compare the histogram with the syscall count.
	timeEverySyscall bool
}

func load(ctx context.Context, opts Options, cfg loadConfig) (_ *Probes, err error) {
	opts = opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kernelBTF, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: kernel BTF: %w", ErrNotSupported, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: remove memlock rlimit: %w", ErrNotSupported, err)
	}
	// Telemetry pins nothing, so a bpffs that cannot be mounted only
	// matters to other users of it (the Kill Switch): warn and go on.
	if err := ensureBPFFS(opts.BPFFS, opts.Logger); err != nil {
		opts.Logger.Warn("telemetry: bpffs unavailable", "err", err)
	}

	spec, err := loadTelemetry()
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if !cfg.leaderExit && exitHasGroupDead(kernelBTF) {
		if err := spec.Variables[telemetryVarExitHasGroupDead].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
	}
	shift := uint32(latencySampleShift)
	if cfg.latencySampleShift != 0 {
		shift = cfg.latencySampleShift
	}
	if cfg.timeEverySyscall {
		shift = 0
	}
	if err := spec.Variables[telemetryVarLatencySampleShift].Set(shift); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	// The object is built for 1,024 slots; every map indexed by slot is
	// sized here instead, so that a dense node needs no rebuild.
	slots := uint32(opts.Slots)
	for _, m := range []string{telemetryMapWatched, telemetryMapSlotOwner, telemetryMapSyscallCounters, telemetryMapNetCounters} {
		spec.Maps[m].MaxEntries = slots
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}

	p := &Probes{
		log:     opts.Logger,
		now:     opts.Now,
		ncpu:    ncpu,
		events:  make(chan Event, eventsBuffer),
		closing: make(chan struct{}),
		watched: make(map[uint64]*watch),
		onBit:   make(map[uint32]uint32),
		free:    make([]uint32, 0, slots),
	}
	for s := int(slots) - 1; s >= 0; s-- {
		p.free = append(p.free, uint32(s))
	}
	// CO-RE against the kernel's own BTF only: left to itself the library
	// also reads every module's BTF, and one missing from /sys/kernel/btf
	// (seen on Debian's 6.1) then fails the whole load.
	loadOpts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernelBTF}}
	if err := spec.LoadAndAssign(&p.objs, loadOpts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			p.log.Debug("telemetry: verifier log", "log", fmt.Sprintf("%+v", ve))
		}
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: load eBPF objects: %w (needs root, or CAP_BPF and CAP_PERFMON)", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("%w: load eBPF objects: %w", ErrNotSupported, err)
	}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()

	if err := p.attachSyscalls(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	for _, tp := range []struct {
		feature, name string
		prog          *ebpf.Program
	}{
		{"exit events", "sched_process_exit", p.objs.SchedProcessExit},
		{"OOM events", "mark_victim", p.objs.MarkVictim},
		{"TCP retransmit counts", "tcp_retransmit_skb", p.objs.TcpRetransmitSkb},
		{"TCP reset counts", "tcp_send_reset", p.objs.TcpSendReset},
		{"TCP reset counts", "tcp_receive_reset", p.objs.TcpReceiveReset},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			err = fmt.Errorf("%w: %s: attach raw tracepoint %s: %w", ErrNotSupported, tp.feature, tp.name, err)
			p.log.Warn("telemetry: feature unavailable", "err", err)
			p.unavailable = append(p.unavailable, err)
			continue
		}
		p.otherLinks = append(p.otherLinks, l)
	}

	p.reader, err = ringbuf.NewReader(p.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("%w: ring buffer reader: %w", ErrNotSupported, err)
	}
	p.readerWG.Add(1)
	go p.readEvents()
	p.log.Debug("telemetry: eBPF probes loaded", "slots", slots, "cpus", ncpu)
	return p, nil
}

// attachSyscalls attaches the syscall counters, which Load requires.
func (p *Probes) attachSyscalls() error {
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_enter", p.objs.SysEnter},
		{"sys_exit", p.objs.SysExit},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", tp.name, err)
		}
		p.sysLinks = append(p.sysLinks, l)
	}
	return nil
}

// detachSyscalls removes the syscall programs; with no program left on
// sys_enter/sys_exit the kernel takes syscalls off the tracing slow path.
// Benchmarks use it for their baseline.
func (p *Probes) detachSyscalls() {
	for _, l := range p.sysLinks {
		l.Close()
	}
	p.sysLinks = nil
}

// exitHasGroupDead reports whether the sched_process_exit tracepoint passes
// group_dead (Linux 6.16 and later), which marks the last thread of a process.
func exitHasGroupDead(spec *btf.Spec) bool {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_sched_process_exit", &td); err != nil {
		return false
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return false
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	// (void *data, struct task_struct *p, bool group_dead)
	return ok && len(proto.Params) >= 3
}

// ensureBPFFS mounts bpffs at path unless one is mounted there already.
func ensureBPFFS(path string, log *slog.Logger) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("%w: create bpffs mount point: %w", ErrNotSupported, err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: mount bpffs at %s: %w (not root?)", ErrNotSupported, path, err)
		}
		return fmt.Errorf("%w: mount bpffs at %s: %w", ErrNotSupported, path, err)
	}
	log.Info("telemetry: mounted bpffs", "path", path)
	return nil
}

// Unavailable lists the optional features that could not be attached on this
// kernel; each error wraps ErrNotSupported and names the feature.
func (p *Probes) Unavailable() []error {
	return append([]error(nil), p.unavailable...)
}

// Watch starts counting the cgroup with the given cgroup v2 id. When
// cgroupPath (the cgroup's directory in the cgroup2 hierarchy) is not empty,
// it also attaches the network counters there. Counters start at zero.
// Watching a watched cgroup again does nothing.
func (p *Probes) Watch(cgroupID uint64, cgroupPath string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if _, ok := p.watched[cgroupID]; ok {
		return nil
	}
	if len(p.free) == 0 {
		return ErrWatchLimit
	}
	w := &watch{slot: p.free[len(p.free)-1]}
	if err := p.objs.SyscallCounters.Update(w.slot, make([]telemetrySyscallStats, p.ncpu), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("telemetry: reset syscall counters: %w", err)
	}
	if err := p.objs.NetCounters.Update(w.slot, make([]telemetryNetStats, p.ncpu), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("telemetry: reset net counters: %w", err)
	}
	if cgroupPath != "" {
		n, err := attachNet(cgroupPath, []netProg{
			{ebpf.AttachCGroupInetIngress, p.objs.CountIngress},
			{ebpf.AttachCGroupInetEgress, p.objs.CountEgress},
		})
		if err != nil {
			return fmt.Errorf("telemetry: attach network counters to %s: %w", cgroupPath, err)
		}
		w.net = n
	}
	if err := p.objs.Watched.Update(cgroupID, w.slot, ebpf.UpdateNoExist); err != nil {
		w.net.Close()
		return fmt.Errorf("telemetry: watch cgroup %d: %w", cgroupID, err)
	}
	p.watched[cgroupID] = w
	p.onBit[filterIndex(cgroupID)]++
	err := p.objs.SlotOwner.Update(w.slot, cgroupID, ebpf.UpdateAny)
	if err == nil {
		err = p.updateFilter(cgroupID)
	}
	if err != nil {
		delete(p.watched, cgroupID)
		p.bitOff(cgroupID)
		p.objs.SlotOwner.Update(w.slot, uint64(0), ebpf.UpdateAny)
		p.objs.Watched.Delete(cgroupID)
		w.net.Close()
		return fmt.Errorf("telemetry: watch cgroup %d: %w", cgroupID, err)
	}
	p.free = p.free[:len(p.free)-1]
	return nil
}

// filterBit returns the word and bit of watch_filter that stand for the
// cgroup id.
func filterBit(cgroupID uint64) (word uint32, bit uint64) {
	b := filterIndex(cgroupID)
	return b / 64, 1 << (b % 64)
}

// filterIndex is the index of the cgroup id's bit in watch_filter.
func filterIndex(cgroupID uint64) uint32 { return uint32(cgroupID % (filterWords * 64)) }

// bitOff takes a cgroup that is no longer watched off its bit's count.
// Callers hold p.mu.
func (p *Probes) bitOff(cgroupID uint64) {
	b := filterIndex(cgroupID)
	if p.onBit[b] <= 1 {
		delete(p.onBit, b)
	} else {
		p.onBit[b]--
	}
}

// updateFilter rewrites the watch_filter word of cgroupID's bit from the
// counts of its 64 bits. Callers hold p.mu.
func (p *Probes) updateFilter(cgroupID uint64) error {
	word, _ := filterBit(cgroupID)
	var v uint64
	for i := range uint32(64) {
		if p.onBit[word*64+i] > 0 {
			v |= 1 << i
		}
	}
	if err := p.objs.WatchFilter.Update(word, v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update watch filter: %w", err)
	}
	return nil
}

// Unwatch stops counting the cgroup and detaches its network counters.
func (p *Probes) Unwatch(cgroupID uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	w, ok := p.watched[cgroupID]
	if !ok {
		return ErrNotWatched
	}
	delete(p.watched, cgroupID)
	p.bitOff(cgroupID)
	// Tasks that remember the slot stop using it once it has no owner.
	oerr := p.objs.SlotOwner.Update(w.slot, uint64(0), ebpf.UpdateAny)
	ferr := p.updateFilter(cgroupID)
	err := p.objs.Watched.Delete(cgroupID)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	err = errors.Join(oerr, ferr, err)
	w.net.Close()
	// The slot is reused after Watch has zeroed it again; a syscall in flight
	// across Unwatch counts nowhere, as sys_exit checks slot_owner.
	p.free = append(p.free, w.slot)
	if err != nil {
		return fmt.Errorf("telemetry: unwatch cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// Read returns the cgroup's counters since Watch, summed over all CPUs.
func (p *Probes) Read(cgroupID uint64) (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Counters{}, ErrClosed
	}
	w, ok := p.watched[cgroupID]
	if !ok {
		return Counters{}, ErrNotWatched
	}
	var (
		c   Counters
		sys []telemetrySyscallStats
		net []telemetryNetStats
	)
	if err := p.objs.SyscallCounters.Lookup(w.slot, &sys); err != nil {
		return Counters{}, fmt.Errorf("telemetry: read syscall counters: %w", err)
	}
	if err := p.objs.NetCounters.Lookup(w.slot, &net); err != nil {
		return Counters{}, fmt.Errorf("telemetry: read net counters: %w", err)
	}
	for _, s := range sys {
		c.Syscalls += s.Count
		c.SyscallErrors += s.Errors
		for i, n := range s.Hist {
			c.LatencyHist[i] += n
		}
	}
	for _, n := range net {
		c.RxBytes += n.RxBytes
		c.TxBytes += n.TxBytes
		c.RxPackets += n.RxPackets
		c.TxPackets += n.TxPackets
		c.Retransmits += n.Retransmits
		c.Resets += n.Resets
	}
	return c, nil
}

// Events returns the exits and OOM kills of watched cgroups' processes. The
// channel is closed by Close. Events are delivered in the order the kernel
// submitted them; a consumer that falls far behind loses events once the
// kernel's ring buffer is full.
func (p *Probes) Events() <-chan Event {
	return p.events
}

func (p *Probes) readEvents() {
	defer p.readerWG.Done()
	defer close(p.events)
	var rec ringbuf.Record
	for {
		if err := p.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			p.log.Warn("telemetry: read ring buffer", "err", err)
			continue
		}
		ev, err := p.decodeEvent(rec.RawSample)
		if err != nil {
			p.log.Warn("telemetry: bad event", "err", err)
			continue
		}
		select {
		case p.events <- ev:
		case <-p.closing:
			return
		}
	}
}

// decodeEvent decodes a struct event from bpf/telemetry.c.
func (p *Probes) decodeEvent(b []byte) (Event, error) {
	const size = 32
	if len(b) < size {
		return Event{}, fmt.Errorf("short event: %d bytes", len(b))
	}
	ne := binary.NativeEndian
	var (
		ktime    = ne.Uint64(b[0:])
		cgroupID = ne.Uint64(b[8:])
		pid      = ne.Uint32(b[16:])
		kind     = ne.Uint32(b[20:])
		code     = int32(ne.Uint32(b[24:]))
	)
	ev := Event{CgroupID: cgroupID, PID: int(pid), Time: p.wallTime(ktime)}
	switch kind {
	case bpfEventExit:
		ev.Kind = EventExit
		ws := syscall.WaitStatus(code)
		switch {
		case ws.Signaled():
			ev.Signal = int(ws.Signal())
			ev.CoreDumped = ws.CoreDump()
		default:
			ev.ExitCode = ws.ExitStatus()
		}
	case bpfEventOOM:
		ev.Kind = EventOOM
		ev.Signal = int(unix.SIGKILL)
	default:
		return Event{}, fmt.Errorf("unknown event kind %d", kind)
	}
	return ev, nil
}

// wallTime converts a CLOCK_MONOTONIC timestamp in ns to wall clock time.
func (p *Probes) wallTime(ktime uint64) time.Time {
	var ts unix.Timespec
	now := p.now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(uint64(ts.Nano()) - ktime))
}

// Close detaches every program, stops the event reader and closes the Events
// channel.
func (p *Probes) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, w := range p.watched {
		w.net.Close()
	}
	p.watched = nil
	p.mu.Unlock()
	return p.closeAll()
}

func (p *Probes) closeAll() error {
	var errs []error
	close(p.closing)
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
		p.readerWG.Wait()
	} else {
		close(p.events)
	}
	p.detachSyscalls()
	errs = append(errs, closeLinks(p.otherLinks))
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

func closeLinks(links []link.Link) error {
	var errs []error
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}
