package arbiter

import (
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"
)

// Config configures an [Arbiter]. The zero value is usable: every zero field
// takes the default written beside it.
type Config struct {
	// Threshold is the risk at which a prediction is made (default 0.8).
	Threshold float64
	// Holdout is the share of agents that reach the threshold and are left
	// alone on purpose, to measure precision honestly. The default (0) is
	// adaptive: AutoHoldout (one in two) until enough held-out predictions
	// have been scored for a confident precision ([HeldOutNeeded] is 0),
	// then SettledHoldout (one in twenty). A negative value disables the
	// holdout.
	Holdout float64
	// Horizon is how long a prediction stands: it is right if the agent
	// fails (slow-burn) within Horizon after it, and a new prediction for
	// the same agent is made only once the previous one is older than this
	// (default 10 s).
	Horizon time.Duration
	// Target is the lead the scoring aims for: the model learns the label
	// "failed within Target after t" (default 0.6 × Horizon, at most
	// Horizon).
	// Aiming inside the Horizon leaves room for a borderline call to still
	// land in it.
	Target time.Duration
	// Window is the span of the trend fits (RSS, latency, error rate)
	// (default 10 s; at least [MinTrendPoints] samples must fall in it).
	Window time.Duration
	// BaselineSamples is how many first samples of an agent form its
	// baseline for latency and error-rate change detection (default 20).
	BaselineSamples int
	// MinFailures is how many slow-burn failures must be seen before the
	// learned model replaces the hand-set weights (default 5).
	MinFailures int
	// StaleAfter forgets an agent with no sample for this long, in case
	// its end was never reported (default 1 min).
	StaleAfter time.Duration
	// SuddenKinds are the failure kinds that are not predictable from
	// telemetry (default ["kill"]): they are not learned from and are
	// reported apart, not as misses.
	SuddenKinds []string
	// Now is the clock (default time.Now); it dates samples without a Time.
	Now func() time.Time
	// Rand draws the holdout (default: seeded from the clock). Seed it for
	// reproducible tests. The Arbiter uses it under its own lock: do not
	// share it with other goroutines.
	Rand *rand.Rand
	// Logger receives model refits at debug level (default: discard).
	Logger *slog.Logger

	autoHoldout bool // Holdout was left to the default
}

// The adaptive holdout's shares (see [Config.Holdout]). One in two makes a
// precision measurable soon: the fewest scored held-out predictions for a
// ±0.1 interval is 16 (every one right), ~35 at a precision of 0.9, so a
// node that makes 32–70 predictions in an hour has its figure within the
// hour; one in twenty after that keeps measuring at little cost. A
// held-out agent fails as it would without the Arbiter, and the
// supervisor recovers it as any other failure.
const (
	AutoHoldout    = 0.5
	SettledHoldout = 0.05
)

func (c Config) withDefaults() Config {
	if c.Threshold <= 0 || c.Threshold > 1 {
		c.Threshold = 0.8
	}
	switch {
	case c.Holdout == 0:
		c.autoHoldout = true
	case c.Holdout < 0:
		c.Holdout = 0
	case c.Holdout > 1:
		c.Holdout = 1
	}
	if c.Horizon <= 0 {
		c.Horizon = 10 * time.Second
	}
	if c.Target <= 0 {
		c.Target = c.Horizon * 6 / 10
	}
	c.Target = min(c.Target, c.Horizon)
	if c.Window <= 0 {
		c.Window = 10 * time.Second
	}
	if c.BaselineSamples <= 0 {
		c.BaselineSamples = 20
	}
	if c.MinFailures <= 0 {
		c.MinFailures = 5
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = time.Minute
	}
	if c.SuddenKinds == nil {
		c.SuddenKinds = []string{"kill"}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		seed := uint64(c.Now().UnixNano())
		c.Rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// sudden reports whether a failure kind is one the Arbiter cannot be
// expected to foresee.
func (c *Config) sudden(kind string) bool { return slices.Contains(c.SuddenKinds, kind) }
