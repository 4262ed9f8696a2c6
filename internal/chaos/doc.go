// Package chaos injects faults into the agents of a running daemon, measures
// how fast the supervisor recovers from each, and turns the measurements into
// a report, an HTML page and a deploy gate: "if the system cannot recover
// from these injected faults within 300 ms, it is deemed unfit for
// production deployment".
//
// # Fault kinds
//
// Every [Kind] works on any agent, including one that knows nothing of
// chaos:
//
//   - kill: SIGKILL to the agent's process.
//   - crash: SIGSEGV to the agent's process (a Go agent dumps its stacks and
//     exits 2, a C one dumps core).
//   - hang: the agent stops answering: its cgroup is frozen, or without
//     cgroups its process group gets SIGSTOP.
//   - latency: its replies are delayed by a duration ± jitter in the daemon's
//     message path ([supervisor.Fault]; this kernel has no netem).
//   - hallucinate: its outputs are replaced, at a rate, by schema-violating,
//     invalid-JSON or oversize ones, in the daemon's message path.
//   - sever: its network is cut at its cgroup (a cgroup_skb program of the
//     Kill Switch) without telling the supervisor, like a vector-database
//     connection dropped: the agent's own calls fail, and the system has to
//     notice.
//   - corrupt-token: bytes are flipped in the JWT-shaped strings of its input
//     on the way to it.
//   - leak: memory in its cgroup grows steadily until the cgroup's limit (a
//     slow burn, for the Arbiter).
//   - oom: its cgroup is driven past its memory limit at once.
//
// For leak and oom a helper process is placed in the agent's cgroups (cgroup2
// at clone time, then the v1 memory hierarchy on hybrid hosts) and allocates
// there. The helper is the daemon's own binary run again with [HelperArg]; a
// main that may serve as the helper calls [MaybeRunHelper] first thing.
//
// # Experiments
//
// An experiment ([Spec]) names fault kinds, a target (a pool, one agent, or a
// share of a pool's agents), a schedule (a count per kind, a rate, a
// duration), a blast radius (at most MaxConcurrent agents faulted at once,
// default 1), a seed that makes its choices replayable, an optional load of
// calls made by the engine itself, and a bound of failed calls beyond which
// it aborts. [Engine.Run] checks everything before it injects anything: an
// unknown kind or target, a rate of zero, or a schedule that would fault
// every agent at once without an explicit MaxConcurrent is an error and
// nothing happens. A kind this host cannot inject (sever without BPF, leak
// and oom without cgroups) is reported as not supported, with the reason,
// and fails the gate.
//
// Whatever ends an experiment (its schedule, [Engine.Stop], the caller's
// context, [Engine.Close] when the daemon stops, too many failed calls, a
// pool that gives up), every fault it injected is undone: no agent is left
// frozen, stopped, severed, slowed or leaking, and the report says what was
// measured until then.
//
// # Measurement
//
// Each injection is noted with the supervisor ([supervisor.Supervisor.NoteFault])
// just before it happens, so the supervisor's recovery event measures from
// the injection. For every fault the engine records detect_ms (injection →
// the supervisor acted) and recover_ms (injection → the pool back at full
// strength and a call served: the clock stops at the first of the engine's
// calls to succeed after the supervisor's recovered event, or when a probe
// call made at that event returns, whichever is first; a new call on a busy
// pool waits behind the others, which is queueing, not recovery). Leak and
// oom have no instant of injection that means anything for recovery: their
// clock starts at the OOM kill in the agent's cgroup, which the engine
// watches to the millisecond, and onset_ms says how long the burn (or the
// kernel) took before it. A latency
// fault the supervisor does not replace counts as recovered once callers
// get normal latency again, judged from the engine's own calls against the
// latency measured before the first fault. Nothing is reported that was not
// measured: a summary with no samples is absent, not zero.
//
// When the daemon runs the Arbiter, the report scores it against the
// experiment's ground truth ([ArbiterReport]): the leaks it predicted
// (replaced, or held out), the time from a leak's start to the prediction
// and to the failure, the lead, and predictions on agents with no injected
// fault. A prediction on a held-out agent does not take it out of
// service, so the fault is measured as if there had been none.
//
// The [Report] has, per kind, injected and recovered counts and p50, p99 and
// max of detect_ms and recover_ms; for the calls that ran, total, ok,
// failed and retried (more than one attempt). [Report.Evaluate] is the gate:
// it fails when a kind's p99 recovery exceeds the bound, a fault did not
// recover, a kind could not be injected, a call failed, or the experiment
// was aborted. [WriteHTML] renders one self-contained page with the
// recovery-time distribution of each kind as an SVG chart.
//
// # API
//
// [Engine.Register] adds the routes to the daemon's API server:
// POST /v1/chaos/run streams progress as JSON lines and ends with the
// report; POST /v1/chaos/stop ends the running experiment (its faults are
// undone and it still reports); GET /v1/chaos says what is running.
// [Remote] is the client side, used by `resilientctl chaos` and by the demo's
// load generator.
package chaos
