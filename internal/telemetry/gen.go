package telemetry

// The BPF objects are generated from bpf/telemetry.c and committed, so that
// building the daemon needs no C toolchain. Regenerate (clang-16, libbpf-dev)
// with `go generate ./internal/telemetry`.

//go:generate go tool bpf2go -cc clang-16 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type event -type syscall_stats -type net_stats telemetry ../../bpf/telemetry.c -- -I/usr/include/x86_64-linux-gnu -I../../bpf/headers
