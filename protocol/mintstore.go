package protocol

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// IssueRow is an issuance row ([coin.Row], committed under the unique key
// (Key, Nonce)) with the keyset and amount of its denomination key, which
// the mint needs to charge for it, to restore it and to audit issuance.
type IssueRow struct {
	coin.Row
	KeysetID [32]byte
	Amount   uint64
}

// SpendRecord is one coin of the mint's spent set, which is keyed by Pub.
// It is also the evidence the mint shows when the coin is spent again.
type SpendRecord struct {
	// Pub is the coin's public key, the key of the spent set.
	Pub [32]byte
	// KeysetID, Unit and Amount account for the coin.
	KeysetID [32]byte
	Unit     string
	Amount   uint64
	// Server is the peer the spend was made for: the server that
	// deposited the coin, or the mint itself for a Swap input.
	Server peer.ID
	// Digest is the request digest the spend signs.
	Digest [DigestSize]byte
	// Spend is the spend's encoding as received, [coin.SpendSize] bytes.
	Spend []byte
}

// FundingAccount is the state of one funding account of a [MintStore]: a
// voucher, or whatever a [Funding] plugin opens for a payment it received.
type FundingAccount struct {
	Unit      string
	Value     uint64 // the value the account was opened with
	Remaining uint64 // what is left to spend
}

// SwapCommit is what a Swap commits: its inputs spent to the mint and its
// outputs' rows, under its request ID and digest.
type SwapCommit struct {
	RequestID [RequestIDSize]byte
	Digest    [DigestSize]byte
	// Inputs are the coins spent, verified by the mint for its own peer
	// ID and Digest; their Server is the mint's peer ID.
	Inputs []SpendRecord
	// Outputs are the rows of the new coins, of the same total and unit.
	Outputs []IssueRow
}

// SwapOutcome is what [MintStore.CommitSwap] did.
type SwapOutcome struct {
	// Rows are the stored rows of the outputs, in order; nil if the swap
	// was refused.
	Rows []coin.Row
	// Conflicts has one entry per input: nil, or the record of the spend
	// that took the coin first, which refused the swap.
	Conflicts []*SpendRecord
}

// DepositOutcome is what [MintStore.CreditDeposits] did with one coin.
type DepositOutcome struct {
	// Status is DEPOSIT_CREDITED, DEPOSIT_ALREADY_CREDITED or
	// DEPOSIT_DOUBLE_SPENT.
	Status pb.DepositStatus
	// Conflict is the record that spent the coin first, with
	// DEPOSIT_DOUBLE_SPENT.
	Conflict *SpendRecord
}

// PayoutOrder is one payout a server asked for.
type PayoutOrder struct {
	// Server and RequestID identify the payout.
	Server    peer.ID
	RequestID [RequestIDSize]byte
	// Digest is the request digest of the Payout call; a retry must have
	// the same.
	Digest      [DigestSize]byte
	Unit        string
	Amount      uint64
	Destination []byte
}

// PayoutState is the state of a payout.
type PayoutState uint8

// Payout states. The zero value is not a state.
const (
	// PayoutPending: the amount is debited and the funding plugin has not
	// confirmed the payment yet.
	PayoutPending PayoutState = iota + 1
	// PayoutPaid: the funding plugin paid and returned a receipt.
	PayoutPaid
	// PayoutRefused: the funding plugin refused for good; the amount was
	// credited back.
	PayoutRefused
)

// PayoutRecord is a payout with its state.
type PayoutRecord struct {
	PayoutOrder
	State   PayoutState
	Receipt []byte // with PayoutPaid
}

// FundingLedger holds funding accounts: prepaid vouchers, or accounts a
// [Funding] plugin opens for payments it received. A [MintStore] is one;
// [VoucherFunding] uses it to create vouchers.
type FundingLedger interface {
	// OpenFunding creates the funding account id holding value of unit.
	// It is idempotent: if the account exists with the same unit and
	// value it returns nil and changes nothing; if it exists otherwise it
	// returns an error wrapping [ErrMintRequestReused].
	OpenFunding(ctx context.Context, id [32]byte, unit string, value uint64) error
	// FundingAccount returns the state of account id, or an error
	// wrapping [ErrUnknownFunding].
	FundingAccount(ctx context.Context, id [32]byte) (FundingAccount, error)
}

