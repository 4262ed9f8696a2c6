package config

import (
	"fmt"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// CurrentVersion is the configuration format this build reads into
// [Config], and writes in its examples. A file states its format with a
// top-level `version:` key; a file without one is version 1, the format
// that had no key, so that files written before the key existed keep
// working.
//
// When the format changes incompatibly (a key renamed, a meaning changed),
// CurrentVersion grows by one and a migration from the previous version
// joins [migrations]: files in an older format are then rewritten, as YAML
// nodes that keep their lines and columns, one version at a time up to the
// current one, and decoded as if they had been written in it. A file in a
// newer format than this build knows is refused, never guessed at.
const CurrentVersion = 1

// oldestVersion is the oldest format this build can migrate from.
const oldestVersion = 1

// A migration rewrites the root mapping of a file in version v, in place,
// into version v+1, reporting what it cannot carry over through d. It must
// keep the nodes it moves, so that errors point into the file as written.
type migration func(d *decoder, root *yaml.Node)

// migrations holds the migration out of each version below CurrentVersion,
// keyed by the version it reads. There are none yet.
var migrations = map[int]migration{}

func unsupportedVersion(v int) string {
	reads := strconv.Itoa(CurrentVersion)
	if oldestVersion < CurrentVersion {
		reads = fmt.Sprintf("%d to %d", oldestVersion, CurrentVersion)
	}
	return fmt.Sprintf("config version %d is not supported (this build reads %s)", v, reads)
}

// fileVersion reads the version key of the root mapping: 1 when it is
// missing or null. It reports a version that is not an integer, or that
// this build does not read, and then returns false: the rest of such a
// file is in a format this build does not know, and every error it would
// find there is noise.
func (d *decoder) fileVersion(root *yaml.Node) (int, bool) {
	if root.Kind != yaml.MappingNode {
		return CurrentVersion, true // decode reports what the root is
	}
	for _, p := range d.pairs(root, "") {
		if p.key != "version" {
			continue
		}
		d.keys["version"] = p.k
		var v int
		if isNull(resolve(p.v)) {
			return oldestVersion, true
		}
		d.decode(p.v, "version", reflect.ValueOf(&v).Elem(), false)
		if d.bad["version"] {
			return 0, false
		}
		if v < oldestVersion || v > CurrentVersion {
			d.fail(resolve(p.v), "version", "%s", unsupportedVersion(v))
			return 0, false
		}
		return v, true
	}
	return oldestVersion, true
}

// migrate brings root from version from to version to with the migrations
// in steps, and sets its version key, if any, to to. It reports false when
// a step reported errors.
func (d *decoder) migrate(root *yaml.Node, from, to int, steps map[int]migration) bool {
	n := len(d.errs)
	for v := from; v < to; v++ {
		step := steps[v]
		if step == nil {
			// A version bump without its migration: a bug of this build.
			d.errorf(d.nodes["version"], "version", "internal error: no migration from config version %d", v)
			return false
		}
		step(d, root)
		// A step rewrote the tree: the memoized pairs are stale.
		clear(d.merged)
	}
	if from != to {
		if vn := d.nodes["version"]; vn != nil {
			vn.Value, vn.Tag = strconv.Itoa(to), "!!int"
		}
	}
	return len(d.errs) == n
}
