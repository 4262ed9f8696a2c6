package adopt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilienced/resilienced/internal/leakcheck"
)

func TestFDNames(t *testing.T) {
	for _, s := range Streams {
		id, stream, ok := ParseFDName(FDName("pool-12", s))
		if !ok || id != "pool-12" || stream != s {
			t.Errorf("ParseFDName(FDName(pool-12, %s)) = %q, %q, %v", s, id, stream, ok)
		}
	}
	for _, name := range []string{"resilienced.socket", "api", "pool-1/stdstuff", "/stdin", "a:b/stdin", "pool-1/stdin/x", "", "handover-ready"} {
		if _, _, ok := ParseFDName(name); ok {
			t.Errorf("ParseFDName(%q) accepted a name that is no agent's", name)
		}
	}
	for _, id := range []string{"", "a:b", "a b", "a/b", "a\x00", strings.Repeat("x", 250)} {
		if err := CheckID(id); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckID(%q) = %v, want ErrBadName", id, err)
		}
	}
	if err := CheckID("echo-1024"); err != nil {
		t.Error(err)
	}
}

func memfd(t *testing.T) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skip("no memfd:", err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	t.Cleanup(func() { f.Close() })
	return f
}

func record(id string) Record {
	return Record{Version: RecordVersion, ID: id, Pool: "p", PID: 1234, StartTime: 99, State: "active", ConfigDigest: "d", Started: time.Unix(1, 0).UTC()}
}

// A record rewritten shorter is padded, not truncated: what is read back
// is the newest record whole.
func TestRecordRewrittenInPlace(t *testing.T) {
	f := memfd(t)
	r := record("p-1")
	r.IsolateReason = strings.Repeat("long reason ", 20)
	n, err := writeRecord(f, &r, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.IsolateReason, r.State = "", "spare"
	if n2, err := writeRecord(f, &r, n); err != nil || n2 != n {
		t.Fatalf("rewrite: %d %v (want the length kept at %d)", n2, err, n)
	}
	got, err := ReadRecord(f)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "spare" || got.IsolateReason != "" || got.ID != "p-1" {
		t.Errorf("read back %+v", got)
	}
}

func TestReadRecordRefusesBadOnes(t *testing.T) {
	for name, body := range map[string]string{
		"not json":    "{",
		"old version": `{"v":0,"id":"p-1","pool":"p","pid":5,"state":"active"}`,
		"no pid":      `{"v":1,"id":"p-1","pool":"p","state":"active"}`,
		"bad id":      `{"v":1,"id":"p:1","pool":"p","pid":5,"state":"active"}`,
		"no pool":     `{"v":1,"id":"p-1","pid":5,"state":"active"}`,
	} {
		f := memfd(t)
		f.WriteAt([]byte(body), 0)
		if _, err := ReadRecord(f); err == nil {
			t.Errorf("%s: ReadRecord accepted %s", name, body)
		}
	}
}

// fakeStore records what the Keeper stores and removes.
type fakeStore struct {
	mu     sync.Mutex
	names  map[string]int
	failAt string
}

func (s *fakeStore) Store(name string, f *os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == s.failAt {
		return errors.New("store full")
	}
	s.names[name]++
	return nil
}

func (s *fakeStore) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, name)
	return nil
}

func pipeFiles(t *testing.T) Files {
	t.Helper()
	var fs Files
	for _, p := range []**os.File{&fs.Pidfd, &fs.Stdin, &fs.Stdout, &fs.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		*p = w
	}
	return fs
}

// sourceOf gives duplicates of fs, as an agent's Handles do.
func sourceOf(fs Files) Source { return fs.Dup }

// opened counts the descriptors opened since snap.
func opened(t *testing.T, snap *leakcheck.Snapshot) int {
	t.Helper()
	fds, err := snap.Opened()
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(fds)
}

