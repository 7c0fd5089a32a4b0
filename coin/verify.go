package coin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"filippo.io/edwards25519"
	"github.com/hdevalence/ed25519consensus"
)

// Keysets looks up keysets by ID. Lookup returns an error wrapping
// [ErrUnknownKeyset] for an ID it does not know; it may return other errors
// (a revoked keyset, say), which the verifier passes on wrapped.
type Keysets interface {
	Lookup(id [32]byte) (*Keyset, error)
}

// KeysetMap is a [Keysets] backed by a map. The zero value knows nothing.
type KeysetMap map[[32]byte]*Keyset

// Lookup implements [Keysets].
func (m KeysetMap) Lookup(id [32]byte) (*Keyset, error) {
	if k, ok := m[id]; ok {
		return k, nil
	}
	return nil, ErrUnknownKeyset
}

// Add adds ks to the map. It refuses, with an error wrapping [ErrBadKey], a
// keyset that shares a denomination key with one already in the map: the
// coin message is blind to the mint, so a key shared between keysets would
// let a client buy a coin under one and claim the other's amount.
func (m KeysetMap) Add(ks *Keyset) error {
	for _, other := range m {
		if other.ID() == ks.ID() {
			continue
		}
		for _, d := range ks.Denominations {
			for _, e := range other.Denominations {
				if d.Key == e.Key {
					return fmt.Errorf("%w: denomination key shared with another keyset", ErrBadKey)
				}
			}
		}
	}
	m[ks.ID()] = ks
	return nil
}

var _ Keysets = KeysetMap(nil)

// Verifier checks coins and spends under scrip's one verification rule.
type Verifier struct {
	// Keysets resolves keyset IDs. Required.
	Keysets Keysets
	// Server is this server's peer ID in binary form: spends must be signed
	// for it, and designated coins must be designated to it.
	Server []byte
	// Window is the keyset window the coin must be inside: WindowSpend at a
	// server, WindowDeposit at the mint. The zero Window admits no coin.
	Window Window
	// AnyDesignation admits coins designated to any server. Only the
	// mint's recoup sets it: a coin of a revoked keyset is refused to
	// every server, so its holder may recoup it whatever its designation.
	AnyDesignation bool
}

// A Verifier holds no mutable state: one may serve concurrent calls.
func (v *Verifier) myDesignation() [32]byte { return Designation(v.Server) }

// checked is a coin that passed every check but the signatures.
type checked struct {
	ks      *Keyset
	keyPt   *edwards25519.Point
	pubPt   *edwards25519.Point
	key     [32]byte
	message []byte
}

// checkCoin applies every rule but the signatures.
func (v *Verifier) checkCoin(c *Coin, now time.Time, designation [32]byte) (checked, error) {
	ch, err := v.checkCoinDeferred(c, now, designation)
	if err != nil {
		return ch, err
	}
	if [32]byte(ch.pubPt.Bytes()) != c.Pub {
		return ch, fmt.Errorf("%w: coin key", ErrBadKey)
	}
	return ch, nil
}

// checkCoinDeferred applies every rule but the signatures and the match of
// the coin key's root with the coin key, which the caller must check.
func (v *Verifier) checkCoinDeferred(c *Coin, now time.Time, designation [32]byte) (checked, error) {
	var ch checked
	if c == nil {
		return ch, fmt.Errorf("%w: nil coin", ErrMalformed)
	}
	if v.Keysets == nil {
		return ch, ErrUnknownKeyset
	}
	ks, err := v.Keysets.Lookup(c.KeysetID)
	if err == nil && ks == nil {
		err = ErrUnknownKeyset
	}
	if err != nil {
		if errors.Is(err, ErrUnknownKeyset) {
			return ch, err
		}
		return ch, fmt.Errorf("%w: %w", ErrUnknownKeyset, err)
	}
	if ks.ID() != c.KeysetID {
		return ch, ErrUnknownKeyset
	}
	if !ks.Open(v.Window, now) {
		return ch, fmt.Errorf("%w: %s window", ErrOutsideWindow, v.Window)
	}
	key, ok := ks.Key(c.Amount)
	if !ok {
		return ch, fmt.Errorf("%w: %d", ErrAmount, c.Amount)
	}
	if c.Designated != ([32]byte{}) && c.Designated != designation && !v.AnyDesignation {
		return ch, ErrDesignated
	}
	pub, err := decodeRoot(&c.Root)
	if err != nil {
		return ch, fmt.Errorf("%w: coin key", err)
	}
	kp, _ := ks.point(c.Amount)
	return checked{ks: ks, keyPt: kp, pubPt: pub, key: key, message: c.Message()}, nil
}

