package idblock

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestNumbersAreUniqueAcrossReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids")
	seen := map[uint64]bool{}
	for run := range 3 {
		a, err := Open(path, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 + run*5 { // within a block, and across blocks
			n := a.Next()
			if seen[n] {
				t.Fatalf("run %d: %d handed out twice", run, n)
			}
			seen[n] = true
		}
	}
	if !seen[1] {
		t.Fatal("a new file must start at 1")
	}
}

func TestConcurrentNext(t *testing.T) {
	a, err := Open(filepath.Join(t.TempDir(), "ids"), 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				n := a.Next()
				mu.Lock()
				if seen[n] {
					t.Errorf("%d twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Fatalf("%d numbers", len(seen))
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids")
	os.WriteFile(path, []byte("twelve\n"), 0o600)
	if _, err := Open(path, 0, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a corrupt file: %v, want ErrCorrupt", err)
	}
}
