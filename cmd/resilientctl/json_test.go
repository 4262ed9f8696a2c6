package main

import (
	"encoding/json"
	"path/filepath"
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
