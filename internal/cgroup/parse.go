package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// mount is one cgroup or cgroup2 line of /proc/self/mountinfo.
type mount struct {
	Root       string   // the directory of the hierarchy mounted here
	MountPoint string   // where
	FSType     string   // "cgroup2" or "cgroup"
	SuperOpts  []string // v1: controllers ("memory", "cpu", "cpuacct", "name=systemd") and flags
}

// parseMountinfo returns the cgroup and cgroup2 mounts listed in
// /proc/PID/mountinfo text, in order.
func parseMountinfo(b []byte) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: no separator: %q", n, line)
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo line %d: too few fields: %q", n, line)
		}
		if g[0] != "cgroup" && g[0] != "cgroup2" {
			continue
		}
		m := mount{Root: unescapeMount(f[3]), MountPoint: unescapeMount(f[4]), FSType: g[0]}
		if len(g) >= 3 {
			m.SuperOpts = strings.Split(g[2], ",")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMount undoes the kernel's octal escaping of space, tab, newline
// and backslash in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procCgroup is one line of /proc/PID/cgroup: "id:controllers:path".
type procCgroup struct {
	ID          int
	Controllers []string // empty for the cgroup2 line ("0::/path")
	Path        string
}

func parseProcCgroup(b []byte) ([]procCgroup, error) {
	var out []procCgroup
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroup line %d: want id:controllers:path: %q", n, line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil {
			return nil, fmt.Errorf("cgroup line %d: id: %w", n, err)
		}
		pc := procCgroup{ID: id, Path: parts[2]}
		if parts[1] != "" {
			pc.Controllers = strings.Split(parts[1], ",")
		}
		out = append(out, pc)
	}
	return out, sc.Err()
}

// hierarchy is a mounted cgroup hierarchy and this process's place in it.
type hierarchy struct {
	Mount string // mount point
	Path  string // own cgroup path from /proc/self/cgroup ("" if not listed)
	Dir   string // own cgroup directory ("" if not reachable through this mount)
}

// layout is what the host offers, resolved for this process.
type layout struct {
	V2 *hierarchy            // nil: no cgroup2 mount
	V1 map[string]*hierarchy // by controller: "memory", "pids", "cpu", "cpuacct", …
}

// resolveLayout joins mountinfo with /proc/self/cgroup. A cgroup path is
// relative to the hierarchy's root; the mount shows the subtree Root at
// MountPoint, so the directory is MountPoint + (Path − Root).
func resolveLayout(mounts []mount, cgs []procCgroup) layout {
	var lay layout
	var v2path string
	hasV2Line := false
	v1paths := map[string]string{}
	for _, c := range cgs {
		if c.ID == 0 && len(c.Controllers) == 0 {
			v2path, hasV2Line = c.Path, true
			continue
		}
		for _, ctrl := range c.Controllers {
			v1paths[ctrl] = c.Path
		}
	}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			if lay.V2 != nil {
				// Prefer a mount through which our own cgroup is reachable.
				if lay.V2.Dir != "" || !hasV2Line {
					continue
				}
				if _, ok := under(v2path, m.Root); !ok {
					continue
				}
			}
			h := &hierarchy{Mount: m.MountPoint}
			if hasV2Line {
				h.Path = v2path
				if rel, ok := under(v2path, m.Root); ok {
					h.Dir = path.Join(m.MountPoint, rel)
				}
			}
			lay.V2 = h
		case "cgroup":
			for _, opt := range m.SuperOpts {
				if opt == "rw" || opt == "ro" || strings.Contains(opt, "=") || !isV1Controller(opt) {
					continue
				}
				if lay.V1 == nil {
					lay.V1 = map[string]*hierarchy{}
				}
				if _, dup := lay.V1[opt]; dup {
					continue
				}
				h := &hierarchy{Mount: m.MountPoint}
				if p, ok := v1paths[opt]; ok {
					h.Path = p
					if rel, ok := under(p, m.Root); ok {
						h.Dir = path.Join(m.MountPoint, rel)
					}
				}
				lay.V1[opt] = h
			}
		}
	}
	return lay
}

var v1Controllers = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer",
	"hugetlb", "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}

func isV1Controller(s string) bool { return slices.Contains(v1Controllers, s) }

// under returns p relative to root ("/" for root itself) if p is root or
// below it.
func under(p, root string) (string, bool) {
	p, root = path.Clean(p), path.Clean(root)
	switch {
	case root == "/":
		return p, strings.HasPrefix(p, "/")
	case p == root:
		return "/", true
	case strings.HasPrefix(p, root+"/"):
		return p[len(root):], true
	}
	return "", false
}

// parseFlatKeyed parses "key value" lines (cgroup.events, memory.events,
// cpu.stat, memory.oom_control, pids.events) into a map.
func parseFlatKeyed(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		out[k] = n
	}
	return out
}

// parseLimit parses a cgroup limit file: "max" (v2) or a v1 "unlimited"
// value near 2^63 is 0, meaning no limit.
func parseLimit(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n >= 1<<62 {
		return 0, nil
	}
	return n, nil
}

// parsePids parses cgroup.procs: one pid per line.
func parsePids(b []byte) ([]int, error) {
	var out []int
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n, err := strconv.Atoi(line)
		if err != nil {
			return nil, fmt.Errorf("cgroup.procs: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}
