package spentset

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// MaxAcknowledge bounds the outcomes of one [Store.Acknowledge] call, and
// MaxPrune the requests one [Store.Prune] call removes.
const (
	MaxAcknowledge = protocol.MaxDepositCoins
	MaxPrune       = 1024
)

// Deposit is a pending coin: a spend the server holds and has not yet had
// a verdict on from the mint.
type Deposit struct {
	// Spend is the spend as received.
	Spend *coin.Spend
	// Digest is the digest of the request the spend paid for, which the
	// spend's signature covers and the mint needs to check it.
	Digest [32]byte
	// RequestID is that request's ID.
	RequestID [16]byte
	// DepositUntil is the deadline of the coin's keyset (exclusive), or the
	// zero Time if no keyset lookup was set.
	DepositUntil time.Time
}

// PendingDeposits returns up to limit pending coins, oldest first. They
// stay pending until [Store.Acknowledge] records the mint's verdicts.
func (s *Store) PendingDeposits(ctx context.Context, limit int) ([]Deposit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []Deposit
	err := s.view(func(tx *bolt.Tx) error {
		out = out[:0]
		coins := tx.Bucket(bucketCoins)
		cur := tx.Bucket(bucketPending).Cursor()
		for k, pub := cur.First(); k != nil && len(out) < limit; k, pub = cur.Next() {
			v := coins.Get(pub)
			if v == nil {
				return fmt.Errorf("%w: pending coin %x not recorded", ErrCorrupt, pub)
			}
			c, err := decodeCoinRecord(v)
			if err != nil {
				return err
			}
			d, err := c.deposit(pub)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PendingOf returns the coins among pubs that are pending, in the order
// of pubs, as [Store.PendingDeposits] returns them: a server deposits the
// coins of one request with it before serving a retry on their credit.
// Coins not recorded, or with a verdict, are left out.
func (s *Store) PendingOf(ctx context.Context, pubs [][32]byte) ([]Deposit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Deposit
	err := s.view(func(tx *bolt.Tx) error {
		out = out[:0]
		coins := tx.Bucket(bucketCoins)
		for _, pub := range pubs {
			v := coins.Get(pub[:])
			if v == nil {
				continue
			}
			c, err := decodeCoinRecord(v)
			if err != nil {
				return err
			}
			if c.state != CoinPending {
				continue
			}
			d, err := c.deposit(pub[:])
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deposit returns the pending coin c, recorded under pub, as a Deposit.
func (c *coinRecord) deposit(pub []byte) (Deposit, error) {
	sp, err := coin.ParseSpend(c.spend)
	if err != nil {
		return Deposit{}, fmt.Errorf("%w: spend of coin %x: %v", ErrCorrupt, pub, err)
	}
	d := Deposit{Spend: sp, Digest: c.digest, RequestID: c.requestID}
	if c.depositUntil != never {
		d.DepositUntil = time.Unix(c.depositUntil, 0)
	}
	return d, nil
}

// Outcome is the mint's verdict on one deposited coin.
type Outcome struct {
	CoinPub [32]byte
	// State is a final state: [CoinCredited], [CoinAlreadyCredited],
	// [CoinDoubleSpent], [CoinInvalid], [CoinExpired] or [CoinRevoked].
	State CoinState
}

// Acknowledge records the mint's verdicts, durably before it returns:
// each coin leaves the pending deposits, its amount leaves the pending
// counters (and the bearer counter, for a bearer coin) and is added to the
// credited or the lost value. A coin not pending (unknown, pruned, or
// acknowledged before) is skipped, so a repeated Acknowledge is harmless;
// the first verdict stays. It returns the number of coins changed. At
// most [MaxAcknowledge] outcomes per call; every State must be final
// ([ErrBadStatus]).
func (s *Store) Acknowledge(ctx context.Context, outcomes []Outcome) (int, error) {
	if len(outcomes) > MaxAcknowledge {
		return 0, fmt.Errorf("spentset: %d outcomes, at most %d", len(outcomes), MaxAcknowledge)
	}
	for _, o := range outcomes {
		if !o.State.Final() {
			return 0, fmt.Errorf("%w: %v for coin %x", ErrBadStatus, o.State, o.CoinPub)
		}
	}
	var n int
	err := s.c.do(ctx, func(tx *bolt.Tx) error {
		n = 0
		coins, pending := tx.Bucket(bucketCoins), tx.Bucket(bucketPending)
		old, err := loadStats(tx)
		if err != nil {
			return err
		}
		st := old
		type change struct {
			pub []byte
			rec *coinRecord
		}
		var changes []change
		seen := make(map[[32]byte]bool, len(outcomes))
		for _, o := range outcomes {
			if seen[o.CoinPub] {
				continue
			}
			seen[o.CoinPub] = true
			v := coins.Get(o.CoinPub[:])
			if v == nil {
				continue
			}
			c, err := decodeCoinRecord(v)
			if err != nil {
				return err
			}
			if c.state != CoinPending {
				continue
			}
			amount, bearer := c.amount()
			if err := st.unpend(amount, bearer); err != nil {
				return err
			}
			var ok bool
			if o.State.credited() {
				st.CreditedValue, ok = add(st.CreditedValue, amount)
			} else {
				st.LostValue, ok = add(st.LostValue, amount)
			}
			if !ok {
				return ErrOverflow
			}
			c.state = o.State
			changes = append(changes, change{o.CoinPub[:], c})
		}
		// Writes.
		for _, ch := range changes {
			if err := pending.Delete(seqKey(ch.rec.seq)); err != nil {
				return abort(err)
			}
			ch.rec.seq = 0
			if err := coins.Put(ch.pub, ch.rec.encode()); err != nil {
				return abort(err)
			}
		}
		if err := st.store(tx, old); err != nil {
			return abort(err)
		}
		n = len(changes)
		return nil
	})
	return n, err
}

// unpend takes one pending coin out of the pending counters.
func (st *Stats) unpend(amount uint64, bearer bool) error {
	if st.Pending < 1 || st.PendingValue < amount || bearer && st.PendingBearer < amount {
		return fmt.Errorf("%w: pending counters below a pending coin", ErrCorrupt)
	}
	st.Pending--
	st.PendingValue -= amount
	if bearer {
		st.PendingBearer -= amount
	}
	return nil
}

// Prune forgets requests whose coins' keysets all closed their deposit
// window at or before now (the latest deposit_until ≤ now), with their
// coins and answers, and returns the number of requests removed, at most
// limit (itself at most [MaxPrune]); call it again while it returns limit.
// A coin still pending when pruned can no longer be deposited: its amount
// moves to the lost value.
//
// Pruning is safe only if the server refuses coins of keysets past their
// spend window (which ends no later than the deposit window), as
// [Store.Record] requires. Coins recorded without a keyset lookup are never
// pruned.
func (s *Store) Prune(ctx context.Context, now time.Time, limit int) (int, error) {
	limit = min(limit, MaxPrune)
	if limit <= 0 {
		return 0, nil
	}
	cutoff := now.Unix()
	var n int
	err := s.c.do(ctx, func(tx *bolt.Tx) error {
		n = 0
		expiry := tx.Bucket(bucketExpiry)
		reqs, coins := tx.Bucket(bucketRequests), tx.Bucket(bucketCoins)
		pending, answers := tx.Bucket(bucketPending), tx.Bucket(bucketAnswers)
		old, err := loadStats(tx)
		if err != nil {
			return err
		}
		st := old
		// Checks: gather everything first.
		type victim struct {
			key   []byte
			id    [16]byte
			coins []*coinRecord
			pubs  [][32]byte
		}
		var victims []victim
		cur := expiry.Cursor()
		for k, _ := cur.First(); k != nil && len(victims) < limit; k, _ = cur.Next() {
			if len(k) != 8+16 {
				return fmt.Errorf("%w: expiry key of %d bytes", ErrCorrupt, len(k))
			}
			if int64(u64(k)) > cutoff {
				break
			}
			vi := victim{key: append([]byte(nil), k...), id: [16]byte(k[8:])}
			v := reqs.Get(vi.id[:])
			if v == nil {
				return fmt.Errorf("%w: expiry entry for unknown request %x", ErrCorrupt, vi.id)
			}
			r, err := decodeRequestRecord(v)
			if err != nil {
				return err
			}
			for _, pub := range r.coins {
				cv := coins.Get(pub[:])
				if cv == nil {
					return fmt.Errorf("%w: coin %x of request %x missing", ErrCorrupt, pub, vi.id)
				}
				c, err := decodeCoinRecord(cv)
				if err != nil {
					return err
				}
				if c.state == CoinPending {
					amount, bearer := c.amount()
					if err := st.unpend(amount, bearer); err != nil {
						return err
					}
					var ok bool
					if st.LostValue, ok = add(st.LostValue, amount); !ok {
						return ErrOverflow
					}
				}
				vi.coins = append(vi.coins, c)
				vi.pubs = append(vi.pubs, pub)
			}
			if st.Requests < 1 || st.Coins < uint64(len(r.coins)) {
				return fmt.Errorf("%w: counters below the records", ErrCorrupt)
			}
			st.Requests--
			st.Coins -= uint64(len(r.coins))
			victims = append(victims, vi)
		}
		// Writes.
		for _, vi := range victims {
			for i, c := range vi.coins {
				if c.state == CoinPending {
					if err := pending.Delete(seqKey(c.seq)); err != nil {
						return abort(err)
					}
				}
				if err := coins.Delete(vi.pubs[i][:]); err != nil {
					return abort(err)
				}
			}
			for _, del := range []struct {
				b *bolt.Bucket
				k []byte
			}{{reqs, vi.id[:]}, {answers, vi.id[:]}, {expiry, vi.key}} {
				if err := del.b.Delete(del.k); err != nil {
					return abort(err)
				}
			}
		}
		if err := st.store(tx, old); err != nil {
			return abort(err)
		}
		n = len(victims)
		return nil
	})
	return n, err
}
