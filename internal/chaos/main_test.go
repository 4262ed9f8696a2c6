package chaos

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The engine starts this test binary as its memory helper (leak, oom).
	MaybeRunHelper()
	os.Exit(m.Run())
}
