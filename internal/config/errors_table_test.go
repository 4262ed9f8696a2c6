package config

import (
	"errors"
	"testing"
)

// parseErrorCases gives every kind of error once, with the exact message:
// file, line, column, key path and text. Most cases add lines, from line 4
// on, to the smallest valid pool. A nil want means the input is valid.
var parseErrorCases = []struct {
	name string
	yaml string
	want []string
}{
	{"unknown key with suggestion", `pools:
  - name: a
    command: [x]
    replicaz: 2`, []string{
		`t.yaml:4:5: pools[0].replicaz: unknown key; did you mean "replicas"?`,
	}},
	{"unknown key", `pools:
  - name: a
    command: [x]
    colour: red`, []string{
		`t.yaml:4:5: pools[0].colour: unknown key`,
	}},
	{"unknown top-level key", `sockets: /tmp/s`, []string{
		`t.yaml:1:1: sockets: unknown key; did you mean "socket"?`,
	}},
	{"unknown top-level key far from any", `zzz: 1`, []string{
		`t.yaml:1:1: zzz: unknown key (keys starting with "x-" are ignored, e.g. to hold YAML anchors)`,
	}},
	{"unknown nested key", `pools:
  - name: a
    command: [x]
    backoff: {initial: 1s, maximum: 2s}`, []string{
		`t.yaml:4:28: pools[0].backoff.maximum: unknown key`,
	}},
	{"duplicate key", `pools:
  - name: a
    command: [x]
    replicas: 2
    replicas: 3`, []string{
		`t.yaml:5:5: pools[0].replicas: duplicate key (first at line 4)`,
	}},
	{"string where a list is expected", `pools:
  - name: a
    command: python3 agent.py`, []string{
		`t.yaml:3:14: pools[0].command: expected a list of strings, got a string`,
	}},
	{"list where a string is expected", `pools:
  - name: a
    command: [x]
    dir: [a, b]`, []string{
		`t.yaml:4:10: pools[0].dir: expected a string, got a list`,
	}},
	{"mapping where a list is expected", `pools: {name: a}`, []string{
		`t.yaml:1:8: pools: expected a list, got a mapping`,
	}},
	{"not an integer", `pools:
  - name: a
    command: [x]
    replicas: two`, []string{
		`t.yaml:4:15: pools[0].replicas: "two" is not an integer`,
	}},
	{"float for integer", `pools:
  - name: a
    command: [x]
    retries: 1.5`, []string{
		`t.yaml:4:14: pools[0].retries: "1.5" is not an integer`,
	}},
	{"integer overflow", `pools:
  - name: a
    command: [x]
    retries: 99999999999999999999`, []string{
		`t.yaml:4:14: pools[0].retries: "99999999999999999999" is not an integer`,
	}},
	{"bad duration", `pools:
  - name: a
    command: [x]
    contract:
      deadline: 5x`, []string{
		`t.yaml:5:17: pools[0].contract.deadline: "5x" is not a duration`,
	}},
	{"duration without unit", `pools:
  - name: a
    command: [x]
    session_ttl: 5`, []string{
		`t.yaml:4:18: pools[0].session_ttl: "5" is not a duration: missing unit (e.g. "5s")`,
	}},
	{"duration as list", `pools:
  - name: a
    command: [x]
    hedge: [1s]`, []string{
		`t.yaml:4:12: pools[0].hedge: expected a duration, got a list`,
	}},
	{"bad size unit", `pools:
  - name: a
    command: [x]
    limits: {memory: 5XB}`, []string{
		`t.yaml:4:22: pools[0].limits.memory: "5XB" is not a size: unknown unit "XB" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)`,
	}},
	{"ambiguous size", `pools:
  - name: a
    command: [x]
    contract: {max_output_bytes: 1G}`, []string{
		`t.yaml:4:34: pools[0].contract.max_output_bytes: "1G" is not a size: "G" is ambiguous, write "GiB" or "GB"`,
	}},
	{"size not a number", `pools:
  - name: a
    command: [x]
    context_limit: {bytes: lots}`, []string{
		`t.yaml:4:28: pools[0].context_limit.bytes: "lots" is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)`,
	}},
	{"size too large", `pools:
  - name: a
    command: [x]
    limits: {memory: 99999999TiB}`, []string{
		`t.yaml:4:22: pools[0].limits.memory: "99999999TiB" is too large`,
	}},
	{"negative size", `pools:
  - name: a
    command: [x]
    limits: {memory: -1}`, []string{
		`t.yaml:4:22: pools[0].limits.memory: must not be negative, got -1`,
	}},
	{"zero replicas", `pools:
  - name: a
    command: [x]
    replicas: 0`, []string{
		`t.yaml:4:15: pools[0].replicas: must be at least 1, got 0`,
	}},
	{"negative spares", `pools:
  - name: a
    command: [x]
    spares: -1`, []string{
		`t.yaml:4:13: pools[0].spares: must not be negative, got -1`,
	}},
	{"negative retries", `pools:
  - name: a
    command: [x]
    retries: -1`, []string{
		`t.yaml:4:14: pools[0].retries: must not be negative, got -1`,
	}},
	{"max_spares below spares", `pools:
  - name: a
    command: [x]
    spares: 3
    max_spares: 2`, []string{
		`t.yaml:5:17: pools[0].max_spares: must be at least spares (3), got 2`,
	}},
	{"bad protocol", `pools:
  - name: a
    command: [x]
    protocol: grpc`, []string{
		`t.yaml:4:15: pools[0].protocol: "grpc" is not one of jsonrpc, mcp`,
	}},
	{"bad restart", `pools:
  - name: a
    command: [x]
    restart: always`, []string{
		`t.yaml:4:14: pools[0].restart: "always" is not one of permanent, transient, temporary`,
	}},
	{"bad on_violation", `pools:
  - name: a
    command: [x]
    on_violation: ignore`, []string{
		`t.yaml:4:19: pools[0].on_violation: "ignore" is not one of retry, reask`,
	}},
	{"bad isolate_action", `pools:
  - name: a
    command: [x]
    isolate_action: pause`, []string{
		`t.yaml:4:21: pools[0].isolate_action: "pause" is not one of kill, freeze, keep`,
	}},
	{"bad egress", `pools:
  - name: a
    command: [x]
    network: {egress: block}`, []string{
		`t.yaml:4:23: pools[0].network.egress: "block" is not one of allow, deny`,
	}},
	{"bad breach", `pools:
  - name: a
    command: [x]
    network: {breach: log}`, []string{
		`t.yaml:4:23: pools[0].network.breach: "log" is not one of count, isolate, kill`,
	}},
	{"mcp without tool", `pools:
  - name: a
    command: [x]
    protocol: mcp`, []string{
		`t.yaml:4:15: pools[0].tool: required when protocol is mcp: the MCP tool to call`,
	}},
	{"tool without mcp", `pools:
  - name: a
    command: [x]
    tool: search`, []string{
		`t.yaml:4:11: pools[0].tool: only used when protocol is mcp`,
	}},
	{"empty method", `pools:
  - name: a
    command: [x]
    method: ""`, []string{
		`t.yaml:4:13: pools[0].method: must not be empty`,
	}},
	{"backoff initial above max", `pools:
  - name: a
    command: [x]
    backoff: {initial: 10s, max: 1s}`, []string{
		`t.yaml:4:24: pools[0].backoff.initial: must not exceed backoff.max (1s), got 10s`,
	}},
	{"negative backoff", `pools:
  - name: a
    command: [x]
    backoff: {initial: -1s}`, []string{
		`t.yaml:4:24: pools[0].backoff.initial: must not be negative, got -1s`,
	}},
	{"zero intensity period", `pools:
  - name: a
    command: [x]
    intensity: {period: 0s}`, []string{
		`t.yaml:4:25: pools[0].intensity.period: must be positive, got 0s`,
	}},
	{"negative max_restarts", `pools:
  - name: a
    command: [x]
    intensity: {max_restarts: -1}`, []string{
		`t.yaml:4:31: pools[0].intensity.max_restarts: must not be negative, got -1`,
	}},
	{"zero start_timeout", `pools:
  - name: a
    command: [x]
    start_timeout: 0s`, []string{
		`t.yaml:4:20: pools[0].start_timeout: must be positive, got 0s`,
	}},
	{"negative hedge", `pools:
  - name: a
    command: [x]
    hedge: -1s`, []string{
		`t.yaml:4:12: pools[0].hedge: must not be negative, got -1s`,
	}},
	{"ping_timeout zero with pings on", `pools:
  - name: a
    command: [x]
    ping_timeout: 0s`, []string{
		`t.yaml:4:19: pools[0].ping_timeout: must be positive, got 0s`,
	}},
	{"ping_timeout zero with pings off", `pools:
  - name: a
    command: [x]
    ping_interval: 0s
    ping_timeout: 0s`, nil},
	{"cpu_weight out of range", `pools:
  - name: a
    command: [x]
    limits: {cpu_weight: 20000}`, []string{
		`t.yaml:4:26: pools[0].limits.cpu_weight: must be between 1 and 10000, got 20000`,
	}},
	{"negative pids", `pools:
  - name: a
    command: [x]
    limits: {pids: -1}`, []string{
		`t.yaml:4:20: pools[0].limits.pids: must not be negative, got -1`,
	}},
	{"zero context entries", `pools:
  - name: a
    command: [x]
    context_limit: {entries: 0}`, []string{
		`t.yaml:4:30: pools[0].context_limit.entries: must be at least 1, got 0`,
	}},
	{"zero session_ttl", `pools:
  - name: a
    command: [x]
    session_ttl: 0s`, []string{
		`t.yaml:4:18: pools[0].session_ttl: must be positive, got 0s`,
	}},
	{"failure_ratio zero", `pools:
  - name: a
    command: [x]
    breaker: {failure_ratio: 0}`, []string{
		`t.yaml:4:30: pools[0].breaker.failure_ratio: must be in (0, 1], got 0`,
	}},
	{"failure_ratio above one", `pools:
  - name: a
    command: [x]
    breaker: {failure_ratio: 1.5}`, []string{
		`t.yaml:4:30: pools[0].breaker.failure_ratio: must be in (0, 1], got 1.5`,
	}},
	{"failure_ratio not a number", `pools:
  - name: a
    command: [x]
    breaker: {failure_ratio: half}`, []string{
		`t.yaml:4:30: pools[0].breaker.failure_ratio: "half" is not a number`,
	}},
	{"zero breaker window", `pools:
  - name: a
    command: [x]
    breaker: {window: 0s, open_for: 0s}`, []string{
		`t.yaml:4:23: pools[0].breaker.window: must be positive, got 0s`,
		`t.yaml:4:37: pools[0].breaker.open_for: must be positive, got 0s`,
	}},
	{"negative min_calls", `pools:
  - name: a
    command: [x]
    breaker: {min_calls: -1}`, []string{
		`t.yaml:4:26: pools[0].breaker.min_calls: must not be negative, got -1`,
	}},
	{"zero deadline", `pools:
  - name: a
    command: [x]
    contract: {deadline: 0s}`, []string{
		`t.yaml:4:26: pools[0].contract.deadline: must be positive, got 0s`,
	}},
	{"zero max_output_bytes", `pools:
  - name: a
    command: [x]
    contract: {max_output_bytes: 0}`, []string{
		`t.yaml:4:34: pools[0].contract.max_output_bytes: must be positive, got 0`,
	}},
	{"negative max_tokens", `pools:
  - name: a
    command: [x]
    contract: {max_tokens: -1}`, []string{
		`t.yaml:4:28: pools[0].contract.max_tokens: must not be negative, got -1`,
	}},
	{"tokens_pointer without slash", `pools:
  - name: a
    command: [x]
    contract: {tokens_pointer: usage/total}`, []string{
		`t.yaml:4:32: pools[0].contract.tokens_pointer: "usage/total" is not a JSON pointer: it must start with "/"`,
	}},
	{"tokens_pointer bad escape", `pools:
  - name: a
    command: [x]
    contract: {tokens_pointer: /a~2b}`, []string{
		`t.yaml:4:32: pools[0].contract.tokens_pointer: "/a~2b" is not a JSON pointer: "~" must be followed by 0 or 1`,
	}},
	{"allow not a CIDR", `pools:
  - name: a
    command: [x]
    network: {allow: [10.0.0.1]}`, []string{
		`t.yaml:4:23: pools[0].network.allow[0]: "10.0.0.1" is not a CIDR: want a CIDR or CIDR:port, e.g. "10.0.0.0/8" or "127.0.0.1/32:8080"`,
	}},
	{"allow bad port", `pools:
  - name: a
    command: [x]
    network: {allow: ["10.0.0.0/8:0"]}`, []string{
		`t.yaml:4:23: pools[0].network.allow[0]: "10.0.0.0/8:0": port "0" is not a number in 1..65535`,
	}},
	{"allow host bits", `pools:
  - name: a
    command: [x]
    network: {allow: [10.1.0.0/8]}`, []string{
		`t.yaml:4:23: pools[0].network.allow[0]: "10.1.0.0/8" has host bits set: write "10.0.0.0/8"`,
	}},
	{"mesh cidr with port", `mesh: {cidrs: ["10.0.0.0/8:80"]}`, []string{
		`t.yaml:1:16: mesh.cidrs[0]: "10.0.0.0/8:80" is not a CIDR (e.g. "10.0.0.0/8")`,
	}},
	{"mesh bad interface", `mesh: {interface: "a/b"}`, []string{
		`t.yaml:1:19: mesh.interface: "a/b" is not a network interface name`,
	}},
	{"metrics_addr without port", `metrics_addr: localhost`, []string{
		`t.yaml:1:15: metrics_addr: "localhost" is not host:port`,
	}},
	{"metrics_addr bad port", `metrics_addr: "localhost:http"`, []string{
		`t.yaml:1:15: metrics_addr: "localhost:http": port "http" is not a number in 0..65535`,
	}},
	{"socket too long", `socket: /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock`, []string{
		`t.yaml:1:9: socket: 135 bytes is too long for a unix socket path (at most 107)`,
	}},
	{"name missing", `pools:
  - command: [x]`, []string{
		`t.yaml:2:5: pools[0].name: required`,
	}},
	{"name invalid", `pools:
  - name: Echo_1
    command: [x]`, []string{
		`t.yaml:2:11: pools[0].name: "Echo_1" is not a valid name: use lowercase letters, digits and '-', starting with a letter`,
	}},
	{"name starts with digit", `pools:
  - name: 1a
    command: [x]`, []string{
		`t.yaml:2:11: pools[0].name: "1a" is not a valid name: use lowercase letters, digits and '-', starting with a letter`,
	}},
	{"name too long", `pools:
  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    command: [x]`, []string{
		`t.yaml:2:11: pools[0].name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is longer than 40 characters`,
	}},
	{"command missing", `pools:
  - name: a`, []string{
		`t.yaml:2:5: pools[0].command: required: the agent's argv, e.g. [python3, agent.py]`,
	}},
	{"command empty list", `pools:
  - name: a
    command: []`, []string{
		`t.yaml:3:14: pools[0].command: required: the agent's argv, e.g. [python3, agent.py]`,
	}},
	{"command empty argv0", `pools:
  - name: a
    command: ["", x]`, []string{
		`t.yaml:3:15: pools[0].command[0]: must not be empty`,
	}},
	{"command null element", `pools:
  - name: a
    command: [~]`, []string{
		`t.yaml:3:15: pools[0].command[0]: expected a string, got null`,
	}},
	{"null pool", `pools:
  - ~`, []string{
		`t.yaml:2:5: pools[0]: expected a mapping, got null`,
	}},
	{"env null value", `pools:
  - name: a
    command: [x]
    env: {A: ~}`, []string{
		`t.yaml:4:14: pools[0].env.A: expected a string, got null`,
	}},
	{"env bad name", `pools:
  - name: a
    command: [x]
    env: {"A=B": x}`, []string{
		`t.yaml:4:11: pools[0].env["A=B"]: "A=B" is not an environment variable name`,
	}},
	{"env list value", `pools:
  - name: a
    command: [x]
    env: {A: [x]}`, []string{
		`t.yaml:4:14: pools[0].env.A: expected a string, got a list`,
	}},
	{"non-string key", `pools:
  - name: a
    command: [x]
    ? [a, b]
    : x`, []string{
		`t.yaml:4:7: pools[0]: a key must be a string, got a list`,
	}},
	{"merge of a scalar", `pools:
  - name: a
    command: [x]
    <<: 5`, []string{
		`t.yaml:4:9: pools[0]["<<"]: expected a mapping or a list of mappings to merge, got an integer`,
	}},
	{"merge of a list with a scalar", `pools:
  - name: a
    command: [x]
    <<: [5]`, []string{
		`t.yaml:4:10: pools[0]["<<"]: expected a mapping to merge, got an integer`,
	}},
	{"inline schema a list", `pools:
  - name: a
    command: [x]
    contract:
      schema: [1, 2]`, []string{
		`t.yaml:5:15: pools[0].contract.schema: invalid schema: got array, want boolean or object`,
	}},
	{"env numbers and booleans are strings", `pools:
  - name: a
    command: [x]
    env: {A: 1, B: true, C: 1.5}`, nil},
	{"binary is not a string", `pools:
  - name: a
    command: [x]
    env: {A: !!binary aGVsbG8=}`, []string{
		`t.yaml:4:14: pools[0].env.A: expected a string, got a value tagged !!binary`,
	}},
	{"duplicate name across pool and group", `pools:
  - name: a
    command: [x]
groups:
  - name: a
    children: [a]`, []string{
		`t.yaml:5:11: groups[0].name: "a" is already the name of pools[0]`,
	}},
	{"duplicate pool names", `pools:
  - name: a
    command: [x]
  - name: a
    command: [y]`, []string{
		`t.yaml:4:11: pools[1].name: "a" is already the name of pools[0]`,
	}},
	{"unknown child", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    children: [a, b]`, []string{
		`t.yaml:6:19: groups[0].children[1]: "b" is not a pool or group`,
	}},
	{"child listed twice", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    children: [a, a]`, []string{
		`t.yaml:6:19: groups[0].children[1]: "a" is listed twice`,
	}},
	{"child of two groups", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    children: [a]
  - name: h
    children: [a]`, []string{
		`t.yaml:8:16: groups[1].children[0]: "a" is already a child of group "g" (groups[0])`,
	}},
	{"group cycle", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    children: [h]
  - name: h
    children: [g, a]`, []string{
		`t.yaml:6:16: groups[0].children[0]: cycle: g -> h -> g`,
	}},
	{"group contains itself", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    children: [g, a]`, []string{
		`t.yaml:6:16: groups[0].children[0]: cycle: g -> g`,
	}},
	{"group without children", `groups:
  - name: g`, []string{
		`t.yaml:2:5: groups[0].children: required: the pools and groups it supervises, in start order`,
	}},
	{"bad strategy", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    strategy: one_for_some
    children: [a]`, []string{
		`t.yaml:6:15: groups[0].strategy: "one_for_some" is not one of one_for_one, one_for_all, rest_for_one`,
	}},
	{"group intensity", `pools:
  - name: a
    command: [x]
groups:
  - name: g
    intensity: {max_restarts: -1, period: 1x}
    children: [a]`, []string{
		`t.yaml:6:31: groups[0].intensity.max_restarts: must not be negative, got -1`,
		`t.yaml:6:43: groups[0].intensity.period: "1x" is not a duration`,
	}},
	{"inline schema does not compile", `pools:
  - name: a
    command: [x]
    contract:
      schema: {type: objekt}`, []string{
		`t.yaml:5:22: pools[0].contract.schema.type: invalid schema: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'; or got string, want array`,
	}},
	{"inline schema bad nested regex", `pools:
  - name: a
    command: [x]
    contract:
      schema:
        properties:
          a: {type: string, pattern: "("}`, []string{
		"t.yaml:7:38: pools[0].contract.schema.properties.a.pattern: invalid schema: '(' is not valid regex: error parsing regexp: missing closing ): `(`",
	}},
	{"retries beyond reason", `pools:
  - name: a
    command: [x]
    retries: 1000`, []string{
		`t.yaml:4:14: pools[0].retries: 1000 is more than 100: each failed attempt may replace an agent; a pool that needs more is broken, and its breaker should say so`,
	}},
	{"memory limit in bytes by mistake", `pools:
  - name: a
    command: [x]
    limits: {memory: 100}`, []string{
		`t.yaml:4:22: pools[0].limits.memory: 100 bytes is under 1 MiB: no agent runs in that (a bare number is bytes; write 100MiB)`,
	}},
	{"inline schema keyword typo", `pools:
  - name: a
    command: [x]
    contract:
      schema:
        type: object
        requird: [answer]
        properties:
          answer: {type: string, maxLenght: 10, x-note: kept}`, []string{
		`t.yaml:7:18: pools[0].contract.schema.requird: invalid schema: "requird" is not a JSON Schema keyword; did you mean "required"? (a validator ignores unknown keywords, so it would check nothing)`,
		`t.yaml:9:45: pools[0].contract.schema.properties.answer.maxLenght: invalid schema: "maxLenght" is not a JSON Schema keyword; did you mean "maxLength"? (a validator ignores unknown keywords, so it would check nothing)`,
	}},
	{"inline schema unknown keyword", `pools:
  - name: a
    command: [x]
    contract:
      schema: {type: object, dependencies: {a: [b]}, frobnicate: 1}`, []string{
		`t.yaml:5:66: pools[0].contract.schema.frobnicate: invalid schema: "frobnicate" is not a JSON Schema keyword: a validator ignores it, so it checks nothing (prefix it with x- to keep it as a note)`,
	}},
	{"inline schema bad list element", `pools:
  - name: a
    command: [x]
    contract:
      schema: {allOf: [{type: object}, {minimum: x}]}`, []string{
		`t.yaml:5:50: pools[0].contract.schema.allOf[1].minimum: invalid schema: got string, want number`,
	}},
	{"inline schema not an object", `pools:
  - name: a
    command: [x]
    contract:
      schema: 5`, []string{
		`t.yaml:5:15: pools[0].contract.schema: invalid schema: got number, want boolean or object`,
	}},
	{"inline schema external ref", `pools:
  - name: a
    command: [x]
    contract:
      schema: {$ref: "other.json"}`, []string{
		`t.yaml:5:15: pools[0].contract.schema: invalid schema: failing loading "other.json": external references are not supported`,
	}},
	{"inline schema dangling ref", `pools:
  - name: a
    command: [x]
    contract:
      schema: {$ref: "#/$defs/nope"}`, []string{
		`t.yaml:5:15: pools[0].contract.schema: invalid schema: json-pointer in "#/$defs/nope" not found`,
	}},
	{"input schema does not compile", `pools:
  - name: a
    command: [x]
    input_schema:
      type: object
      properties:
        q: {type: strin}`, []string{
		`t.yaml:7:19: pools[0].input_schema.properties.q.type: invalid schema: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'; or got string, want array`,
	}},
	{"input schema a list", `pools:
  - name: a
    command: [x]
    input_schema: [1]`, []string{
		`t.yaml:4:19: pools[0].input_schema: invalid schema: got array, want boolean or object`,
	}},
	{"input schema on an MCP pool", `pools:
  - name: a
    command: [x]
    protocol: mcp
    tool: echo
    input_schema: {type: object}`, []string{
		`t.yaml:6:19: pools[0].input_schema: only used when protocol is jsonrpc: an MCP server's tools carry their own input schemas`,
	}},
	{"input schema valid", `pools:
  - name: a
    command: [x]
    input_schema: {type: object, required: [q], properties: {q: {type: string}}}`, nil},
	{"inline schema infinity", `pools:
  - name: a
    command: [x]
    contract:
      schema: {maximum: .inf}`, []string{
		`t.yaml:5:25: pools[0].contract.schema.maximum: .inf has no JSON representation`,
	}},
	{"inline schema custom tag", `pools:
  - name: a
    command: [x]
    contract:
      schema: {type: !foo bar}`, []string{
		`t.yaml:5:22: pools[0].contract.schema.type: tag !foo has no JSON representation`,
	}},
	{"inline schema alias cycle", `pools:
  - name: a
    command: [x]
    contract:
      schema: &s {items: *s}`, []string{
		`t.yaml:5:26: pools[0].contract.schema.items: alias refers to a node that contains it`,
	}},
	{"inline schema alias bomb", `x-a: &a [x, x, x, x, x, x, x, x, x, x]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
pools:
  - name: a
    command: [x]
    contract:
      schema: {enum: *e}`, []string{
		`t.yaml:10:15: pools[0].contract.schema: expands to more than 20000 nodes through aliases`,
	}},
	{"schema and schema_file", `pools:
  - name: a
    command: [x]
    contract:
      schema: {type: object}
      schema_file: s.json`, []string{
		`t.yaml:6:20: pools[0].contract.schema_file: cannot be used together with schema`,
	}},
	{"version too new", `version: 7
pools:
  - name: a
    command: [x]
    replicaz: 2`, []string{
		// Nothing past the version is looked at: the file is in a format
		// this build does not know.
		`t.yaml:1:10: version: config version 7 is not supported (this build reads 1)`,
	}},
	{"version zero", `version: 0`, []string{
		`t.yaml:1:10: version: config version 0 is not supported (this build reads 1)`,
	}},
	{"version not an integer", `version: "1.0"`, []string{
		`t.yaml:1:10: version: "1.0" is not an integer`,
	}},
	{"version as a list", `version: [1]`, []string{
		`t.yaml:1:10: version: expected an integer, got a list`,
	}},
	{"version 1", `version: 1
pools:
  - name: a
    command: [x]`, nil},
	{"version null reads as 1", `version: ~`, nil},
	{"version through a merge", `x-base: &base {version: 9}
<<: *base`, []string{
		`t.yaml:1:25: version: config version 9 is not supported (this build reads 1)`,
	}},
	{"negative spawn_budget", `spawn_budget: -1`, []string{
		`t.yaml:1:15: spawn_budget: must not be negative, got -1`,
	}},
	{"spawn_budget not an integer", `spawn_budget: many`, []string{
		`t.yaml:1:15: spawn_budget: "many" is not an integer`,
	}},
	{"negative min_uptime", `pools:
  - name: a
    command: [x]
    min_uptime: -1s`, []string{
		`t.yaml:4:17: pools[0].min_uptime: must not be negative, got -1s`,
	}},
	{"min_uptime without unit", `pools:
  - name: a
    command: [x]
    min_uptime: 1`, []string{
		`t.yaml:4:17: pools[0].min_uptime: "1" is not a duration: missing unit (e.g. "1s")`,
	}},
	{"zero min_uptime", `pools:
  - name: a
    command: [x]
    min_uptime: 0s`, nil},
	{"bad agent_state", `pools:
  - name: a
    command: [x]
    agent_state: stateless`, []string{
		`t.yaml:4:18: pools[0].agent_state: "stateless" is not one of stateful, none`,
	}},
	{"agent_state none with a streak", `pools:
  - name: a
    command: [x]
    agent_state: none
    violation_streak: 5`, nil},
	{"violation_streak without agent_state none", `pools:
  - name: a
    command: [x]
    violation_streak: 5`, []string{
		`t.yaml:4:23: pools[0].violation_streak: only used when agent_state is none (a stateful agent is replaced on every violation)`,
	}},
	{"zero violation_streak", `pools:
  - name: a
    command: [x]
    agent_state: none
    violation_streak: 0`, []string{
		`t.yaml:5:23: pools[0].violation_streak: must be at least 1, got 0`,
	}},
	{"bad on_tool_error", `pools:
  - name: a
    command: [x]
    protocol: mcp
    tool: t
    on_tool_error: ignore`, []string{
		`t.yaml:6:20: pools[0].on_tool_error: "ignore" is not one of return, retry`,
	}},
	{"on_tool_error retry without mcp", `pools:
  - name: a
    command: [x]
    on_tool_error: retry`, []string{
		`t.yaml:4:20: pools[0].on_tool_error: only used when protocol is mcp`,
	}},
	{"on_tool_error return without mcp", `pools:
  - name: a
    command: [x]
    on_tool_error: return`, nil},
	{"on_tool_error retry with mcp", `pools:
  - name: a
    command: [x]
    protocol: mcp
    tool: t
    on_tool_error: retry`, nil},
	{"max_open_for below open_for", `pools:
  - name: a
    command: [x]
    breaker: {open_for: 10s, max_open_for: 5s}`, []string{
		`t.yaml:4:44: pools[0].breaker.max_open_for: must be at least breaker.open_for (10s), got 5s`,
	}},
	{"max_open_for not a duration", `pools:
  - name: a
    command: [x]
    breaker: {max_open_for: soon}`, []string{
		`t.yaml:4:29: pools[0].breaker.max_open_for: "soon" is not a duration`,
	}},
	{"open_for above the default max_open_for", `pools:
  - name: a
    command: [x]
    breaker: {open_for: 5m}`, nil},
	{"top-level list", `- a`, []string{
		`t.yaml:1:1: expected a mapping, got a list`,
	}},
	{"top-level scalar", `hello`, []string{
		`t.yaml:1:1: expected a mapping, got a string`,
	}},
	{"syntax error", `pools: [
`, []string{
		`t.yaml:1: did not find expected node content`,
	}},
	{"tab indentation", "pools:\n\t- name: a", []string{
		`t.yaml:2: found character that cannot start any token`,
	}},
	{"control character", "socket: \"a\x01b\"", []string{
		`t.yaml:1:11: control character U+0001 is not allowed`,
	}},
	{"invalid UTF-8", "socket: a\xffb", []string{
		`t.yaml:1:10: invalid UTF-8 byte 0xff: the file must be UTF-8`,
	}},
	{"second document", `socket: a
---
socket: b`, []string{
		`t.yaml:2:1: a second YAML document: the configuration is one document`,
	}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.yaml))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				if c == nil {
					t.Fatal("nil config without an error")
				}
				return
			}
			if c != nil {
				t.Errorf("got a config with an error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %T %v, want Errors", err, err)
			}
			got := make([]string, len(es))
			for i, e := range es {
				got[i] = e.Error()
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors:\n%s\nwant %d:\n%s", len(got), join(got), len(tc.want), join(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("error %d:\ngot  %s\nwant %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}
