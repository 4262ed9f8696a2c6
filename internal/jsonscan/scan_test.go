package jsonscan

import (
	"encoding/json"
	"testing"
)

var seeds = []string{
	`{}`, `[]`, `""`, `0`, `-0.5e+7`, `true`, `false`, `null`,
	`{"a":[1,2,{"b":"c\"\\\/\b\f\n\r\t\u00e9"}],"d":null}`,
	` {"a" : 1 } `,
	`01`, `1.`, `.5`, `-`, `1e`, `"\x"`, `"\u12"`, "\"a\x01\"", `[1,]`, `{"a":1,}`, `{"a" 1}`, `{1:2}`,
	`tru`, `nul`, `[`, `{`, `"`, `{"a":1}}`, `[1] [2]`, "\"\xff\xfe\"",
}

// TestValue: Value finds a value's end exactly where encoding/json's
// validity says a whole input is one value.
func TestValue(t *testing.T) {
	for _, s := range seeds {
		checkValue(t, []byte(s))
	}
	deep := make([]byte, 0, 2*(MaxDepth+2))
	for range MaxDepth + 2 {
		deep = append(deep, '[')
	}
	for range MaxDepth + 2 {
		deep = append(deep, ']')
	}
	if Value(deep, 0) >= 0 {
		t.Errorf("nesting deeper than %d accepted", MaxDepth)
	}
}

func checkValue(t *testing.T, b []byte) {
	t.Helper()
	i := Space(b, 0)
	end := Value(b, i)
	whole := end >= 0 && Space(b, end) == len(b)
	if whole != json.Valid(b) {
		t.Fatalf("%q: Value says one whole value %v, json.Valid %v", b, whole, json.Valid(b))
	}
}

func TestMembers(t *testing.T) {
	var keys, vals []string
	ok := Members([]byte(` {"a":1, "b\"c" : {"x":[1]} ,"d":"e"} `), func(k, v []byte) bool {
		keys, vals = append(keys, string(k)), append(vals, string(v))
		return true
	})
	if !ok || len(keys) != 3 || keys[1] != `b\"c` || vals[1] != `{"x":[1]}` || vals[2] != `"e"` {
		t.Fatalf("ok %v keys %q vals %q", ok, keys, vals)
	}
	for _, bad := range []string{`[]`, `{"a":1} x`, `{"a":}`, `{"a":1,}`, ``} {
		if Members([]byte(bad), func(k, v []byte) bool { return true }) {
			t.Errorf("%q: accepted", bad)
		}
	}
	if Members([]byte(`{"a":1,"b":2}`), func(k, v []byte) bool { return string(k) != "b" }) {
		t.Error("a false from fn did not stop the walk")
	}
}

func TestPlainString(t *testing.T) {
	for in, want := range map[string]bool{`"abc 1"`: true, `""`: true, `"a\"b"`: false, `"é"`: false, `1`: false, `"a` + "\x7f" + `"`: false} {
		if _, ok := PlainString([]byte(in)); ok != want {
			t.Errorf("%s: ok %v, want %v", in, ok, want)
		}
	}
}

// FuzzValue: Value agrees with json.Valid on any input.
//
//	go test -run '^$' -fuzz FuzzValue -fuzztime 60s ./internal/jsonscan/
func FuzzValue(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkValue(t, b) })
}

func TestFields(t *testing.T) {
	names := []string{"a", "b"}
	var got []string
	set := func(f int, v []byte) bool { got = append(got, names[f]+"="+string(v)); return string(v) != "0" }
	for _, c := range []struct {
		in   string
		seen uint64
		ok   bool
	}{
		{`{"b":2,"a":"x"}`, 3, true},
		{`{"a":1}`, 1, true},
		{`{}`, 0, true},
		{`{"a":1,"a":2}`, 1, false}, // repeated
		{`{"c":1}`, 0, false},       // unknown
		{`{"A":1}`, 0, false},       // raw bytes, no case folding
		{`{"a":null}`, 0, false},
		{`{"a":0}`, 0, false}, // set said no
		{`{"a":1`, 1, false},
	} {
		got = nil
		seen, ok := Fields([]byte(c.in), names, set)
		if ok != c.ok || (ok && seen != c.seen) {
			t.Errorf("%s: seen %b ok %v (calls %q), want %b %v", c.in, seen, ok, got, c.seen, c.ok)
		}
	}
}
