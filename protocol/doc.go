// Package protocol implements scrip's wire protocols over libp2p: the
// protocol IDs and wire limits, length-delimited protobuf framing with caps
// enforced before allocation, one request and one response per stream
// ([Call] and [NewStreamHandler]), typed error codes mapped to sentinel
// errors, request digests, signed price schedules, integer price
// arithmetic, the permuted ring that places shares on servers, the
// paid-call machinery of both sides, and the storage and mint services.
//
// The messages themselves are in package
// github.com/scripnet/scrip/protocol/pb. The byte layout of everything this
// package hashes, signs or sends is in SPEC.md.
//
// # Streams
//
// A caller opens a stream for [StorageID] or [MintID], sends one pb.Request
// whose body is the serialized operation message and whose spends pay for
// it, and reads one pb.Response. The body is kept as bytes so that the
// [RequestDigest] that spends sign is computed over exactly the bytes sent.
// Every read is bounded by the protocol's caps ([CapsFor]); every stream has
// deadlines; every error path resets the stream.
//
// # Errors
//
// An error answer carries a pb.Code. A received answer is an *[Error];
// errors.Is matches it against its code's sentinel ([ErrPaymentRequired],
// ...), and errors.As gives its message and, for PAYMENT_REQUIRED, the
// server's current [SignedSchedule] and the exact quote. Handlers return
// errors; [EncodeError] maps them, package coin's included, to codes.
//
// # Paid calls
//
// A server puts a [Paywall] in front of a service: the service decodes
// each request into an [Operation] (its request ID, the schedule it is
// paid under, its [Usage], a check that refuses what the server cannot
// serve, and the handler). The paywall prices the call with a
// [PriceSource], checks the coins, verifies them together with those of
// concurrent calls ([BatchVerifier]), admits bearer coins through a
// [DepositPolicy], records them in a [SpentStore] and only then runs the
// handler. A retry with the same request ID and body gets the recorded
// answer and is never charged twice. A deposit made before serving that
// the mint does not answer ([DepositUnsettledError]) leaves the coins
// recorded as credit and the call answered INTERNAL; the retry is served
// on that credit once the policy agrees ([CreditPolicy]). [PriceBook],
// [KeysetList], [BearerCap] and [MemSpentStore] are simple
// implementations of the interfaces; the durable spent set is in package
// node.
//
// A client makes calls with a [PaidClient]: it pays up front under the
// server's schedule it knows, with coins from a [Payer] (the wallet), and
// when the server asks for other pay it lets a [PaymentPolicy] decide.
// A request whose outcome is unknown (no answer, or INTERNAL) is sent
// again unchanged, a bounded number of times ([WithRetries]).
// [OutcomeOf] tells the wallet what became of the coins of an attempt.
// [NewResourceManager] gives a libp2p host scrip's per-protocol and
// per-peer stream limits.
//
// # Storage
//
// [StorageServer] serves the storage protocol from a [StorageBackend]
// behind a paywall ([MemBackend] keeps shares in memory);
// [StorageClient] has one method per operation. [StorageUsage] defines
// what each paid operation is charged for.
//
// # Prices and placement
//
// A server signs a [Schedule] of [Rates] with its libp2p key
// ([SignSchedule]); clients check it with [VerifySchedule] or
// [ParseSignedSchedule] and price a call with [Quote], which is exact
// integer arithmetic rounding up. [Ring] orders servers for a storage index;
// [FirstM] gives the first few more cheaply.
//
// This package picks no pricing policy: rates come from the caller.
package protocol
