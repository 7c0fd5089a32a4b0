package wallet

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
)

// Withdrawal is one coin being withdrawn: a counter the wallet has
// committed as used, and the client's side of the issuance. It is not safe
// for concurrent use.
type Withdrawal struct {
	// Counter is the wallet counter the coin is derived from.
	Counter    uint64
	KeysetID   [32]byte
	Amount     uint64
	Designated [32]byte
	// Created is when the counter was committed.
	Created time.Time

	cw       *coin.Withdrawal
	recorded bool // R0, R1 are committed
	r0, r1   [32]byte
}

// Nonce returns the nonce to send to the mint in WithdrawBegin.
func (wd *Withdrawal) Nonce() [32]byte { return wd.cw.Nonce() }

// Commitments returns the mint's commitments once they are committed to
// the wallet by [Wallet.Challenges].
func (wd *Withdrawal) Commitments() (r0, r1 [32]byte, ok bool) {
	return wd.r0, wd.r1, wd.recorded
}

// Challenges returns the blinded challenges once the commitments are
// committed: the caller sends exactly these on every retry of
// WithdrawFinish, and can compare coin.ChallengeHash(c0, c1) with the
// challenge hash of a row the mint's Restore returns.
func (wd *Withdrawal) Challenges() (c0, c1 [32]byte, ok bool) {
	if !wd.recorded {
		return c0, c1, false
	}
	c0, c1, err := wd.cw.Challenges(wd.r0, wd.r1)
	return c0, c1, err == nil
}

// Format redacts: a Withdrawal holds the coin key and blinding factors.
func (wd Withdrawal) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "wallet.Withdrawal{counter: %d, amount: %d}", wd.Counter, wd.Amount)
}

// NextWithdrawal is [Wallet.NextWithdrawals] for one coin.
func (w *Wallet) NextWithdrawal(ctx context.Context, ks *coin.Keyset, amount uint64, designated [32]byte) (*Withdrawal, error) {
	wds, err := w.NextWithdrawals(ctx, ks, []uint64{amount}, designated)
	if err != nil {
		return nil, err
	}
	return wds[0], nil
}