// The Keeper holds no copy of a running agent's pidfd or pipes: in
// memory it holds nothing until the handover, under a store only the
// state record. Their copies are made at Hold, while the agent's own ends
// are open, and handed over whole.
func TestKeeperHoldsNoCopiesUntilTheHandover(t *testing.T) {
	const n = 50
	srcs := make([]Source, n)
	for i := range srcs {
		srcs[i] = sourceOf(pipeFiles(t))
	}
	for _, tc := range []struct {
		name     string
		store    Store
		perAgent int
	}{{"in memory", nil, 0}, {"under a store", &fakeStore{names: map[string]int{}}, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKeeper(tc.store, nil)
			defer k.Close()
			before := leakcheck.Take()
			for i, src := range srcs {
				if err := k.Keep(record(fmt.Sprintf("p-%d", i+1)), src); err != nil {
					t.Fatal(err)
				}
			}
			if got := opened(t, before); got > tc.perAgent*n {
				t.Errorf("%d agents kept: %d descriptors more, want at most %d", n, got, tc.perAgent*n)
			}
			if tc.store != nil {
				return
			}
			k.Update("p-1", func(r *Record) { r.State = "spare" })
			if err := k.Hold("p-1"); err != nil {
				t.Fatal(err)
			}
			if got := opened(t, before); got != FilesPerAgent {
				t.Errorf("one agent held: %d descriptors more, want %d", got, FilesPerAgent)
			}
			named := k.Handover()
			if len(named) != n*FilesPerAgent {
				t.Fatalf("handover: %d files, want %d", len(named), n*FilesPerAgent)
			}
			agents, _ := Collect(dupNamed(t, named))
			if len(agents) != n || agents[0].Err != nil || agents[0].Record.State != "spare" {
				t.Fatalf("collected %d agents, the first %+v", len(agents), agents[0])
			}
			for _, a := range agents {
				a.Files.Close()
			}
			k.Forget("p-1")
		})
	}
}

func TestKeeperStoresEveryStreamAndForgets(t *testing.T) {
	st := &fakeStore{names: map[string]int{}}
	k := NewKeeper(st, nil)
	if err := k.Keep(record("p-1"), sourceOf(pipeFiles(t))); err != nil {
		t.Fatal(err)
	}
	if err := k.Keep(record("p-2"), sourceOf(pipeFiles(t))); err != nil {
		t.Fatal(err)
	}
	if len(st.names) != 2*FilesPerAgent {
		t.Fatalf("stored %v, want %d names", st.names, 2*FilesPerAgent)
	}
	k.Update("p-1", func(r *Record) { r.State = "isolated"; r.IsolateReason = "evidence" })
	k.Update("nobody", func(r *Record) { t.Error("an unknown agent was updated") })
	named := k.Handover()
	if len(named) != 2*FilesPerAgent {
		t.Fatalf("handover: %d files", len(named))
	}
	agents, others := Collect(dupNamed(t, named))
	if len(others) != 0 || len(agents) != 2 {
		t.Fatalf("collected %d agents, %d others", len(agents), len(others))
	}
	if a := agents[0]; a.Err != nil || a.Record.State != "isolated" || a.Record.IsolateReason != "evidence" {
		t.Errorf("agent p-1 collected as %+v, %+v", a.Err, a.Record)
	}
	k.Forget("p-1")
	for name := range st.names {
		if strings.HasPrefix(name, "p-1/") {
			t.Errorf("%s still in the store after Forget", name)
		}
	}
	if k.Len() != 1 {
		t.Errorf("kept %d agents, want 1", k.Len())
	}
	// A store that refuses a file leaves nothing of the agent in it.
	st.failAt = FDName("p-3", StreamStdout)
	if err := k.Keep(record("p-3"), sourceOf(pipeFiles(t))); err == nil {
		t.Error("Keep succeeded though the store refused a file")
	}
	for name := range st.names {
		if strings.HasPrefix(name, "p-3/") {
			t.Errorf("%s left in the store by a failed Keep", name)
		}
	}
	k.Close()
}

