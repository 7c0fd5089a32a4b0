package wallet

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
)

// Recoup: the coins of a keyset the mint revoked are refused everywhere;
// the wallet gets their value back by proving to the mint that the mint
// issued them (coin.RecoupProof), onto a voucher code derived from the
// seed ([Wallet.RecoupCode]), from which it withdraws fresh coins.

const tagRecoupCode = "scrip/v1/wallet-recoup-code\x00"

var recoupEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RecoupCode returns the voucher code the wallet has the value of its
// recouped coins credited to: 32 characters derived from the seed, so a
// wallet restored from its seed finds the value its crashed predecessor
// recouped and did not withdraw. Like any voucher code it is bearer
// money: it must not leave the wallet but for the mint.
func (w *Wallet) RecoupCode() string {
	h := sha256.New()
	h.Write([]byte(tagRecoupCode))
	h.Write(w.seed[:])
	return recoupEncoding.EncodeToString(h.Sum(nil)[:20])
}

// RecoupCoin is a stored coin with the nonce it was issued under.
type RecoupCoin struct {
	Coin  coin.Coin
	Nonce [32]byte
}

// Recoupable lists the coins of keyset id that no spend of has reached a
// server that may have kept it: [Unspent] coins and coins [Bound] to a
// server that refused them, designated or not, in the keyset's deposit
// window. These are the coins to recoup when the mint revokes id.
func (w *Wallet) Recoupable(ctx context.Context, id [32]byte) ([]RecoupCoin, error) {
	ks, ok := w.Keyset(id)
	if !ok {
		return nil, nil
	}
	if !ks.Open(coin.WindowDeposit, w.now()) {
		return nil, nil
	}
	var out []RecoupCoin
	err := w.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCoins).ForEach(func(k, v []byte) error {
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			if r.coin.KeysetID == id && (r.state == Unspent || r.state == Bound) {
				out = append(out, RecoupCoin{Coin: r.coin, Nonce: coin.Nonce(&w.seed, r.counter)})
			}
			return nil
		})
	})
	return out, err
}

// RecoupProof derives from the seed the recoup proof of coin c, issued
// under nonce, given the mint's commitments r0, r1 for it (from the mint's
// Restore answer). It returns the proof and the challenge hash the mint's
// row must hold; compare it with the hash Restore returned before sending
// the proof. The proof links the coin to its withdrawal.
func (w *Wallet) RecoupProof(c *coin.Coin, nonce, r0, r1 [32]byte) (coin.RecoupProof, [32]byte, error) {
	ks, ok := w.Keyset(c.KeysetID)
	if !ok {
		return coin.RecoupProof{}, [32]byte{}, ErrUnknownKeyset
	}
	return coin.NewRecoupProof(&w.seed, ks, c, nonce, r0, r1)
}

// ReserveRecoup signs spends of the coins pubs for the mint and the
// recoup request's digest, and marks them [Reserved] for (mint,
// requestID) in one committed transaction before it returns the spends;
// settle the request with [Wallet.Settle] (paid: the mint took the coins,
// or had taken them before). The coins must be [Unspent] or [Bound],
// designated or not, of a keyset inside its deposit window; anything else
// fails with [ErrUnavailable], changing nothing. Calling it again for the
// request in flight with the same digest and coins returns the same
// spends; any other reuse of the request ID fails with
// [ErrRequestConflict].
func (w *Wallet) ReserveRecoup(ctx context.Context, requestID []byte, digest [32]byte, pubs [][32]byte) ([]*coin.Spend, error) {
	return w.reserveAtMint(ctx, requestID, digest, pubs, "recoup", func(_ *bolt.Bucket, r *coinRecord, _ time.Time) error {
		if r.state != Unspent && r.state != Bound {
			return fmt.Errorf("%w: coin %s", ErrUnavailable, r.state)
		}
		return nil
	})
}
