// Package arbiter predicts that an agent is about to fail, so that it can be
// replaced before it does, and sizes each pool's warm spares ahead of need.
//
// # Input
//
// The supervisor feeds an [Arbiter] one [Sample] per agent every second or
// faster: RSS against the memory limit, syscall rate, errors and p99
// latency (from eBPF or procfs), call latency against the pool's deadline,
// contract violations and missed deadlines, PSI, and the stderr lines
// written since the last sample. It reports ground truth with
// [Arbiter.Failed] (an agent failed, and how) and [Arbiter.Forget] (an
// agent stopped without failing). The package does no I/O of its own: it
// reads through the small [Sampler] interface and acts through [Replacer]
// and [Journal], which the supervisor implements; [Loop] drives them.
//
// # Detectors
//
// Each sample updates cheap online detectors, each turned into an
// "evidence" feature that is 0 on a healthy agent:
//
//   - memory exhaustion: a least-squares [Trend] of RSS over a sliding
//     window, and one over its last 4 s (a leak's onset shows there
//     first); the earlier time to reach the limit ([Fit.TimeToReach], using
//     the slope less one standard error so noise delays rather than
//     hastens) counts, as evidence 1 at Target ahead (the latency
//     detectors, whose rise may bend, at Target/2);
//   - deadline exhaustion: the same for call latency against the deadline,
//     with a linear or an exponential fit, whichever the data support;
//   - change against the agent's own baseline (its first BaselineSamples
//     samples; for syscalls, those from its first calls on, since a spare
//     idles) for call latency, p99 syscall latency and syscall errors: a
//     [CUSUM] says whether the series really moved, and the ratio to the
//     baseline, projected Target ahead, says how far;
//   - call latency against the pool's median (an outlier among identical
//     agents);
//   - stderr: lines are reduced to templates ([Template]: numbers, hex,
//     UUIDs, ids and quoted strings masked) and counted per pool
//     ([Templater]); a burst of lines of new or rare templates is a signal;
//   - contract violations, memory pressure (PSI), the share of failing
//     syscalls, recent failures in the pool.
//
// Single-sample spikes (a GC pause, one slow call) are removed by a median
// of three before any trend is fitted.
//
// # Score and reasons
//
// The risk is a logistic regression on those features: the probability
// that the agent fails within Target (default 6 s). It starts from
// hand-set weights (any one primary detector at 1 gives risk 0.8) and,
// once MinFailures slow-burn failures have been seen, is refitted on this
// node's own history after every failure, with a Gaussian prior centred on
// the hand-set weights (so a detector the history never exercised keeps
// its weight). Training examples are labelled only once the truth is known
// (a failure within Target, or the agent outliving Target), so nothing is
// learnt from the future; samples of agents stopped on a prediction are
// never labelled. The model and its bounded training set are persisted with
// [Arbiter.MarshalModel]. Every assessment carries its reasons: the
// features that contribute most, in words ("RSS reaches its 256 MiB limit
// in ~4 s (+12 MiB/s)", "p99 syscall latency 8× its baseline (2ms vs
// 250µs)").
//
// # Action
//
// When the risk reaches Threshold, the [Assessment] is a prediction:
// Act tells the supervisor to promote a spare, drain the agent and stop it,
// and the prediction is journalled with its score and reasons. A share of
// agents (Holdout; by default one in two until the held-out outcomes give
// a confident precision, then one in twenty), drawn when they first reach
// the threshold, is left alone on purpose, so that whether predictions
// come true is measured on agents nobody interfered with; [Arbiter.Live]
// counts them as their horizon ends. A prediction stands for
// Horizon (default 10 s); it is right if the agent fails within it.
//
// # Spares
//
// Per pool, a [Forecaster] (Holt's linear smoothing) follows the call rate
// and the failure rate; [SpareTarget] turns the forecasts, the agents at
// risk and the time a spare takes to start into a spare count between the
// pool's minimum and maximum.
//
// # Evaluation
//
// [Evaluate] replays a journalled history in time order through a fresh
// Arbiter that learns as it goes, and reports precision, recall, median
// lead time and false predictions per agent-hour ([Report]), with sudden
// failures (kinds in SuddenKinds, default "kill") counted apart rather than
// as misses. Only what can be verified is scored: a prediction whose agent
// was replaced (or stopped) before its horizon ended is unverifiable, not
// false, and precision is null when nothing was verifiable. It is what `resilientctl arbiter eval` prints.
package arbiter
