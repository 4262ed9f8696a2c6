package adopt

import (
	"fmt"
	"os"
	"slices"
)

// Files are an agent's kept descriptors.
type Files struct {
	State  *os.File // the memfd holding its Record
	Pidfd  *os.File
	Stdin  *os.File // the write end of its stdin
	Stdout *os.File // the read end of its stdout
	Stderr *os.File // the read end of its stderr
}

func (fs *Files) slot(stream string) **os.File {
	switch stream {
	case StreamState:
		return &fs.State
	case StreamPidfd:
		return &fs.Pidfd
	case StreamStdin:
		return &fs.Stdin
	case StreamStdout:
		return &fs.Stdout
	case StreamStderr:
		return &fs.Stderr
	}
	return nil
}

// List returns the files with their streams, in the order of [Streams],
// leaving out those that are nil.
func (fs *Files) List() (streams []string, files []*os.File) {
	for _, s := range Streams {
		if f := *fs.slot(s); f != nil {
			streams = append(streams, s)
			files = append(files, f)
		}
	}
	return streams, files
}

// Close closes every file.
func (fs *Files) Close() {
	for _, s := range Streams {
		if p := fs.slot(s); *p != nil {
			(*p).Close()
			*p = nil
		}
	}
}

// Agent is one agent a previous instance left: its record and files.
type Agent struct {
	ID     string
	Record *Record // nil when Err is set
	Files  Files
	// Err says why it cannot be adopted as it is (files missing, record
	// unreadable); its process, if any, is to be killed.
	Err error
}

// Named is an inherited descriptor with its name.
type Named struct {
	Name string
	File *os.File
}

// Collect sorts inherited descriptors into agents, by name
// (<agent id>/<stream>), and returns the others (the API socket) apart.
// An agent whose files are not all there, or whose record cannot be read,
// is returned with Err set. Duplicate files of one stream are closed.
func Collect(named []Named) (agents []*Agent, others []Named) {
	byID := map[string]*Agent{}
	for _, n := range named {
		id, stream, ok := ParseFDName(n.Name)
		if !ok {
			others = append(others, n)
			continue
		}
		a := byID[id]
		if a == nil {
			a = &Agent{ID: id}
			byID[id] = a
		}
		p := a.Files.slot(stream)
		if *p != nil {
			n.File.Close() // the store had two: keep the first
			continue
		}
		*p = n.File
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		a := byID[id]
		var missing []string
		for _, s := range Streams {
			if *a.Files.slot(s) == nil {
				missing = append(missing, s)
			}
		}
		switch {
		case len(missing) > 0:
			a.Err = fmt.Errorf("%w: agent %s has no %v", ErrIncomplete, id, missing)
			if a.Files.State != nil {
				a.Record, _ = ReadRecord(a.Files.State) // to find its process
			}
		default:
			r, err := ReadRecord(a.Files.State)
			if err == nil && r.ID != id {
				err = fmt.Errorf("%w: the record of %s names agent %s", ErrBadRecord, id, r.ID)
			}
			a.Record, a.Err = r, err
		}
		agents = append(agents, a)
	}
	return agents, others
}

// Dup returns duplicates of the pidfd and pipes (not the state record),
// for an adopted agent to own while fs stays with the Keeper.
func (fs *Files) Dup() (Files, error) {
	var out Files
	for _, s := range []string{StreamPidfd, StreamStdin, StreamStdout, StreamStderr} {
		f := *fs.slot(s)
		if f == nil {
			continue
		}
		d, err := Dup(f)
		if err != nil {
			out.Close()
			return Files{}, err
		}
		*out.slot(s) = d
	}
	return out, nil
}
