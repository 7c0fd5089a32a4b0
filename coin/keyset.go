package coin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"filippo.io/edwards25519"
	"github.com/hdevalence/ed25519consensus"
)

// Keyset limits.
const (
	KeysetVersion    = 1
	MaxUnitLen       = 32
	MaxDenominations = 64
	// MaxKeysetSize is the largest signed keyset encoding.
	MaxKeysetSize = 1 + 1 + MaxUnitLen + 32 + 4*8 + 1 + MaxDenominations*(1+32) + SignatureSize
)

// Denomination is one key of a keyset: coins signed by Key are worth
// 2^Exponent units.
type Denomination struct {
	Exponent uint8
	Key      [32]byte
}

// Amount returns 2^Exponent.
func (d Denomination) Amount() uint64 { return 1 << d.Exponent }

// Keyset is one epoch of a mint's keys, signed by the mint's identity key.
// Times are Unix seconds. A keyset lets coins be issued in
// [NotBefore, IssueUntil), spent at servers in [NotBefore, SpendUntil) and
// deposited at the mint in [NotBefore, DepositUntil).
//
// A Keyset returned by [ParseKeyset] or [GenerateKeyset] has been checked and
// must not be modified.
type Keyset struct {
	Unit          string
	MintKey       ed25519.PublicKey
	NotBefore     int64
	IssueUntil    int64
	SpendUntil    int64
	DepositUntil  int64
	Denominations []Denomination // strictly increasing exponents

	id     [32]byte
	enc    []byte // unsigned encoding
	sig    [64]byte
	points map[uint64]*edwards25519.Point // amount → decoded key
	keys   map[uint64][32]byte
}

// Window names one of a keyset's validity windows.
type Window int

// The windows. The zero Window is none: no time lies inside it.
const (
	WindowIssue Window = iota + 1
	WindowSpend
	WindowDeposit
)

func (w Window) String() string {
	switch w {
	case WindowIssue:
		return "issue"
	case WindowSpend:
		return "spend"
	case WindowDeposit:
		return "deposit"
	}
	return "unknown"
}

// ID returns SHA-256(tag || encoding), the keyset's 32-byte identifier.
func (k *Keyset) ID() [32]byte { return k.id }

// Bytes returns the signed canonical encoding: the unsigned encoding followed
// by the mint's 64-byte signature.
func (k *Keyset) Bytes() []byte {
	out := make([]byte, 0, len(k.enc)+SignatureSize)
	out = append(out, k.enc...)
	return append(out, k.sig[:]...)
}

// Open reports whether t lies inside window w.
func (k *Keyset) Open(w Window, t time.Time) bool {
	s := t.Unix()
	if s < k.NotBefore {
		return false
	}
	switch w {
	case WindowIssue:
		return s < k.IssueUntil
	case WindowSpend:
		return s < k.SpendUntil
	case WindowDeposit:
		return s < k.DepositUntil
	}
	return false
}

// Key returns the public key for amount, and whether the keyset offers it.
func (k *Keyset) Key(amount uint64) ([32]byte, bool) {
	key, ok := k.keys[amount]
	return key, ok
}

func (k *Keyset) point(amount uint64) (*edwards25519.Point, bool) {
	p, ok := k.points[amount]
	return p, ok
}

// Amounts returns the amounts the keyset offers, ascending.
func (k *Keyset) Amounts() []uint64 {
	out := make([]uint64, len(k.Denominations))
	for i, d := range k.Denominations {
		out[i] = d.Amount()
	}
	return out
}

