package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// recvAll reads a stream's answers to its end, by id (the id's JSON text).
func recvAll(t *testing.T, st *CallStream) map[string]*StreamAnswer {
	t.Helper()
	got := map[string]*StreamAnswer{}
	for {
		a, err := st.Recv()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if _, dup := got[string(a.ID)]; dup {
			t.Fatalf("id %s answered twice", a.ID)
		}
		got[string(a.ID)] = a
	}
}

func TestCallStreamRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	ctx := context.Background()
	st, err := f.client.CallStream(ctx, "echo", StreamOptions{InFlight: 16})
	if err != nil {
		t.Fatal(err)
	}
	const senders, each = 8, 50
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Numbers and strings, both valid ids.
				id := json.RawMessage(fmt.Sprint(g*each + i))
				if i%2 == 1 {
					id = json.RawMessage(fmt.Sprintf(`"s-%d"`, g*each+i))
				}
				in, _ := json.Marshal(fmt.Sprintf("q%d", g*each+i))
				if err := st.Send(StreamCall{ID: id, CallRequest: CallRequest{Input: in}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		st.CloseSend()
	}()
	got := recvAll(t, st)
	if len(got) != senders*each {
		t.Fatalf("%d answers, want %d", len(got), senders*each)
	}
	for id, a := range got {
		if a.Error != nil || a.CallResponse == nil {
			t.Fatalf("id %s: %+v", id, a.Error)
		}
		var out struct{ Answer string }
		json.Unmarshal(a.Output, &out)
		n := strings.Trim(id, `"s-`)
		if out.Answer != "q"+n || a.Agent == "" || a.Attempts != 1 {
			t.Fatalf("id %s: answer %s", id, a.Output)
		}
	}
	if err := st.Send(StreamCall{ID: json.RawMessage(`1`)}); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Send after the end: %v", err)
	}
}

