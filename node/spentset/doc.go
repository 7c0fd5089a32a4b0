// Package spentset implements a storage server's durable spent set: every
// coin the server accepted, keyed by its public key (coin_pub), the request
// it paid for, the answer given to that request, and the coins still to be
// deposited at the mint. It is stored in one bbolt file. A [Store] is a
// protocol.SpentStore, the spent set a protocol.Paywall records coins in.
//
// # Recording a paid call
//
// After it has verified a call's spends and decided to serve the call, the
// server calls [Store.Record]. Record is atomic and durable before it
// returns: either every coin of the request is recorded, with the request
// and a pending deposit per coin, or nothing is. A coin already recorded
// for another request fails the whole call with a *[DoubleSpendError]; the
// same request ID with the same digest is a retry and gets the stored
// record back (with Replay set); the same ID with another digest is
// [ErrRequestConflict]. After serving the call the server stores its
// answer with [Store.Answer], so that a retry is answered without being
// served or charged again.
//
// # Group commit
//
// An fsync costs far more than the work of a transaction, so concurrent
// writes share transactions: each write is queued, and one committer
// goroutine runs everything queued in a single bbolt transaction, commits
// it with one fsync and wakes every caller with its own result. There is
// no timer: while one commit is in flight, the next batch gathers. A write
// that is refused (a double spend, say) has checked everything before
// writing anything, so it does not spoil the others of its batch. Batch
// and queue sizes are bounded ([WithMaxBatch], [WithMaxQueue]).
//
// A caller whose context ends while its write waits in the queue gets
// ctx.Err() and the write never runs. Once the committer has taken the
// write, the caller waits for that batch (one transaction) and gets the
// real outcome.
//
// # Deposits
//
// [Store.PendingDeposits] lists coins not yet deposited, oldest first, with
// the digest their spends signed; [Store.Acknowledge] records the mint's
// verdict on each. [Stats.PendingBearer] is the undeposited value of bearer
// (undesignated) coins, which another server could take first;
// [WithBearerCap] makes Record refuse bearer coins beyond a cap inside the
// same transaction. (protocol.BearerCap is the paywall's own bearer policy,
// counted in memory: use one of the two, and after a restart seed its count
// from [Stats.PendingBearer].) [Store.Prune] forgets requests whose
// keysets' deposit windows have closed, using the deadlines from
// [WithKeysets].
//
// # Consistency
//
// Counters ([Stats]) are updated in the transaction that changes the
// records, and [Store.Check] (run by [Open] unless [WithoutCheckOnOpen])
// verifies that they equal the sums over the records and that the indexes
// agree with them.
package spentset
