package chaos

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the distribution of a set of measurements, in milliseconds.
type Summary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summarize returns the summary of xs, or nil when xs is empty: nothing is
// claimed that was not measured. Percentiles are nearest-rank.
func Summarize(xs []float64) *Summary {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return &Summary{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// Report is what an experiment measured.
type Report struct {
	Seed    uint64    `json:"seed"`
	Target  string    `json:"target"`
	Pool    string    `json:"pool"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Spec is the experiment as run, defaults filled in.
	Spec Spec `json:"spec"`
	// Replay is the command line that runs the same experiment again.
	Replay string       `json:"replay"`
	Faults []KindReport `json:"faults"`
	Calls  Calls        `json:"calls"`
	// BaselineMS is the latency of the engine's calls before the first
	// fault; absent without load.
	BaselineMS *Summary `json:"baseline_ms,omitempty"`
	Gate       Gate     `json:"gate"`
	// Aborted says why the experiment ended before its schedule did.
	Aborted string `json:"aborted,omitempty"`
	// Notes say how the host or the experiment limits what was measured.
	Notes      []string     `json:"notes,omitempty"`
	Injections []*Injection `json:"injections"`
	// Arbiter scores the daemon's Arbiter against the injected faults;
	// absent when the daemon runs without it.
	Arbiter *ArbiterReport `json:"arbiter,omitempty"`
}

// KindReport is the measurement of one fault kind.
type KindReport struct {
	Kind      Kind     `json:"kind"`
	Injected  int      `json:"injected"`
	Recovered int      `json:"recovered"`
	DetectMS  *Summary `json:"detect_ms"`
	RecoverMS *Summary `json:"recover_ms"`
	// Unsupported says why this host cannot inject the kind.
	Unsupported string `json:"unsupported,omitempty"`
	// Causes counts how the supervisor noticed the faults (its evidence
	// kinds: exit, violation, hang, oom, ...).
	Causes map[string]int `json:"causes,omitempty"`
	// Notes explain what the numbers do not show (why a kind cannot meet
	// the bound, faults that did not recover, ...).
	Notes []string `json:"notes,omitempty"`
}

// Calls counts the calls made while the experiment ran.
type Calls struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Retried int `json:"retried"` // succeeded or failed after more than one attempt
	// LatencyMS is the distribution of the calls' latency, when measured.
	LatencyMS *Summary `json:"latency_ms,omitempty"`
	// Errors are the first distinct errors of failed calls.
	Errors []string `json:"errors,omitempty"`
	// By says who made the calls.
	By []string `json:"by,omitempty"`
}

// SuccessRate is OK/Total, or NaN without calls.
func (c Calls) SuccessRate() float64 {
	if c.Total == 0 {
		return math.NaN()
	}
	return float64(c.OK) / float64(c.Total)
}

// Add adds the counts of o to c (latency summaries cannot be merged; c keeps
// its own unless it has none).
func (c *Calls) Add(o Calls) {
	c.Total += o.Total
	c.OK += o.OK
	c.Failed += o.Failed
	c.Retried += o.Retried
	if c.LatencyMS == nil {
		c.LatencyMS = o.LatencyMS
	}
	for _, e := range o.Errors {
		if len(c.Errors) < maxErrors && !slices.Contains(c.Errors, e) {
			c.Errors = append(c.Errors, e)
		}
	}
	c.By = append(c.By, o.By...)
}

const maxErrors = 8

// Injection is one injected fault and what became of it.
type Injection struct {
	Kind  Kind      `json:"kind"`
	Agent string    `json:"agent"`
	At    time.Time `json:"at"`
	// OnsetMS (leak, oom) is the time from the start of the allocation
	// until the first OOM kill in the agent's cgroup; their detect_ms and
	// recover_ms count from that moment.
	OnsetMS   *float64 `json:"onset_ms,omitempty"`
	DetectMS  *float64 `json:"detect_ms,omitempty"`
	RecoverMS *float64 `json:"recover_ms,omitempty"`
	Recovered bool     `json:"recovered"`
	// Cause is the supervisor's evidence kind; Reason its words, or why the
	// fault did not recover.
	Cause  string `json:"cause,omitempty"`
	Reason string `json:"reason,omitempty"`
	// How says how recovery was established: "replaced" (the supervisor's
	// recovered event, then a call served), "drained" (taken out of
	// service, e.g. by an Arbiter prediction, then the pool whole again and
	// a call served), "normal-latency" (a latency fault whose callers got
	// normal latency again without a replacement), "preempted" (a leak or
	// oom replaced before the limit was hit: nothing to recover from).
	How string `json:"how,omitempty"`
	// Undo reports a failure to undo the fault.
	Undo string `json:"undo,omitempty"`
}

// Gate is the verdict of a report against a p99 recovery bound.
type Gate struct {
	BoundMS  float64  `json:"bound_ms"`
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
}

// Evaluate judges the report: it fails when any kind's p99 recovery exceeds
// bound, a fault did not recover, a kind could not be injected or was not
// injected at all, any call failed, or the experiment was aborted.
func (r *Report) Evaluate(bound time.Duration) Gate {
	g := Gate{BoundMS: ms(bound)}
	fail := func(format string, args ...any) { g.Failures = append(g.Failures, fmt.Sprintf(format, args...)) }
	if r.Aborted != "" {
		fail("the experiment was aborted: %s", r.Aborted)
	}
	for _, k := range r.Faults {
		switch {
		case k.Unsupported != "":
			fail("%s: not supported here: %s", k.Kind, k.Unsupported)
			continue
		case k.Injected == 0:
			fail("%s: no fault was injected", k.Kind)
			continue
		}
		if k.Recovered < k.Injected {
			why := ""
			for _, in := range r.Injections {
				if in.Kind == k.Kind && !in.Recovered && in.Reason != "" {
					why = " (" + in.Reason + ")"
					break
				}
			}
			fail("%s: %d of %d faults did not recover%s", k.Kind, k.Injected-k.Recovered, k.Injected, why)
		}
		if k.RecoverMS != nil && k.RecoverMS.P99 > g.BoundMS {
			fail("%s: p99 recovery %s exceeds %s", k.Kind, fmtMS(k.RecoverMS.P99), fmtDur(bound))
		}
	}
	if r.Calls.Failed > 0 {
		fail("%d of %d calls failed", r.Calls.Failed, r.Calls.Total)
	}
	g.Passed = len(g.Failures) == 0
	return g
}

// build fills Faults, Calls' summary and Gate from the injections.
func (r *Report) build(kinds []Kind, unsupported map[Kind]string, bound time.Duration) {
	r.Faults = r.Faults[:0]
	for _, k := range kinds {
		kr := KindReport{Kind: k, Unsupported: unsupported[k]}
		var det, rec []float64
		preempted := 0
		for _, in := range r.Injections {
			if in.Kind != k {
				continue
			}
			kr.Injected++
			if in.Cause != "" {
				if kr.Causes == nil {
					kr.Causes = map[string]int{}
				}
				kr.Causes[in.Cause]++
			}
			if !in.Recovered {
				continue
			}
			kr.Recovered++
			if in.How == "preempted" {
				preempted++
				continue
			}
			if in.DetectMS != nil {
				det = append(det, *in.DetectMS)
			}
			if in.RecoverMS != nil {
				rec = append(rec, *in.RecoverMS)
			}
		}
		kr.DetectMS, kr.RecoverMS = Summarize(det), Summarize(rec)
		if preempted > 0 {
			kr.Notes = append(kr.Notes, fmt.Sprintf("%d replaced before they failed (preempted); they are not in the percentiles", preempted))
		}
		kr.Notes = append(kr.Notes, kindNotes(k, kr, r.Injections, bound)...)
		r.Faults = append(r.Faults, kr)
	}
	r.Gate = r.Evaluate(bound)
}

// kindNotes explain, per kind, why it cannot meet the bound when it does not.
func kindNotes(k Kind, kr KindReport, ins []*Injection, bound time.Duration) []string {
	var notes []string
	if k == Leak || k == OOM {
		var onset []float64
		for _, in := range ins {
			if in.Kind == k && in.OnsetMS != nil {
				onset = append(onset, *in.OnsetMS)
			}
		}
		if s := Summarize(onset); s != nil {
			what := "the leak grew"
			if k == OOM {
				what = "the kernel took"
			}
			notes = append(notes, fmt.Sprintf("the clock starts at the OOM kill in the agent's cgroup; before it, %s %s (p50) from the start of the allocation", what, fmtMS(s.P50)))
		}
		first := 0
		for _, in := range ins {
			if in.Kind == k && in.DetectMS != nil && *in.DetectMS < 0.01 {
				first++
			}
		}
		if first > 0 {
			notes = append(notes, fmt.Sprintf("for %d of them the supervisor saw the OOM kill before the engine's 1 ms watch did: their detect_ms is 0, and the lag behind the kill itself (under the supervisor's poll interval) was not measured", first))
		}
	}
	if kr.RecoverMS == nil || kr.RecoverMS.P99 <= ms(bound) {
		return notes
	}
	switch k {
	case Kill, Crash:
		note := "the supervisor acts on the process's exit (the kernel's exit event, or wait), and a dying process must be scheduled to exit: on a loaded machine that can take a while"
		if k == Crash {
			note += "; and an agent that handles SIGSEGV before dying (the Go runtime prints its goroutines' stacks, Python's faulthandler its traceback) exits later still"
		}
		if kr.DetectMS != nil {
			note += fmt.Sprintf(" (detect_ms p99 %s here)", fmtMS(kr.DetectMS.P99))
		}
		notes = append(notes, note)
	case Hang, Latency, Sever:
		notes = append(notes, "noticing this kind needs a call on the agent, or a ping: its recovery depends on the pool's stall timeout and ping_interval and on the call rate")
	case Leak, OOM:
		notes = append(notes, "the supervisor learns of an OOM kill from the cgroup's memory events; its poll interval adds to detection")
	case Hallucinate, CorruptToken:
		notes = append(notes, "the fault shows only on the agent's next call: its recovery includes the wait for that call")
	}
	return notes
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msPtr(d time.Duration) *float64 { v := ms(d); return &v }

// fmtMS formats milliseconds with a precision that suits their size.
func fmtMS(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// fmtDur formats a bound: in milliseconds like the measurements, unless
// it is too small for that.
func fmtDur(d time.Duration) string {
	if d < 10*time.Microsecond {
		return d.String()
	}
	return fmtMS(ms(d))
}

func fmtSummary(s *Summary) string {
	if s == nil {
		return "-"
	}
	f := func(v float64) string { return strings.TrimSuffix(fmtMS(v), " ms") }
	return fmt.Sprintf("%s / %s / %s", f(s.P50), f(s.P99), f(s.Max))
}

// WriteText writes the report as tables for a terminal.
func (r *Report) WriteText(w io.Writer) {
	dur := r.Ended.Sub(r.Started).Round(100 * time.Millisecond)
	injected := 0
	for _, k := range r.Faults {
		injected += k.Injected
	}
	fmt.Fprintf(w, "chaos experiment on %s (pool %s), seed %d: %d faults in %s\n", r.Target, r.Pool, r.Seed, injected, dur)
	if r.Aborted != "" {
		fmt.Fprintf(w, "ABORTED: %s (every injected fault was undone)\n", r.Aborted)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KIND\tINJECTED\tRECOVERED\tDETECT ms p50/p99/max\tRECOVER ms p50/p99/max\tGATE p99 < %s\n", fmtMS(r.Gate.BoundMS))
	for _, k := range r.Faults {
		verdict := "ok"
		switch {
		case k.Unsupported != "":
			verdict = "FAIL: not supported here"
		case k.Injected == 0:
			verdict = "FAIL: not injected"
		case k.Recovered < k.Injected:
			verdict = fmt.Sprintf("FAIL: %d not recovered", k.Injected-k.Recovered)
		case k.RecoverMS != nil && k.RecoverMS.P99 > r.Gate.BoundMS:
			verdict = "FAIL: too slow"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", k.Kind, k.Injected, k.Recovered, fmtSummary(k.DetectMS), fmtSummary(k.RecoverMS), verdict)
	}
	tw.Flush()
	for _, k := range r.Faults {
		if k.Unsupported != "" {
			fmt.Fprintf(w, "  %s: not supported here: %s\n", k.Kind, k.Unsupported)
		}
		for _, n := range k.Notes {
			fmt.Fprintf(w, "  %s: %s\n", k.Kind, n)
		}
	}
	fmt.Fprintln(w)
	c := r.Calls
	if c.Total == 0 {
		fmt.Fprintln(w, "calls: none made during the experiment")
	} else {
		fmt.Fprintf(w, "calls: %d total, %d ok (%s), %d failed, %d retried", c.Total, c.OK, fmtRate(c.SuccessRate()), c.Failed, c.Retried)
		if c.LatencyMS != nil {
			fmt.Fprintf(w, "; latency p50 %s, p99 %s", fmtMS(c.LatencyMS.P50), fmtMS(c.LatencyMS.P99))
		}
		fmt.Fprintln(w)
		for _, e := range c.Errors {
			fmt.Fprintf(w, "  failed: %s\n", e)
		}
	}
	r.Arbiter.writeText(w)
	fmt.Fprintln(w)
	if r.Gate.Passed {
		fmt.Fprintf(w, "gate: PASS (every kind recovered with p99 under %s, no call failed)\n", fmtMS(r.Gate.BoundMS))
	} else {
		fmt.Fprintf(w, "gate: FAIL\n")
		for _, f := range r.Gate.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
}

// fmtRate formats a success rate as a percentage with enough digits to show
// the nines.
func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.4f %%", 100*math.Floor(v*1e6)/1e6)
}
