// Package fault names the classes of agent faults, which decide how the
// supervisor accounts for them.
//
// The world resilienced serves is one of agents whose faults are stochastic
// and per call (the odd hallucination, crash or hang), not of daemons in a
// crash loop. Restart accounting must tell the two apart, or a healthy pool
// that is merely unlucky backs off and gives up:
//
//   - [Start]: the agent exited or failed before its handshake, or died
//     before serving its first valid call within the pool's min_uptime.
//     Only these grow the restart backoff and count toward the restart
//     intensity: a command that cannot start backs off and, at the
//     intensity limit, the pool gives up and escalates.
//   - [Runtime]: an agent that had started dies, hangs, breaks its
//     contract or misses pings. It is killed and replaced at once, with no
//     backoff and no intensity charge, however often it happens.
//   - [Caller]: the agent rejected the call's input itself (JSON-RPC
//     -32602 Invalid params, or an MCP tool error). The agent is kept, the
//     call is not retried, and nothing charges the pool.
//   - [Dependency]: the agent reported that something it depends on (its
//     model's API, a database) is unavailable (JSON-RPC -32030). The agent
//     is kept and the call is retried on another; a call that fails so on
//     every attempt counts toward the pool's breaker, which then fails
//     calls fast with that reason.
//
// The class travels in every failure event (field "class") and in metrics.
package fault
