package agent

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestLineReader(t *testing.T) {
	in := "a\r\n\nbb\n" + strings.Repeat("x", 100) + "\nlast-no-newline"
	lr := newLineReader(strings.NewReader(in), 50)
	for _, want := range []string{"a", "", "bb"} {
		got, err := lr.next()
		if err != nil || string(got) != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
	if _, err := lr.next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got %v, want ErrLineTooLong", err)
	}
}

func TestLineReaderPartialLineAtEOF(t *testing.T) {
	lr := newLineReader(strings.NewReader("partial"), 50)
	if _, err := lr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want EOF", err)
	}
}

func TestRateLimiterSuppressesAndCounts(t *testing.T) {
	now := time.Unix(0, 0)
	l := newRateLimiter(1, func() time.Time { return now })
	allowed := 0
	for range 10 {
		if ok, _ := l.allow(); ok {
			allowed++
		}
	}
	if allowed != 4 { // burst 4x
		t.Fatalf("allowed %d, want 4", allowed)
	}
	now = now.Add(time.Second)
	ok, dropped := l.allow()
	if !ok || dropped != 6 {
		t.Fatalf("after refill: ok=%v dropped=%d, want true 6", ok, dropped)
	}
}

// FuzzLineReader: any byte stream splits into lines no longer than the
// limit, each equal to the input's line, and never panics.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"), uint8(8))
	f.Add([]byte("\n\n\r\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 300), uint8(20))
	f.Fuzz(func(t *testing.T, data []byte, max uint8) {
		limit := int64(max) + 1
		lr := newLineReader(bytes.NewReader(data), limit)
		rest := data
		for {
			line, err := lr.next()
			if err != nil {
				if errors.Is(err, ErrLineTooLong) {
					i := bytes.IndexByte(rest, '\n')
					if i >= 0 && int64(len(bytes.TrimSuffix(rest[:i], []byte("\r")))) <= limit && int64(i) <= limit {
						t.Fatalf("line %q refused under limit %d", rest[:i], limit)
					}
				}
				return
			}
			if int64(len(line)) > limit {
				t.Fatalf("line of %d bytes over limit %d", len(line), limit)
			}
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				t.Fatalf("line %q returned without newline in input", line)
			}
			if want := bytes.TrimSuffix(rest[:i], []byte("\r")); !bytes.Equal(line, want) {
				t.Fatalf("got %q, want %q", line, want)
			}
			rest = rest[i+1:]
		}
	})
}
