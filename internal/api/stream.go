package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// Call stream limits.
const (
	// DefaultStreamInFlight bounds the calls of one stream running at once
	// when the request does not say (?inflight=N).
	DefaultStreamInFlight = 64
	// MaxStreamInFlight is the most ?inflight= may ask.
	MaxStreamInFlight = 4096
)

// callStream serves POST /v1/pools/{pool}/call/stream: NDJSON calls in,
// NDJSON answers out as the calls complete, over one full-duplex HTTP/1.1
// exchange. The handler's goroutine reads and decodes lines and hands each
// call to a worker, at most inflight at once: beyond that it reads no
// further, and the client's writes block (backpressure). The answers are
// written as answerWriter says.
func (s *Server) callStream(w http.ResponseWriter, r *http.Request) {
	// The body is read line by line to its end, much later; an error
	// answered now ends the exchange and the connection.
	fail := func(err error) {
		w.Header().Set("Connection", "close")
		WriteError(w, err)
	}
	body := r.Body
	if lb, ok := body.(*limitedBody); ok {
		body = lb.raw // the limit is per line, not for the whole stream
	}
	inflight := DefaultStreamInFlight
	if v := r.URL.Query().Get("inflight"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxStreamInFlight {
			fail(&Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("inflight: %q is not a number from 1 to %d", v, MaxStreamInFlight)})
			return
		}
		inflight = n
	}
	pool := r.PathValue("pool")
	if _, err := s.opts.Supervisor.Pool(pool); err != nil {
		fail(err)
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		fail(fmt.Errorf("call stream: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil { // the client learns that the stream is open
		return
	}

	// Ends with the client's connection, or a failed write: calls still
	// running are canceled.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	aw := &answerWriter{w: w, rc: rc, failed: cancel}

	sem := make(chan struct{}, inflight)
	var calls sync.WaitGroup
	// Calls run on workers that outlive them, at most inflight: a new
	// goroutine per call would grow its stack through the supervisor's
	// call path every time (some 10 % of the CPU time per call).
	jobs := make(chan streamJob)
	defer close(jobs)
	workers := 0
	run := func(j streamJob) {
		select {
		case jobs <- j:
			return // an idle worker took it
		default:
		}
		if workers < inflight {
			workers++
			go func() {
				for ok := true; ok; j, ok = <-jobs {
					s.streamCall(ctx, aw, pool, j.call, j.line)
					<-sem
					calls.Done()
				}
			}()
			return
		}
		jobs <- j // every worker is busy, one is about to finish
	}
	br := bufio.NewReaderSize(body, 32<<10)
	for n := 1; ; n++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		line, tooLong, rerr := readLine(br, MaxBodyBytes)
		if rerr != nil && rerr != io.EOF {
			cancel() // the client is gone: its calls' answers have nowhere to go
			<-sem
			break
		}
		switch {
		case tooLong:
			aw.putError(nil, n, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("line %d: over %d bytes", n, MaxBodyBytes)})
			<-sem
		case len(bytes.TrimSpace(line)) == 0:
			<-sem
		default:
			call, id, derr := decodeStreamCall(line, n)
			if derr != nil {
				aw.putError(id, n, derr)
				<-sem
				break
			}
			calls.Add(1)
			run(streamJob{call, n})
		}
		if rerr != nil {
			break // io.EOF: the end of the client's calls
		}
	}
	calls.Wait() // and so every answer was written
}

// streamJob is a call of a stream for a worker.
type streamJob struct {
	call StreamCall
	line int
}

// streamCall runs one call of a stream and queues its answer.
func (s *Server) streamCall(ctx context.Context, aw *answerWriter, pool string, call StreamCall, line int) {
	timeout, _ := callTimeout(call.Timeout) // checked by decodeStreamCall
	ctx, cancel := context.WithTimeout(ctx, timeout)
	res, err := s.caller().Call(ctx, pool, supervisor.CallRequest{Input: call.Input, Session: call.Session, IdempotencyKey: call.Key})
	cancel()
	if err != nil {
		aw.putError(call.ID, line, err)
		return
	}
	aw.putResult(call.ID, res)
}

// decodeStreamCall decodes one line of a call stream, as strictly as the
// body of a single call. On an error it returns the line's id when that
// could be read.
func decodeStreamCall(line []byte, n int) (StreamCall, json.RawMessage, error) {
	if call, ok := decodeCallFast(line, true); ok && validID(call.ID) {
		if _, err := callTimeout(call.Timeout); err == nil {
			return call, call.ID, nil
		}
	}
	var call StreamCall
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	bad := func(msg string) error {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("line %d: %s", n, msg)}
	}
	if err := dec.Decode(&call); err != nil {
		// Another try, for the id alone, so that the caller can tell which
		// call this was.
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		var id json.RawMessage
		if json.Unmarshal(line, &idOnly) == nil && validID(idOnly.ID) {
			id = idOnly.ID
		}
		return call, id, bad(jsonErrorText(err))
	}
	if dec.More() {
		return call, nil, bad("more than one JSON value")
	}
	if !validID(call.ID) {
		if len(call.ID) == 0 {
			return call, nil, bad(`no "id": each call needs one, a string or a number, which its answer carries`)
		}
		return call, nil, bad(fmt.Sprintf("id: %.40s is neither a string nor a number", call.ID))
	}
	if _, err := callTimeout(call.Timeout); err != nil {
		return call, call.ID, bad(err.Error())
	}
	return call, call.ID, nil
}

// validID reports whether id is a JSON string or number (it is valid JSON,
// as decoded by encoding/json).
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	c := id[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
}

// readLine reads one line, without its newline, of at most max bytes. A
// longer line is read to its end and dropped (tooLong). The slice is valid
// until the next read. At the end of the input it returns the last bytes,
// if any, with the reader's error.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	line, err = br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], false, nil
	}
	if err != bufio.ErrBufferFull {
		return line, false, err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		if len(long)+len(line) > max+1 { // +1: the newline
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			return nil, true, err
		}
		long = append(long, line...)
		switch err {
		case nil:
			return long[:len(long)-1], false, nil
		case bufio.ErrBufferFull:
		default:
			return long, false, err
		}
	}
}

// answerWriter writes a stream's answers. There is no writer goroutine:
// the goroutine that adds an answer while no one writes becomes the writer,
// and writes every answer ready (those added meanwhile too) before the
// flush, so that under load many answers share a write and at low load
// none waits for a goroutine to wake.
type answerWriter struct {
	w      io.Writer
	rc     *http.ResponseController
	failed func() // called once when a write fails

	mu      sync.Mutex
	buf     []byte // answers not yet written
	spare   []byte
	writing bool
	err     error
}

func (aw *answerWriter) putResult(id json.RawMessage, res *supervisor.CallResult) {
	if !handWritable(res) {
		resp := callResponse(res)
		aw.putJSON(StreamAnswer{ID: id, CallResponse: &resp})
		return
	}
	aw.mu.Lock()
	aw.buf = append(aw.buf, `{"id":`...)
	aw.buf = append(aw.buf, id...)
	aw.buf = append(aw.buf, ',')
	aw.buf = appendCallFields(aw.buf, res)
	aw.buf = append(aw.buf, "}\n"...)
	aw.added()
}

func (aw *answerWriter) putError(id json.RawMessage, line int, err error) {
	e := classify(err)
	aw.putJSON(StreamAnswer{ID: id, Status: e.Status, Line: line, Error: e})
}

func (aw *answerWriter) putJSON(a StreamAnswer) {
	b, err := json.Marshal(a)
	if err != nil {
		e := classify(err)
		b, _ = json.Marshal(StreamAnswer{ID: a.ID, Status: e.Status, Line: a.Line, Error: e})
	}
	aw.mu.Lock()
	aw.buf = append(aw.buf, b...)
	aw.buf = append(aw.buf, '\n')
	aw.added()
}

// added is called with aw.mu held, after an answer was added; it unlocks.
func (aw *answerWriter) added() {
	if aw.writing || aw.w == nil {
		aw.mu.Unlock()
		return
	}
	aw.writing = true
	aw.mu.Unlock()
	aw.write()
}

// write writes answers until none is left, then flushes.
func (aw *answerWriter) write() {
	for {
		// Let the calls whose answers are ready (on the run queue) add
		// them first: one write for all.
		runtime.Gosched()
		aw.mu.Lock()
		out := aw.buf
		aw.buf, aw.spare = aw.spare[:0], nil
		if len(out) == 0 {
			aw.writing = false
			aw.mu.Unlock()
			return
		}
		aw.mu.Unlock()
		_, err := aw.w.Write(out)
		if err == nil {
			// Flushed unless more came meanwhile: then at the next turn.
			aw.mu.Lock()
			more := len(aw.buf) > 0
			aw.mu.Unlock()
			if !more {
				err = aw.rc.Flush()
			}
		}
		aw.mu.Lock()
		if cap(out) <= 1<<20 { // one huge answer: do not keep its buffer
			aw.spare = out[:0]
		}
		if err != nil {
			aw.w = nil // no more writes; answers are dropped
			aw.buf = nil
			aw.writing = false
			aw.mu.Unlock()
			aw.failed()
			return
		}
		aw.mu.Unlock()
	}
}
