package coin

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// torsion returns the eight points of order dividing 8, T[k] = [k]T[1] with
// T[1] of order 8, found as [L]P for points P decoded from hashes.
func torsion(t testing.TB) [8]*edwards25519.Point {
	t.Helper()
	for i := 0; ; i++ {
		h := sha256.Sum256([]byte{byte(i)})
		p, err := new(edwards25519.Point).SetBytes(h[:])
		if err != nil {
			continue
		}
		// [L]P = [L-1]P + P is P's torsion component times L.
		q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(lMinus1, p, edwards25519.NewScalar())
		q.Add(q, p)
		q4 := new(edwards25519.Point).Add(q, q)
		q4.Add(q4, q4)
		if q4.Equal(identity) == 1 {
			continue // order < 8
		}
		var out [8]*edwards25519.Point
		out[0] = edwards25519.NewIdentityPoint()
		for k := 1; k < 8; k++ {
			out[k] = new(edwards25519.Point).Add(out[k-1], q)
		}
		if new(edwards25519.Point).Add(out[7], q).Equal(identity) != 1 {
			t.Fatal("torsion point is not of order 8")
		}
		return out
	}
}

// TestWithdrawMany withdraws 10,000 coins with random seeds, counters,
// amounts and designations through both rounds; every mint signature must
// verify with crypto/ed25519.Verify and every spend with the verifier.
func TestWithdrawMany(t *testing.T) {
	const total = 10_000
	f := newFixture(t)
	amounts := f.ks.Amounts()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	now := t0.Add(time.Hour)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seed [32]byte
			rand.Read(seed[:])
			v := f.verifier()
			var items []Item
			for i := w; i < total; i += workers {
				var rnd [16]byte
				rand.Read(rnd[:])
				amount := amounts[int(rnd[0])%len(amounts)]
				var des [32]byte
				if rnd[1]&1 == 1 {
					des = Designation(f.server)
				}
				counter := uint64(rnd[2])<<32 | uint64(i)
				wd, err := NewWithdrawal(&seed, counter, f.ks, amount, des)
				if err != nil {
					errc <- err
					return
				}
				signer, _ := f.sec.Signer(amount)
				r0, r1 := signer.Begin(wd.Nonce())
				c0, c1, err := wd.Challenges(r0, r1)
				if err != nil {
					errc <- err
					return
				}
				row, err := signer.Finish(t0.Add(time.Hour), wd.Nonce(), c0, c1)
				if err != nil {
					errc <- err
					return
				}
				c, err := wd.Finish(row.Answer())
				if err != nil {
					errc <- err
					return
				}
				key, _ := f.ks.Key(amount)
				if !ed25519.Verify(key[:], c.Message(), c.Sig[:]) {
					errc <- errors.New("crypto/ed25519 rejects a mint signature")
					return
				}
				digest := sha256.Sum256(rnd[:])
				s, err := NewSpend(c, wd.CoinKey(), f.server, digest)
				if err != nil {
					errc <- err
					return
				}
				items = append(items, Item{Spend: s, Digest: digest})
				if len(items) == 64 {
					if err := v.VerifyBatch(items, now); err != nil {
						errc <- err
						return
					}
					items = items[:0]
				}
			}
			// The remainder one by one, through the single path.
			for _, it := range items {
				if err := v.VerifySpend(it.Spend, it.Digest, now); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestUnlinkable shows that the mint's view of a withdrawal is consistent
// with every coin: for both pairings of two transcripts with two coins there
// are blinding factors (α, β) mapping the transcript to the coin, so the
// mint cannot tell which withdrawal produced which coin.
func TestUnlinkable(t *testing.T) {
	f := newFixture(t)
	type view struct { // what the mint sees
		r [2]*edwards25519.Point
		c [2]*edwards25519.Scalar
		b uint8
		s *edwards25519.Scalar
	}
	var views [2]view
	var coins [2]*Coin
	signer, _ := f.sec.Signer(16)
	key, _ := f.ks.Key(16)
	A, _ := f.ks.point(16)
	for i := range 2 {
		wd, err := NewWithdrawal(&f.seed, uint64(100+i), f.ks, 16, [32]byte{})
		if err != nil {
			t.Fatal(err)
		}
		r0, r1 := signer.Begin(wd.Nonce())
		c0, c1, err := wd.Challenges(r0, r1)
		if err != nil {
			t.Fatal(err)
		}
		row, _ := signer.Finish(t0.Add(time.Hour), wd.Nonce(), c0, c1)
		coins[i], err = wd.Finish(row.Answer())
		if err != nil {
			t.Fatal(err)
		}
		var vw view
		for j, rb := range [2][32]byte{r0, r1} {
			vw.r[j], _ = new(edwards25519.Point).SetBytes(rb[:])
		}
		vw.c[0], _ = edwards25519.NewScalar().SetCanonicalBytes(c0[:])
		vw.c[1], _ = edwards25519.NewScalar().SetCanonicalBytes(c1[:])
		vw.b = row.B
		vw.s, _ = edwards25519.NewScalar().SetCanonicalBytes(row.S[:])
		views[i] = vw
	}
	for vi, vw := range views {
		for ci, c := range coins {
			// Candidate blinding: α = s' − s, β = c_b − H(R' || A || M).
			rp, _ := new(edwards25519.Point).SetBytes(c.Sig[:32])
			sp, _ := edwards25519.NewScalar().SetCanonicalBytes(c.Sig[32:])
			alpha := edwards25519.NewScalar().Subtract(sp, vw.s)
			beta := edwards25519.NewScalar().Subtract(vw.c[vw.b], challenge(c.Sig[:32], key[:], c.Message()))
			// They map the transcript to the coin iff R' = R_b + α·B + β·A.
			got := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, A, alpha)
			got.Add(got, vw.r[vw.b])
			if got.Equal(rp) != 1 {
				t.Errorf("transcript %d is not consistent with coin %d", vi, ci)
			}
		}
	}
}

// TestMaliciousCommitment shows that a mint adding a small-order component
// to R0 or R1, which would tag the coin, is caught before the client sends
// its challenges.
func TestMaliciousCommitment(t *testing.T) {
	f := newFixture(t)
	T := torsion(t)
	signer, _ := f.sec.Signer(4)
	for k := 1; k < 8; k++ {
		for j := range 2 {
			wd, _ := NewWithdrawal(&f.seed, uint64(k), f.ks, 4, [32]byte{})
			r := [2][32]byte{}
			r[0], r[1] = signer.Begin(wd.Nonce())
			p, _ := new(edwards25519.Point).SetBytes(r[j][:])
			copy(r[j][:], p.Add(p, T[k]).Bytes())
			if _, _, err := wd.Challenges(r[0], r[1]); !errors.Is(err, ErrBadKey) {
				t.Errorf("R%d + T%d: got %v, want ErrBadKey", j, k, err)
			}
		}
	}
	// A pure torsion point and the identity are refused too.
	wd, _ := NewWithdrawal(&f.seed, 99, f.ks, 4, [32]byte{})
	r0, _ := signer.Begin(wd.Nonce())
	for k := range 8 {
		if _, _, err := wd.Challenges(r0, [32]byte(T[k].Bytes())); !errors.Is(err, ErrBadKey) {
			t.Errorf("R1 = T%d: got %v", k, err)
		}
	}
}

// TestNonceReuseRevealsKey documents why a mint must never answer one nonce
// with two different pairs of challenges: with the same r_b and b, two
// answers s = r_b + c·x and s' = r_b + c'·x give x = (s − s') / (c − c').
func TestNonceReuseRevealsKey(t *testing.T) {
	f := newFixture(t)
	signer, _ := f.sec.Signer(32)
	var nonce [32]byte
	rand.Read(nonce[:])
	var c0, c1, d0, d1 [32]byte
	for _, c := range []*[32]byte{&c0, &c1, &d0, &d1} {
		var wide [64]byte
		rand.Read(wide[:])
		s, _ := edwards25519.NewScalar().SetUniformBytes(wide[:])
		copy(c[:], s.Bytes())
	}
	row1, _ := signer.Finish(t0.Add(time.Hour), nonce, c0, c1)
	row2, _ := signer.Finish(t0.Add(time.Hour), nonce, d0, d1) // what the commit rule forbids
	if row1.B != row2.B {
		t.Fatal("clause bit depends on the challenges")
	}
	if row2.Matches(c0, c1) {
		t.Fatal("row matches other challenges")
	}
	cb, db := c0, d0
	if row1.B == 1 {
		cb, db = c1, d1
	}
	s1, _ := edwards25519.NewScalar().SetCanonicalBytes(row1.S[:])
	s2, _ := edwards25519.NewScalar().SetCanonicalBytes(row2.S[:])
	sc, _ := edwards25519.NewScalar().SetCanonicalBytes(cb[:])
	sd, _ := edwards25519.NewScalar().SetCanonicalBytes(db[:])
	num := edwards25519.NewScalar().Subtract(s1, s2)
	den := edwards25519.NewScalar().Subtract(sc, sd)
	x := edwards25519.NewScalar().Multiply(num, den.Invert(den))
	key := signer.Key()
	if got := new(edwards25519.Point).ScalarBaseMult(x).Bytes(); [32]byte(got) != key {
		t.Fatal("recovered scalar does not match the denomination key")
	}
	// With the key, anyone can sign any coin message.
	msg := coinMessage(f.ks.ID(), 32, [32]byte{1}, [32]byte{})
	r := edwards25519.NewScalar().MultiplyAdd(x, x, x) // any nonce scalar
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	s := edwards25519.NewScalar().MultiplyAdd(challenge(R, key[:], msg), x, r)
	if !ed25519.Verify(key[:], msg, append(R, s.Bytes()...)) {
		t.Fatal("forged coin does not verify")
	}
}
