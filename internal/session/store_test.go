package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "state.db")
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func exchange(in, out string) Exchange {
	return Exchange{Input: json.RawMessage(in), Output: json.RawMessage(out)}
}

func mustAppend(t testing.TB, s *Store, pool, sess string, ex Exchange, lim Limit, key string, result string) Exchange {
	t.Helper()
	var res json.RawMessage
	if result != "" {
		res = json.RawMessage(result)
	}
	got, err := s.Append(context.Background(), pool, sess, ex, lim, key, res)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustContext(t testing.TB, s *Store, pool, sess string) []Exchange {
	t.Helper()
	ctx, err := s.Context(context.Background(), pool, sess)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func seqs(exs []Exchange) []uint64 {
	out := make([]uint64, len(exs))
	for i, ex := range exs {
		out[i] = ex.Seq
	}
	return out
}

func equalSeqs(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAppendContextOrder(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, Options{Now: clock.Now})
	ctx := context.Background()

	got := mustContext(t, s, "p", "new")
	if got == nil || len(got) != 0 {
		t.Fatalf("context of a new session = %#v, want empty and not nil", got)
	}

	for i := 1; i <= 5; i++ {
		ex := exchange(fmt.Sprintf(`{"n":%d}`, i), fmt.Sprintf(`{"r":%d}`, i))
		ex.Agent = fmt.Sprintf("p-%d", i%2)
		clock.Advance(time.Second)
		stored := mustAppend(t, s, "p", "s1", ex, Limit{}, "", "")
		if stored.Seq != uint64(i) || !stored.Time.Equal(clock.Now()) {
			t.Fatalf("append %d stored seq %d time %v", i, stored.Seq, stored.Time)
		}
	}
	mustAppend(t, s, "p", "s2", exchange(`"other"`, `"x"`), Limit{}, "", "")
	mustAppend(t, s, "q", "s1", exchange(`"other pool"`, `"x"`), Limit{}, "", "")

	got = mustContext(t, s, "p", "s1")
	if !equalSeqs(seqs(got), 1, 2, 3, 4, 5) {
		t.Fatalf("seqs = %v", seqs(got))
	}
	start := newFakeClock().Now()
	for i, ex := range got {
		n := i + 1
		if string(ex.Input) != fmt.Sprintf(`{"n":%d}`, n) || string(ex.Output) != fmt.Sprintf(`{"r":%d}`, n) {
			t.Errorf("exchange %d = %s → %s", n, ex.Input, ex.Output)
		}
		if ex.Agent != fmt.Sprintf("p-%d", n%2) {
			t.Errorf("exchange %d agent %q", n, ex.Agent)
		}
		if !ex.Time.Equal(start.Add(time.Duration(n) * time.Second)) {
			t.Errorf("exchange %d time %v", n, ex.Time)
		}
	}
	// An explicit time is kept.
	at := time.Date(2020, 5, 6, 7, 8, 9, 10, time.UTC)
	ex := exchange(`1`, `2`)
	ex.Time = at
	mustAppend(t, s, "p", "s3", ex, Limit{}, "", "")
	if got := mustContext(t, s, "p", "s3"); !got[0].Time.Equal(at) {
		t.Errorf("explicit time %v stored as %v", at, got[0].Time)
	}

	if got := mustContext(t, s, "p", "s2"); len(got) != 1 || string(got[0].Input) != `"other"` {
		t.Errorf("session s2 = %v", got)
	}
	if got := mustContext(t, s, "q", "s1"); len(got) != 1 || string(got[0].Input) != `"other pool"` {
		t.Errorf("pool q session s1 = %v", got)
	}

	infos, err := s.Sessions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, fmt.Sprintf("%s/%s:%d:%d", in.Pool, in.ID, in.Entries, in.Bytes))
	}
	want := "p/s1:5:70 p/s2:1:10 p/s3:1:2 q/s1:1:15"
	if strings.Join(names, " ") != want {
		t.Errorf("sessions = %v, want %v", names, want)
	}
	infos, err = s.Sessions(ctx, "q")
	if err != nil || len(infos) != 1 || infos[0].ID != "s1" {
		t.Errorf("sessions of q = %v, %v", infos, err)
	}
}

