// Package testagent builds the example agent, examples/agents/flaky, for
// the tests and benchmarks of other packages: once per test binary, into a
// temporary directory that [Cleanup] removes (call it from TestMain). The
// tests run the agent a real pool would run, not a stand-in.
package testagent
