// Package config loads the daemon's YAML configuration: the pools of agents,
// the supervision groups over them, and the daemon's own socket, state
// directory, metrics address and mesh.
//
// [Load] reads a file, [Parse] reads bytes. Both are strict and report every
// problem at once, as an [Errors] whose entries give the file, line, column
// and key path of each one:
//
//	demo.yaml:12:17: pools[1].contract.deadline: "5x" is not a duration
//	demo.yaml:14:5: pools[1].replicaz: unknown key; did you mean "replicas"?
//
// Unknown keys, duplicate keys, wrong types, bad enum values, durations and
// sizes, negative counts, names that are not [a-z][a-z0-9-]{0,39}, names
// used twice, group children that do not exist or have two parents, group
// cycles, and inline schemas that do not compile are all errors. An empty
// file is a valid configuration without pools.
//
// Durations are Go durations ("500ms", "24h"). Sizes are bytes, written as
// an integer or with a unit: B, KiB, MiB, GiB, TiB (powers of 1024) or KB,
// MB, GB, TB (powers of 1000); see [ParseSize].
//
// The top-level `version:` key names the format of the file; this build
// reads [CurrentVersion]. A file without it is version 1, so files written
// before the key existed keep working; a version this build does not know
// is refused before anything else is checked. A future format change adds
// a migration (see version.go) that rewrites older files as they are read.
//
// [Reference] documents every key in one table (type, default, one line),
// from which docs/CONFIG.md and resilienced.yaml(5) are generated.
//
// Every key a file leaves out gets its default (see [DefaultPool] and
// [DefaultGroup]); a key set to null also keeps its default. YAML anchors,
// aliases and "<<" merge keys work, so pools can share settings.
//
// A pool's contract schema is JSON Schema (2020-12 unless "$schema" says
// otherwise), written inline in YAML under contract.schema or kept in a JSON
// file named by contract.schema_file, relative to the configuration file.
// Either way it ends up as JSON in Contract.Schema, compiled once here to
// reject a broken schema at load time. External references ($ref to other
// files or URLs) are refused. [Parse] reads no files, so it leaves
// Contract.Schema empty for a schema_file; [Load] reads it.
//
// On reload, [Pool.Equal] tells which pools changed and must roll; every
// key takes part. The node-wide spawn budget is read through
// [Config.EffectiveSpawnBudget].
package config
