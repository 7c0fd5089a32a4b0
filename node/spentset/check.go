package spentset

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Check reads the whole store and verifies it: bbolt's own page checks,
// every record decodes, every coin belongs to a request that lists it and
// every listed coin exists, pending entries and coins agree both ways, the
// expiry index matches the requests, and the counters equal the sums over
// the records (counts, pending value, pending bearer value). Credited and
// lost values cannot be recomputed once coins are pruned; Check verifies
// they are at least what the stored verdicts add up to. It returns an
// error wrapping [ErrCorrupt] on the first disagreement.
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.check()
}

func (s *Store) check() error {
	return s.view(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: bbolt: %w", ErrCorrupt, errors.Join(errs...))
		}
		return checkRecords(tx)
	})
}

func checkRecords(tx *bolt.Tx) error {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	stored, err := loadStats(tx)
	if err != nil {
		return err
	}
	var sum Stats
	var credited, lost uint64
	reqs, pending := tx.Bucket(bucketRequests), tx.Bucket(bucketPending)
	expiry := tx.Bucket(bucketExpiry)

	err = tx.Bucket(bucketCoins).ForEach(func(pub, v []byte) error {
		if len(pub) != 32 {
			return corrupt("coin key of %d bytes", len(pub))
		}
		c, err := decodeCoinRecord(v)
		if err != nil {
			return err
		}
		if !bytes.Equal(c.spend[40:72], pub) {
			return corrupt("coin %x holds the spend of another coin", pub)
		}
		rv := reqs.Get(c.requestID[:])
		if rv == nil {
			return corrupt("coin %x: request %x missing", pub, c.requestID)
		}
		r, err := decodeRequestRecord(rv)
		if err != nil {
			return err
		}
		listed := false
		for _, p := range r.coins {
			listed = listed || bytes.Equal(p[:], pub)
		}
		if !listed || r.digest != c.digest {
			return corrupt("coin %x and request %x disagree", pub, c.requestID)
		}
		sum.Coins++
		amount, bearer := c.amount()
		var ok bool
		switch {
		case c.state == CoinPending:
			if !bytes.Equal(pending.Get(seqKey(c.seq)), pub) {
				return corrupt("pending coin %x has no pending entry", pub)
			}
			sum.Pending++
			if sum.PendingValue, ok = add(sum.PendingValue, amount); !ok {
				return corrupt("pending value overflows")
			}
			if bearer {
				sum.PendingBearer += amount // ≤ PendingValue
			}
		case c.state.credited():
			if credited, ok = add(credited, amount); !ok {
				return corrupt("credited value overflows")
			}
		default:
			if lost, ok = add(lost, amount); !ok {
				return corrupt("lost value overflows")
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	coins := tx.Bucket(bucketCoins)
	err = reqs.ForEach(func(id, v []byte) error {
		if len(id) != 16 {
			return corrupt("request key of %d bytes", len(id))
		}
		r, err := decodeRequestRecord(v)
		if err != nil {
			return err
		}
		if len(r.coins) == 0 {
			return corrupt("request %x without coins", id)
		}
		for _, pub := range r.coins {
			cv := coins.Get(pub[:])
			if cv == nil {
				return corrupt("request %x: coin %x missing", id, pub)
			}
			if !bytes.Equal(cv[2:18], id) {
				return corrupt("request %x lists coin %x of another request", id, pub)
			}
		}
		if r.depositUntil != never && expiry.Get(expiryKey(r.depositUntil, [16]byte(id))) == nil {
			return corrupt("request %x missing from the expiry index", id)
		}
		sum.Requests++
		return nil
	})
	if err != nil {
		return err
	}

	var nPending, nExpiry uint64
	err = pending.ForEach(func(k, pub []byte) error {
		nPending++
		if len(k) != 8 {
			return corrupt("pending key of %d bytes", len(k))
		}
		cv := coins.Get(pub)
		if cv == nil {
			return corrupt("pending entry %d: coin %x missing", u64(k), pub)
		}
		c, err := decodeCoinRecord(cv)
		if err != nil {
			return err
		}
		if c.state != CoinPending || c.seq != u64(k) {
			return corrupt("pending entry %d and coin %x disagree", u64(k), pub)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = expiry.ForEach(func(k, _ []byte) error {
		nExpiry++
		if len(k) != 24 {
			return corrupt("expiry key of %d bytes", len(k))
		}
		rv := reqs.Get(k[8:])
		if rv == nil {
			return corrupt("expiry entry for unknown request %x", k[8:])
		}
		r, err := decodeRequestRecord(rv)
		if err != nil {
			return err
		}
		if uint64(r.depositUntil) != u64(k) {
			return corrupt("expiry entry and request %x disagree", k[8:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketAnswers).ForEach(func(id, _ []byte) error {
		if reqs.Get(id) == nil {
			return corrupt("answer for unknown request %x", id)
		}
		return nil
	})
	if err != nil {
		return err
	}

	switch {
	case nPending != sum.Pending:
		return corrupt("%d pending entries, %d pending coins", nPending, sum.Pending)
	case nExpiry > sum.Requests:
		return corrupt("%d expiry entries, %d requests", nExpiry, sum.Requests)
	case stored.Coins != sum.Coins, stored.Requests != sum.Requests,
		stored.Pending != sum.Pending, stored.PendingValue != sum.PendingValue,
		stored.PendingBearer != sum.PendingBearer:
		return corrupt("counters %+v, records add up to %+v", stored, sum)
	case stored.CreditedValue < credited, stored.LostValue < lost:
		return corrupt("credited %d and lost %d values below the stored verdicts (%d, %d)",
			stored.CreditedValue, stored.LostValue, credited, lost)
	}
	return nil
}
