package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func join(lines []string) string { return strings.Join(lines, "\n") }

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

// TestLoadFull loads the example of every key and checks every value,
// defaults included.
func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}

	echo := DefaultPool()
	echo.Name = "echo"
	echo.Command = []string{"python3", "agent.py"}
	echo.Env = map[string]string{"KEY": "value"}
	echo.Dir = "/srv/agents"
	echo.User = "agent"
	echo.Group = "agent"
	echo.Replicas = 2
	echo.MaxSpares = 4
	echo.Contract.Deadline = 5 * time.Second
	echo.Contract.MaxTokens = 4096
	echo.Contract.TokensPointer = "/usage/total_tokens"
	echo.Limits = Limits{Memory: 256 << 20, Pids: 128, CPUWeight: 100}
	echo.Network.Allow = []string{"10.0.0.0/8", "127.0.0.1/32:8080"}
	echo.MinUptime = 2 * time.Second
	echo.Breaker.MaxOpenFor = 2 * time.Minute

	ingest := DefaultPool()
	ingest.Name = "ingest"
	ingest.Command = []string{"./ingest"}
	ingest.Protocol = ProtocolMCP
	ingest.Tool = "ingest"
	ingest.OnToolError = OnToolErrorRetry
	ingest.Spares, ingest.MaxSpares = 3, 3 // max_spares follows spares
	ingest.Contract.SchemaFile = filepath.Join("testdata", "schemas", "answer.json")

	process := DefaultPool()
	process.Name = "process"
	process.Command = []string{"./process"}

	want := &Config{
		Path:        "testdata/full.yaml",
		Version:     1,
		SpawnBudget: 8,
		Socket:      "/run/resilienced/resilienced.sock",
		StateDir:    "/var/lib/resilienced",
		MetricsAddr: "127.0.0.1:9464",
		Mesh:        Mesh{Interface: "eth0", CIDRs: []string{"10.0.0.0/8"}},
		Cluster:     defaultCluster(),
		Pools:       []Pool{echo, ingest, process},
		Groups: []Group{{
			Name:      "pipeline",
			Strategy:  StrategyRestForOne,
			Intensity: Intensity{MaxRestarts: 5, Period: 30 * time.Second},
			Children:  []string{"ingest", "process"},
		}},
	}

	// Schemas first: inline YAML becomes JSON in document order; a file is
	// taken as it is.
	if got, want := string(c.Pools[0].Contract.Schema),
		`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"}}}`; got != want {
		t.Errorf("inline schema:\ngot  %s\nwant %s", got, want)
	}
	file, err := os.ReadFile("testdata/schemas/answer.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Pools[1].Contract.Schema); got != string(file) {
		t.Errorf("schema_file: got %q, want the file's bytes %q", got, file)
	}
	if c.Pools[2].Contract.Schema != nil {
		t.Errorf("pool without schema: got %s", c.Pools[2].Contract.Schema)
	}
	for i := range c.Pools {
		c.Pools[i].Contract.Schema = nil
	}

	if !reflect.DeepEqual(c, want) {
		gotJSON, _ := json.MarshalIndent(c, "", "  ")
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("got:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
}

func TestDefaults(t *testing.T) {
	if c := mustParse(t, ""); !reflect.DeepEqual(c, Default()) {
		t.Errorf("empty file: got %+v, want Default()", c)
	}
	if c := mustParse(t, "# only a comment\n"); len(c.Pools) != 0 || len(c.Groups) != 0 {
		t.Errorf("comment-only file: got %+v", c)
	}

	c := mustParse(t, `
pools:
  - name: a
    command: [x]
  - name: b
    command: [x]
    spares: 3
    replicas: ~        # null keeps the default
    backoff: {max: 1m} # the rest of backoff keeps its defaults
groups:
  - name: g
    children: [a, b]
`)
	a := DefaultPool()
	a.Name, a.Command = "a", []string{"x"}
	if !reflect.DeepEqual(c.Pools[0], a) {
		t.Errorf("pool a:\ngot  %+v\nwant %+v", c.Pools[0], a)
	}
	b := DefaultPool()
	b.Name, b.Command = "b", []string{"x"}
	b.Spares, b.MaxSpares = 3, 3
	b.Backoff.Max = time.Minute
	if !reflect.DeepEqual(c.Pools[1], b) {
		t.Errorf("pool b:\ngot  %+v\nwant %+v", c.Pools[1], b)
	}
	g := DefaultGroup()
	g.Name, g.Children = "g", []string{"a", "b"}
	if !reflect.DeepEqual(c.Groups[0], g) {
		t.Errorf("group:\ngot  %+v\nwant %+v", c.Groups[0], g)
	}
	if c.MetricsAddr != "" || c.Socket != "" || c.StateDir != "" {
		t.Errorf("top-level defaults must be empty, got %q %q %q", c.MetricsAddr, c.Socket, c.StateDir)
	}
}

// TestAnchors shares settings between pools with an x- key, an anchor and a
// merge; explicit keys win over merged ones.
func TestAnchors(t *testing.T) {
	c := mustParse(t, `
x-agent: &agent
  command: [python3, agent.py]
  replicas: 3
  env: &env {MODEL: small}
pools:
  - <<: *agent
    name: a
  - <<: *agent
    name: b
    replicas: 1
    env: *env
`)
	if got := c.Pools[0]; got.Replicas != 3 || !reflect.DeepEqual(got.Command, []string{"python3", "agent.py"}) || got.Env["MODEL"] != "small" {
		t.Errorf("pool a: %+v", got)
	}
	if got := c.Pools[1]; got.Replicas != 1 || got.Env["MODEL"] != "small" {
		t.Errorf("pool b: %+v", got)
	}
}

// TestMultipleErrors checks that one run reports every problem, from
// decoding and from validation, sorted by position.
func TestMultipleErrors(t *testing.T) {
	const yaml = `socket: /run/r.sock
metrics_addr: nope
pools:
  - name: Echo
    command: python3 agent.py
    replicaz: 2
    replicas: 0
    contract:
      deadline: 5x
      max_output_bytes: 1G
      schema: {type: objekt}
    backoff: {initial: 10s}
  - name: b
    command: [b]
    protocol: mcp
    breaker: {failure_ratio: 1.5}
groups:
  - {name: g1, children: [g2, nope]}
  - {name: g2, children: [g1, b]}
`
	_, err := Parse("demo.yaml", []byte(yaml))
	want := `demo.yaml:2:15: metrics_addr: "nope" is not host:port
demo.yaml:4:11: pools[0].name: "Echo" is not a valid name: use lowercase letters, digits and '-', starting with a letter
demo.yaml:5:14: pools[0].command: expected a list of strings, got a string
demo.yaml:6:5: pools[0].replicaz: unknown key; did you mean "replicas"?
demo.yaml:7:15: pools[0].replicas: must be at least 1, got 0
demo.yaml:9:17: pools[0].contract.deadline: "5x" is not a duration
demo.yaml:10:25: pools[0].contract.max_output_bytes: "1G" is not a size: "G" is ambiguous, write "GiB" or "GB"
demo.yaml:11:22: pools[0].contract.schema.type: invalid schema: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'; or got string, want array
demo.yaml:12:24: pools[0].backoff.initial: must not exceed backoff.max (5s), got 10s
demo.yaml:15:15: pools[1].tool: required when protocol is mcp: the MCP tool to call
demo.yaml:16:30: pools[1].breaker.failure_ratio: must be in (0, 1], got 1.5
demo.yaml:18:27: groups[0].children[0]: cycle: g1 -> g2 -> g1
demo.yaml:18:31: groups[0].children[1]: "nope" is not a pool or group`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestErrorTypes(t *testing.T) {
	_, err := Parse("demo.yaml", []byte("pools:\n  - name: a\n    command: [x]\n    replicas: 0\n    spares: -1\n"))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("errors.As(Errors): got %#v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatal("errors.As(*Error) = false")
	}
	want := Error{File: "demo.yaml", Line: 4, Column: 15, Path: "pools[0].replicas", Msg: "must be at least 1, got 0"}
	if *e != want {
		t.Errorf("first error: got %+v, want %+v", *e, want)
	}
	if !errors.Is(e, ErrInvalid) {
		t.Error("an *Error does not wrap ErrInvalid")
	}

	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 7, Path: "a.b", Msg: "m"}, "f.yaml:3:7: a.b: m"},
		{Error{File: "f.yaml", Line: 3, Msg: "syntax"}, "f.yaml:3: syntax"},
		{Error{Path: "a.b", Msg: "m"}, "a.b: m"},
		{Error{Line: 2, Column: 1, Msg: "m"}, "2:1: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestLoadSchemaFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	schema := `{"type": "object"}`
	write("etc/schemas/ok.json", schema)
	abs := write("elsewhere/abs.json", schema)
	write("etc/schemas/broken.json", `{"type": `)
	write("etc/schemas/bad.json", `{"properties": {"a": {"type": "objekt"}}}`)
	if err := os.Mkdir(filepath.Join(dir, "etc/schemas/dir.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	config := func(file string) string {
		return write("etc/c.yaml", "pools:\n  - name: a\n    command: [x]\n    contract:\n      schema_file: "+file+"\n")
	}

	t.Run("relative to the config file", func(t *testing.T) {
		path := config("schemas/ok.json")
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		ct := c.Pools[0].Contract
		if string(ct.Schema) != schema || ct.SchemaFile != filepath.Join(dir, "etc/schemas/ok.json") {
			t.Errorf("got schema %q from %q", ct.Schema, ct.SchemaFile)
		}
		if c.Path != path {
			t.Errorf("Path: got %q, want %q", c.Path, path)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		c, err := Load(config(abs))
		if err != nil {
			t.Fatal(err)
		}
		if string(c.Pools[0].Contract.Schema) != schema {
			t.Errorf("got %q", c.Pools[0].Contract.Schema)
		}
	})
	t.Run("Parse reads no file", func(t *testing.T) {
		c := mustParse(t, "pools:\n  - name: a\n    command: [x]\n    contract: {schema_file: /nonexistent.json}\n")
		if c.Pools[0].Contract.Schema != nil || c.Pools[0].Contract.SchemaFile != "/nonexistent.json" {
			t.Errorf("got %+v", c.Pools[0].Contract)
		}
	})
	for _, tc := range []struct{ file, want string }{
		{"schemas/missing.json", "c.yaml:5:20: pools[0].contract.schema_file: open DIR/etc/schemas/missing.json: no such file or directory"},
		{"schemas/broken.json", "c.yaml:5:20: pools[0].contract.schema_file: DIR/etc/schemas/broken.json is not JSON: unexpected end of JSON input"},
		{"schemas/bad.json", "c.yaml:5:20: pools[0].contract.schema_file: DIR/etc/schemas/bad.json: at /properties/a/type: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'; or got string, want array"},
		{"schemas/dir.json", "c.yaml:5:20: pools[0].contract.schema_file: DIR/etc/schemas/dir.json is not a regular file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(config(tc.file))
			want := filepath.Join(dir, "etc") + "/" + strings.ReplaceAll(tc.want, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Error("not ErrInvalid")
			}
		})
	}
	t.Run("missing config", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
			t.Errorf("got %v, want fs.ErrNotExist and not ErrInvalid", err)
		}
	})
}

