package main

import (
	"bufio"
	"io"
	"syscall"
	"testing"
)

// BenchmarkHandle measures the agent's own work per call, without pipes.
// cpu-ns/op is the process CPU time per call, which a busy machine does not
// inflate the way it inflates ns/op.
func BenchmarkHandle(b *testing.B) {
	line := []byte(`{"jsonrpc":"2.0","id":1,"method":"task/run","params":{"session":"s1","context":[{"input":"q0","output":{"answer":"a0"}}],"input":"what is the capital of France?"}}` + "\n")
	cfg, err := parseFlags([]string{"-seed", "1"}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	a := &agent{cfg: cfg, out: bufio.NewWriter(io.Discard), stderr: io.Discard}
	b.ReportAllocs()
	before := cpuTime(b)
	for b.Loop() {
		a.handle(line)
	}
	b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
}

func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
