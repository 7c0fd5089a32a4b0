package mintstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// KeyPolicy says how [Keys] makes the keysets of one unit. A keyset made
// at not_before t has the windows
//
//	issue_until   = t + IssuePeriod
//	spend_until   = issue_until + SpendPeriod
//	deposit_until = spend_until + DepositPeriod
//
// so a coin issued at the last moment can be spent for SpendPeriod, and a
// server that took it at the last moment has DepositPeriod to deposit it.
// Times are whole seconds.
type KeyPolicy struct {
	// Unit is the keysets' unit; Exponents their denominations, 2^e
	// units each, strictly increasing.
	Unit      string
	Exponents []uint8
	// IssuePeriod, SpendPeriod and DepositPeriod set the windows; the
	// first must be positive, the others not negative.
	IssuePeriod, SpendPeriod, DepositPeriod time.Duration
	// Overlap is how long a keyset and its successor both issue
	// ([Keys.Rotate]): the time wallets have to learn of the new one. It
	// is shorter than IssuePeriod.
	Overlap time.Duration
}

// DefaultKeyPolicy returns a policy for unit with denominations 2^0 to
// 2^31, a week of issuing, four weeks more of spending, one more week to
// deposit, and a day of overlap.
func DefaultKeyPolicy(unit string) KeyPolicy {
	exps := make([]uint8, 32)
	for i := range exps {
		exps[i] = uint8(i)
	}
	const day = 24 * time.Hour
	return KeyPolicy{
		Unit: unit, Exponents: exps,
		IssuePeriod: 7 * day, SpendPeriod: 28 * day, DepositPeriod: 7 * day,
		Overlap: day,
	}
}

func (p *KeyPolicy) check() error {
	if p.IssuePeriod < time.Second || p.SpendPeriod < 0 || p.DepositPeriod < 0 || p.Overlap < 0 || p.Overlap >= p.IssuePeriod {
		return fmt.Errorf("%w: periods must be positive and overlap shorter than the issue period", ErrBadPolicy)
	}
	return nil
}

// params returns the keyset parameters for a keyset starting at nb.
func (p *KeyPolicy) params(nb time.Time) coin.KeysetParams {
	nb = nb.Truncate(time.Second)
	iu := nb.Add(p.IssuePeriod)
	su := iu.Add(p.SpendPeriod)
	return coin.KeysetParams{
		Unit: p.Unit, Exponents: p.Exponents,
		NotBefore: nb, IssueUntil: iu, SpendUntil: su, DepositUntil: su.Add(p.DepositPeriod),
	}
}

// Keys manages a mint's keysets: it makes them (signed with the mint's
// identity key), stores their secrets and revocations in a [Store], and
// keeps a [protocol.MintKeyring] that agrees with the store, for the
// mint's service. Every change is stored durably before the keyring sees
// it. Its methods are admin calls; they are safe for concurrent use. The
// zero Keys is not usable (see [OpenKeys]).
type Keys struct {
	store    *Store
	identity ed25519.PrivateKey
	ring     *protocol.MintKeyring
	rand     io.Reader
	now      func() time.Time

	mu sync.Mutex // one admin change at a time, so store and ring agree
}

// Format redacts: Keys holds the mint's identity key, which signs every
// keyset. (A pointer receiver: Keys holds a mutex and is never copied.)
func (k *Keys) Format(f fmt.State, verb rune) {
	var pub []byte
	if k != nil && len(k.identity) == ed25519.PrivateKeySize {
		pub = k.identity[32:40] // the public key's first bytes
	}
	fmt.Fprintf(f, "mintstore.Keys{identity public key: %x...}", pub)
}

// KeysOption configures [OpenKeys].
type KeysOption func(*Keys)

// WithRand sets the source of the keysets' secrets (default
// crypto/rand.Reader).
func WithRand(r io.Reader) KeysOption { return func(k *Keys) { k.rand = r } }

// WithClock sets the clock of rotation, revocation and pruning (default
// time.Now).
func WithClock(now func() time.Time) KeysOption { return func(k *Keys) { k.now = now } }

