package mintstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
)

// Check reads the whole store and verifies that it is consistent: every
// record decodes; the nonce index, the spent set's keyset index and the
// pending-payout index agree with the records they index; per
// denomination key, the audit counters equal the rows and spent entries
// stored plus those pruned; and the funding accounts have been charged,
// in all, exactly the value of the rows CommitIssue inserted. It returns
// an error wrapping [ErrCorrupt] for the first disagreement.
//
// Check takes one read transaction over everything, so it is for tests,
// for an operator after a crash, and for maintenance; the store never
// runs it by itself.
func (s *Store) Check(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error {
		type counts struct{ rows, spent uint64 }
		seen := make(map[[40]byte]*counts)
		of := func(keyset [32]byte, amount uint64) *counts {
			k := [40]byte(tallyKey(keyset, amount))
			c := seen[k]
			if c == nil {
				c = new(counts)
				seen[k] = c
			}
			return c
		}
		corrupt := func(format string, args ...any) error {
			return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
		}

		// Rows and their nonce index.
		nb := tx.Bucket(bucketNonces)
		var rows uint64
		if err := tx.Bucket(bucketRows).ForEach(func(k, v []byte) error {
			r, seq, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			if !bytes.Equal(nb.Get(nonceKey(r.Nonce, seq)), r.Key[:]) {
				return corrupt("row %x has no nonce index entry", k[:8])
			}
			of(r.KeysetID, r.Amount).rows++
			rows++
			return nil
		}); err != nil {
			return err
		}
		if n := uint64(nb.Stats().KeyN); n != rows {
			return corrupt("%d nonce index entries for %d rows", n, rows)
		}

		// Spent set and its keyset index.
		ib := tx.Bucket(bucketSpentByKS)
		var spent uint64
		if err := tx.Bucket(bucketSpent).ForEach(func(k, v []byte) error {
			r, err := decodeSpent(k, v)
			if err != nil {
				return err
			}
			if ib.Get(append(r.KeysetID[:], r.Pub[:]...)) == nil {
				return corrupt("spent coin %x has no keyset index entry", k[:8])
			}
			of(r.KeysetID, r.Amount).spent++
			spent++
			return nil
		}); err != nil {
			return err
		}
		if n := uint64(ib.Stats().KeyN); n != spent {
			return corrupt("%d spent-set index entries for %d coins", n, spent)
		}

		// Counters.
		withdrawn := new(big.Int)
		tb := tx.Bucket(bucketTally)
		if err := tb.ForEach(func(k, v []byte) error {
			if len(k) != 40 {
				return corrupt("tally key")
			}
			t, err := decodeTally(v)
			if err != nil {
				return err
			}
			c := of([32]byte(k[:32]), binary.BigEndian.Uint64(k[32:]))
			if t.Withdrawn+t.SwapOut-t.PrunedRows != c.rows || t.Withdrawn+t.SwapOut < t.PrunedRows {
				return corrupt("key %x/%d: counters say %d rows, %d stored", k[:8], binary.BigEndian.Uint64(k[32:]), t.Withdrawn+t.SwapOut-t.PrunedRows, c.rows)
			}
			in := t.Deposited + t.SwapIn + t.Recouped
			if in-t.PrunedSpent != c.spent || in < t.PrunedSpent {
				return corrupt("key %x/%d: counters say %d spent, %d stored", k[:8], binary.BigEndian.Uint64(k[32:]), in-t.PrunedSpent, c.spent)
			}
			w := new(big.Int).SetUint64(t.Withdrawn)
			withdrawn.Add(withdrawn, w.Mul(w, new(big.Int).SetUint64(binary.BigEndian.Uint64(k[32:]))))
			return nil
		}); err != nil {
			return err
		}
		for k, c := range seen {
			if tb.Get(k[:]) == nil && (c.rows != 0 || c.spent != 0) {
				return corrupt("key %x/%d has records and no counters", k[:8], binary.BigEndian.Uint64(k[32:]))
			}
		}

		// Funding: charged in all = value withdrawn in all.
		charged := new(big.Int)
		if err := tx.Bucket(bucketFunding).ForEach(func(k, v []byte) error {
			a, err := decodeFunding(v)
			if err != nil {
				return err
			}
			if a.Remaining > a.Value {
				return corrupt("funding account %x: %d left of %d", k[:8], a.Remaining, a.Value)
			}
			charged.Add(charged, new(big.Int).SetUint64(a.Value-a.Remaining))
			return nil
		}); err != nil {
			return err
		}
		if charged.Cmp(withdrawn) != 0 {
			return corrupt("funding charged %v, coins withdrawn worth %v", charged, withdrawn)
		}

		// Payouts and the pending index.
		pend := tx.Bucket(bucketPending)
		var pending int
		if err := tx.Bucket(bucketPayouts).ForEach(func(k, v []byte) error {
			r, err := decodePayout(k, v)
			if err != nil {
				return err
			}
			if (r.State == protocol.PayoutPending) != (pend.Get(k) != nil) {
				return corrupt("payout %x: state %d and pending index disagree", k, r.State)
			}
			if r.State == protocol.PayoutPending {
				pending++
			}
			return nil
		}); err != nil {
			return err
		}
		if n := pend.Stats().KeyN; n != pending {
			return corrupt("%d pending index entries for %d pending payouts", n, pending)
		}

		// Everything else decodes.
		if err := tx.Bucket(bucketSwaps).ForEach(func(k, v []byte) error {
			_, err := decodeSwap(v)
			return err
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBalances).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return corrupt("balance")
			}
			return nil
		}); err != nil {
			return err
		}
		rb := tx.Bucket(bucketRows)
		if err := tx.Bucket(bucketRecouped).ForEach(func(k, v []byte) error {
			if rb.Get(k) == nil || len(v) != 32 {
				return corrupt("recoup mark without its row")
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketKeysets).ForEach(func(k, v []byte) error {
			_, err := decodeKeyset(k, v)
			return err
		})
	})
}
