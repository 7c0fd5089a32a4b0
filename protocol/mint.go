package protocol

// The mint service, /scrip/mint/1.0.0: the limits of its calls, the errors
// its handlers answer with, and the types its client and server share. The
// server is [MintService] (mintserver.go), the client [MintClient]
// (mintclient.go); the mint's durable state sits behind [MintStore] and its
// money rail behind [Funding] (mintstore.go); [MintKeyring] holds its
// keysets (mintkeys.go); [MemMintStore] and [VoucherFunding] are the
// in-memory reference store and the default, prepaid-voucher funding.

import (
	"crypto/subtle"

	"github.com/scripnet/scrip/protocol/pb"
)

// Limits of the mint's calls, all in one place. The first group restates
// the limits of ids.go per call; TestMintCapsFit checks that the largest
// message each allows fits [MaxMintRequestSize] and [MaxMintResponseSize].
const (
	// MaxWithdrawCoins bounds the coins of one WithdrawBegin or
	// WithdrawFinish.
	MaxWithdrawCoins = MaxIssueCoins
	// MaxSwapOutputs bounds the new coins of one Swap.
	MaxSwapOutputs = MaxIssueCoins
	// MaxSwapInputs bounds the coins one Swap spends: the spends of the
	// envelope.
	MaxSwapInputs = MaxSpends
	// MaxDepositBatch bounds the coins of one Deposit.
	MaxDepositBatch = MaxDepositCoins
	// MaxRestoreNonces bounds the nonces of one Restore.
	MaxRestoreNonces = MaxIssueCoins

	// MaxRestoreRows bounds the rows of one Restore answer. A nonce has
	// one row under each denomination key it was used with; an honest
	// wallet uses each nonce once, so MaxRestoreNonces nonces give at most
	// MaxRestoreNonces rows.
	MaxRestoreRows = 1024
	// MaxFundingSize bounds the funding proof of a WithdrawFinish.
	MaxFundingSize = 1024
	// MaxPayoutDestination bounds the destination of a Payout.
	MaxPayoutDestination = 1024
	// MaxPayoutReceipt bounds the receipt a [Funding] returns for a payout.
	MaxPayoutReceipt = 1024
	// MaxPublishedKeysets bounds the keysets a [MintKeyring] holds, and so
	// the keysets of one Keysets answer.
	MaxPublishedKeysets = 256
)

// Errors of the mint service. Each is an *[Error], so a store or funding
// plugin that returns one (wrapped or not) answers the call with its code
// and message, and a caller receives an error matching the code's sentinel
// ([ErrBadRequest], ...). Compare with [errors.Is].
var (
	// ErrNonceReused (BAD_REQUEST) refuses a coin whose nonce the mint
	// answered before, under the same denomination key, for other
	// challenges; or, in a Swap, before at all (a Swap never replays a row
	// of another request; Restore does).
	ErrNonceReused = &Error{Code: pb.Code_BAD_REQUEST, Message: "nonce already answered for other challenges"}
	// ErrMintRequestReused (BAD_REQUEST) refuses a Swap or Payout whose
	// request ID was used before with another request digest, or a Swap
	// retried with other input coins.
	ErrMintRequestReused = &Error{Code: pb.Code_BAD_REQUEST, Message: "request ID already used for another request"}
	// ErrUnknownFunding (NOT_FOUND) refuses a funding proof that names no
	// funding account: for vouchers, an unknown voucher code.
	ErrUnknownFunding = &Error{Code: pb.Code_NOT_FOUND, Message: "unknown voucher or funding"}
	// ErrFundingSpent (INSUFFICIENT_PAYMENT) refuses funding whose value
	// is used up: for vouchers, a spent voucher.
	ErrFundingSpent = &Error{Code: pb.Code_INSUFFICIENT_PAYMENT, Message: "voucher or funding already spent"}
	// ErrInsufficientFunding (INSUFFICIENT_PAYMENT) refuses funding whose
	// remaining value is below the total of the new coins.
	ErrInsufficientFunding = &Error{Code: pb.Code_INSUFFICIENT_PAYMENT, Message: "voucher or funding below the coins' total"}
	// ErrFundingUnit (BAD_REQUEST) refuses funding in another unit than
	// the keyset's.
	ErrFundingUnit = &Error{Code: pb.Code_BAD_REQUEST, Message: "funding is in another unit"}
	// ErrBadFunding (BAD_REQUEST) refuses a funding proof that is
	// malformed: for vouchers, not a voucher code.
	ErrBadFunding = &Error{Code: pb.Code_BAD_REQUEST, Message: "malformed voucher or funding proof"}
	// ErrKeysetRetired (EXPIRED_KEYSET) refuses to issue from a keyset
	// the mint retired after a restore of its store
	// ([MintKeyring.Retire]): round one, and, from the store, new rows.
	ErrKeysetRetired = &Error{Code: pb.Code_EXPIRED_KEYSET, Message: "keyset closed for issuance at this mint (retired after a restore)"}
	// ErrInsufficientBalance (BAD_REQUEST) refuses a payout above the
	// server's balance in its unit.
	ErrInsufficientBalance = &Error{Code: pb.Code_BAD_REQUEST, Message: "payout above balance"}
	// ErrPayoutRefused (BAD_REQUEST) reports a payout that the funding
	// plugin can never make (a bad destination, say). [Funding.Pay]
	// returns an error wrapping it to have the payout cancelled and its
	// amount credited back; any other error leaves the payout pending.
	ErrPayoutRefused = &Error{Code: pb.Code_BAD_REQUEST, Message: "payout refused"}
)

// UnitAmount is an amount counted in a keyset's unit.
type UnitAmount struct {
	Unit   string
	Amount uint64
}

// WithdrawCoin names one coin in the first round of issuance: its amount,
// a denomination of the keyset, and the wallet's nonce for it
// ([coin.Withdrawal.Nonce]).
type WithdrawCoin struct {
	Amount uint64
	Nonce  [32]byte
}

// Commitments are the mint's first-round answer for one coin, R0 and R1,
// which [coin.Withdrawal.Challenges] takes.
type Commitments struct {
	R0, R1 [32]byte
}

// BlindChallenge is the wallet's second-round message for one coin: its
// amount and nonce, and the blinded challenges from
// [coin.Withdrawal.Challenges].
type BlindChallenge struct {
	Amount uint64
	Nonce  [32]byte
	C0, C1 [32]byte
}

// mintHashEqual compares two challenge hashes in constant time.
func mintHashEqual(a, b [32]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
