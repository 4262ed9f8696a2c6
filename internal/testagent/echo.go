package testagent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// echoCompilers are the C compilers Echo tries, in order.
var echoCompilers = []string{"cc", "gcc", "clang", "clang-16"}

var (
	echoOnce sync.Once
	echoBin  string
	echoErr  error
	echoSkip string // why Echo cannot build here, when it cannot
)

// Echo returns the path of the C echo agent (examples/agents/echo/echo.c),
// compiling it on first use with the first of cc, gcc, clang and clang-16
// on PATH. It skips tb when there is no C compiler and fails it when the
// source cannot be found or does not compile.
func Echo(tb testing.TB) string {
	tb.Helper()
	echoOnce.Do(buildEcho)
	if echoSkip != "" {
		tb.Skip(echoSkip)
	}
	if echoErr != nil {
		tb.Fatalf("building the echo agent: %v", echoErr)
	}
	return echoBin
}

func buildEcho() {
	cc := ""
	for _, name := range echoCompilers {
		if p, err := exec.LookPath(name); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		echoSkip = "no C compiler (" + strings.Join(echoCompilers, ", ") + ") on PATH: the echo agent is C"
		return
	}
	// go env GOMOD names the module's go.mod from whatever package
	// directory the test binary runs in.
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		echoErr = fmt.Errorf("finding the module root: go env GOMOD: %w", err)
		return
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		echoErr = errors.New("finding the module root: not inside the module (go env GOMOD is empty)")
		return
	}
	src := filepath.Join(filepath.Dir(gomod), "examples", "agents", "echo", "echo.c")
	d, err := buildDir()
	if err != nil {
		echoErr = err
		return
	}
	bin := filepath.Join(d, "echo")
	cmd := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-o", bin, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		echoErr = fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
		return
	}
	echoBin = bin
}
