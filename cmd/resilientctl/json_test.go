package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// With -o json an error is JSON on stdout, {"error": {"code", "message"}},
// with the exit code it has in table mode.
func TestJSONErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--socket", sock, "-o", "json", "status"}, exitUnreachable, "unreachable"},
		{[]string{"--socket", sock, "-o", "json", "scale", "p", "many"}, exitUsage, "usage"},
	} {
		code, out := capture(t, tc.args...)
		var got struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: stdout is not JSON (%v): %q", tc.args, err, out)
		}
		if code != tc.code || got.Error.Code != tc.want || got.Error.Message == "" {
			t.Errorf("%v: exit %d, %+v; want exit %d, code %s", tc.args, code, got, tc.code, tc.want)
		}
	}
}

func TestPrintEvalSaysWhatIsUnverifiable(t *testing.T) {
	var rep evalReport
	raw := `{"failures":0,"predictions":12,"unverifiable":12,"acted":12,"precision":null,"recall":null,"lead_ms_p50":null,
		"acted_evidence":[{"time":"2026-12-05T10:00:00Z","agent":"leak-7","risk":0.93,"reasons":["RSS reaches its 96 MiB limit in ~4 s (+2.5 MiB/s)"]}],
		"holdout":{"predictions":0,"precision":null,"needed":16}}`
	if err := json.Unmarshal([]byte(raw), &rep); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printEval(&b, &rep)
	out := b.String()
	for _, want := range []string{"precision                - (nothing verifiable)", "acted on                 12", "RSS reaches its 96 MiB limit", "16 more held-out predictions"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "precision                0") {
		t.Errorf("a precision of 0 printed:\n%s", out)
	}
}
