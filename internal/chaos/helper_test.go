package chaos

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// TestHelperProcess runs the memory helper as the engine does (this test
// binary is one, see TestMain) without a cgroup: it allocates its cap and
// says that nothing stopped it.
func TestHelperProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"leak", "oom"} {
		cmd := exec.Command(exe, HelperArg, mode, "67108864", "8388608") // 64MiB/s up to 8MiB
		w, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("go\n"))
		err = cmd.Wait()
		w.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != helperNoLimit {
			t.Errorf("%s helper: %v, want exit %d (cap reached, no limit)", mode, err, helperNoLimit)
		}
	}
	// Closing stdin ends it (an undone fault), before it starts or after.
	cmd := exec.Command(exe, HelperArg, "leak", "1024", "1073741824")
	w, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("go\n"))
	w.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper after stdin closed: %v, want exit 0", err)
	}
	if out, err := exec.Command(exe, HelperArg, "explode").CombinedOutput(); err == nil {
		t.Errorf("bad arguments accepted: %s", out)
	}
}
