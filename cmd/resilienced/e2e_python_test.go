package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/resilienced/resilienced/internal/api"
)

// The README's agent template (examples/agents/python/agent.py), run as
// the README says: its answers pass the contract, the session's context
// reaches it, and after a SIGKILL a spare continues the session.
func TestPythonTemplateServes(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	tmpl, err := filepath.Abs("../../examples/agents/python")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, `pools:
  - name: py
    command: [python3, agent.py]
    dir: `+tmpl+`
    replicas: 1
    spares: 1
    contract:
      schema: {type: object, required: [answer, context_len], properties: {answer: {type: string}, context_len: {type: integer}}}
      tokens_pointer: /usage/total_tokens
`)
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))
	ctx := context.Background()
	call := func(input string) (answer string, contextLen int, agent string) {
		t.Helper()
		in, _ := json.Marshal(input)
		r, err := d.client.Call(ctx, "py", api.CallRequest{Input: in, Session: "s1"})
		if err != nil {
			t.Fatalf("call %q: %v\n%s", input, err, d.log)
		}
		var out struct {
			Answer     string `json:"answer"`
			ContextLen int    `json:"context_len"`
		}
		if err := json.Unmarshal(r.Output, &out); err != nil {
			t.Fatalf("output %s: %v", r.Output, err)
		}
		return out.Answer, out.ContextLen, r.Agent
	}
	var serving string
	for i, in := range []string{"one", "two", "three"} {
		answer, n, agent := call(in)
		if answer != in || n != i {
			t.Fatalf("call %d: answer %q context_len %d, want %q and %d", i, answer, n, in, i)
		}
		serving = agent
	}
	st, err := d.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Agents {
		if a.ID == serving {
			syscall.Kill(a.PID, syscall.SIGKILL)
		}
	}
	answer, n, agent := call("four")
	if answer != "four" || n != 3 {
		t.Fatalf("after SIGKILL of %s: answer %q context_len %d, want \"four\" and 3", serving, answer, n)
	}
	if agent == serving {
		t.Errorf("the killed agent %s answered", serving)
	}
}
