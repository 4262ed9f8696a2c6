package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A config whose agents cannot fit the open-file limit is refused at
// start, with the numbers, rather than failing at the agent that does not
// fit.
func TestStartRefusesMoreAgentsThanTheFDLimit(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `version: 1
pools:
  - name: many
    command: [/bin/cat]
    replicas: 1000
`)
	// A hard limit of 2048 leaves room for ~300 agents.
	cmd := exec.Command("sh", "-c", `ulimit -Sn 2048 && ulimit -Hn 2048 && exec "$0" "$@"`,
		filepath.Join(bin, "resilienced"), "--config", cfg, "--socket", filepath.Join(dir, "s.sock"),
		"--state-dir", filepath.Join(dir, "state"), "--cgroup-name", "rtest-fdlimit")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the daemon started 1,000 agents under a limit of 2,048 descriptors:\n%s", out)
	}
	for _, want := range []string{"open-file limit", "1001 agents", "RLIMIT_NOFILE 2048"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}
