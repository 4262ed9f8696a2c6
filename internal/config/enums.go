package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// The string enums of the configuration. Each is a named type so that a
// caller cannot hand a pool a protocol where a restart type belongs, with
// its values as constants and a Validate method giving the message the
// loader reports ("\"grpc\" is not one of jsonrpc, mcp"). The decoder
// fills them like any string; the validator checks them.

// Protocol is what an agent speaks on stdin/stdout.
type Protocol string

// Protocols an agent may speak.
const (
	ProtocolJSONRPC Protocol = "jsonrpc"
	ProtocolMCP     Protocol = "mcp"
)

// RestartType is OTP's restart type: when a pool replaces an agent that
// ended.
type RestartType string

// Restart types (OTP).
const (
	RestartPermanent RestartType = "permanent" // always
	RestartTransient RestartType = "transient" // unless it exited with status 0
	RestartTemporary RestartType = "temporary" // never
)

// ViolationAction is what a pool does with a call whose output broke the
// contract.
type ViolationAction string

// What to do with a violating call.
const (
	OnViolationRetry ViolationAction = "retry" // retry the call on another agent
	OnViolationReask ViolationAction = "reask" // retry with the violation as feedback
)

// AgentState says whether a pool's agents keep state between calls,
// which decides what a contract violation poisons.
type AgentState string

// What an agent keeps between calls.
const (
	// AgentStateful: an agent may keep state between calls, so a
	// violating output may come from a poisoned process: it is replaced
	// on every violation.
	AgentStateful AgentState = "stateful"
	// AgentStateNone: everything a call needs travels with it (the
	// daemon keeps the session's context), so a violation poisons only
	// that call: the agent is kept, and replaced only when its violations
	// repeat (violation_streak) or on any other fault.
	AgentStateNone AgentState = "none"
)

// StartMode is how a pool starts its agents.
type StartMode string

// How agents start.
const (
	StartExec   StartMode = "exec"   // the daemon executes the command for each agent
	StartZygote StartMode = "zygote" // the command, started once, forks each agent on request
)

// ToolErrorAction is what an MCP pool does with a tool result that has
// isError: true.
type ToolErrorAction string

// What to do with an MCP tool error.
const (
	// OnToolErrorReturn returns the result to the caller, marked as a tool
	// error: since MCP 2025-11-25 a tool reports bad input and its own
	// failures this way, and the agent is not at fault.
	OnToolErrorReturn ToolErrorAction = "return"
	// OnToolErrorRetry treats the result as a contract violation (see
	// on_violation), for tools whose errors are the agent's fault.
	OnToolErrorRetry ToolErrorAction = "retry"
)

// IsolateAction is what the Kill Switch does to an agent it cuts off.
type IsolateAction string

// Isolate actions.
const (
	IsolateKill   IsolateAction = "kill"
	IsolateFreeze IsolateAction = "freeze"
	IsolateKeep   IsolateAction = "keep"
)

// EgressPolicy is a pool's default for outgoing traffic.
type EgressPolicy string

// Egress policies of a pool.
const (
	EgressAllow EgressPolicy = "allow"
	EgressDeny  EgressPolicy = "deny" // only network.allow is reachable
)

// BreachAction is what happens when an agent breaches its egress policy.
type BreachAction string

// What to do when an agent breaches its egress policy.
const (
	BreachCount   BreachAction = "count"
	BreachIsolate BreachAction = "isolate"
	BreachKill    BreachAction = "kill"
)

// Strategy is OTP's supervision strategy of a group: which children restart
// when one gives up.
type Strategy string

// Group strategies (OTP).
const (
	StrategyOneForOne  Strategy = "one_for_one"
	StrategyOneForAll  Strategy = "one_for_all"
	StrategyRestForOne Strategy = "rest_for_one"
)

// MCPContext is what an MCP pool hands a tool besides the call's input.
type MCPContext string

