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

// Keeper holds what a next instance needs of every live agent, and mirrors
// it into a Store when there is one. Safe for concurrent use.
//
// It holds no duplicate of an agent's pipes or pidfd while the agent runs
// here: descriptors are what bounds the agents of a node (RLIMIT_NOFILE),
// and duplicates would double them. Under a store, every file is stored
// when the agent is kept and only the state record stays open here (it is
// rewritten in place). In memory, an agent's files are taken from its
// [Source] only at a handover ([Keeper.Hold], [Keeper.Handover]), while
// this process's own ends are still open.
type Keeper struct {
	store Store // nil: in memory only, for a handover
	log   *slog.Logger

	mu     sync.Mutex
	agents map[string]*kept
}

// Source gives duplicates of an agent's pidfd and pipes (not its state
// record), which the caller then owns.
type Source func() (Files, error)

type kept struct {
	rec Record
	// files are the agent's files held for a next instance: its state
	// record (under a store, from Keep on; in memory, from Hold on), and
	// its pidfd and pipes once held (in memory, from Hold on; always, for
	// an agent with no Source).
	files Files
	src   Source
	size  int // bytes of the record written so far
}

// NewKeeper returns a Keeper; store may be nil.
func NewKeeper(store Store, log *slog.Logger) *Keeper {
	if log == nil {
		log = slog.Default()
	}
	return &Keeper{store: store, log: log, agents: map[string]*kept{}}
}

// Keep records a ready agent whose files src gives. Under a store they
// are stored now, and closed here; in memory, src is called at the
// handover. An error leaves nothing kept: the agent then simply does not
// outlive the daemon.
func (k *Keeper) Keep(rec Record, src Source) error {
	rec.Version = RecordVersion
	if err := rec.Validate(); err != nil {
		return err
	}
	kp := &kept{rec: rec, src: src}
	if k.store != nil {
		if err := k.storeAll(kp); err != nil {
			return err
		}
	}
	k.put(rec.ID, kp)
	return nil
}

// storeAll makes kp's state record and stores it and the agent's files,
// keeping only the record open here.
func (k *Keeper) storeAll(kp *kept) error {
	files, err := kp.src()
	if err != nil {
		return fmt.Errorf("adopt: files of %s: %w", kp.rec.ID, err)
	}
	defer files.Close() // the store has them
	if err := k.makeState(kp); err != nil {
		return err
	}
	files.State = kp.files.State
	streams, fs := files.List()
	for i, s := range streams {
		if err := k.store.Store(FDName(kp.rec.ID, s), fs[i]); err != nil {
			k.removeFromStore(kp.rec.ID, streams[:i])
			kp.files.Close()
			return fmt.Errorf("adopt: storing %s: %w", FDName(kp.rec.ID, s), err)
		}
	}
	files.State = nil // kp's
	return nil
}

// makeState makes kp's state record, a memfd, and writes the record.
func (k *Keeper) makeState(kp *kept) error {
	fd, err := unix.MemfdCreate("resilienced-agent:"+kp.rec.ID, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("adopt: memfd for %s: %w", kp.rec.ID, err)
	}
	kp.files.State = os.NewFile(uintptr(fd), "state:"+kp.rec.ID)
	if kp.size, err = writeRecord(kp.files.State, &kp.rec, 0); err != nil {
		kp.files.State.Close()
		kp.files.State = nil
		return fmt.Errorf("adopt: record of %s: %w", kp.rec.ID, err)
	}
	return nil
}

// Hold takes agent id's files now, for a handover: called before this
// process closes its own ends of the agent's pipes. Under a store, or
// for an agent held already, it does nothing.
func (k *Keeper) Hold(id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	kp := k.agents[id]
	if kp == nil || k.store != nil { // the store has them
		return nil
	}
	return k.holdLocked(kp)
}

func (k *Keeper) holdLocked(kp *kept) error {
	if kp.src == nil {
		return nil
	}
	files, err := kp.src()
	if err != nil {
		return fmt.Errorf("adopt: files of %s: %w", kp.rec.ID, err)
	}
	if kp.files.State == nil {
		if err := k.makeState(kp); err != nil {
			files.Close()
			return err
		}
	}
	files.State = kp.files.State
	kp.files, kp.src = files, nil
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
	if kp.files.State == nil {
		return // written when it is made
	}
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
// a re-executed binary to inherit. The files stay the Keeper's. An agent
// not held yet is held now; one whose files cannot be had any more (its
// ends closed before Hold) is left out.
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
		kp := k.agents[id]
		if err := k.holdLocked(kp); err != nil {
			k.log.Warn("an agent cannot be handed over", "agent", id, "err", err)
			continue
		}
		streams, fs := kp.files.List()
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
// the store already (or were handed over), and files.State is its record,
// rewritten as rec. With a Source (the adopted agent owns copies of its
// pidfd and pipes), the Keeper keeps only the record, and only under a
// store; without one (an isolated agent kept frozen, with no process
// handle here), it keeps every file.
func (k *Keeper) Adopt(rec Record, files Files, src Source) error {
	rec.Version = RecordVersion
	if err := rec.Validate(); err != nil {
		return err
	}
	if files.State == nil {
		return fmt.Errorf("%w: agent %s has no state record", ErrIncomplete, rec.ID)
	}
	kp := &kept{rec: rec, files: files, src: src}
	if src != nil {
		state := files.State
		files.State = nil
		files.Close() // the agent has its own; the store, its copies
		kp.files = Files{State: state}
		if k.store == nil {
			state.Close() // made again at the handover
			kp.files.State = nil
			k.put(rec.ID, kp)
			return nil
		}
	}
	if fi, err := kp.files.State.Stat(); err == nil {
		kp.size = int(fi.Size())
	}
	var err error
	if kp.size, err = writeRecord(kp.files.State, &rec, kp.size); err != nil {
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
