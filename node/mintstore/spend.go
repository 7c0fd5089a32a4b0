package mintstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// getSpent returns the spent-set record of coin pub, if any.
func getSpent(b *bolt.Bucket, pub [32]byte) (*protocol.SpendRecord, error) {
	v := b.Get(pub[:])
	if v == nil {
		return nil, nil
	}
	r, err := decodeSpent(pub[:], v)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// putSpent adds r to the spent set and to its keyset's index.
func putSpent(tx *bolt.Tx, r *protocol.SpendRecord) error {
	v, err := encodeSpent(r)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketSpent).Put(bytes.Clone(r.Pub[:]), v); err != nil {
		return err
	}
	k := make([]byte, 0, 64)
	k = append(k, r.KeysetID[:]...)
	k = append(k, r.Pub[:]...)
	return tx.Bucket(bucketSpentByKS).Put(k, []byte{})
}

// checkDepositOpen refuses coins of keysets whose spent entries Prune
// deletes.
func checkDepositOpen(closed *closedFlags, r *protocol.SpendRecord) error {
	if closed.get(r.KeysetID)&closedDeposit != 0 {
		return ErrDepositClosed
	}
	return nil
}

// CommitSwap implements [protocol.MintStore]. Besides the errors the
// interface lists, it refuses a new swap with an input of a keyset whose
// spent entries [Store.Prune] has begun to delete ([ErrDepositClosed]),
// or an output of a keyset whose rows it has begun to delete
// ([ErrIssueClosed]) or that was retired after a restore
// ([ErrKeysetRetired]); a retry whose rows were pruned fails with an error
// wrapping [protocol.ErrNotFound].
func (s *Store) CommitSwap(ctx context.Context, c protocol.SwapCommit) (protocol.SwapOutcome, error) {
	var out protocol.SwapOutcome
	inserted := false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRows)
		if v := tx.Bucket(bucketSwaps).Get(c.RequestID[:]); v != nil {
			old, err := decodeSwap(v)
			if err != nil {
				return err
			}
			if old.digest != c.Digest || len(old.inputs) != len(c.Inputs) {
				return protocol.ErrMintRequestReused
			}
			for i := range c.Inputs {
				if !old.inputs[c.Inputs[i].Pub] {
					return protocol.ErrMintRequestReused
				}
			}
			res := protocol.SwapOutcome{Rows: make([]coin.Row, len(old.outputs)), Conflicts: make([]*protocol.SpendRecord, len(c.Inputs))}
			for i, k := range old.outputs {
				r, _, ok, err := getRow(rb, [32]byte(k[:32]), [32]byte(k[32:]))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%w: the swap's rows were pruned", protocol.ErrNotFound)
				}
				res.Rows[i] = r.Row
			}
			out = res
			return errNoWrite
		}
		closed := newClosedFlags(tx)
		for i := range c.Inputs {
			if err := checkDepositOpen(closed, &c.Inputs[i]); err != nil {
				return err
			}
		}
		for i := range c.Outputs {
			if err := checkIssueOpen(closed, &c.Outputs[i]); err != nil {
				return err
			}
			if err := checkNotRetired(closed, &c.Outputs[i]); err != nil {
				return err
			}
		}
		sb := tx.Bucket(bucketSpent)
		conflicts := make([]*protocol.SpendRecord, len(c.Inputs))
		refused := false
		for i := range c.Inputs {
			old, err := getSpent(sb, c.Inputs[i].Pub)
			if err != nil {
				return err
			}
			if old != nil {
				conflicts[i] = old
				refused = true
			}
		}
		if refused {
			out = protocol.SwapOutcome{Conflicts: conflicts}
			return errNoWrite
		}
		inputs := make(map[[32]byte]bool, len(c.Inputs))
		for i := range c.Inputs {
			if inputs[c.Inputs[i].Pub] {
				return fmt.Errorf("%w: a coin is spent twice in one swap", protocol.ErrBadRequest)
			}
			inputs[c.Inputs[i].Pub] = true
		}
		batch := make(map[[64]byte]bool, len(c.Outputs))
		for i := range c.Outputs {
			r := &c.Outputs[i]
			k := [64]byte(rowKey(r.Key, r.Nonce))
			if rb.Get(k[:]) != nil || batch[k] {
				return protocol.ErrNonceReused
			}
			batch[k] = true
		}
		t := make(tallies, 2)
		for i := range c.Inputs {
			if err := putSpent(tx, &c.Inputs[i]); err != nil {
				return err
			}
			t.of(c.Inputs[i].KeysetID, c.Inputs[i].Amount).SwapIn++
		}
		res := protocol.SwapOutcome{Rows: make([]coin.Row, len(c.Outputs)), Conflicts: conflicts}
		for i := range c.Outputs {
			if err := insertRow(tx, &c.Outputs[i]); err != nil {
				return err
			}
			t.of(c.Outputs[i].KeysetID, c.Outputs[i].Amount).SwapOut++
			res.Rows[i] = c.Outputs[i].Row
		}
		v, err := encodeSwap(&c)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketSwaps).Put(bytes.Clone(c.RequestID[:]), v); err != nil {
			return err
		}
		if err := t.write(tx); err != nil {
			return err
		}
		out = res
		inserted = true
		return nil
	})
	if err != nil {
		return protocol.SwapOutcome{}, err
	}
	if inserted {
		s.rowsCommitted()
	}
	return out, nil
}

