package coin

// Attack tests: each one tries to break a property of the package and
// asserts that the defence holds. A test that fails here is a finding.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

var atkNow = t0.Add(time.Hour)

// atkSpend withdraws coin i of amount with designation des and spends it at
// server for digest.
func (f *fixture) atkSpend(t testing.TB, i, amount uint64, des [32]byte, server []byte, digest [32]byte) (*Spend, ed25519.PrivateKey) {
	t.Helper()
	c, key := f.withdraw(t, i, amount, des)
	s, err := NewSpend(c, key, server, digest)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// atkMintSign signs msg with the fixture's secret key for amount, with a
// nonce derived from salt: a forger who holds the key, used to build coins
// that get past the mint signature so that later checks can be probed.
func (f *fixture) atkMintSign(amount uint64, msg []byte, salt byte) [64]byte {
	x := f.sec.x[amount]
	key, _ := f.ks.Key(amount)
	r := hashToScalar([]byte("attack nonce"), msg, []byte{salt})
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	s := edwards25519.NewScalar().MultiplyAdd(challenge(R, key[:], msg), x, r)
	var sig [64]byte
	copy(sig[:32], R)
	copy(sig[32:], s.Bytes())
	return sig
}

// atkSignWithNonce is Ed25519 by the coin key with an arbitrary nonce r: a
// second, different valid signature by the same key.
func atkSignWithNonce(priv ed25519.PrivateKey, msg []byte, salt byte) [64]byte {
	h := sha512.Sum512(priv.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic(err)
	}
	r := hashToScalar([]byte("attack spend nonce"), msg, []byte{salt})
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	pub := priv.Public().(ed25519.PublicKey)
	s := edwards25519.NewScalar().MultiplyAdd(challenge(R, pub, msg), a, r)
	var sig [64]byte
	copy(sig[:32], R)
	copy(sig[32:], s.Bytes())
	return sig
}

// atkAddL returns the 32-byte little-endian s + L (non-canonical when it
// fits; it does for every s < 2^256 − L).
func atkAddL(s []byte) []byte {
	L := lMinus1.Bytes()
	out := make([]byte, 32)
	var carry uint16 = 1
	for j := range 32 {
		v := uint16(s[j]) + uint16(L[j]) + carry
		out[j] = byte(v)
		carry = v >> 8
	}
	return out
}

// atkPlusP returns the non-canonical encoding y + p of a point whose y < 19.
func atkPlusP(enc []byte) []byte {
	out := make([]byte, 32)
	out[0] = enc[0] + 0xed
	for i := 1; i < 31; i++ {
		out[i] = 0xff
	}
	out[31] = 0x7f | enc[31]&0x80
	return out
}

// atkVerifyBoth runs the single and the batch verifier on s (alone and
// between two good spends) and fails the test if they disagree. It returns
// the single verifier's error.
func atkVerifyBoth(t testing.TB, v *Verifier, s *Spend, digest [32]byte, now time.Time, good []Item) error {
	t.Helper()
	single := v.VerifySpend(s, digest, now)
	items := append(append([]Item{good[0]}, Item{s, digest}), good[1:]...)
	err := v.VerifyBatch(items, now)
	var be *BatchError
	switch {
	case single == nil && err != nil:
		t.Fatalf("single accepts, batch refuses: %v", err)
	case single != nil && !errors.As(err, &be):
		t.Fatalf("single refuses (%v), batch accepts", single)
	case single != nil:
		if f := be.Failed(); len(f) != 1 || f[0] != 1 {
			t.Fatalf("batch names %v, want [1]", f)
		}
		if be.Errs[1].Error() != single.Error() {
			t.Fatalf("batch says %v, single says %v", be.Errs[1], single)
		}
	}
	return single
}

// --- Forgery and value creation ---

// TestAttackAmountAndKeysetSubstitution moves a valid mint signature to
// another amount, another keyset and another designation.
func TestAttackAmountAndKeysetSubstitution(t *testing.T) {
	f := newFixture(t)
	digest := sha256.Sum256([]byte("x"))
	s, key := f.atkSpend(t, 1, 1, [32]byte{}, f.server, digest)
	v := f.verifier()
	good := []Item{{s, digest}, {s, digest}}

	// A second keyset of the same mint with the same exponents.
	ks2, _, err := GenerateKeyset(testRand(2), f.mint, KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		NotBefore: t0, IssueUntil: t0.Add(time.Hour * 24), SpendUntil: t0.Add(time.Hour * 48), DepositUntil: t0.Add(time.Hour * 72),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.keysets.Add(ks2)

	mutate := func(m func(c *Coin)) *Spend {
		c := s.Coin
		m(&c)
		// The spend signature does not cover the coin; re-signing it with
		// the coin key changes nothing, but do it anyway.
		ns, err := NewSpend(&c, key, f.server, digest)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	for _, a := range []uint64{2, 4, 1024} {
		ns := mutate(func(c *Coin) { c.Amount = a })
		if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
			t.Errorf("amount 1 → %d: %v", a, err)
		}
	}
	for _, a := range []uint64{0, 3, 2048, 1 << 63} {
		ns := mutate(func(c *Coin) { c.Amount = a })
		if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrAmount) {
			t.Errorf("amount 1 → %d: %v", a, err)
		}
	}
	ns := mutate(func(c *Coin) { c.KeysetID = ks2.ID() })
	if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("moved to another keyset: %v", err)
	}
	ns = mutate(func(c *Coin) { c.KeysetID[31] ^= 1 })
	if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrUnknownKeyset) {
		t.Errorf("unknown keyset: %v", err)
	}
	ns = mutate(func(c *Coin) { c.Designated = Designation(f.server) })
	if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("bearer coin designated after the fact: %v", err)
	}

	// A designated coin made bearer, or moved to another server.
	sd, keyd := f.atkSpend(t, 2, 1, Designation(f.server), f.server, digest)
	if err := atkVerifyBoth(t, v, sd, digest, atkNow, good); err != nil {
		t.Fatalf("designated coin: %v", err)
	}
	c := sd.Coin
	c.Designated = [32]byte{}
	ns, _ = NewSpend(&c, keyd, f.server, digest)
	if err := atkVerifyBoth(t, v, ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("designated coin made bearer: %v", err)
	}
	other := []byte("server-B-peer-id")
	vb := &Verifier{Keysets: f.keysets, Server: other, Window: WindowSpend}
	ns, _ = NewSpend(&sd.Coin, keyd, other, digest)
	goodB, _ := f.atkSpend(t, 3, 1, [32]byte{}, other, digest)
	if err := atkVerifyBoth(t, vb, ns, digest, atkNow, []Item{{goodB, digest}, {goodB, digest}}); !errors.Is(err, ErrDesignated) {
		t.Errorf("coin designated to A at B: %v", err)
	}
}

