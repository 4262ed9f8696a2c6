package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxNameLen bounds pool and group names, which end up in cgroup paths,
// metric labels and unit names.
const maxNameLen = 40

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = 107

// Validate checks a configuration that was built in code rather than
// parsed, with the same rules as [Parse]; the errors it returns carry key
// paths but no positions. It does not apply defaults.
func (c *Config) Validate() error {
	v := &validator{}
	v.config(c)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

// validator checks the decoded configuration, pointing each error at the
// node of its key path when it was parsed.
type validator struct {
	file  string
	nodes map[string]*yaml.Node
	keys  map[string]*yaml.Node
	bad   map[string]bool
	errs  Errors
}

func parent(path string) string {
	i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
	if i < 0 {
		return ""
	}
	return path[:i]
}

// at finds the node to report path at: its key node when onKey, else its
// value node, else its nearest parent that was written.
func (v *validator) at(path string, onKey bool) *yaml.Node {
	for p := path; ; p = parent(p) {
		if onKey {
			if n := v.keys[p]; n != nil {
				return n
			}
		}
		if n := v.nodes[p]; n != nil {
			return n
		}
		if p == "" {
			return nil
		}
	}
}

func (v *validator) report(path string, onKey bool, format string, args ...any) {
	v.reportAt(path, path, onKey, format, args...)
}

// reportAt reports an error about path at the position of posPath: a key
// that is required because of another one is reported where that one is.
func (v *validator) reportAt(path, posPath string, onKey bool, format string, args ...any) {
	for p := path; p != ""; p = parent(p) {
		if v.bad[p] {
			return // already reported as undecodable
		}
	}
	e := &Error{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n := v.at(posPath, onKey); n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
}

// maxRetries bounds a pool's retries.
const maxRetries = 100

func (v *validator) errorf(path, format string, args ...any) {
	v.report(path, false, format, args...)
}

// enum reports the error of an enum's Validate method at path.
func (v *validator) enum(path string, err error) {
	if err != nil {
		v.errorf(path, "%v", err)
	}
}

func (v *validator) atLeast(path string, n, low int64) {
	switch {
	case n >= low:
	case low == 0:
		v.errorf(path, "must not be negative, got %d", n)
	default:
		v.errorf(path, "must be at least %d, got %d", low, n)
	}
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.errorf(path, "must be positive, got %s", d)
	}
}

func (v *validator) nonNegative(path string, d time.Duration) {
	if d < 0 {
		v.errorf(path, "must not be negative, got %s", d)
	}
}

func (v *validator) positiveSize(path string, n int64) {
	if n <= 0 {
		v.errorf(path, "must be positive, got %d", n)
	}
}

func (v *validator) cidr(path, s string) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		v.errorf(path, "%q is not a CIDR (e.g. \"10.0.0.0/8\")", s)
	case p != p.Masked():
		v.errorf(path, "%q has host bits set: write %q", s, p.Masked().String())
	}
}

func (v *validator) config(c *Config) {
	// Parsed, the version was checked before decoding (see parse); built
	// in code, 0 stands for the current one.
	if c.Version != 0 && c.Version != CurrentVersion {
		v.errorf("version", "%s", unsupportedVersion(c.Version))
	}
	v.atLeast("spawn_budget", int64(c.SpawnBudget), 0)
	v.atLeast("ping_budget", int64(c.PingBudget), 0)
	if len(c.Socket) > maxSocketPath {
		v.errorf("socket", "%d bytes is too long for a unix socket path (at most %d)", len(c.Socket), maxSocketPath)
	}
	if c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			v.errorf("metrics_addr", "%q is not host:port", c.MetricsAddr)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			v.errorf("metrics_addr", "%q: port %q is not a number in 0..65535", c.MetricsAddr, port)
		}
	}
	if i := c.Mesh.Interface; i != "" && (len(i) > 15 || strings.ContainsAny(i, "/: \t\n") || i == "." || i == "..") {
		v.errorf("mesh.interface", "%q is not a network interface name", i)
	}
	for i, s := range c.Mesh.CIDRs {
		v.cidr(joinIndex("mesh.cidrs", i), s)
	}
	v.mcpFront(c.MCP)
	v.cluster(c.Cluster)
	v.clusterMesh(c.Mesh, c.Cluster)

	names := map[string]string{} // name -> key path of its first use
	for i := range c.Pools {
		path := joinIndex("pools", i)
		v.name(path, c.Pools[i].Name, names)
		v.pool(path, &c.Pools[i])
	}
	for i := range c.Groups {
		path := joinIndex("groups", i)
		v.name(path, c.Groups[i].Name, names)
		v.group(path, &c.Groups[i])
	}
	v.tree(c, names)
}

