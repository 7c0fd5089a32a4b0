// Package testvectors holds conformance test vectors for scrip's coins and
// wire protocol, usable by this implementation and any other:
// Wycheproof-style JSON files that a generator writes from fixed, seeded
// randomness, each with a JSON Schema.
//
// # Files
//
//   - keyset_test.json: signed keyset encodings for [coin.ParseKeyset]; the
//     valid ones with their keyset ID.
//   - coin_issue_test.json: Clause Blind Schnorr issuance transcripts, every
//     intermediate value of both sides, for [coin.NewWithdrawal],
//     [coin.Withdrawal.Challenges] and [coin.Withdrawal.Finish] (and, from
//     the group's test keyset secret, the mint's [coin.Signer]); invalid
//     commitments and answers the client must refuse. A valid transcript
//     carries every value; an invalid one stops at its fault, so a refused
//     commitment has no blinding factors (they depend on R0 and R1) nor
//     anything after them.
//   - coin_verify_test.json: coin encodings for [coin.ParseCoin] and
//     [coin.Verifier.VerifyCoin] at a given time and window.
//   - spend_verify_test.json: spend encodings for [coin.ParseSpend],
//     [coin.Verifier.VerifySpend] and [coin.Verifier.VerifyBatch].
//   - recoup_test.json: recoup proofs of coins of a revoked keyset (SPEC.md
//     §9 Recoup) for both sides: the wallet's [coin.NewRecoupProof] (from
//     seed, nonce, keyset, coin and the commitments R0, R1 that Restore
//     returns, the blinding factors and the challenge hash) and the mint's
//     [coin.Signer.RecoupHash] (from the group's test keyset secret, as in
//     coin_issue_test.json: R0, R1 from the nonce, then R'_0, R'_1, c0, c1
//     and the hash from the revealed factors and the coin), each compared
//     with the hash of the mint's row. A case gives seed when it checks the
//     wallet side and the factors when it checks the mint side; one refused
//     with an error has no values after its fault.
//   - price_test.json: rates and usage for [protocol.Quote], every uint64 a
//     decimal string, with each term and the quote computed exactly.
//   - ring_test.json: storage indexes and servers (peer IDs of seeded
//     Ed25519 keys, as strings and in binary) for [protocol.Ring],
//     [protocol.FirstM] and [protocol.RingKey]: the whole ring for at most
//     100 servers, the first 20 for more, and a SHA-256 of the whole ring's
//     peer IDs in order.
//   - request_digest_test.json: protocol IDs and bodies for
//     [protocol.RequestDigest].
//   - schemas/<name>_schema.json: a JSON Schema (draft 2020-12) for each
//     file, named by the file's "schema" field; every object in it is
//     closed (additionalProperties false).
//
// Each file has the fields algorithm, schema, header (what the file holds
// and how every value is derived), notes (every flag the file uses, with its
// meaning), numberOfTests and testGroups. A group holds what its tests share
// (keys, keyset, time, window, servers) and its tests; each test has tcId
// (1-based, unique in the file), comment, flags, result and its own fields.
// Every case of coin_verify_test.json and spend_verify_test.json carries
// the (public key, message, signature) triples of its signatures, so that
// any RFC 8032 tool can check them: for an encoding that does not parse,
// those of the first valid case it was derived from; for a coin the group's
// keyset has no key for, the key that signed it. Valid cases pass any RFC
// 8032 verifier on them. SPEC.md at the repository root
// defines every layout and rule the vectors
// exercise.
//
// # Results and flags
//
// A "valid" case must be accepted and an "invalid" one refused with the one
// sentinel error of package coin or protocol that its flags name:
//
//   - [coin.ErrMalformed]: Truncated, TrailingBytes, WrongVersion, BadUnit,
//     WindowsOutOfOrder, NegativeTime, ExponentsNotIncreasing,
//     ExponentTooLarge, NoDenominations, TooManyDenominations, CountMismatch,
//     AmountNotPowerOfTwo, NonCanonicalAnswer, BadClauseBit,
//     NonCanonicalFactor.
//   - [coin.ErrBadKey]: SmallOrderKey, IdentityKey, MixedOrderKey,
//     NonCanonicalKey, KeyNotOnCurve, RepeatedKey, NonCanonicalMintKey,
//     TorsionCommitment, SmallOrderCommitment, IdentityCommitment,
//     NonCanonicalCommitment, CommitmentNotOnCurve, SmallOrderCoinKey,
//     IdentityCoinKey, MixedOrderCoinKey, NonCanonicalCoinKey,
//     CoinKeyNotOnCurve, NonCanonicalRoot, RootMismatch, RootNotOnCurve.
//   - [coin.ErrUnknownKeyset]: UnknownKeyset.
//   - [coin.ErrOutsideWindow]: BeforeNotBefore, AtSpendUntil, AtDepositUntil.
//   - [coin.ErrBadSignature]: ModifiedSignature, NonCanonicalS,
//     ModifiedContent, OtherSigner, WrongSignedMessage, AmountMismatch,
//     ModifiedMessage, ModifiedAnswer, WrongClause, OtherServer, OtherDigest,
//     ModifiedSpendSignature, NonCanonicalSpendS, WrongSpendKey.
//   - [coin.ErrAmount]: AmountNotInKeyset, OtherDenomination,
//     CoinOfOtherKeyset.
//   - [coin.ErrDesignated]: DesignatedToOther.
//   - [protocol.ErrPriceOverflow]: Overflow.
//   - HashMismatch (recoup_test.json; no error): OtherSeed, ModifiedFactor,
//     OtherNonce, OtherCoinKey, OtherDesignation, ForgedCoin. The proof is
//     well-formed and both sides compute challengeHash without error, but it
//     differs from the row's rowChallengeHash, so the wallet does not send
//     the proof and the mint does not recoup the coin.
//
// Other flags only describe a case: Normal, SingleDenomination,
// LargestExponent, MaxDenominations, LongestUnit, EqualWindows, ExtremeTimes,
// Bearer, Designated, LongestServerID, ShortestServerID, TorsionRoot,
// MixedOrderRoot, AtNotBefore, LastSecond, DepositWindow (coins); Exact,
// RoundUp, MaxQuote, WideProduct, Random (prices); SinglePeer, FullRing,
// LargeRing, EdgeIndex, FirstM, DuplicatePeer (rings); EmptyBody,
// RandomBody, OtherProtocol, EmptyProtocolID, LengthPrefix, LongProtocolID
// (request digests); SpecExample (an example of SPEC.md §8).
//
// An "acceptable" case is accepted by coin's verification rule, ZIP-215
// Ed25519 (cofactored, as github.com/hdevalence/ed25519consensus implements
// it), and refused by the cofactorless crypto/ed25519.Verify. Its flag names
// the signature concerned: TorsionTagged (the mint's signature has a
// small-order component in R: valid under ZIP-215, refused by the wallet,
// which checks both rules when it withdraws), SmallOrderR and NonCanonicalR
// (the mint's signature), TorsionTaggedSpend (the spend signature).
//
// # Regenerating
//
// Run go generate ./testvectors after changing package coin, the
// definitions the protocol vectors follow, or the generator
// (testvectors/internal/vectorgen); the conformance test fails while the
// committed files differ from what the generator writes.
package testvectors

import (
	"embed"
	"io/fs"
)

//go:generate go run ./internal/gen

//go:embed *.json schemas/*.json
var vectors embed.FS

// Vectors holds the vector files (*.json) and their schemas
// (schemas/*_schema.json).
var Vectors fs.FS = vectors