// TestAttackRootWitness tries to use the unsigned root field: another
// coin's root, torsion added to the root, a non-canonical root, and a coin
// key with a torsion component.
func TestAttackRootWitness(t *testing.T) {
	f := newFixture(t)
	T := torsion(t)
	digest := sha256.Sum256([]byte("root"))
	s, _ := f.atkSpend(t, 10, 8, [32]byte{}, f.server, digest)
	s2, _ := f.atkSpend(t, 11, 8, [32]byte{}, f.server, digest)
	v := f.verifier()
	good := []Item{{s2, digest}, {s2, digest}}

	// Another coin's root.
	ns := *s
	ns.Root = s2.Root
	if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
		t.Errorf("foreign root: %v", err)
	}
	// Root + torsion: [8](Q + T) = [8]Q, so the spend still verifies. That
	// is by design (the root is not bound); what must hold is that every
	// variant carries the same coin_pub, so a spent set keyed by it sees one
	// coin.
	q, _ := new(edwards25519.Point).SetBytes(s.Root[:])
	for k := range 8 {
		ns := *s
		copy(ns.Root[:], new(edwards25519.Point).Add(q, T[k]).Bytes())
		if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); err != nil {
			t.Errorf("root + T%d: %v", k, err)
		}
	}
	// coin_pub with a torsion component (mixed order), with the root that
	// matches the prime-order part or with the torsioned root.
	P, _ := new(edwards25519.Point).SetBytes(s.Pub[:])
	for k := 1; k < 8; k++ {
		ns := *s
		copy(ns.Pub[:], new(edwards25519.Point).Add(P, T[k]).Bytes())
		for _, root := range [][32]byte{s.Root, [32]byte(new(edwards25519.Point).Add(q, T[k]).Bytes())} {
			ns.Root = root
			if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
				t.Errorf("coin_pub + T%d: %v", k, err)
			}
		}
		// A pure torsion coin key and its sign-bit variants.
		for _, e := range encodings(T[k]) {
			ns.Pub = [32]byte(e)
			ns.Root = [32]byte(e)
			if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
				t.Errorf("coin_pub = T%d (%x): %v", k, e, err)
			}
		}
	}
	// Identity root, with and without the sign bit.
	for _, e := range encodings(identity) {
		ns := *s
		ns.Root = [32]byte(e)
		if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
			t.Errorf("identity root %x: %v", e, err)
		}
	}

	// A non-canonical root. Points with y < 19 have a second encoding y + p;
	// y = 3 is such a point (mixed order), and [8]it is a valid coin key
	// whose discrete log nobody knows. A forger who holds the mint key signs
	// a coin for it: with the canonical root the coin gets past the root
	// check and fails only at the spend signature; with the non-canonical
	// root it must fail at the root check.
	var y3 [32]byte
	y3[0] = 3
	Q3, err := new(edwards25519.Point).SetBytes(y3[:])
	if err != nil {
		t.Fatal(err)
	}
	c := Coin{KeysetID: f.ks.ID(), Amount: 8, Root: y3}
	copy(c.Pub[:], new(edwards25519.Point).MultByCofactor(Q3).Bytes())
	c.Sig = f.atkMintSign(8, c.Message(), 1)
	if err := v.VerifyCoin(&c, atkNow); err != nil {
		t.Fatalf("forged coin with canonical root: %v", err)
	}
	fs := &Spend{Coin: c}
	if err := atkVerifyBoth(t, v, fs, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("canonical root: %v", err)
	}
	fs.Root = [32]byte(atkPlusP(y3[:]))
	if _, err := new(edwards25519.Point).SetBytes(fs.Root[:]); err != nil {
		t.Fatal("y + p does not decode")
	}
	if err := atkVerifyBoth(t, v, fs, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
		t.Errorf("non-canonical root: %v", err)
	}
	// A non-canonical coin_pub is impossible: it must equal encode([8]root).
	// Flip the sign bit and set y ≥ p on a real coin.
	ns = *s
	ns.Pub[31] ^= 0x80
	if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadKey) {
		t.Errorf("coin_pub sign flipped: %v", err)
	}
}

// TestAttackCanonicalEncoding checks canonicalEncoding, which guards coin
// keys and roots, against its definition: an encoding that decodes is
// canonical iff it is what the decoded point encodes to. It covers every
// encoding with y ≥ p, both signs of every small y, and random strings.
func TestAttackCanonicalEncoding(t *testing.T) {
	check := func(e []byte) {
		p, err := new(edwards25519.Point).SetBytes(e)
		if err != nil {
			return // not on the curve: callers decode after this check
		}
		if want := bytes.Equal(p.Bytes(), e); canonicalEncoding(e) != want {
			t.Errorf("canonicalEncoding(%x) = %v, want %v", e, !want, want)
		}
	}
	for lo := range 256 {
		for _, top := range []byte{0x7f, 0xff, 0x00, 0x80} {
			e := make([]byte, 32)
			e[0] = byte(lo)
			fill := byte(0xff)
			if top&0x7f == 0 {
				fill = 0
			}
			for i := 1; i < 31; i++ {
				e[i] = fill
			}
			e[31] = top
			check(e)
		}
	}
	for i := range 2000 {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), 'c'})
		check(h[:])
		h[31] ^= 0x80
		check(h[:])
	}
	if canonicalEncoding(make([]byte, 31)) || canonicalEncoding(make([]byte, 33)) {
		t.Error("wrong length accepted")
	}
}

// TestAttackNonCanonicalScalars offers S + L for the mint and the spend
// signatures, which a verifier that reduced S would accept as a second
// encoding of one spend.
func TestAttackNonCanonicalScalars(t *testing.T) {
	f := newFixture(t)
	digest := sha256.Sum256([]byte("s+L"))
	s, _ := f.atkSpend(t, 20, 4, [32]byte{}, f.server, digest)
	v := f.verifier()
	good := []Item{{s, digest}, {s, digest}}
	ns := *s
	copy(ns.Sig[32:], atkAddL(s.Sig[32:]))
	if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("mint S + L: %v", err)
	}
	ns = *s
	copy(ns.SpendSig[32:], atkAddL(s.SpendSig[32:]))
	if err := atkVerifyBoth(t, v, &ns, digest, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("spend S + L: %v", err)
	}
	// The mint's second-round scalars too: Finish refuses c + L.
	signer, _ := f.sec.Signer(4)
	var nonce, c [32]byte
	nonce[0] = 1
	c[0] = 5
	if _, err := signer.Finish(t0.Add(time.Hour), nonce, [32]byte(atkAddL(c[:])), c); !errors.Is(err, ErrMalformed) {
		t.Errorf("Finish with c0 + L: %v", err)
	}
}

// --- Replay and message ambiguity ---

// TestAttackSpendReplay replays a spend at another server, for another
// request, and with server IDs chosen so that, without the length prefix,
// the spend messages would be equal.
func TestAttackSpendReplay(t *testing.T) {
	f := newFixture(t)
	dX := sha256.Sum256([]byte("request X"))
	dY := sha256.Sum256([]byte("request Y"))
	s, key := f.atkSpend(t, 30, 2, [32]byte{}, f.server, dX)
	v := f.verifier()
	good := []Item{{s, dX}, {s, dX}}
	if err := atkVerifyBoth(t, v, s, dY, atkNow, good); !errors.Is(err, ErrBadSignature) {
		t.Errorf("request X replayed for Y: %v", err)
	}
	other := []byte("server-B-peer-id")
	vb := &Verifier{Keysets: f.keysets, Server: other, Window: WindowSpend}
	sb, _ := f.atkSpend(t, 31, 2, [32]byte{}, other, dX)
	if err := atkVerifyBoth(t, vb, s, dX, atkNow, []Item{{sb, dX}, {sb, dX}}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("server A's spend at B: %v", err)
	}

	// Length confusion: (S, D) and (S || D[0], D[1:] || z) concatenate to
	// the same bytes; the u16 prefix must separate them.
	d2 := [32]byte(append(append([]byte(nil), dX[1:]...), 0x42))
	longer := append(append([]byte(nil), f.server...), dX[0])
	if bytes.Equal(SpendMessage(f.server, dX), SpendMessage(longer, d2)) {
		t.Fatal("spend messages collide")
	}
	tail := func(m []byte) []byte { return m[len(tagSpend)+2:] }
	if !bytes.Equal(tail(SpendMessage(f.server, dX))[:len(longer)], tail(SpendMessage(longer, d2))[:len(longer)]) {
		t.Fatal("test setup: bodies should share a prefix")
	}
	vl := &Verifier{Keysets: f.keysets, Server: longer, Window: WindowSpend}
	sl, _ := f.atkSpend(t, 32, 2, [32]byte{}, longer, d2)
	if err := atkVerifyBoth(t, vl, s, d2, atkNow, []Item{{sl, d2}, {sl, d2}}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("length confusion: %v", err)
	}
	// Every message of one length is injective in (server, digest); the
	// u16 prefix is redundant with the fixed digest, but both agree.
	seen := map[string][2]string{}
	for n := 1; n <= 3; n++ {
		for i := range 64 {
			srv := bytes.Repeat([]byte{byte(i)}, n)
			d := sha256.Sum256([]byte{byte(i), byte(n)})
			m := string(SpendMessage(srv, d))
			if prev, ok := seen[m]; ok && (prev[0] != string(srv) || prev[1] != string(d[:])) {
				t.Fatalf("collision: %x", m)
			}
			seen[m] = [2]string{string(srv), string(d[:])}
		}
	}
	// Server IDs out of range are refused at both ends.
	for _, n := range []int{0, MaxServerIDLen + 1, 1 << 16, 1<<16 + 1} {
		srv := make([]byte, n)
		if _, err := NewSpend(&s.Coin, key, srv, dX); !errors.Is(err, ErrMalformed) {
			t.Errorf("NewSpend with %d-byte server: %v", n, err)
		}
		vv := &Verifier{Keysets: f.keysets, Server: srv, Window: WindowSpend}
		if err := vv.VerifySpend(s, dX, atkNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("verifier with %d-byte server: %v", n, err)
		}
		if err := vv.VerifyBatch([]Item{{s, dX}}, atkNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("batch verifier with %d-byte server: %v", n, err)
		}
	}
}

