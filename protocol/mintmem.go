package protocol

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// MemMintStore is a [MintStore] in memory, for tests and as the reference
// for durable implementations: every method holds one lock for its whole
// run, which is the atomicity a durable store gets from one transaction.
// Nothing survives the process. The zero value is not usable (see
// [NewMemMintStore]).
type MemMintStore struct {
	mu       sync.Mutex
	rows     map[[64]byte]IssueRow       // Key || Nonce → row
	byNonce  map[[32]byte][][64]byte     // Nonce → row keys, in insertion order
	funding  map[[32]byte]FundingAccount // account ID → state
	spent    map[[32]byte]SpendRecord    // coin_pub → record
	balances map[peer.ID]map[string]uint64
	swaps    map[[RequestIDSize]byte]memSwap
	payouts  map[string]PayoutRecord // server || request ID → payout
}

type memSwap struct {
	digest [DigestSize]byte
	inputs map[[32]byte]bool
	rows   [][64]byte
}

var _ MintStore = (*MemMintStore)(nil)

// NewMemMintStore returns an empty store.
func NewMemMintStore() *MemMintStore {
	return &MemMintStore{
		rows:     make(map[[64]byte]IssueRow),
		byNonce:  make(map[[32]byte][][64]byte),
		funding:  make(map[[32]byte]FundingAccount),
		spent:    make(map[[32]byte]SpendRecord),
		balances: make(map[peer.ID]map[string]uint64),
		swaps:    make(map[[RequestIDSize]byte]memSwap),
		payouts:  make(map[string]PayoutRecord),
	}
}

func memRowKey(key, nonce [32]byte) [64]byte {
	var k [64]byte
	copy(k[:32], key[:])
	copy(k[32:], nonce[:])
	return k
}

func memPayoutKey(server peer.ID, id [RequestIDSize]byte) string {
	return string(server) + "\x00" + string(id[:])
}

func (s *MemMintStore) insertRow(r IssueRow) {
	k := memRowKey(r.Key, r.Nonce)
	s.rows[k] = r
	s.byNonce[r.Nonce] = append(s.byNonce[r.Nonce], k)
}

// OpenFunding implements [FundingLedger].
func (s *MemMintStore) OpenFunding(ctx context.Context, id [32]byte, unit string, value uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.funding[id]; ok {
		if a.Unit != unit || a.Value != value {
			return fmt.Errorf("%w: funding account exists with another value", ErrMintRequestReused)
		}
		return nil
	}
	s.funding[id] = FundingAccount{Unit: unit, Value: value, Remaining: value}
	return nil
}

// FundingAccount implements [FundingLedger].
func (s *MemMintStore) FundingAccount(ctx context.Context, id [32]byte) (FundingAccount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.funding[id]
	if !ok {
		return FundingAccount{}, ErrUnknownFunding
	}
	return a, nil
}

// CommitIssue implements [MintStore].
func (s *MemMintStore) CommitIssue(ctx context.Context, funding [32]byte, unit string, rows []IssueRow) ([]coin.Row, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acct, ok := s.funding[funding]
	if !ok {
		return nil, ErrUnknownFunding
	}
	if acct.Unit != unit {
		return nil, ErrFundingUnit
	}
	out := make([]coin.Row, len(rows))
	var fresh []IssueRow
	var charge uint64
	batch := make(map[[64]byte]bool, len(rows))
	for i, r := range rows {
		k := memRowKey(r.Key, r.Nonce)
		if old, ok := s.rows[k]; ok {
			if !mintHashEqual(old.ChallengeHash, r.ChallengeHash) {
				return nil, ErrNonceReused
			}
			out[i] = old.Row
			continue
		}
		if batch[k] {
			return nil, ErrNonceReused
		}
		batch[k] = true
		var carry uint64
		if charge, carry = bits.Add64(charge, r.Amount, 0); carry != 0 {
			return nil, ErrInsufficientFunding
		}
		fresh = append(fresh, r)
		out[i] = r.Row
	}
	if charge > 0 {
		switch {
		case acct.Remaining == 0:
			return nil, ErrFundingSpent
		case acct.Remaining < charge:
			return nil, ErrInsufficientFunding
		}
	}
	acct.Remaining -= charge
	s.funding[funding] = acct
	for _, r := range fresh {
		s.insertRow(r)
	}
	return out, nil
}

// Rows implements [MintStore].
func (s *MemMintStore) Rows(ctx context.Context, nonces [][32]byte, limit int) ([]IssueRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []IssueRow
	for _, n := range nonces {
		for _, k := range s.byNonce[n] {
			if len(out) >= limit {
				return out, nil
			}
			out = append(out, s.rows[k])
		}
	}
	return out, nil
}

