package chaos

import (
	"os"
	"testing"

	"github.com/resilienced/resilienced/internal/testagent"
)

func TestMain(m *testing.M) {
	// The engine starts this test binary as its memory helper (leak, oom).
	MaybeRunHelper()
	code := m.Run()
	testagent.Cleanup()
	os.Exit(code)
}
