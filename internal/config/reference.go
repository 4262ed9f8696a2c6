package config

// Field documents one key of the configuration file. [Reference] lists
// them all; the resilienced.yaml(5) man page (resilientctl gen-man) and
// docs/CONFIG.md are generated from it, and a test fails when a key of the
// Config structs has no entry, or an entry no key, or an entry's type or
// default disagrees with the structs and [DefaultPool].
type Field struct {
	// Key is the key path: "pools[].breaker.open_for"; "[]" stands for
	// any element of a list.
	Key string
	// Type is "string", "integer", "number", "duration", "size", "list of
	// strings", "map of strings", "mapping", "list of mappings", or the
	// values of an enum: "jsonrpc | mcp".
	Type string
	// Default is the value as written in YAML ("5s", "1MiB"), "required",
	// or the default followed by a note in parentheses: "0 (off)". Empty
	// for a mapping or a list of mappings.
	Default string
	// Doc says in one line what the key does.
	Doc string
}

// Reference is every key of the configuration file, in the order of the
// structs: top-level keys, then a pool's, then a group's.
var Reference = []Field{
	{"version", "integer", "1", "format of this file; a file without it is read as version 1. A newer version than this build reads is refused"},
	{"socket", "string", `"" (/run/resilienced/resilienced.sock as root, else under $XDG_RUNTIME_DIR)`, "unix socket of the API; --socket overrides; changed only by a restart"},
	{"state_dir", "string", `"" (/var/lib/resilienced as root, else under $XDG_STATE_HOME)`, "sessions, idempotent results, the event journal, Arbiter models; --state-dir overrides; changed only by a restart"},
	{"metrics_addr", "string", `"" (off)`, "host:port of the Prometheus metrics endpoint"},
	{"spawn_budget", "integer", "0 (2 × CPUs)", "at most this many agents starting at once on the node, over all pools, so that a storm of replacements cannot fork-bomb it"},
	{"ping_budget", "integer", "0 (16 × CPUs)", "at most this many idle agents pinged per second on the node, over all pools, longest idle first: past it an idle agent is pinged less often than its ping_interval, so idle liveness costs the same at a thousand agents as at a hundred"},
	{"mesh", "mapping", "", "what `resilientctl isolate --node` cuts"},
	{"mesh.interface", "string", `""`, "network interface that connects this node to its peers"},
	{"mesh.cidrs", "list of strings", "[]", "peer networks, as CIDRs; in cluster mode required, and apart from etcd's addresses"},

	{"pools", "list of mappings", "", "the pools: named sets of identical agents"},
	{"pools[].name", "string", "required", "unique among pools and groups: lowercase letters, digits and '-', starting with a letter, at most 40"},
	{"pools[].command", "list of strings", "required", "the agent's argv, run without a shell"},
	{"pools[].env", "map of strings", "{}", "added to the environment the agent inherits from the daemon (less its systemd and socket variables)"},
	{"pools[].dir", "string", `"" (the daemon's)`, "working directory of the agent"},
	{"pools[].user", "string", `"" (the daemon's)`, "user the agent runs as"},
	{"pools[].group", "string", `"" (the user's primary group, else the daemon's)`, "group the agent runs as"},
	{"pools[].replicas", "integer", "1", "agents serving calls; at least 1"},
	{"pools[].spares", "integer", "1", "warm agents, started and handshaken, promoted when an active one fails"},
	{"pools[].max_spares", "integer", "spares", "the Arbiter may raise the spares up to this"},
	{"pools[].max_replicas", "integer", "0 (from the node: 256 per CPU, and no more agents than memory holds at the pool's memory limit, 16 MiB if none)", "`resilientctl scale` refuses more without --force; replicas in the file may exceed it"},
	{"pools[].protocol", "jsonrpc | mcp", "jsonrpc", "what the agent speaks on stdin/stdout"},
	{"pools[].method", "string", "task/run", "JSON-RPC method of a call"},
	{"pools[].tool", "string", `""`, "the MCP tool to call; required when protocol is mcp, refused otherwise"},
	{"pools[].input_schema", "JSON Schema", "none (any input; any object for MCP clients)", "JSON Schema of a call's input, inline in YAML; every call's input is checked against it before an agent sees it (a failure is the caller's: invalid_input), and the MCP front door shows it as the pool's tool's inputSchema (when it describes an object). Native pools only"},
	{"pools[].restart", "permanent | transient | temporary", "permanent", "when an agent that ended is replaced: always, unless it exited 0, or never (OTP)"},
	{"pools[].shutdown_timeout", "duration", "2s", "from SIGTERM to killing the agent's cgroup"},
	{"pools[].start_timeout", "duration", "10s", "from spawn to a finished handshake"},
	{"pools[].min_uptime", "duration", "1s", "an agent that ends or fails before serving its first valid call within this long of its start is a start failure; only start failures back off and count toward intensity"},
	{"pools[].backoff", "mapping", "", "jittered exponential delay of a restart after start failures"},
	{"pools[].backoff.initial", "duration", "10ms", "first delay"},
	{"pools[].backoff.max", "duration", "5s", "largest delay"},
	{"pools[].backoff.reset_after", "duration", "30s", "an agent that served this long resets the delay"},
	{"pools[].intensity", "mapping", "", "restart intensity (OTP): past it the pool gives up and escalates to its group"},
	{"pools[].intensity.max_restarts", "integer", "10", "restarts allowed within period"},
	{"pools[].intensity.period", "duration", "10s", "the window max_restarts counts in"},
	{"pools[].retries", "integer", "5", "a failed call is retried this many times, each on another agent (at most 100)"},
	{"pools[].on_violation", "retry | reask", "retry", "retry a violating call as it was, or with the violation as feedback"},
	{"pools[].agent_state", "stateful | none", "stateful", "whether agents keep state between calls: a stateful agent is replaced on every contract violation; with none only the call is poisoned, so it is retried on another agent and the agent is kept until its violations repeat (violation_streak) or any other fault"},
	{"pools[].violation_streak", "integer", "3", "agent_state none: an agent whose outputs violate the contract this many calls in a row is replaced"},
	{"pools[].start", "exec | zygote", "exec", "how agents start: the command executed for each, or (zygote) started once as a zygote that initializes, then forks each agent on the daemon's request over the socket in RESILIENT_ZYGOTE_FD (docs/PROTOCOL.md), each child placed in its own cgroup before it serves; native protocol only"},
	{"pools[].on_tool_error", "return | retry", "return", "MCP pools: a tool result with isError: true is returned to the caller as a tool error, or (retry) is a contract violation; retry is refused for other protocols"},
	{"pools[].mcp_context", "none | meta", "none", "MCP pools: what a tool gets of a session besides the input: nothing (the daemon keeps the exchanges), or (meta) the session id, its exchanges and reask feedback in the request's _meta"},
	{"pools[].ping_interval", "duration", "1s", "liveness ping of an idle agent; 0 disables"},
	{"pools[].ping_timeout", "duration", "500ms", "a ping unanswered this long is a hang"},
	{"pools[].contract", "mapping", "", "what every output must satisfy, or the agent is replaced and the call retried"},
	{"pools[].contract.schema", "JSON Schema", "none", "JSON Schema of the result, inline in YAML (2020-12 unless $schema says otherwise); an unknown keyword (a typo such as requird) is an error, x- prefixed ones are kept as notes"},
	{"pools[].contract.schema_file", "string", `""`, "the same in a JSON file, relative to this file; not with schema"},
	{"pools[].contract.deadline", "duration", "30s", "a call unanswered this long fails on this agent"},
	{"pools[].contract.max_output_bytes", "size", "1MiB", "largest output line"},
	{"pools[].contract.max_tokens", "integer", "0 (no limit)", "largest token count of a result"},
	{"pools[].contract.tokens_pointer", "string", `"" (estimated from bytes)`, "JSON pointer to the token count in a result"},
	{"pools[].limits", "mapping", "", "cgroup limits of each agent; 0 means none"},
	{"pools[].limits.memory", "size", "0", "memory.max; over it the agent is OOM-killed and replaced"},
	{"pools[].limits.pids", "integer", "0", "pids.max"},
	{"pools[].limits.cpu_weight", "integer", "0", "cpu.weight, 1 to 10000"},
	{"pools[].context_limit", "mapping", "", "a session's context window, trimmed from the oldest entry"},
	{"pools[].context_limit.entries", "integer", "64", "most entries kept"},
	{"pools[].context_limit.bytes", "size", "1MiB", "most bytes kept"},
	{"pools[].session_ttl", "duration", "24h", "an idle session is forgotten after this"},
	{"pools[].isolate_action", "kill | freeze | keep", "kill", "what `resilientctl isolate` does to the agent it cuts off"},
	{"pools[].network", "mapping", "", "egress policy of the agents"},
	{"pools[].network.egress", "allow | deny", "allow", "deny: only network.allow is reachable"},
	{"pools[].network.allow", "list of strings", "[]", "CIDR or CIDR:port reachable when egress is deny"},
	{"pools[].network.breach", "count | isolate | kill", "count", "what a connection outside the policy does to the agent"},
	{"pools[].breaker", "mapping", "", "circuit breaker: when calls keep failing, fail them fast and probe"},
	{"pools[].breaker.window", "duration", "10s", "the window calls are counted in"},
	{"pools[].breaker.min_calls", "integer", "20", "calls within window before the breaker may open"},
	{"pools[].breaker.failure_ratio", "number", "0.5", "share of failed calls that opens it, in (0, 1]"},
	{"pools[].breaker.open_for", "duration", "5s", "first cool-down before a half-open probe"},
	{"pools[].breaker.max_open_for", "duration", "1m (at least open_for)", "the cool-down doubles from open_for after each failed probe, up to this"},
	{"pools[].hedge", "duration", "0s (off)", "a call unanswered this long is also sent to another agent; the first answer wins"},
	{"pools[].stall_timeout", "duration", "0s (adaptive)", "a call without a reply this long is a hang; 0 adapts it to the pool's latency (its EWMA plus 4× its deviation, at least 2× the EWMA and 50ms), and an agent still at work is given more"},

	{"groups", "list of mappings", "", "supervision tree over pools and groups"},
	{"groups[].name", "string", "required", "unique among pools and groups"},
	{"groups[].strategy", "one_for_one | one_for_all | rest_for_one", "one_for_one", "when a child gives up: restart it, all children, or it and those after it (OTP)"},
	{"groups[].intensity", "mapping", "", "restart intensity of the group: past it the group gives up in turn"},
	{"groups[].intensity.max_restarts", "integer", "10", "restarts allowed within period"},
	{"groups[].intensity.period", "duration", "10s", "the window max_restarts counts in"},
	{"groups[].children", "list of strings", "required", "the pools and groups it supervises, in start order"},

	{"mcp", "mapping", "", "the MCP front door: every pool as MCP tools over Streamable HTTP; off unless listen is set"},
	{"mcp.listen", "string", `"" (off)`, "host:port of the front door, e.g. 127.0.0.1:8765 (a TCP port reaches every local user: opening it is the operator's choice)"},
	{"mcp.path", "string", "/mcp", "the endpoint serving every pool's tools; each pool is also at /pools/{pool}/mcp"},
	{"mcp.tokens_file", "string", `""`, "bearer tokens clients must present, one per line (blank lines and #-comments ignored), read at start"},

	{"cluster", "mapping", "", "cluster mode on etcd: node membership, session ownership with fencing, contexts in etcd; off unless etcd.endpoints is set"},
	{"cluster.name", "string", "default", "the cluster's name: its keys live under /resilienced/<name>/ in etcd"},
	{"cluster.node", "string", `""`, "this node's name, unique in the cluster; required in cluster mode"},
	{"cluster.advertise", "string", `""`, "host:port other nodes dial for inter-node calls; required in cluster mode"},
	{"cluster.token_file", "string", `""`, "file holding the cluster token (one line, at least 16 bytes) that nodes present to each other; required in cluster mode"},
	{"cluster.etcd", "mapping", "", "how the node reaches etcd"},
	{"cluster.etcd.endpoints", "list of strings", "[] (single-node mode)", "etcd client URLs, http://host:port or https://host:port"},
	{"cluster.etcd.dial_timeout", "duration", "5s", "how long a connection to etcd may take"},
	{"cluster.etcd.tls", "mapping", "", "TLS to etcd; all empty: plain TCP"},
	{"cluster.etcd.tls.ca_file", "string", `""`, "CA bundle that signs the etcd servers' certificates"},
	{"cluster.etcd.tls.cert_file", "string", `""`, "client certificate (with key_file)"},
	{"cluster.etcd.tls.key_file", "string", `""`, "client key (with cert_file)"},
	{"cluster.tls", "mapping", "", "mutual TLS on the inter-node connection (the token is still required); all empty: h2c"},
	{"cluster.tls.ca_file", "string", `""`, "CA bundle that signs every node's certificate; peers are checked against it"},
	{"cluster.tls.cert_file", "string", `""`, "this node's certificate, for serving and dialing: its names or IPs must cover its advertise host"},
	{"cluster.tls.key_file", "string", `""`, "this node's key"},
	{"cluster.lease_ttl", "duration", "5s", "the node's etcd lease, whole seconds, at least 2s: when it expires the node leaves the ring and its sessions may be taken over by anyone"},
	{"cluster.replicas_per_session", "integer", "2", "nodes that are to hold a session, the owner first in ring order; read and checked, not used yet (today the owner alone holds it, and any node takes it over when the owner is gone)"},
}
