package protocol

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Simple implementations of the paywall's interfaces: a schedule book, a
// keyset list, a bearer cap and an in-memory spent set.

// PriceBook is a [PriceSource] that holds the schedules a server
// published: the latest is current, and every one is honoured until it
// expires. It is safe for concurrent use; the zero value is not usable
// (see [NewPriceBook]).
type PriceBook struct {
	mu      sync.RWMutex
	byID    map[[ScheduleIDSize]byte]*SignedSchedule
	order   []*SignedSchedule // as published
	message string
}

var _ PriceSource = (*PriceBook)(nil)

// NewPriceBook returns an empty book.
func NewPriceBook() *PriceBook {
	return &PriceBook{byID: make(map[[ScheduleIDSize]byte]*SignedSchedule)}
}

// Publish adds s to the book; s becomes current (while it is valid), and
// message the pricing agent's message for clients asked to pay under it.
func (b *PriceBook) Publish(s *SignedSchedule, message string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.byID[s.ID()]; !ok {
		b.byID[s.ID()] = s
	}
	b.order = append(b.order, s)
	b.message = message
}

// Current returns the most recently published schedule valid at now.
func (b *PriceBook) Current(now time.Time) (*SignedSchedule, string, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for i := len(b.order) - 1; i >= 0; i-- {
		if s := b.order[i]; s.Check(now) == nil {
			msg := ""
			if i == len(b.order)-1 {
				msg = b.message
			}
			return s, msg, nil
		}
	}
	return nil, "", ErrNoSchedule
}

// Lookup returns the published schedule with the given ID.
func (b *PriceBook) Lookup(id [ScheduleIDSize]byte) (*SignedSchedule, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s, ok := b.byID[id]
	return s, ok
}

// Prune forgets schedules that expired before now and returns how many.
func (b *PriceBook) Prune(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	keep := b.order[:0]
	for _, s := range b.order {
		if now.Unix() > s.NotAfter.Unix() {
			if _, ok := b.byID[s.ID()]; ok {
				delete(b.byID, s.ID())
				n++
			}
			continue
		}
		keep = append(keep, s)
	}
	clear(b.order[len(keep):])
	b.order = keep
	return n
}

// KeysetList is a [coin.Keysets] of the keysets a mint published, as a
// server or a wallet learns them (from the mint's Keysets call), with the
// revoked ones refused: their lookup fails with an error wrapping both
// [coin.ErrUnknownKeyset] and [ErrRevokedKeyset]. It is safe for
// concurrent use; the zero value is not usable (see [NewKeysetList]).
type KeysetList struct {
	mu      sync.RWMutex
	sets    coin.KeysetMap
	revoked map[[32]byte]bool
}

var _ coin.Keysets = (*KeysetList)(nil)

