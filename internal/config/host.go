package config

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
)

// host checks what a pool needs of this host to start ([Check]).
func (v *validator) host(path string, p *Pool) {
	if p.Dir != "" {
		switch fi, err := os.Stat(p.Dir); {
		case errors.Is(err, fs.ErrNotExist):
			v.errorf(joinKey(path, "dir"), "%s does not exist: the agents would not start", p.Dir)
		case err != nil:
			v.errorf(joinKey(path, "dir"), "%v", err)
		case !fi.IsDir():
			v.errorf(joinKey(path, "dir"), "%s is not a directory", p.Dir)
		}
	}
	if p.User != "" {
		if _, err := user.Lookup(p.User); err != nil {
			v.errorf(joinKey(path, "user"), "no user %q on this host (%v)", p.User, err)
		}
	}
	if p.Group != "" {
		if _, err := user.LookupGroup(p.Group); err != nil {
			v.errorf(joinKey(path, "group"), "no group %q on this host (%v)", p.Group, err)
		}
	}
	if len(p.Command) > 0 {
		if msg := commandProblem(p.Command[0], p.Dir); msg != "" {
			v.errorf(joinIndex(joinKey(path, "command"), 0), "%s", msg)
		}
	}
}

// commandProblem says why argv0 would not run, or "". A path is taken
// relative to dir, as exec does; a bare name is looked up in PATH.
func commandProblem(argv0, dir string) string {
	if !strings.ContainsRune(argv0, '/') {
		if _, err := exec.LookPath(argv0); err != nil {
			return argv0 + " is not in PATH (" + os.Getenv("PATH") + "): write its path"
		}
		return ""
	}
	p := argv0
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p + " does not exist"
	case err != nil:
		return err.Error()
	case fi.IsDir():
		return p + " is a directory"
	case fi.Mode()&0o111 == 0:
		return p + " is not executable"
	}
	return ""
}
