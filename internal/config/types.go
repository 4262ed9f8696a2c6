package config

import (
	"encoding/json"
	"time"
)

// Config is the whole daemon configuration, as loaded from one YAML file.
type Config struct {
	// Path is the file the configuration was loaded from ("" when parsed from bytes).
	Path string `yaml:"-"`

	Socket      string  `yaml:"socket"`
	StateDir    string  `yaml:"state_dir"`
	MetricsAddr string  `yaml:"metrics_addr"`
	Mesh        Mesh    `yaml:"mesh"`
	Pools       []Pool  `yaml:"pools"`
	Groups      []Group `yaml:"groups"`
	// MCP is the MCP front door (mcp.go); off by default.
	MCP MCPFront `yaml:"mcp"`
}

// Mesh names the interface and CIDRs that connect this node to its peers;
// node isolation cuts exactly these.
type Mesh struct {
	Interface string   `yaml:"interface"`
	CIDRs     []string `yaml:"cidrs"`
}

// Pool is a named set of identical agents.
type Pool struct {
	Name            string            `yaml:"name"`
	Command         []string          `yaml:"command"`
	Env             map[string]string `yaml:"env"`
	Dir             string            `yaml:"dir"`
	User            string            `yaml:"user"`
	Group           string            `yaml:"group"`
	Replicas        int               `yaml:"replicas"`
	Spares          int               `yaml:"spares"`
	MaxSpares       int               `yaml:"max_spares"`
	Protocol        string            `yaml:"protocol"`
	Method          string            `yaml:"method"`
	Tool            string            `yaml:"tool"`
	Restart         string            `yaml:"restart"`
	ShutdownTimeout time.Duration     `yaml:"shutdown_timeout"`
	StartTimeout    time.Duration     `yaml:"start_timeout"`
	Backoff         Backoff           `yaml:"backoff"`
	Intensity       Intensity         `yaml:"intensity"`
	Retries         int               `yaml:"retries"`
	OnViolation     string            `yaml:"on_violation"`
	PingInterval    time.Duration     `yaml:"ping_interval"`
	PingTimeout     time.Duration     `yaml:"ping_timeout"`
	Contract        Contract          `yaml:"contract"`
	Limits          Limits            `yaml:"limits"`
	ContextLimit    ContextLimit      `yaml:"context_limit"`
	SessionTTL      time.Duration     `yaml:"session_ttl"`
	IsolateAction   string            `yaml:"isolate_action"`
	Network         Network           `yaml:"network"`
	Breaker         Breaker           `yaml:"breaker"`
	Hedge           time.Duration     `yaml:"hedge"`
	// StallTimeout: a call without a reply after this long is a hang;
	// 0 adapts it to the pool's typical latency (see the supervisor).
	StallTimeout time.Duration `yaml:"stall_timeout"`
}

// Backoff is the jittered exponential restart delay of a pool.
type Backoff struct {
	Initial    time.Duration `yaml:"initial"`
	Max        time.Duration `yaml:"max"`
	ResetAfter time.Duration `yaml:"reset_after"`
}

// Intensity is OTP's restart intensity: more than MaxRestarts restarts
// within Period and the supervisor gives up (escalates).
type Intensity struct {
	MaxRestarts int           `yaml:"max_restarts"`
	Period      time.Duration `yaml:"period"`
}

// Contract is what every output of a pool must satisfy.
type Contract struct {
	// Schema is the JSON Schema, as JSON, from the inline `schema:` key or
	// read from SchemaFile (resolved against the config file's directory).
	Schema         json.RawMessage `yaml:"-"`
	SchemaFile     string          `yaml:"schema_file"`
	Deadline       time.Duration   `yaml:"deadline"`
	MaxOutputBytes int64           `yaml:"max_output_bytes"`
	MaxTokens      int             `yaml:"max_tokens"`
	TokensPointer  string          `yaml:"tokens_pointer"`
}

// Limits are the resource limits of each agent's cgroup; zero means none.
type Limits struct {
	Memory    int64 `yaml:"memory"`
	Pids      int64 `yaml:"pids"`
	CPUWeight int   `yaml:"cpu_weight"`
}

// ContextLimit trims a session's context window from the oldest entry.
type ContextLimit struct {
	Entries int   `yaml:"entries"`
	Bytes   int64 `yaml:"bytes"`
}

// Network is a pool's egress policy.
type Network struct {
	Egress string   `yaml:"egress"` // allow | deny
	Allow  []string `yaml:"allow"`  // CIDR or CIDR:port
	Breach string   `yaml:"breach"` // count | isolate | kill
}

// Breaker configures a pool's circuit breaker.
type Breaker struct {
	Window       time.Duration `yaml:"window"`
	MinCalls     int           `yaml:"min_calls"`
	FailureRatio float64       `yaml:"failure_ratio"`
	OpenFor      time.Duration `yaml:"open_for"`
}

// Group is a supervision tree node over pools and other groups.
type Group struct {
	Name      string    `yaml:"name"`
	Strategy  string    `yaml:"strategy"`
	Intensity Intensity `yaml:"intensity"`
	Children  []string  `yaml:"children"`
}

// Restart types (OTP).
const (
	RestartPermanent = "permanent"
	RestartTransient = "transient"
	RestartTemporary = "temporary"
)

// Group strategies (OTP).
const (
	StrategyOneForOne  = "one_for_one"
	StrategyOneForAll  = "one_for_all"
	StrategyRestForOne = "rest_for_one"
)

// Protocols an agent may speak.
const (
	ProtocolJSONRPC = "jsonrpc"
	ProtocolMCP     = "mcp"
)

// What to do with a violating call.
const (
	OnViolationRetry = "retry"
	OnViolationReask = "reask"
)
