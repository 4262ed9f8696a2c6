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

	dirOnce sync.Once
	dir     string // where the agents are built; Cleanup removes it
	dirErr  error
)

// buildDir returns the temporary directory the agents are built into,
// made on first use.
func buildDir() (string, error) {
	dirOnce.Do(func() { dir, dirErr = os.MkdirTemp("", "resilienced-testagent") })
	return dir, dirErr
}

// Flaky returns the path of the example agent, building it on first use;
// it fails tb when the build fails.
func Flaky(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		d, e := buildDir()
		if e != nil {
			err = e
			return
		}
		bin = filepath.Join(d, "flaky")
		// Static (no cgo), as a Go agent is shipped: with cgo, the net
		// package links libc, and the dynamic loader costs each start
		// ~4 ms of CPU here (docs/BENCHMARKS.md, issue #17, session 8).
		build := exec.Command("go", "build", "-o", bin, flakyPkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, e := build.CombinedOutput(); e != nil {
			err = errors.New(string(out))
		}
	})
	if err != nil {
		tb.Fatalf("building the flaky agent: %v", err)
	}
	return bin
}

// Cleanup removes the agents Flaky and Echo built, if any.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}
