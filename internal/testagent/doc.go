// Package testagent builds the example agents for the tests and benchmarks
// of other packages: [Flaky], the Go agent of examples/agents/flaky, and
// [Echo], the lean C echo agent of examples/agents/echo. Each is built once
// per test binary, into one temporary directory that [Cleanup] removes
// (call it from TestMain). The tests run the agents a real pool would run,
// not stand-ins.
package testagent