func (v *validator) name(path, name string, names map[string]string) {
	np := joinKey(path, "name")
	switch {
	case name == "":
		v.errorf(np, "required")
		return
	case len(name) > maxNameLen:
		v.errorf(np, "%q is longer than %d characters", name, maxNameLen)
	case !validName(name):
		v.errorf(np, "%q is not a valid name: use lowercase letters, digits and '-', starting with a letter", name)
	}
	if first, dup := names[name]; dup {
		v.errorf(np, "%q is already the name of %s", name, first)
		return
	}
	names[name] = path
}

func validName(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
		case (r >= '0' && r <= '9' || r == '-') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func (v *validator) pool(path string, p *Pool) {
	at := func(key string) string { return joinKey(path, key) }
	if len(p.Command) == 0 {
		v.errorf(at("command"), "required: the agent's argv, e.g. [python3, agent.py]")
	} else if p.Command[0] == "" {
		v.errorf(joinIndex(at("command"), 0), "must not be empty")
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.report(joinKey(at("env"), k), true, "%q is not an environment variable name", k)
		}
	}
	v.atLeast(at("replicas"), int64(p.Replicas), 1)
	v.atLeast(at("spares"), int64(p.Spares), 0)
	v.atLeast(at("max_replicas"), int64(p.MaxReplicas), 0)
	if p.MaxSpares < p.Spares {
		v.errorf(at("max_spares"), "must be at least spares (%d), got %d", p.Spares, p.MaxSpares)
	}
	v.enum(at("protocol"), p.Protocol.Validate())
	switch {
	case p.Protocol == ProtocolMCP && p.Tool == "":
		v.reportAt(at("tool"), at("protocol"), false, "required when protocol is mcp: the MCP tool to call")
	case p.Protocol != ProtocolMCP && p.Tool != "":
		v.errorf(at("tool"), "only used when protocol is mcp")
	}
	if p.Method == "" {
		v.errorf(at("method"), "must not be empty")
	}
	if len(p.InputSchema) > 0 {
		if p.Protocol == ProtocolMCP {
			v.errorf(at("input_schema"), "only used when protocol is jsonrpc: an MCP server's tools carry their own input schemas")
		} else {
			v.schemaAt(at("input_schema"), p.InputSchema, schemaProblems(p.InputSchema))
		}
	}
	v.enum(at("restart"), p.Restart.Validate())
	v.nonNegative(at("shutdown_timeout"), p.ShutdownTimeout)
	v.positive(at("start_timeout"), p.StartTimeout)
	v.nonNegative(at("min_uptime"), p.MinUptime)

	b := at("backoff")
	v.nonNegative(joinKey(b, "initial"), p.Backoff.Initial)
	v.positive(joinKey(b, "max"), p.Backoff.Max)
	v.nonNegative(joinKey(b, "reset_after"), p.Backoff.ResetAfter)
	if p.Backoff.Initial > p.Backoff.Max && p.Backoff.Max > 0 {
		v.errorf(joinKey(b, "initial"), "must not exceed backoff.max (%s), got %s", p.Backoff.Max, p.Backoff.Initial)
	}
	v.intensity(at("intensity"), p.Intensity)

	v.atLeast(at("retries"), int64(p.Retries), 0)
	if p.Retries > maxRetries {
		// Each failed attempt can cost an agent: a call that fails 1,000
		// times is a broken pool, which the breaker is for.
		v.errorf(at("retries"), "%d is more than %d: each failed attempt may replace an agent; a pool that needs more is broken, and its breaker should say so", p.Retries, maxRetries)
	}
	v.enum(at("on_violation"), p.OnViolation.Validate())
	v.enum(at("agent_state"), p.AgentState.Validate())
	if err := p.Start.Validate(); err != nil {
		v.errorf(at("start"), "%v", err)
	} else if p.Start == StartZygote && p.Protocol == ProtocolMCP {
		v.errorf(at("start"), "zygote is for the native protocol (jsonrpc): an MCP server cannot be asked to fork")
	}
	v.atLeast(at("violation_streak"), int64(p.ViolationStreak), 1)
	if p.ViolationStreak != DefaultViolationStreak && p.AgentState == AgentStateful {
		// A stateful agent is replaced on its first violation: a streak
		// set there would be silently ignored.
		v.errorf(at("violation_streak"), "only used when agent_state is none (a stateful agent is replaced on every violation)")
	}
	if err := p.OnToolError.Validate(); err != nil {
		v.errorf(at("on_tool_error"), "%v", err)
	} else if p.OnToolError != OnToolErrorReturn && p.Protocol != ProtocolMCP {
		// Only the non-default value is refused: "return" is what every
		// pool does, and anchors may share it across protocols.
		v.errorf(at("on_tool_error"), "only used when protocol is mcp")
	}
	if err := p.MCPContext.Validate(); err != nil {
		v.errorf(at("mcp_context"), "%v", err)
	} else if p.MCPContext != MCPContextNone && p.Protocol != ProtocolMCP {
		v.errorf(at("mcp_context"), "only used when protocol is mcp")
	}
	v.nonNegative(at("ping_interval"), p.PingInterval)
	if p.PingInterval > 0 {
		v.positive(at("ping_timeout"), p.PingTimeout)
	}
	v.nonNegative(at("hedge"), p.Hedge)

	v.contract(at("contract"), &p.Contract)

	l := at("limits")
	v.atLeast(joinKey(l, "memory"), p.Limits.Memory, 0)
	if m := p.Limits.Memory; m > 0 && m < 1<<20 {
		// A bare number is bytes: "memory: 100" is 100 bytes, in which
		// nothing starts, and the kernel's OOM kill would be all it said.
		v.errorf(joinKey(l, "memory"), "%d bytes is under 1 MiB: no agent runs in that (a bare number is bytes; write 100MiB)", m)
	}
	v.atLeast(joinKey(l, "pids"), p.Limits.Pids, 0)
	if w := p.Limits.CPUWeight; w != 0 && (w < 1 || w > 10000) {
		v.errorf(joinKey(l, "cpu_weight"), "must be between 1 and 10000, got %d", w)
	}
	cl := at("context_limit")
	v.atLeast(joinKey(cl, "entries"), int64(p.ContextLimit.Entries), 1)
	v.positiveSize(joinKey(cl, "bytes"), p.ContextLimit.Bytes)
	v.positive(at("session_ttl"), p.SessionTTL)
	v.enum(at("isolate_action"), p.IsolateAction.Validate())

	n := at("network")
	v.enum(joinKey(n, "egress"), p.Network.Egress.Validate())
	for i, s := range p.Network.Allow {
		if _, err := ParseAllowRule(s); err != nil {
			v.errorf(joinIndex(joinKey(n, "allow"), i), "%v", err)
		}
	}
	v.enum(joinKey(n, "breach"), p.Network.Breach.Validate())

	br := at("breaker")
	v.positive(joinKey(br, "window"), p.Breaker.Window)
	v.atLeast(joinKey(br, "min_calls"), int64(p.Breaker.MinCalls), 0)
	if r := p.Breaker.FailureRatio; !(r > 0 && r <= 1) {
		v.errorf(joinKey(br, "failure_ratio"), "must be in (0, 1], got %v", r)
	}
	v.positive(joinKey(br, "open_for"), p.Breaker.OpenFor)
	if p.Breaker.MaxOpenFor < p.Breaker.OpenFor && p.Breaker.OpenFor > 0 {
		v.errorf(joinKey(br, "max_open_for"), "must be at least breaker.open_for (%s), got %s", p.Breaker.OpenFor, p.Breaker.MaxOpenFor)
	}
}

