// Package jsonl is a bounded journal on disk: one JSON value per line, in
// segment files under a directory, the oldest segment deleted once there
// are more than a set number. The daemon's histories (the Arbiter's
// samples, the supervisor's events) live in it rather than in memory or in
// the bbolt state file, so that however long the daemon runs they cost it
// neither memory nor mapped pages: its RSS stays flat while they fill.
//
// Writes go through a buffer flushed at least every Options.FlushEvery;
// lines reach the page cache, not the disk (no fsync): a crash of the
// daemon loses at most what the buffer held, a crash of the machine what
// the kernel had not written back. A line that does not decode (the last
// one, torn by a crash) is skipped when read.
package jsonl
