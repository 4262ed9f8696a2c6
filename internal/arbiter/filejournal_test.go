package arbiter

import (
	"context"
	"testing"
)

func TestFileJournalKeepsRecordsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := OpenFileJournal(dir, FileJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Sample{Agent: "a", Pool: "p", RSS: 1 << 20, LogLines: []string{"a log line"}, Time: at(1)}
	if err := j.Append(ctx, SampleRecord(s)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if j, err = OpenFileJournal(dir, FileJournalOptions{}); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Append(ctx, FailureRecord("a", "p", at(2), "oom"))
	recs, err := j.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !recs[0].Time.Equal(at(1)) || !recs[1].Time.Equal(at(2)) {
		t.Fatalf("records %+v, want the sample then the failure", recs)
	}
	if recs[0].Sample == nil || recs[0].Sample.LogLines[0] != "a log line" {
		t.Errorf("the sample did not come back whole: %+v", recs[0])
	}
}