// A call answered from the idempotency store overtakes a slower one sent
// before it.
func TestCallStreamAnswersOutOfOrder(t *testing.T) {
	leakcheck.Check(t)
	f := newPoolFixture(t, nil, slowPool("slow", 1, 300*time.Millisecond))
	ctx := context.Background()
	if _, err := f.client.Call(ctx, "slow", CallRequest{Input: json.RawMessage(`"cached"`), Key: "k"}); err != nil {
		t.Fatal(err)
	}
	st, err := f.client.CallStream(ctx, "slow", StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Send(StreamCall{ID: json.RawMessage(`"slow"`), CallRequest: CallRequest{Input: json.RawMessage(`1`)}})
	st.Send(StreamCall{ID: json.RawMessage(`"fast"`), CallRequest: CallRequest{Input: json.RawMessage(`"cached"`), Key: "k"}})
	st.CloseSend()
	var order []string
	for {
		a, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Error != nil {
			t.Fatalf("%s: %v", a.ID, a.Error)
		}
		order = append(order, string(a.ID))
	}
	if want := []string{`"fast"`, `"slow"`}; !reflect.DeepEqual(order, want) {
		t.Fatalf("answers in order %v, want %v", order, want)
	}
}

// A line that is not a call gets an error naming its line (and its id
// when readable); the stream goes on.
func TestCallStreamMalformedLines(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	st, err := f.client.CallStream(context.Background(), "echo", StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		`{"id":1,"input":`,                      // 1: truncated, no id to read
		`{"id":2,"input":1,"bogus":true}`,       // 2: unknown field, id readable
		``,                                      // 3: blank, skipped
		`{"input":1}`,                           // 4: no id
		`{"id":{"a":1},"input":1}`,              // 5: an object is no id
		`{"id":"t","input":1,"timeout":"soon"}`, // 6: bad timeout
		`{"id":7,"input":1} {"id":8}`,           // 7: two values
		`[1,2]`,                                 // 8: not an object
		`{"id":"ok","input":"fine"}`,            // 9: a call
	}
	for _, l := range lines {
		if err := st.SendLine([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	st.CloseSend()
	var errs []*StreamAnswer
	ok := 0
	for {
		a, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Error == nil {
			ok++
			if string(a.ID) != `"ok"` {
				t.Errorf("line with id %s succeeded", a.ID)
			}
			continue
		}
		errs = append(errs, a)
	}
	if ok != 1 {
		t.Fatalf("%d calls succeeded, want 1", ok)
	}
	want := map[int]string{1: "", 2: "2", 4: "", 5: "", 6: `"t"`, 7: "", 8: ""}
	for _, a := range errs {
		id, expected := want[a.Line]
		if !expected {
			t.Errorf("unexpected error on line %d: %v", a.Line, a.Error)
			continue
		}
		delete(want, a.Line)
		if string(a.ID) != id {
			t.Errorf("line %d: id %s, want %q", a.Line, a.ID, id)
		}
		if a.Error.Code != CodeBadRequest || a.Status != 400 || a.Error.Status != 400 || !strings.Contains(a.Error.Message, fmt.Sprintf("line %d:", a.Line)) {
			t.Errorf("line %d: %d %+v", a.Line, a.Status, a.Error)
		}
	}
	for l := range want {
		t.Errorf("no error for line %d", l)
	}
}

func TestCallStreamOversizedLine(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	st, err := f.client.CallStream(context.Background(), "echo", StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	big := `{"id":1,"input":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	if err := st.SendLine([]byte(big)); err != nil {
		t.Fatal(err)
	}
	st.Send(StreamCall{ID: json.RawMessage(`2`), CallRequest: CallRequest{Input: json.RawMessage(`"after"`)}})
	st.CloseSend()
	got := recvAll(t, st)
	tooBig := got[""]
	if tooBig == nil || tooBig.Error == nil || tooBig.Error.Code != CodeTooLarge || tooBig.Line != 1 || tooBig.Status != 413 {
		t.Fatalf("oversized line: %+v", tooBig)
	}
	if a := got["2"]; a == nil || a.Error != nil {
		t.Fatalf("the call after it: %+v", a)
	}
}

// The client going away cancels the stream's calls still running or
// waiting for an agent.
func TestCallStreamClientCancel(t *testing.T) {
	leakcheck.Check(t)
	var mu sync.Mutex
	outcomes := map[string]int{}
	var total atomic.Int32
	onCall := func(pool, outcome string, d time.Duration) {
		mu.Lock()
		outcomes[outcome]++
		mu.Unlock()
		total.Add(1)
	}
	f := newPoolFixture(t, onCall, slowPool("slow", 1, 200*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := f.client.CallStream(ctx, "slow", StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		st.Send(StreamCall{ID: json.RawMessage(fmt.Sprint(i)), CallRequest: CallRequest{Input: json.RawMessage(`1`)}})
	}
	if a, err := st.Recv(); err != nil || a.Error != nil {
		t.Fatalf("first answer: %+v, %v", a, err)
	}
	cancel()
	if _, err := st.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel: %v", err)
	}
	if err := st.Send(StreamCall{ID: json.RawMessage(`99`)}); err == nil {
		t.Fatal("Send after cancel succeeded")
	}
	deadline := time.Now().Add(20 * time.Second)
	for total.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	// One answered, one perhaps finished between the answer and the
	// cancel: the rest were canceled, not run.
	if outcomes[supervisor.OutcomeCanceled] < n-2 {
		t.Fatalf("outcomes %v: the daemon did not cancel the calls", outcomes)
	}
}

func TestCallStreamRefusedBeforeStreaming(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.client.CallStream(ctx, "nope", StreamOptions{})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnknownPool || e.Status != 404 {
		t.Fatalf("unknown pool: %v", err)
	}
	_, err = f.client.CallStream(ctx, "echo", StreamOptions{InFlight: MaxStreamInFlight + 1})
	if !errors.As(err, &e) || e.Code != CodeBadRequest || !strings.Contains(e.Message, "inflight") {
		t.Fatalf("too many in flight: %v", err)
	}
	// The daemon still serves on a new stream.
	st, err := f.client.CallStream(ctx, "echo", StreamOptions{InFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	st.Send(StreamCall{ID: json.RawMessage(`1`), CallRequest: CallRequest{Input: json.RawMessage(`1`)}})
	st.CloseSend()
	if got := recvAll(t, st); got["1"] == nil || got["1"].Error != nil {
		t.Fatalf("answers %v", got)
	}
}

// The hand-written answer decodes as the StreamAnswer encoding/json writes.
func TestStreamAnswerEncoding(t *testing.T) {
	leakcheck.Check(t)
	for _, res := range []*supervisor.CallResult{
		{Output: json.RawMessage(`{"answer":"Paris"}`), Agent: "echo-1", Attempts: 1},
		{Output: json.RawMessage(`{"a":` + "\n" + `1}`), Agent: "echo-3", Attempts: 1, Seq: 3},
		{Output: nil, Cached: true},
		{Output: json.RawMessage(`1`), Agent: "echo-4", Attempts: 2, Violations: []*contract.Violation{contract.NewViolation(contract.CodeSchema, "missing answer")}},
	} {
		for _, id := range []string{`7`, `"x-1"`, `-1.5e3`} {
			aw := &answerWriter{}
			aw.putResult(json.RawMessage(id), res)
			resp := callResponse(res)
			want, _ := json.Marshal(StreamAnswer{ID: json.RawMessage(id), CallResponse: &resp})
			var a, b any
			if err := json.Unmarshal(aw.buf, &a); err != nil {
				t.Fatalf("%q: %v", aw.buf, err)
			}
			json.Unmarshal(want, &b)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("got %s, want %s", aw.buf, want)
			}
		}
	}
}

// The hand-written call line decodes as the one encoding/json writes.
func TestStreamCallEncoding(t *testing.T) {
	leakcheck.Check(t)
	for _, c := range []StreamCall{
		{ID: json.RawMessage(`1`), CallRequest: CallRequest{Input: json.RawMessage(`"q"`)}},
		{ID: json.RawMessage(`"a-1"`), CallRequest: CallRequest{Input: json.RawMessage(`{"x": [1, 2]}`), Session: "s", Key: "k", Timeout: "5s"}},
		{ID: json.RawMessage(`-2.5e3`)},
		{ID: json.RawMessage(`7`), CallRequest: CallRequest{Input: json.RawMessage("{\n\"x\":1}")}},          // not on one line
		{ID: json.RawMessage(`8`), CallRequest: CallRequest{Input: json.RawMessage(`1`), Session: `we"ird`}}, // to escape
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if !handEncodable(&c) {
			if string(c.ID) == "1" || string(c.ID) == `"a-1"` {
				t.Errorf("%s: not hand-encodable", c.ID)
			}
			continue
		}
		got := appendCallBody(nil, &c)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// FuzzStreamLine: any line decodes to a call with a string or number id,
// or to a bad_request naming the line; its answer is one line of JSON.
func FuzzStreamLine(f *testing.F) {
	for _, s := range []string{`{"id":1,"input":1}`, `{"id":"a","input":{"x":[1]},"session":"s","key":"k","timeout":"5s"}`,
		`{"id":1,"input":`, `{"id":{},"input":1}`, `{"id":1,"timeout":"-1s"}`, `[]`, "\x00\xff", `{"id":1} 2`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		call, id, err := decodeStreamCall(line, 3)
		aw := &answerWriter{}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadRequest || !strings.HasPrefix(e.Message, "line 3: ") {
				t.Fatalf("%q: %v", line, err)
			}
			if id != nil && !validID(id) {
				t.Fatalf("%q: id %q", line, id)
			}
			aw.putError(id, 3, err)
		} else {
			if !validID(call.ID) || !json.Valid(call.ID) {
				t.Fatalf("%q: id %q", line, call.ID)
			}
			aw.putResult(call.ID, &supervisor.CallResult{Output: json.RawMessage(`1`), Agent: "a", Attempts: 1})
		}
		out := aw.buf
		if len(out) == 0 || out[len(out)-1] != '\n' || strings.Count(string(out), "\n") != 1 || !json.Valid(out) {
			t.Fatalf("%q: answer %q", line, out)
		}
	})
}

func TestReadLine(t *testing.T) {
	leakcheck.Check(t)
	in := "a\n" + strings.Repeat("b", 100) + "\n" + strings.Repeat("c", 40) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	type res struct {
		line    string
		tooLong bool
		err     error
	}
	var got []res
	for {
		l, long, err := readLine(br, 50)
		got = append(got, res{string(l), long, err})
		if err != nil {
			break
		}
	}
	want := []res{{"a", false, nil}, {"", true, nil}, {strings.Repeat("c", 40), false, nil}, {"last", false, io.EOF}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// slowPool is a pool of echo agents that answer after latency.
func slowPool(name string, replicas int, latency time.Duration) config.Pool {
	pc := config.DefaultPool()
	pc.Name = name
	pc.Command = []string{"FLAKY", "-seed", "1", "-latency", latency.String()}
	pc.Replicas, pc.Spares = replicas, 0
	pc.StallTimeout = 10 * time.Second
	return pc
}

// A single call's body, without an id, is written by hand as encoding/json
// writes it.
func TestCallBodyEncoding(t *testing.T) {
	leakcheck.Check(t)
	for _, req := range []CallRequest{
		{Input: json.RawMessage(`"q"`)},
		{Input: json.RawMessage(`{"x": [1, 2]}`), Session: "s", Key: "k", Timeout: "5s"},
		{},
	} {
		c := StreamCall{CallRequest: req}
		if !handEncodable(&c) {
			t.Fatalf("%+v: not hand-encodable", req)
		}
		want, _ := json.Marshal(req)
		var a, b any
		if err := json.Unmarshal(appendCallBody(nil, &c), &a); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("got %s, want %s", appendCallBody(nil, &c), want)
		}
	}
}