// NewKeysetList returns a list of the given keysets, none revoked.
func NewKeysetList(keysets ...*coin.Keyset) (*KeysetList, error) {
	l := &KeysetList{sets: coin.KeysetMap{}, revoked: make(map[[32]byte]bool)}
	for _, ks := range keysets {
		if err := l.Add(ks); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Add adds a keyset; see [coin.KeysetMap.Add] for what it refuses.
func (l *KeysetList) Add(ks *coin.Keyset) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sets.Add(ks)
}

// Revoke marks keyset id revoked, known or not.
func (l *KeysetList) Revoke(id [32]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.revoked[id] = true
}

// Lookup implements [coin.Keysets].
func (l *KeysetList) Lookup(id [32]byte) (*coin.Keyset, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.revoked[id] {
		return nil, fmt.Errorf("%w: %w", coin.ErrUnknownKeyset, ErrRevokedKeyset)
	}
	return l.sets.Lookup(id)
}

// DefaultBearerCap is the undeposited bearer value, in units, up to which
// the default [DepositPolicy] accepts bearer coins.
const DefaultBearerCap = 1 << 16

// BearerCap is a [DepositPolicy]: it accepts bearer coins while the
// undeposited bearer value it counts stays at most its cap. Beyond the cap
// it deposits the call's bearer coins before serving, if it was given a
// deposit function, and otherwise refuses them with RATE_LIMITED (pay with
// coins designated to the server instead). The server's depositor calls
// [BearerCap.Deposited] when the mint has credited bearer coins. It is
// safe for concurrent use.
type BearerCap struct {
	limit   uint64
	deposit func(ctx context.Context, digest [DigestSize]byte, spends []*coin.Spend) error

	mu   sync.Mutex
	held uint64
}

var _ DepositPolicy = (*BearerCap)(nil)

// NewBearerCap returns a policy with the given cap. deposit, if not nil,
// deposits spends (which signed digest) at the mint and returns nil once
// the mint credited all of them to the server; an error refuses the call
// (an error wrapping [ErrDoubleSpend] is answered DOUBLE_SPEND), except a
// [*DepositUnsettledError], with which the paywall records the coins the
// mint may hold and answers INTERNAL (BearerCap does not count them).
func NewBearerCap(limit uint64, deposit func(ctx context.Context, digest [DigestSize]byte, spends []*coin.Spend) error) *BearerCap {
	return &BearerCap{limit: limit, deposit: deposit}
}

// AdmitBearer implements [DepositPolicy].
func (b *BearerCap) AdmitBearer(ctx context.Context, digest [DigestSize]byte, spends []*coin.Spend) (func(), error) {
	var v uint64
	for _, s := range spends {
		v += s.Amount // a verified call's total does not overflow
	}
	b.mu.Lock()
	if b.held+v >= b.held && b.held+v <= b.limit {
		b.held += v
		b.mu.Unlock()
		return func() { b.Deposited(v) }, nil
	}
	b.mu.Unlock()
	if b.deposit == nil {
		return nil, &Error{Code: pb.Code_RATE_LIMITED, Message: "too much undeposited bearer value here; pay with coins designated to this server"}
	}
	if err := b.deposit(ctx, digest, spends); err != nil {
		return nil, err
	}
	return func() {}, nil
}

// Deposited lowers the undeposited bearer value by v.
func (b *BearerCap) Deposited(v uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held -= min(v, b.held)
}

// Held returns the undeposited bearer value counted.
func (b *BearerCap) Held() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// MemSpentStore is a [SpentStore] in memory, for tests and benchmarks: it
// forgets everything when the process ends, so a real server uses the
// durable store of package node. It is safe for concurrent use; the zero
// value is not usable (see [NewMemSpentStore]).
type MemSpentStore struct {
	mu    sync.Mutex
	reqs  map[[RequestIDSize]byte]*memRequest
	coins map[[32]byte]*memCoin
}

type memRequest struct {
	rec    SpentRequest
	spends []*coin.Spend
}

type memCoin struct {
	req       [RequestIDSize]byte
	deposited bool
}

var _ SpentStore = (*MemSpentStore)(nil)

// NewMemSpentStore returns an empty store.
func NewMemSpentStore() *MemSpentStore {
	return &MemSpentStore{
		reqs:  make(map[[RequestIDSize]byte]*memRequest),
		coins: make(map[[32]byte]*memCoin),
	}
}

func (m *MemSpentStore) copyOut(r *memRequest) *SpentRequest {
	out := r.rec
	out.Coins = append([][32]byte(nil), r.rec.Coins...)
	out.Answer = bytes.Clone(r.rec.Answer)
	return &out
}

// Lookup implements [SpentStore].
func (m *MemSpentStore) Lookup(ctx context.Context, id [RequestIDSize]byte) (*SpentRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reqs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return m.copyOut(r), nil
}

// Record implements [SpentStore].
func (m *MemSpentStore) Record(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, spends []*coin.Spend, value uint64) (*SpentRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.reqs[id]; ok {
		if r.rec.Digest != digest {
			return nil, fmt.Errorf("%w: request ID reused with another body", ErrBadRequest)
		}
		out := m.copyOut(r)
		out.Replay = true
		return out, nil
	}
	seen := make(map[[32]byte]bool, len(spends))
	for _, s := range spends {
		if _, ok := m.coins[s.Pub]; ok || seen[s.Pub] {
			return nil, &DoubleSpendError{Coin: s.Pub}
		}
		seen[s.Pub] = true
	}
	r := &memRequest{rec: SpentRequest{ID: id, Digest: digest, Value: value}}
	for _, s := range spends {
		m.coins[s.Pub] = &memCoin{req: id}
		r.rec.Coins = append(r.rec.Coins, s.Pub)
		cp := *s
		r.spends = append(r.spends, &cp)
	}
	m.reqs[id] = r
	return m.copyOut(r), nil
}

// Answer implements [SpentStore].
func (m *MemSpentStore) Answer(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reqs[id]
	switch {
	case !ok:
		return ErrNotFound
	case r.rec.Digest != digest:
		return fmt.Errorf("%w: request ID reused with another body", ErrBadRequest)
	case r.rec.Answered:
		return nil
	}
	r.rec.Answered = true
	r.rec.Answer = bytes.Clone(body)
	return nil
}

// CoinStatus implements [SpentStore].
func (m *MemSpentStore) CoinStatus(ctx context.Context, pubs [][32]byte) ([]CoinStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]CoinStatus, len(pubs))
	for i, pub := range pubs {
		out[i] = CoinStatus{Pub: pub, State: pb.CoinState_COIN_UNKNOWN}
		if c, ok := m.coins[pub]; ok {
			out[i].State = pb.CoinState_COIN_RECORDED
			if c.deposited {
				out[i].State = pb.CoinState_COIN_DEPOSITED
			}
			out[i].RequestID = c.req
		}
	}
	return out, nil
}

// MarkDeposited records that the mint credited the given coins.
func (m *MemSpentStore) MarkDeposited(pubs ...[32]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pub := range pubs {
		if c, ok := m.coins[pub]; ok {
			c.deposited = true
		}
	}
}

// Coins returns the number of coins recorded.
func (m *MemSpentStore) Coins() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.coins)
}

// Requests returns the number of requests recorded.
func (m *MemSpentStore) Requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reqs)
}

// SpentCoin is a recorded spend with the digest of the request it paid
// for: what a server deposits at the mint.
type SpentCoin struct {
	Spend  *coin.Spend      // the spend as received
	Digest [DigestSize]byte // the request digest it signed
}

// Spends returns every recorded spend with its request digest, ordered by
// coin public key.
func (m *MemSpentStore) Spends() []SpentCoin {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SpentCoin
	for _, r := range m.reqs {
		for _, s := range r.spends {
			out = append(out, SpentCoin{Spend: s, Digest: r.rec.Digest})
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Spend.Pub[:], out[j].Spend.Pub[:]) < 0 })
	return out
}
