package jsonl

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

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("journal closed")

// Options bound a [Journal]. The zero value is the default: four segments
// of 16 MiB, flushed every second.
type Options struct {
	// Name says which journal in messages and errors ("arbiter journal").
	Name string
	// SegmentBytes is the size at which a segment is closed and the next
	// one begun.
	SegmentBytes int64
	// Segments is how many segments are kept; the oldest is deleted when
	// one more begins.
	Segments int
	// FlushEvery bounds how long an appended value may sit in the write
	// buffer (default 1s; negative: flushed at every Append).
	FlushEvery time.Duration
	Logger     *slog.Logger
}

// Journal is a bounded journal of values of type T (see the package doc).
// It is safe for concurrent use.
type Journal[T any] struct {
	dir  string
	opts Options

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	size    int64
	seq     uint64
	flushed time.Time
	err     error // the first write error, reported once
}

const suffix = ".jsonl"

// Open opens (creating it) the journal in dir. Values already there are
// kept; new ones go to a new segment.
func Open[T any](dir string, o Options) (*Journal[T], error) {
	if o.Name == "" {
		o.Name = "journal"
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	if o.Segments <= 0 {
		o.Segments = 4
	}
	if o.FlushEvery == 0 {
		o.FlushEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	j := &Journal[T]{dir: dir, opts: o}
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

// Dir is the journal's directory.
func (j *Journal[T]) Dir() string { return j.dir }

// segments lists the segment numbers in dir, oldest first.
func (j *Journal[T]) segments() ([]uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.opts.Name, err)
	}
	var out []uint64
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), suffix)
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

func (j *Journal[T]) path(seq uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016d%s", seq, suffix))
}

// rotateLocked closes the current segment, begins the next and deletes
// the segments beyond the bound. Called with j.mu held (or before j is
// shared).
func (j *Journal[T]) rotateLocked() error {
	if j.f != nil {
		j.w.Flush()
		j.f.Close()
		j.f = nil
	}
	j.seq++
	f, err := os.OpenFile(j.path(j.seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("%s: %w", j.opts.Name, err)
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
			return fmt.Errorf("%s: %w", j.opts.Name, err)
		}
		segs = segs[1:]
	}
	return nil
}

// Append adds vs, in order. A write error is logged once and returned;
// callers go on without their journal rather than stopping.
func (j *Journal[T]) Append(ctx context.Context, vs ...T) error {
	lines := make([][]byte, 0, len(vs))
	for _, v := range vs {
		line, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %w", j.opts.Name, err)
		}
		lines = append(lines, append(line, '\n'))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("%s: %w", j.opts.Name, ErrClosed)
	}
	for _, line := range lines {
		if j.size > 0 && j.size+int64(len(line)) > j.opts.SegmentBytes {
			if err := j.rotateLocked(); err != nil {
				return j.failedLocked(err)
			}
		}
		if _, err := j.w.Write(line); err != nil {
			return j.failedLocked(err)
		}
		j.size += int64(len(line))
	}
	if now := time.Now(); j.opts.FlushEvery < 0 || now.Sub(j.flushed) >= j.opts.FlushEvery {
		j.flushed = now
		if err := j.w.Flush(); err != nil {
			return j.failedLocked(err)
		}
	}
	return nil
}

func (j *Journal[T]) failedLocked(err error) error {
	if j.err == nil {
		j.err = err
		j.opts.Logger.Warn(j.opts.Name+": cannot write; its history will miss records", "dir", j.dir, "err", err)
	}
	return fmt.Errorf("%s: %w", j.opts.Name, err)
}

// Read reads the journal, oldest first: the values keep accepts (all for
// a nil keep), at most the newest limit of them (0: all), so that reading
// a full journal has a bounded cost in memory.
func (j *Journal[T]) Read(ctx context.Context, limit int, keep func(*T) bool) ([]T, error) {
	j.mu.Lock()
	if j.w != nil {
		j.w.Flush()
	}
	segs, err := j.segments()
	j.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []T
	next := 0 // the oldest value's index once out is a full ring
	for _, seq := range segs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.Open(j.path(seq))
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated away meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", j.opts.Name, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var v T
			if json.Unmarshal(sc.Bytes(), &v) != nil || (keep != nil && !keep(&v)) {
				continue
			}
			if limit <= 0 || len(out) < limit {
				out = append(out, v)
				continue
			}
			out[next] = v
			next = (next + 1) % limit
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", j.opts.Name, j.path(seq), err)
		}
	}
	if next > 0 {
		out = slices.Concat(out[next:], out[:next])
	}
	return out, nil
}

// Close flushes and closes the journal.
func (j *Journal[T]) Close() error {
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
