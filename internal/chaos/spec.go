package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/resilienced/resilienced/internal/config"
)

// Defaults of an experiment.
const (
	DefaultCount           = 5
	DefaultLoad            = 100 // calls/s made by the engine
	DefaultLatency         = 250 * time.Millisecond
	DefaultJitter          = 50 * time.Millisecond
	DefaultHallucinateRate = 1.0
	DefaultLeakRate        = 32 << 20 // bytes/s
	DefaultTimeout         = 5 * time.Second
	DefaultAbortFailures   = 20
	DefaultGate            = 300 * time.Millisecond
	DefaultWarmup          = time.Second
)

// Spec describes one experiment. The zero value of every field but Faults
// and Target means its default; Normalize fills them in.
type Spec struct {
	// Faults are the kinds to inject.
	Faults []Kind `json:"faults" yaml:"faults"`
	// Target is a pool, or one agent of a pool.
	Target string `json:"target" yaml:"target"`
	// Share, with a pool target, faults that fraction of the pool's active
	// agents at once (rounded up) in each round; 0 means one agent.
	Share float64 `json:"share,omitempty" yaml:"share"`

	// Count is the number of faults of each kind (default 5 unless a
	// Duration is given; 1 for an agent target).
	Count int `json:"count,omitempty" yaml:"count"`
	// Rate paces rounds at this many per second; without it rounds follow
	// one another as soon as the pool is whole again.
	Rate *Rate `json:"rate,omitempty" yaml:"rate"`
	// Duration ends the schedule after this long (faults in flight are
	// still measured).
	Duration Duration `json:"duration,omitempty" yaml:"duration"`
	// MaxConcurrent is the blast radius: at most this many agents faulted
	// at once (default 1). It must be given explicitly for a schedule that
	// faults every agent of the pool at once.
	MaxConcurrent int `json:"max_concurrent,omitempty" yaml:"max_concurrent"`
	// Seed makes the experiment's choices (order of kinds, targets, fault
	// randomness) replayable; 0 picks one, which the report gives.
	Seed uint64 `json:"seed,omitempty" yaml:"seed"`

	// Load is the rate of calls the engine makes on the pool during the
	// experiment (default 100/s; 0 for none).
	Load *Rate `json:"load,omitempty" yaml:"load"`
	// Warmup is how long the load runs before the first fault, to measure
	// the normal call latency (default 1s).
	Warmup Duration `json:"warmup,omitempty" yaml:"warmup"`

	// Latency and Jitter: a latency fault delays replies by Latency ± Jitter
	// (default 250ms ± 50ms).
	Latency Duration `json:"latency,omitempty" yaml:"latency"`
	Jitter  Duration `json:"jitter,omitempty" yaml:"jitter"`
	// HallucinateRate is the share of outputs a hallucinate fault replaces
	// (default 1: the next one). HallucinateKind is schema, invalid_json,
	// oversize or empty for a mix.
	HallucinateRate float64 `json:"hallucinate_rate,omitempty" yaml:"hallucinate_rate"`
	HallucinateKind string  `json:"hallucinate_kind,omitempty" yaml:"hallucinate_kind"`
	// LeakRate is how fast a leak grows, in bytes per second (default
	// 32MiB/s).
	LeakRate ByteRate `json:"leak_rate,omitempty" yaml:"leak_rate"`

	// Timeout is how long a fault may take to recover before it counts as
	// not recovered and is undone (default 5s; a leak gets its expected
	// burn time on top).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
	// AbortAfterFailures ends the experiment once more than this many calls
	// failed (default 20; negative: never).
	AbortAfterFailures int `json:"abort_after_failures,omitempty" yaml:"abort_after_failures"`
	// Gate is the p99 recovery bound the report is judged against
	// (default 300ms).
	Gate Duration `json:"gate,omitempty" yaml:"gate"`
}

