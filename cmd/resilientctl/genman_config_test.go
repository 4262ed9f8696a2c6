package main

import (
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// TestConfigPage: resilienced.yaml(5) lists every key of config.Reference,
// in roff that needs no UTF-8.
func TestConfigPage(t *testing.T) {
	m := manWriter{section: "1", source: "resilienced test", date: time.Unix(0, 0).UTC()}
	page := string(m.configPage())
	if !strings.HasPrefix(page, `.TH "RESILIENCED.YAML" "5" "1970-01-01"`) {
		t.Errorf("title line: %q", strings.SplitN(page, "\n", 2)[0])
	}
	for _, f := range config.Reference {
		if !strings.Contains(page, `\fB`+roffEscape(f.Key)+`\fR (`) {
			t.Errorf("no entry for %s", f.Key)
		}
	}
	for i, r := range page {
		if r > 0x7e || (r < 0x20 && r != '\n') {
			t.Fatalf("non-ASCII %U at byte %d: %q", r, i, page[max(0, i-40):i])
		}
	}
	for _, want := range []string{
		`\fBpools[].min_uptime\fR (duration, default 1s)`,
		`\fBspawn_budget\fR (integer, default 0; 2 \(mu CPUs)`,
		`\fBpools[].name\fR (string, required)`,
		`\fBpools[].breaker.max_open_for\fR (duration, default 1m; at least open_for)`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
