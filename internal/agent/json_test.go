package agent

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile are config strings no JSON writer may pass through as Go quotes
// them: DEL, BEL, NUL, invalid UTF-8, the JavaScript line separators.
var hostile = []string{"task/run", "\x7f", "\a", "\x00", "a\x00b", "\xff\xfe", "caf\xc3", "é\u2028\u2029", `"\`, "\t\n\r\b\f", "<&>", "\x1b[31m"}

// wantDecoded is what a JSON string written from s decodes to: s itself
// when it is UTF-8, else s with each invalid byte replaced by U+FFFD, as
// encoding/json writes it.
func wantDecoded(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += n
	}
	return b.String()
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q gives %s, not JSON: %v", s, got, err)
		}
		if back != wantDecoded(s) {
			t.Fatalf("%q gives %s, which decodes to %q", s, got, back)
		}
		// Byte for byte what encoding/json writes (without HTML escaping).
		var ref bytes.Buffer
		enc := json.NewEncoder(&ref)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if want := bytes.TrimSuffix(ref.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, encoding/json writes %s", s, got, want)
		}
	})
}

// FuzzConfigStringsReachAgentAsJSON feeds a hostile string to every place
// a config string (the pool's method, its MCP tool) or a daemon string
// (reask feedback) enters a line written to an agent, and checks that the
// line is one valid JSON object that gives the string back.
func FuzzConfigStringsReachAgentAsJSON(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := wantDecoded(s)
		check := func(what string, line []byte, get func(m map[string]any) any) {
			t.Helper()
			if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
				t.Fatalf("%s: %q is not one line", what, line)
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: %q is not JSON: %v", what, line, err)
			}
			if got := get(m); got != want {
				t.Fatalf("%s: decodes to %q, want %q", what, got, want)
			}
		}
		check("request method", appendRequest(nil, 7, s, []byte(`{}`)), func(m map[string]any) any { return m["method"] })
		check("notification method", appendNotification(nil, s, nil), func(m map[string]any) any { return m["method"] })

		if s == "" || s == "*" {
			return // not a tool name: "" and "*" mean every tool
		}
		a := &Agent{cfg: Config{Protocol: ProtocolMCP, Tool: s, MCPContext: MCPContextMeta}}
		fb, _ := json.Marshal(s) // the envelope is JSON already: the supervisor writes it
		p, _, err := a.mcpCallParams(json.RawMessage(`{"session":"x","context":[],"input":{"a":1},"feedback":`+string(fb)+`}`), 3)
		if err != nil {
			t.Fatal(err)
		}
		line := appendRequest(nil, 3, "tools/call", p)
		check("tool name", line, func(m map[string]any) any { return m["params"].(map[string]any)["name"] })
		check("reask feedback", line, func(m map[string]any) any {
			return m["params"].(map[string]any)["_meta"].(map[string]any)[MetaFeedback]
		})
		// The tool named in the input of an every-tool pool.
		a.cfg.Tool = "*"
		p, _, err = a.mcpCallParams(json.RawMessage(`{"session":null,"context":[],"input":{"name":`+string(fb)+`,"arguments":{}}}`), 3)
		if err != nil {
			t.Fatal(err)
		}
		check("tool name from the input", appendRequest(nil, 3, "tools/call", p), func(m map[string]any) any { return m["params"].(map[string]any)["name"] })
	})
}

// TestHostileMethodReachesAgent sends each hostile method to a real agent
// process, which says what it decoded.
func TestHostileMethodReachesAgent(t *testing.T) {
	for _, m := range hostile {
		a := startTestAgent(t, "method", func(c *Config) { c.Method = m })
		out, err := call(t, a, `{"input":1}`)
		if err != nil {
			t.Fatalf("method %q: %v", m, err)
		}
		var got struct{ Method string }
		if err := json.Unmarshal(out, &got); err != nil || got.Method != wantDecoded(m) {
			t.Fatalf("method %q: the agent decoded %s", m, out)
		}
	}
}
