package wallet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
)

// CoinInfo describes one coin for a status page.
type CoinInfo struct {
	Coin  coin.Coin
	State State
	// Server is the peer ID the coin's last spend was made for (Reserved,
	// Bound, Spent), or nil.
	Server []byte
	// RequestID is the request of that spend, or nil.
	RequestID []byte
	// Since is when the coin entered its state.
	Since time.Time
}

// Reservation is one payment whose outcome is not known yet.
type Reservation struct {
	RequestID []byte
	Server    []byte
	Digest    [32]byte
	Price     uint64
	At        time.Time
	// Coins are the public keys of the coins still reserved for it.
	Coins [][32]byte
}

// Balance sums the wallet's coins by state, in the mint's unit.
type Balance struct {
	// Unspent is the value of coins no spend of which has left the wallet.
	Unspent uint64
	// Reserved is the value of coins in payments whose outcome is not
	// known.
	Reserved uint64
	// Bound is the value of coins that may go only to one server or,
	// for bearer coins, to the mint.
	Bound uint64
	// Pending is the value of withdrawals not finished.
	Pending uint64
}

func checkPayment(server, requestID []byte) error {
	if len(server) == 0 || len(server) > coin.MaxServerIDLen {
		return fmt.Errorf("%w: server ID length %d", ErrInvalid, len(server))
	}
	if len(requestID) == 0 || len(requestID) > MaxRequestIDLen {
		return fmt.Errorf("%w: request ID length %d", ErrInvalid, len(requestID))
	}
	return nil
}

// candidate is a coin that may pay at one server.
type candidate struct {
	rec       *coinRecord
	preferred bool
}

// usable reports whether the coin of r may pay server at now, and whether
// it should be used first because it can go to few other places.
func (w *Wallet) usable(r *coinRecord, server []byte, isMint bool, designation [32]byte, now time.Time) (ok, preferred bool) {
	ks, known := w.Keyset(r.coin.KeysetID)
	window := coin.WindowSpend
	if isMint {
		window = coin.WindowDeposit
	}
	if !known || !ks.Open(window, now) {
		return false, false
	}
	if isMint && r.coin.Designated != ([32]byte{}) {
		// The mint swaps bearer coins only.
		return false, false
	}
	switch r.state {
	case Unspent:
		switch r.coin.Designated {
		case [32]byte{}:
			return true, false
		case designation:
			return true, true
		}
	case Bound:
		if isMint || bytes.Equal(r.server, server) {
			return true, true
		}
	}
	return false, false
}

