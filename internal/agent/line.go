package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// lineReader reads newline-terminated lines without ever holding more than
// max bytes of one line: an agent that writes a giant line (or no newline
// at all) costs the daemon at most max bytes before the line is refused.
type lineReader struct {
	r   *bufio.Reader
	max int64
	buf []byte
}

// lineReaderSize is the read buffer of an agent's stdout. Most replies fit
// in it; a longer one is gathered in buf. It is small because every agent
// holds one while idle: at a thousand agents, 64 KiB each was 64 MB of
// the daemon's memory.
const lineReaderSize = 4 << 10

// lineKeepBytes bounds what buf keeps between lines: one giant reply must
// not pin its size to the agent for the rest of its life.
const lineKeepBytes = 64 << 10

func newLineReader(r io.Reader, max int64) *lineReader {
	size := lineReaderSize
	if int64(size) > max+1 {
		size = int(max + 1)
	}
	if size < 16 {
		size = 16
	}
	return &lineReader{r: bufio.NewReaderSize(r, size), max: max}
}

// next returns the next line without its newline, as a fresh slice.
func (l *lineReader) next() ([]byte, error) {
	if cap(l.buf) > lineKeepBytes {
		l.buf = nil
	}
	l.buf = l.buf[:0]
	for {
		frag, err := l.r.ReadSlice('\n')
		n := len(frag)
		if err == nil {
			n-- // drop the newline
		}
		if int64(len(l.buf)+n) > l.max {
			return nil, fmt.Errorf("%w: more than %d bytes without a newline", ErrLineTooLong, l.max)
		}
		switch err {
		case nil:
			if len(l.buf) == 0 {
				return bytes.Clone(bytes.TrimSuffix(frag[:n], []byte("\r"))), nil
			}
			l.buf = append(l.buf, frag[:n]...)
			return bytes.Clone(bytes.TrimSuffix(l.buf, []byte("\r"))), nil
		case bufio.ErrBufferFull:
			l.buf = append(l.buf, frag...)
		default:
			// EOF in the middle of a line: the partial line is not a reply.
			return nil, err
		}
	}
}

// stderrLineBytes bounds one line of an agent's stderr; a longer one is
// cut into lines of this size.
const stderrLineBytes = 4096

// scanLinesTruncating is bufio.ScanLines that cuts an over-long line at the
// buffer size instead of failing, so a giant stderr line costs one
// truncated log record, not the log stream.
func scanLinesTruncating(data []byte, atEOF bool) (int, []byte, error) {
	adv, tok, err := bufio.ScanLines(data, atEOF)
	if adv == 0 && tok == nil && err == nil && len(data) >= stderrLineBytes {
		// Buffer full, no newline: emit what we have as one line.
		return len(data), data, nil
	}
	return adv, tok, err
}

// rateLimiter is a token bucket for log lines: rate per second, burst 4x.
// It counts what it drops so the log can say how much was suppressed.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	tokens  float64
	last    time.Time
	dropped int
	now     func() time.Time
}

func newRateLimiter(perSec int, now func() time.Time) *rateLimiter {
	r := float64(perSec)
	return &rateLimiter{rate: r, burst: 4 * r, tokens: 4 * r, last: now(), now: now}
}

// allow reports whether a line may be logged and, if so, how many were
// dropped since the last allowed one.
func (l *rateLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.tokens += now.Sub(l.last).Seconds() * l.rate
	l.last = now
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	if l.tokens < 1 {
		l.dropped++
		return false, 0
	}
	l.tokens--
	d := l.dropped
	l.dropped = 0
	return true, d
}