// dupNamed gives Collect its own copies, as a new process would have.
func dupNamed(t *testing.T, named []Named) []Named {
	t.Helper()
	out := make([]Named, len(named))
	for i, n := range named {
		d, err := Dup(n.File)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = Named{Name: n.Name, File: d}
	}
	return out
}

func TestCollectFlagsIncompleteAgents(t *testing.T) {
	k := NewKeeper(nil, nil)
	if err := k.Keep(record("p-1"), sourceOf(pipeFiles(t))); err != nil {
		t.Fatal(err)
	}
	named := dupNamed(t, k.Handover())
	var kept []Named
	for _, n := range named {
		if n.Name == FDName("p-1", StreamStdout) {
			n.File.Close()
			continue
		}
		kept = append(kept, n)
	}
	r, w, _ := os.Pipe()
	defer w.Close()
	kept = append(kept, Named{Name: "resilienced.socket", File: r})
	agents, others := Collect(kept)
	if len(agents) != 1 || !errors.Is(agents[0].Err, ErrIncomplete) {
		t.Fatalf("collected %+v, want p-1 incomplete", agents)
	}
	if agents[0].Record == nil || agents[0].Record.PID != 1234 {
		t.Errorf("an incomplete agent's record is still read, to find its process: %+v", agents[0].Record)
	}
	if len(others) != 1 || others[0].Name != "resilienced.socket" {
		t.Errorf("others: %+v", others)
	}
	agents[0].Files.Close()
	k.Close()
}

// Check on real processes: alive and the same is adoptable; exited, or a
// record naming another start time, is not.
func TestCheckRealProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Skip("no pidfd:", err)
	}
	start, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rec := record("p-1")
	rec.PID, rec.StartTime = cmd.Process.Pid, start
	a := &Agent{ID: "p-1", Record: &rec, Files: Files{Pidfd: os.NewFile(uintptr(pfd), "pidfd")}}
	defer a.Files.Close()
	if err := Check(a); err != nil {
		t.Fatalf("a live process: %v", err)
	}
	other := rec
	other.StartTime++
	if err := Check(&Agent{ID: "p-1", Record: &other, Files: a.Files}); !errors.Is(err, ErrReused) {
		t.Errorf("another start time: %v, want ErrReused", err)
	}
	inCg := rec
	inCg.Cgroup = t.TempDir() // no cgroup.procs there
	if err := Check(&Agent{ID: "p-1", Record: &inCg, Files: a.Files}); !errors.Is(err, ErrCgroup) {
		t.Errorf("not in its cgroup: %v, want ErrCgroup", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := Check(a); !errors.Is(err, ErrGone) {
		t.Errorf("an exited process: %v, want ErrGone", err)
	}
}

func TestHandoverEnvRoundTrip(t *testing.T) {
	named := []Named{{Name: "p-1/stdin"}, {Name: "api"}}
	env := HandoverEnv(named)
	if env != EnvHandover+"=p-1/stdin:api" {
		t.Errorf("HandoverEnv = %q", env)
	}
	b, _ := json.Marshal(record("p-1"))
	if !strings.Contains(string(b), `"start_time":99`) {
		t.Errorf("record JSON: %s", b)
	}
}

func TestSystemdStoreSendsFDs(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/notify"
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	st, err := NewSystemdStore()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if err := st.Store(FDName("p-1", StreamStdin), w); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 256), make([]byte, 256)
	n, oobn, _, _, err := ln.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=p-1/stdin" {
		t.Errorf("message %q", got)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v %v", fds, err)
	}
	unix.Close(fds[0])
	if err := st.Remove(FDName("p-1", StreamStdin)); err != nil {
		t.Fatal(err)
	}
	n, _, _, _, _ = ln.ReadMsgUnix(buf, oob)
	if got := string(buf[:n]); got != "FDSTOREREMOVE=1\nFDNAME=p-1/stdin" {
		t.Errorf("message %q", got)
	}
}
