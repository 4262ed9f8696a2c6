package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/resilienced/resilienced/internal/cgroup"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// keptFile records, in the state directory, the agents isolated with
// action keep that the daemon left frozen when it stopped, for the next
// instance to list again until they are released.
const keptFile = "kept-agents.json"

// adoptKept reads the agents the previous instance kept and adopts their
// cgroups, so that the reaping of its leftovers spares them.
func (d *daemon) adoptKept(stateDir string) []supervisor.KeptAgent {
	b, err := os.ReadFile(filepath.Join(stateDir, keptFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var kept []supervisor.KeptAgent
	if err == nil {
		err = json.Unmarshal(b, &kept)
	}
	if err != nil {
		d.log.Error("reading the agents kept isolated by the previous instance: they are reaped", "file", filepath.Join(stateDir, keptFile), "err", err)
		return nil
	}
	var adopted []supervisor.KeptAgent
	for _, k := range kept {
		if _, err := d.cg.Adopt(k.Pool, k.ID); err != nil {
			d.log.Warn("a kept agent cannot be adopted", "agent", k.ID, "err", err)
			continue
		}
		adopted = append(adopted, k)
	}
	return adopted
}

// keptCgroups maps the kept agents to their cgroups, whose isolation pins
// stay.
func keptCgroups(cg *cgroup.Manager, kept []supervisor.KeptAgent) map[string]string {
	m := make(map[string]string, len(kept))
	for _, k := range kept {
		if c, err := cg.Adopt(k.Pool, k.ID); err == nil {
			m[k.ID] = c.Path()
		}
	}
	return m
}

// restoreKept lists the kept agents again, once their pools exist.
func (d *daemon) restoreKept(stateDir string, kept []supervisor.KeptAgent) {
	if len(kept) == 0 {
		return
	}
	restored, err := d.sup.RestoreKept(kept)
	if err != nil {
		d.log.Error("restoring agents kept isolated", "err", err)
	}
	if len(restored) > 0 {
		d.log.Info("agents kept isolated by the previous instance are listed again (frozen) until released", "count", len(restored))
	}
	// They live in memory now; the next stop writes whichever are still kept.
	if err := os.Remove(filepath.Join(stateDir, keptFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("removing the kept agents' record", "err", err)
	}
}

// saveKept records the agents the supervisor kept at its stop.
func (d *daemon) saveKept(stateDir string, kept []supervisor.KeptAgent) {
	path := filepath.Join(stateDir, keptFile)
	if len(kept) == 0 {
		os.Remove(path)
		return
	}
	b, _ := json.MarshalIndent(kept, "", "  ")
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, append(b, '\n'), 0o640)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		d.log.Error("recording the agents kept isolated: the next instance reaps them", "err", err)
		return
	}
	d.log.Info("agents isolated with action keep are left frozen for the next instance", "count", len(kept))
}