func (v *validator) intensity(path string, in Intensity) {
	v.atLeast(joinKey(path, "max_restarts"), int64(in.MaxRestarts), 0)
	v.positive(joinKey(path, "period"), in.Period)
}

func (v *validator) contract(path string, c *Contract) {
	at := func(key string) string { return joinKey(path, key) }
	v.positive(at("deadline"), c.Deadline)
	v.positiveSize(at("max_output_bytes"), c.MaxOutputBytes)
	v.atLeast(at("max_tokens"), int64(c.MaxTokens), 0)
	if tp := c.TokensPointer; tp != "" {
		if !strings.HasPrefix(tp, "/") {
			v.errorf(at("tokens_pointer"), "%q is not a JSON pointer: it must start with \"/\"", tp)
		} else if bad := badPointerEscape(tp); bad {
			v.errorf(at("tokens_pointer"), "%q is not a JSON pointer: \"~\" must be followed by 0 or 1", tp)
		}
	}
	// Parsed, the schema was inline when the key was written; built in
	// code, when no file is named.
	_, inline := v.nodes[at("schema")]
	if v.nodes == nil {
		inline = c.SchemaFile == ""
	}
	if inline && c.SchemaFile != "" {
		v.errorf(at("schema_file"), "cannot be used together with schema")
	}
	if len(c.Schema) > 0 {
		v.schema(path, c, inline)
	}
}

