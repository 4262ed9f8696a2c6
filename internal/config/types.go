package config

import (
	"encoding/json"
	"time"
)

// Config is the whole daemon configuration, as loaded from one YAML file.
type Config struct {
	// Path is the file the configuration was loaded from ("" when parsed from bytes).
	Path string `yaml:"-"`

	// Version is the format of the configuration. A parsed Config is always
	// in the CurrentVersion format, older files having been migrated; a
	// file without `version:` is read as version 1.
	Version int `yaml:"version"`

	Socket      string `yaml:"socket"`
	StateDir    string `yaml:"state_dir"`
	MetricsAddr string `yaml:"metrics_addr"`
	// SpawnBudget is how many agents may be starting at once on the node,
	// over all pools; 0 means 2 × CPUs. See [Config.EffectiveSpawnBudget].
	SpawnBudget int `yaml:"spawn_budget"`
	// PingBudget is how many idle agents may be pinged per second on the
	// node, over all pools; 0 means 16 × CPUs. See
	// [Config.EffectivePingBudget].
	PingBudget int     `yaml:"ping_budget"`
	Mesh       Mesh    `yaml:"mesh"`
	Pools      []Pool  `yaml:"pools"`
	Groups     []Group `yaml:"groups"`
	// MCP is the MCP front door (mcp.go); off by default.
	MCP MCPFront `yaml:"mcp"`
	// Cluster is cluster mode on etcd (cluster.go); off by default.
	Cluster Cluster `yaml:"cluster"`
}

// Mesh names the interface and CIDRs that connect this node to its peers;
// node isolation cuts exactly these.
type Mesh struct {
	Interface string   `yaml:"interface"`
	CIDRs     []string `yaml:"cidrs"`
}

// Pool is a named set of identical agents.
type Pool struct {
	Name      string            `yaml:"name"`
	Command   []string          `yaml:"command"`
	Env       map[string]string `yaml:"env"`
	Dir       string            `yaml:"dir"`
	User      string            `yaml:"user"`
	Group     string            `yaml:"group"`
	Replicas  int               `yaml:"replicas"`
	Spares    int               `yaml:"spares"`
	MaxSpares int               `yaml:"max_spares"`
	// MaxReplicas bounds `resilientctl scale` (0: from the node, see
	// [NodeMaxReplicas]); replicas in the file may go over it.
	MaxReplicas int      `yaml:"max_replicas"`
	Protocol    Protocol `yaml:"protocol"`
	Method      string   `yaml:"method"`
	Tool        string   `yaml:"tool"`
	// InputSchema is the JSON Schema of a native pool's call input, as
	// JSON (written inline in YAML); empty: any input. Every call's input
	// is checked against it before an agent sees it, and the MCP front
	// door advertises it as the pool's tool's inputSchema.
	InputSchema     json.RawMessage `yaml:"input_schema"`
	Restart         RestartType     `yaml:"restart"`
	ShutdownTimeout time.Duration   `yaml:"shutdown_timeout"`
	StartTimeout    time.Duration   `yaml:"start_timeout"`
	// MinUptime: an agent that ends or fails before it has served its
	// first valid call within this long after it started is a start
	// failure, which alone grows the backoff and counts toward intensity.
	MinUptime   time.Duration   `yaml:"min_uptime"`
	Backoff     Backoff         `yaml:"backoff"`
	Intensity   Intensity       `yaml:"intensity"`
	Retries     int             `yaml:"retries"`
	OnViolation ViolationAction `yaml:"on_violation"`
	// AgentState: whether a violation poisons the agent (stateful, the
	// default) or only the call (none: see [AgentStateNone]).
	AgentState AgentState `yaml:"agent_state"`
	// ViolationStreak: with agent_state none, an agent whose outputs
	// violate this many calls in a row is replaced.
	ViolationStreak int `yaml:"violation_streak"`
	// Start: how an agent is started: exec the command for each (the
	// default), or zygote: the command is started once per pool and forks
	// each agent on request (docs/PROTOCOL.md).
	Start StartMode `yaml:"start"`
	// OnToolError: for MCP pools, whether a tool result with isError: true
	// is returned to the caller as the tool's answer or is a violation.
	OnToolError ToolErrorAction `yaml:"on_tool_error"`
	// MCPContext: for MCP pools, whether a session's exchanges reach the
	// tool (in _meta) or stay with the daemon.
	MCPContext    MCPContext    `yaml:"mcp_context"`
	PingInterval  time.Duration `yaml:"ping_interval"`
	PingTimeout   time.Duration `yaml:"ping_timeout"`
	Contract      Contract      `yaml:"contract"`
	Limits        Limits        `yaml:"limits"`
	ContextLimit  ContextLimit  `yaml:"context_limit"`
	SessionTTL    time.Duration `yaml:"session_ttl"`
	IsolateAction IsolateAction `yaml:"isolate_action"`
	Network       Network       `yaml:"network"`
	Breaker       Breaker       `yaml:"breaker"`
	Hedge         time.Duration `yaml:"hedge"`
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
	Egress EgressPolicy `yaml:"egress"`
	Allow  []string     `yaml:"allow"` // CIDR or CIDR:port
	Breach BreachAction `yaml:"breach"`
}

// Breaker configures a pool's circuit breaker: it opens when at least
// MinCalls calls ended within Window and FailureRatio of them failed, and
// stays open (calls fail fast) for a cool-down that starts at OpenFor and
// doubles each time the half-open probe fails, up to MaxOpenFor.
type Breaker struct {
	Window       time.Duration `yaml:"window"`
	MinCalls     int           `yaml:"min_calls"`
	FailureRatio float64       `yaml:"failure_ratio"`
	OpenFor      time.Duration `yaml:"open_for"`
	MaxOpenFor   time.Duration `yaml:"max_open_for"`
}

// CoolDown is how long the breaker stays open after it opened the n-th
// time in a row (n >= 1; the first opening and every failed half-open
// probe count): OpenFor doubled n-1 times, at most MaxOpenFor, and never
// less than OpenFor.
func (b Breaker) CoolDown(n int) time.Duration {
	d := b.OpenFor
	for i := 1; i < n && d > 0 && d < b.MaxOpenFor; i++ {
		if d > b.MaxOpenFor/2 {
			d = b.MaxOpenFor // and no overflow on the way
			break
		}
		d *= 2
	}
	return max(b.OpenFor, min(d, b.MaxOpenFor))
}

// Group is a supervision tree node over pools and other groups.
type Group struct {
	Name      string    `yaml:"name"`
	Strategy  Strategy  `yaml:"strategy"`
	Intensity Intensity `yaml:"intensity"`
	Children  []string  `yaml:"children"`
}