// NextWithdrawals starts the withdrawal of one coin per amount from keyset
// ks, all with the given designation (zero for bearer coins; see
// coin.Designation). In one committed transaction it takes the next
// len(amounts) counters, records each withdrawal as pending, and stores ks
// if the wallet does not know it yet (after checking it against the mint
// key). Only then does it return the withdrawals, whose nonces go to the
// mint.
//
// It refuses amounts the keyset does not offer (coin.ErrAmount), a keyset
// outside its issue window (coin.ErrOutsideWindow), and more than
// [MaxBatch] amounts.
func (w *Wallet) NextWithdrawals(ctx context.Context, ks *coin.Keyset, amounts []uint64, designated [32]byte) ([]*Withdrawal, error) {
	if len(amounts) == 0 || len(amounts) > MaxBatch {
		return nil, fmt.Errorf("%w: %d withdrawals in one batch", ErrInvalid, len(amounts))
	}
	ks, known, err := w.knownKeyset(ks)
	if err != nil {
		return nil, err
	}
	now := w.now()
	if !ks.Open(coin.WindowIssue, now) {
		return nil, fmt.Errorf("wallet: %w: issue window", coin.ErrOutsideWindow)
	}
	for _, a := range amounts {
		if _, ok := ks.Key(a); !ok {
			return nil, fmt.Errorf("wallet: %w: no denomination %d", coin.ErrAmount, a)
		}
	}
	var first uint64
	err = w.update(ctx, func(tx *bolt.Tx) error {
		c, err := getCounter(tx)
		if err != nil {
			return err
		}
		if c > ^uint64(0)-uint64(len(amounts)) {
			return fmt.Errorf("%w: counter exhausted", ErrInvalid)
		}
		first = c
		if err := tx.Bucket(bucketMeta).Put(metaCounter, u64(c+uint64(len(amounts)))); err != nil {
			return err
		}
		if !known {
			if err := w.putKeyset(tx, ks); err != nil {
				return err
			}
		}
		pend := tx.Bucket(bucketPending)
		for i, a := range amounts {
			r := pendingRecord{keysetID: ks.ID(), amount: a, designated: designated, created: now.UnixNano()}
			if err := pend.Put(u64(c+uint64(i)), r.bytes()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !known {
		w.cacheKeyset(ks)
	}
	out := make([]*Withdrawal, len(amounts))
	for i, a := range amounts {
		r := &pendingRecord{keysetID: ks.ID(), amount: a, designated: designated, created: now.UnixNano()}
		if out[i], err = w.withdrawal(first+uint64(i), r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withdrawal rebuilds the withdrawal of a pending record.
func (w *Wallet) withdrawal(counter uint64, r *pendingRecord) (*Withdrawal, error) {
	ks, ok := w.Keyset(r.keysetID)
	if !ok {
		return nil, fmt.Errorf("%w: pending withdrawal %d", ErrUnknownKeyset, counter)
	}
	cw, err := coin.NewWithdrawal(&w.seed, counter, ks, r.amount, r.designated)
	if err != nil {
		return nil, fmt.Errorf("%w: pending withdrawal %d: %w", ErrCorrupt, counter, err)
	}
	wd := &Withdrawal{Counter: counter, KeysetID: r.keysetID, Amount: r.amount, Designated: r.designated,
		Created: time.Unix(0, r.created), cw: cw}
	if r.hasR {
		if _, _, err := cw.Challenges(r.r0, r.r1); err != nil {
			return nil, fmt.Errorf("%w: pending withdrawal %d: %w", ErrCorrupt, counter, err)
		}
		wd.recorded, wd.r0, wd.r1 = true, r.r0, r.r1
	}
	return wd, nil
}

// Challenges checks the mint's commitments R0, R1 for wd, commits them to
// the wallet, and only then returns the blinded challenges c0, c1 for
// WithdrawFinish. Called again with the same commitments, it returns the
// same challenges; with others, it fails with an error wrapping
// coin.ErrBadKey (a mint that changes its commitments may be trying to
// link the coin). Commitments that are not canonical points of prime order
// also fail with coin.ErrBadKey.
func (w *Wallet) Challenges(ctx context.Context, wd *Withdrawal, r0, r1 [32]byte) (c0, c1 [32]byte, err error) {
	c0, c1, err = wd.cw.Challenges(r0, r1)
	if err != nil {
		return c0, c1, fmt.Errorf("wallet: %w", err)
	}
	if wd.recorded {
		return c0, c1, nil
	}
	err = w.update(ctx, func(tx *bolt.Tx) error {
		pend := tx.Bucket(bucketPending)
		key := u64(wd.Counter)
		v := pend.Get(key)
		if v == nil {
			return fmt.Errorf("%w: counter %d", ErrUnknownWithdrawal, wd.Counter)
		}
		rec, err := parsePendingRecord(v)
		if err != nil {
			return err
		}
		if rec.hasR {
			if rec.r0 != r0 || rec.r1 != r1 {
				return fmt.Errorf("wallet: %w: the mint changed its commitments", coin.ErrBadKey)
			}
			return nil
		}
		rec.hasR, rec.r0, rec.r1 = true, r0, r1
		return pend.Put(key, rec.bytes())
	})
	if err != nil {
		return [32]byte{}, [32]byte{}, err
	}
	wd.recorded, wd.r0, wd.r1 = true, r0, r1
	return c0, c1, nil
}

// FinishWithdrawal unblinds the mint's answer for wd into a coin and, in
// one committed transaction, stores the coin as [Unspent] and removes the
// pending withdrawal. An answer that does not give a valid coin fails with
// an error wrapping coin.ErrBadSignature and leaves the withdrawal pending.
// Finishing a withdrawal whose coin is already stored returns the coin and
// never changes its state.
func (w *Wallet) FinishWithdrawal(ctx context.Context, wd *Withdrawal, a coin.Answer) (*coin.Coin, error) {
	if !wd.recorded {
		return nil, fmt.Errorf("%w: finish before the commitments are recorded", ErrOrder)
	}
	c, err := wd.cw.Finish(a)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	err = w.update(ctx, func(tx *bolt.Tx) error {
		pend, coins := tx.Bucket(bucketPending), tx.Bucket(bucketCoins)
		key := u64(wd.Counter)
		exists := coins.Get(c.Pub[:]) != nil
		if pend.Get(key) == nil {
			if exists {
				return nil
			}
			return fmt.Errorf("%w: counter %d", ErrUnknownWithdrawal, wd.Counter)
		}
		if !exists {
			now := w.now().UnixNano()
			r := coinRecord{state: Unspent, counter: wd.Counter, coin: *c, created: now, since: now}
			if err := coins.Put(c.Pub[:], r.bytes()); err != nil {
				return err
			}
		}
		return pend.Delete(key)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AbandonWithdrawal forgets a pending withdrawal, for a mint that refused
// it for good. Its counter is never used again. The caller must be sure
// that the mint did not answer: a withdrawal whose challenges were sent
// may have been paid for and answered, and is better finished from the
// mint's Restore.
func (w *Wallet) AbandonWithdrawal(ctx context.Context, wd *Withdrawal) error {
	return w.update(ctx, func(tx *bolt.Tx) error {
		pend := tx.Bucket(bucketPending)
		if pend.Get(u64(wd.Counter)) == nil {
			return fmt.Errorf("%w: counter %d", ErrUnknownWithdrawal, wd.Counter)
		}
		return pend.Delete(u64(wd.Counter))
	})
}

// PendingWithdrawals returns the withdrawals started and not finished or
// abandoned, by counter, rebuilt from the seed and the stored records:
// those whose commitments were recorded return the same challenges as
// before.
func (w *Wallet) PendingWithdrawals(ctx context.Context) ([]*Withdrawal, error) {
	type entry struct {
		counter uint64
		rec     *pendingRecord
	}
	var es []entry
	err := w.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: pending key", ErrCorrupt)
			}
			r, err := parsePendingRecord(v)
			if err != nil {
				return err
			}
			es = append(es, entry{binary.BigEndian.Uint64(k), r})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Withdrawal, 0, len(es))
	for _, e := range es {
		wd, err := w.withdrawal(e.counter, e.rec)
		if err != nil {
			return nil, err
		}
		out = append(out, wd)
	}
	return out, nil
}

// Nonces returns the nonces of counters from, from+1, ..., from+n-1, for
// asking the mint's Restore which of them it answered. n is at most
// [MaxBatch].
func (w *Wallet) Nonces(from uint64, n int) ([][32]byte, error) {
	if n < 0 || n > MaxBatch || from > ^uint64(0)-uint64(n) {
		return nil, fmt.Errorf("%w: %d nonces", ErrInvalid, n)
	}
	out := make([][32]byte, n)
	for i := range out {
		out[i] = coin.Nonce(&w.seed, from+uint64(i))
	}
	return out, nil
}

// RecoverWithdrawal records a pending withdrawal for a counter the wallet
// may already have used, so that a coin the mint answered (found with
// [Wallet.Nonces] and the mint's Restore) can be finished: call
// [Wallet.Challenges] with the row's commitments, compare the challenge
// hash, then [Wallet.FinishWithdrawal] with the row's answer (or
// [Wallet.AbandonWithdrawal] and try another designation). It raises the
// next counter above counter. A counter with a pending withdrawal fails
// with [ErrInvalid].
func (w *Wallet) RecoverWithdrawal(ctx context.Context, counter uint64, ks *coin.Keyset, amount uint64, designated [32]byte) (*Withdrawal, error) {
	ks, known, err := w.knownKeyset(ks)
	if err != nil {
		return nil, err
	}
	if _, ok := ks.Key(amount); !ok {
		return nil, fmt.Errorf("wallet: %w: no denomination %d", coin.ErrAmount, amount)
	}
	if counter == ^uint64(0) {
		return nil, fmt.Errorf("%w: counter", ErrInvalid)
	}
	r := &pendingRecord{keysetID: ks.ID(), amount: amount, designated: designated, created: w.now().UnixNano()}
	err = w.update(ctx, func(tx *bolt.Tx) error {
		pend := tx.Bucket(bucketPending)
		if pend.Get(u64(counter)) != nil {
			return fmt.Errorf("%w: counter %d has a pending withdrawal", ErrInvalid, counter)
		}
		next, err := getCounter(tx)
		if err != nil {
			return err
		}
		if next <= counter {
			if err := tx.Bucket(bucketMeta).Put(metaCounter, u64(counter+1)); err != nil {
				return err
			}
		}
		if !known {
			if err := w.putKeyset(tx, ks); err != nil {
				return err
			}
		}
		return pend.Put(u64(counter), r.bytes())
	})
	if err != nil {
		return nil, err
	}
	if !known {
		w.cacheKeyset(ks)
	}
	return w.withdrawal(counter, r)
}
