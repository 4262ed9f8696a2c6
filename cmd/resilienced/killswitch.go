package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/isolate"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// killSwitch wires the isolate package into the daemon: agent and node
// isolation, egress policies applied to each agent's cgroup before it
// starts, breaches turned into evidence, and per-pool circuit breakers.
type killSwitch struct {
	d  *daemon
	sw *isolate.Switch // nil when BPF is not usable; breakers still work

	mu       sync.Mutex
	policies map[string]string // agentID → pool, for agents with a policy
}

// kept are agents a previous instance left isolated (id → cgroup path):
// their pins stay.
func (d *daemon) startKillSwitch(ctx context.Context, cfg *config.Config, kept map[string]string) *killSwitch {
	k := &killSwitch{d: d, policies: make(map[string]string)}
	sw, err := isolate.New(ctx, isolate.Options{StateDir: cfg.StateDir, Name: d.name, Logger: d.log})
	if err != nil {
		// Without BPF the Switch still does node isolation, which the node
		// routes open on demand; this one is not kept.
		d.mode.Notes = append(d.mode.Notes, "kill switch: agent isolation and egress policies off: "+err.Error())
		if sw != nil {
			sw.Close()
		}
		return k
	}
	k.sw = sw
	// Agents of a previous instance were reaped before this, but for those
	// it kept isolated: pins that name others only keep dead cgroups cut
	// off, so drop them.
	if _, removed, err := sw.Reconcile(kept); err != nil {
		d.log.Warn("reconciling isolation pins", "err", err)
	} else if len(removed) > 0 {
		d.log.Info("removed isolation pins of agents that are gone", "agents", removed)
	}
	go k.breaches()
	return k
}

// supervisorOptions adds the Kill Switch's hooks.
func (k *killSwitch) supervisorOptions(o *supervisor.Options) {
	if k.sw == nil {
		return
	}
	o.OnSandbox = func(pc config.Pool, agentID string, sb supervisor.Sandbox) error {
		if pc.Network.Egress != config.EgressDeny {
			return nil
		}
		pol, err := isolate.ParsePolicy(string(pc.Network.Egress), pc.Network.Allow)
		if err != nil {
			return err
		}
		if err := k.sw.ApplyPolicy(agentID, sb.Path(), pol); err != nil {
			return fmt.Errorf("egress policy: %w", err)
		}
		k.mu.Lock()
		k.policies[agentID] = pc.Name
		k.mu.Unlock()
		return nil
	}
	o.OnAgentGone = func(agentID string, _ supervisor.Sandbox) {
		// The cgroup is about to go: so do its links and counters.
		k.mu.Lock()
		_, had := k.policies[agentID]
		delete(k.policies, agentID)
		k.mu.Unlock()
		if had {
			k.sw.RemovePolicy(agentID)
		}
		if k.sw.Isolated(agentID) {
			k.sw.Release(agentID)
		}
	}
}

// breaches turns egress policy breaches into what each pool's
// network.breach says: count (an event), isolate, or kill.
func (k *killSwitch) breaches() {
	for b := range k.sw.Breaches() {
		k.mu.Lock()
		pool := k.policies[b.AgentID]
		k.mu.Unlock()
		action := config.BreachCount
		if pc := k.d.cfg.Load().Pool(pool); pc != nil {
			action = pc.Network.Breach
		}
		reason := fmt.Sprintf("egress policy breach: %s %s (%d packets dropped)", b.Proto, b.Dst, b.Packets)
		k.d.sup.Emit(supervisor.Event{Time: b.Time, Kind: "breach", Pool: pool, Agent: b.AgentID, Reason: reason})
		switch action {
		case config.BreachIsolate:
			if err := k.isolateAgent(b.AgentID, "", reason); err != nil {
				k.d.log.Warn("isolating after a breach", "agent", b.AgentID, "err", err)
			}
		case config.BreachKill:
			k.d.sup.Kill(b.AgentID, supervisor.EventBreach, reason, b.Time)
		}
	}
}

func (k *killSwitch) isolateAgent(id, action, reason string) error {
	if k.sw == nil {
		return &api.Error{Status: http.StatusNotImplemented, Code: "not_supported", Message: "agent isolation is off on this node: " + k.note()}
	}
	sb, _, err := k.d.sup.AgentSandbox(id)
	if err != nil {
		return err
	}
	if sb == nil {
		return &api.Error{Status: http.StatusNotImplemented, Code: "not_supported", Message: "agent isolation needs cgroups, and this daemon runs agents in process groups"}
	}
	if err := k.sw.Isolate(id, sb.Path()); err != nil {
		return err
	}
	return k.d.sup.Isolate(id, action, reason)
}

// isolateServing isolates the agents running a call of a session this
// node has lost (cluster mode): with the Kill Switch where it can (BPF
// and a cgroup), else out of service alone; then the pool's
// isolate_action (kill by default: the pool replaces them).
func (k *killSwitch) isolateServing(pool, sess string, lost error) {
	for _, id := range k.d.sup.AgentsServing(pool, sess) {
		reason := fmt.Sprintf("serving session %s/%s, which this node lost: %v", pool, sess, lost)
		err := k.isolateAgent(id, "", reason)
		if err != nil && k.d.sup.Isolate(id, "", reason+" (no network cut: "+err.Error()+")") == nil {
			err = nil
		}
		if err != nil {
			k.d.log.Error("cluster: isolating an agent of a lost session", "agent", id, "pool", pool, "session", sess, "err", err)
			continue
		}
		k.d.log.Warn("cluster: agent of a lost session isolated", "agent", id, "pool", pool, "session", sess)
	}
}

