package arbiter

import "time"

// Sample is one agent's telemetry at one instant, as the supervisor
// assembles it from the telemetry package, the cgroup and its own call
// accounting. Counts are since the previous sample of the same agent. A zero
// field means "not measured" and feeds no detector.
type Sample struct {
	Time  time.Time `json:"time"`
	Agent string    `json:"agent"`
	Pool  string    `json:"pool"`

	// RSS is the agent's resident memory (the cgroup's memory.current, or
	// the process tree's RSS) and MemLimit its memory.max; 0 is unlimited.
	RSS      int64 `json:"rss,omitempty"`
	MemLimit int64 `json:"mem_limit,omitempty"`

	SyscallsPerSec      float64       `json:"syscalls_per_sec,omitempty"`
	SyscallErrorsPerSec float64       `json:"syscall_errors_per_sec,omitempty"`
	SyscallP99          time.Duration `json:"syscall_p99,omitempty"`

	// CallLatency is the recent typical call latency (p50 or mean) and
	// CallDeadline the pool's per-call deadline (0: none).
	CallLatency  time.Duration `json:"call_latency,omitempty"`
	CallDeadline time.Duration `json:"call_deadline,omitempty"`

	Calls      int `json:"calls,omitempty"`
	Violations int `json:"violations,omitempty"`
	Deadlines  int `json:"deadlines,omitempty"`

	// PSIMemory and PSICPU are the cgroup's "some avg10" pressure, in
	// percent as the kernel prints it; 0 where PSI is unavailable.
	PSIMemory float64 `json:"psi_memory,omitempty"`
	PSICPU    float64 `json:"psi_cpu,omitempty"`

	// LogLines are the stderr lines written since the previous sample. The
	// supervisor may pass a bounded subset of a flood; only their
	// templates and count matter.
	LogLines []string `json:"log_lines,omitempty"`
}

// Assessment is the Arbiter's verdict on one agent after a sample.
type Assessment struct {
	Agent string    `json:"agent"`
	Pool  string    `json:"pool"`
	Time  time.Time `json:"time"`
	// Risk is the estimated probability that the agent fails within the
	// configured Target lead (see [Config]).
	Risk float64 `json:"risk"`
	// Reasons are the largest contributions to Risk, in words, largest
	// first ("RSS reaches its 256 MiB limit in ~4 s").
	Reasons []string `json:"reasons,omitempty"`
	// Predicted is true on the sample where a prediction starts: Risk
	// reached the threshold and no prediction for this agent is younger
	// than the Horizon. It is the moment to record a prediction event.
	Predicted bool `json:"predicted,omitempty"`
	// Act is Predicted for an agent that is not held out: promote a spare,
	// drain the agent, stop it.
	Act bool `json:"act,omitempty"`
	// HeldOut marks an agent chosen, when it first crossed the threshold,
	// to be left alone so that predictions can be checked against what
	// really happens. It is never acted on.
	HeldOut bool `json:"held_out,omitempty"`
}

// Record kinds in a history.
const (
	RecordSample     = "sample"
	RecordFailure    = "failure"
	RecordPrediction = "prediction"
	// RecordGone: the agent stopped without failing (drained, scaled
	// down, replaced on a prediction). Its recent samples are unlabelled.
	RecordGone = "gone"
)

// Record is one entry of the node's history, as journalled by [Loop] and
// replayed by [Evaluate].
type Record struct {
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Agent string    `json:"agent,omitempty"`
	Pool  string    `json:"pool,omitempty"`

	// Sample is set for RecordSample.
	Sample *Sample `json:"sample,omitempty"`
	// Failure is the kind of failure for RecordFailure ("oom", "deadline",
	// "exit", "violation", "kill", ...).
	Failure string `json:"failure,omitempty"`
	// Risk, Reasons and HeldOut are set for RecordPrediction.
	Risk    float64  `json:"risk,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	HeldOut bool     `json:"held_out,omitempty"`
}

// SampleRecord is the history record of s.
func SampleRecord(s Sample) Record {
	return Record{Time: s.Time, Kind: RecordSample, Agent: s.Agent, Pool: s.Pool, Sample: &s}
}

// FailureRecord is the history record of a failure.
func FailureRecord(agent, pool string, at time.Time, kind string) Record {
	return Record{Time: at, Kind: RecordFailure, Agent: agent, Pool: pool, Failure: kind}
}

// PredictionRecord is the history record of a prediction.
func PredictionRecord(a Assessment) Record {
	return Record{Time: a.Time, Kind: RecordPrediction, Agent: a.Agent, Pool: a.Pool,
		Risk: a.Risk, Reasons: a.Reasons, HeldOut: a.HeldOut}
}

// GoneRecord is the history record of an agent stopped without failing.
func GoneRecord(agent, pool string, at time.Time) Record {
	return Record{Time: at, Kind: RecordGone, Agent: agent, Pool: pool}
}
