package jsonl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJournalKeepsOrderAcrossSegmentsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := Open[rec](dir, Options{SegmentBytes: 1 << 10, Segments: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := j.Append(ctx, rec{Time: at(float64(i)), Kind: "oom"}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	j, err = Open[rec](dir, Options{SegmentBytes: 1 << 10, Segments: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := 100; i < 150; i++ {
		j.Append(ctx, rec{Time: at(float64(i)), Kind: "oom"})
	}
	recs, err := j.Read(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 150 {
		t.Fatalf("%d records, want 150 (reopened journals keep what was there)", len(recs))
	}
	for i, r := range recs {
		if !r.Time.Equal(at(float64(i))) {
			t.Fatalf("record %d is from %v, want %v: out of order", i, r.Time, at(float64(i)))
		}
	}
	if segs, _ := j.segments(); len(segs) < 3 {
		t.Errorf("%d segments for ~15 KiB of 1 KiB segments: it did not rotate", len(segs))
	}
	last, err := j.Read(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 10 || !last[0].Time.Equal(at(140)) || !last[9].Time.Equal(at(149)) {
		t.Errorf("Read(10) = %d records from %v to %v, want the newest 10, oldest first", len(last), last[0].Time, last[len(last)-1].Time)
	}
}

func TestJournalBoundedOnDisk(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := Open[rec](dir, Options{SegmentBytes: 4 << 10, Segments: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 5000 {
		if err := j.Append(ctx, rec{Time: at(float64(i)), Kind: strings.Repeat("x", 40)}); err != nil {
			t.Fatal(err)
		}
	}
	j.Read(ctx, 1, nil) // flushes
	var total int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
	}
	if len(ents) != 3 || total > 3*(4<<10) {
		t.Errorf("%d segments, %d bytes on disk; want 3 segments of at most 4 KiB", len(ents), total)
	}
	recs, _ := j.Read(ctx, 0, nil)
	if len(recs) == 0 || !recs[len(recs)-1].Time.Equal(at(4999)) {
		t.Errorf("the newest record was lost")
	}
}

func TestJournalSkipsATornLine(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := Open[rec](dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	j.Append(ctx, rec{Time: at(1), Kind: "exit"})
	j.Close()
	segs, _ := j.segments()
	// A crash mid-write leaves half a line.
	f, _ := os.OpenFile(filepath.Join(dir, filepath.Base(j.path(segs[len(segs)-1]))), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	j, err = Open[rec](dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Append(ctx, rec{Time: at(2), Kind: "exit"})
	recs, err := j.Read(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !recs[1].Time.Equal(at(2)) {
		t.Fatalf("got %d records, want the 2 whole ones around the torn line", len(recs))
	}
}

func TestJournalReadFiltersAndAppendsInBatches(t *testing.T) {
	ctx := context.Background()
	j, err := Open[rec](t.TempDir(), Options{FlushEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var batch []rec
	for i := range 10 {
		batch = append(batch, rec{Time: at(float64(i)), Kind: []string{"exit", "kill"}[i%2]})
	}
	if err := j.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	kills, err := j.Read(ctx, 3, func(r *rec) bool { return r.Kind == "kill" })
	if err != nil {
		t.Fatal(err)
	}
	if len(kills) != 3 || !kills[0].Time.Equal(at(5)) || !kills[2].Time.Equal(at(9)) {
		t.Fatalf("Read(3, kills) = %+v, want the kills at 5, 7 and 9", kills)
	}
	j.Close()
	if err := j.Append(ctx, rec{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
}

type rec struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
}

func at(s float64) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s * float64(time.Second)))
}
