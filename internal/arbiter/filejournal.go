package arbiter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FileJournalOptions bound a [FileJournal]. The zero value is the default:
// four segments of 16 MiB.
type FileJournalOptions struct {
	// SegmentBytes is the size at which a segment is closed and the next
	// one begun.
	SegmentBytes int64
	// Segments is how many segments are kept; the oldest is deleted when
	// one more begins.
	Segments int
	// FlushEvery bounds how long an appended record may sit in the write
	// buffer (default 1s).
	FlushEvery time.Duration
	Logger     *slog.Logger
}

// FileJournal is a [Journal] on disk: one JSON record per line in segment
// files under a directory, the oldest deleted once Segments are full. The
// history the Arbiter is judged on then costs the daemon no memory however
// long it runs or however many agents it samples (an in-memory ring grows
// the daemon's RSS until it is full), survives the daemon's restarts, and
// is bounded on disk.
type FileJournal struct {
	dir  string
	opts FileJournalOptions

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	size    int64
	seq     uint64
	flushed time.Time
	err     error // the first write error, reported once
}

const journalSuffix = ".jsonl"

// OpenFileJournal opens (creating it) the journal in dir. Records already
// there are kept; new ones go to a new segment.
func OpenFileJournal(dir string, o FileJournalOptions) (*FileJournal, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	if o.Segments <= 0 {
		o.Segments = 4
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("arbiter journal: %w", err)
	}
	j := &FileJournal{dir: dir, opts: o}
	segs, err := j.segments()
	if err != nil {
		return nil, err
	}
	if len(segs) > 0 {
		j.seq = segs[len(segs)-1]
	}
	if err := j.rotateLocked(); err != nil {
		return nil, err
	}
	return j, nil
}

// segments lists the segment numbers in dir, oldest first.
func (j *FileJournal) segments() ([]uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("arbiter journal: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), journalSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if seq, err := strconv.ParseUint(n, 10, 64); err == nil {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (j *FileJournal) path(seq uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016d%s", seq, journalSuffix))
}

// rotateLocked closes the current segment, begins the next and deletes
// the segments beyond the bound. Called with j.mu held (or before j is
// shared).
func (j *FileJournal) rotateLocked() error {
	if j.f != nil {
		j.w.Flush()
		j.f.Close()
		j.f = nil
	}
	j.seq++
	f, err := os.OpenFile(j.path(j.seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("arbiter journal: %w", err)
	}
	j.f, j.size = f, 0
	if j.w == nil {
		j.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		j.w.Reset(f)
	}
	segs, err := j.segments()
	if err != nil {
		return err
	}
	for len(segs) > j.opts.Segments {
		if err := os.Remove(j.path(segs[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("arbiter journal: %w", err)
		}
		segs = segs[1:]
	}
	return nil
}

// Append implements [Journal]. A write error is logged once and returned;
// the Arbiter goes on without its journal rather than stopping.
func (j *FileJournal) Append(ctx context.Context, r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("arbiter journal: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("arbiter journal: closed")
	}
	if j.size > 0 && j.size+int64(len(line)) > j.opts.SegmentBytes {
		if err := j.rotateLocked(); err != nil {
			return j.failedLocked(err)
		}
	}
	if _, err := j.w.Write(line); err != nil {
		return j.failedLocked(err)
	}
	j.size += int64(len(line))
	if now := time.Now(); now.Sub(j.flushed) >= j.opts.FlushEvery {
		j.flushed = now
		if err := j.w.Flush(); err != nil {
			return j.failedLocked(err)
		}
	}
	return nil
}

func (j *FileJournal) failedLocked(err error) error {
	if j.err == nil {
		j.err = err
		j.opts.Logger.Warn("arbiter journal: cannot write; `resilientctl arbiter eval` will miss records", "dir", j.dir, "err", err)
	}
	return fmt.Errorf("arbiter journal: %w", err)
}

// Records reads the journal, oldest first, keeping at most the newest
// limit records (0: all) so that reading a full journal has a bounded
// cost. A line that does not decode (the last one, torn by a crash) is
// skipped.
func (j *FileJournal) Records(limit int) ([]Record, error) {
	j.mu.Lock()
	if j.w != nil {
		j.w.Flush()
	}
	segs, err := j.segments()
	j.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []Record
	next := 0 // the oldest record's index once out is a full ring
	for _, seq := range segs {
		f, err := os.Open(j.path(seq))
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated away meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("arbiter journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var r Record
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			if limit <= 0 || len(out) < limit {
				out = append(out, r)
				continue
			}
			out[next] = r
			next = (next + 1) % limit
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("arbiter journal: %s: %w", j.path(seq), err)
		}
	}
	if next > 0 {
		out = slices.Concat(out[next:], out[:next])
	}
	return out, nil
}

// Close flushes and closes the journal.
func (j *FileJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.w.Flush()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}
