package config

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestVersionDefault(t *testing.T) {
	for _, src := range []string{"", "version: 1", "version: ~", "socket: /s"} {
		if c := mustParse(t, src); c.Version != CurrentVersion {
			t.Errorf("%q: Version = %d, want %d", src, c.Version, CurrentVersion)
		}
	}
}

// TestMigrate runs a made-up migration from version 1 to 2 that renames
// a key, as a future format change would, and checks that the file is
// then decoded in the new format with its positions intact.
func TestMigrate(t *testing.T) {
	steps := map[int]migration{
		1: func(d *decoder, root *yaml.Node) {
			for i := 0; i+1 < len(root.Content); i += 2 {
				if k := root.Content[i]; k.Value == "sock" {
					k.Value = "socket"
				}
			}
		},
	}
	src := "version: 1\nsock: /run/s\nmetrics_addr: nope\n"
	d := &decoder{file: "t.yaml", nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, bad: map[string]bool{}, merged: map[*yaml.Node][]pair{}}
	root := d.parseYAML([]byte(src))
	from, ok := d.fileVersion(root)
	if !ok || from != 1 {
		t.Fatalf("fileVersion = %d, %v; want 1, true", from, ok)
	}
	if !d.migrate(root, from, 2, steps) {
		t.Fatalf("migrate: %v", d.errs)
	}
	c := Default()
	d.decode(root, "", reflect.ValueOf(c).Elem(), false)
	v := &validator{file: d.file, nodes: d.nodes, keys: d.keys, bad: d.bad}
	v.config(c)
	if c.Socket != "/run/s" || c.Version != 2 {
		t.Errorf("after migration: socket %q, version %d; want /run/s, 2", c.Socket, c.Version)
	}
	// The validator knows only version 1: it refuses 2, which shows the
	// version key was rewritten. metrics_addr keeps its position.
	got := join(errorStrings(append(d.errs, v.errs...)))
	want := "t.yaml:1:10: version: config version 2 is not supported (this build reads 1)\n" +
		`t.yaml:3:15: metrics_addr: "nope" is not host:port`
	if got != want {
		t.Errorf("errors:\ngot  %s\nwant %s", got, want)
	}

	// A version bump without its migration is a bug, reported as one.
	d2 := &decoder{file: "t.yaml", nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, bad: map[string]bool{}, merged: map[*yaml.Node][]pair{}}
	root = d2.parseYAML([]byte(src))
	if d2.migrate(root, 1, 3, steps) {
		t.Fatal("migrate without a step for version 2: want false")
	}
	if got := d2.errs.Error(); !strings.Contains(got, "internal error: no migration from config version 2") {
		t.Errorf("got %q", got)
	}
}

func errorStrings(es Errors) []string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return s
}

// TestMigrationsComplete: every version a file may be in has a way to the
// current one.
func TestMigrationsComplete(t *testing.T) {
	for v := oldestVersion; v < CurrentVersion; v++ {
		if migrations[v] == nil {
			t.Errorf("no migration from config version %d to %d", v, v+1)
		}
	}
	for v := range migrations {
		if v < oldestVersion || v >= CurrentVersion {
			t.Errorf("migration from version %d: outside %d..%d", v, oldestVersion, CurrentVersion-1)
		}
	}
}

func TestValidateVersionAndBudget(t *testing.T) {
	c := &Config{Version: 7, SpawnBudget: -1}
	want := "version: config version 7 is not supported (this build reads 1)\n" +
		"spawn_budget: must not be negative, got -1"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	// Built in code, 0 is the current version.
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestEffectiveSpawnBudget(t *testing.T) {
	for _, tc := range []struct{ configured, cpus, want int }{
		{0, 4, 8},
		{0, 1, 2},
		{0, 0, 2}, // never 0: nothing would ever start
		{3, 4, 3},
		{100, 2, 100},
	} {
		if got := spawnBudget(tc.configured, tc.cpus); got != tc.want {
			t.Errorf("spawnBudget(%d, %d) = %d, want %d", tc.configured, tc.cpus, got, tc.want)
		}
	}
	if got, want := mustParse(t, "").EffectiveSpawnBudget(), 2*runtime.NumCPU(); got != want {
		t.Errorf("default: %d, want %d", got, want)
	}
	if got := mustParse(t, "spawn_budget: 5").EffectiveSpawnBudget(); got != 5 {
		t.Errorf("spawn_budget: 5: got %d", got)
	}
}

func TestBreakerCoolDown(t *testing.T) {
	b := Breaker{OpenFor: 5 * time.Second, MaxOpenFor: time.Minute}
	want := []time.Duration{5 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for n, w := range want {
		if got := b.CoolDown(n); got != w {
			t.Errorf("CoolDown(%d) = %s, want %s", n, got, w)
		}
	}
	if got := b.CoolDown(1 << 20); got != time.Minute {
		t.Errorf("CoolDown(huge) = %s, want the cap", got)
	}
	if got := (Breaker{OpenFor: 1 << 61, MaxOpenFor: 1<<63 - 1}).CoolDown(10); got != 1<<63-1 {
		t.Errorf("near the largest duration: %d, want the cap", got)
	}
	if got := (Breaker{}).CoolDown(1 << 30); got != 0 {
		t.Errorf("zero breaker: %s", got)
	}
	// A cap below open_for (only built in code: the loader refuses it)
	// keeps the cool-down at open_for.
	if got := (Breaker{OpenFor: time.Minute, MaxOpenFor: time.Second}).CoolDown(3); got != time.Minute {
		t.Errorf("cap below open_for: %s, want 1m", got)
	}
}

func TestMaxOpenForDefault(t *testing.T) {
	c := mustParse(t, `
pools:
  - {name: a, command: [x]}
  - {name: b, command: [x], breaker: {open_for: 5m}}
  - {name: c, command: [x], breaker: {open_for: 5m, max_open_for: 10m}}
  - {name: d, command: [x], breaker: {open_for: 1s}}
`)
	for i, want := range []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, time.Minute} {
		if got := c.Pools[i].Breaker.MaxOpenFor; got != want {
			t.Errorf("pools[%d].breaker.max_open_for = %s, want %s", i, got, want)
		}
	}
}

func TestEnumValidate(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ProtocolMCP.Validate(), ""},
		{Protocol("grpc").Validate(), `"grpc" is not one of jsonrpc, mcp`},
		{RestartTransient.Validate(), ""},
		{RestartType("").Validate(), `"" is not one of permanent, transient, temporary`},
		{OnViolationReask.Validate(), ""},
		{ViolationAction("x").Validate(), `"x" is not one of retry, reask`},
		{OnToolErrorRetry.Validate(), ""},
		{ToolErrorAction("x").Validate(), `"x" is not one of return, retry`},
		{IsolateKeep.Validate(), ""},
		{IsolateAction("x").Validate(), `"x" is not one of kill, freeze, keep`},
		{EgressDeny.Validate(), ""},
		{EgressPolicy("x").Validate(), `"x" is not one of allow, deny`},
		{BreachIsolate.Validate(), ""},
		{BreachAction("x").Validate(), `"x" is not one of count, isolate, kill`},
		{StrategyRestForOne.Validate(), ""},
		{Strategy("x").Validate(), `"x" is not one of one_for_one, one_for_all, rest_for_one`},
	} {
		got := ""
		if tc.err != nil {
			got = tc.err.Error()
		}
		if got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
