package telemetry

import (
	"log/slog"
	"time"
)

// DefaultBPFFS is where Load mounts bpffs when Options.BPFFS is empty.
const DefaultBPFFS = "/sys/fs/bpf"

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
	return o
}