// --- Double spend ---

// TestAttackDoubleSpendDistinctPub looks for two spends of one coin with
// different coin_pub bytes that both verify: every variant of a spend that
// still verifies (other digest, other spend signature, torsion root, other
// encodings of each field) must carry the original coin_pub.
func TestAttackDoubleSpendDistinctPub(t *testing.T) {
	f := newFixture(t)
	T := torsion(t)
	digest := sha256.Sum256([]byte("ds"))
	s, key := f.atkSpend(t, 40, 16, [32]byte{}, f.server, digest)
	v := f.verifier()
	var variants []*Spend
	// Another request, another valid spend signature.
	d2 := sha256.Sum256([]byte("ds2"))
	s2, _ := NewSpend(&s.Coin, key, f.server, d2)
	variants = append(variants, s2)
	ns := *s
	ns.SpendSig = atkSignWithNonce(key, SpendMessage(f.server, digest), 7)
	if ns.SpendSig == s.SpendSig {
		t.Fatal("same spend signature")
	}
	variants = append(variants, &ns)
	// Torsion on the root.
	q, _ := new(edwards25519.Point).SetBytes(s.Root[:])
	for k := 1; k < 8; k++ {
		ns := *s
		copy(ns.Root[:], new(edwards25519.Point).Add(q, T[k]).Bytes())
		variants = append(variants, &ns)
	}
	// Torsion on the mint's R (the R bytes are hashed, so this must fail)
	// and on the coin key.
	R, _ := new(edwards25519.Point).SetBytes(s.Sig[:32])
	P, _ := new(edwards25519.Point).SetBytes(s.Pub[:])
	for k := 1; k < 8; k++ {
		ns := *s
		copy(ns.Sig[:32], new(edwards25519.Point).Add(R, T[k]).Bytes())
		variants = append(variants, &ns)
		ns2 := *s
		copy(ns2.Pub[:], new(edwards25519.Point).Add(P, T[k]).Bytes())
		copy(ns2.Root[:], new(edwards25519.Point).Add(q, T[k]).Bytes())
		variants = append(variants, &ns2)
	}
	// Every single-bit flip of the encoding.
	enc := s.Bytes()
	for i := range len(enc) * 8 {
		b := append([]byte(nil), enc...)
		b[i/8] ^= 1 << (i % 8)
		if ps, err := ParseSpend(b); err == nil {
			variants = append(variants, ps)
		}
	}
	n := 0
	for _, vs := range variants {
		d := digest
		if vs == s2 {
			d = d2
		}
		if err := v.VerifySpend(vs, d, atkNow); err == nil {
			n++
			if vs.Pub != s.Pub || vs.Amount != s.Amount || vs.KeysetID != s.KeysetID {
				t.Errorf("a second spend of one coin verifies with coin_pub %x (want %x), amount %d", vs.Pub, s.Pub, vs.Amount)
			}
		}
	}
	t.Logf("%d of %d variants verify, all with one coin_pub", n, len(variants))
}

// --- Batch verifier ---

// TestAttackBatchCancellation builds items whose errors cancel in a sum
// with equal coefficients: across items under one merged key, across keys,
// and between the mint and the spend signature of one item.
func TestAttackBatchCancellation(t *testing.T) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("cancel"))
	v := f.verifier()
	a, _ := f.atkSpend(t, 50, 8, [32]byte{}, f.server, d)
	b, _ := f.atkSpend(t, 51, 8, [32]byte{}, f.server, d)  // same key as a: merged
	c, _ := f.atkSpend(t, 52, 64, [32]byte{}, f.server, d) // another key
	g, _ := f.atkSpend(t, 53, 2, [32]byte{}, f.server, d)
	var delta [32]byte
	delta[0] = 1
	dl, _ := edwards25519.NewScalar().SetCanonicalBytes(delta[:])
	shift := func(sig *[64]byte, neg bool) {
		s, _ := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
		if neg {
			s.Subtract(s, dl)
		} else {
			s.Add(s, dl)
		}
		copy(sig[32:], s.Bytes())
	}
	type pair struct {
		name string
		mk   func() (x, y Spend)
		want string // failed items
	}
	pairs := []pair{
		{"merged key", func() (Spend, Spend) {
			x, y := *a, *b
			shift(&x.Sig, false)
			shift(&y.Sig, true)
			return x, y
		}, "[1 2]"},
		{"two keys", func() (Spend, Spend) {
			x, y := *a, *c
			shift(&x.Sig, false)
			shift(&y.Sig, true)
			return x, y
		}, "[1 2]"},
		{"mint vs spend signature", func() (Spend, Spend) {
			x := *a
			shift(&x.Sig, false)
			shift(&x.SpendSig, true)
			return x, *g
		}, "[1]"},
		{"mint signatures swapped", func() (Spend, Spend) {
			x, y := *a, *b
			x.Sig, y.Sig = y.Sig, x.Sig
			return x, y
		}, "[1 2]"},
		{"identical R", func() (Spend, Spend) {
			x, y := *a, *b
			copy(y.Sig[:32], x.Sig[:32])
			return x, y
		}, "[2]"},
	}
	for _, p := range pairs {
		for range 20 {
			x, y := p.mk()
			err := v.VerifyBatch([]Item{{g, d}, {&x, d}, {&y, d}}, atkNow)
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("%s: batch accepts", p.name)
			}
			if fmt.Sprint(be.Failed()) != p.want || !errors.Is(err, ErrBadSignature) {
				t.Fatalf("%s: %v", p.name, err)
			}
		}
	}

	// Small-order and identity R with S = 0, for either signature.
	T := torsion(t)
	for k := range 8 {
		for _, e := range encodings(T[k]) {
			x := *a
			copy(x.Sig[:32], e)
			clear(x.Sig[32:])
			y := *b
			copy(y.SpendSig[:32], e)
			clear(y.SpendSig[32:])
			err := v.VerifyBatch([]Item{{g, d}, {&x, d}, {&y, d}}, atkNow)
			var be *BatchError
			if !errors.As(err, &be) || fmt.Sprint(be.Failed()) != "[1 2]" {
				t.Fatalf("small-order R %x: %v", e, err)
			}
		}
	}

	// One coin twice in a batch: stateless verification accepts both; the
	// caller's spent set, keyed by coin_pub, must see one coin.
	items := []Item{{a, d}, {a, d}}
	if err := v.VerifyBatch(items, atkNow); err != nil {
		t.Fatal(err)
	}
}

