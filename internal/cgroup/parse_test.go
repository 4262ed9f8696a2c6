package cgroup

import (
	"errors"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
)

// Fixtures are real /proc/self/{mountinfo,cgroup} texts, trimmed.
const (
	pureV2Mountinfo = `22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 22 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:5 - bpf bpf rw,mode=700
`
	pureV2Cgroup = "0::/system.slice/resilienced.service\n"

	// This build machine: v1 controllers beside an empty cgroup2, and a
	// memory cgroup that is not the root.
	hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	hybridCgroup = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/54250f56a8e708f7419979586ef2bd35
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`

	// systemd's hybrid layout: cpu and cpuacct share a hierarchy; inside a
	// container whose mounts show only its own subtree (root field).
	containerMountinfo = `700 600 0:40 /docker/abc /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
701 600 0:41 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
702 600 0:42 /docker/abc /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
703 600 0:43 /elsewhere /mnt/my\040pids rw - cgroup cgroup rw,pids
`
	containerCgroup = `12:pids:/docker/abc
4:cpu,cpuacct:/docker/abc/sub
3:memory:/docker/abc
0::/docker/abc
`

	noneMountinfo = `22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
23 22 0:5 / /proc rw - proc proc rw
`
	v1OnlyMountinfo = `31 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`
	v1OnlyCgroup = "4:memory:/user.slice\n"
)

func mustLayout(t *testing.T, mi, cg string) layout {
	t.Helper()
	mounts, err := parseMountinfo([]byte(mi))
	if err != nil {
		t.Fatal(err)
	}
	cgs, err := parseProcCgroup([]byte(cg))
	if err != nil {
		t.Fatal(err)
	}
	return resolveLayout(mounts, cgs)
}

func TestLayoutPureV2(t *testing.T) {
	lay := mustLayout(t, pureV2Mountinfo, pureV2Cgroup)
	if lay.V2 == nil {
		t.Fatal("no cgroup2")
	}
	if want := (hierarchy{Mount: "/sys/fs/cgroup", Path: "/system.slice/resilienced.service",
		Dir: "/sys/fs/cgroup/system.slice/resilienced.service"}); *lay.V2 != want {
		t.Errorf("v2 = %+v, want %+v", *lay.V2, want)
	}
	if len(lay.V1) != 0 {
		t.Errorf("v1 = %v, want none", lay.V1)
	}
}

func TestLayoutHybrid(t *testing.T) {
	lay := mustLayout(t, hybridMountinfo, hybridCgroup)
	if lay.V2 == nil || lay.V2.Mount != "/sys/fs/cgroup/unified" || lay.V2.Dir != "/sys/fs/cgroup/unified" {
		t.Fatalf("v2 = %+v", lay.V2)
	}
	want := map[string]string{
		"memory":  "/sys/fs/cgroup/memory/process_api/54250f56a8e708f7419979586ef2bd35",
		"pids":    "/sys/fs/cgroup/pids",
		"cpu":     "/sys/fs/cgroup/cpu",
		"cpuacct": "/sys/fs/cgroup/cpuacct",
		"freezer": "/sys/fs/cgroup/freezer",
	}
	for c, dir := range want {
		if h := lay.V1[c]; h == nil || h.Dir != dir {
			t.Errorf("v1 %s = %+v, want dir %s", c, h, dir)
		}
	}
	if _, ok := lay.V1["name=systemd"]; ok {
		t.Error("named hierarchy taken for a controller")
	}
}

func TestLayoutContainer(t *testing.T) {
	lay := mustLayout(t, containerMountinfo, containerCgroup)
	if lay.V2 == nil || lay.V2.Dir != "/sys/fs/cgroup/unified" {
		t.Fatalf("v2 = %+v, want dir at the mount (own cgroup is the mount's root)", lay.V2)
	}
	if h := lay.V1["cpu"]; h == nil || h.Dir != "/sys/fs/cgroup/cpu,cpuacct/sub" {
		t.Errorf("cpu = %+v", h)
	}
	if lay.V1["cpu"].Mount != lay.V1["cpuacct"].Mount {
		t.Error("cpu and cpuacct should share the comounted hierarchy")
	}
	// The pids mount shows another subtree: own cgroup unreachable.
	if h := lay.V1["pids"]; h == nil || h.Mount != "/mnt/my pids" || h.Dir != "" {
		t.Errorf("pids = %+v, want mount %q (unescaped) and no dir", h, "/mnt/my pids")
	}
}

func TestLayoutNone(t *testing.T) {
	lay := mustLayout(t, noneMountinfo, "")
	if lay.V2 != nil || len(lay.V1) != 0 {
		t.Errorf("layout = %+v, want nothing", lay)
	}
	lay = mustLayout(t, v1OnlyMountinfo, v1OnlyCgroup)
	if lay.V2 != nil {
		t.Errorf("v2 = %+v on a v1-only host", lay.V2)
	}
	if h := lay.V1["memory"]; h == nil || h.Dir != "/sys/fs/cgroup/memory/user.slice" {
		t.Errorf("memory = %+v", h)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := parseMountinfo([]byte("1 2 3 4\n")); err == nil {
		t.Error("mountinfo without separator accepted")
	}
	if _, err := parseProcCgroup([]byte("x:memory:/\n")); err == nil {
		t.Error("cgroup line with a bad id accepted")
	}
	if _, err := parseProcCgroup([]byte("no colons\n")); err == nil {
		t.Error("cgroup line without fields accepted")
	}
	// A path may contain colons.
	cgs, err := parseProcCgroup([]byte("0::/a:b\n"))
	if err != nil || len(cgs) != 1 || cgs[0].Path != "/a:b" {
		t.Errorf("parse 0::/a:b = %+v, %v", cgs, err)
	}
}

func TestParseFiles(t *testing.T) {
	kv := parseFlatKeyed([]byte("populated 1\nfrozen 0\n"))
	if kv["populated"] != 1 || kv["frozen"] != 0 || len(kv) != 2 {
		t.Errorf("cgroup.events = %v", kv)
	}
	kv = parseFlatKeyed([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"))
	if kv["oom_kill"] != 3 {
		t.Errorf("oom_control = %v", kv)
	}
	for in, want := range map[string]int64{"max\n": 0, "33554432\n": 33554432, "9223372036854771712\n": 0} {
		if got, err := parseLimit([]byte(in)); err != nil || got != want {
			t.Errorf("parseLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if pids, err := parsePids([]byte("12\n34\n")); err != nil || !slices.Equal(pids, []int{12, 34}) {
		t.Errorf("parsePids = %v, %v", pids, err)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"resilienced", "rtest-1a2b", "pool_1", "agent.3", "a@b:c"} {
		if err := validName(ok); err != nil {
			t.Errorf("validName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "a b", "memory.max", "cgroup.procs", "tasks"} {
		if err := validName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("validName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestCPUShares(t *testing.T) {
	for w, want := range map[int]int64{1: 10, 100: 1024, 10000: 102400} {
		if got := cpuShares(w); got != want {
			t.Errorf("cpuShares(%d) = %d, want %d", w, got, want)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	for _, s := range []string{pureV2Mountinfo, hybridMountinfo, containerMountinfo, noneMountinfo} {
		f.Add(s, hybridCgroup)
	}
	f.Fuzz(func(t *testing.T, mi, cg string) {
		mounts, err := parseMountinfo([]byte(mi))
		if err != nil {
			return
		}
		cgs, err := parseProcCgroup([]byte(cg))
		if err != nil {
			return
		}
		lay := resolveLayout(mounts, cgs)
		hs := slices.Collect(maps.Values(lay.V1))
		if lay.V2 != nil {
			hs = append(hs, lay.V2)
		}
		for _, h := range hs {
			if h.Dir == "" {
				continue
			}
			// The own directory never escapes its mount.
			if h.Path == "" || !strings.HasPrefix(h.Dir, path.Clean(h.Mount)) {
				t.Errorf("hierarchy %+v: dir outside the mount or without a path", *h)
			}
		}
	})
}
