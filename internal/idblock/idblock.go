package idblock

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ErrCorrupt: the file does not hold a number.
var ErrCorrupt = errors.New("idblock: corrupt file")

// DefaultBlock is the block size Open uses for a zero block.
const DefaultBlock = 1024

// Allocator hands out increasing numbers from 1, unique across restarts
// that reopen the same file. It is safe for concurrent use.
type Allocator struct {
	path  string
	block uint64
	log   *slog.Logger

	mu    sync.Mutex
	next  uint64 // the next number to hand out
	limit uint64 // numbers below limit are reserved in the file
}

// Open reads the reservation in path (a missing file starts at 1) and
// returns an allocator that continues after it.
func Open(path string, block uint64, log *slog.Logger) (*Allocator, error) {
	if block == 0 {
		block = DefaultBlock
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Allocator{path: path, block: block, log: log, next: 1, limit: 1}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("idblock: %w", err)
	default:
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q", ErrCorrupt, path, b)
		}
		a.next, a.limit = n, n
	}
	if err := a.reserve(); err != nil {
		return nil, err
	}
	return a, nil
}

// Next returns the next number. When the file cannot be written (a full
// disk) it still returns a number unique in this process, and logs that
// uniqueness across a restart is at risk: an agent must not fail to start
// for want of an id.
func (a *Allocator) Next() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.limit {
		if err := a.reserve(); err != nil {
			a.log.Error("reserving agent ids; ids may repeat after a restart", "err", err)
			a.limit = a.next + 1
		}
	}
	n := a.next
	a.next++
	return n
}

// reserve writes next+block to the file, atomically and durably.
func (a *Allocator) reserve() error {
	limit := a.next + a.block
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("idblock: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(limit, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(a.path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("idblock: reserving ids up to %d in %s: %w", limit, a.path, err)
	}
	a.limit = limit
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
