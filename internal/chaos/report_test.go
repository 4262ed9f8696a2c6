package chaos

import (
	"strings"
	"testing"
	"time"
)

// A kind that misses the bound says why; one that meets it says nothing.
func TestKindNotesExplainAMiss(t *testing.T) {
	slow := KindReport{Kind: Crash, DetectMS: &Summary{N: 10, P50: 20, P99: 318, Max: 318}, RecoverMS: &Summary{N: 10, P50: 40, P99: 323, Max: 323}}
	notes := kindNotes(Crash, slow, nil, 300*time.Millisecond)
	if len(notes) != 1 || !strings.Contains(notes[0], "SIGSEGV") || !strings.Contains(notes[0], "318 ms") {
		t.Fatalf("crash over the bound: notes %q, want the reason and the detect p99", notes)
	}
	if notes := kindNotes(Kill, slow, nil, 300*time.Millisecond); len(notes) != 1 || strings.Contains(notes[0], "SIGSEGV") {
		t.Fatalf("kill over the bound: notes %q, want the exit reason without the SIGSEGV part", notes)
	}
	fast := slow
	fast.RecoverMS = &Summary{N: 10, P50: 40, P99: 120, Max: 120}
	if notes := kindNotes(Crash, fast, nil, 300*time.Millisecond); len(notes) != 0 {
		t.Fatalf("crash within the bound: notes %q, want none", notes)
	}
}
