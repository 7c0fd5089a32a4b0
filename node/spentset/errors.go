package spentset

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/scripnet/scrip/protocol"
)

// Sentinel errors. Those a peer can cause wrap the protocol sentinel of the
// code that answers them, so that protocol.CodeOf maps them without help.
var (
	// ErrRequestConflict reports a request ID already recorded with another
	// digest: the same ID with another body. It wraps
	// protocol.ErrBadRequest.
	ErrRequestConflict = fmt.Errorf("spentset: request ID reused with another body: %w", protocol.ErrBadRequest)
	// ErrDoubleSpend reports a coin already recorded for another request.
	// The error returned is a *[DoubleSpendError]. It wraps
	// protocol.ErrDoubleSpend.
	ErrDoubleSpend = fmt.Errorf("spentset: coin already spent: %w", protocol.ErrDoubleSpend)
	// ErrDuplicateCoin reports a coin listed twice in one request. It wraps
	// protocol.ErrBadRequest.
	ErrDuplicateCoin = fmt.Errorf("spentset: coin listed twice: %w", protocol.ErrBadRequest)
	// ErrTooManySpends reports more than protocol.MaxSpends spends in one
	// request. It wraps protocol.ErrBadRequest.
	ErrTooManySpends = fmt.Errorf("spentset: too many spends: %w", protocol.ErrBadRequest)
	// ErrBearerCap reports a request whose bearer coins would raise the
	// undeposited bearer value above the cap set with [WithBearerCap];
	// nothing is recorded. The server should deposit before it accepts
	// more bearer coins. It wraps protocol.ErrRateLimited: the call is
	// answered RATE_LIMITED (the client pays with designated coins, or
	// retries later).
	ErrBearerCap = fmt.Errorf("spentset: undeposited bearer value at its cap: %w", protocol.ErrRateLimited)
	// ErrNotFound reports a request that is not recorded. It wraps
	// protocol.ErrNotFound.
	ErrNotFound = fmt.Errorf("spentset: no such request: %w", protocol.ErrNotFound)
	// ErrAnswerTooLarge reports an answer longer than the limit set with
	// [WithMaxAnswerSize].
	ErrAnswerTooLarge = errors.New("spentset: answer too large")
	// ErrUnknownKeyset reports a coin whose keyset the [KeysetLookup]
	// does not know, so that its deposit deadline is unknown.
	ErrUnknownKeyset = errors.New("spentset: unknown keyset")
	// ErrOverflow reports a counter that would pass 2^64 − 1.
	ErrOverflow = errors.New("spentset: value overflows uint64")
	// ErrBadStatus reports a deposit outcome that is not final.
	ErrBadStatus = errors.New("spentset: not a final deposit status")
	// ErrCorrupt reports a stored record that does not decode, or
	// counters and indexes that disagree with the records ([Store.Check]).
	ErrCorrupt = errors.New("spentset: store is corrupt")
	// ErrClosed reports a call on a closed [Store].
	ErrClosed = errors.New("spentset: store closed")
)

// DoubleSpendError names the coin that was already spent and the request it
// was recorded for. It matches [ErrDoubleSpend] and protocol.ErrDoubleSpend
// under errors.Is, and errors.As finds a *protocol.DoubleSpendError naming
// the coin in it.
type DoubleSpendError struct {
	CoinPub   [32]byte // the coin's public key
	RequestID [16]byte // the request the coin was recorded for first
}

// Error names the coin and the request in hex.
func (e *DoubleSpendError) Error() string {
	return fmt.Sprintf("%v: coin %s recorded for request %s",
		ErrDoubleSpend, hex.EncodeToString(e.CoinPub[:]), hex.EncodeToString(e.RequestID[:]))
}

// Unwrap returns [ErrDoubleSpend] and a *protocol.DoubleSpendError.
func (e *DoubleSpendError) Unwrap() []error {
	return []error{ErrDoubleSpend, &protocol.DoubleSpendError{Coin: e.CoinPub}}
}
