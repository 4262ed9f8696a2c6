// Package supervisor keeps pools of agents serving: Erlang/OTP supervision
// for processes that crash, hang, leak and hallucinate.
//
// A [Supervisor] runs pools ([config.Pool]) arranged in groups
// ([config.Group]). Each pool keeps `replicas` active agents and `spares`
// warm ones that have passed their handshake and hold no work. Every agent
// runs in its own sandbox (a cgroup, or a process group when cgroups are
// not available), so killing it kills its whole process tree.
//
// A call ([Supervisor.Call]) goes to an idle active agent, or for a session
// to the agent the pool's ring assigns it, carrying the session's last
// validated context. The agent is lent to the caller's goroutine, which
// writes the request and waits for the reply itself: no goroutine of the
// pool's is woken per call. The output is checked against the pool's contract.
// On any failure of the agent (exit, violation, deadline, missed ping,
// broken stdout) the supervisor does the same small set of things: kill
// the agent's sandbox, promote a spare at once so the pool is back at
// `replicas` active agents, start a replacement spare in the background
// (with jittered exponential backoff), retry the call on another agent
// with the same clean context (with `on_violation: reask` the retry carries
// feedback describing the violation), and record events with timestamps.
// The `recovered` event carries detect_ms and recover_ms.
//
// A call's caller may follow its progress ([CallRequest.Progress], only
// increasing across retries) and may cancel it by ending its context: the
// caller gets its answer at once, and the agent is told to stop (MCP) and
// kept or replaced after [Options.CancelGrace] as cancel.go says, with
// nothing charged to the pool. [Supervisor.Tools] is the catalog of what
// each MCP pool's servers listed at their latest handshake.
//
// When no spare is left, the replacement's start is the recovery, so
// nothing else stands in its way: each pool keeps the next agent's cgroup
// made ahead of need (limits set, [Options.OnSandbox] called), made in the
// background once no agent is starting and removed when the pool stops;
// and a dead agent's cgroup, killed at once, is waited for and removed only
// after its replacement has started.
//
// Restart policy follows OTP: permanent, transient and temporary agents;
// intensity (max restarts within a period) with escalation to the parent
// group, whose strategy (one_for_one, one_for_all, rest_for_one) restarts
// the failed child and its siblings as the strategy says. At the top, a
// child that gives up enters state failed with the reason, while every
// other pool keeps running.
package supervisor