// CommitSwap implements [MintStore].
func (s *MemMintStore) CommitSwap(ctx context.Context, c SwapCommit) (SwapOutcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.swaps[c.RequestID]; ok {
		if old.digest != c.Digest || len(old.inputs) != len(c.Inputs) {
			return SwapOutcome{}, ErrMintRequestReused
		}
		for _, in := range c.Inputs {
			if !old.inputs[in.Pub] {
				return SwapOutcome{}, ErrMintRequestReused
			}
		}
		out := SwapOutcome{Rows: make([]coin.Row, len(old.rows)), Conflicts: make([]*SpendRecord, len(c.Inputs))}
		for i, k := range old.rows {
			out.Rows[i] = s.rows[k].Row
		}
		return out, nil
	}
	conflicts := make([]*SpendRecord, len(c.Inputs))
	refused := false
	for i, in := range c.Inputs {
		if old, ok := s.spent[in.Pub]; ok {
			conflicts[i] = memCloneRecord(old)
			refused = true
		}
	}
	if refused {
		return SwapOutcome{Conflicts: conflicts}, nil
	}
	inputs := make(map[[32]byte]bool, len(c.Inputs))
	for _, in := range c.Inputs {
		if inputs[in.Pub] {
			return SwapOutcome{}, fmt.Errorf("%w: a coin is spent twice in one swap", ErrBadRequest)
		}
		inputs[in.Pub] = true
	}
	keys := make([][64]byte, len(c.Outputs))
	batch := make(map[[64]byte]bool, len(c.Outputs))
	for i, r := range c.Outputs {
		k := memRowKey(r.Key, r.Nonce)
		if _, ok := s.rows[k]; ok || batch[k] {
			return SwapOutcome{}, ErrNonceReused
		}
		batch[k] = true
		keys[i] = k
	}
	out := SwapOutcome{Rows: make([]coin.Row, len(c.Outputs)), Conflicts: conflicts}
	for _, in := range c.Inputs {
		s.spent[in.Pub] = *memCloneRecord(in)
	}
	for i, r := range c.Outputs {
		s.insertRow(r)
		out.Rows[i] = r.Row
	}
	s.swaps[c.RequestID] = memSwap{digest: c.Digest, inputs: inputs, rows: keys}
	return out, nil
}

func memCloneRecord(r SpendRecord) *SpendRecord {
	r.Spend = bytes.Clone(r.Spend)
	return &r
}

// CreditDeposits implements [MintStore].
func (s *MemMintStore) CreditDeposits(ctx context.Context, server peer.ID, records []SpendRecord) ([]DepositOutcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Check that the credits fit before changing anything.
	bal := maps.Clone(s.balances[server])
	if bal == nil {
		bal = make(map[string]uint64)
	}
	out := make([]DepositOutcome, len(records))
	added := make(map[[32]byte]SpendRecord)
	for i, r := range records {
		if r.Server != server {
			return nil, fmt.Errorf("protocol: deposit record for another server")
		}
		old, ok := s.spent[r.Pub]
		if !ok {
			old, ok = added[r.Pub]
		}
		switch {
		case !ok:
			var carry uint64
			if bal[r.Unit], carry = bits.Add64(bal[r.Unit], r.Amount, 0); carry != 0 {
				return nil, fmt.Errorf("protocol: balance overflows")
			}
			added[r.Pub] = *memCloneRecord(r)
			out[i] = DepositOutcome{Status: pb.DepositStatus_DEPOSIT_CREDITED}
		case old.Server == server && old.Digest == r.Digest:
			out[i] = DepositOutcome{Status: pb.DepositStatus_DEPOSIT_ALREADY_CREDITED}
		default:
			out[i] = DepositOutcome{Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: memCloneRecord(old)}
		}
	}
	for pub, r := range added {
		s.spent[pub] = r
	}
	s.balances[server] = bal
	return out, nil
}

// Balance implements [MintStore].
func (s *MemMintStore) Balance(ctx context.Context, server peer.ID) ([]UnitAmount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []UnitAmount
	for u, a := range s.balances[server] {
		out = append(out, UnitAmount{Unit: u, Amount: a})
	}
	slices.SortFunc(out, func(a, b UnitAmount) int { return strings.Compare(a.Unit, b.Unit) })
	return out, nil
}

// BeginPayout implements [MintStore].
func (s *MemMintStore) BeginPayout(ctx context.Context, o PayoutOrder) (PayoutRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := memPayoutKey(o.Server, o.RequestID)
	if rec, ok := s.payouts[k]; ok {
		if rec.Digest != o.Digest {
			return PayoutRecord{}, ErrMintRequestReused
		}
		return memClonePayout(rec), nil
	}
	bal := s.balances[o.Server]
	if bal[o.Unit] < o.Amount {
		return PayoutRecord{}, ErrInsufficientBalance
	}
	if o.Amount > 0 {
		bal[o.Unit] -= o.Amount
	}
	o.Destination = bytes.Clone(o.Destination)
	rec := PayoutRecord{PayoutOrder: o, State: PayoutPending}
	s.payouts[k] = rec
	return memClonePayout(rec), nil
}

func memClonePayout(r PayoutRecord) PayoutRecord {
	r.Destination = bytes.Clone(r.Destination)
	r.Receipt = bytes.Clone(r.Receipt)
	return r
}

// FinishPayout implements [MintStore].
func (s *MemMintStore) FinishPayout(ctx context.Context, server peer.ID, requestID [RequestIDSize]byte, receipt []byte, refused bool) (PayoutRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := memPayoutKey(server, requestID)
	rec, ok := s.payouts[k]
	if !ok {
		return PayoutRecord{}, fmt.Errorf("%w: no such payout", ErrNotFound)
	}
	if rec.State != PayoutPending {
		return memClonePayout(rec), nil
	}
	if refused {
		bal := s.balances[server]
		if bal == nil {
			bal = make(map[string]uint64)
			s.balances[server] = bal
		}
		var carry uint64
		if bal[rec.Unit], carry = bits.Add64(bal[rec.Unit], rec.Amount, 0); carry != 0 {
			return PayoutRecord{}, fmt.Errorf("protocol: balance overflows")
		}
		rec.State = PayoutRefused
	} else {
		rec.State = PayoutPaid
		rec.Receipt = bytes.Clone(receipt)
	}
	s.payouts[k] = rec
	return memClonePayout(rec), nil
}

// PendingPayouts implements [MintStore].
func (s *MemMintStore) PendingPayouts(ctx context.Context) ([]PayoutRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PayoutRecord
	for _, rec := range s.payouts {
		if rec.State == PayoutPending {
			out = append(out, memClonePayout(rec))
		}
	}
	return out, nil
}
