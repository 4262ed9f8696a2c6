package telemetry

import (
	"os"
	"testing"
)

// childEnv selects a child behaviour when the test binary re-executes itself
// inside a test cgroup; see runChild.
const childEnv = "TELEMETRY_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}
