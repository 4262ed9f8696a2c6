package session

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// payload is a call of realistic size: 256-byte input and output.
var payload = json.RawMessage(`"` + strings.Repeat("x", 254) + `"`)

// BenchmarkAppend: durable (fsync'd) appends from 64 concurrent writers,
// each on its own session with an idempotency key, as calls would make.
// The baseline is one transaction and fsync per append; bbolt's DB.Batch
// is shown beside the committer it was evaluated against.
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		name  string
		mode  commitMode
		delay time.Duration
	}{
		{"baseline=one-tx-per-append", commitSolo, 0},
		{"bolt-DB.Batch/delay=1ms", commitBoltBatch, time.Millisecond},
		{"group-commit/no-delay", commitGroup, -1},
		{"group-commit/delay=1ms", commitGroup, time.Millisecond},
	}
	for _, writers := range []int{1, 64, 256} {
		for _, c := range cases {
			b.Run(fmt.Sprintf("writers=%d/%s", writers, c.name), func(b *testing.B) {
				s := openTest(b, Options{commitMode: c.mode, MaxBatchDelay: c.delay})
				benchAppend(b, s, writers)
			})
		}
	}
}

func benchAppend(b *testing.B, s *Store, writers int) {
	ctx := context.Background()
	lim := Limit{Entries: 32, TTL: time.Hour}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := fmt.Sprint("s", w)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				ex := Exchange{Input: payload, Output: payload}
				if _, err := s.Append(ctx, "bench", sess, ex, lim, fmt.Sprint("k", i), payload); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	if st := s.Stats(); st.Commits > 0 {
		b.ReportMetric(float64(st.Writes)/float64(st.Commits), "appends/commit")
	}
}

// BenchmarkContext: reading a session's context on the call path, beside
// the floor of an empty bbolt read transaction.
func BenchmarkContext(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline=empty-read-tx", func(b *testing.B) {
		s := openTest(b, Options{NoSync: true})
		b.ReportAllocs()
		for b.Loop() {
			s.db.View(func(*bolt.Tx) error { return nil })
		}
	})
	for _, n := range []int{0, 8, 32} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			s := openTest(b, Options{NoSync: true})
			// Other sessions around it, as in a busy pool.
			for i := 0; i < 100; i++ {
				for j := 0; j < n; j++ {
					mustAppend(b, s, "bench", fmt.Sprint("s", i), Exchange{Input: payload, Output: payload}, Limit{}, "", "")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := s.Context(ctx, "bench", "s42")
				if err != nil || len(got) != n {
					b.Fatal(len(got), err)
				}
			}
		})
	}
}
