// Package protocol implements scrip's wire protocols over libp2p: the
// protocol IDs and wire limits, length-delimited protobuf framing with caps
// enforced before allocation, one request and one response per stream
// ([Call] and [NewStreamHandler]), typed error codes mapped to sentinel
// errors, request digests, signed price schedules, integer price arithmetic
// and the permuted ring that places shares on servers.
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
