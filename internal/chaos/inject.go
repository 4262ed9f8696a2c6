package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// faultInstance is one injected fault and how to undo it.
type faultInstance struct {
	kind Kind
	t0   time.Time // the injection; the clock of detect_ms and recover_ms starts here
	undo func(context.Context) error
	// extra is added to the recovery timeout (a leak's expected burn).
	extra time.Duration
	// onset (leak, oom) receives when the cgroup hit its limit: the first
	// OOM kill in it, or the helper's death if that came first; onsetErr
	// then says whether the helper died of something else.
	onset    <-chan time.Time
	onsetErr func() error
}

func noUndo(context.Context) error { return nil }

// inject injects one fault of kind into agent id. An error wrapping
// supervisor.ErrUnknownAgent means the agent went away before.
func (x *experiment) inject(ctx context.Context, kind Kind, id string, seed uint64) (*faultInstance, error) {
	sup := x.sup
	fi := &faultInstance{kind: kind, undo: noUndo}
	sb, pid, err := sup.AgentSandbox(id)
	if err != nil {
		return nil, err
	}
	// note records the injection time with the supervisor just before the
	// fault, so that its recovery event measures from it.
	note := func() error {
		fi.t0 = x.now()
		return sup.NoteFault(id, fi.t0)
	}
	clearFault := func(context.Context) error {
		if err := sup.ClearFault(id); err != nil && !errors.Is(err, supervisor.ErrUnknownAgent) {
			return err
		}
		return nil
	}
	inPath := func(f supervisor.Fault) (*faultInstance, error) {
		if err := note(); err != nil {
			return nil, err
		}
		f.Seed = seed
		if err := sup.InjectFault(id, f); err != nil {
			return nil, err
		}
		fi.undo = clearFault
		return fi, nil
	}

	switch kind {
	case Kill, Crash:
		if err := note(); err != nil {
			return nil, err
		}
		sig := sigKill
		if kind == Crash {
			sig = sigSegv
		}
		if err := signalProcess(pid, sig); err != nil {
			return nil, fmt.Errorf("%w %q: %v", supervisor.ErrUnknownAgent, id, err)
		}
		fi.undo = clearFault // forgets nothing it needs; harmless on a dead agent
		return fi, nil

	case Hang:
		if err := note(); err != nil {
			return nil, err
		}
		if sb != nil {
			fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := sb.Freeze(fctx)
			cancel()
			// Whatever happened, thaw on undo: a freeze that timed out
			// may still complete.
			fi.undo = func(ctx context.Context) error {
				clearFault(ctx)
				return sb.Thaw(ctx)
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				fi.undo(context.Background())
				return nil, fmt.Errorf("freezing the agent's cgroup: %w", err)
			}
			return fi, nil
		}
		if err := stopGroup(pid); err != nil {
			return nil, fmt.Errorf("%w %q: SIGSTOP: %v", supervisor.ErrUnknownAgent, id, err)
		}
		fi.undo = func(ctx context.Context) error {
			clearFault(ctx)
			return continueGroup(pid)
		}
		return fi, nil

	case Latency:
		return inPath(supervisor.Fault{Latency: time.Duration(x.spec.Latency), Jitter: time.Duration(x.spec.Jitter)})
	case Hallucinate:
		return inPath(supervisor.Fault{Hallucinate: x.spec.HallucinateRate, HallucinateKind: x.spec.HallucinateKind})
	case CorruptToken:
		return inPath(supervisor.Fault{CorruptTokens: true})

	case Sever:
		iso := x.e.opts.Isolator
		if sb == nil || iso == nil {
			return nil, fmt.Errorf("%w: the agent has no cgroup or the daemon no isolation", ErrNotSupported)
		}
		if err := note(); err != nil {
			return nil, err
		}
		if err := iso.Isolate(id, sb.Path()); err != nil {
			iso.Release(id)
			return nil, fmt.Errorf("isolating the agent: %w", err)
		}
		fi.undo = func(ctx context.Context) error {
			clearFault(ctx)
			return iso.Release(id)
		}
		return fi, nil

	case Leak, OOM:
		if sb == nil {
			return nil, fmt.Errorf("%w: the agent has no cgroup", ErrNotSupported)
		}
		limit := x.memLimit
		rate := int64(x.spec.LeakRate)
		if kind == OOM {
			rate = 0 // as fast as it can
		} else {
			burn := time.Duration(float64(limit) / float64(rate) * float64(time.Second))
			fi.extra = 2*burn + time.Second
		}
		h, err := startHelper(x.e.opts.HelperCommand, sb, string(kind), rate, 2*limit+64<<20)
		if err != nil {
			return nil, err
		}
		fi.undo = func(ctx context.Context) error {
			clearFault(ctx)
			return h.stop(ctx)
		}
		// A memory fault's recovery is measured from its onset (the OOM
		// kill), found later; t0 is the start of the allocation.
		fi.t0 = x.now()
		base, _ := sb.MemoryEvents()
		if err := h.begin(); err != nil {
			h.stop(ctx)
			return nil, fmt.Errorf("starting the memory helper: %w", err)
		}
		fi.onset = watchOnset(sb, base.OOMKill, h)
		fi.onsetErr = h.exitErr
		return fi, nil
	}
	return nil, fmt.Errorf("%w: kind %q", ErrInvalidSpec, kind)
}

// watchOnset polls the agent's memory events every millisecond for the
// first OOM kill beyond base, so that the onset of a memory fault is known
// to the millisecond rather than to the supervisor's poll interval. It
// sends once: the kill, or the helper's death if that is seen first.
func watchOnset(sb supervisor.Sandbox, base uint64, h *helper) <-chan time.Time {
	out := make(chan time.Time, 1)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case at := <-h.died:
				out <- at
				return
			case <-t.C:
			}
			me, err := sb.MemoryEvents()
			if err != nil {
				continue // gone: the helper's death comes next
			}
			if me.OOMKill > base {
				out <- time.Now()
				return
			}
		}
	}()
	return out
}
