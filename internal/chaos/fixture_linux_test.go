package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/isolate"
	"github.com/resilienced/resilienced/internal/supervisor"
	"github.com/resilienced/resilienced/internal/testagent"
)

// flaky is the example agent, built once for the package's tests.
func flaky(t testing.TB) string { return testagent.Flaky(t) }

// fixture is a real supervisor running one pool of flaky agents, in cgroups
// when the test runs as root, in process groups otherwise.
type fixture struct {
	sup    *supervisor.Supervisor
	cg     *cgroup.Manager
	pool   string
	eng    *Engine
	iso    *isolate.Switch
	isoErr error
	upAddr string
	rooted bool
}

type poolOpts struct {
	replicas, spares int
	memory           int64
	ping             time.Duration
	extraArgs        []string
}

func newFixture(t testing.TB, o poolOpts) *fixture {
	t.Helper()
	f := &fixture{pool: "chaos" + fmt.Sprint(time.Now().UnixNano()%100000)}
	opts := supervisor.Options{Logger: quietLogger()}
	if os.Geteuid() == 0 {
		no := false
		m, err := cgroup.Open(cgroup.Options{Name: "resilienced-chaos-test-" + f.pool, Delegate: &no})
		if err != nil {
			t.Fatal(err)
		}
		if m.Mode() != cgroup.ModeNone {
			f.cg = m
			f.rooted = true
			opts.Sandboxes = supervisor.CgroupSandboxes(m)
		}
	}
	f.upAddr = startUpstream(t)
	f.sup = supervisor.New(opts)

	pc := config.DefaultPool()
	pc.Name = f.pool
	args := []string{flaky(t), "-seed", "1", "-upstream", f.upAddr, "-verify-jwt"}
	pc.Command = append(args, o.extraArgs...)
	pc.Replicas, pc.Spares = max(o.replicas, 1), o.spares
	pc.MaxSpares = pc.Spares
	pc.Retries = 5
	pc.Backoff.Initial = 0
	pc.Intensity = config.Intensity{MaxRestarts: 1000, Period: 10 * time.Second}
	pc.Limits.Memory = o.memory
	if o.ping > 0 {
		pc.PingInterval = o.ping
		pc.PingTimeout = o.ping / 2
	}
	pc.Contract.Schema = json.RawMessage(`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"}}}`)
	pc.Contract.Deadline = 5 * time.Second
	pc.Contract.MaxOutputBytes = 64 << 10
	if err := f.sup.Apply(context.Background(), &config.Config{Pools: []config.Pool{pc}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.sup.Stop(ctx)
		if f.cg != nil {
			if err := f.cg.Shutdown(ctx); err != nil {
				t.Errorf("removing the test's cgroups: %v", err)
			}
		}
		if f.iso != nil {
			f.iso.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.sup.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	eo := Options{Supervisor: f.sup, Logger: quietLogger()}
	if f.rooted {
		f.iso, f.isoErr = isolate.New(context.Background(), isolate.Options{Logger: quietLogger()})
		eo.Isolator, eo.IsolatorErr = f.iso, f.isoErr
	}
	f.eng = New(eo)
	return f
}

// startUpstream is the agents' upstream: a TCP echo server on loopback.
func startUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// agentIDs returns the pool's live agents.
func (f *fixture) agentIDs(t *testing.T) map[string]supervisor.AgentStatus {
	t.Helper()
	as, err := f.sup.Agents(f.pool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]supervisor.AgentStatus{}
	for _, a := range as {
		out[a.ID] = a
	}
	return out
}

// call makes one call with a timeout.
func (f *fixture) call(t *testing.T, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := f.sup.Call(ctx, f.pool, supervisor.CallRequest{Input: CallInput(1)})
	return err
}

// procState returns the state letter of /proc/PID/stat ("R", "S", "T", ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// cgroupFrozen reads "frozen" from a cgroup2 directory's cgroup.events.
func cgroupFrozen(dir string) bool {
	fh, err := os.Open(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if sc.Text() == "frozen 1" {
			return true
		}
	}
	return false
}