// CreditDeposits implements [protocol.MintStore]. Besides the errors the
// interface lists, it refuses the whole call with [ErrDepositClosed] if a
// coin is of a keyset whose spent entries [Store.Prune] has begun to
// delete: the server's retry finds that coin expired.
func (s *Store) CreditDeposits(ctx context.Context, server peer.ID, records []protocol.SpendRecord) ([]protocol.DepositOutcome, error) {
	var out []protocol.DepositOutcome
	err := s.update(ctx, func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSpent)
		closed := newClosedFlags(tx)
		res := make([]protocol.DepositOutcome, len(records))
		added := make(map[[32]byte]*protocol.SpendRecord)
		credits := make(map[string]uint64)
		var order []string // units, in the order first credited
		for i := range records {
			r := &records[i]
			if r.Server != server {
				return fmt.Errorf("mintstore: deposit record for another server")
			}
			if err := checkDepositOpen(closed, r); err != nil {
				return err
			}
			old := added[r.Pub]
			if old == nil {
				var err error
				if old, err = getSpent(sb, r.Pub); err != nil {
					return err
				}
			}
			switch {
			case old == nil:
				if _, ok := credits[r.Unit]; !ok {
					order = append(order, r.Unit)
				}
				var carry uint64
				if credits[r.Unit], carry = bits.Add64(credits[r.Unit], r.Amount, 0); carry != 0 {
					return errBalanceOverrun
				}
				added[r.Pub] = r
				res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_CREDITED}
			case old.Server == server && old.Digest == r.Digest:
				res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_ALREADY_CREDITED}
			default:
				res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: cloneRecord(old)}
			}
		}
		if len(added) == 0 {
			out = res // retries and double spends only
			return errNoWrite
		}
		bb := tx.Bucket(bucketBalances)
		for _, unit := range order {
			if err := addBalance(bb, server, unit, credits[unit]); err != nil {
				return err
			}
		}
		t := make(tallies, 1)
		for i := range records {
			r := &records[i]
			if res[i].Status != pb.DepositStatus_DEPOSIT_CREDITED {
				continue
			}
			if err := putSpent(tx, r); err != nil {
				return err
			}
			t.of(r.KeysetID, r.Amount).Deposited++
		}
		if err := t.write(tx); err != nil {
			return err
		}
		out = res
		crashpoint.Hit("mint/deposit/before-commit")
		return nil
	})
	if err != nil {
		return nil, err
	}
	crashpoint.Hit("mint/deposit/after-commit")
	return out, nil
}

func cloneRecord(r *protocol.SpendRecord) *protocol.SpendRecord {
	c := *r
	c.Spend = bytes.Clone(r.Spend)
	return &c
}

// addBalance adds amount to server's balance in unit, creating the
// balance if needed (even for a zero amount, as a credit of zero does).
func addBalance(bb *bolt.Bucket, server peer.ID, unit string, amount uint64) error {
	k := balanceKey(server, unit)
	var cur uint64
	if v := bb.Get(k); v != nil {
		if len(v) != 8 {
			return fmt.Errorf("%w: balance", ErrCorrupt)
		}
		cur = binary.BigEndian.Uint64(v)
	}
	sum, carry := bits.Add64(cur, amount, 0)
	if carry != 0 {
		return errBalanceOverrun
	}
	return bb.Put(k, binary.BigEndian.AppendUint64(nil, sum))
}

// RecoupCoin is a coin of a revoked keyset whose holder asks for its value
// back ([Store.Recoup]).
type RecoupCoin = protocol.RecoupCoin

var _ protocol.MintRecouper = (*Store)(nil)