// Normalize checks what can be checked without a daemon and fills in the
// defaults. Errors wrap ErrInvalidSpec.
func (s *Spec) Normalize() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
	}
	if len(s.Faults) == 0 {
		bad("no fault kind: give one or more of %s (or all)", kindList())
	}
	seen := map[Kind]bool{}
	for _, k := range s.Faults {
		if err := checkKind(k); err != nil {
			errs = append(errs, err)
		} else if seen[k] {
			bad("fault kind %q given twice", k)
		}
		seen[k] = true
	}
	if strings.TrimSpace(s.Target) == "" {
		bad("no target: name a pool or an agent")
	}
	if s.Share < 0 || s.Share > 1 || math.IsNaN(s.Share) {
		bad("share %v: a share of the pool's agents is in (0, 1]", s.Share)
	}
	if s.Count < 0 {
		bad("count %d: must be positive", s.Count)
	}
	if s.Rate != nil && !(float64(*s.Rate) > 0) {
		bad("rate %v: a rate of zero injects nothing; give a positive rate such as 2/s", float64(*s.Rate))
	}
	if s.Duration < 0 {
		bad("duration %s: must be positive", s.Duration)
	}
	if s.MaxConcurrent < 0 {
		bad("max_concurrent %d: must be at least 1", s.MaxConcurrent)
	}
	if s.Load != nil && (float64(*s.Load) < 0 || math.IsNaN(float64(*s.Load))) {
		bad("load %v: calls per second cannot be negative", float64(*s.Load))
	}
	if s.Load != nil && float64(*s.Load) > 100000 {
		bad("load %v: more than 100000 calls/s is not a load this engine can make", float64(*s.Load))
	}
	if s.Warmup < 0 || s.Latency < 0 || s.Jitter < 0 || s.Timeout < 0 || s.Gate < 0 {
		bad("warmup, latency, jitter, timeout and gate cannot be negative")
	}
	if s.HallucinateRate < 0 || s.HallucinateRate > 1 {
		bad("hallucinate_rate %v: a rate is in (0, 1]", s.HallucinateRate)
	}
	switch s.HallucinateKind {
	case "", "schema", "invalid_json", "oversize":
	default:
		bad("hallucinate_kind %q: one of schema, invalid_json, oversize (empty for a mix)", s.HallucinateKind)
	}
	if s.LeakRate < 0 {
		bad("leak_rate cannot be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	if s.Load == nil {
		l := Rate(DefaultLoad)
		s.Load = &l
	}
	if s.Warmup == 0 {
		s.Warmup = Duration(DefaultWarmup)
	}
	if s.Latency == 0 {
		s.Latency = Duration(DefaultLatency)
		if s.Jitter == 0 {
			s.Jitter = Duration(DefaultJitter)
		}
	}
	if s.Jitter > s.Latency {
		return fmt.Errorf("%w: jitter %s exceeds latency %s (a reply cannot come early)", ErrInvalidSpec, s.Jitter, s.Latency)
	}
	if s.HallucinateRate == 0 {
		s.HallucinateRate = DefaultHallucinateRate
	}
	if s.LeakRate == 0 {
		s.LeakRate = DefaultLeakRate
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	if s.AbortAfterFailures == 0 {
		s.AbortAfterFailures = DefaultAbortFailures
	}
	if s.Gate == 0 {
		s.Gate = Duration(DefaultGate)
	}
	return nil
}

// blastRadius is the bound of agents faulted at once.
func (s *Spec) blastRadius() int {
	if s.MaxConcurrent > 0 {
		return s.MaxConcurrent
	}
	return 1
}

// Command returns the resilientctl command line that replays the experiment.
func (s *Spec) Command() string {
	kinds := make([]string, len(s.Faults))
	for i, k := range s.Faults {
		kinds[i] = string(k)
	}
	parts := []string{"resilientctl", "chaos", "run", "--fault", strings.Join(kinds, ","), "--target", s.Target}
	add := func(flag, v string) { parts = append(parts, flag, v) }
	if s.Share > 0 {
		add("--share", strconv.FormatFloat(s.Share, 'g', -1, 64))
	}
	if s.Count > 0 {
		add("--count", strconv.Itoa(s.Count))
	}
	if s.Rate != nil {
		add("--rate", s.Rate.String())
	}
	if s.Duration > 0 {
		add("--duration", s.Duration.String())
	}
	if s.MaxConcurrent > 0 {
		add("--max-concurrent", strconv.Itoa(s.MaxConcurrent))
	}
	add("--seed", strconv.FormatUint(s.Seed, 10))
	if s.Load != nil {
		add("--load", s.Load.String())
	}
	if s.Latency != Duration(DefaultLatency) || s.Jitter != Duration(DefaultJitter) {
		add("--latency", s.Latency.String())
		add("--jitter", s.Jitter.String())
	}
	if s.HallucinateRate != DefaultHallucinateRate && s.HallucinateRate != 0 {
		add("--hallucinate-rate", strconv.FormatFloat(s.HallucinateRate, 'g', -1, 64))
	}
	if s.HallucinateKind != "" {
		add("--hallucinate-kind", s.HallucinateKind)
	}
	if s.LeakRate != DefaultLeakRate && s.LeakRate != 0 {
		add("--leak-rate", s.LeakRate.String())
	}
	if s.Timeout != Duration(DefaultTimeout) && s.Timeout != 0 {
		add("--timeout", s.Timeout.String())
	}
	return strings.Join(parts, " ")
}

// ParseSpec reads an experiment from YAML (the keys are Spec's yaml names).
// Unknown keys are errors.
func ParseSpec(name string, data []byte) (Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("%w: %s: %v", ErrInvalidSpec, name, err)
	}
	return s, nil
}

