package mcptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The servers' executables under node_modules/.bin.
const (
	Everything = "mcp-server-everything"
	Memory     = "mcp-server-memory"
	Filesystem = "mcp-server-filesystem"
)

var (
	once    sync.Once
	modules string
	skip    string // why the modules are not there
	node    string
)

// installTimeout bounds npm ci; a registry that does not answer in time is
// taken as no network.
const installTimeout = 5 * time.Minute

// Modules returns the fixture directory (test/mcp, holding node_modules),
// installing the packages on first use; it skips tb when they cannot be had.
func Modules(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { modules, skip = install() })
	if skip != "" {
		tb.Skip(skip)
	}
	return modules
}

// Node returns the path of node; it skips tb as [Modules] does.
func Node(tb testing.TB) string {
	tb.Helper()
	Modules(tb)
	return node
}

// Server returns the argv running one of the servers (Everything, Memory,
// Filesystem) with args.
func Server(tb testing.TB, name string, args ...string) []string {
	tb.Helper()
	dir := Modules(tb)
	return append([]string{node, filepath.Join(dir, "node_modules", ".bin", name)}, args...)
}

func install() (dir, skip string) {
	var err error
	if node, err = exec.LookPath("node"); err != nil {
		return "", "node is not installed: the MCP integration tests need node and npm (apt-get install nodejs npm)"
	}
	root, err := moduleRoot()
	if err != nil {
		return "", "cannot find the repository root: " + err.Error()
	}
	dir = filepath.Join(root, "test", "mcp")
	if installed(dir) {
		return dir, ""
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "npm is not installed and test/mcp/node_modules is missing: the MCP integration tests need the npm packages (npm ci --prefix test/mcp)"
	}
	// Test binaries of several packages run at once: one installs, the
	// others wait for it and find the result.
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "locking the npm install: " + err.Error()
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", "locking the npm install: " + err.Error()
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if installed(dir) {
		return dir, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--prefix", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := out
		if len(tail) > 400 {
			tail = tail[len(tail)-400:]
		}
		return "", fmt.Sprintf("npm ci --prefix test/mcp failed (no network to the npm registry?): %v: %s", err, tail)
	}
	if !installed(dir) {
		return "", "npm ci --prefix test/mcp succeeded but the MCP servers are not in node_modules/.bin"
	}
	return dir, ""
}

func installed(dir string) bool {
	for _, f := range []string{Everything, Memory, Filesystem} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", f)); err != nil {
			return false
		}
	}
	_, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json"))
	return err == nil
}

// moduleRoot is the directory of go.mod above the working directory (a
// test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