func badPointerEscape(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return true
		}
	}
	return false
}

// schema compiles a contract's schema and reports each problem at the
// schema's node when it was written inline, at schema_file otherwise.
func (v *validator) schema(path string, c *Contract, inline bool) {
	problems := schemaProblems(c.Schema)
	if len(problems) == 0 {
		return
	}
	if !inline {
		for _, p := range problems {
			if p.at != nil {
				v.errorf(joinKey(path, "schema_file"), "%s: at %s: %s", c.SchemaFile, pointer(p.at), p.msg)
			} else {
				v.errorf(joinKey(path, "schema_file"), "%s: %s", c.SchemaFile, p.msg)
			}
		}
		return
	}
	v.schemaAt(joinKey(path, "schema"), c.Schema, problems)
}

// schemaAt reports the problems of the inline schema at path, each at
// its node.
func (v *validator) schemaAt(path string, schema json.RawMessage, problems []schemaProblem) {
	var doc any
	_ = json.Unmarshal(schema, &doc)
	for _, p := range problems {
		v.errorf(schemaPath(path, doc, p.at), "invalid schema: %s", p.msg)
	}
}

func (v *validator) group(path string, g *Group) {
	v.enum(joinKey(path, "strategy"), g.Strategy.Validate())
	v.intensity(joinKey(path, "intensity"), g.Intensity)
	if len(g.Children) == 0 {
		v.errorf(joinKey(path, "children"), "required: the pools and groups it supervises, in start order")
	}
}

// tree checks that groups form a forest over pools and groups: every child
// exists and has one parent, and no group contains itself.
func (v *validator) tree(c *Config, names map[string]string) {
	type edge struct{ group, child int } // group index, child index in it
	parentOf := map[string]edge{}
	for gi, g := range c.Groups {
		cp := joinKey(joinIndex("groups", gi), "children")
		for ci, child := range g.Children {
			path := joinIndex(cp, ci)
			if _, ok := names[child]; !ok {
				v.errorf(path, "%q is not a pool or group", child)
				continue
			}
			if e, ok := parentOf[child]; ok {
				if e.group == gi {
					v.errorf(path, "%q is listed twice", child)
				} else {
					v.errorf(path, "%q is already a child of group %q (groups[%d])", child, c.Groups[e.group].Name, e.group)
				}
				continue
			}
			parentOf[child] = edge{gi, ci}
		}
	}
	// With one parent each, a cycle is found by climbing from a group to
	// its ancestors; it is reported once, from its first group.
	for gi, g := range c.Groups {
		if names[g.Name] != joinIndex("groups", gi) {
			continue // a duplicate name, already reported
		}
		chain := []int{gi}
		for {
			e, ok := parentOf[c.Groups[chain[len(chain)-1]].Name]
			if !ok || e.group == gi || slices.Contains(chain, e.group) || len(chain) > len(c.Groups) {
				if ok && e.group == gi && slices.Min(chain) == gi {
					// chain climbs gi <- ... ; the cycle read downwards from gi
					// is gi -> chain[last] -> ... -> chain[1] -> gi.
					down := []string{g.Name}
					for i := len(chain) - 1; i >= 0; i-- {
						down = append(down, c.Groups[chain[i]].Name)
					}
					last := parentOf[c.Groups[chain[len(chain)-1]].Name]
					v.errorf(joinIndex(joinKey(joinIndex("groups", gi), "children"), last.child),
						"cycle: %s", strings.Join(down, " -> "))
				}
				break
			}
			chain = append(chain, e.group)
		}
	}
}
