// Package adopt keeps, outside the daemon's memory, what a next instance of
// resilienced needs to take its agents back: each agent's stdin, stdout and
// stderr pipes, a pidfd, and a small state record (pid, process start time,
// cgroup, pool, config digest, state). Agents then outlive the daemon: a
// planned restart, an upgrade or a crash costs no agent its process.
//
// Where the files live:
//
//   - Under systemd, in the service's file descriptor store: every file is
//     sent with sd_notify "FDSTORE=1" and "FDNAME=<agent id>/<stream>"
//     ([SystemdStore]) and comes back to the next instance, even after
//     kill -9 of the daemon, in LISTEN_FDS and LISTEN_FDNAMES.
//   - Without systemd, in the daemon's memory only, and handed to the
//     re-executed binary on upgrade (SIGUSR2, `resilientctl upgrade`) as
//     inherited descriptors named in $RESILIENT_HANDOVER_FDNAMES. A kill -9
//     outside systemd loses them: the next instance reaps the agents.
//
// The state record is a memfd holding JSON, rewritten in place when the
// agent's state changes: the descriptor in the store sees every change, so
// the record is current however the daemon ends.
//
// A new instance [Collect]s the inherited files into [Agent]s and [Check]s
// each (process alive, the same process, still in its cgroup); the
// supervisor then pings it before adopting it. Every adoption and refusal is
// an event with its reason.
package adopt
