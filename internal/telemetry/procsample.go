package telemetry

// ProcSample is the resource use of a process, or the sum over the
// processes of a cgroup, read from procfs.
type ProcSample struct {
	RSSBytes   uint64
	CPUSeconds float64 // user and system time since the process started
	OpenFDs    int
	Threads    int
	Processes  int
}

func (s *ProcSample) add(o ProcSample) {
	s.RSSBytes += o.RSSBytes
	s.CPUSeconds += o.CPUSeconds
	s.OpenFDs += o.OpenFDs
	s.Threads += o.Threads
	s.Processes += o.Processes
}
