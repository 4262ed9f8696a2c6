package main

import (
	"os"
	"syscall"
)

// pollableStdin returns stdin read through Go's netpoller when it is a
// pipe or a socket, as under resilienced. Go reads a blocking stdin in a
// system call that holds a P, and for ~10 ms after every read starts to
// wait the runtime's sysmon thread wakes every 20 µs to 10 ms to see
// whether to take the P back: ~0.85 ms of CPU each time the agent goes
// idle (after its handshake as a spare, after each call), more than the
// rest of a call. A non-blocking descriptor parks the reader in the
// netpoller instead, and an idle agent costs nothing (docs/PROTOCOL.md,
// "Agents in Go"). A terminal or a file is left as it is: O_NONBLOCK is
// on the open file, which a terminal shares with the shell.
func pollableStdin() *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(0, &st); err != nil {
		return os.Stdin
	}
	if mode := st.Mode & syscall.S_IFMT; mode != syscall.S_IFIFO && mode != syscall.S_IFSOCK {
		return os.Stdin
	}
	if err := syscall.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	// A new File sees the descriptor non-blocking and registers it with
	// the netpoller; os.Stdin was made blocking at init and is not used.
	return os.NewFile(0, "/dev/stdin")
}