func TestLimitTrimsOldestByEntries(t *testing.T) {
	s := openTest(t, Options{})
	lim := Limit{Entries: 3}
	for i := 0; i < 5; i++ {
		mustAppend(t, s, "p", "s", exchange(fmt.Sprint(i), `0`), lim, "", "")
	}
	got := mustContext(t, s, "p", "s")
	if !equalSeqs(seqs(got), 3, 4, 5) {
		t.Fatalf("seqs = %v, want 3 4 5", seqs(got))
	}
	if string(got[0].Input) != "2" {
		t.Errorf("oldest kept input = %s", got[0].Input)
	}
	// A larger limit later does not bring trimmed entries back.
	mustAppend(t, s, "p", "s", exchange(`5`, `0`), Limit{Entries: 10}, "", "")
	if got := mustContext(t, s, "p", "s"); !equalSeqs(seqs(got), 3, 4, 5, 6) {
		t.Fatalf("seqs = %v, want 3 4 5 6", seqs(got))
	}
}

func TestLimitTrimsOldestByBytes(t *testing.T) {
	s := openTest(t, Options{})
	lim := Limit{Bytes: 25}
	// Each exchange counts len(input)+len(output) = 10 bytes.
	for i := 0; i < 4; i++ {
		mustAppend(t, s, "p", "s", exchange(fmt.Sprintf(`"%03d"`, i), `"ok!"`), lim, "", "")
	}
	got := mustContext(t, s, "p", "s")
	if !equalSeqs(seqs(got), 3, 4) {
		t.Fatalf("seqs = %v, want 3 4", seqs(got))
	}
	infos, _ := s.Sessions(context.Background(), "p")
	if len(infos) != 1 || infos[0].Bytes != 20 || infos[0].Entries != 2 {
		t.Fatalf("session info = %+v", infos)
	}

	// One 30-byte exchange alone exceeds the limit: acknowledged, with
	// its result, but the window is left empty.
	big := exchange(`"`+strings.Repeat("x", 23)+`"`, `"ok"`)
	stored := mustAppend(t, s, "p", "s", big, lim, "k-big", `"r"`)
	if stored.Seq != 5 {
		t.Fatalf("big exchange seq %d", stored.Seq)
	}
	if got := mustContext(t, s, "p", "s"); len(got) != 0 {
		t.Fatalf("context after an oversized exchange = %v", seqs(got))
	}
	if r, ok, err := s.Result(context.Background(), "p", "k-big", nil); err != nil || !ok || string(r) != `"r"` {
		t.Fatalf("result of oversized exchange = %s %v %v", r, ok, err)
	}
	mustAppend(t, s, "p", "s", exchange(`"000"`, `"ok!"`), lim, "", "")
	if got := mustContext(t, s, "p", "s"); !equalSeqs(seqs(got), 6) {
		t.Fatalf("seqs = %v, want 6", seqs(got))
	}

	// Both limits at once: the tighter one wins.
	for i := 0; i < 5; i++ {
		mustAppend(t, s, "p", "both", exchange(`"12345"`, `"ab"`), Limit{Entries: 3, Bytes: 100}, "", "")
	}
	if got := mustContext(t, s, "p", "both"); !equalSeqs(seqs(got), 3, 4, 5) {
		t.Fatalf("seqs = %v, want 3 4 5", seqs(got))
	}
}

