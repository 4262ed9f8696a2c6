package main

import (
	"log/slog"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/fdlimit"
)

// fdBudget is the open-file limit and what the daemon held open before
// its first agent, against which every config's agents are sized.
type fdBudget struct {
	limit uint64
	base  int
}

// raiseFDLimit raises the soft open-file limit to the hard one and says
// how many agents it allows.
func raiseFDLimit(log *slog.Logger) fdBudget {
	lim, err := fdlimit.Raise()
	if err != nil {
		log.Warn("open-file limit", "err", err)
		return fdBudget{}
	}
	b := fdBudget{limit: lim, base: fdlimit.Open()}
	log.Info("open-file limit", "nofile", lim, "agents_allowed", fdlimit.Capacity(lim, b.base), "fds_per_agent", fdlimit.PerAgent)
	return b
}

// check refuses a config whose pools want more agents than the limit
// allows (see internal/fdlimit); nil when the limit is unknown.
func (b fdBudget) check(cfg *config.Config) error {
	if b.limit == 0 {
		return nil
	}
	want := 0
	for _, p := range cfg.Pools {
		want += p.Replicas + p.Spares
	}
	return fdlimit.Check(want, b.limit, b.base)
}