// MintStore is the mint's durable state: issuance rows, the spent set,
// funding accounts, server balances and payouts.
//
// Every method is one atomic transaction that is durable (committed and
// synced) before the method returns nil: the mint releases blind answers,
// and tells servers that coins are credited, only after that. A method that
// returns an error has changed nothing. Implementations must be safe for
// concurrent use, and concurrent calls must behave as if run one at a time
// (with bbolt, one write transaction; with PostgreSQL, serializable
// transactions or unique constraints and row locks). [MemMintStore] is the
// reference implementation.
type MintStore interface {
	FundingLedger

	// CommitIssue commits the rows of a WithdrawFinish paid from funding
	// account funding, of unit. Atomically, for each row in order: if no
	// row is stored under (Key, Nonce), it inserts the row; if one is
	// stored with the same ChallengeHash, it keeps the stored row; if one
	// is stored with another ChallengeHash, the whole call fails with an
	// error wrapping [ErrNonceReused]. It charges the account the total
	// Amount of the rows it inserted, and no more: a retry charges
	// nothing. It returns the stored row for each row, in order; the mint
	// releases answers from those only.
	//
	// Errors: [ErrUnknownFunding] if the account does not exist,
	// [ErrFundingUnit] if it is of another unit, [ErrFundingSpent] if it
	// has nothing left and the charge is not zero, and
	// [ErrInsufficientFunding] if it has less than the charge.
	CommitIssue(ctx context.Context, funding [32]byte, unit string, rows []IssueRow) ([]coin.Row, error)

	// Rows returns the stored rows whose nonce is one of nonces, in the
	// order of nonces, at most limit of them. It never computes a row.
	Rows(ctx context.Context, nonces [][32]byte, limit int) ([]IssueRow, error)

	// CommitSwap commits a Swap. Atomically:
	//
	//   - If a swap with s.RequestID is stored: with another digest, or
	//     other inputs, it fails with [ErrMintRequestReused]; otherwise it
	//     returns the stored rows again (a retry) and changes nothing.
	//   - Otherwise, if any input's coin is in the spent set, it returns
	//     the conflicting records and changes nothing.
	//   - Otherwise, if any output's (Key, Nonce) is stored, it fails with
	//     [ErrNonceReused].
	//   - Otherwise it adds the inputs to the spent set, inserts the
	//     output rows and records the swap, and returns the rows.
	CommitSwap(ctx context.Context, s SwapCommit) (SwapOutcome, error)

	// CreditDeposits records coins that server deposited. Atomically, for
	// each record in order: if the coin is not in the spent set, it adds
	// the record and credits server its Amount in its Unit
	// (DEPOSIT_CREDITED); if it is, with the same Server and Digest, it
	// does nothing (DEPOSIT_ALREADY_CREDITED); otherwise it does nothing
	// and returns the stored record (DEPOSIT_DOUBLE_SPENT). Each record's
	// Server is server. It returns one outcome per record, in order.
	CreditDeposits(ctx context.Context, server peer.ID, records []SpendRecord) ([]DepositOutcome, error)

	// Balance returns server's balances, one per unit with a record,
	// sorted by unit.
	Balance(ctx context.Context, server peer.ID) ([]UnitAmount, error)

	// BeginPayout starts a payout. Atomically: if a payout of o.Server
	// with o.RequestID is stored, it returns it if its Digest is o.Digest
	// and fails with [ErrMintRequestReused] otherwise; if not, it debits
	// o.Amount from the server's balance in o.Unit (failing with
	// [ErrInsufficientBalance] if that is less) and stores the payout as
	// pending.
	BeginPayout(ctx context.Context, o PayoutOrder) (PayoutRecord, error)

	// FinishPayout settles a pending payout: paid, with its receipt, or,
	// if refused, cancelled with its amount credited back. A payout that
	// is already settled is returned as it is. It fails with an error
	// wrapping [ErrNotFound] if there is no such payout.
	FinishPayout(ctx context.Context, server peer.ID, requestID [RequestIDSize]byte, receipt []byte, refused bool) (PayoutRecord, error)

	// PendingPayouts returns the payouts still pending, so that a mint
	// that restarts can settle them ([MintService.ResumePayouts]).
	PendingPayouts(ctx context.Context) ([]PayoutRecord, error)
}

// Funding is a mint's money rail: what pays for withdrawn coins, and how
// servers' balances are paid out. [VoucherFunding] is the default.
type Funding interface {
	// Account checks the funding proof of a WithdrawFinish and returns the
	// ID of the funding account in the [MintStore] that pays for it. It
	// must not charge anything: the store charges the account in the
	// transaction that commits the coins. A plugin for a payment rail
	// opens an account for a payment it has confirmed
	// ([FundingLedger.OpenFunding], idempotently per payment) and returns
	// it. Errors are answered as they are: [ErrBadFunding] for a
	// malformed proof, say.
	Account(ctx context.Context, proof []byte) ([32]byte, error)

	// Pay pays out o, whose amount the store has already debited, and
	// returns a receipt of at most [MaxPayoutReceipt] bytes. Pay must be
	// idempotent per (o.Server, o.RequestID): the mint calls it again for
	// a payout still pending after a retry or a restart. An error
	// wrapping [ErrPayoutRefused] cancels the payout; any other leaves it
	// pending.
	Pay(ctx context.Context, o PayoutOrder) (receipt []byte, err error)
}