func TestIdempotentAppend(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	first := mustAppend(t, s, "p", "s", exchange(`"q"`, `"a1"`), Limit{}, "key-1", `{"answer":1}`)

	again, err := s.Append(ctx, "p", "s", exchange(`"q"`, `"a2"`), Limit{}, "key-1", json.RawMessage(`{"answer":2}`))
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second append with the same key: err = %v, want ErrDuplicate", err)
	}
	if again.Seq != first.Seq || string(again.Output) != `"a1"` || !again.Time.Equal(first.Time) {
		t.Fatalf("duplicate returned %+v, want the first exchange %+v", again, first)
	}
	if got := mustContext(t, s, "p", "s"); len(got) != 1 {
		t.Fatalf("context has %d exchanges, want 1", len(got))
	}
	r, ok, err := s.Result(ctx, "p", "key-1", nil)
	if err != nil || !ok || string(r) != `{"answer":1}` {
		t.Fatalf("Result = %s %v %v", r, ok, err)
	}
	// A key is per pool.
	if _, ok, _ := s.Result(ctx, "other", "key-1", nil); ok {
		t.Fatal("key found in another pool")
	}
	mustAppend(t, s, "other", "s", exchange(`"q"`, `"a"`), Limit{}, "key-1", `1`)

	// The same key on another session of the pool is another request.
	if _, err := s.Append(ctx, "p", "s-other", exchange(`"q"`, `"a"`), Limit{}, "key-1", nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("key reused on another session: err = %v, want ErrConflict", err)
	}
	// So is the same key with another input on the same session.
	if _, err := s.Append(ctx, "p", "s", exchange(`"other q"`, `"a"`), Limit{}, "key-1", nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("key reused with another input: err = %v, want ErrConflict", err)
	}
	// White space does not make another request.
	if _, err := s.Append(ctx, "p", "s", exchange(` "q" `, `"a"`), Limit{}, "key-1", nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("key reused with the same input, spaced: err = %v, want ErrDuplicate", err)
	}
	if _, _, err := s.Result(ctx, "p", "key-1", RequestDigest("s", json.RawMessage(`"other q"`))); !errors.Is(err, ErrConflict) {
		t.Fatalf("Result for another request: err = %v, want ErrConflict", err)
	}
	if r, ok, err := s.Result(ctx, "p", "key-1", RequestDigest("s", json.RawMessage(`"q"`))); err != nil || !ok || string(r) != `{"answer":1}` {
		t.Fatalf("Result for the same request = %s %v %v", r, ok, err)
	}
	if got := mustContext(t, s, "p", "s-other"); len(got) != 0 {
		t.Fatalf("duplicate appended to another session: %v", got)
	}
}