// TestAttackBatchFallbackNames checks that a failed batch names exactly the
// bad items, each with the error the single verifier gives, across every
// failure class, in a batch of 40 under few keys.
func TestAttackBatchFallbackNames(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	items := make([]Item, 40)
	for i := range items {
		d := sha256.Sum256([]byte{byte(i)})
		s, _ := f.atkSpend(t, uint64(100+i), 1<<(i%3), [32]byte{}, f.server, d)
		items[i] = Item{s, d}
	}
	if err := v.VerifyBatch(items, atkNow); err != nil {
		t.Fatal(err)
	}
	bad := map[int]error{}
	corrupt := func(i int, want error, m func(s *Spend, d *[32]byte)) {
		s := *items[i].Spend
		m(&s, &items[i].Digest)
		items[i].Spend = &s
		bad[i] = want
	}
	corrupt(3, ErrBadSignature, func(s *Spend, _ *[32]byte) { s.Sig[5] ^= 1 })
	corrupt(7, ErrBadSignature, func(s *Spend, _ *[32]byte) { s.SpendSig[40] ^= 1 })
	corrupt(8, ErrBadSignature, func(_ *Spend, d *[32]byte) { d[0] ^= 1 })
	corrupt(15, ErrUnknownKeyset, func(s *Spend, _ *[32]byte) { s.KeysetID[0] ^= 1 })
	corrupt(16, ErrDesignated, func(s *Spend, _ *[32]byte) { s.Designated[0] = 1 })
	corrupt(23, ErrBadKey, func(s *Spend, _ *[32]byte) { s.Root = items[24].Spend.Root })
	corrupt(31, ErrAmount, func(s *Spend, _ *[32]byte) { s.Amount = 1 << 40 })
	corrupt(39, ErrBadSignature, func(s *Spend, _ *[32]byte) { s.Sig[63] |= 0x80 })
	err := v.VerifyBatch(items, atkNow)
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("batch with bad items: %v", err)
	}
	for i, e := range be.Errs {
		want := bad[i]
		if (e == nil) != (want == nil) || (want != nil && !errors.Is(e, want)) {
			t.Errorf("item %d: %v, want %v", i, e, want)
		}
		if single := v.VerifySpend(items[i].Spend, items[i].Digest, atkNow); fmt.Sprint(single) != fmt.Sprint(e) {
			t.Errorf("item %d: batch %v, single %v", i, e, single)
		}
	}
	// Every sentinel of a failed item is visible through errors.Is.
	for _, want := range bad {
		if !errors.Is(err, want) {
			t.Errorf("errors.Is(batch, %v) = false", want)
		}
	}
}

// TestAttackBatchRootsSharedInversion mixes, in one batch, spends whose
// roots carry every torsion component (valid), foreign roots and coin keys
// with torsion (invalid): the batch's shared-inversion root check must name
// exactly the items that the single check refuses, wherever they sit.
func TestAttackBatchRootsSharedInversion(t *testing.T) {
	f := newFixture(t)
	T := torsion(t)
	v := f.verifier()
	var items []Item
	for i := range 6 {
		d := sha256.Sum256([]byte{byte(i), 'r'})
		s, _ := f.atkSpend(t, uint64(1100+i), 4, [32]byte{}, f.server, d)
		q, _ := new(edwards25519.Point).SetBytes(s.Root[:])
		P, _ := new(edwards25519.Point).SetBytes(s.Pub[:])
		for k := range 8 {
			ns := *s
			copy(ns.Root[:], new(edwards25519.Point).Add(q, T[k]).Bytes())
			switch (i + k) % 4 {
			case 1: // a coin key with torsion
				copy(ns.Pub[:], new(edwards25519.Point).Add(P, T[(k+1)%8]).Bytes())
			case 2: // another item's root
				if len(items) > 0 {
					ns.Root = items[len(items)-1].Spend.Root
				}
			}
			items = append(items, Item{&ns, d})
		}
	}
	for _, n := range []int{1, 2, 7, len(items)} {
		err := v.VerifyBatch(items[:n], atkNow)
		var be *BatchError
		if err != nil && !errors.As(err, &be) {
			t.Fatal(err)
		}
		for i, it := range items[:n] {
			single := v.VerifySpend(it.Spend, it.Digest, atkNow)
			var got error
			if be != nil {
				got = be.Errs[i]
			}
			if fmt.Sprint(single) != fmt.Sprint(got) {
				t.Errorf("n=%d item %d: batch %v, single %v", n, i, got, single)
			}
		}
	}
}

// TestAttackVerifierConcurrentUse shares one Verifier between goroutines,
// as a server handling concurrent calls would. Run with -race: the
// designation cache is written without synchronisation.
func TestAttackVerifierConcurrentUse(t *testing.T) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("race"))
	s, _ := f.atkSpend(t, 60, 8, Designation(f.server), f.server, d)
	v := f.verifier() // fresh: its designation cache is empty
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			if i%2 == 0 {
				errs[i] = v.VerifySpend(s, d, atkNow)
			} else {
				errs[i] = v.VerifyBatch([]Item{{s, d}}, atkNow)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// --- Linking a coin to its withdrawal ---

// atkView is what the mint sees of one withdrawal.
type atkView struct {
	r    [2]*edwards25519.Point
	c    [2]*edwards25519.Scalar
	b    uint8
	s    *edwards25519.Scalar
	rRaw [2][32]byte
}

// atkConsistent reports whether view could have produced coin: whether
// α = s' − s and β = c_b − H(R' || A || M) map R_b to R'.
func atkConsistent(vw atkView, c *Coin, key [32]byte, A *edwards25519.Point) bool {
	rp, err := new(edwards25519.Point).SetBytes(c.Sig[:32])
	if err != nil {
		return false
	}
	sp, _ := edwards25519.NewScalar().SetCanonicalBytes(c.Sig[32:])
	alpha := edwards25519.NewScalar().Subtract(sp, vw.s)
	beta := edwards25519.NewScalar().Subtract(vw.c[vw.b], challenge(c.Sig[:32], key[:], c.Message()))
	got := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, A, alpha)
	got.Add(got, vw.r[vw.b])
	return got.Equal(rp) == 1
}