// What an MCP tool gets of a session.
const (
	// MCPContextNone: the input as the tool's arguments, nothing more. The
	// daemon keeps the session's exchanges (for idempotency and
	// `resilientctl sessions`); a stateless tool does not see them.
	MCPContextNone MCPContext = "none"
	// MCPContextMeta: the session id, its exchanges and any reask feedback
	// travel in the request's _meta (io.resilienced/...), for servers that
	// read them.
	MCPContextMeta MCPContext = "meta"
)

// The values of each enum, in the order error messages and docs list them.
var (
	protocols        = []Protocol{ProtocolJSONRPC, ProtocolMCP}
	restartTypes     = []RestartType{RestartPermanent, RestartTransient, RestartTemporary}
	violationActions = []ViolationAction{OnViolationRetry, OnViolationReask}
	agentStates      = []AgentState{AgentStateful, AgentStateNone}
	startModes       = []StartMode{StartExec, StartZygote}
	toolErrorActions = []ToolErrorAction{OnToolErrorReturn, OnToolErrorRetry}
	mcpContexts      = []MCPContext{MCPContextNone, MCPContextMeta}
	isolateActions   = []IsolateAction{IsolateKill, IsolateFreeze, IsolateKeep}
	egressPolicies   = []EgressPolicy{EgressAllow, EgressDeny}
	breachActions    = []BreachAction{BreachCount, BreachIsolate, BreachKill}
	strategies       = []Strategy{StrategyOneForOne, StrategyOneForAll, StrategyRestForOne}
)

// Validate reports an error unless p is a known protocol.
func (p Protocol) Validate() error { return oneOf(p, protocols) }

// Validate reports an error unless r is a known restart type.
func (r RestartType) Validate() error { return oneOf(r, restartTypes) }

// Validate reports an error unless a is a known violation action.
func (a ViolationAction) Validate() error { return oneOf(a, violationActions) }

// Validate reports an error unless m is a known start mode.
func (m StartMode) Validate() error { return oneOf(m, startModes) }

// Validate reports an error unless a is a known agent state.
func (a AgentState) Validate() error { return oneOf(a, agentStates) }

// Validate reports an error unless a is a known tool error action.
func (a ToolErrorAction) Validate() error { return oneOf(a, toolErrorActions) }

// Validate reports an error unless c is a known MCP context mode.
func (c MCPContext) Validate() error { return oneOf(c, mcpContexts) }

// Validate reports an error unless a is a known isolate action.
func (a IsolateAction) Validate() error { return oneOf(a, isolateActions) }

// Validate reports an error unless e is a known egress policy.
func (e EgressPolicy) Validate() error { return oneOf(e, egressPolicies) }

// Validate reports an error unless a is a known breach action.
func (a BreachAction) Validate() error { return oneOf(a, breachActions) }

// Validate reports an error unless s is a known strategy.
func (s Strategy) Validate() error { return oneOf(s, strategies) }

func oneOf[T ~string](v T, all []T) error {
	if slices.Contains(all, v) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", string(v), joinEnum(all, ", "))
}

func joinEnum[T ~string](all []T, sep string) string {
	s := make([]string, len(all))
	for i, v := range all {
		s[i] = string(v)
	}
	return strings.Join(s, sep)
}

// enumValues maps each enum type to its values, for the field reference
// and its test.
var enumValues = map[reflect.Type]string{
	reflect.TypeFor[Protocol]():        joinEnum(protocols, " | "),
	reflect.TypeFor[RestartType]():     joinEnum(restartTypes, " | "),
	reflect.TypeFor[ViolationAction](): joinEnum(violationActions, " | "),
	reflect.TypeFor[ToolErrorAction](): joinEnum(toolErrorActions, " | "),
	reflect.TypeFor[AgentState]():      joinEnum(agentStates, " | "),
	reflect.TypeFor[StartMode]():       joinEnum(startModes, " | "),
	reflect.TypeFor[MCPContext]():      joinEnum(mcpContexts, " | "),
	reflect.TypeFor[IsolateAction]():   joinEnum(isolateActions, " | "),
	reflect.TypeFor[EgressPolicy]():    joinEnum(egressPolicies, " | "),
	reflect.TypeFor[BreachAction]():    joinEnum(breachActions, " | "),
	reflect.TypeFor[Strategy]():        joinEnum(strategies, " | "),
}
