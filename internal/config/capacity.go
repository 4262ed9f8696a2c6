package config

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// assumedAgentMemory stands for an agent's memory when its pool sets no
// limit: what a lean agent (a small Go or C program) takes.
const assumedAgentMemory = 16 << 20

// NodeMaxReplicas is the default bound of a pool's `scale` (max_replicas
// 0): 256 agents per CPU, and no more than the node's memory holds at
// memLimit each (assumedAgentMemory without a limit). It guards against a
// typo (`scale echo 1000` for 10), not a measured capacity.
func NodeMaxReplicas(memLimit int64) int {
	n := 256 * runtime.NumCPU()
	if memLimit <= 0 {
		memLimit = assumedAgentMemory
	}
	if total := memTotal(); total > 0 {
		n = min(n, int(max(total/memLimit, 1)))
	}
	return n
}

// memTotal is the node's memory in bytes from /proc/meminfo, 0 if unknown.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// ScaleBound is the most replicas `scale` gives the pool without --force:
// max_replicas, or the node's bound, and never less than its replicas in
// the file.
func (p Pool) ScaleBound() int {
	b := p.MaxReplicas
	if b == 0 {
		b = NodeMaxReplicas(p.Limits.Memory)
	}
	return max(b, p.Replicas)
}
