package kfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 5000) // past the first buffer: it grows
	if err := Write(p, long); err != nil {
		t.Fatal(err)
	}
	b, err := Read(p)
	if err != nil || string(b) != long {
		t.Fatalf("Read = %d bytes, %v; want %d", len(b), err, len(long))
	}
	// A kernel file whose fstat size is not its length.
	if b, err := Read("/proc/self/status"); err != nil || !strings.Contains(string(b), "Pid:") {
		t.Fatalf("Read(/proc/self/status) = %q, %v", b, err)
	}
}

func TestErrorsSayWhatAndWhere(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := Read(missing)
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != missing || pe.Op != "open" {
		t.Fatalf("Read of a missing file: %v", err)
	}
	if err := Write(missing, "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Write of a missing file: %v", err)
	}
	if _, err := Read(t.TempDir()); err == nil || !strings.Contains(err.Error(), "read") {
		t.Fatalf("Read of a directory: %v", err)
	}
}
