package supervisor

import (
	"fmt"

	"github.com/resilienced/resilienced/internal/breaker"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/ring"
)

// brokenPool stands for a pool whose config this host cannot run (its
// user or group does not exist): it is listed, failed, with the reason,
// so that `status` shows it and its calls say why, rather than the pool
// missing and its calls answering "unknown pool". It runs nothing; a
// reload tries the pool again.
func brokenPool(s *Supervisor, pc config.Pool, err error) *Pool {
	p := &Pool{
		sup:    s,
		name:   pc.Name,
		log:    s.log.With("pool", pc.Name),
		cfg:    pc,
		broken: true,
		slots:  map[string]*slot{},
		ring:   ring.New(ring.Options{}),
		state:  PoolFailed,
		reason: fmt.Sprintf("cannot start: %v; fix the config and reload", err),
		down:   make(chan struct{}),
	}
	close(p.down)
	p.replicas, p.sparesWanted = pc.Replicas, pc.Spares
	p.intensity = newIntensity(pc.Intensity.MaxRestarts, pc.Intensity.Period)
	p.backoff = newBackoff(pc.Backoff.Initial, pc.Backoff.Max, pc.Backoff.ResetAfter, s.opts.Rand)
	p.breaker = breaker.New(pc.Name, breaker.Config{Now: s.opts.Now}, nil)
	return p
}

// errBroken is what operations that would start agents answer for a
// broken pool.
func (p *Pool) errBroken() error {
	return fmt.Errorf("%w: pool %s: %s", ErrPoolFailed, p.name, p.reason)
}
