package arbiter

import (
	"context"

	"github.com/resilienced/resilienced/internal/jsonl"
)

// FileJournalOptions bound a [FileJournal]. The zero value is the default:
// four segments of 16 MiB.
type FileJournalOptions = jsonl.Options

// FileJournal is a [Journal] on disk (a [jsonl.Journal]). The history the
// Arbiter is judged on then costs the daemon no memory however long it
// runs or however many agents it samples (an in-memory ring grows the
// daemon's RSS until it is full), survives the daemon's restarts, and is
// bounded on disk.
type FileJournal struct{ j *jsonl.Journal[Record] }

// OpenFileJournal opens (creating it) the journal in dir. Records already
// there are kept.
func OpenFileJournal(dir string, o FileJournalOptions) (*FileJournal, error) {
	if o.Name == "" {
		o.Name = "arbiter journal"
	}
	j, err := jsonl.Open[Record](dir, o)
	if err != nil {
		return nil, err
	}
	return &FileJournal{j}, nil
}

// Append implements [Journal]. A write error is logged once and returned;
// the Arbiter goes on without its journal rather than stopping.
func (f *FileJournal) Append(ctx context.Context, r Record) error { return f.j.Append(ctx, r) }

// Records reads the journal, oldest first, keeping at most the newest
// limit records (0: all). A torn line is skipped.
func (f *FileJournal) Records(limit int) ([]Record, error) {
	return f.j.Read(context.Background(), limit, nil)
}

// Close flushes and closes the journal.
func (f *FileJournal) Close() error { return f.j.Close() }