func (k *killSwitch) note() string {
	for _, n := range k.d.mode.Notes {
		if len(n) > 11 && n[:11] == "kill switch" {
			return n
		}
	}
	return "BPF unavailable"
}

// IsolateRequest is the body of the isolation routes.
type IsolateRequest struct {
	Action string `json:"action,omitempty"` // kill | freeze | keep; default the pool's isolate_action
	Reason string `json:"reason,omitempty"`
}

func (k *killSwitch) routes(s *api.Server) {
	s.Handle("POST /v1/agents/{id}/isolate", func(w http.ResponseWriter, r *http.Request) {
		var req IsolateRequest
		if r.ContentLength > 0 && !api.DecodeBody(w, r, &req) {
			return
		}
		if req.Reason == "" {
			req.Reason = "isolated by operator"
		}
		if err := k.isolateAgent(r.PathValue("id"), req.Action, req.Reason); err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"isolated": r.PathValue("id")})
	})
	s.Handle("POST /v1/agents/{id}/release", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if k.sw == nil {
			api.WriteError(w, &api.Error{Status: http.StatusNotImplemented, Code: "not_supported", Message: "agent isolation is off on this node: " + k.note()})
			return
		}
		if err := k.sw.Release(id); err != nil && !errors.Is(err, isolate.ErrUnknownAgent) {
			api.WriteError(w, err)
			return
		}
		if err := k.d.sup.Release(id); err != nil && !errors.Is(err, supervisor.ErrUnknownAgent) {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"released": id})
	})
	s.Handle("POST /v1/node/isolate", func(w http.ResponseWriter, r *http.Request) {
		mesh := k.d.cfg.Load().Mesh
		if mesh.Interface == "" {
			api.WriteError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: errNoMesh.Error()})
			return
		}
		if err := k.isolateNode(r.Context(), "node isolated from mesh "+mesh.Interface); err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"node_isolated": true, "interface": mesh.Interface, "cidrs": mesh.CIDRs})
	})
	s.Handle("POST /v1/node/release", func(w http.ResponseWriter, r *http.Request) {
		if err := k.releaseNode(r.Context(), "node back on the mesh"); err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"node_isolated": false})
	})
	s.Handle("GET /v1/agents/{id}/drops", func(w http.ResponseWriter, r *http.Request) {
		if k.sw == nil {
			api.WriteError(w, &api.Error{Status: http.StatusNotImplemented, Code: "not_supported", Message: k.note()})
			return
		}
		ds, err := k.sw.Drops(r.PathValue("id"))
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, ds)
	})
}

// errNoMesh: node isolation without mesh: in the config.
var errNoMesh = errors.New("node isolation needs `mesh: {interface: IFACE, cidrs: [...]}` in the config")

// nodeSwitch is the Switch for node isolation: the Kill Switch's, or,
// when BPF is off, a netlink-only one that done closes.
func (k *killSwitch) nodeSwitch(ctx context.Context) (sw *isolate.Switch, done func(), err error) {
	if k.sw != nil {
		return k.sw, func() {}, nil
	}
	// Node isolation is netlink only: it works without BPF.
	sw, err = isolate.New(ctx, isolate.Options{StateDir: k.d.cfg.Load().StateDir, Name: k.d.name, Logger: k.d.log})
	if sw == nil {
		return nil, nil, err
	}
	return sw, func() { sw.Close() }, nil
}

// isolateNode cuts this node off the config's mesh (netlink; the state
// survives a restart of the daemon) and says so in the event log.
func (k *killSwitch) isolateNode(ctx context.Context, why string) error {
	mesh := k.d.cfg.Load().Mesh
	if mesh.Interface == "" {
		return errNoMesh
	}
	sw, done, err := k.nodeSwitch(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := sw.IsolateNode(ctx, isolate.Mesh{Interface: mesh.Interface, CIDRs: mesh.CIDRs}); err != nil {
		return err
	}
	if c := k.d.cluster; c != nil && c.mesh != nil {
		c.mesh.SetCutOff(why)
	}
	k.d.sup.Emit(supervisor.Event{Kind: supervisor.EventIsolate, Reason: why})
	return nil
}

// releaseNode undoes isolateNode (also one done by a previous daemon).
func (k *killSwitch) releaseNode(ctx context.Context, why string) error {
	sw, done, err := k.nodeSwitch(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := sw.ReleaseNode(ctx); err != nil {
		return err
	}
	if c := k.d.cluster; c != nil && c.mesh != nil {
		c.mesh.SetCutOff("")
	}
	k.d.sup.Emit(supervisor.Event{Kind: supervisor.EventRelease, Reason: why})
	return nil
}

func (k *killSwitch) close() {
	if k.sw != nil {
		k.sw.Close() // pins stay: isolation outlives the daemon
	}
}
