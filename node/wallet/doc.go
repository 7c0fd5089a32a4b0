// Package wallet implements the client's wallet: a seed, a counter, the
// coins it withdrew and what became of each, kept in a bbolt file so that
// nothing is lost on a crash.
//
// # Seed and counter
//
// [Open] creates a 32-byte seed from crypto/rand the first time and keeps it
// in the file. Every coin is derived from the seed and a counter (see
// package coin), so the seed is the wallet's only secret; [Wallet.Export]
// gives it as a phrase with a checksum that catches typos, and [Restore]
// makes a wallet from such a phrase. The counter is committed before any
// nonce derived from it is returned, so no counter is ever used twice, even
// across a crash.
//
// # Withdrawing
//
//	wds, _ := w.NextWithdrawals(ctx, ks, amounts, designated) // counters committed
//	// → mint: WithdrawBegin with each wd.Nonce(); ← R0, R1 per coin
//	c0, c1, _ := w.Challenges(ctx, wd, r0, r1)               // R0, R1 committed
//	// → mint: WithdrawFinish with c0, c1; ← answer
//	c, _ := w.FinishWithdrawal(ctx, wd, answer)               // coin stored, pending gone
//
// A withdrawal that was interrupted is listed by
// [Wallet.PendingWithdrawals] after a restart; the caller sends the same
// challenges again, or asks the mint's Restore for its stored answer.
//
// # Paying
//
// A coin is unspent until [Wallet.Reserve] signs spends of it for one
// server and one request; then it is reserved until [Wallet.Settle] says
// what the server did. Once a spend has left the wallet, the coin may go
// only to the same server again or, if it is a bearer coin, to the mint
// ([Wallet.ReserveSwap]): a coin the server refused becomes [Bound] to
// that server, and a bearer coin reserved at a server that never answers
// is refreshed by a swap (see [Wallet.ReservedOlderThan]). The mint swaps
// bearer coins only: a coin designated to a server is redeemable by that
// server alone, so one reserved at a server that never answers stays
// usable at that server only. Reserve pays the price exactly, preferring
// coins that can go nowhere else, and never hands one coin out twice.
//
// Every state change is one bbolt transaction, committed (fsynced) before
// the method returns. Methods are safe for concurrent use; a [Withdrawal]
// is not, and belongs to one goroutine.
//
// # Errors
//
// Failures wrap the sentinel errors below or those of package coin; test
// with [errors.Is]. Errors and fmt output never contain the seed, coin keys
// or the phrase.
package wallet

import "errors"

// Sentinel errors.
var (
	// ErrInvalid reports an argument out of range: an empty or too long
	// server or request ID, a zero price, a bad batch size.
	ErrInvalid = errors.New("wallet: invalid argument")
	// ErrPhrase reports a seed phrase that is malformed or whose checksum
	// does not match (a typo).
	ErrPhrase = errors.New("wallet: invalid seed phrase")
	// ErrExists reports that the file already holds a wallet with another
	// seed.
	ErrExists = errors.New("wallet: file holds a wallet with another seed")
	// ErrMintMismatch reports a wallet file made for another mint key.
	ErrMintMismatch = errors.New("wallet: wallet belongs to another mint")
	// ErrCorrupt reports a database record that does not decode.
	ErrCorrupt = errors.New("wallet: corrupt database")
	// ErrUnknownKeyset reports a keyset the wallet has not stored.
	ErrUnknownKeyset = errors.New("wallet: unknown keyset")
	// ErrUnknownWithdrawal reports a withdrawal that is not pending.
	ErrUnknownWithdrawal = errors.New("wallet: no such pending withdrawal")
	// ErrOrder reports a withdrawal step taken before the one it needs.
	ErrOrder = errors.New("wallet: withdrawal step out of order")
	// ErrInsufficientFunds reports that the coins usable at a server sum
	// to less than the price. (When they sum to enough but no subset pays
	// exactly, the error wraps coin.ErrNoExactChange instead: swap for
	// change.)
	ErrInsufficientFunds = errors.New("wallet: insufficient funds")
	// ErrTooManyCoins reports a payment that needs more than [MaxSpends]
	// coins; swap for larger coins.
	ErrTooManyCoins = errors.New("wallet: payment needs too many coins")
	// ErrUnknownRequest reports a request ID with no reservation.
	ErrUnknownRequest = errors.New("wallet: unknown request")
	// ErrRequestConflict reports a request ID already used for another
	// server, digest or price, or already settled.
	ErrRequestConflict = errors.New("wallet: request ID used for another payment")
	// ErrSettled reports a request already settled the other way.
	ErrSettled = errors.New("wallet: request already settled otherwise")
	// ErrUnavailable reports a coin that cannot be swapped now: unknown,
	// spent, already in a swap, of a keyset past its deposit window, or
	// designated to a server (the mint swaps bearer coins only).
	ErrUnavailable = errors.New("wallet: coin not available")
)
