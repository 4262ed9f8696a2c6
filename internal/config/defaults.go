package config

import (
	"runtime"
	"time"
)

// Defaults of a pool and a group, applied to every key the file leaves out.
const (
	DefaultReplicas        = 1
	DefaultSpares          = 1
	DefaultMethod          = "task/run"
	DefaultShutdownTimeout = 2 * time.Second
	DefaultStartTimeout    = 10 * time.Second
	// DefaultRetries: at 5 % of outputs breaking the contract, a call
	// fails on all of 1+5 agents once in 64 million (1+3 attempts: once
	// in 160,000, a few failed calls in every ten minutes at 500 calls/s).
	// A retry costs only when an attempt failed.
	DefaultRetries        = 5
	DefaultPingInterval   = time.Second
	DefaultPingTimeout    = 500 * time.Millisecond
	DefaultDeadline       = 30 * time.Second
	DefaultMaxOutputBytes = 1 << 20
	DefaultContextEntries = 64
	DefaultContextBytes   = 1 << 20
	DefaultSessionTTL     = 24 * time.Hour
	// DefaultMinUptime is supervisord's startsecs: long enough for an agent
	// that cannot work (a missing model, a bad key) to fail within it,
	// short enough that a healthy agent killed soon after start is not
	// taken for a crash loop.
	DefaultMinUptime = time.Second
	// DefaultViolationStreak: a stateless agent is replaced after this
	// many violations in a row. An agent that hallucinates 5 % of its
	// outputs at random reaches 3 in a row once in 400 violations; one
	// that is broken (every output violates) costs 3 attempts, each
	// retried elsewhere. docs/BENCHMARKS.md has the measurement.
	DefaultViolationStreak = 3
	// DefaultMaxOpenFor caps the breaker's doubling cool-down: a pool whose
	// upstream is down probes it at least once a minute.
	DefaultMaxOpenFor = time.Minute
)

// Default returns the configuration of an empty file: the current format
// version, no pools, no groups, the spawn budget left to the CPU count
// (see [Config.EffectiveSpawnBudget]), and the socket, state directory and
// metrics address left empty (the daemon picks the first two by uid; an
// empty metrics address disables metrics).
func Default() *Config {
	return &Config{Version: CurrentVersion, Cluster: defaultCluster()}
}

// DefaultPool returns a pool with every default applied and no name or
// command. MaxSpares equals Spares; a parsed pool that sets spares but not
// max_spares gets max_spares = spares. Likewise a parsed pool that sets
// breaker.open_for above DefaultMaxOpenFor but not breaker.max_open_for gets
// max_open_for = open_for, so that files written before max_open_for
// existed keep their meaning: a fixed cool-down.
func DefaultPool() Pool {
	return Pool{
		Replicas:        DefaultReplicas,
		Spares:          DefaultSpares,
		MaxSpares:       DefaultSpares,
		Protocol:        ProtocolJSONRPC,
		Method:          DefaultMethod,
		Restart:         RestartPermanent,
		ShutdownTimeout: DefaultShutdownTimeout,
		StartTimeout:    DefaultStartTimeout,
		MinUptime:       DefaultMinUptime,
		Backoff: Backoff{
			Initial:    10 * time.Millisecond,
			Max:        5 * time.Second,
			ResetAfter: 30 * time.Second,
		},
		Intensity:       defaultIntensity(),
		Retries:         DefaultRetries,
		OnViolation:     OnViolationRetry,
		AgentState:      AgentStateful,
		Start:           StartExec,
		ViolationStreak: DefaultViolationStreak,
		OnToolError:     OnToolErrorReturn,
		MCPContext:      MCPContextNone,
		PingInterval:    DefaultPingInterval,
		PingTimeout:     DefaultPingTimeout,
		Contract: Contract{
			Deadline:       DefaultDeadline,
			MaxOutputBytes: DefaultMaxOutputBytes,
		},
		ContextLimit: ContextLimit{
			Entries: DefaultContextEntries,
			Bytes:   DefaultContextBytes,
		},
		SessionTTL:    DefaultSessionTTL,
		IsolateAction: IsolateKill,
		Network: Network{
			Egress: EgressAllow,
			Breach: BreachCount,
		},
		Breaker: Breaker{
			Window:       10 * time.Second,
			MinCalls:     20,
			FailureRatio: 0.5,
			OpenFor:      5 * time.Second,
			MaxOpenFor:   DefaultMaxOpenFor,
		},
	}
}

// DefaultGroup returns a group with every default applied and no name or
// children: strategy one_for_one and the same intensity as a pool's.
func DefaultGroup() Group {
	return Group{
		Strategy:  StrategyOneForOne,
		Intensity: defaultIntensity(),
	}
}

func defaultIntensity() Intensity {
	return Intensity{MaxRestarts: 10, Period: 10 * time.Second}
}

// spawnBudgetPerCPU is how many agents may start at once per CPU when
// spawn_budget is 0: starting an agent is mostly fork, exec and the
// runtime's own start-up, which keep a CPU busy; two per CPU keeps the
// CPUs busy without letting a storm of replacements fork-bomb the node.
const spawnBudgetPerCPU = 2

// EffectiveSpawnBudget is the number of agents that may be starting at once
// on the node: SpawnBudget when positive, else 2 × runtime.NumCPU() (the
// CPUs this process may run on).
func (c *Config) EffectiveSpawnBudget() int {
	return spawnBudget(c.SpawnBudget, runtime.NumCPU())
}

// pingBudgetPerCPU is how many idle agents may be pinged per second per
// CPU when ping_budget is 0. A ping costs the daemon ~60 µs of CPU (a
// write, the agent's answer read, a goroutine, a timer): at 16 a second
// per CPU, idle liveness costs about 0.1 % of each CPU however many agents
// idle. Up to that many idle agents are pinged every ping_interval; past
// it, less often (1,000 idle agents on 2 CPUs: every ~31 s). That is
// enough, because a ping finds only one fault: an idle agent alive but
// hung. An agent that dies or closes its stdout is found at once by its
// pidfd and its pipe, ping or not; and a call sent to a hung agent that
// no ping had found yet has its own stall detection, deadline and retry on
// another agent. A faster ping only moves the replacement of a hung idle
// agent earlier, and at a thousand agents that cost more of the node's CPU
// than the agents' own idling.
const pingBudgetPerCPU = 16

// EffectivePingBudget is how many idle agents may be pinged per second on
// the node: PingBudget when positive, else 16 × runtime.NumCPU().
func (c *Config) EffectivePingBudget() int {
	return pingBudget(c.PingBudget, runtime.NumCPU())
}

func pingBudget(configured, cpus int) int {
	if configured > 0 {
		return configured
	}
	return pingBudgetPerCPU * max(cpus, 1)
}

func spawnBudget(configured, cpus int) int {
	if configured > 0 {
		return configured
	}
	return spawnBudgetPerCPU * max(cpus, 1)
}