// Reserve pays price at server for one request: it picks coins that sum to
// price exactly, signs their spends for server (its binary peer ID) and the
// request digest, and marks them [Reserved] for (server, requestID) in one
// committed transaction before it returns the spends.
//
// It uses only coins whose keyset is inside its spend window and that may
// go to server: coins designated to it and coins [Bound] to it first, then
// bearer coins. It never uses coins designated to another server, coins
// bound to another server, or coins reserved for another request. Paying
// the mint (a swap), it uses bearer coins only, [Bound] ones first, and
// never a designated coin: the mint swaps bearer coins only. If the usable
// coins sum to less than price, it fails with [ErrInsufficientFunds]; if
// no subset pays exactly, with an error wrapping coin.ErrNoExactChange
// (swap for change); if the payment needs more than [MaxSpends] coins,
// with [ErrTooManyCoins].
//
// Calling Reserve again for a request still in flight, with the same
// server, digest and price, returns the same spends; any other reuse of a
// request ID fails with [ErrRequestConflict]. After sending, the caller
// reports the outcome with [Wallet.Settle].
func (w *Wallet) Reserve(ctx context.Context, server, requestID []byte, digest [32]byte, price uint64) ([]*coin.Spend, error) {
	if err := checkPayment(server, requestID); err != nil {
		return nil, err
	}
	if price == 0 {
		return nil, fmt.Errorf("%w: zero price", ErrInvalid)
	}
	isMint := bytes.Equal(server, w.mint.Peer)
	designation := coin.Designation(server)
	var spends []*coin.Spend
	err := w.update(ctx, func(tx *bolt.Tx) error {
		now := w.now()
		reqs, coins := tx.Bucket(bucketRequests), tx.Bucket(bucketCoins)
		if v := reqs.Get(requestID); v != nil {
			var err error
			spends, err = w.replay(coins, v, server, requestID, digest, &price)
			return err
		}
		var cands []candidate
		err := coins.ForEach(func(_, v []byte) error {
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			if ok, pref := w.usable(r, server, isMint, designation, now); ok {
				cands = append(cands, candidate{r, pref})
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Preferred coins first: Select keeps the order among equal
		// amounts.
		slices.SortStableFunc(cands, func(a, b candidate) int {
			switch {
			case a.preferred && !b.preferred:
				return -1
			case !a.preferred && b.preferred:
				return 1
			}
			return 0
		})
		amounts := make([]uint64, len(cands))
		var total uint64
		for i, c := range cands {
			amounts[i] = c.rec.coin.Amount
			if total += c.rec.coin.Amount; total < c.rec.coin.Amount {
				total = ^uint64(0)
			}
		}
		if total < price {
			return fmt.Errorf("%w: %d usable at this server, price %d", ErrInsufficientFunds, total, price)
		}
		idx, err := coin.Select(amounts, price)
		if err != nil {
			return fmt.Errorf("wallet: %w", err)
		}
		if len(idx) > MaxSpends {
			return fmt.Errorf("%w: %d coins", ErrTooManyCoins, len(idx))
		}
		picked := make([]*coinRecord, len(idx))
		for i, j := range idx {
			picked[i] = cands[j].rec
		}
		spends, err = w.reserve(tx, picked, server, requestID, digest, price, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return spends, nil
}

// ReserveSwap pays the mint with the given coins for one Swap request: it
// signs their spends for the mint and the request digest and marks them
// [Reserved] in one committed transaction. The price is their sum.
//
// The mint swaps bearer coins only: a bearer coin may go to it unspent,
// [Bound] to any server, or reserved at a server that never answered. A
// coin taken from such a reservation leaves it; settling that reservation
// later changes nothing for the coin. A coin designated to a server is
// redeemable by that server alone and fails with [ErrUnavailable], in
// every state; one reserved at a server that never answers stays usable
// at that server only (a retry of the same request, or, once settled as
// refused, as a coin [Bound] to it). A coin already spent, already in a
// reservation at the mint, unknown, or of a keyset past its deposit window
// also fails with [ErrUnavailable]. A failed call changes nothing.
// Idempotence is as for [Wallet.Reserve].
func (w *Wallet) ReserveSwap(ctx context.Context, requestID []byte, digest [32]byte, pubs [][32]byte) ([]*coin.Spend, error) {
	return w.reserveAtMint(ctx, requestID, digest, pubs, "swap", func(reqs *bolt.Bucket, r *coinRecord, now time.Time) error {
		if r.coin.Designated != ([32]byte{}) {
			// The mint swaps bearer coins only: a designated coin is
			// redeemable by its server alone.
			return fmt.Errorf("%w: a designated coin cannot be swapped", ErrUnavailable)
		}
		switch r.state {
		case Unspent, Bound:
		case Reserved:
			if bytes.Equal(r.server, w.mint.Peer) {
				return fmt.Errorf("%w: coin already in a swap", ErrUnavailable)
			}
			return detach(reqs, r.request, r.coin.Pub, now)
		default:
			return fmt.Errorf("%w: coin %s", ErrUnavailable, r.state)
		}
		return nil
	})
}

// reserveAtMint reserves the coins pubs for request requestID at the mint
// (a swap or a recoup, named what): each must be known, of a keyset
// inside its deposit window, and pass take, which may change the state
// of the other records in the transaction (detach). Idempotence is as
// for [Wallet.Reserve].
func (w *Wallet) reserveAtMint(ctx context.Context, requestID []byte, digest [32]byte, pubs [][32]byte, what string,
	take func(reqs *bolt.Bucket, r *coinRecord, now time.Time) error) ([]*coin.Spend, error) {
	server := w.mint.Peer
	if err := checkPayment(server, requestID); err != nil {
		return nil, err
	}
	if len(pubs) == 0 || len(pubs) > MaxSpends {
		return nil, fmt.Errorf("%w: %d coins in one %s", ErrInvalid, len(pubs), what)
	}
	for i := range pubs {
		if slices.Contains(pubs[:i], pubs[i]) {
			return nil, fmt.Errorf("%w: a coin listed twice", ErrInvalid)
		}
	}
	var spends []*coin.Spend
	err := w.update(ctx, func(tx *bolt.Tx) error {
		now := w.now()
		reqs, coins := tx.Bucket(bucketRequests), tx.Bucket(bucketCoins)
		if v := reqs.Get(requestID); v != nil {
			var err error
			spends, err = w.replay(coins, v, server, requestID, digest, nil)
			if err == nil && !samePubs(spends, pubs) {
				err = fmt.Errorf("%w: other coins", ErrRequestConflict)
			}
			return err
		}
		picked := make([]*coinRecord, len(pubs))
		var price uint64
		for i, pub := range pubs {
			v := coins.Get(pub[:])
			if v == nil {
				return fmt.Errorf("%w: unknown coin", ErrUnavailable)
			}
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			ks, known := w.Keyset(r.coin.KeysetID)
			if !known || !ks.Open(coin.WindowDeposit, now) {
				return fmt.Errorf("%w: keyset outside its deposit window", ErrUnavailable)
			}
			if err := take(reqs, r, now); err != nil {
				return err
			}
			picked[i] = r
			price += r.coin.Amount
		}
		var err error
		spends, err = w.reserve(tx, picked, server, requestID, digest, price, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return spends, nil
}

func samePubs(spends []*coin.Spend, pubs [][32]byte) bool {
	if len(spends) != len(pubs) {
		return false
	}
	for i, s := range spends {
		if s.Pub != pubs[i] {
			return false
		}
	}
	return true
}

// detach removes pub from the in-flight reservation requestID; a
// reservation left without coins is marked moved.
func detach(reqs *bolt.Bucket, requestID []byte, pub [32]byte, now time.Time) error {
	v := reqs.Get(requestID)
	if v == nil {
		return fmt.Errorf("%w: reserved coin without its request", ErrCorrupt)
	}
	rq, err := parseRequestRecord(v)
	if err != nil {
		return err
	}
	rq.coins = slices.DeleteFunc(rq.coins, func(p [32]byte) bool { return p == pub })
	if len(rq.coins) == 0 {
		rq.state, rq.settled = reqMoved, now.UnixNano()
	}
	return reqs.Put(requestID, rq.bytes())
}

// replay answers a Reserve for a request ID already recorded: the same
// spends if the request is in flight with the same server, digest and
// price (nil price: any), and an error otherwise.
func (w *Wallet) replay(coins *bolt.Bucket, v, server, requestID []byte, digest [32]byte, price *uint64) ([]*coin.Spend, error) {
	rq, err := parseRequestRecord(v)
	if err != nil {
		return nil, err
	}
	if rq.state != reqInFlight || !bytes.Equal(rq.server, server) || rq.digest != digest || (price != nil && rq.price != *price) {
		return nil, fmt.Errorf("%w", ErrRequestConflict)
	}
	spends := make([]*coin.Spend, 0, len(rq.coins))
	var sum uint64
	for _, pub := range rq.coins {
		v := coins.Get(pub[:])
		if v == nil {
			return nil, fmt.Errorf("%w: reserved coin missing", ErrCorrupt)
		}
		r, err := parseCoinRecord(v)
		if err != nil {
			return nil, err
		}
		s, err := w.spend(r, server, digest)
		if err != nil {
			return nil, err
		}
		spends = append(spends, s)
		sum += r.coin.Amount
	}
	if sum != rq.price {
		return nil, fmt.Errorf("%w: its coins were moved to a swap", ErrRequestConflict)
	}
	return spends, nil
}

// reserve signs spends of picked and records them reserved for the request.
func (w *Wallet) reserve(tx *bolt.Tx, picked []*coinRecord, server, requestID []byte, digest [32]byte, price uint64, now time.Time) ([]*coin.Spend, error) {
	coins := tx.Bucket(bucketCoins)
	rq := requestRecord{state: reqInFlight, server: server, digest: digest, price: price, at: now.UnixNano()}
	spends := make([]*coin.Spend, len(picked))
	for i, r := range picked {
		s, err := w.spend(r, server, digest)
		if err != nil {
			return nil, err
		}
		spends[i] = s
		r.state, r.server, r.request, r.since = Reserved, server, requestID, now.UnixNano()
		if err := coins.Put(r.coin.Pub[:], r.bytes()); err != nil {
			return nil, err
		}
		rq.coins = append(rq.coins, r.coin.Pub)
	}
	return spends, tx.Bucket(bucketRequests).Put(requestID, rq.bytes())
}

// spend signs a spend of the coin of r, re-deriving its key from the seed.
func (w *Wallet) spend(r *coinRecord, server []byte, digest [32]byte) (*coin.Spend, error) {
	key, err := w.coinKey(r)
	if err != nil {
		return nil, err
	}
	s, err := coin.NewSpend(&r.coin, key, server, digest)
	if err != nil {
		return nil, fmt.Errorf("%w: coin does not derive from the seed: %w", ErrCorrupt, err)
	}
	return s, nil
}

func (w *Wallet) coinKey(r *coinRecord) (ed25519.PrivateKey, error) {
	ks, ok := w.Keyset(r.coin.KeysetID)
	if !ok {
		return nil, fmt.Errorf("%w: of a stored coin", ErrUnknownKeyset)
	}
	denom, ok := ks.Key(r.coin.Amount)
	if !ok {
		return nil, fmt.Errorf("%w: coin amount not in its keyset", ErrCorrupt)
	}
	return coin.CoinKey(&w.seed, coin.Nonce(&w.seed, r.counter), denom), nil
}

// Settle records the outcome of the request: paid means the server (or
// the mint) may have kept the coins — it served the call, or answered
// anything but a definite refusal that recorded nothing — and makes them
// [Spent]. paid false means the server definitely refused without recording
// the coins (for example PAYMENT_REQUIRED); the coins become [Bound] to
// that server: usable there again or, for bearer coins, at the mint,
// nowhere else. When the
// outcome is unknown (a timeout), do not call Settle; the reservation shows
// in [Wallet.ReservedOlderThan].
//
// Settling a request again the same way is not an error; the other way
// fails with [ErrSettled]. A request whose coins were all taken into a
// swap settles to nothing.
func (w *Wallet) Settle(ctx context.Context, requestID []byte, paid bool) error {
	return w.update(ctx, func(tx *bolt.Tx) error {
		reqs, coins := tx.Bucket(bucketRequests), tx.Bucket(bucketCoins)
		v := reqs.Get(requestID)
		if v == nil {
			return ErrUnknownRequest
		}
		rq, err := parseRequestRecord(v)
		if err != nil {
			return err
		}
		switch {
		case rq.state == reqMoved:
			return nil
		case rq.state == reqPaid && paid, rq.state == reqRefused && !paid:
			return nil
		case rq.state != reqInFlight:
			return ErrSettled
		}
		now := w.now().UnixNano()
		to := Bound
		rq.state = reqRefused
		if paid {
			to, rq.state = Spent, reqPaid
		}
		rq.settled = now
		for _, pub := range rq.coins {
			v := coins.Get(pub[:])
			if v == nil {
				return fmt.Errorf("%w: reserved coin missing", ErrCorrupt)
			}
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			if r.state != Reserved || !bytes.Equal(r.request, requestID) {
				continue
			}
			r.state, r.since = to, now
			if err := coins.Put(pub[:], r.bytes()); err != nil {
				return err
			}
		}
		return reqs.Put(requestID, rq.bytes())
	})
}

// ReservedOlderThan lists the reservations still in flight that were made
// more than d ago: payments to servers that never answered (or, at the
// mint, swaps to retry). Only the bearer coins among them can be refreshed
// by a swap ([Wallet.ReserveSwap]); a designated coin stays reserved at
// its server, usable there alone, until that server answers and the
// reservation is settled.
func (w *Wallet) ReservedOlderThan(ctx context.Context, d time.Duration) ([]Reservation, error) {
	cutoff := w.now().Add(-d).UnixNano()
	var out []Reservation
	err := w.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
			rq, err := parseRequestRecord(v)
			if err != nil {
				return err
			}
			if rq.state == reqInFlight && rq.at <= cutoff {
				out = append(out, Reservation{RequestID: slices.Clone(k), Server: rq.server, Digest: rq.digest,
					Price: rq.price, At: time.Unix(0, rq.at), Coins: rq.coins})
			}
			return nil
		})
	})
	return out, err
}

// Coins lists every coin the wallet has stored, in every state.
func (w *Wallet) Coins(ctx context.Context) ([]CoinInfo, error) {
	return w.coins(ctx, func(State) bool { return true })
}

// Bound lists the coins [Bound] to a server. Bearer ones should be swapped
// at the mint unless that server will be paid again soon; a designated
// coin can go only to its server.
func (w *Wallet) Bound(ctx context.Context) ([]CoinInfo, error) {
	return w.coins(ctx, func(s State) bool { return s == Bound })
}

func (w *Wallet) coins(ctx context.Context, keep func(State) bool) ([]CoinInfo, error) {
	var out []CoinInfo
	err := w.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCoins).ForEach(func(_, v []byte) error {
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			if keep(r.state) {
				out = append(out, CoinInfo{Coin: r.coin, State: r.state, Server: r.server, RequestID: r.request,
					Since: time.Unix(0, r.since)})
			}
			return nil
		})
	})
	return out, err
}

// Balance sums the wallet's coins by state.
func (w *Wallet) Balance(ctx context.Context) (Balance, error) {
	var b Balance
	err := w.view(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketCoins).ForEach(func(_, v []byte) error {
			r, err := parseCoinRecord(v)
			if err != nil {
				return err
			}
			switch r.state {
			case Unspent:
				b.Unspent += r.coin.Amount
			case Reserved:
				b.Reserved += r.coin.Amount
			case Bound:
				b.Bound += r.coin.Amount
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			r, err := parsePendingRecord(v)
			if err != nil {
				return err
			}
			b.Pending += r.amount
			return nil
		})
	})
	return b, err
}