// Recoup gives the holders of unspent coins of a revoked keyset their
// value back, credited to funding account funding. Atomically, for each
// coin in order:
//
//   - If the coin is in the spent set: with the same Server and Digest it
//     does nothing (DEPOSIT_ALREADY_CREDITED, a retry); otherwise it does
//     nothing and returns the stored record (DEPOSIT_DOUBLE_SPENT).
//   - Otherwise, if no row is stored under (Key, Nonce), or the row is of
//     another keyset or amount, or its challenge hash is not
//     ChallengeHash, or the row was recouped with another coin, it does
//     nothing (DEPOSIT_INVALID): the coin cannot be shown to have been
//     issued.
//   - Otherwise it adds the coin to the spent set, marks the row
//     recouped and credits the coin's amount (DEPOSIT_CREDITED).
//
// The credits go to account funding: opened with their total if it does
// not exist, otherwise added to both its value and what remains of it.
// The call fails, changing nothing, with [ErrNotRevoked] if a coin's
// keyset is not revoked in this store, [ErrDepositClosed] if its spent
// entries are being pruned, and [protocol.ErrFundingUnit] if the coins
// are not all of the account's unit. It returns one outcome per coin.
//
// Rows are evidence of issuance, so [Store.Prune] keeps the rows of a
// revoked keyset until its deposit window closes. A coin whose row was
// pruned before its keyset was revoked cannot be recouped.
func (s *Store) Recoup(ctx context.Context, coins []RecoupCoin, funding [32]byte) ([]protocol.DepositOutcome, error) {
	var out []protocol.DepositOutcome
	err := s.update(ctx, func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSpent)
		rb := tx.Bucket(bucketRows)
		recb := tx.Bucket(bucketRecouped)
		revb := tx.Bucket(bucketRevoked)
		closed := newClosedFlags(tx)
		fb := tx.Bucket(bucketFunding)
		var acct *protocol.FundingAccount
		if v := fb.Get(funding[:]); v != nil {
			a, err := decodeFunding(v)
			if err != nil {
				return err
			}
			acct = &a
		}
		unit := ""
		if acct != nil {
			unit = acct.Unit
		}
		res := make([]protocol.DepositOutcome, len(coins))
		added := make(map[[32]byte]*protocol.SpendRecord)
		claimed := make(map[[64]byte]bool)
		var credit uint64
		for i := range coins {
			c := &coins[i]
			r := &c.Spend
			if revb.Get(r.KeysetID[:]) == nil {
				return ErrNotRevoked
			}
			if err := checkDepositOpen(closed, r); err != nil {
				return err
			}
			if unit == "" {
				unit = r.Unit
			}
			if r.Unit != unit {
				return protocol.ErrFundingUnit
			}
			old := added[r.Pub]
			if old == nil {
				var err error
				if old, err = getSpent(sb, r.Pub); err != nil {
					return err
				}
			}
			if old != nil {
				if old.Server == r.Server && old.Digest == r.Digest {
					res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_ALREADY_CREDITED}
				} else {
					res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: cloneRecord(old)}
				}
				continue
			}
			row, _, ok, err := getRow(rb, c.Key, c.Nonce)
			if err != nil {
				return err
			}
			k := [64]byte(rowKey(c.Key, c.Nonce))
			if !ok || row.KeysetID != r.KeysetID || row.Amount != r.Amount ||
				!hashEqual(row.ChallengeHash, c.ChallengeHash) || recb.Get(k[:]) != nil || claimed[k] {
				res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_INVALID}
				continue
			}
			var carry uint64
			if credit, carry = bits.Add64(credit, r.Amount, 0); carry != 0 {
				return errBalanceOverrun
			}
			claimed[k] = true
			added[r.Pub] = r
			res[i] = protocol.DepositOutcome{Status: pb.DepositStatus_DEPOSIT_CREDITED}
		}
		if len(added) == 0 {
			out = res
			return errNoWrite
		}
		if credit > 0 {
			a := protocol.FundingAccount{Unit: unit}
			if acct != nil {
				a = *acct
			}
			var c1, c2 uint64
			a.Value, c1 = bits.Add64(a.Value, credit, 0)
			a.Remaining, c2 = bits.Add64(a.Remaining, credit, 0)
			if c1|c2 != 0 {
				return errBalanceOverrun
			}
			v, err := encodeFunding(a)
			if err != nil {
				return err
			}
			if err := fb.Put(bytes.Clone(funding[:]), v); err != nil {
				return err
			}
		}
		t := make(tallies, 1)
		for i := range coins {
			if res[i].Status != pb.DepositStatus_DEPOSIT_CREDITED {
				continue
			}
			c := &coins[i]
			if err := putSpent(tx, &c.Spend); err != nil {
				return err
			}
			if err := recb.Put(rowKey(c.Key, c.Nonce), bytes.Clone(c.Spend.Pub[:])); err != nil {
				return err
			}
			t.of(c.Spend.KeysetID, c.Spend.Amount).Recouped++
		}
		if err := t.write(tx); err != nil {
			return err
		}
		out = res
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
