package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/telemetry"
)

// The telemetry answer is snake_case with durations in milliseconds, and
// leaves out what was not sampled.
func TestAgentTelemetryWireForm(t *testing.T) {
	s := telemetry.Stats{
		Time:      time.Unix(1, 0).UTC(),
		Rates:     telemetry.Rates{Interval: time.Second, SyscallsPerSec: 10, P50: 1500 * time.Microsecond},
		HaveRates: true,
		Proc:      telemetry.ProcSample{RSSBytes: 1 << 20, Threads: 3},
		HaveProc:  true,
	}
	b, err := json.Marshal(NewAgentTelemetry("a-1", true, s))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{`"interval_ms":1000`, `"p50_ms":1.5`, `"syscalls_per_sec":10`, `"rss_bytes":1048576`, `"threads":3`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	for _, bad := range []string{`"psi"`, `Have`, `RSSBytes`, `Interval"`} {
		if strings.Contains(got, bad) {
			t.Errorf("%s in %s", bad, got)
		}
	}
}