// VerifyCoin checks a coin at time now: every rule but the spend signature.
// Wallets use it on coins they receive.
func (v *Verifier) VerifyCoin(c *Coin, now time.Time) error {
	ch, err := v.checkCoin(c, now, v.myDesignation())
	if err != nil {
		return err
	}
	return verifySig(ch.key[:], ch.message, c.Sig[:])
}

// VerifySpend checks one spend for the request with the given digest at
// time now.
func (v *Verifier) VerifySpend(s *Spend, digest [32]byte, now time.Time) error {
	if s == nil {
		return fmt.Errorf("%w: nil spend", ErrMalformed)
	}
	if len(v.Server) == 0 || len(v.Server) > MaxServerIDLen {
		return fmt.Errorf("%w: verifier server ID", ErrMalformed)
	}
	ch, err := v.checkCoin(&s.Coin, now, v.myDesignation())
	if err != nil {
		return err
	}
	if err := verifySig(ch.key[:], ch.message, s.Sig[:]); err != nil {
		return err
	}
	return verifySig(s.Pub[:], SpendMessage(v.Server, digest), s.SpendSig[:])
}

// verifySig is the single signature rule: ZIP-215 with canonical S.
func verifySig(pub, msg, sig []byte) error {
	if !ed25519consensus.Verify(pub, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

// Item is one spend of a batch with the digest of the request it pays for.
type Item struct {
	Spend  *Spend
	Digest [32]byte
}

// BatchError reports which items of a batch failed. Errs[i] is nil for an
// item that verified. errors.Is on a BatchError matches any item's error.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	var parts []string
	for i, err := range e.Errs {
		if err != nil {
			parts = append(parts, "item "+strconv.Itoa(i)+": "+err.Error())
		}
	}
	return "coin: batch: " + strings.Join(parts, "; ")
}

// Unwrap returns the errors of the failed items.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Failed returns the indices of the failed items.
func (e *BatchError) Failed() []int {
	var out []int
	for i, err := range e.Errs {
		if err != nil {
			out = append(out, i)
		}
	}
	return out
}

// VerifyBatch checks all spends of items at time now, under the same rule as
// [Verifier.VerifySpend], and returns nil if all pass or a *[BatchError]
// naming each failed item.
//
// The signatures are checked in one cofactored multi-scalar equation with
// 128-bit coefficients drawn from crypto/rand, and the terms of all mint
// signatures under one denomination key merged into one; if the equation
// fails, every item is checked alone to name the bad ones.
//
// VerifyBatch checks each spend on its own merits: the same coin twice in
// one batch passes twice. Callers must refuse repeated coin keys themselves,
// and must key spent sets by coin key, never by spend bytes (the root and
// the spend signature of one coin have several valid encodings).
func (v *Verifier) VerifyBatch(items []Item, now time.Time) error {
	errs := make([]error, len(items))
	if len(v.Server) == 0 || len(v.Server) > MaxServerIDLen {
		for i := range errs {
			errs[i] = fmt.Errorf("%w: verifier server ID", ErrMalformed)
		}
		return &BatchError{Errs: errs}
	}
	des := v.myDesignation()
	checks := make([]checked, len(items))
	var roots []*edwards25519.Point
	var rootOf []int
	var failed bool
	for i, it := range items {
		if it.Spend == nil {
			errs[i] = fmt.Errorf("%w: nil spend", ErrMalformed)
			failed = true
			continue
		}
		ch, err := v.checkCoinDeferred(&it.Spend.Coin, now, des)
		if err != nil {
			errs[i] = err
			failed = true
			continue
		}
		checks[i] = ch
		roots = append(roots, ch.pubPt)
		rootOf = append(rootOf, i)
	}
	// [8]root must encode to the coin key: one shared inversion for all.
	for j, enc := range encodeAll(roots) {
		if i := rootOf[j]; enc != items[i].Spend.Pub {
			errs[i] = fmt.Errorf("%w: coin key", ErrBadKey)
			failed = true
		}
	}
	b := newBatch(2 * len(items))
	var good []int
	for i, it := range items {
		if errs[i] != nil {
			continue
		}
		ch := checks[i]
		m, ok1 := prepSig(ch.keyPt, ch.key[:], ch.message, it.Spend.Sig[:])
		sp, ok2 := prepSig(ch.pubPt, it.Spend.Pub[:], SpendMessage(v.Server, it.Digest), it.Spend.SpendSig[:])
		if !ok1 || !ok2 {
			errs[i] = ErrBadSignature
			failed = true
			continue
		}
		b.add(m, ch.key)
		b.add(sp, [32]byte{})
		good = append(good, i)
	}
	if len(good) > 0 && !b.verify() {
		for _, i := range good {
			errs[i] = v.VerifySpend(items[i].Spend, items[i].Digest, now)
			if errs[i] != nil {
				failed = true
			}
		}
	}
	if failed {
		return &BatchError{Errs: errs}
	}
	return nil
}
