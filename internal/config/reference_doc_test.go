package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the key table of docs/CONFIG.md from Reference")

const (
	docBegin = "<!-- BEGIN KEYS: generated from Reference (internal/config/reference.go); go test ./internal/config -run TestReferenceDoc -update -->\n"
	docEnd   = "<!-- END KEYS -->\n"
)

// TestReferenceDoc checks that the key table of docs/CONFIG.md is the one
// Reference gives; -update rewrites it.
func TestReferenceDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "CONFIG.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	before, rest, ok := strings.Cut(doc, docBegin)
	_, after, ok2 := strings.Cut(rest, docEnd)
	if !ok || !ok2 {
		t.Fatalf("%s: no %q ... %q markers", path, docBegin, docEnd)
	}
	want := before + docBegin + markdownTable() + docEnd + after
	if doc == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the key table differs from Reference: run go test ./internal/config -run TestReferenceDoc -update", path)
}

func markdownTable() string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | |\n|---|---|---|---|\n")
	for _, f := range Reference {
		b.WriteString("| `" + f.Key + "` | " + mdType(f.Type) + " | " + mdDefault(f.Default) + " | " + mdText(f.Doc) + " |\n")
	}
	return b.String()
}

func mdType(s string) string {
	if strings.Contains(s, " | ") {
		return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
	}
	return s
}

// mdDefault sets the value in code and its note, if any, in text.
func mdDefault(s string) string {
	switch s {
	case "", "required", "none":
		return s
	}
	val, note, _ := strings.Cut(s, " (")
	out := "`" + val + "`"
	if note != "" {
		out += " (" + mdText(note)
	}
	return out
}

func mdText(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