// TestAttackMaliciousMintUnlinkable lets a mint that knows its scalars pick
// commitments and the clause freely (R0 = R1, R = B, R = A, R = r·B for a
// chosen r, the clause bit forced per client) and answer correctly; the
// client accepts, and each transcript remains consistent with each coin.
func TestAttackMaliciousMintUnlinkable(t *testing.T) {
	f := newFixture(t)
	const amount = 32
	key, _ := f.ks.Key(amount)
	A, _ := f.ks.point(amount)
	x := f.sec.x[amount]
	sc := func(v uint64) *edwards25519.Scalar {
		var b [32]byte
		binary.LittleEndian.PutUint64(b[:], v)
		s, _ := edwards25519.NewScalar().SetCanonicalBytes(b[:])
		return s
	}
	// r_j chosen by the mint; R_j = r_j·B + ρ_j·A (so R = A is r = 0, ρ = 1).
	type choice struct {
		name   string
		r, rho [2]*edwards25519.Scalar
		b      uint8
	}
	one, zero := sc(1), sc(0)
	choices := []choice{
		{"R0 = R1", [2]*edwards25519.Scalar{sc(7), sc(7)}, [2]*edwards25519.Scalar{zero, zero}, 0},
		{"R = B", [2]*edwards25519.Scalar{one, one}, [2]*edwards25519.Scalar{zero, zero}, 1},
		{"R = A", [2]*edwards25519.Scalar{zero, zero}, [2]*edwards25519.Scalar{one, one}, 0},
		{"R tagged by a small r", [2]*edwards25519.Scalar{sc(1001), sc(1002)}, [2]*edwards25519.Scalar{zero, zero}, 1},
	}
	var views []atkView
	var coins []*Coin
	for i, ch := range choices {
		w, err := NewWithdrawal(&f.seed, uint64(500+i), f.ks, amount, [32]byte{})
		if err != nil {
			t.Fatal(err)
		}
		var vw atkView
		for j := range 2 {
			vw.r[j] = new(edwards25519.Point).VarTimeDoubleScalarBaseMult(ch.rho[j], A, ch.r[j])
			copy(vw.rRaw[j][:], vw.r[j].Bytes())
		}
		c0, c1, err := w.Challenges(vw.rRaw[0], vw.rRaw[1])
		if err != nil {
			t.Fatalf("%s: %v", ch.name, err)
		}
		vw.c[0], _ = edwards25519.NewScalar().SetCanonicalBytes(c0[:])
		vw.c[1], _ = edwards25519.NewScalar().SetCanonicalBytes(c1[:])
		vw.b = ch.b
		// s = r_b + c_b·(x + ρ_b): the discrete log of R_b is r_b + ρ_b·x.
		xb := edwards25519.NewScalar().MultiplyAdd(ch.rho[ch.b], x, ch.r[ch.b])
		vw.s = edwards25519.NewScalar().MultiplyAdd(vw.c[ch.b], x, xb)
		var ans Answer
		ans.B = ch.b
		copy(ans.S[:], vw.s.Bytes())
		c, err := w.Finish(ans)
		if err != nil {
			t.Fatalf("%s: client refuses a valid answer: %v", ch.name, err)
		}
		views = append(views, vw)
		coins = append(coins, c)
	}
	for vi, vw := range views {
		for ci, c := range coins {
			if !atkConsistent(vw, c, key, A) {
				t.Errorf("transcript %d (%s) is not consistent with coin %d: linkable", vi, choices[vi].name, ci)
			}
		}
	}
}

// TestAttackMalformedAnswers offers the client answers that are wrong in
// every way a mint could try; none may yield a coin.
func TestAttackMalformedAnswers(t *testing.T) {
	f := newFixture(t)
	const amount = 8
	signer, _ := f.sec.Signer(amount)
	w, _ := NewWithdrawal(&f.seed, 600, f.ks, amount, [32]byte{})
	if _, err := w.Finish(Answer{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Finish before Challenges: %v", err)
	}
	r0, r1 := signer.Begin(w.Nonce())
	c0, c1, err := w.Challenges(r0, r1)
	if err != nil {
		t.Fatal(err)
	}
	row, _ := signer.Finish(t0.Add(time.Hour), w.Nonce(), c0, c1)
	good := row.Answer()
	sPlus := func(d uint64) [32]byte {
		s, _ := edwards25519.NewScalar().SetCanonicalBytes(good.S[:])
		var b [32]byte
		binary.LittleEndian.PutUint64(b[:], d)
		ds, _ := edwards25519.NewScalar().SetCanonicalBytes(b[:])
		return [32]byte(s.Add(s, ds).Bytes())
	}
	// The answer for the other clause, computed honestly for that clause.
	rs0, rs1 := signer.rs(atkPtr(w.Nonce()))
	x := f.sec.x[amount]
	cs := [2][32]byte{c0, c1}
	rsb := [2]*edwards25519.Scalar{rs0, rs1}
	ob := 1 - good.B
	ocb, _ := edwards25519.NewScalar().SetCanonicalBytes(cs[ob][:])
	other := Answer{B: ob, S: [32]byte(edwards25519.NewScalar().MultiplyAdd(ocb, x, rsb[ob]).Bytes())}
	bad := map[string]Answer{
		"b = 2":         {B: 2, S: good.S},
		"b = 255":       {B: 255, S: good.S},
		"s + 1":         {B: good.B, S: sPlus(1)},
		"s + L":         {B: good.B, S: [32]byte(atkAddL(good.S[:]))},
		"s = 0":         {B: good.B},
		"wrong clause":  {B: ob, S: good.S},
		"s + 8":         {B: good.B, S: sPlus(8)},
		"all ones":      {B: good.B, S: [32]byte(bytes.Repeat([]byte{0xff}, 32))},
		"other clause*": other, // valid for the other clause: accepted, harmless
	}
	for name, a := range bad {
		c, err := w.Finish(a)
		if name == "other clause*" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || c != nil {
			t.Errorf("%s: client accepted a coin", name)
		}
	}
	if _, err := w.Finish(good); err != nil {
		t.Fatalf("good answer: %v", err)
	}
	// Non-canonical commitments: y + p of a small-y point, the identity and
	// its sign-bit twin, and a point not on the curve.
	var y3 [32]byte
	y3[0] = 3
	notOnCurve := [32]byte{2}
	for _, r := range [][32]byte{[32]byte(atkPlusP(y3[:])), y3, [32]byte(identity.Bytes()), notOnCurve} {
		w, _ := NewWithdrawal(&f.seed, 601, f.ks, amount, [32]byte{})
		if _, _, err := w.Challenges(r0, r); !errors.Is(err, ErrBadKey) {
			t.Errorf("R1 = %x: %v", r, err)
		}
	}
	for _, e := range encodings(identity) {
		w, _ := NewWithdrawal(&f.seed, 602, f.ks, amount, [32]byte{})
		if _, _, err := w.Challenges([32]byte(e), r1); !errors.Is(err, ErrBadKey) {
			t.Errorf("R0 = %x: %v", e, err)
		}
	}
}

func atkPtr[T any](v T) *T { return &v }

// TestAttackRechallengeLinksCoin: a mint answers round one for a nonce,
// receives the challenges, then makes the client run round one again for the
// same nonce (a dropped connection, an error, a WithdrawBegin retry) and
// hands out different, perfectly valid commitments. The client re-derives
// the same α, β from (seed, nonce) and sends a second pair of challenges
// under them. With one coin the mint can test which withdrawal it came
// from: α and β from the answered session predict the other session's
// challenge exactly.
//
// The defence would be either to refuse a second round one for a nonce with
// other commitments, or to derive α, β from the commitments as well.
func TestAttackRechallengeLinksCoin(t *testing.T) {
	f := newFixture(t)
	const amount = 16
	signer, _ := f.sec.Signer(amount)
	key, _ := f.ks.Key(amount)
	A, _ := f.ks.point(amount)
	x := f.sec.x[amount]

	// Victim: counter 700. First attempt with honest commitments; the mint
	// records the challenges and fails the call.
	victim, _ := NewWithdrawal(&f.seed, 700, f.ks, amount, [32]byte{})
	r0, r1 := signer.Begin(victim.Nonce())
	c0, c1, err := victim.Challenges(r0, r1)
	if err != nil {
		t.Fatal(err)
	}
	first := [2][32]byte{c0, c1}
	// Second attempt: the wallet re-derives the withdrawal from its counter
	// and asks again; the mint now commits to r̃_j = r_j + 1.
	retry, _ := NewWithdrawal(&f.seed, 700, f.ks, amount, [32]byte{})
	rs0, rs1 := signer.rs(atkPtr(victim.Nonce()))
	one, _ := edwards25519.NewScalar().SetCanonicalBytes([]byte{1, 31: 0})
	rt := [2]*edwards25519.Scalar{edwards25519.NewScalar().Add(rs0, one), edwards25519.NewScalar().Add(rs1, one)}
	var rt0, rt1 [32]byte
	copy(rt0[:], new(edwards25519.Point).ScalarBaseMult(rt[0]).Bytes())
	copy(rt1[:], new(edwards25519.Point).ScalarBaseMult(rt[1]).Bytes())
	d0, d1, err := retry.Challenges(rt0, rt1)
	if err != nil {
		t.Logf("client refuses the second commitments: %v", err)
		return // defence holds
	}
	// The mint answers the second session (it knows r̃), and the victim
	// gets a good coin.
	row, _ := signer.Finish(t0.Add(time.Hour), retry.Nonce(), d0, d1)
	second := [2][32]byte{d0, d1}
	rs := [2][32]byte{r0, r1}
	db, _ := edwards25519.NewScalar().SetCanonicalBytes(second[row.B][:])
	s := edwards25519.NewScalar().MultiplyAdd(db, x, rt[row.B])
	victimCoin, err := retry.Finish(Answer{B: row.B, S: [32]byte(s.Bytes())})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's coin of the same denomination.
	otherCoin, _ := f.withdraw(t, 701, amount, [32]byte{})

	// The mint's test, for a deposited coin: from the answered session,
	// α = s' − s and β = c̃_b − H(R' || A || M); predict the first session's
	// challenge for clause b and compare.
	linked := func(c *Coin) bool {
		sp, _ := edwards25519.NewScalar().SetCanonicalBytes(c.Sig[32:])
		alpha := edwards25519.NewScalar().Subtract(sp, s)
		beta := edwards25519.NewScalar().Subtract(db, challenge(c.Sig[:32], key[:], c.Message()))
		Rb, _ := new(edwards25519.Point).SetBytes(rs[row.B][:])
		rp := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, A, alpha)
		rp.Add(rp, Rb)
		pred := challenge(rp.Bytes(), key[:], c.Message())
		pred.Add(pred, beta)
		return [32]byte(pred.Bytes()) == first[row.B]
	}
	if linked(victimCoin) != linked(otherCoin) {
		t.Errorf("a mint that re-answers round one with other commitments links the coin to its withdrawal: victim %v, other %v",
			linked(victimCoin), linked(otherCoin))
	}
}

