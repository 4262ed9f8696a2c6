package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
)

// Pool returns the pool named name, or nil.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

// Group returns the group named name, or nil.
func (c *Config) Group(name string) *Group {
	for i := range c.Groups {
		if c.Groups[i].Name == name {
			return &c.Groups[i]
		}
	}
	return nil
}

// Equal reports whether p and q configure the same pool, so that a reload
// restarts (rolls) only the pools that changed. A nil and an empty list or
// map are equal, and schemas are compared as JSON values, not as text: a
// schema moved from inline to a file, reformatted or with its keys
// reordered is the same contract.
//
// Every other key takes part, including the ones that change no agent
// (min_uptime, on_tool_error, the breaker's): a reload that left them out
// would keep running with the old values. TestEqualEveryField checks that
// a key added later takes part too. The node-wide keys (version,
// spawn_budget) belong to no pool; the supervisor reads spawn_budget from
// the Config it is given on every reload, through
// [Config.EffectiveSpawnBudget].
func (p Pool) Equal(q Pool) bool {
	if !slices.Equal(p.Command, q.Command) ||
		!maps.Equal(p.Env, q.Env) ||
		!slices.Equal(p.Network.Allow, q.Network.Allow) ||
		!sameJSON(p.Contract.Schema, q.Contract.Schema) ||
		!sameJSON(p.InputSchema, q.InputSchema) {
		return false
	}
	// Everything else is comparable; blank what was compared above.
	p.Command, q.Command = nil, nil
	p.Env, q.Env = nil, nil
	p.Network.Allow, q.Network.Allow = nil, nil
	p.Contract.Schema, q.Contract.Schema = nil, nil
	p.InputSchema, q.InputSchema = nil, nil
	p.Contract.SchemaFile, q.Contract.SchemaFile = "", ""
	return reflect.DeepEqual(p, q)
}

// Equal reports whether g and h configure the same group.
func (g Group) Equal(h Group) bool {
	return g.Name == h.Name && g.Strategy == h.Strategy && g.Intensity == h.Intensity &&
		slices.Equal(g.Children, h.Children)
}

func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decodeJSON(a)
	vb, errB := decodeJSON(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

// decodeJSON decodes numbers as json.Number so that comparing them loses
// no precision.
func decodeJSON(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
