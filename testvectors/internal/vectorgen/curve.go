package vectorgen

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

// Domain tags of the signed messages, as the specification gives them. The
// generator builds some encodings by hand (to break them one field at a
// time), so it needs the tags; the conformance test proves they are right,
// since every valid vector built here must pass coin's checks.
const (
	tagKeyset    = "scrip/v1/keyset\x00"
	tagKeysetSig = "scrip/v1/keyset-sig\x00"
)

var (
	identity = edwards25519.NewIdentityPoint()
	// lMinus1 is the group order L minus one.
	lMinus1 = func() *edwards25519.Scalar {
		b := [32]byte{0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
		s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
		if err != nil {
			panic(err)
		}
		return s
	}()
)

// rng is the generator's only source of randomness: ChaCha8 keyed by a hash
// of a fixed name, so every file draws its own reproducible stream.
type rng struct{ r io.Reader }

func newRNG(name string) *rng {
	return &rng{r: rand.NewChaCha8(sha256.Sum256([]byte("scrip/testvectors/" + name)))}
}

func (g *rng) Read(p []byte) (int, error) { return g.r.Read(p) }

func (g *rng) bytes(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(g.r, b); err != nil {
		panic(err)
	}
	return b
}

func (g *rng) array32() [32]byte { return [32]byte(g.bytes(32)) }

func (g *rng) scalar() *edwards25519.Scalar {
	s, err := edwards25519.NewScalar().SetUniformBytes(g.bytes(64))
	if err != nil {
		panic(err)
	}
	return s
}

// point returns a fresh point of prime order and its discrete logarithm.
func (g *rng) point() (*edwards25519.Scalar, *edwards25519.Point) {
	x := g.scalar()
	return x, new(edwards25519.Point).ScalarBaseMult(x)
}

// edKey returns a fresh Ed25519 key pair.
func (g *rng) edKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(g.bytes(ed25519.SeedSize)) }

// coinKey returns a coin key pair built as the wallet builds it: secret
// a = 8q, public key [a]B, root [q]B.
func (g *rng) coinKey() (a *edwards25519.Scalar, pub, root [32]byte) {
	q, qp := g.point()
	eight := scalarFromUint(8)
	a = edwards25519.NewScalar().Multiply(q, eight)
	copy(pub[:], new(edwards25519.Point).ScalarBaseMult(a).Bytes())
	copy(root[:], qp.Bytes())
	return a, pub, root
}

func scalarFromUint(v uint64) *edwards25519.Scalar {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], v)
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic(err)
	}
	return s
}

// timesL returns [L]p, the torsion component of p multiplied by L.
func timesL(p *edwards25519.Point) *edwards25519.Point {
	q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(lMinus1, p, edwards25519.NewScalar())
	return q.Add(q, p)
}

// torsion returns the eight points of order dividing 8, t[k] = [k]t[1] with
// t[1] of order 8. It decodes y = 2, 3, ... and keeps [L]P of the first
// point P whose torsion component has order 8.
func torsion() [8]*edwards25519.Point {
	for y := byte(2); ; y++ {
		var b [32]byte
		b[0] = y
		p, err := new(edwards25519.Point).SetBytes(b[:])
		if err != nil {
			continue
		}
		t := timesL(p)
		t4 := new(edwards25519.Point).Add(t, t)
		t4.Add(t4, t4)
		if t4.Equal(identity) == 1 {
			continue
		}
		var out [8]*edwards25519.Point
		out[0] = edwards25519.NewIdentityPoint()
		for k := 1; k < 8; k++ {
			out[k] = new(edwards25519.Point).Add(out[k-1], t)
		}
		return out
	}
}

// order returns the order of a small-order point, or 0 for any other point.
func order(p *edwards25519.Point) int {
	q := new(edwards25519.Point).Set(p)
	for n := 1; n <= 8; n++ {
		if q.Equal(identity) == 1 {
			return n
		}
		q.Add(q, p)
	}
	return 0
}

// nonCanonical returns y+p as a 32-byte little-endian encoding with the given
// sign bit, for y < 19: the only field elements with a second encoding.
func nonCanonical(y byte, sign bool) []byte {
	if y >= 19 {
		panic("vectorgen: y+p does not fit")
	}
	b := make([]byte, 32)
	b[0] = 0xed + y
	for i := 1; i < 31; i++ {
		b[i] = 0xff
	}
	b[31] = 0x7f
	if sign {
		b[31] |= 0x80
	}
	return b
}

