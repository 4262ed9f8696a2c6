// Package contract checks an agent's output against the output contract of
// its pool: a JSON Schema, a size limit, a token limit and a deadline.
//
// A pool's contract is described by a [Spec] and compiled once with
// [Compile]; the resulting [Contract] is immutable and safe for concurrent
// use. [Contract.Check] runs on every call, so it decodes the output once and
// does no compilation. It checks, in order, and reports the first failure as
// a [Violation]:
//
//  1. size: the output is at most Spec.MaxOutputBytes ([CodeTooLarge]);
//  2. syntax: the output is exactly one JSON value, optionally surrounded by
//     whitespace, and valid UTF-8 ([CodeInvalidJSON]);
//  3. tokens: the token count is at most Spec.MaxTokens ([CodeTokens]). The
//     count is read from the output at the JSON pointer Spec.TokensPointer
//     when the output has a value there, and estimated as ⌈bytes/4⌉ otherwise;
//  4. schema: the output validates against Spec.Schema ([CodeSchema]).
//
// The deadline is not checked here: the contract knows nothing of processes
// or clocks. It only carries [Contract.Deadline] for the supervisor, which
// reports a missed deadline, a broken protocol or an agent that exited with
// [NewViolation] and the codes [CodeDeadline], [CodeProtocol] and [CodeExit],
// so that every way a call can fail its contract is one type.
//
// Violation messages are one line, at most about 200 bytes, and written for
// the person reading the log or the agent receiving it as feedback: the
// instance path and the reason for a schema failure, sizes in KiB/MiB, where
// a token count came from, the byte offset of a syntax error.
package contract
