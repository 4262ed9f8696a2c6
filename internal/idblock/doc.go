// Package idblock hands out numbers that are unique across restarts of the
// process: agent ids, which events, logs, cgroups and isolation pins are
// keyed by, must never name two processes.
//
// Numbers are reserved from a small file a block at a time (one write and
// fsync per block, not per number), so a restart, or a crash, skips the
// rest of the block it was using but never hands out a number twice.
package idblock
