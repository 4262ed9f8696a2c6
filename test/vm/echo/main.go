// Command echo is the upstream of the VM test's net pool (test/vm): it
// writes back every byte it reads. It serves the listening socket systemd
// passes (echo.socket, Accept=no), or listens on the address given as its
// argument. One long-running process answers at once, where a process per
// connection would miss the agent's 500 ms deadline under emulation.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

func main() {
	l, err := listener(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// listener is fd 3 under socket activation, else a new listener on args[0].
func listener(args []string) (net.Listener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") == "1" {
		return net.FileListener(os.NewFile(3, "systemd socket"))
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("usage: echo ADDRESS (or run from a systemd socket unit)")
	}
	return net.Listen("tcp", args[0])
}
