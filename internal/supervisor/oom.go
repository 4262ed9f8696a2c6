package supervisor

// oomNotifier is a sandbox that can tell of OOM kills in it as the kernel
// signals them (a *cgroup.Cgroup: memory.events through inotify on
// cgroup2, an eventfd on v1), so that an idle node polls nothing.
type oomNotifier interface {
	NotifyOOM(fn func()) (stop func(), err error)
}

// watchOOM arranges for an OOM kill in sl's sandbox to fail sl. An OOM kill
// of the agent process itself is seen as its exit too (oomOrExit names
// it); this catches the kills of other processes in its cgroup (a helper, a
// child), after which the agent is in an unknown state and is replaced.
// Sandboxes without notifications (no memory controller) are not watched:
// their counters cannot be read either. It returns the function that ends
// the watch.
func (p *Pool) watchOOM(sl *slot) func() {
	n, ok := sl.sb.(oomNotifier)
	if !ok {
		return func() {}
	}
	stop, err := n.NotifyOOM(func() {
		// A kill during the handshake is noted and acted on by ready,
		// since fail leaves starting agents to their start.
		sl.oomKilled.Store(true)
		p.fail(sl, evidence{kind: EventOOM, reason: "OOM kill in its cgroup", at: p.sup.opts.Now()})
	})
	if err != nil {
		p.log.Debug("no OOM notifications for agent sandbox", "agent", sl.id, "err", err)
		return func() {}
	}
	return stop
}

// oomDuringStart fails sl if an OOM kill hit its cgroup while it started:
// called once it is ready, instead of a poll.
func (p *Pool) oomDuringStart(sl *slot) {
	if sl.oomKilled.Load() {
		p.fail(sl, evidence{kind: EventOOM, reason: "OOM kill in its cgroup during its start", at: p.sup.opts.Now()})
	}
}
