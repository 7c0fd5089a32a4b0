package protocol

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// PublishedKeyset is a keyset a mint publishes, with its status.
type PublishedKeyset struct {
	Keyset *coin.Keyset
	// Revoked is set for a keyset whose keys may have leaked: the mint
	// refuses its coins and issues none.
	Revoked bool
}

// MintKeyring holds a mint's keysets: their secrets, for issuing, and
// their status, for verifying. It is a [coin.Keysets] that refuses revoked
// keysets. It is safe for concurrent use; the zero value is not usable
// (see [NewMintKeyring]).
//
// A MintKeyring lives in memory: the mint's node stores the keyset secrets
// ([coin.KeysetSecret.Bytes]) and revocations durably, loads them into the
// keyring when it starts and applies its admin calls (rotation,
// revocation) to both.
type MintKeyring struct {
	identity ed25519.PublicKey

	mu    sync.RWMutex
	sets  map[[32]byte]*keyringEntry
	byKey map[[32]byte][32]byte // denomination key → keyset ID
}

type keyringEntry struct {
	secret  *coin.KeysetSecret
	revoked bool
	retired bool
}

var _ coin.Keysets = (*MintKeyring)(nil)

// NewMintKeyring returns an empty keyring for keysets signed by the mint's
// identity key.
func NewMintKeyring(identity ed25519.PublicKey) *MintKeyring {
	return &MintKeyring{
		identity: append(ed25519.PublicKey(nil), identity...),
		sets:     make(map[[32]byte]*keyringEntry),
		byKey:    make(map[[32]byte][32]byte),
	}
}

// Add adds a keyset, active. The keyset must be signed by the keyring's
// identity key, and none of its denomination keys may be a key of another
// keyset of the ring. Adding a keyset again changes nothing (it stays
// revoked if it was). A keyring holds at most [MaxPublishedKeysets]
// keysets.
func (k *MintKeyring) Add(sec *coin.KeysetSecret) error {
	ks := sec.Keyset()
	if !k.identity.Equal(ks.MintKey) {
		return fmt.Errorf("%w: keyset not signed by the mint's identity key", coin.ErrBadSignature)
	}
	id := ks.ID()
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.sets[id]; ok {
		return nil
	}
	if len(k.sets) >= MaxPublishedKeysets {
		return fmt.Errorf("protocol: keyring holds %d keysets already", MaxPublishedKeysets)
	}
	for _, d := range ks.Denominations {
		if _, ok := k.byKey[d.Key]; ok {
			return fmt.Errorf("%w: denomination key reused from another keyset", coin.ErrBadKey)
		}
	}
	for _, d := range ks.Denominations {
		k.byKey[d.Key] = id
	}
	k.sets[id] = &keyringEntry{secret: sec}
	return nil
}

// Revoke marks keyset id revoked: its coins are refused from now on and it
// issues no more. It returns an error wrapping [ErrNotFound] for a keyset
// the ring does not hold.
func (k *MintKeyring) Revoke(id [32]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.sets[id]
	if !ok {
		return fmt.Errorf("%w: keyset %x", ErrNotFound, id[:8])
	}
	e.revoked = true
	return nil
}

// Retire marks keyset id closed for issuance at this mint: round one
// (WithdrawBegin) refuses it with [ErrKeysetRetired], while its coins stay
// good and stored rows are still answered. A mint retires the keysets
// that may have signed rows its store lost (a restore from a copy), and
// its store refuses their new rows. It returns an error wrapping
// [ErrNotFound] for a keyset the ring does not hold.
func (k *MintKeyring) Retire(id [32]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.sets[id]
	if !ok {
		return fmt.Errorf("%w: keyset %x", ErrNotFound, id[:8])
	}
	e.retired = true
	return nil
}

// Retired reports whether keyset id is retired ([MintKeyring.Retire]).
func (k *MintKeyring) Retired(id [32]byte) bool {
	e, err := k.entry(id)
	return err == nil && e.retired
}

// Remove drops keyset id, once its deposit window is over. Its coins are
// then unknown.
func (k *MintKeyring) Remove(id [32]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.sets[id]
	if !ok {
		return
	}
	for _, d := range e.secret.Keyset().Denominations {
		delete(k.byKey, d.Key)
	}
	delete(k.sets, id)
}

// Lookup implements [coin.Keysets]: it returns the keyset, an error
// wrapping [coin.ErrUnknownKeyset] for an ID it does not hold, and one
// wrapping [ErrRevokedKeyset] for a revoked keyset.
func (k *MintKeyring) Lookup(id [32]byte) (*coin.Keyset, error) {
	e, err := k.entry(id)
	if err != nil {
		return nil, err
	}
	if e.revoked {
		return nil, mintRevokedErr()
	}
	return e.secret.Keyset(), nil
}

// Keysets returns every keyset of the ring with its status, ordered by
// NotBefore and then ID.
func (k *MintKeyring) Keysets() []PublishedKeyset {
	k.mu.RLock()
	out := make([]PublishedKeyset, 0, len(k.sets))
	for _, e := range k.sets {
		out = append(out, PublishedKeyset{Keyset: e.secret.Keyset(), Revoked: e.revoked})
	}
	k.mu.RUnlock()
	slices.SortFunc(out, func(a, b PublishedKeyset) int {
		if a.Keyset.NotBefore != b.Keyset.NotBefore {
			if a.Keyset.NotBefore < b.Keyset.NotBefore {
				return -1
			}
			return 1
		}
		ai, bi := a.Keyset.ID(), b.Keyset.ID()
		return bytes.Compare(ai[:], bi[:])
	})
	return out
}

func (k *MintKeyring) entry(id [32]byte) (keyringEntry, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.sets[id]
	if !ok {
		return keyringEntry{}, coin.ErrUnknownKeyset
	}
	return *e, nil
}

// issuer returns the keyset id and its secret for issuing: known, not
// revoked. The caller checks the issue window.
func (k *MintKeyring) issuer(id [32]byte) (*coin.KeysetSecret, error) {
	e, err := k.entry(id)
	if err != nil {
		return nil, &Error{Code: pb.Code_UNKNOWN_KEYSET, Message: "unknown keyset"}
	}
	if e.revoked {
		return nil, mintRevokedErr()
	}
	return e.secret, nil
}

// secret returns the secret of keyset id, revoked or not, for Restore.
func (k *MintKeyring) secret(id [32]byte) (*coin.KeysetSecret, bool) {
	e, err := k.entry(id)
	return e.secret, err == nil
}

func mintRevokedErr() error {
	return &Error{Code: pb.Code_REVOKED_KEYSET, Message: "keyset revoked"}
}
