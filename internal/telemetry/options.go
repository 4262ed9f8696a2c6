package telemetry

import (
	"log/slog"
	"time"
)

// DefaultBPFFS is where Load mounts bpffs when Options.BPFFS is empty.
const DefaultBPFFS = "/sys/fs/bpf"

// DefaultSlots is how many cgroups Load can watch at once when
// Options.Slots is 0: room for a dense node (issue #13 runs 2,000 agents
// and their replacements) at ~320 bytes per slot and CPU of per-CPU
// counters, 2.6 MB on a 2-CPU host.
const DefaultSlots = 4096

// Options configure Load.
type Options struct {
	// Logger receives load and attach diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// BPFFS is the bpffs mount point, mounted by Load when it is not one
	// already; empty means DefaultBPFFS.
	BPFFS string
	// Now is the wall clock used to convert kernel timestamps; nil means
	// time.Now.
	Now func() time.Time
	// Slots is how many cgroups can be watched at once (Watch returns
	// ErrWatchLimit beyond it); 0 means DefaultSlots.
	Slots int
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BPFFS == "" {
		o.BPFFS = DefaultBPFFS
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Slots <= 0 {
		o.Slots = DefaultSlots
	}
	return o
}
