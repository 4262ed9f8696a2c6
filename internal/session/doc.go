// Package session is resilienced's durable state: session contexts,
// idempotent call results, the event journal and a small key/value space
// for other packages, all in one bbolt file in the daemon's state dir.
//
// A session's context is the ordered list of its validated exchanges
// (input and output of one call). The supervisor reads it with
// [Store.Context] before a call and, once the output has passed its
// contract, appends the exchange with [Store.Append]; a violating output is
// simply never appended. Append returns only after the exchange is on disk
// (an fsync'd bbolt commit), so every exchange acknowledged to a caller
// survives a crash (kill -9, power loss on a disk that honours fsync).
// Each exchange gets a per-session sequence number; [Limit] trims the
// window from the oldest entry by count and by bytes, and expires the
// session after it has been idle for its TTL.
//
// Idempotency: a call with an idempotency key stores its result under that
// key in the same transaction as its exchange ([Store.Append]) or on its own
// for a sessionless call ([Store.PutResult]). A retried call finds it with
// [Store.Result] and is not run again, also after a restart; an Append that
// races with (or retries) a completed one is not applied twice and returns
// [ErrDuplicate] with the exchange stored first.
//
// Group commit: every write goes through one committer goroutine. While a
// commit is being fsync'd, new writes queue up; the committer then waits up
// to [Options.MaxBatchDelay] (1ms) for as many writes as its previous
// commit carried (the callers it just woke are about to return with their
// next write), applies them all in one bbolt transaction, and wakes their
// callers only after that commit is on disk. Writes per fsync thus grow
// with concurrency, none is acknowledged early, and a lone writer does not
// wait. A write that fails is taken out of its batch and the rest retried.
//
// bbolt's DB.Batch was evaluated and not used: it commits when a timer
// started by the batch's first write fires, so a lone call always waits the
// full delay and the batch size follows the timer rather than the writers
// waiting, and a queued write cannot be withdrawn when its caller's context
// ends. Measured side by side (go test -bench Append) it was slower at
// every concurrency, and slowest for a lone call.
//
// The store knows nothing of processes, agents or pools beyond their names.
// Reads are plain bbolt read transactions and never wait for a commit.
// Expiry is lazy and explicit: an idle session or an old result is
// invisible as soon as it expires and is removed from the file by
// [Store.Expire], which the daemon calls periodically.
package session
