package coin

import (
	"crypto/sha512"
	"encoding/binary"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Domain tags. Each is ASCII followed by a zero byte, so no tag is a prefix
// of another.
const (
	tagKeyset      = "scrip/v1/keyset\x00"
	tagKeysetSig   = "scrip/v1/keyset-sig\x00"
	tagCoin        = "scrip/v1/coin\x00"
	tagSpend       = "scrip/v1/spend\x00"
	tagDesignate   = "scrip/v1/designate\x00"
	tagMintR       = "scrip/v1/mint-r\x00"
	tagMintB       = "scrip/v1/mint-b\x00"
	tagWalletNonce = "scrip/v1/wallet-nonce\x00"
	tagWalletBlind = "scrip/v1/wallet-blind\x00"
	tagWalletCoin  = "scrip/v1/wallet-coin\x00"
	tagChallenges  = "scrip/v1/challenges\x00"
)

// Sizes of the fixed-length values, in bytes.
const (
	PointSize     = 32
	ScalarSize    = 32
	SignatureSize = 64
	IDSize        = 32
	NonceSize     = 32
	SeedSize      = 32
)

var (
	identity = edwards25519.NewIdentityPoint()
	// lMinus1 is the group order minus one, the largest canonical scalar.
	lMinus1 = func() *edwards25519.Scalar {
		b := [32]byte{0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
		s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
		if err != nil {
			panic(err)
		}
		return s
	}()
)

// canonicalEncoding reports whether b is the canonical encoding of a field
// element y < p = 2^255-19 with a sign bit that is not set for x = 0 (that is,
// for y = 1 and y = p-1). It does not check that b is on the curve.
func canonicalEncoding(b []byte) bool {
	if len(b) != PointSize {
		return false
	}
	// y >= p iff bits 0..254 are in [2^255-19, 2^255-1]: the top 31 bytes
	// (with the sign bit cleared) are all 0xff/0x7f and the low byte >= 0xed.
	allOnes := b[31]&0x7f == 0x7f
	for i := 1; i < 31 && allOnes; i++ {
		allOnes = b[i] == 0xff
	}
	if allOnes && b[0] >= 0xed {
		return false
	}
	if b[31]&0x80 != 0 {
		// y = 1 or y = p-1 means x = 0: sign bit must be clear.
		isOne := b[0] == 1
		isPm1 := b[0] == 0xec && b[31]&0x7f == 0x7f
		for i := 1; i < 31; i++ {
			isOne = isOne && b[i] == 0
			isPm1 = isPm1 && b[i] == 0xff
		}
		isOne = isOne && b[31]&0x7f == 0
		if isOne || isPm1 {
			return false
		}
	}
	return true
}

// decodePrimeOrder decodes b as a canonical encoding of a point of prime
// order (not the identity). It costs a variable-time scalar multiplication
// and is meant for keys that are checked once (keysets, commitments).
func decodePrimeOrder(b []byte) (*edwards25519.Point, error) {
	if !canonicalEncoding(b) {
		return nil, ErrBadKey
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, ErrBadKey
	}
	if !inPrimeOrderSubgroup(p) {
		return nil, ErrBadKey
	}
	return p, nil
}

// inPrimeOrderSubgroup reports whether p is in the subgroup of order L and is
// not the identity. p is public; the check runs in variable time.
func inPrimeOrderSubgroup(p *edwards25519.Point) bool {
	if p.Equal(identity) == 1 {
		return false
	}
	// [L]p = [L-1]p + p.
	q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(lMinus1, p, edwards25519.NewScalar())
	q.Add(q, p)
	return q.Equal(identity) == 1
}

// decodeRoot decodes a coin key's root q and returns [8]q, which lies in the
// prime-order subgroup whatever q is. q must be a canonical encoding and
// [8]q must not be the identity. The caller must still check that [8]q
// encodes to the coin key.
func decodeRoot(root *[32]byte) (*edwards25519.Point, error) {
	if !canonicalEncoding(root[:]) {
		return nil, ErrBadKey
	}
	q, err := new(edwards25519.Point).SetBytes(root[:])
	if err != nil {
		return nil, ErrBadKey
	}
	q.MultByCofactor(q)
	if q.Equal(identity) == 1 {
		return nil, ErrBadKey
	}
	return q, nil
}

// hashToScalar returns SHA-512(parts...) reduced modulo L.
func hashToScalar(parts ...[]byte) *edwards25519.Scalar {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	var d [64]byte
	s, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(d[:0]))
	if err != nil {
		panic(err)
	}
	return s
}

// challenge returns the RFC 8032 challenge SHA-512(R || A || M) mod L.
func challenge(r, a, msg []byte) *edwards25519.Scalar {
	return hashToScalar(r, a, msg)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// encodeAll returns the encodings of points, sharing one field inversion
// among all of them (Montgomery's trick). The points are public.
func encodeAll(points []*edwards25519.Point) [][32]byte {
	n := len(points)
	out := make([][32]byte, n)
	if n == 0 {
		return out
	}
	xs := make([]field.Element, n)
	ys := make([]field.Element, n)
	prefix := make([]field.Element, n) // prefix[i] = Z_0 · … · Z_i
	for i, p := range points {
		X, Y, Z, _ := p.ExtendedCoordinates()
		xs[i].Set(X)
		ys[i].Set(Y)
		if i == 0 {
			prefix[0].Set(Z)
		} else {
			prefix[i].Multiply(&prefix[i-1], Z)
		}
	}
	var inv, zInv field.Element
	inv.Invert(&prefix[n-1]) // 1 / (Z_0 · … · Z_{n-1})
	for i := n - 1; i >= 0; i-- {
		_, _, Z, _ := points[i].ExtendedCoordinates()
		if i > 0 {
			zInv.Multiply(&inv, &prefix[i-1])
			inv.Multiply(&inv, Z)
		} else {
			zInv.Set(&inv)
		}
		xs[i].Multiply(&xs[i], &zInv)
		ys[i].Multiply(&ys[i], &zInv)
		copy(out[i][:], ys[i].Bytes())
		out[i][31] |= byte(xs[i].IsNegative() << 7)
	}
	return out
}
