package mintstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"math/bits"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/protocol"
)

// OpenFunding implements [protocol.FundingLedger].
func (s *Store) OpenFunding(ctx context.Context, id [32]byte, unit string, value uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFunding)
		if v := b.Get(id[:]); v != nil {
			a, err := decodeFunding(v)
			if err != nil {
				return err
			}
			if a.Unit != unit || a.Value != value {
				return fmt.Errorf("%w: funding account exists with another value", protocol.ErrMintRequestReused)
			}
			return errNoWrite
		}
		v, err := encodeFunding(protocol.FundingAccount{Unit: unit, Value: value, Remaining: value})
		if err != nil {
			return err
		}
		return b.Put(bytes.Clone(id[:]), v)
	})
}

// FundingAccount implements [protocol.FundingLedger].
func (s *Store) FundingAccount(ctx context.Context, id [32]byte) (protocol.FundingAccount, error) {
	var a protocol.FundingAccount
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFunding).Get(id[:])
		if v == nil {
			return protocol.ErrUnknownFunding
		}
		var err error
		a, err = decodeFunding(v)
		return err
	})
	return a, err
}

// getRow returns the row stored under (key, nonce), if any.
func getRow(rows *bolt.Bucket, key, nonce [32]byte) (protocol.IssueRow, uint64, bool, error) {
	k := rowKey(key, nonce)
	v := rows.Get(k)
	if v == nil {
		return protocol.IssueRow{}, 0, false, nil
	}
	r, seq, err := decodeRow(k, v)
	return r, seq, err == nil, err
}

// insertRow stores a new row and its entry in the nonce index.
func insertRow(tx *bolt.Tx, r *protocol.IssueRow) error {
	rows := tx.Bucket(bucketRows)
	seq, err := rows.NextSequence()
	if err != nil {
		return err
	}
	if err := rows.Put(rowKey(r.Key, r.Nonce), encodeRow(r, seq)); err != nil {
		return err
	}
	return tx.Bucket(bucketNonces).Put(nonceKey(r.Nonce, seq), bytes.Clone(r.Key[:]))
}

// checkIssueOpen refuses rows of keysets whose rows Prune deletes.
func checkIssueOpen(closed *closedFlags, r *protocol.IssueRow) error {
	if closed.get(r.KeysetID)&closedIssue != 0 {
		return ErrIssueClosed
	}
	return nil
}

// checkNotRetired refuses a new row of a keyset retired after a restore
// (guard.go). It is checked only for rows that are not stored: a stored
// row is the one answer the keyset may give for its nonce.
func checkNotRetired(closed *closedFlags, r *protocol.IssueRow) error {
	if closed.get(r.KeysetID)&closedRetired != 0 {
		return ErrKeysetRetired
	}
	return nil
}

func hashEqual(a, b [32]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// CommitIssue implements [protocol.MintStore]. Besides the errors the
// interface lists, it refuses rows of a keyset whose rows [Store.Prune]
// has begun to delete with [ErrIssueClosed], and new rows of a keyset
// retired after a restore ([Open]) with [ErrKeysetRetired] (a retry
// with the challenges of a stored row is still answered).
func (s *Store) CommitIssue(ctx context.Context, funding [32]byte, unit string, rows []protocol.IssueRow) ([]coin.Row, error) {
	var out []coin.Row
	inserted := false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		fb := tx.Bucket(bucketFunding)
		fv := fb.Get(funding[:])
		if fv == nil {
			return protocol.ErrUnknownFunding
		}
		acct, err := decodeFunding(fv)
		if err != nil {
			return err
		}
		if acct.Unit != unit {
			return protocol.ErrFundingUnit
		}
		rb := tx.Bucket(bucketRows)
		closed := newClosedFlags(tx)
		res := make([]coin.Row, len(rows))
		fresh := make([]int, 0, len(rows))
		batch := make(map[[64]byte]bool, len(rows))
		var charge uint64
		for i := range rows {
			r := &rows[i]
			if err := checkIssueOpen(closed, r); err != nil {
				return err
			}
			old, _, ok, err := getRow(rb, r.Key, r.Nonce)
			if err != nil {
				return err
			}
			if ok {
				if !hashEqual(old.ChallengeHash, r.ChallengeHash) {
					return protocol.ErrNonceReused
				}
				res[i] = old.Row
				continue
			}
			if err := checkNotRetired(closed, r); err != nil {
				return err
			}
			k := [64]byte(rowKey(r.Key, r.Nonce))
			if batch[k] {
				return protocol.ErrNonceReused
			}
			batch[k] = true
			var carry uint64
			if charge, carry = bits.Add64(charge, r.Amount, 0); carry != 0 {
				return protocol.ErrInsufficientFunding
			}
			fresh = append(fresh, i)
			res[i] = r.Row
		}
		if len(fresh) == 0 {
			out = res // a retry: every row is stored
			return errNoWrite
		}
		if charge > 0 {
			switch {
			case acct.Remaining == 0:
				return protocol.ErrFundingSpent
			case acct.Remaining < charge:
				return protocol.ErrInsufficientFunding
			}
			acct.Remaining -= charge
			v, err := encodeFunding(acct)
			if err != nil {
				return err
			}
			if err := fb.Put(bytes.Clone(funding[:]), v); err != nil {
				return err
			}
		}
		t := make(tallies, 1)
		for _, i := range fresh {
			if err := insertRow(tx, &rows[i]); err != nil {
				return err
			}
			t.of(rows[i].KeysetID, rows[i].Amount).Withdrawn++
		}
		if err := t.write(tx); err != nil {
			return err
		}
		out = res
		inserted = true
		crashpoint.Hit("mint/issue/before-commit")
		return nil
	})
	if err != nil {
		return nil, err
	}
	if inserted {
		s.rowsCommitted()
	}
	crashpoint.Hit("mint/issue/after-commit")
	return out, nil
}

// Rows implements [protocol.MintStore]. A nonce's rows come in the order
// they were inserted.
func (s *Store) Rows(ctx context.Context, nonces [][32]byte, limit int) ([]protocol.IssueRow, error) {
	var out []protocol.IssueRow
	err := s.view(ctx, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRows)
		c := tx.Bucket(bucketNonces).Cursor()
		for _, n := range nonces {
			for k, v := c.Seek(n[:]); k != nil && bytes.HasPrefix(k, n[:]); k, v = c.Next() {
				if len(out) >= limit {
					return nil
				}
				if len(v) != 32 {
					return fmt.Errorf("%w: nonce index", ErrCorrupt)
				}
				r, _, ok, err := getRow(rb, [32]byte(v), n)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%w: nonce index names a missing row", ErrCorrupt)
				}
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