// --- Leaking secrets ---

// atkLeaks reports whether out contains a rendering of (a window of) secret
// as fmt would print it. A secret scalar is also looked for in its internal
// representation, which fmt prints when it dereferences a *Scalar.
func atkLeaks(out string, secret []byte) bool {
	if sc, err := edwards25519.NewScalar().SetCanonicalBytes(secret); err == nil {
		limbs := strings.TrimPrefix(fmt.Sprint(*sc), "{[")
		if strings.Contains(out, limbs[:strings.IndexByte(limbs, ' ')]) {
			return true
		}
	}
	w := secret[:8]
	var dec, gox []string
	for _, b := range w {
		dec = append(dec, fmt.Sprint(b))
		gox = append(gox, fmt.Sprintf("%#x", b))
	}
	for _, r := range []string{
		strings.Join(dec, " "), strings.Join(gox, ", "),
		hex.EncodeToString(w), strings.ToUpper(hex.EncodeToString(w)), string(w),
	} {
		if strings.Contains(out, r) {
			return true
		}
	}
	return false
}

// TestAttackFormatLeaksSecrets prints every type that holds a secret with
// every common verb, as a careless log line would.
func TestAttackFormatLeaksSecrets(t *testing.T) {
	f := newFixture(t)
	signer, _ := f.sec.Signer(8)
	w, _ := NewWithdrawal(&f.seed, 800, f.ks, 8, [32]byte{})
	r0, r1 := signer.Begin(w.Nonce())
	c0, c1, _ := w.Challenges(r0, r1)
	row, _ := signer.Finish(t0.Add(time.Hour), w.Nonce(), c0, c1)
	secrets := map[string][]byte{
		"nonce key":     f.sec.nonceKey[:],
		"x":             f.sec.x[8].Bytes(),
		"coin key seed": w.coinKey.Seed(),
		"alpha0":        w.alpha[0].Bytes(),
		"beta1":         w.beta[1].Bytes(),
		"wallet seed":   f.seed[:],
	}
	r0s, _ := signer.rs(atkPtr(w.Nonce()))
	secrets["r0"] = r0s.Bytes()
	values := map[string]any{
		"*KeysetSecret": f.sec, "KeysetSecret": *f.sec,
		"*Signer": signer, "Signer": *signer,
		"*Withdrawal": w, "Withdrawal": *w,
		"Row": row, "Answer": row.Answer(),
	}
	for vn, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t"} {
			out := fmt.Sprintf(verb, v)
			for sn, s := range secrets {
				if atkLeaks(out, s) {
					t.Errorf("fmt %s of %s prints the %s", verb, vn, sn)
				}
			}
		}
	}
	// Errors never carry secrets either: corrupt a stored secret.
	b := f.sec.Bytes()
	b[len(b)-1] ^= 1
	_, err := ParseKeysetSecret(b, f.mint.Public().(ed25519.PublicKey))
	if err == nil {
		t.Fatal("corrupted secret accepted")
	}
	for sn, s := range secrets {
		if atkLeaks(err.Error(), s) {
			t.Errorf("error prints the %s", sn)
		}
	}
}

// --- Malformed input, windows, amounts ---

// atkKeysetBytes encodes and signs a keyset with arbitrary fields, bypassing
// GenerateKeyset's checks.
func atkKeysetBytes(t testing.TB, mint ed25519.PrivateKey, k *Keyset) []byte {
	t.Helper()
	enc, err := k.encodeUnsigned()
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(append([]byte(tagKeyset), enc...))
	return append(enc, ed25519.Sign(mint, keysetSigMessage(id))...)
}