func TestIdempotentResult(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	if _, ok, err := s.Result(ctx, "p", "k", nil); ok || err != nil {
		t.Fatalf("missing result: ok %v err %v", ok, err)
	}
	if err := s.PutResult(ctx, "p", "k", nil, json.RawMessage(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutResult(ctx, "p", "k", nil, json.RawMessage(`{"v":2}`)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second PutResult: err = %v, want ErrDuplicate", err)
	}
	r, ok, err := s.Result(ctx, "p", "k", nil)
	if err != nil || !ok || string(r) != `{"v":1}` {
		t.Fatalf("Result = %s %v %v", r, ok, err)
	}
	// An Append with a key that a sessionless call completed is a
	// duplicate with no exchange.
	ex, err := s.Append(ctx, "p", "s", exchange(`1`, `2`), Limit{}, "k", nil)
	if !errors.Is(err, ErrDuplicate) || ex.Seq != 0 {
		t.Fatalf("append with a sessionless key: %+v, %v", ex, err)
	}

	// A key bound to its request.
	d1 := RequestDigest("", json.RawMessage(`{"x": 1}`))
	if err := s.PutResult(ctx, "p", "bound", d1, json.RawMessage(`"one"`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutResult(ctx, "p", "bound", RequestDigest("", json.RawMessage(`{"x":2}`)), json.RawMessage(`"two"`)); !errors.Is(err, ErrConflict) {
		t.Fatalf("PutResult for another request: err = %v, want ErrConflict", err)
	}
	if err := s.PutResult(ctx, "p", "bound", RequestDigest("", json.RawMessage(`{"x":1}`)), json.RawMessage(`"again"`)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("PutResult for the same request: err = %v, want ErrDuplicate", err)
	}
	if _, _, err := s.Result(ctx, "p", "bound", RequestDigest("", json.RawMessage(`{"x":2}`))); !errors.Is(err, ErrConflict) {
		t.Fatalf("Result for another request: err = %v, want ErrConflict", err)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		mustAppend(t, s, "p", "s", exchange(fmt.Sprint(i), fmt.Sprint(i*10)), Limit{Entries: 2}, fmt.Sprint("k", i), fmt.Sprint(i*100))
	}
	if err := s.PutResult(ctx, "p", "solo", nil, json.RawMessage(`"r"`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("arbiter", "model", []byte("weights")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openTest(t, Options{Path: path})
	got := mustContext(t, s, "p", "s")
	if !equalSeqs(seqs(got), 2, 3) || string(got[1].Output) != "20" {
		t.Fatalf("context after reopen = %+v", got)
	}
	for i := 0; i < 3; i++ {
		r, ok, err := s.Result(ctx, "p", fmt.Sprint("k", i), nil)
		if err != nil || !ok || string(r) != fmt.Sprint(i*100) {
			t.Errorf("result k%d after reopen = %s %v %v", i, r, ok, err)
		}
	}
	if r, ok, _ := s.Result(ctx, "p", "solo", nil); !ok || string(r) != `"r"` {
		t.Errorf("sessionless result after reopen = %s %v", r, ok)
	}
	if v, err := s.Get("arbiter", "model"); err != nil || string(v) != "weights" {
		t.Errorf("kv after reopen = %q %v", v, err)
	}
	// Sequence numbers continue.
	if ex := mustAppend(t, s, "p", "s", exchange(`3`, `30`), Limit{Entries: 2}, "", ""); ex.Seq != 4 {
		t.Errorf("seq after reopen = %d, want 4", ex.Seq)
	}
}

func TestTTLExpiry(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, Options{Now: clock.Now, ResultTTL: time.Hour})
	ctx := context.Background()
	lim := Limit{TTL: time.Minute}

	mustAppend(t, s, "p", "idle", exchange(`1`, `1`), lim, "k-idle", `"r1"`)
	mustAppend(t, s, "p", "busy", exchange(`1`, `1`), lim, "", "")
	mustAppend(t, s, "p", "forever", exchange(`1`, `1`), Limit{}, "k-forever", `"r2"`)
	if err := s.PutResult(ctx, "p", "solo", nil, json.RawMessage(`"r3"`)); err != nil {
		t.Fatal(err)
	}

	clock.Advance(40 * time.Second)
	mustAppend(t, s, "p", "busy", exchange(`2`, `2`), lim, "", "") // refreshes busy
	if n, err := s.Expire(ctx); err != nil || n != 0 {
		t.Fatalf("Expire before any TTL = %d, %v", n, err)
	}

	clock.Advance(30 * time.Second) // idle: 70s idle; busy: 30s
	if got := mustContext(t, s, "p", "idle"); len(got) != 0 {
		t.Fatalf("expired session still has context %v", seqs(got))
	}
	if _, ok, _ := s.Result(ctx, "p", "k-idle", nil); ok {
		t.Fatal("result past its TTL still visible")
	}
	if got := mustContext(t, s, "p", "busy"); len(got) != 2 {
		t.Fatalf("refreshed session lost context: %v", seqs(got))
	}
	infos, _ := s.Sessions(ctx, "p")
	if len(infos) != 2 || infos[0].ID != "busy" || infos[1].ID != "forever" {
		t.Fatalf("sessions = %+v", infos)
	}

	// Expire removes the idle session and its result (2 records).
	n, err := s.Expire(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	if n, _ := s.Expire(ctx); n != 0 {
		t.Fatalf("second Expire = %d", n)
	}
	assertNoSessionRecord(t, s, "p", "idle")

	// Appending to an expired session that Expire has not removed yet
	// starts a fresh context; Seq keeps counting.
	clock.Advance(2 * time.Minute)
	if got := mustContext(t, s, "p", "busy"); len(got) != 0 {
		t.Fatalf("busy not expired: %v", seqs(got))
	}
	ex := mustAppend(t, s, "p", "busy", exchange(`3`, `3`), lim, "", "")
	if got := mustContext(t, s, "p", "busy"); !equalSeqs(seqs(got), 3) || ex.Seq != 3 {
		t.Fatalf("revived session = %v (appended seq %d), want [3]", seqs(got), ex.Seq)
	}
	if n, _ := s.Expire(ctx); n != 0 {
		t.Fatalf("Expire removed %d records of a revived session", n)
	}

	// Results without a session TTL use ResultTTL.
	clock.Advance(time.Hour)
	if _, ok, _ := s.Result(ctx, "p", "solo", nil); ok {
		t.Fatal("sessionless result outlived ResultTTL")
	}
	n, err = s.Expire(ctx)
	if err != nil || n != 3 { // solo, k-forever, busy
		t.Fatalf("Expire after ResultTTL = %d, %v; want 3", n, err)
	}
	if got := mustContext(t, s, "p", "forever"); len(got) != 1 {
		t.Fatalf("session without TTL expired: %v", got)
	}
	// An expired key can be used again.
	if err := s.PutResult(ctx, "p", "solo", nil, json.RawMessage(`"again"`)); err != nil {
		t.Fatalf("PutResult on an expired key: %v", err)
	}
}

func assertNoSessionRecord(t *testing.T, s *Store, pool, sess string) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketSessions).Bucket([]byte(pool))
		if pb.Bucket(bucketMeta).Get([]byte(sess)) != nil {
			return errors.New("meta still stored")
		}
		if k, _ := pb.Bucket(bucketCtx).Cursor().Seek(ctxPrefix(sess)); k != nil && bytes.HasPrefix(k, ctxPrefix(sess)) {
			return errors.New("exchanges still stored")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("session %s/%s: %v", pool, sess, err)
	}
}

func TestDelete(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	mustAppend(t, s, "p", "s", exchange(`1`, `1`), Limit{TTL: time.Hour}, "k", `"r"`)
	if err := s.Delete(ctx, "p", "s"); err != nil {
		t.Fatal(err)
	}
	if got := mustContext(t, s, "p", "s"); len(got) != 0 {
		t.Fatalf("context after delete: %v", got)
	}
	assertNoSessionRecord(t, s, "p", "s")
	if err := s.Delete(ctx, "p", "s"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, ok, _ := s.Result(ctx, "p", "k", nil); !ok {
		t.Fatal("result of a deleted session's call is gone")
	}
	// A new session under the same id starts from seq 1.
	if ex := mustAppend(t, s, "p", "s", exchange(`1`, `1`), Limit{}, "", ""); ex.Seq != 1 {
		t.Fatalf("seq after delete = %d", ex.Seq)
	}
}

// TestConcurrentAppends: many writers on many sessions through every
// write path; every exchange lands exactly once, in per-writer order.
func TestConcurrentAppends(t *testing.T) {
	for _, mode := range []struct {
		name      string
		mode      commitMode
		delay     time.Duration
		perWriter int
	}{
		{"group", commitGroup, 0, 20},
		{"group-no-delay", commitGroup, -1, 20},
		{"solo", commitSolo, 0, 3}, // one fsync per append: keep it short
		{"bolt-batch", commitBoltBatch, time.Millisecond, 10},
	} {
		t.Run(mode.name, func(t *testing.T) {
			const writers, sessions = 64, 16
			perWriter := mode.perWriter
			s := openTest(t, Options{commitMode: mode.mode, MaxBatchDelay: mode.delay})
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sess := fmt.Sprint("s", w%sessions)
					for i := 0; i < perWriter; i++ {
						key := fmt.Sprintf("w%d-%d", w, i)
						in := json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
						if _, err := s.Append(ctx, "p", sess, Exchange{Input: in, Output: in}, Limit{}, key, in); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			total := 0
			for i := 0; i < sessions; i++ {
				got := mustContext(t, s, "p", fmt.Sprint("s", i))
				total += len(got)
				seen := map[string]bool{}
				last := map[int]int{}
				for j, ex := range got {
					if ex.Seq != uint64(j+1) {
						t.Fatalf("session s%d: exchange %d has seq %d", i, j, ex.Seq)
					}
					if seen[string(ex.Input)] {
						t.Fatalf("session s%d: %s appended twice", i, ex.Input)
					}
					seen[string(ex.Input)] = true
					var v struct{ W, I int }
					if err := json.Unmarshal(ex.Input, &v); err != nil {
						t.Fatal(err)
					}
					if prev, ok := last[v.W]; ok && v.I <= prev {
						t.Fatalf("session s%d: writer %d's %d after its %d", i, v.W, v.I, prev)
					}
					last[v.W] = v.I
				}
			}
			if total != writers*perWriter {
				t.Fatalf("%d exchanges stored, want %d", total, writers*perWriter)
			}
			st := s.Stats()
			t.Logf("%d writes in %d commits", st.Writes, st.Commits)
		})
	}
}

// TestBatchIsolatesFailure: a write that fails inside a batch fails alone;
// the others in its transaction are committed.
func TestBatchIsolatesFailure(t *testing.T) {
	s := openTest(t, Options{})
	boom := errors.New("boom")
	mk := func(key string, fail bool) *op {
		return &op{done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
			b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte("t"))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(key), []byte("v")); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		}}
	}
	ops := []*op{mk("a", false), mk("b", true), mk("c", false), {done: make(chan error, 1)}, mk("d", true)}
	s.c.run(slices.Clone(ops)) // run reorders its argument
	for i, want := range []error{nil, boom, nil, nil, boom} {
		if err := <-ops[i].done; !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("op %d: err %v, want %v", i, err, want)
		}
	}
	for key, want := range map[string]bool{"a": true, "b": false, "c": true, "d": false} {
		_, err := s.Get("t", key)
		if got := err == nil; got != want {
			t.Errorf("key %s stored = %v, want %v (%v)", key, got, want, err)
		}
	}
}

func TestCanceledWriteIsNotApplied(t *testing.T) {
	s := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "p", "s", exchange(`1`, `1`), Limit{}, "k", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a canceled context: %v", err)
	}
	if got := mustContext(t, s, "p", "s"); len(got) != 0 {
		t.Fatalf("canceled append was applied: %v", got)
	}
	// A queued op canceled before the committer takes it is skipped.
	o := &op{done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKV).Put([]byte("x"), []byte("y"))
	}}
	o.state.Store(opCanceled)
	s.c.run([]*op{o})
	select {
	case err := <-o.done:
		t.Fatalf("canceled op ran: %v", err)
	default:
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, Options{Path: path})
	_, err := Open(context.Background(), Options{Path: path, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("state file %s is locked by another process (is resilienced already running?)", path)
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	s.Close()
	s2, err := Open(context.Background(), Options{Path: path, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestClosed(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	mustAppend(t, s, "p", "s", exchange(`1`, `1`), Limit{}, "", "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["Append"] = s.Append(ctx, "p", "s", exchange(`1`, `1`), Limit{}, "", nil)
	_, checks["Context"] = s.Context(ctx, "p", "s")
	_, _, checks["Result"] = s.Result(ctx, "p", "k", nil)
	checks["PutResult"] = s.PutResult(ctx, "p", "k", nil, nil)
	_, checks["Sessions"] = s.Sessions(ctx, "")
	checks["Delete"] = s.Delete(ctx, "p", "s")
	_, checks["Expire"] = s.Expire(ctx)
	_, checks["Get"] = s.Get("b", "k")
	checks["Put"] = s.Put("b", "k", []byte("v"))
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestInvalidNames(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	long := strings.Repeat("x", maxNameLen+1)
	checks := map[string]error{}
	_, checks["empty pool"] = s.Append(ctx, "", "s", exchange(`1`, `1`), Limit{}, "", nil)
	_, checks["empty session"] = s.Context(ctx, "p", "")
	_, checks["long key"] = s.Append(ctx, "p", "s", exchange(`1`, `1`), Limit{}, long, nil)
	checks["empty result key"] = s.PutResult(ctx, "p", "", nil, nil)
	_, checks["empty bucket"] = s.Get("", "k")
	for name, err := range checks {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Open(ctx, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open without a path: %v", err)
	}
}

func TestOpenFreesAnOldEventJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, Options{Path: path})
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(oldBucketEvents)
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte(`{"kind":"kill"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openTest(t, Options{Path: path})
	err = s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(oldBucketEvents) != nil {
			t.Error("the old event journal is still in the file")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKV(t *testing.T) {
	s := openTest(t, Options{})
	if _, err := s.Get("arbiter", "model"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	val := []byte("v1")
	if err := s.Put("arbiter", "model", val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store keeps its own copy
	if v, err := s.Get("arbiter", "model"); err != nil || string(v) != "v1" {
		t.Fatalf("Get = %q %v", v, err)
	}
	if err := s.Put("arbiter", "empty", []byte{}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("arbiter", "empty"); err != nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, err)
	}
	if err := s.Put("arbiter", "model", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("arbiter", "model"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}

func TestIncompatibleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketState)
		if err != nil {
			return err
		}
		return b.Put(keyVersion, []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{Path: path}); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open of a future file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// Result records written before keys were bound to their request (v1, no
// digest) still decode, and match any request.
func TestResultRecordV1StillDecodes(t *testing.T) {
	b := []byte{recordV1}
	b = binary.BigEndian.AppendUint64(b, 1)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = appendBytes(b, []byte("sess"))
	b = binary.BigEndian.AppendUint64(b, 7)
	b = append(b, `{"a":1}`...)
	r, err := decodeResult(b)
	if err != nil || r.Session != "sess" || r.Seq != 7 || string(r.Result) != `{"a":1}` || r.Digest != nil {
		t.Fatalf("v1 record = %+v, %v", r, err)
	}
	if conflict(r, RequestDigest("x", json.RawMessage(`1`))) {
		t.Error("a v1 record conflicts with a request: keys stored before the upgrade would be refused")
	}
	r2, err := decodeResult(resultRecord{Session: "s", Seq: 1, Digest: []byte{1, 2}, Result: []byte(`2`)}.encode())
	if err != nil || string(r2.Digest) != "\x01\x02" || string(r2.Result) != `2` {
		t.Fatalf("v2 round trip = %+v, %v", r2, err)
	}
}
