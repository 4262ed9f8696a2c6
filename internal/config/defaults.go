package config

import "time"

// Defaults of a pool and a group, applied to every key the file leaves out.
const (
	DefaultReplicas        = 1
	DefaultSpares          = 1
	DefaultMethod          = "task/run"
	DefaultShutdownTimeout = 2 * time.Second
	DefaultStartTimeout    = 10 * time.Second
	DefaultRetries         = 3
	DefaultPingInterval    = time.Second
	DefaultPingTimeout     = 500 * time.Millisecond
	DefaultDeadline        = 30 * time.Second
	DefaultMaxOutputBytes  = 1 << 20
	DefaultContextEntries  = 64
	DefaultContextBytes    = 1 << 20
	DefaultSessionTTL      = 24 * time.Hour
)

// Isolate actions: what the Kill Switch does to an agent it cuts off.
const (
	IsolateKill   = "kill"
	IsolateFreeze = "freeze"
	IsolateKeep   = "keep"
)

// Egress policies of a pool.
const (
	EgressAllow = "allow"
	EgressDeny  = "deny"
)

// What to do when an agent breaches its egress policy.
const (
	BreachCount   = "count"
	BreachIsolate = "isolate"
	BreachKill    = "kill"
)

// Default returns the configuration of an empty file: no pools, no groups,
// and the socket, state directory and metrics address left empty (the daemon
// picks the first two by uid; an empty metrics address disables metrics).
func Default() *Config {
	return &Config{}
}

// DefaultPool returns a pool with every default applied and no name or
// command. MaxSpares equals Spares; a parsed pool that sets spares but not
// max_spares gets max_spares = spares.
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
		Backoff: Backoff{
			Initial:    10 * time.Millisecond,
			Max:        5 * time.Second,
			ResetAfter: 30 * time.Second,
		},
		Intensity:    defaultIntensity(),
		Retries:      DefaultRetries,
		OnViolation:  OnViolationRetry,
		PingInterval: DefaultPingInterval,
		PingTimeout:  DefaultPingTimeout,
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