// encodeUnsigned returns the canonical unsigned encoding, checking every
// field range (not the keys).
func (k *Keyset) encodeUnsigned() ([]byte, error) {
	if err := CheckUnit(k.Unit); err != nil {
		return nil, err
	}
	if len(k.MintKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: mint key length", ErrMalformed)
	}
	if !(k.NotBefore >= 0 && k.NotBefore < k.IssueUntil && k.IssueUntil <= k.SpendUntil && k.SpendUntil <= k.DepositUntil) {
		return nil, fmt.Errorf("%w: windows out of order", ErrMalformed)
	}
	n := len(k.Denominations)
	if n == 0 || n > MaxDenominations {
		return nil, fmt.Errorf("%w: %d denominations", ErrMalformed, n)
	}
	b := make([]byte, 0, 1+1+len(k.Unit)+32+32+1+n*33)
	b = append(b, KeysetVersion, byte(len(k.Unit)))
	b = append(b, k.Unit...)
	b = append(b, k.MintKey...)
	for _, t := range []int64{k.NotBefore, k.IssueUntil, k.SpendUntil, k.DepositUntil} {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	b = append(b, byte(n))
	for i, d := range k.Denominations {
		if d.Exponent >= 64 || (i > 0 && d.Exponent <= k.Denominations[i-1].Exponent) {
			return nil, fmt.Errorf("%w: denomination exponents", ErrMalformed)
		}
		b = append(b, d.Exponent)
		b = append(b, d.Key[:]...)
	}
	return b, nil
}

// CheckUnit applies the rule for unit names: 1 to [MaxUnitLen] bytes of
// A-Z, a-z, 0-9, '-', '_' and '.'. It returns an error wrapping
// [ErrMalformed] otherwise.
func CheckUnit(u string) error {
	if len(u) == 0 || len(u) > MaxUnitLen {
		return fmt.Errorf("%w: unit length %d", ErrMalformed, len(u))
	}
	for i := 0; i < len(u); i++ {
		if !unitChar(u[i]) {
			return fmt.Errorf("%w: unit character", ErrMalformed)
		}
	}
	return nil
}

func unitChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// check validates the keys and fills the derived fields.
func (k *Keyset) check(enc []byte) error {
	k.enc = enc
	k.id = keysetID(enc)
	k.points = make(map[uint64]*edwards25519.Point, len(k.Denominations))
	k.keys = make(map[uint64][32]byte, len(k.Denominations))
	if !canonicalEncoding(k.MintKey) {
		return fmt.Errorf("%w: mint key", ErrBadKey)
	}
	seen := make(map[[32]byte]bool, len(k.Denominations))
	for _, d := range k.Denominations {
		p, err := decodePrimeOrder(d.Key[:])
		if err != nil {
			return fmt.Errorf("%w: denomination 2^%d", err, d.Exponent)
		}
		if seen[d.Key] {
			return fmt.Errorf("%w: repeated denomination key", ErrBadKey)
		}
		seen[d.Key] = true
		k.points[d.Amount()] = p
		k.keys[d.Amount()] = d.Key
	}
	return nil
}

func keysetID(enc []byte) [32]byte {
	return sha256.Sum256(append([]byte(tagKeyset), enc...))
}

func keysetSigMessage(id [32]byte) []byte {
	return append([]byte(tagKeysetSig), id[:]...)
}

// ParseKeyset decodes a signed keyset and checks it: exact length, field
// ranges, every denomination key canonical, of prime order and distinct, and
// the signature by mintKey. A keyset signed by any other key is refused with
// [ErrBadSignature].
func ParseKeyset(b []byte, mintKey ed25519.PublicKey) (*Keyset, error) {
	if len(b) > MaxKeysetSize {
		return nil, fmt.Errorf("%w: keyset too long", ErrMalformed)
	}
	r := reader{b: b}
	if v := r.byte(); !r.short && v != KeysetVersion {
		return nil, fmt.Errorf("%w: keyset version %d", ErrMalformed, v)
	}
	k := &Keyset{}
	ul := int(r.byte())
	k.Unit = string(r.bytes(ul))
	k.MintKey = ed25519.PublicKey(r.bytes(32))
	k.NotBefore = int64(r.u64())
	k.IssueUntil = int64(r.u64())
	k.SpendUntil = int64(r.u64())
	k.DepositUntil = int64(r.u64())
	n := int(r.byte())
	if n > MaxDenominations {
		return nil, fmt.Errorf("%w: %d denominations", ErrMalformed, n)
	}
	for i := 0; i < n && !r.short; i++ {
		var d Denomination
		d.Exponent = r.byte()
		copy(d.Key[:], r.bytes(32))
		k.Denominations = append(k.Denominations, d)
	}
	copy(k.sig[:], r.bytes(SignatureSize))
	if r.short {
		return nil, fmt.Errorf("%w: keyset truncated", ErrMalformed)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after keyset", ErrMalformed)
	}
	k.MintKey = append(ed25519.PublicKey(nil), k.MintKey...)
	enc, err := k.encodeUnsigned()
	if err != nil {
		return nil, err
	}
	// The signature before the denomination keys, whose checks cost a
	// scalar multiplication each.
	if !canonicalEncoding(k.MintKey) {
		return nil, fmt.Errorf("%w: mint key", ErrBadKey)
	}
	id := keysetID(enc)
	if !ed25519.PublicKey(mintKey).Equal(k.MintKey) ||
		!ed25519consensus.Verify(mintKey, keysetSigMessage(id), k.sig[:]) {
		return nil, fmt.Errorf("%w: keyset signature", ErrBadSignature)
	}
	if err := k.check(enc); err != nil {
		return nil, err
	}
	return k, nil
}

// KeysetSecret holds a mint's private keys for one keyset: one scalar per
// denomination and the secret from which the mint derives its issuance
// nonces. It must never leave the mint.
type KeysetSecret struct {
	keyset   *Keyset
	nonceKey [32]byte
	x        map[uint64]*edwards25519.Scalar
}

// KeysetParams are the public parameters of a new keyset. Exponents lists
// the denominations as powers of two, strictly increasing.
type KeysetParams struct {
	Unit         string
	Exponents    []uint8
	NotBefore    time.Time
	IssueUntil   time.Time
	SpendUntil   time.Time
	DepositUntil time.Time
}

// GenerateKeyset creates a keyset with fresh keys drawn from rand and signs
// it with the mint's identity key.
func GenerateKeyset(rand io.Reader, mint ed25519.PrivateKey, p KeysetParams) (*Keyset, *KeysetSecret, error) {
	k := &Keyset{
		Unit:         p.Unit,
		MintKey:      mint.Public().(ed25519.PublicKey),
		NotBefore:    p.NotBefore.Unix(),
		IssueUntil:   p.IssueUntil.Unix(),
		SpendUntil:   p.SpendUntil.Unix(),
		DepositUntil: p.DepositUntil.Unix(),
	}
	sec := &KeysetSecret{keyset: k, x: make(map[uint64]*edwards25519.Scalar, len(p.Exponents))}
	if _, err := io.ReadFull(rand, sec.nonceKey[:]); err != nil {
		return nil, nil, err
	}
	for _, e := range p.Exponents {
		var wide [64]byte
		if _, err := io.ReadFull(rand, wide[:]); err != nil {
			return nil, nil, err
		}
		x, _ := edwards25519.NewScalar().SetUniformBytes(wide[:])
		d := Denomination{Exponent: e}
		copy(d.Key[:], new(edwards25519.Point).ScalarBaseMult(x).Bytes())
		k.Denominations = append(k.Denominations, d)
		if e < 64 {
			sec.x[uint64(1)<<e] = x
		}
	}
	enc, err := k.encodeUnsigned()
	if err != nil {
		return nil, nil, err
	}
	if err := k.check(enc); err != nil {
		return nil, nil, err
	}
	copy(k.sig[:], ed25519.Sign(mint, keysetSigMessage(k.id)))
	return k, sec, nil
}

// Keyset returns the public keyset.
func (s *KeysetSecret) Keyset() *Keyset { return s.keyset }

// Format redacts: a KeysetSecret holds a mint's private keys.
func (s KeysetSecret) Format(f fmt.State, verb rune) {
	id := [32]byte{}
	if s.keyset != nil {
		id = s.keyset.id
	}
	fmt.Fprintf(f, "coin.KeysetSecret{keyset: %x}", id[:8])
}

// Bytes encodes the secret for storage by the mint: the signed keyset's
// length (u16) and bytes, the nonce key, then one 32-byte scalar per
// denomination in keyset order.
func (s *KeysetSecret) Bytes() []byte {
	pub := s.keyset.Bytes()
	b := binary.BigEndian.AppendUint16(nil, uint16(len(pub)))
	b = append(b, pub...)
	b = append(b, s.nonceKey[:]...)
	for _, d := range s.keyset.Denominations {
		b = append(b, s.x[d.Amount()].Bytes()...)
	}
	return b
}

// ParseKeysetSecret decodes [KeysetSecret.Bytes] and checks that every
// scalar matches its public key.
func ParseKeysetSecret(b []byte, mintKey ed25519.PublicKey) (*KeysetSecret, error) {
	r := reader{b: b}
	n := int(r.u16())
	pub := r.bytes(n)
	if r.short {
		return nil, fmt.Errorf("%w: keyset secret truncated", ErrMalformed)
	}
	ks, err := ParseKeyset(pub, mintKey)
	if err != nil {
		return nil, err
	}
	sec := &KeysetSecret{keyset: ks, x: make(map[uint64]*edwards25519.Scalar)}
	copy(sec.nonceKey[:], r.bytes(32))
	for _, d := range ks.Denominations {
		x, err := edwards25519.NewScalar().SetCanonicalBytes(r.bytes(32))
		if r.short || err != nil {
			return nil, fmt.Errorf("%w: keyset secret scalar", ErrMalformed)
		}
		if [32]byte(new(edwards25519.Point).ScalarBaseMult(x).Bytes()) != d.Key {
			return nil, fmt.Errorf("%w: keyset secret does not match its keyset", ErrBadKey)
		}
		sec.x[d.Amount()] = x
	}
	if r.short || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: keyset secret length", ErrMalformed)
	}
	return sec, nil
}

// reader is a bounds-checked cursor; after the first short read, short is
// true and every further read returns zeros.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.short = true
		r.b = nil
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte  { return r.bytes(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }
