package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
)

// maxUnsent bounds the calls Send queues before the daemon reads them:
// beyond it Send waits.
const maxUnsent = 1 << 20

// StreamOptions configure a call stream.
type StreamOptions struct {
	// InFlight bounds the stream's calls running at once in the daemon
	// (0: DefaultStreamInFlight). Calls beyond it wait, unread, in the
	// connection and then in Send.
	InFlight int
}

// CallStream is a stream of calls on one pool over a connection of its
// own (POST /v1/pools/{pool}/call/stream): Send queues calls, from any
// number of goroutines, and one goroutine reads their answers with Recv,
// in the order they complete. Calls queued together go out in one write.
//
// Read the answers while sending (Recv on a goroutine of its own): the
// daemon stops reading calls while its answers are not read, and Send then
// waits.
//
// CloseSend says that no call follows; Recv returns io.EOF once every call
// sent has been answered. Close, or the end of the context given to
// [Client.CallStream], ends the stream at once: the daemon cancels the
// calls still running.
type CallStream struct {
	nc      net.Conn
	answers *bufio.Reader // the response body
	ctx     context.Context
	stop    func() bool // of the context's AfterFunc

	mu      sync.Mutex
	unsent  []byte     // lines not yet written
	spare   []byte     // unsent's last buffer, for reuse
	room    *sync.Cond // signaled when unsent was taken
	writing bool       // a Send (or CloseSend) is writing
	ending  bool       // CloseSend was called
	ended   bool       // the body's end was written
	err     error      // why the stream can send no more
	closing sync.Once
}

// CallStream opens a call stream on pool. An unknown pool, or a peer
// refused, is an error here, before any call is sent.
func (c *Client) CallStream(ctx context.Context, pool string, opts StreamOptions) (*CallStream, error) {
	nc, err := c.tr.dial(ctx)
	if err != nil {
		return nil, c.sendError(err)
	}
	s := &CallStream{nc: nc, ctx: ctx}
	s.room = sync.NewCond(&s.mu)
	s.stop = context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	path := "/v1/pools/" + url.PathEscape(pool) + "/call/stream"
	if opts.InFlight > 0 {
		path += "?inflight=" + strconv.Itoa(opts.InFlight)
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: resilienced\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
	if _, err := io.WriteString(nc, head); err != nil {
		return nil, s.openError(err)
	}
	br := bufio.NewReaderSize(nc, 32<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, s.openError(err)
	}
	if resp.StatusCode >= 300 {
		err := statusError(resp)
		s.Close()
		return nil, err
	}
	s.answers = bufio.NewReaderSize(resp.Body, 32<<10)
	return s, nil
}

func (s *CallStream) openError(err error) error {
	s.Close()
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// Send queues one call; its answer carries call.ID, which should be unique
// among the stream's calls in flight. It waits while the daemon is not
// reading (it runs InFlight calls already) and much is queued.
func (s *CallStream) Send(call StreamCall) error {
	if handEncodable(&call) {
		return s.send(func(b []byte) []byte { return appendCallBody(b, &call) })
	}
	line, err := json.Marshal(call)
	if err != nil {
		return err
	}
	return s.send(func(b []byte) []byte { return append(b, line...) })
}

// handEncodable reports whether appendCallBody can write c as
// encoding/json would (but for HTML escaping, which JSON does not need):
// an id, if any, and input that are valid JSON on one line, strings that
// need no escaping.
func handEncodable(c *StreamCall) bool {
	return (c.ID == nil || validID(c.ID) && oneLineJSON(c.ID)) && (len(c.Input) == 0 || oneLineJSON(c.Input)) &&
		plainString(c.Session) && plainString(c.Key) && plainString(c.Timeout)
}

func oneLineJSON(b []byte) bool {
	return bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 && json.Valid(b)
}

// appendCallBody appends c, handEncodable, as one JSON object: a stream's
// line, or without an id a single call's body.
func appendCallBody(b []byte, c *StreamCall) []byte {
	if c.ID != nil {
		b = append(b, `{"id":`...)
		b = append(b, c.ID...)
		b = append(b, `,"input":`...)
	} else {
		b = append(b, `{"input":`...)
	}
	if len(c.Input) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, c.Input...)
	}
	for _, f := range [...]struct{ name, v string }{{"session", c.Session}, {"key", c.Key}, {"timeout", c.Timeout}} {
		if f.v != "" {
			b = append(b, `,"`...)
			b = append(b, f.name...)
			b = append(b, `":"`...)
			b = append(b, f.v...)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

// SendLine queues one line as it is, a JSON object as StreamCall encodes:
// the daemon decodes it, and answers an error naming the line's number if
// it cannot.
func (s *CallStream) SendLine(line []byte) error {
	if bytes.IndexByte(line, '\n') >= 0 {
		return fmt.Errorf("call stream: a line holds a newline")
	}
	return s.send(func(b []byte) []byte { return append(b, line...) })
}

// send queues the line that add appends.
func (s *CallStream) send(add func([]byte) []byte) error {
	s.mu.Lock()
	for len(s.unsent) >= maxUnsent && s.err == nil && !s.ending {
		s.room.Wait()
	}
	switch {
	case s.err != nil:
		err := s.err
		s.mu.Unlock()
		return err
	case s.ending:
		s.mu.Unlock()
		return ErrStreamClosed
	}
	s.unsent = append(add(s.unsent), '\n')
	return s.added()
}

// CloseSend ends the stream's calls: Recv returns io.EOF once all are
// answered.
func (s *CallStream) CloseSend() error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.ending = true
	s.room.Broadcast()
	return s.added()
}

// added is called with s.mu held after a line (or the end) was queued; it
// unlocks. There is no writer goroutine: the sender that finds no one
// writing writes, every line queued until none is left, so that under load
// many calls share a write and at low load none waits for a goroutine to
// wake.
func (s *CallStream) added() error {
	if s.writing {
		s.mu.Unlock()
		return nil
	}
	s.writing = true
	s.mu.Unlock()
	var head [20]byte
	chunk := make(net.Buffers, 0, 3)
	for {
		// Let the senders that are ready (on the run queue) queue their
		// calls first: one write for all.
		runtime.Gosched()
		s.mu.Lock()
		out := s.unsent
		s.unsent, s.spare = s.spare[:0], nil
		s.room.Broadcast()
		end := s.ending && !s.ended && len(out) == 0
		if (len(out) == 0 && !end) || s.err != nil {
			s.writing = false
			err := s.err
			s.mu.Unlock()
			return err
		}
		s.ended = s.ended || end
		s.mu.Unlock()
		var err error
		if end {
			_, err = io.WriteString(s.nc, "0\r\n\r\n") // the end of the body
		} else {
			h := strconv.AppendInt(head[:0], int64(len(out)), 16)
			h = append(h, "\r\n"...)
			chunk = append(chunk[:0], h, out, crlf)
			_, err = chunk.WriteTo(s.nc)
		}
		if err != nil {
			err = fmt.Errorf("call stream: sending: %w", err)
			s.abort(err)
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return err
		}
		s.mu.Lock()
		if cap(out) <= 4*maxUnsent {
			s.spare = out[:0]
		}
		s.mu.Unlock()
	}
}

var crlf = []byte("\r\n")

// Recv returns the next answer, or io.EOF when every call was answered
// after CloseSend. A call's failure is in the answer (see
// [StreamAnswer.Err]); an error from Recv ends the stream. Recv is for one
// goroutine at a time.
func (s *CallStream) Recv() (*StreamAnswer, error) {
	for {
		line, tooLong, err := readLine(s.answers, 2*MaxBodyBytes)
		if err != nil && err != io.EOF || tooLong {
			if tooLong {
				err = fmt.Errorf("call stream: an answer over %d bytes", 2*MaxBodyBytes)
			}
			s.Close()
			if ctxErr := s.ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			s.mu.Lock()
			if s.err != nil && !errors.Is(s.err, ErrStreamClosed) {
				err = s.err // why the stream broke, from the sending side
			}
			s.mu.Unlock()
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			if err == io.EOF {
				s.Close()
				return nil, io.EOF
			}
			continue
		}
		a, ok := decodeAnswerFast(line)
		if ok {
			return &a, nil
		}
		if uerr := json.Unmarshal(line, &a); uerr != nil {
			s.Close()
			return nil, fmt.Errorf("call stream: decoding an answer: %w", uerr)
		}
		if a.Error != nil {
			a.Error.Status = a.Status
		}
		// An answer that ends the body without a newline is still whole;
		// the next Recv sees io.EOF.
		return &a, nil
	}
}

// Close ends the stream at once. Calls in flight are canceled in the
// daemon; their answers are lost.
func (s *CallStream) Close() error {
	s.abort(ErrStreamClosed)
	return nil
}

func (s *CallStream) abort(why error) {
	s.closing.Do(func() {
		s.stop()
		s.mu.Lock()
		if s.err == nil {
			s.err = why
		}
		s.room.Broadcast()
		s.mu.Unlock()
		s.nc.Close()
	})
}
