package wallet

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
)

// Limits.
const (
	// SeedSize is the length of the wallet seed.
	SeedSize = 32
	// MaxSpends bounds the coins of one payment; it equals the protocol's
	// limit on spends per request.
	MaxSpends = 64
	// MaxRequestIDLen bounds a request ID.
	MaxRequestIDLen = 64
	// MaxBatch bounds the withdrawals of one [Wallet.NextWithdrawals] call
	// and the nonces of one [Wallet.Nonces] call; it equals the protocol's
	// limit on coins per issuance request.
	MaxBatch = 256
)

// Mint names the mint whose coins the wallet holds.
type Mint struct {
	// Key is the mint's identity key, which signs its keysets.
	Key ed25519.PublicKey
	// Peer is the mint's libp2p peer ID in binary form. Spends to it are
	// swaps, which take bearer coins only (see [Wallet.ReserveSwap]).
	Peer []byte
}

// Wallet is a client's wallet, backed by one bbolt file. It is safe for
// concurrent use. The zero Wallet is not usable; see [Open].
type Wallet struct {
	db   *bolt.DB
	seed [SeedSize]byte
	mint Mint
	now  func() time.Time

	mu      sync.RWMutex
	keysets map[[32]byte]*coin.Keyset
}

// Option configures [Open] and [Restore].
type Option func(*options)

type options struct {
	now         func() time.Time
	lockTimeout time.Duration
	rand        io.Reader
}

// WithClock sets the clock used for keyset windows and state times.
// Default: time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLockTimeout bounds the wait for the file lock held by another
// process or another open Wallet on the same file. Default: one second.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// Open opens the wallet at path for mint, creating the file with a fresh
// seed from crypto/rand if it does not exist. A wallet file remembers its
// mint key; opening it for another key fails with [ErrMintMismatch].
//
// Options and their defaults: [WithClock] (time.Now), [WithLockTimeout]
// (one second).
func Open(path string, mint Mint, opts ...Option) (*Wallet, error) {
	return open(path, mint, nil, opts)
}

// Restore opens the wallet at path with the seed of phrase (see
// [Wallet.Export]), creating the file if it does not exist. If the file
// holds a wallet with the same seed, Restore opens it; with another seed, it
// fails with [ErrExists]. A malformed phrase, or one with a typo, fails with
// [ErrPhrase].
//
// A wallet restored into a new file starts at counter 0 and knows no
// coins. Its coins can be recovered from the mint's stored answers: see
// [Wallet.Nonces] and [Wallet.RecoverWithdrawal]; then
// [Wallet.AdvanceCounter] past the highest counter the mint has seen.
func Restore(path, phrase string, mint Mint, opts ...Option) (*Wallet, error) {
	seed, err := parsePhrase(phrase)
	if err != nil {
		return nil, err
	}
	return open(path, mint, &seed, opts)
}

func open(path string, mint Mint, seed *[SeedSize]byte, opts []Option) (*Wallet, error) {
	o := options{now: time.Now, lockTimeout: time.Second, rand: rand.Reader}
	for _, f := range opts {
		f(&o)
	}
	if len(mint.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: mint key length %d", ErrInvalid, len(mint.Key))
	}
	if len(mint.Peer) == 0 || len(mint.Peer) > coin.MaxServerIDLen {
		return nil, fmt.Errorf("%w: mint peer ID length %d", ErrInvalid, len(mint.Peer))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("wallet: open: %w", err)
	}
	// The file holds the seed: narrow one created by other means.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("wallet: open: %w", err)
	}
	w := &Wallet{
		db:      db,
		mint:    Mint{Key: slices.Clone(mint.Key), Peer: slices.Clone(mint.Peer)},
		now:     o.now,
		keysets: make(map[[32]byte]*coin.Keyset),
	}
	if err := w.init(seed, o.rand); err != nil {
		db.Close()
		return nil, err
	}
	return w, nil
}