// TestAttackKeysetParse feeds ParseKeyset signed keysets that are wrong in
// one way each, truncations at every length, and keysets signed by others.
func TestAttackKeysetParse(t *testing.T) {
	f := newFixture(t)
	T := torsion(t)
	pub := f.mint.Public().(ed25519.PublicKey)
	good := f.ks.Bytes()
	if k, err := ParseKeyset(good, pub); err != nil || !bytes.Equal(k.Bytes(), good) {
		t.Fatalf("good keyset: %v", err)
	}
	for n := range len(good) + 1 {
		if _, err := ParseKeyset(good[:n], pub); n < len(good) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := ParseKeyset(append(append([]byte(nil), good...), 0), pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	for _, mk := range []ed25519.PublicKey{nil, pub[:31], make(ed25519.PublicKey, 32)} {
		if _, err := ParseKeyset(good, mk); !errors.Is(err, ErrBadSignature) {
			t.Errorf("mint key %x: %v", mk, err)
		}
	}

	base := func() *Keyset {
		return &Keyset{Unit: "msat", MintKey: pub, NotBefore: 10, IssueUntil: 20, SpendUntil: 30, DepositUntil: 40,
			Denominations: append([]Denomination(nil), f.ks.Denominations[:3]...)}
	}
	A, _ := new(edwards25519.Point).SetBytes(f.ks.Denominations[0].Key[:])
	badKeys := map[string][32]byte{
		"identity":       [32]byte(identity.Bytes()),
		"order 2":        [32]byte(T[4].Bytes()),
		"order 8":        [32]byte(T[1].Bytes()),
		"A + T1":         [32]byte(new(edwards25519.Point).Add(A, T[1]).Bytes()),
		"A + T4":         [32]byte(new(edwards25519.Point).Add(A, T[4]).Bytes()),
		"y=3 (mixed)":    {3},
		"y=3 + p":        [32]byte(atkPlusP([]byte{3, 31: 0})),
		"not on curve":   {2},
		"identity, sign": [32]byte(encodings(identity)[len(encodings(identity))-1]),
	}
	for name, key := range badKeys {
		k := base()
		k.Denominations[1].Key = key
		if _, err := ParseKeyset(atkKeysetBytes(t, f.mint, k), pub); !errors.Is(err, ErrBadKey) {
			t.Errorf("key %s: %v", name, err)
		}
	}
	k := base()
	k.Denominations[2].Key = k.Denominations[0].Key
	if _, err := ParseKeyset(atkKeysetBytes(t, f.mint, k), pub); !errors.Is(err, ErrBadKey) {
		t.Errorf("repeated key: %v", err)
	}
	// Windows at the extremes: the largest times parse; wrapped ones do not.
	k = base()
	k.NotBefore, k.IssueUntil, k.SpendUntil, k.DepositUntil = 0, math.MaxInt64, math.MaxInt64, math.MaxInt64
	ok, err := ParseKeyset(atkKeysetBytes(t, f.mint, k), pub)
	if err != nil {
		t.Fatalf("max windows: %v", err)
	}
	if !ok.Open(WindowDeposit, time.Unix(math.MaxInt64-1, 0)) || ok.Open(WindowSpend, time.Unix(math.MaxInt64, 0)) || ok.Open(WindowSpend, time.Unix(-1, 0)) {
		t.Error("max windows: Open is wrong at the extremes")
	}
	enc, _ := base().encodeUnsigned()
	for _, tc := range []struct {
		name string
		off  int
		val  uint64
	}{
		{"not_before ≥ 2^63", 0, 1 << 63},
		{"issue_until wraps", 8, math.MaxUint64},
		{"issue_until = not_before", 8, 10},
		{"spend < issue", 16, 19},
		{"deposit < spend", 24, 29},
	} {
		b := append([]byte(nil), enc...)
		binary.BigEndian.PutUint64(b[2+4+32+tc.off:], tc.val)
		id := sha256.Sum256(append([]byte(tagKeyset), b...))
		b = append(b, ed25519.Sign(f.mint, keysetSigMessage(id))...)
		if _, err := ParseKeyset(b, pub); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Signed by another key, naming it or naming the trusted key.
	_, evil, _ := ed25519.GenerateKey(testRand(9))
	k = base()
	if _, err := ParseKeyset(atkKeysetBytes(t, evil, k), pub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by another key: %v", err)
	}
	k.MintKey = evil.Public().(ed25519.PublicKey)
	if _, err := ParseKeyset(atkKeysetBytes(t, evil, k), pub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("naming another key: %v", err)
	}
	// Keyset signature with S + L.
	b := append([]byte(nil), good...)
	copy(b[len(b)-32:], atkAddL(good[len(good)-32:]))
	if _, err := ParseKeyset(b, pub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("keyset signature S + L: %v", err)
	}
}

// TestAttackKeysetSecretParse feeds ParseKeysetSecret truncations, wrong and
// non-canonical scalars and trailing bytes.
func TestAttackKeysetSecretParse(t *testing.T) {
	f := newFixture(t)
	pub := f.mint.Public().(ed25519.PublicKey)
	good := f.sec.Bytes()
	if _, err := ParseKeysetSecret(good, pub); err != nil {
		t.Fatal(err)
	}
	for n := range len(good) {
		if _, err := ParseKeysetSecret(good[:n], pub); err == nil {
			t.Fatalf("truncated to %d: accepted", n)
		}
	}
	if _, err := ParseKeysetSecret(append(append([]byte(nil), good...), 0), pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	b := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(b, 0xffff)
	if _, err := ParseKeysetSecret(b, pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("huge length: %v", err)
	}
	last := len(good) - 32
	b = append([]byte(nil), good...)
	copy(b[last:], atkAddL(good[last:]))
	if _, err := ParseKeysetSecret(b, pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("x + L: %v", err)
	}
	b = append([]byte(nil), good...)
	copy(b[last:], good[last-32:last]) // another denomination's scalar
	if _, err := ParseKeysetSecret(b, pub); !errors.Is(err, ErrBadKey) {
		t.Errorf("swapped scalars: %v", err)
	}
}

// TestAttackWindows checks the half-open windows at their boundaries and at
// extreme times, through the verifier.
func TestAttackWindows(t *testing.T) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("w"))
	s, _ := f.atkSpend(t, 900, 1, [32]byte{}, f.server, d)
	nb := time.Unix(f.ks.NotBefore, 0)
	until := map[Window]time.Time{
		WindowIssue:   time.Unix(f.ks.IssueUntil, 0),
		WindowSpend:   time.Unix(f.ks.SpendUntil, 0),
		WindowDeposit: time.Unix(f.ks.DepositUntil, 0),
	}
	for w, end := range until {
		v := &Verifier{Keysets: f.keysets, Server: f.server, Window: w}
		for _, tc := range []struct {
			at   time.Time
			open bool
		}{
			{nb.Add(-time.Nanosecond), false}, {nb, true}, {end.Add(-time.Nanosecond), true}, {end, false},
			{time.Time{}, false}, {time.Unix(-1<<62, 0), false}, {time.Unix(math.MaxInt64, 0), false},
			{time.Unix(math.MinInt64, 0), false}, {time.Unix(1<<62, 0), false},
		} {
			err := v.VerifySpend(s, d, tc.at)
			if tc.open != (err == nil) || (!tc.open && !errors.Is(err, ErrOutsideWindow)) {
				t.Errorf("%s window at %d: %v", w, tc.at.Unix(), err)
			}
		}
	}
	v := &Verifier{Keysets: f.keysets, Server: f.server, Window: Window(7)}
	if err := v.VerifySpend(s, d, atkNow); !errors.Is(err, ErrOutsideWindow) {
		t.Errorf("unknown window: %v", err)
	}
}

// TestAttackZeroValues calls the API with zero values and odd inputs; none
// may panic or accept.
func TestAttackZeroValues(t *testing.T) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("z"))
	s, _ := f.atkSpend(t, 910, 1, [32]byte{}, f.server, d)
	noPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panics: %v", name, r)
			}
		}()
		fn()
	}
	noPanic("zero Verifier", func() {
		var v Verifier
		if err := v.VerifySpend(s, d, atkNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("zero Verifier: %v", err)
		}
		if err := v.VerifyBatch([]Item{{s, d}}, atkNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("zero Verifier batch: %v", err)
		}
	})
	noPanic("nil KeysetMap", func() {
		v := &Verifier{Keysets: KeysetMap(nil), Server: f.server}
		if err := v.VerifySpend(s, d, atkNow); !errors.Is(err, ErrUnknownKeyset) {
			t.Errorf("nil KeysetMap: %v", err)
		}
	})
	noPanic("zero Spend", func() {
		v := f.verifier()
		if err := v.VerifySpend(&Spend{}, d, atkNow); !errors.Is(err, ErrUnknownKeyset) {
			t.Errorf("zero Spend: %v", err)
		}
		if err := v.VerifyCoin(&Coin{}, atkNow); !errors.Is(err, ErrUnknownKeyset) {
			t.Errorf("zero Coin: %v", err)
		}
	})
	noPanic("empty batch", func() {
		if err := f.verifier().VerifyBatch(nil, atkNow); err != nil {
			t.Errorf("empty batch: %v", err)
		}
	})
	noPanic("zero Keyset in the map", func() {
		// A hand-built Keyset is never checked; it must still fail safe.
		m := KeysetMap{}
		m[[32]byte{}] = &Keyset{}
		m[f.ks.ID()] = &Keyset{NotBefore: 0, IssueUntil: math.MaxInt64, SpendUntil: math.MaxInt64, DepositUntil: math.MaxInt64}
		v := &Verifier{Keysets: m, Server: f.server}
		if err := v.VerifySpend(&Spend{}, d, atkNow); err == nil {
			t.Error("zero keyset accepted")
		}
		if err := v.VerifySpend(s, d, atkNow); err == nil {
			t.Error("hand-built keyset accepted")
		}
	})
	noPanic("parsers", func() {
		for n := range SpendSize + 2 {
			b := bytes.Repeat([]byte{0xff}, n)
			ParseCoin(b)
			ParseSpend(b)
			ParseKeyset(b, nil)
			ParseKeysetSecret(b, nil)
			clear(b)
			ParseCoin(b)
			ParseSpend(b)
			ParseKeyset(b, nil)
			ParseKeysetSecret(b, nil)
		}
		ParseCoin(nil)
		ParseSpend(nil)
		ParseKeyset(nil, nil)
		ParseKeysetSecret(nil, nil)
	})
	noPanic("withdrawal", func() {
		w, err := NewWithdrawal(&f.seed, 0, f.ks, 3, [32]byte{})
		if !errors.Is(err, ErrAmount) || w != nil {
			t.Errorf("amount 3: %v", err)
		}
		w, _ = NewWithdrawal(&f.seed, math.MaxUint64, f.ks, 1, [32]byte{})
		if _, err := w.Finish(Answer{B: 1}); !errors.Is(err, ErrMalformed) {
			t.Errorf("Finish before Challenges: %v", err)
		}
		if _, _, err := w.Challenges([32]byte{}, [32]byte{}); !errors.Is(err, ErrBadKey) {
			t.Errorf("zero commitments: %v", err)
		}
		if _, err := w.Finish(Answer{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("Finish after refused Challenges: %v", err)
		}
		if _, err := f.sec.Signer(3); !errors.Is(err, ErrAmount) {
			t.Errorf("Signer(3): %v", err)
		}
	})
	noPanic("NewSpend with a wrong key", func() {
		_, other := f.withdraw(t, 911, 1, [32]byte{})
		if _, err := NewSpend(&s.Coin, other, f.server, d); !errors.Is(err, ErrBadKey) {
			t.Errorf("wrong key: %v", err)
		}
	})
	noPanic("BatchError", func() {
		var be BatchError
		_ = be.Error()
		_ = be.Unwrap()
		_ = be.Failed()
	})
}

