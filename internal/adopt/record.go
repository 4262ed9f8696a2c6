package adopt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Streams: the files kept for each agent, named <agent id>/<stream>.
const (
	StreamStdin  = "stdin"
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamPidfd  = "pidfd"
	StreamState  = "state"
)

// Streams lists every stream of an agent, in the order they are kept.
var Streams = []string{StreamState, StreamPidfd, StreamStdin, StreamStdout, StreamStderr}

// FilesPerAgent is how many descriptors each agent keeps in the store.
const FilesPerAgent = 5

// RecordVersion is the version of the state record's format.
const RecordVersion = 1

// Sentinel errors: why an agent is not adopted.
var (
	ErrBadName    = errors.New("adopt: not an agent file name")
	ErrIncomplete = errors.New("adopt: files missing")
	ErrBadRecord  = errors.New("adopt: unreadable state record")
	ErrGone       = errors.New("adopt: process gone")
	ErrReused     = errors.New("adopt: pid reused by another process")
	ErrCgroup     = errors.New("adopt: not in its cgroup")
)

// Record is the state of one agent as a next instance needs it.
type Record struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	Pool    string `json:"pool"`
	PID     int    `json:"pid"`
	// StartTime is the process's start in clock ticks after boot
	// (/proc/PID/stat field 22): a pid reused by another process has
	// another.
	StartTime uint64 `json:"start_time"`
	// Cgroup is the agent's cgroup directory ("" without cgroups).
	Cgroup string `json:"cgroup,omitempty"`
	// ConfigDigest identifies the pool configuration it was started with
	// (see [ConfigDigest]); an agent of another one is rolled.
	ConfigDigest string    `json:"config_digest"`
	State        string    `json:"state"`
	Protocol     string    `json:"protocol,omitempty"`
	Started      time.Time `json:"started"`
	// Served: it has served a valid call (its start is proven).
	Served bool `json:"served,omitempty"`
	// Isolation, when State is isolated.
	IsolateReason string    `json:"isolate_reason,omitempty"`
	IsolatedAt    time.Time `json:"isolated_at,omitzero"`
	// Tools are what an MCP server listed at its handshake, which an
	// adopted agent is not asked again.
	Tools json.RawMessage `json:"tools,omitempty"`
}

// Validate checks the fields a next instance relies on.
func (r *Record) Validate() error {
	switch {
	case r.Version != RecordVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrBadRecord, r.Version, RecordVersion)
	case CheckID(r.ID) != nil:
		return fmt.Errorf("%w: %v", ErrBadRecord, CheckID(r.ID))
	case r.Pool == "":
		return fmt.Errorf("%w: agent %s: no pool", ErrBadRecord, r.ID)
	case r.PID <= 1:
		return fmt.Errorf("%w: agent %s: pid %d", ErrBadRecord, r.ID, r.PID)
	case r.State == "":
		return fmt.Errorf("%w: agent %s: no state", ErrBadRecord, r.ID)
	}
	return nil
}

// ConfigDigest is a digest of a pool's configuration as JSON, without the
// fields that a change of resizes the pool rather than rolling it: v is the
// configuration with those fields zeroed by the caller.
func ConfigDigest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// FDName names an agent's file in the store: "<agent id>/<stream>".
func FDName(id, stream string) string { return id + "/" + stream }

// CheckID reports whether an agent id can name files in systemd's store:
// printable ASCII without ':' (LISTEN_FDNAMES's separator) or '/', and
// short enough for the longest stream.
func CheckID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty agent id", ErrBadName)
	}
	if len(id)+1+len(StreamStdout) > 255 {
		return fmt.Errorf("%w: agent id %.40q… is too long", ErrBadName, id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == ':' || c == '/' {
			return fmt.Errorf("%w: agent id %q has %q", ErrBadName, id, c)
		}
	}
	return nil
}

// ParseFDName splits a name made by FDName. ok is false for any other name
// (the API socket's, say).
func ParseFDName(name string) (id, stream string, ok bool) {
	id, stream, found := strings.Cut(name, "/")
	if !found || CheckID(id) != nil {
		return "", "", false
	}
	for _, s := range Streams {
		if s == stream {
			return id, stream, true
		}
	}
	return "", "", false
}

// writeRecord writes r over f's contents in one pwrite, padded with spaces
// to at least the previous length: a daemon killed mid-update leaves
// either record whole, never a mix, and no truncate is needed.
func writeRecord(f *os.File, r *Record, prev int) (int, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return prev, err
	}
	n := len(b)
	if n < prev {
		b = append(b, strings.Repeat(" ", prev-n)...)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return prev, err
	}
	return max(n, prev), nil
}

// ReadRecord reads the state record in f.
func ReadRecord(f *os.File) (*Record, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