// init creates the buckets and the seed on first use, or checks them, and
// loads the keysets.
func (w *Wallet) init(restore *[SeedSize]byte, rnd io.Reader) error {
	var raw [][]byte
	err := w.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKeysets, bucketPending, bucketCoins, bucketRequests} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if s := meta.Get(metaSeed); s != nil {
			if len(s) != SeedSize || !bytes.Equal(meta.Get(metaVersion), []byte{dbVersion}) || len(meta.Get(metaCounter)) != 8 {
				return fmt.Errorf("%w: meta", ErrCorrupt)
			}
			if !bytes.Equal(meta.Get(metaMintKey), w.mint.Key) {
				return ErrMintMismatch
			}
			if restore != nil && subtle.ConstantTimeCompare(s, restore[:]) != 1 {
				return ErrExists
			}
			copy(w.seed[:], s)
		} else {
			if restore != nil {
				w.seed = *restore
			} else if _, err := io.ReadFull(rnd, w.seed[:]); err != nil {
				return fmt.Errorf("wallet: seed: %w", err)
			}
			for k, v := range map[string][]byte{
				string(metaVersion): {dbVersion},
				string(metaSeed):    w.seed[:],
				string(metaCounter): u64(0),
				string(metaMintKey): w.mint.Key,
			} {
				if err := meta.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketKeysets).ForEach(func(_, v []byte) error {
			raw = append(raw, slices.Clone(v))
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, b := range raw {
		ks, err := coin.ParseKeyset(b, w.mint.Key)
		if err != nil {
			return fmt.Errorf("%w: stored keyset: %w", ErrCorrupt, err)
		}
		w.keysets[ks.ID()] = ks
	}
	return nil
}

// Close closes the database file.
func (w *Wallet) Close() error { return w.db.Close() }

// Format redacts: a Wallet holds the seed.
func (w *Wallet) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "wallet.Wallet{%s}", w.db.Path())
}

// update runs fn in one read-write transaction, committed before it
// returns, after checking ctx.
func (w *Wallet) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.db.Update(fn)
}

// view runs fn in one read-only transaction, after checking ctx.
func (w *Wallet) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.db.View(fn)
}

// AddKeyset checks a signed keyset against the mint key and stores it. It
// returns the parsed keyset. Adding a keyset twice is not an error.
func (w *Wallet) AddKeyset(ctx context.Context, signed []byte) (*coin.Keyset, error) {
	ks, err := coin.ParseKeyset(signed, w.mint.Key)
	if err != nil {
		return nil, fmt.Errorf("wallet: keyset: %w", err)
	}
	if err := w.update(ctx, func(tx *bolt.Tx) error { return w.putKeyset(tx, ks) }); err != nil {
		return nil, err
	}
	w.cacheKeyset(ks)
	return ks, nil
}

func (w *Wallet) putKeyset(tx *bolt.Tx, ks *coin.Keyset) error {
	id := ks.ID()
	b := tx.Bucket(bucketKeysets)
	if b.Get(id[:]) != nil {
		return nil
	}
	return b.Put(id[:], ks.Bytes())
}

func (w *Wallet) cacheKeyset(ks *coin.Keyset) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.keysets[ks.ID()]; !ok {
		w.keysets[ks.ID()] = ks
	}
}

// Keyset returns the stored keyset with the given ID.
func (w *Wallet) Keyset(id [32]byte) (*coin.Keyset, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	ks, ok := w.keysets[id]
	return ks, ok
}

// Keysets returns the stored keysets, ordered by NotBefore.
func (w *Wallet) Keysets() []*coin.Keyset {
	w.mu.RLock()
	out := make([]*coin.Keyset, 0, len(w.keysets))
	for _, ks := range w.keysets {
		out = append(out, ks)
	}
	w.mu.RUnlock()
	slices.SortFunc(out, func(a, b *coin.Keyset) int {
		if c := cmp.Compare(a.NotBefore, b.NotBefore); c != 0 {
			return c
		}
		ia, ib := a.ID(), b.ID()
		return bytes.Compare(ia[:], ib[:])
	})
	return out
}

// knownKeyset returns the keyset ks as the wallet stores it, checking a
// keyset it does not know yet against the mint key.
func (w *Wallet) knownKeyset(ks *coin.Keyset) (*coin.Keyset, bool, error) {
	if k, ok := w.Keyset(ks.ID()); ok {
		return k, true, nil
	}
	k, err := coin.ParseKeyset(ks.Bytes(), w.mint.Key)
	if err != nil {
		return nil, false, fmt.Errorf("wallet: keyset: %w", err)
	}
	return k, false, nil
}

// counter reads the next unused counter.
func getCounter(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(metaCounter)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: counter", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// NextCounter returns the next counter the wallet will use: every counter
// below it may have been used.
func (w *Wallet) NextCounter(ctx context.Context) (uint64, error) {
	var c uint64
	err := w.view(ctx, func(tx *bolt.Tx) (err error) {
		c, err = getCounter(tx)
		return err
	})
	return c, err
}

// AdvanceCounter raises the next counter to at least next; it never lowers
// it. A wallet restored from its phrase calls it with one more than the
// highest counter the mint knows.
func (w *Wallet) AdvanceCounter(ctx context.Context, next uint64) error {
	return w.update(ctx, func(tx *bolt.Tx) error {
		c, err := getCounter(tx)
		if err != nil || c >= next {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaCounter, u64(next))
	})
}
