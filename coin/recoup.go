package coin

import (
	"fmt"

	"filippo.io/edwards25519"
)

// Recoup: when a keyset is revoked (its keys may have leaked, so the mint
// refuses its coins), the holder of an unspent coin gets its value back by
// showing the mint that the mint itself issued the coin. A coin made with
// a stolen key has no issuance row; a coin the mint issued has one, under
// (denomination key, nonce), holding SHA-256(tag || c0 || c1) of the
// challenges the wallet sent. The holder reveals the nonce and the four
// blinding factors; the mint recomputes R0, R1 from the nonce, then c0, c1
// from the coin's message, and compares the hash with its row.
//
// Revealing the blinding factors links the coin to its withdrawal: recoup
// gives up the coin's unlinkability, which is why it is used only for
// coins of revoked keysets.

// RecoupProof is what a coin's holder reveals to recoup it: the nonce it
// was issued under and the blinding factors of both clauses (canonical
// scalars).
type RecoupProof struct {
	Nonce [32]byte
	Alpha [2][32]byte
	Beta  [2][32]byte
}

// NewRecoupProof derives, from the wallet seed, the recoup proof of coin c,
// issued under nonce from keyset ks with the mint's commitments r0, r1
// (which a wallet gets back from the mint's Restore call). It returns the
// proof and the challenge hash the mint must hold for the coin's row, so
// the wallet can check the proof against the mint's stored row before it
// sends it. It fails with an error wrapping [ErrAmount] if c's amount is
// not a denomination of ks, and [ErrBadKey] if the commitments are not
// points of prime order.
func NewRecoupProof(seed *[32]byte, ks *Keyset, c *Coin, nonce, r0, r1 [32]byte) (RecoupProof, [32]byte, error) {
	key, ok := ks.Key(c.Amount)
	if !ok || c.KeysetID != ks.id {
		return RecoupProof{}, [32]byte{}, fmt.Errorf("%w: coin not of this keyset", ErrAmount)
	}
	p := RecoupProof{Nonce: nonce}
	for j := range 2 {
		a, b := blinding(seed, &nonce, &key, &r0, &r1, j)
		copy(p.Alpha[j][:], a.Bytes())
		copy(p.Beta[j][:], b.Bytes())
	}
	kp, _ := ks.point(c.Amount)
	h, err := recoupHash(kp, key, c.Message(), r0, r1, &p)
	if err != nil {
		return RecoupProof{}, [32]byte{}, err
	}
	return p, h, nil
}

// RecoupHash recomputes, from coin c and the proof its holder revealed,
// the challenge hash that the row of (s.Key(), p.Nonce) holds if the mint
// issued c from that row. The caller compares it with the stored row's
// hash; the coin's signatures are checked apart, as for any spend. It
// fails with an error wrapping [ErrAmount] if c is not of this signer's
// keyset and amount, and [ErrMalformed] if a blinding factor is not a
// canonical scalar.
func (s *Signer) RecoupHash(c *Coin, p *RecoupProof) ([32]byte, error) {
	if c.KeysetID != s.keysetID || c.Amount != s.amount {
		return [32]byte{}, fmt.Errorf("%w: coin not of this denomination", ErrAmount)
	}
	r0, r1 := s.Begin(p.Nonce)
	kp, _ := s.keyset.point(s.amount)
	return recoupHash(kp, s.pub, c.Message(), r0, r1, p)
}

// recoupHash computes c_j = SHA-512(R'_j || A || M) + β_j with
// R'_j = R_j + α_j·B + β_j·A, and returns SHA-256(tag || c0 || c1). The
// blinding factors are revealed, so nothing here is secret.
func recoupHash(keyPoint *edwards25519.Point, key [32]byte, msg []byte, r0, r1 [32]byte, p *RecoupProof) ([32]byte, error) {
	var c [2][32]byte
	for j, rb := range [2][32]byte{r0, r1} {
		rp, err := decodePrimeOrder(rb[:])
		if err != nil {
			return [32]byte{}, fmt.Errorf("%w: mint commitment R%d", ErrBadKey, j)
		}
		alpha, err1 := edwards25519.NewScalar().SetCanonicalBytes(p.Alpha[j][:])
		beta, err2 := edwards25519.NewScalar().SetCanonicalBytes(p.Beta[j][:])
		if err1 != nil || err2 != nil {
			return [32]byte{}, fmt.Errorf("%w: blinding factor is not a canonical scalar", ErrMalformed)
		}
		t := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, keyPoint, alpha)
		t.Add(t, rp)
		cj := challenge(t.Bytes(), key[:], msg)
		cj.Add(cj, beta)
		copy(c[j][:], cj.Bytes())
	}
	return ChallengeHash(c[0], c[1]), nil
}
