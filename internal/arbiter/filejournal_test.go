package arbiter

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestFileJournalKeepsOrderAcrossSegmentsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := OpenFileJournal(dir, FileJournalOptions{SegmentBytes: 1 << 10, Segments: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := j.Append(ctx, FailureRecord("a", "p", at(float64(i)), "oom")); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	j, err = OpenFileJournal(dir, FileJournalOptions{SegmentBytes: 1 << 10, Segments: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := 100; i < 150; i++ {
		j.Append(ctx, FailureRecord("a", "p", at(float64(i)), "oom"))
	}
	recs, err := j.Records(0)
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
	last, err := j.Records(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 10 || !last[0].Time.Equal(at(140)) || !last[9].Time.Equal(at(149)) {
		t.Errorf("Records(10) = %d records from %v to %v, want the newest 10, oldest first", len(last), last[0].Time, last[len(last)-1].Time)
	}
}

func TestFileJournalBoundedOnDisk(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenFileJournal(dir, FileJournalOptions{SegmentBytes: 4 << 10, Segments: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s := Sample{Agent: "a", Pool: "p", RSS: 1 << 20, LogLines: []string{"a log line that takes some room in the record"}}
	for i := range 5000 {
		s.Time = at(float64(i))
		if err := j.Append(context.Background(), SampleRecord(s)); err != nil {
			t.Fatal(err)
		}
	}
	j.Records(1) // flushes
	var total int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
	}
	if len(ents) != 3 || total > 3*(4<<10) {
		t.Errorf("%d segments, %d bytes on disk; want 3 segments of at most 4 KiB", len(ents), total)
	}
	recs, _ := j.Records(0)
	if len(recs) == 0 || !recs[len(recs)-1].Time.Equal(at(4999)) {
		t.Errorf("the newest record was lost")
	}
}

func TestFileJournalSkipsATornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenFileJournal(dir, FileJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.Append(context.Background(), FailureRecord("a", "p", at(1), "exit"))
	j.Close()
	segs, _ := j.segments()
	// A crash mid-write leaves half a line.
	f, _ := os.OpenFile(filepath.Join(dir, filepath.Base(j.path(segs[len(segs)-1]))), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	j, err = OpenFileJournal(dir, FileJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Append(context.Background(), FailureRecord("a", "p", at(2), "exit"))
	recs, err := j.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !recs[1].Time.Equal(at(2)) {
		t.Fatalf("got %d records, want the 2 whole ones around the torn line", len(recs))
	}
}