// Duration is a time.Duration written as "250ms" in JSON and YAML.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "250ms" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a duration such as \"250ms\", got %s", b)
		}
		*d = Duration(n)
		return nil
	}
	return d.parse(s)
}

// UnmarshalYAML reads "250ms".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.parse(n.Value) }

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 250ms, 5s, 2m)", s)
	}
	*d = Duration(v)
	return nil
}

// Rate is a number of events per second, written "2/s", "120/m", "3600/h"
// or a bare number (per second).
type Rate float64

// ParseRate parses a rate.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	num, unit, _ := strings.Cut(s, "/")
	per := 1.0
	switch strings.TrimSpace(unit) {
	case "", "s", "sec":
	case "m", "min":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, fmt.Errorf("%q is not a rate: unit %q is not one of /s, /m, /h", s, unit)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a rate (e.g. 2/s, 30/m, 0.5)", s)
	}
	return Rate(v / per), nil
}

func (r Rate) String() string { return strconv.FormatFloat(float64(r), 'g', -1, 64) + "/s" }

// MarshalJSON writes the rate as a number per second.
func (r Rate) MarshalJSON() ([]byte, error) { return json.Marshal(float64(r)) }

// UnmarshalJSON reads a number per second or a string such as "2/s".
func (r *Rate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err == nil {
		*r = Rate(f)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a rate such as 2 or \"2/s\", got %s", b)
	}
	v, err := ParseRate(s)
	*r = v
	return err
}

// UnmarshalYAML reads a rate.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	*r = v
	return err
}

// ByteRate is a number of bytes per second, written "32MiB/s" (or "32MiB").
type ByteRate int64

// ParseByteRate parses a byte rate.
func ParseByteRate(s string) (ByteRate, error) {
	num := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	v, err := config.ParseSize(num)
	if err != nil {
		return 0, fmt.Errorf("%q is not a rate of bytes (e.g. 32MiB/s): %v", s, err)
	}
	return ByteRate(v), nil
}

func (b ByteRate) String() string { return config.FormatSize(int64(b)) + "/s" }

// MarshalJSON writes the rate as a string.
func (b ByteRate) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads "32MiB/s" or a number of bytes per second.
func (b *ByteRate) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = ByteRate(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want a rate of bytes such as \"32MiB/s\", got %s", data)
	}
	v, err := ParseByteRate(s)
	*b = v
	return err
}

// UnmarshalYAML reads "32MiB/s".
func (b *ByteRate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteRate(n.Value)
	*b = v
	return err
}
