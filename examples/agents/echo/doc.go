// Package echo holds echo.c, a lean example agent for resilienced written
// in C: it speaks the native agent protocol (JSON-RPC 2.0, one JSON object
// per line on stdin/stdout, its log on stderr) and answers each call by
// echoing its input, as {"answer": INPUT, "context_len": N}, where INPUT is
// the params' input if it is a JSON string and its JSON text as a string
// otherwise, and N the number of context entries. Benchmarks of the
// daemon's call path drive it so that the agent's own cost per call stays
// small beside the daemon's: a Go agent spends more CPU per call in its
// runtime than this one spends in all.
//
// The Go code here is only its tests: conformance tests, a fuzz target and
// a benchmark against the Go example agent, examples/agents/flaky. Other
// packages' tests get the binary from internal/testagent's Echo, which
// compiles it with the first C compiler found. To build it by hand:
//
//	cc -O2 -o echo echo.c
//
// Usage:
//
//	echo [-method NAME]
//
// -method names the call method (default task/run). The agent also answers
// initialize and ping; echo.c's opening comment says what it checks and
// answers on bad input.
package echo
