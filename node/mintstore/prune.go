package mintstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneChunk bounds the records one pruning transaction deletes, so that
// pruning a large keyset does not hold the writer for long.
const pruneChunk = 4096

// PruneStats is what [Store.Prune] deleted.
type PruneStats struct {
	// Rows and Spent count the issuance rows and spent-set entries
	// deleted.
	Rows, Spent uint64
	// Keysets lists the keysets dropped, whose deposit windows are over.
	Keysets [][32]byte
}

// Prune deletes what the mint no longer needs, for the keysets the store
// holds ([Keys]), at time now:
//
//   - the issuance rows (with their nonce index entries and recoup marks)
//     of a keyset whose issue window is over: a nonce can no longer be
//     answered, so no row is needed to refuse other challenges. The rows
//     of a revoked keyset are kept until its deposit window is over: they
//     are the evidence [Store.Recoup] needs.
//   - the spent-set entries of a keyset whose deposit window is over: its
//     coins are refused by their windows.
//   - the keyset itself once its deposit window is over, secret and all.
//
// Only those. Funding accounts, balances, swap and payout records and the
// audit counters are kept (the counters record what was pruned). Before
// it deletes a keyset's rows, Prune marks the keyset so that the store
// refuses new rows of it ([ErrIssueClosed]); before it deletes its spent
// entries, so that the store refuses to spend its coins
// ([ErrDepositClosed]). A call racing a window's end thus never finds an
// empty slot where a record was. The marks are kept for good.
//
// Prune deletes in transactions of a bounded size; if it fails part way,
// what it deleted stays deleted, consistently, and a later Prune goes on.
func (s *Store) Prune(ctx context.Context, now time.Time) (PruneStats, error) {
	var st PruneStats
	var records []keysetRecord
	revoked := make(map[[32]byte]bool)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRevoked).ForEach(func(k, _ []byte) error {
			revoked[[32]byte(k)] = true
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketKeysets).ForEach(func(k, v []byte) error {
			r, err := decodeKeyset(k, v)
			if err != nil {
				return err
			}
			records = append(records, r)
			return nil
		})
	})
	if err != nil {
		return st, err
	}
	t := now.Unix()
	for _, r := range records {
		deposit := t >= r.depositUntil
		if t >= r.issueUntil && (!revoked[r.id] || deposit) {
			if err := s.markClosed(ctx, r.id, closedIssue); err != nil {
				return st, err
			}
			for _, key := range r.keys {
				n, err := s.pruneAll(ctx, func(tx *bolt.Tx) (int, error) { return pruneRows(tx, key) })
				st.Rows += n
				if err != nil {
					return st, err
				}
			}
		}
		if !deposit {
			continue
		}
		if err := s.markClosed(ctx, r.id, closedDeposit); err != nil {
			return st, err
		}
		n, err := s.pruneAll(ctx, func(tx *bolt.Tx) (int, error) { return pruneSpent(tx, r.id) })
		st.Spent += n
		if err != nil {
			return st, err
		}
		if err := s.update(ctx, func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketKeysets).Delete(r.id[:]); err != nil {
				return err
			}
			return tx.Bucket(bucketRevoked).Delete(r.id[:])
		}); err != nil {
			return st, err
		}
		st.Keysets = append(st.Keysets, r.id)
	}
	return st, nil
}

// markClosed sets a closed flag of keyset id.
func (s *Store) markClosed(ctx context.Context, id [32]byte, flag byte) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClosed)
		var f byte
		if v := b.Get(id[:]); len(v) == 1 {
			f = v[0]
		}
		if f&flag != 0 {
			return errNoWrite
		}
		return b.Put(bytes.Clone(id[:]), []byte{f | flag})
	})
}

// pruneAll runs chunk in transactions until it deletes nothing, and
// returns how many records it deleted in all.
func (s *Store) pruneAll(ctx context.Context, chunk func(tx *bolt.Tx) (int, error)) (uint64, error) {
	var total uint64
	for {
		var n int
		err := s.update(ctx, func(tx *bolt.Tx) error {
			var err error
			n, err = chunk(tx)
			return err
		})
		if err != nil {
			return total, err
		}
		total += uint64(n)
		if n == 0 {
			return total, nil
		}
	}
}

// firstKeys returns up to pruneChunk keys of b that start with prefix.
func firstKeys(b *bolt.Bucket, prefix []byte) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < pruneChunk; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// pruneRows deletes up to pruneChunk rows under denomination key key,
// with their nonce index entries and recoup marks.
func pruneRows(tx *bolt.Tx, key [32]byte) (int, error) {
	rb := tx.Bucket(bucketRows)
	nb := tx.Bucket(bucketNonces)
	recb := tx.Bucket(bucketRecouped)
	keys := firstKeys(rb, key[:])
	t := make(tallies, 1)
	for _, k := range keys {
		r, seq, err := decodeRow(k, rb.Get(k))
		if err != nil {
			return 0, err
		}
		if err := nb.Delete(nonceKey(r.Nonce, seq)); err != nil {
			return 0, err
		}
		if err := recb.Delete(k); err != nil {
			return 0, err
		}
		if err := rb.Delete(k); err != nil {
			return 0, err
		}
		t.of(r.KeysetID, r.Amount).PrunedRows++
	}
	return len(keys), t.write(tx)
}

// pruneSpent deletes up to pruneChunk spent-set entries of keyset id.
func pruneSpent(tx *bolt.Tx, id [32]byte) (int, error) {
	sb := tx.Bucket(bucketSpent)
	ib := tx.Bucket(bucketSpentByKS)
	keys := firstKeys(ib, id[:])
	t := make(tallies, 1)
	for _, k := range keys {
		if len(k) != 64 {
			return 0, fmt.Errorf("%w: spent-set index", ErrCorrupt)
		}
		pub := k[32:]
		r, err := decodeSpent(pub, sb.Get(pub))
		if err != nil {
			return 0, err
		}
		if err := sb.Delete(pub); err != nil {
			return 0, err
		}
		if err := ib.Delete(k); err != nil {
			return 0, err
		}
		t.of(r.KeysetID, r.Amount).PrunedSpent++
	}
	return len(keys), t.write(tx)
}