// withSign returns enc with the sign bit set: a non-canonical encoding when
// x = 0 (y = 1 or y = p-1).
func withSign(enc []byte) []byte {
	b := append([]byte(nil), enc...)
	b[31] |= 0x80
	return b
}

// mustDecode decodes enc, which the caller knows to be a curve point in some
// encoding.
func mustDecode(enc []byte) *edwards25519.Point {
	p, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		panic(fmt.Sprintf("vectorgen: %x is not a point", enc))
	}
	return p
}

// notOnCurve returns the canonical encoding of the smallest y that is not the
// y-coordinate of a curve point.
func notOnCurve() []byte {
	for y := byte(2); ; y++ {
		b := make([]byte, 32)
		b[0] = y
		if _, err := new(edwards25519.Point).SetBytes(b); err != nil {
			return b
		}
	}
}

// addL returns S + L for a canonical scalar encoding S, a non-canonical
// encoding of the same scalar (it fits in 253 bits since S < L).
func addL(s []byte) []byte {
	l := lMinus1.Bytes()
	out := make([]byte, 32)
	carry := uint16(1) // (L-1) + 1
	for i := range 32 {
		v := uint16(s[i]) + uint16(l[i]) + carry
		out[i] = byte(v)
		carry = v >> 8
	}
	return out
}

// hram is the RFC 8032 challenge SHA-512(R || A || M) mod L.
func hram(r, a, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(r)
	h.Write(a)
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err)
	}
	return k
}

// schnorr returns the signature R || S with S = r + H(R || A || M)·x, where
// rEnc is the encoding of R to sign with (for a plain signature, [r]B).
func schnorr(x *edwards25519.Scalar, a, msg []byte, r *edwards25519.Scalar, rEnc []byte) []byte {
	s := edwards25519.NewScalar().MultiplyAdd(hram(rEnc, a, msg), x, r)
	return append(append([]byte(nil), rEnc...), s.Bytes()...)
}

// sign signs msg under the key a = [x]B with a fresh nonce r and the
// commitment R = [r]B + t (t nil for none): with t of small order the
// signature passes the cofactored (ZIP-215) check and fails the
// cofactorless one.
func (g *rng) sign(x *edwards25519.Scalar, a, msg []byte, t *edwards25519.Point) []byte {
	r := g.scalar()
	R := new(edwards25519.Point).ScalarBaseMult(r)
	if t != nil {
		R.Add(R, t)
	}
	return schnorr(x, a, msg, r, R.Bytes())
}

// edScalar returns the secret scalar of an Ed25519 private key.
func edScalar(priv ed25519.PrivateKey) *edwards25519.Scalar {
	h := sha512.Sum512(priv.Seed())
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic(err)
	}
	return s
}

// denominationScalars reads the secret scalars out of the mint's storage
// encoding of a keyset secret: u16 length, signed keyset, 32-byte nonce key,
// one 32-byte scalar per denomination in keyset order.
func denominationScalars(sec *coin.KeysetSecret) (map[uint64]*edwards25519.Scalar, error) {
	b := sec.Bytes()
	ks := sec.Keyset()
	off := 2 + int(binary.BigEndian.Uint16(b)) + 32
	if len(b) != off+32*len(ks.Denominations) {
		return nil, fmt.Errorf("vectorgen: keyset secret is %d bytes", len(b))
	}
	out := make(map[uint64]*edwards25519.Scalar)
	for i, d := range ks.Denominations {
		x, err := edwards25519.NewScalar().SetCanonicalBytes(b[off+32*i : off+32*i+32])
		if err != nil {
			return nil, err
		}
		if [32]byte(new(edwards25519.Point).ScalarBaseMult(x).Bytes()) != d.Key {
			return nil, fmt.Errorf("vectorgen: scalar %d does not match its key", i)
		}
		out[d.Amount()] = x
	}
	return out, nil
}

func flip(b []byte, bit int) []byte {
	out := append([]byte(nil), b...)
	out[bit/8] ^= 1 << (bit % 8)
	return out
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
