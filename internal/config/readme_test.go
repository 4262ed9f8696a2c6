package config

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// readmeExample is the YAML block of the README's Configuration section,
// as a user would paste it.
func readmeExample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sect, ok := strings.Cut(string(data), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, block, ok := strings.Cut(sect, "```yaml\n")
	if !ok {
		t.Fatal("README's Configuration section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```")
	return []byte(block)
}

// The README's example, pasted as written, is a valid file; --check passes
// it only where it would start, and otherwise names every problem at its
// key (issue #19).
func TestREADMEConfigExample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resilienced.yaml")
	if err := os.WriteFile(path, readmeExample(t), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("the README's example does not load:\n%v", err)
	}
	if len(c.Pools) == 0 {
		t.Fatal("the README's example has no pool")
	}
	var want []string
	if _, err := os.Stat("/srv/agents"); err != nil {
		want = append(want, "pools[0].dir: /srv/agents does not exist")
	}
	if _, err := user.Lookup("agent"); err != nil {
		want = append(want, `pools[0].user: no user "agent"`)
	}
	if _, err := exec.LookPath("python3"); err != nil {
		want = append(want, "pools[0].command[0]: python3 is not in PATH")
	}
	_, err = Check(path)
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("this host can run the example, but --check refuses it:\n%v", err)
		}
		return
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check = %v, want config.Errors naming %q", err, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("--check does not say %q:\n%v", w, err)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%d problems, want %d (%q):\n%v", len(errs), len(want), want, err)
	}
}
