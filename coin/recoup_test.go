package coin

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// issueRow runs both rounds for one coin and returns the coin with the
// row the mint stored and the commitments it sent.
func (f *fixture) issueRow(t testing.TB, i, amount uint64, designated [32]byte) (*Coin, Row, [32]byte, [32]byte) {
	t.Helper()
	w, err := NewWithdrawal(&f.seed, i, f.ks, amount, designated)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := f.sec.Signer(amount)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := signer.Begin(w.Nonce())
	c0, c1, err := w.Challenges(r0, r1)
	if err != nil {
		t.Fatal(err)
	}
	row, err := signer.Finish(t0.Add(time.Hour), w.Nonce(), c0, c1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.Finish(row.Answer())
	if err != nil {
		t.Fatal(err)
	}
	return c, row, r0, r1
}

// TestRecoupProof: the proof a wallet derives from its seed makes the
// mint recompute the hash of its row, for bearer and designated coins;
// the proof of another coin, a changed factor, another seed or a coin
// forged with the leaked key do not.
func TestRecoupProof(t *testing.T) {
	f := newFixture(t)
	for _, des := range [][32]byte{{}, Designation(f.server)} {
		c, row, r0, r1 := f.issueRow(t, 7, 16, des)
		p, h, err := NewRecoupProof(&f.seed, f.ks, c, row.Nonce, r0, r1)
		if err != nil {
			t.Fatal(err)
		}
		if h != row.ChallengeHash {
			t.Fatal("the wallet's hash is not the row's")
		}
		signer, _ := f.sec.Signer(16)
		got, err := signer.RecoupHash(c, &p)
		if err != nil || got != row.ChallengeHash {
			t.Fatalf("mint's hash: %v", err)
		}

		// Any change to the proof or the coin breaks the match.
		bad := p
		bad.Alpha[1][0] ^= 1
		if got, err := signer.RecoupHash(c, &bad); err == nil && got == row.ChallengeHash {
			t.Fatal("changed alpha1 accepted")
		}
		bad = p
		bad.Nonce[0] ^= 1
		if got, err := signer.RecoupHash(c, &bad); err == nil && got == row.ChallengeHash {
			t.Fatal("other nonce accepted")
		}
		other := *c
		other.Pub[0] ^= 1
		if got, _ := signer.RecoupHash(&other, &p); got == row.ChallengeHash {
			t.Fatal("other coin key accepted")
		}
		otherSeed := f.seed
		otherSeed[0] ^= 1
		p2, _, err := NewRecoupProof(&otherSeed, f.ks, c, row.Nonce, r0, r1)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := signer.RecoupHash(c, &p2); got == row.ChallengeHash {
			t.Fatal("proof from another seed accepted")
		}
	}

	// A thief with the denomination key signs a coin of its own: no row
	// of the mint matches it, even one the thief withdrew itself.
	c, row, r0, r1 := f.issueRow(t, 9, 16, [32]byte{})
	forged := *c
	_, coinKey, _ := ed25519.GenerateKey(testRand(99))
	copy(forged.Pub[:], coinKey.Public().(ed25519.PublicKey))
	forged.Root = coinRoot(coinKey)
	x := f.sec.x[16]
	pub, _ := f.ks.Key(16)
	forged.Sig = atkSchnorr(x, pub, forged.Message())
	if err := (&Verifier{Keysets: f.keysets, Server: f.server, Window: WindowSpend}).VerifyCoin(&forged, t0.Add(time.Hour)); err != nil {
		t.Fatalf("the forged coin should verify: %v", err)
	}
	p, _, err := NewRecoupProof(&f.seed, f.ks, &forged, row.Nonce, r0, r1)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := f.sec.Signer(16)
	if got, _ := signer.RecoupHash(&forged, &p); got == row.ChallengeHash {
		t.Fatal("forged coin matched a row")
	}

	// Malformed input.
	if _, err := signer.RecoupHash(c, &RecoupProof{Nonce: row.Nonce, Alpha: [2][32]byte{{0xff, 0xff}, {}}, Beta: [2][32]byte{{}, {}}}); err != nil {
		t.Fatalf("canonical small scalars: %v", err)
	}
	var big [32]byte
	for i := range big {
		big[i] = 0xff
	}
	if _, err := signer.RecoupHash(c, &RecoupProof{Nonce: row.Nonce, Alpha: [2][32]byte{big, {}}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-canonical alpha: %v", err)
	}
	other, _ := f.sec.Signer(8)
	if _, err := other.RecoupHash(c, &p); !errors.Is(err, ErrAmount) {
		t.Fatalf("other denomination: %v", err)
	}
	if _, _, err := NewRecoupProof(&f.seed, f.ks, c, row.Nonce, [32]byte{1}, r1); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad commitment: %v", err)
	}
}

// TestVerifierAnyDesignation: a designated coin is refused to another
// server unless the verifier admits any designation.
func TestVerifierAnyDesignation(t *testing.T) {
	f := newFixture(t)
	c, _ := f.withdraw(t, 3, 4, Designation([]byte("server-B")))
	v := f.verifier()
	if err := v.VerifyCoin(c, t0.Add(time.Hour)); !errors.Is(err, ErrDesignated) {
		t.Fatalf("designated elsewhere: %v", err)
	}
	v.AnyDesignation = true
	if err := v.VerifyCoin(c, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// atkSchnorr signs msg with the secret scalar x of public key pub, as a
// thief of a denomination key would.
func atkSchnorr(x *edwards25519.Scalar, pub [32]byte, msg []byte) [64]byte {
	r := hashToScalar([]byte("test nonce"), msg)
	R := new(edwards25519.Point).ScalarBaseMult(r)
	k := challenge(R.Bytes(), pub[:], msg)
	s := edwards25519.NewScalar().MultiplyAdd(k, x, r)
	var sig [64]byte
	copy(sig[:32], R.Bytes())
	copy(sig[32:], s.Bytes())
	return sig
}
