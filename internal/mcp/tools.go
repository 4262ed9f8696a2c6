package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Pool is what the front door shows of one pool.
type Pool struct {
	Name string
	// Tools are the MCP tools the pool's server offers: the one it calls
	// (tool: NAME), or all of them (Every). Empty for a native pool, which
	// is one tool named after the pool.
	Tools []Tool
	// Every: the pool serves every tool of its server; its call input is
	// {"name": TOOL, "arguments": {…}}.
	Every bool
	// Description, InputSchema and OutputSchema describe a native pool's
	// tool: the input schema is the pool's input_schema, the output schema
	// the contract's (each used when it describes an object, as MCP
	// requires of a tool's input; else the input is shown as any object).
	Description  string
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
}

// Tool is one MCP tool as its server described it, its fields raw.
type Tool struct {
	Name, Title, Description string
	InputSchema              json.RawMessage
	OutputSchema             json.RawMessage
	Annotations              json.RawMessage
}

// exposed is one tool of an endpoint and the call it makes.
type exposed struct {
	name  string // as the client sees it
	pool  string
	tool  string // the server's name for it ("" for a native pool)
	every bool
	def   *sdk.Tool
}

// anyObject is the input schema of a tool whose server said nothing better.
var anyObject = json.RawMessage(`{"type":"object"}`)

// toolsOf returns the tools of pools as one endpoint shows them; a name
// shared by several pools is prefixed by each one's pool.
func toolsOf(pools []Pool) []exposed {
	var all []exposed
	for _, p := range pools {
		if len(p.Tools) == 0 {
			desc := p.Description
			if desc == "" {
				desc = "Pool " + p.Name + " of resilienced: the arguments are the call's input; the result is the pool's validated output."
			}
			def := &sdk.Tool{Name: p.Name, Description: desc, InputSchema: anyObject}
			if isObjectSchema(p.InputSchema) {
				def.InputSchema = p.InputSchema
			}
			if isObjectSchema(p.OutputSchema) {
				def.OutputSchema = p.OutputSchema
			}
			all = append(all, exposed{name: p.Name, pool: p.Name, def: def})
			continue
		}
		for _, t := range p.Tools {
			def := &sdk.Tool{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: anyObject}
			if isObjectSchema(t.InputSchema) {
				def.InputSchema = t.InputSchema
			}
			if isObjectSchema(t.OutputSchema) {
				def.OutputSchema = t.OutputSchema
			}
			if len(t.Annotations) > 0 {
				var a sdk.ToolAnnotations
				if json.Unmarshal(t.Annotations, &a) == nil {
					def.Annotations = &a
				}
			}
			all = append(all, exposed{name: t.Name, pool: p.Name, tool: t.Name, every: p.Every, def: def})
		}
	}
	count := map[string]int{}
	for _, e := range all {
		count[e.name]++
	}
	for i := range all {
		if count[all[i].name] > 1 {
			all[i].name = all[i].pool + "." + all[i].name
		}
		d := *all[i].def
		d.Name = all[i].name
		all[i].def = &d
	}
	slices.SortFunc(all, func(a, b exposed) int { return strings.Compare(a.name, b.name) })
	return all
}

// isObjectSchema reports whether s is a JSON Schema of an object, the
// only kind MCP takes for a tool's input and output.
func isObjectSchema(s json.RawMessage) bool {
	if len(bytes.TrimSpace(s)) == 0 {
		return false
	}
	var m struct {
		Type any `json:"type"`
	}
	return json.Unmarshal(s, &m) == nil && m.Type == "object"
}

// input is the pool call's input for arguments given to tool e.
func (e exposed) input(args json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(args)) == 0 || string(args) == "null" {
		args = json.RawMessage(`{}`)
	}
	if !e.every {
		return args
	}
	name, _ := json.Marshal(e.tool)
	return json.RawMessage(`{"name":` + string(name) + `,"arguments":` + string(args) + `}`)
}

// fingerprint identifies a tool list, to tell whether an endpoint's
// server needs its tools replaced.
func fingerprint(ts []exposed) string {
	var b strings.Builder
	for _, t := range ts {
		j, _ := json.Marshal(t.def)
		b.WriteString(t.pool)
		b.WriteByte(0)
		b.Write(j)
		b.WriteByte(0)
	}
	return b.String()
}

// checkArguments refuses a tools/call whose arguments are not a JSON
// object (MCP's type for them) with -32602, before any pool sees them: the
// SDK checks no schema for tools added raw, as the front door's are.
func checkArguments(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		if p, ok := req.GetParams().(*sdk.CallToolParamsRaw); ok && p != nil && method == "tools/call" {
			args := bytes.TrimSpace(p.Arguments)
			if len(args) > 0 && args[0] != '{' && string(args) != "null" {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("tool %.100q: arguments must be a JSON object, not %.40s", p.Name, args)}
			}
		}
		return next(ctx, method, req)
	}
}
