package coin

import (
	"crypto/rand"

	"filippo.io/edwards25519"
)

// sigTerm is one signature prepared for a batch: [S]B = R + [k]A.
type sigTerm struct {
	a *edwards25519.Point
	r *edwards25519.Point
	s *edwards25519.Scalar
	k *edwards25519.Scalar
}

// prepSig decodes a signature under the ZIP-215 rules: R may be any encoding
// of a curve point, S must be canonical. a is the decoded public key and
// aBytes its encoding as hashed into the challenge.
func prepSig(a *edwards25519.Point, aBytes, msg, sig []byte) (sigTerm, bool) {
	if len(sig) != SignatureSize {
		return sigTerm{}, false
	}
	r, err := new(edwards25519.Point).SetBytes(sig[:32])
	if err != nil {
		return sigTerm{}, false
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return sigTerm{}, false
	}
	return sigTerm{a: a, r: r, s: s, k: challenge(sig[:32], aBytes, msg)}, true
}

// batch accumulates signatures for one cofactored check
//
//	[8]( [−Σ z_j·S_j]B + Σ z_j·R_j + Σ_A [Σ_{j under A} z_j·k_j]A ) = 0
//
// with 128-bit z_j drawn from crypto/rand at verification. Signatures added
// with the same merge key share one A term, which is what makes many coins
// under a few denomination keys cheaper than independent signatures.
type batch struct {
	terms []sigTerm
	merge [][32]byte // zero: no merging
}

func newBatch(n int) *batch {
	return &batch{terms: make([]sigTerm, 0, n), merge: make([][32]byte, 0, n)}
}

func (b *batch) add(t sigTerm, mergeKey [32]byte) {
	b.terms = append(b.terms, t)
	b.merge = append(b.merge, mergeKey)
}

// verify runs the batch equation. It returns true if every signature in the
// batch is valid, and false with overwhelming probability otherwise.
func (b *batch) verify() bool {
	n := len(b.terms)
	if n == 0 {
		return true
	}
	coef := make([]byte, 16*n)
	if _, err := rand.Read(coef); err != nil {
		panic("coin: crypto/rand failed: " + err.Error())
	}
	scalars := make([]*edwards25519.Scalar, 0, 2*n+1)
	points := make([]*edwards25519.Point, 0, 2*n+1)
	bCoef := edwards25519.NewScalar()
	groupIdx := make(map[[32]byte]int)
	var buf [32]byte
	for j, t := range b.terms {
		copy(buf[:16], coef[16*j:16*j+16])
		z, _ := edwards25519.NewScalar().SetCanonicalBytes(buf[:])
		bCoef.MultiplyAdd(z, t.s, bCoef)
		scalars = append(scalars, z)
		points = append(points, t.r)
		zk := edwards25519.NewScalar().Multiply(z, t.k)
		if key := b.merge[j]; key != ([32]byte{}) {
			if gi, ok := groupIdx[key]; ok {
				scalars[gi].Add(scalars[gi], zk)
				continue
			}
			groupIdx[key] = len(scalars)
		}
		scalars = append(scalars, zk)
		points = append(points, t.a)
	}
	scalars = append(scalars, bCoef.Negate(bCoef))
	points = append(points, edwards25519.NewGeneratorPoint())
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return check.MultByCofactor(check).Equal(identity) == 1
}
