package isolate

// The object is built for little-endian targets only and only for Linux; the
// generated Go file and object are committed.
//go:generate go tool bpf2go -cc clang-16 -target bpfel -tags linux -type drop_stats -type policy_key -type policy_ports -type breach_event isolate ../../bpf/isolate.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