// TestAttackAmounts tries overflow in Decompose and Select.
func TestAttackAmounts(t *testing.T) {
	parts := Decompose(math.MaxUint64)
	var sum uint64
	for _, p := range parts {
		sum += p
	}
	if len(parts) != 64 || sum != math.MaxUint64 {
		t.Errorf("Decompose(max) = %d parts summing to %d", len(parts), sum)
	}
	if len(Decompose(0)) != 0 {
		t.Error("Decompose(0) is not empty")
	}
	big := uint64(1) << 63
	for _, tc := range []struct {
		amounts []uint64
		price   uint64
		want    error
		sum     uint64
	}{
		{nil, 0, nil, 0},
		{nil, 1, ErrNoExactChange, 0},
		{[]uint64{big, big}, math.MaxUint64, ErrNoExactChange, 0},
		{[]uint64{big, big, 1}, 1, nil, 1},
		{[]uint64{big, big, 1}, big + 1, nil, big + 1},
		{[]uint64{big, big}, 0, nil, 0}, // sum 2^64 wraps to 0, but nothing is picked
		{[]uint64{0}, 0, ErrMalformed, 0},
		{[]uint64{big + 1}, 1, ErrMalformed, 0},
		{[]uint64{math.MaxUint64}, math.MaxUint64, ErrMalformed, 0},
	} {
		idx, err := Select(tc.amounts, tc.price)
		if tc.want != nil {
			if !errors.Is(err, tc.want) {
				t.Errorf("Select(%v, %d): %v, want %v", tc.amounts, tc.price, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%v, %d): %v", tc.amounts, tc.price, err)
			continue
		}
		var got uint64
		for _, i := range idx {
			got += tc.amounts[i]
		}
		if got != tc.sum || (tc.price == 0 && len(idx) != 0) {
			t.Errorf("Select(%v, %d) = %v", tc.amounts, tc.price, idx)
		}
	}
}

// --- Fuzzers ---

// atkFuzzSetup builds spends once per fuzzer: a bearer and a designated
// coin, and good items to batch them with.
func atkFuzzSetup(t testing.TB) (*fixture, *Verifier, [][]byte, [32]byte, []Item) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("fuzz"))
	s1, _ := f.atkSpend(t, 1000, 8, [32]byte{}, f.server, d)
	s2, _ := f.atkSpend(t, 1001, 8, Designation(f.server), f.server, d)
	s3, _ := f.atkSpend(t, 1002, 1, [32]byte{}, f.server, d)
	return f, f.verifier(), [][]byte{s1.Bytes(), s2.Bytes()}, d, []Item{{s3, d}, {s3, d}}
}

// FuzzAttackSpendMutation patches valid spends with the fuzz input. Single
// and batch verification must agree (same items, same errors), and a
// mutated spend that verifies must be the same coin: same coin_pub, keyset,
// amount and designation.
func FuzzAttackSpendMutation(f *testing.F) {
	_, v, spends, d, good := atkFuzzSetup(f)
	f.Add(byte(0), []byte{})
	f.Add(byte(1), []byte{40, 0x80})
	f.Add(byte(0), []byte{170, 1, 200, 0x80})
	for off := 0; off < SpendSize; off += 8 {
		f.Add(byte(off), []byte{byte(off), 1, byte(off + 3), 0x20})
	}
	f.Fuzz(func(t *testing.T, which byte, patch []byte) {
		base := spends[int(which)%len(spends)]
		b := append([]byte(nil), base...)
		for i := 0; i+1 < len(patch) && i < 32; i += 2 {
			pos := int(patch[i])
			if which&0x80 != 0 {
				pos += 256 // reach the tail of the 264-byte spend
			}
			b[pos%SpendSize] ^= patch[i+1]
		}
		s, err := ParseSpend(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSpend: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatal("ParseSpend does not round-trip")
		}
		if err := atkVerifyBoth(t, v, s, d, atkNow, good); err == nil {
			orig, _ := ParseSpend(base)
			if s.Pub != orig.Pub || s.KeysetID != orig.KeysetID || s.Amount != orig.Amount || s.Designated != orig.Designated {
				t.Fatalf("mutated spend verifies as another coin: %x", b)
			}
		}
	})
}

// FuzzAttackParse feeds arbitrary bytes to every parser: no panics, and
// what parses re-encodes to the same bytes.
func FuzzAttackParse(f *testing.F) {
	fx := newFixture(f)
	pub := fx.mint.Public().(ed25519.PublicKey)
	f.Add(fx.ks.Bytes())
	f.Add(fx.sec.Bytes())
	c, key := fx.withdraw(f, 1, 8, [32]byte{})
	f.Add(c.Bytes())
	s, _ := NewSpend(c, key, fx.server, [32]byte{})
	f.Add(s.Bytes())
	v := fx.verifier()
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseKeyset(b, pub); err == nil && !bytes.Equal(k.Bytes(), b) {
			t.Fatal("keyset does not round-trip")
		}
		if sec, err := ParseKeysetSecret(b, pub); err == nil && !bytes.Equal(sec.Bytes(), b) {
			t.Fatal("keyset secret does not round-trip")
		}
		if c, err := ParseCoin(b); err == nil {
			if !bytes.Equal(c.Bytes(), b) {
				t.Fatal("coin does not round-trip")
			}
			v.VerifyCoin(c, atkNow)
		}
		if s, err := ParseSpend(b); err == nil {
			if !bytes.Equal(s.Bytes(), b) {
				t.Fatal("spend does not round-trip")
			}
			single := v.VerifySpend(s, [32]byte{}, atkNow)
			batch := v.VerifyBatch([]Item{{s, [32]byte{}}}, atkNow)
			if (single == nil) != (batch == nil) {
				t.Fatalf("single %v, batch %v", single, batch)
			}
		}
	})
}
