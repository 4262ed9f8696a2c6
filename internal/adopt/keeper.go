package adopt

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Store keeps files outside the daemon (systemd's fd store). Its methods
// must not block for long: they are called with supervisor locks held.
type Store interface {
	Store(name string, f *os.File) error
	Remove(name string) error
}

// Keeper holds every live agent's files and record, and mirrors them into
// a Store when there is one. Safe for concurrent use.
type Keeper struct {
	store Store // nil: in memory only, for a handover
	log   *slog.Logger

	mu     sync.Mutex
	agents map[string]*kept
}

type kept struct {
	rec   Record
	files Files
	size  int // bytes of the record written so far
}

// NewKeeper returns a Keeper; store may be nil.
func NewKeeper(store Store, log *slog.Logger) *Keeper {
	if log == nil {
		log = slog.Default()
	}
	return &Keeper{store: store, log: log, agents: map[string]*kept{}}
}

// Keep records a ready agent. It takes ownership of files (all but State,
// which Keep makes). An error leaves nothing kept: the agent then simply
// does not outlive the daemon.
func (k *Keeper) Keep(rec Record, files Files) error {
	rec.Version = RecordVersion
	if err := rec.Validate(); err != nil {
		files.Close()
		return err
	}
	fd, err := unix.MemfdCreate("resilienced-agent:"+rec.ID, unix.MFD_CLOEXEC)
	if err != nil {
		files.Close()
		return fmt.Errorf("adopt: memfd for %s: %w", rec.ID, err)
	}
	files.State = os.NewFile(uintptr(fd), "state:"+rec.ID)
	kp := &kept{rec: rec, files: files}
	if kp.size, err = writeRecord(files.State, &rec, 0); err != nil {
		files.Close()
		return fmt.Errorf("adopt: record of %s: %w", rec.ID, err)
	}
	if k.store != nil {
		streams, fs := files.List()
		for i, s := range streams {
			if err := k.store.Store(FDName(rec.ID, s), fs[i]); err != nil {
				k.removeFromStore(rec.ID, streams[:i])
				files.Close()
				return fmt.Errorf("adopt: storing %s: %w", FDName(rec.ID, s), err)
			}
		}
	}
	k.put(rec.ID, kp)
	return nil
}

// Update changes an agent's record (its state, say) in place; an agent
// not kept is ignored.
func (k *Keeper) Update(id string, change func(*Record)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	kp := k.agents[id]
	if kp == nil {
		return
	}
	change(&kp.rec)
	var err error
	if kp.size, err = writeRecord(kp.files.State, &kp.rec, kp.size); err != nil {
		k.log.Warn("updating an agent's state record", "agent", id, "err", err)
	}
}

// Forget drops an agent that is gone: its files leave the store and are
// closed.
func (k *Keeper) Forget(id string) {
	k.mu.Lock()
	kp := k.agents[id]
	delete(k.agents, id)
	k.mu.Unlock()
	if kp == nil {
		return
	}
	streams, _ := kp.files.List()
	k.removeFromStore(id, streams)
	kp.files.Close()
}

func (k *Keeper) removeFromStore(id string, streams []string) {
	if k.store == nil {
		return
	}
	for _, s := range streams {
		if err := k.store.Remove(FDName(id, s)); err != nil {
			k.log.Debug("removing from the fd store", "name", FDName(id, s), "err", err)
		}
	}
}

// Len is the number of agents kept.
func (k *Keeper) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.agents)
}

// Records returns the records of the agents kept, by id.
func (k *Keeper) Records() []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Record, 0, len(k.agents))
	for _, kp := range k.agents {
		out = append(out, kp.rec)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Handover returns every kept file with its name, agents in id order, for
// a re-executed binary to inherit. The files stay the Keeper's.
func (k *Keeper) Handover() []Named {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]string, 0, len(k.agents))
	for id := range k.agents {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []Named
	for _, id := range ids {
		streams, fs := k.agents[id].files.List()
		for i, s := range streams {
			out = append(out, Named{Name: FDName(id, s), File: fs[i]})
		}
	}
	return out
}

// Close closes every file kept, leaving the store as it is (the next
// instance takes them from there).
func (k *Keeper) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, kp := range k.agents {
		kp.files.Close()
		delete(k.agents, id)
	}
	return nil
}

// ErrNoStore: the daemon does not run under a service manager with a
// file descriptor store.
var ErrNoStore = errors.New("adopt: no file descriptor store (not under systemd)")

// Adopt keeps an agent adopted from a previous instance: its files are in
// the store already, and files.State is its record, rewritten as rec.
func (k *Keeper) Adopt(rec Record, files Files) error {
	rec.Version = RecordVersion
	if err := rec.Validate(); err != nil {
		return err
	}
	if files.State == nil {
		return fmt.Errorf("%w: agent %s has no state record", ErrIncomplete, rec.ID)
	}
	kp := &kept{rec: rec, files: files}
	if fi, err := files.State.Stat(); err == nil {
		kp.size = int(fi.Size())
	}
	var err error
	if kp.size, err = writeRecord(files.State, &rec, kp.size); err != nil {
		return fmt.Errorf("adopt: record of %s: %w", rec.ID, err)
	}
	k.put(rec.ID, kp)
	return nil
}

// Discard removes from the store the files of an agent that was not
// adopted.
func (k *Keeper) Discard(id string) { k.removeFromStore(id, Streams) }

// put keeps kp for agent id, closing the files of one it replaces.
func (k *Keeper) put(id string, kp *kept) {
	k.mu.Lock()
	old := k.agents[id]
	k.agents[id] = kp
	k.mu.Unlock()
	if old != nil {
		old.files.Close()
	}
}
