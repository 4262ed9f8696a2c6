package testagent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// flakyPkg is the agent's import path: go build finds it from any
// directory of the module, whatever package the test runs in.
const flakyPkg = "github.com/resilienced/resilienced/examples/agents/flaky"

var (
	once sync.Once
	bin  string
	err  error
)

// Flaky returns the path of the example agent, building it on first use;
// it fails tb when the build fails.
func Flaky(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		dir, e := os.MkdirTemp("", "resilienced-testagent")
		if e != nil {
			err = e
			return
		}
		bin = filepath.Join(dir, "flaky")
		if out, e := exec.Command("go", "build", "-o", bin, flakyPkg).CombinedOutput(); e != nil {
			err = errors.New(string(out))
		}
	})
	if err != nil {
		tb.Fatalf("building the flaky agent: %v", err)
	}
	return bin
}

// Cleanup removes the agent Flaky built, if any.
func Cleanup() {
	if bin != "" {
		os.RemoveAll(filepath.Dir(bin))
	}
}
