// Package fdlimit sizes a node's agents against its open-file limit
// (RLIMIT_NOFILE). Each running agent costs the daemon PerAgent
// descriptors at most (its stdin, stdout and stderr pipes and its pidfd;
// under systemd the state record the fd store mirrors), so the limit
// bounds how many agents a node can run: a config that wants more is
// refused with the numbers, rather than failing with "too many open
// files" at the agent that does not fit, over and over.
//
// The soft limit is raised to the hard one at start ([Raise]). Go's
// runtime already does this since Go 1.19, and os/exec gives child
// processes the original soft limit back (select(2) cannot take
// descriptors past 1024), so agents see the limit they would see without
// the daemon; Raise only makes it explicit and says what it got.
package fdlimit
