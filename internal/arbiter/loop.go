package arbiter

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Sampler supplies the current telemetry of every agent being watched; the
// supervisor implements it over the telemetry package and its own call
// accounting.
type Sampler interface {
	Samples(ctx context.Context) ([]Sample, error)
}

// Replacer carries out a prediction: promote a spare, drain the agent,
// stop it. The supervisor implements it, and reports the agent gone with
// [Loop.Gone] once it has stopped.
type Replacer interface {
	Replace(ctx context.Context, a Assessment) error
}

// Journal appends history records (the daemon keeps them in its state
// dir); [Evaluate] replays them.
type Journal interface {
	Append(ctx context.Context, r Record) error
}

// Loop drives an Arbiter: every Interval it reads the samples, assesses
// them, journals them, records predictions and asks for replacements.
type Loop struct {
	Arbiter  *Arbiter
	Sampler  Sampler
	Replacer Replacer
	// Journal, if set, receives every sample, prediction, failure and
	// disappearance. Retention is its business.
	Journal Journal
	// OnPrediction, if set, is told of every prediction, acted on or held
	// out, before the Replacer acts.
	OnPrediction func(Assessment)
	// Interval between steps in Run (default 1 s).
	Interval time.Duration
	Logger   *slog.Logger
}

func (l *Loop) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Logger
}

// Step runs one round and returns the assessments made. Errors from the
// journal or a replacement are joined into the returned error; the round
// still completes for the other agents.
func (l *Loop) Step(ctx context.Context) ([]Assessment, error) {
	samples, err := l.Sampler.Samples(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	out := make([]Assessment, 0, len(samples))
	for _, s := range samples {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if s.Time.IsZero() {
			s.Time = l.Arbiter.cfg.Now()
		}
		if l.Journal != nil {
			if err := l.Journal.Append(ctx, SampleRecord(s)); err != nil {
				errs = append(errs, err)
			}
		}
		as := l.Arbiter.Observe(s)
		out = append(out, as)
		if !as.Predicted {
			continue
		}
		l.logger().Info("arbiter prediction", "agent", as.Agent, "pool", as.Pool,
			"risk", as.Risk, "reasons", as.Reasons, "held_out", as.HeldOut)
		if l.Journal != nil {
			if err := l.Journal.Append(ctx, PredictionRecord(as)); err != nil {
				errs = append(errs, err)
			}
		}
		if l.OnPrediction != nil {
			l.OnPrediction(as)
		}
		if as.Act && l.Replacer != nil {
			if err := l.Replacer.Replace(ctx, as); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return out, errors.Join(errs...)
}

// Run calls Step every Interval until ctx is done; step errors are logged,
// not fatal. It returns ctx's error.
func (l *Loop) Run(ctx context.Context) error {
	interval := l.Interval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := l.Step(ctx); err != nil && ctx.Err() == nil {
			l.logger().Warn("arbiter step", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Failed tells the Arbiter of a failure and journals it.
func (l *Loop) Failed(ctx context.Context, agent, pool string, at time.Time, kind string) error {
	if at.IsZero() {
		at = l.Arbiter.cfg.Now()
	}
	l.Arbiter.Failed(agent, at, kind)
	if l.Journal != nil {
		return l.Journal.Append(ctx, FailureRecord(agent, pool, at, kind))
	}
	return nil
}

// Gone tells the Arbiter an agent stopped without failing and journals it.
func (l *Loop) Gone(ctx context.Context, agent, pool string, at time.Time) error {
	if at.IsZero() {
		at = l.Arbiter.cfg.Now()
	}
	l.Arbiter.Forget(agent)
	if l.Journal != nil {
		return l.Journal.Append(ctx, GoneRecord(agent, pool, at))
	}
	return nil
}