// OpenKeys loads the keysets stored in s into a new keyring for the mint
// whose identity key is identity, revoked ones revoked. Every keyset must
// be signed by identity; a store of another mint fails with an error
// wrapping [coin.ErrBadSignature].
func OpenKeys(ctx context.Context, s *Store, identity ed25519.PrivateKey, opts ...KeysOption) (*Keys, error) {
	k := &Keys{
		store:    s,
		identity: identity,
		ring:     protocol.NewMintKeyring(identity.Public().(ed25519.PublicKey)),
		rand:     rand.Reader,
		now:      time.Now,
	}
	for _, o := range opts {
		o(k)
	}
	var recs []keysetRecord
	revoked := make(map[[32]byte]bool)
	retired := make(map[[32]byte]bool)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRevoked).ForEach(func(id, _ []byte) error {
			revoked[[32]byte(id)] = true
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketClosed).ForEach(func(id, v []byte) error {
			if len(id) == 32 && len(v) == 1 && v[0]&closedRetired != 0 {
				retired[[32]byte(id)] = true
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketKeysets).ForEach(func(id, v []byte) error {
			r, err := decodeKeyset(id, v)
			if err != nil {
				return err
			}
			recs = append(recs, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	pub := identity.Public().(ed25519.PublicKey)
	for _, r := range recs {
		sec, err := coin.ParseKeysetSecret(r.secret, pub)
		if err != nil {
			return nil, fmt.Errorf("mintstore: keyset %x: %w", r.id[:8], err)
		}
		if err := r.matches(sec.Keyset()); err != nil {
			return nil, err
		}
		if err := k.ring.Add(sec); err != nil {
			return nil, fmt.Errorf("mintstore: keyset %x: %w", r.id[:8], err)
		}
		if revoked[r.id] {
			if err := k.ring.Revoke(r.id); err != nil {
				return nil, err
			}
		}
		if retired[r.id] {
			if err := k.ring.Retire(r.id); err != nil {
				return nil, err
			}
		}
	}
	return k, nil
}

// matches checks that a record's copy of the windows and keys is the
// keyset's.
func (r *keysetRecord) matches(ks *coin.Keyset) error {
	ok := ks.ID() == r.id && ks.NotBefore == r.notBefore && ks.IssueUntil == r.issueUntil &&
		ks.SpendUntil == r.spendUntil && ks.DepositUntil == r.depositUntil && len(ks.Denominations) == len(r.keys)
	for _, d := range ks.Denominations {
		ok = ok && r.keys[d.Amount()] == d.Key
	}
	if !ok {
		return fmt.Errorf("%w: keyset %x: record does not match its secret", ErrCorrupt, r.id[:8])
	}
	return nil
}

// Retired reports whether keyset id was retired after a restore of the
// store ([Open]): it issues no more at this mint (the store refuses its
// new rows with [ErrKeysetRetired]), and its coins stay good. The
// keyring still holds it, unrevoked, for spending, deposit and Restore;
// the keyring refuses to start issuance (round one) for it too
// ([protocol.MintKeyring.Retire]).
func (k *Keys) Retired(id [32]byte) bool { return k.ring.Retired(id) }

// RetiredKeysets returns the keysets retired after a restore that the
// keyring holds, ordered as [Keys.Keysets].
func (k *Keys) RetiredKeysets() [][32]byte {
	var out [][32]byte
	for _, p := range k.ring.Keysets() {
		if id := p.Keyset.ID(); k.ring.Retired(id) {
			out = append(out, id)
		}
	}
	return out
}

// Keyring returns the keyring, for [protocol.NewMintService]. Change it
// only through Keys, or the store will not know.
func (k *Keys) Keyring() *protocol.MintKeyring { return k.ring }

// Revoked returns the revoked keysets, for checking the coins that their
// holders recoup ([Store.Recoup]): the keyring refuses them.
func (k *Keys) Revoked() coin.KeysetMap {
	m := coin.KeysetMap{}
	for _, p := range k.ring.Keysets() {
		if p.Revoked {
			m[p.Keyset.ID()] = p.Keyset
		}
	}
	return m
}

// Generate makes a keyset of policy p starting at notBefore, stores it and
// adds it to the keyring, and returns it.
func (k *Keys) Generate(ctx context.Context, p KeyPolicy, notBefore time.Time) (*coin.Keyset, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.generate(ctx, p, notBefore)
}

func (k *Keys) generate(ctx context.Context, p KeyPolicy, notBefore time.Time) (*coin.Keyset, error) {
	if n := len(k.ring.Keysets()); n >= protocol.MaxPublishedKeysets {
		return nil, fmt.Errorf("mintstore: %d keysets held already; prune first", n)
	}
	ks, sec, err := coin.GenerateKeyset(k.rand, k.identity, p.params(notBefore))
	if err != nil {
		return nil, fmt.Errorf("mintstore: generating keyset: %w", err)
	}
	id := ks.ID()
	v := encodeKeyset(sec)
	if err := k.store.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeysets)
		if old := b.Get(id[:]); old != nil && !bytes.Equal(old, v) {
			return fmt.Errorf("%w: another keyset stored under its ID", ErrCorrupt)
		}
		return b.Put(bytes.Clone(id[:]), v)
	}); err != nil {
		return nil, err
	}
	if err := k.ring.Add(sec); err != nil {
		return nil, err
	}
	return ks, nil
}

// Rotate makes the next keyset of policy p's unit when it is due, and
// returns it; it returns nil when none is due. Let the current keyset be
// the unit's keyset that issues longest, of those neither revoked nor
// retired ([Keys.Retired]):
//
//   - with none, or one whose issue window is over, the new keyset starts
//     now, or one second after the not_before of the unit's newest
//     retired keyset if that is later, so that a wallet that withdraws
//     from the newest keyset open for issuance picks the new one;
//   - with one whose issue window ends within p.Overlap, the new keyset
//     starts p.Overlap before that end, so that both issue for the
//     overlap and wallets have that long to learn of the new one;
//   - otherwise nothing is due.
//
// A mint calls Rotate when it starts and then more often than Overlap,
// and after revoking a keyset (which makes one due at once).
func (k *Keys) Rotate(ctx context.Context, p KeyPolicy) (*coin.Keyset, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	var cur *coin.Keyset
	nb := now
	for _, pk := range k.ring.Keysets() {
		ks := pk.Keyset
		if ks.Unit != p.Unit {
			continue
		}
		if k.ring.Retired(ks.ID()) {
			if after := time.Unix(ks.NotBefore+1, 0); after.After(nb) {
				nb = after
			}
			continue
		}
		if !pk.Revoked && (cur == nil || ks.IssueUntil > cur.IssueUntil) {
			cur = ks
		}
	}
	if cur != nil && cur.IssueUntil > now.Unix() {
		end := time.Unix(cur.IssueUntil, 0)
		if now.Before(end.Add(-p.Overlap)) {
			return nil, nil
		}
		nb = end.Add(-p.Overlap)
	}
	return k.generate(ctx, p, nb)
}

// Revoke revokes keyset id: durably, and then in the keyring, which
// refuses its coins and issues no more of them. Holders of its unspent
// coins get their value back by [Store.Recoup]. It fails with an error
// wrapping [protocol.ErrNotFound] for a keyset the store does not hold.
// Revoking a revoked keyset changes nothing.
func (k *Keys) Revoke(ctx context.Context, id [32]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	at := k.now().Unix()
	if err := k.store.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeysets).Get(id[:]) == nil {
			return fmt.Errorf("%w: keyset %x", protocol.ErrNotFound, id[:8])
		}
		b := tx.Bucket(bucketRevoked)
		if b.Get(id[:]) != nil {
			return nil
		}
		return b.Put(bytes.Clone(id[:]), binary.BigEndian.AppendUint64(nil, uint64(at)))
	}); err != nil {
		return err
	}
	return k.ring.Revoke(id)
}

// Prune runs [Store.Prune] at the current time and drops from the keyring
// the keysets it dropped.
func (k *Keys) Prune(ctx context.Context) (PruneStats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.store.Prune(ctx, k.now())
	for _, id := range st.Keysets {
		k.ring.Remove(id)
	}
	return st, err
}

// Keysets returns the keysets held, with their status, ordered by
// not_before and then ID.
func (k *Keys) Keysets() []protocol.PublishedKeyset {
	return k.ring.Keysets()
}
