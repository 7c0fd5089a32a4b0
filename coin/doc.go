// Package coin implements scrip's bearer coins: keysets, Clause Blind Schnorr
// issuance on edwards25519 (both the mint's and the client's side), coins,
// spends bound to one server and one request, and their verification, single
// and batched.
//
// The package is pure: it does no I/O and no networking, randomness is passed
// in as an [io.Reader] (except the coefficients of [Verifier.VerifyBatch],
// which it draws from crypto/rand itself), and time is passed in.
//
// # Issuance
//
// A mint holds a [KeysetSecret]; for each denomination it hands out a
// [Signer]. A client holds a wallet seed and a counter; for each coin it
// creates a [Withdrawal] with [NewWithdrawal]. The two rounds are:
//
//	nonce := w.Nonce()                       // client → mint: keyset ID, amount, nonce
//	R0, R1 := signer.Begin(nonce)            // mint → client
//	c0, c1, err := w.Challenges(R0, R1)      // client → mint
//	row, err := signer.Finish(now, nonce, c0, c1) // mint: commit row, then answer
//	c, err := w.Finish(row.Answer())         // client: unblind and check
//
// [Signer.Finish] keeps no state. Answering one nonce with two different pairs
// of challenges reveals the denomination key, so the caller of Finish MUST
// durably commit the returned [Row] under the unique key (Row.Key, Row.Nonce)
// before the answer leaves, and MUST answer a retry only from the stored row
// and only when [Row.Matches] accepts its challenges. The client MUST persist
// its counter before it uses a nonce and MUST NOT derive two withdrawals from
// one counter.
//
// Plain (single-clause) blind Schnorr is broken by the ROS attack under
// concurrent sessions; this package does not offer it.
//
// # Coins and spends
//
// A [Coin] is a standard Ed25519 signature by a denomination key over the coin
// message ([Coin.Message]): keyset ID, amount, the coin's own Ed25519 public
// key and its designation (SHA-256 of a tag and a server's peer ID, see
// [Designation], or all zero for any server). A [Spend] adds the coin key's
// signature over a server's peer ID and a 32-byte request digest, so a spend
// cannot be replayed to another server or attached to another request: it
// fails there as a bad signature. The caller MUST spend each coin once.
//
// # Verification
//
// [Verifier] applies one rule everywhere: ZIP-215 Ed25519 (as
// github.com/hdevalence/ed25519consensus implements it) with canonical S, coin
// keys canonical and of prime order, the amount equal to its key's
// denomination, the keyset known and inside the window asked for, and the
// designation either zero or this server's.
//
// # Errors
//
// Every failure wraps exactly one of the sentinel errors below; test with
// [errors.Is]. Errors never contain secrets.
package coin

import "errors"

// Sentinel errors, one per failure class a caller can see.
var (
	// ErrMalformed reports an encoding of the wrong length, with trailing
	// bytes, or with a field out of range.
	ErrMalformed = errors.New("coin: malformed encoding")
	// ErrBadKey reports a public key or commitment that is not a canonical
	// encoding of a point of prime order (small-order, mixed-order, identity
	// or non-canonical).
	ErrBadKey = errors.New("coin: small-order or non-canonical key")
	// ErrUnknownKeyset reports a keyset ID the verifier does not know.
	ErrUnknownKeyset = errors.New("coin: unknown keyset")
	// ErrOutsideWindow reports a keyset used outside the window asked for
	// (issue, spend or deposit).
	ErrOutsideWindow = errors.New("coin: keyset outside its window")
	// ErrBadSignature reports a signature that does not verify. A spend made
	// for another server or another request fails with this error.
	ErrBadSignature = errors.New("coin: bad signature")
	// ErrDesignated reports a coin designated to another server.
	ErrDesignated = errors.New("coin: designated to another server")
	// ErrAmount reports an amount that the keyset does not offer. (A coin
	// claiming another denomination's amount selects that denomination's
	// key and fails with ErrBadSignature.)
	ErrAmount = errors.New("coin: amount does not match denomination")
	// ErrNoExactChange reports that no subset of the offered coins sums to
	// the price exactly.
	ErrNoExactChange = errors.New("coin: no exact change")
)