func TestEqual(t *testing.T) {
	const base = `
pools:
  - name: a
    command: [x]
    contract:
      schema: {type: object, required: [answer]}
  - name: b
    command: [y]
groups:
  - {name: g, children: [a, b]}
`
	c1, c2 := mustParse(t, base), mustParse(t, base)
	for i := range c1.Pools {
		if !c1.Pools[i].Equal(c2.Pools[i]) {
			t.Errorf("pool %d: the same text is not Equal", i)
		}
	}
	if !c1.Groups[0].Equal(c2.Groups[0]) {
		t.Error("group: the same text is not Equal")
	}

	// A changed pool, and only it, is not Equal.
	c3 := mustParse(t, strings.Replace(base, "command: [y]", "command: [y, --fast]", 1))
	if !c1.Pools[0].Equal(c3.Pools[0]) || c1.Pools[1].Equal(c3.Pools[1]) {
		t.Error("changing pool b's command: want a equal, b not")
	}
	// Schemas compare as JSON values.
	c4 := mustParse(t, strings.Replace(base, "{type: object, required: [answer]}", "{required: [answer], type: object}", 1))
	if !c1.Pools[0].Equal(c4.Pools[0]) {
		t.Error("reordered schema keys: want Equal")
	}
	c5 := mustParse(t, strings.Replace(base, "required: [answer]", "required: [other]", 1))
	if c1.Pools[0].Equal(c5.Pools[0]) {
		t.Error("different schema: want not Equal")
	}
	file := c1.Pools[0]
	file.Contract.Schema = json.RawMessage("{\n  \"required\": [\"answer\"],\n  \"type\": \"object\"\n}\n")
	file.Contract.SchemaFile = "/etc/schema.json"
	if !c1.Pools[0].Equal(file) {
		t.Error("the same schema from a file: want Equal")
	}
	// nil and empty are the same.
	empty := c1.Pools[1]
	empty.Env = map[string]string{}
	empty.Network.Allow = []string{}
	if !c1.Pools[1].Equal(empty) {
		t.Error("nil vs empty env and allow: want Equal")
	}
	changed := c1.Pools[1]
	changed.Breaker.OpenFor++
	if c1.Pools[1].Equal(changed) {
		t.Error("changed breaker: want not Equal")
	}
	g := c1.Groups[0]
	g.Children = []string{"b", "a"}
	if c1.Groups[0].Equal(g) {
		t.Error("reordered children (start order): want not Equal")
	}
}

func TestValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Errorf("Default(): %v", err)
	}
	p := DefaultPool()
	p.Name, p.Command = "a", []string{"x"}
	c := &Config{Pools: []Pool{p}, Groups: []Group{DefaultGroup()}}
	c.Groups[0].Name, c.Groups[0].Children = "g", []string{"a"}
	if err := c.Validate(); err != nil {
		t.Errorf("a valid config built in code: %v", err)
	}
	c.Pools[0].Replicas = 0
	c.Pools[0].Contract.Schema = json.RawMessage(`{"type": 5}`)
	want := "pools[0].replicas: must be at least 1, got 0\n" +
		"pools[0].contract.schema.type: invalid schema: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'; or got number, want array"
	if err := c.Validate(); err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestConfigLookup(t *testing.T) {
	c := mustParse(t, "pools:\n  - {name: a, command: [x]}\n  - {name: b, command: [y]}\ngroups:\n  - {name: g, children: [a]}\n")
	if p := c.Pool("b"); p == nil || p.Command[0] != "y" {
		t.Errorf("Pool(b) = %+v", p)
	}
	if p := c.Pool("g"); p != nil {
		t.Errorf("Pool(g) = %+v, want nil", p)
	}
	if g := c.Group("g"); g == nil || g.Children[0] != "a" {
		t.Errorf("Group(g) = %+v", g)
	}
	if g := c.Group("a"); g != nil {
		t.Errorf("Group(a) = %+v, want nil", g)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"0", 0, ""},
		{"512B", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"512MiB", 512 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"2TiB", 2 << 40, ""},
		{"1KB", 1000, ""},
		{"1kB", 1000, ""},
		{"5MB", 5e6, ""},
		{"1GB", 1e9, ""},
		{"1 GiB", 1 << 30, ""},
		{"1G", 0, `"1G" is not a size: "G" is ambiguous, write "GiB" or "GB"`},
		{"1k", 0, `"1k" is not a size: "k" is ambiguous, write "KiB" or "KB"`},
		{"1.5GiB", 0, `"1.5GiB" is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)`},
		{"-1MiB", 0, `"-1MiB" is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)`},
		{"MiB", 0, `"MiB" is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)`},
		{"", 0, `"" is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)`},
		{"1mib", 0, `"1mib" is not a size: unknown unit "mib" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)`},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"9223372036854775808", 0, `"9223372036854775808" is too large`},
		{"8388608TiB", 0, `"8388608TiB" is too large`},
	} {
		got, err := ParseSize(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseSize(%q): got %d, %v; want error %s", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for n, want := range map[int64]string{0: "0B", 1000: "1000B", 1 << 20: "1MiB", 3 << 10: "3KiB", 1<<30 + 1: "1073741825B", 2 << 40: "2TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseAllowRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AllowRule
		err  bool
	}{
		{"10.0.0.0/8", AllowRule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, false},
		{"127.0.0.1/32:8080", AllowRule{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 8080}, false},
		{"fd00::/8:443", AllowRule{Prefix: netip.MustParsePrefix("fd00::/8"), Port: 443}, false},
		{"::/0", AllowRule{Prefix: netip.MustParsePrefix("::/0")}, false},
		{"10.0.0.1", AllowRule{}, true},
		{"10.0.0.1:80", AllowRule{}, true},
		{"10.0.0.1/8", AllowRule{}, true},
		{"10.0.0.0/33", AllowRule{}, true},
		{"10.0.0.0/8:", AllowRule{}, true},
		{"10.0.0.0/8:65536", AllowRule{}, true},
		{"10.0.0.0/8:0", AllowRule{}, true},
		{"example.com/8", AllowRule{}, true},
		{"", AllowRule{}, true},
	} {
		got, err := ParseAllowRule(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseAllowRule(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("AllowRule(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"replicas", "spares", "max_spares", "on_violation", "tool"}
	for in, want := range map[string]string{
		"replicaz":    "replicas",
		"replica":     "replicas",
		"maxspares":   "max_spares",
		"spare":       "spares",
		"onviolation": "on_violation",
		"tools":       "tool",
		"colour":      "",
		"x":           "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInlineSchemaJSON checks the YAML to JSON conversion of every scalar
// type, merges included.
func TestInlineSchemaJSON(t *testing.T) {
	c := mustParse(t, `
pools:
  - name: a
    command: [x]
    contract:
      schema:
        $defs:
          base: &base {type: object}
        allOf:
          - <<: *base
            required: [a]
        const: [1, 0x10, 1.5, -3, true, ~, "s", 2001-12-14, "quoted: yes"]
`)
	want := `{"$defs":{"base":{"type":"object"}},"allOf":[{"required":["a"],"type":"object"}],` +
		`"const":[1,16,1.5,-3,true,null,"s","2001-12-14","quoted: yes"]}`
	if got := string(c.Pools[0].Contract.Schema); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
