package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check finds what Load cannot: a pool whose dir, user, group or command
// this host lacks, each at its key with its line.
func TestCheckAgainstTheHost(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "agent")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(`pools:
  - name: ok
    command: [./agent]
    dir: `+dir+`
  - name: bad
    command: [./data]
    dir: `+dir+`/missing
    user: no-such-user-here
    group: no-such-group-here
  - name: nopath
    command: [no-such-binary-here]
`), 0o644)
	if _, err := Load(path); err != nil {
		t.Fatalf("Load checks the host: %v", err)
	}
	_, err := Check(path)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check = %v, want config.Errors", err)
	}
	got := err.Error()
	for _, want := range []string{
		"c.yaml:7:10: pools[1].dir: " + dir + "/missing does not exist",
		"c.yaml:8:11: pools[1].user: no user \"no-such-user-here\"",
		"c.yaml:9:12: pools[1].group: no group \"no-such-group-here\"",
		"c.yaml:6:15: pools[1].command[0]: " + dir + "/missing/data does not exist",
		"c.yaml:11:15: pools[2].command[0]: no-such-binary-here is not in PATH",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "pools[0]") {
		t.Errorf("a pool this host can run was refused:\n%s", got)
	}
	if len(errs) != 5 {
		t.Errorf("%d errors, want 5:\n%s", len(errs), got)
	}
	// Not executable.
	os.WriteFile(path, []byte("pools:\n  - name: x\n    command: ["+filepath.Join(dir, "data")+"]\n"), 0o644)
	if _, err := Check(path); err == nil || !strings.Contains(err.Error(), "is not executable") {
		t.Errorf("Check of a command that is not executable: %v", err)
	}
}
