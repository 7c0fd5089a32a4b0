package coin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

// benchSpends withdraws n coins and spends them at the fixture's server:
// half under the 2^3 key, the rest spread over the other denominations.
func benchSpends(b *testing.B, f *fixture, n int) []Item {
	b.Helper()
	amounts := f.ks.Amounts()
	items := make([]Item, n)
	for i := range items {
		amount := uint64(8)
		if i%2 == 1 {
			amount = amounts[i%len(amounts)]
		}
		c, key := f.withdraw(b, uint64(i), amount, [32]byte{})
		digest := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		s, err := NewSpend(c, key, f.server, digest)
		if err != nil {
			b.Fatal(err)
		}
		items[i] = Item{Spend: s, Digest: digest}
	}
	return items
}

// BenchmarkStdlibVerify is the baseline: one crypto/ed25519.Verify.
func BenchmarkStdlibVerify(b *testing.B) {
	f := newFixture(b)
	c, _ := f.withdraw(b, 0, 8, [32]byte{})
	key, _ := f.ks.Key(8)
	msg := c.Message()
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(key[:], msg, c.Sig[:]) {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkVerifySpend measures one spend (mint signature, spend signature
// and every other check) per op, alone and in batches of 64 in which half
// the mint signatures are under one denomination key.
func BenchmarkVerifySpend(b *testing.B) {
	f := newFixture(b)
	items := benchSpends(b, f, 64)
	v := f.verifier()
	now := t0.Add(time.Hour)
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			it := items[i%len(items)]
			if err := v.VerifySpend(it.Spend, it.Digest, now); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("batch64", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i += len(items) {
			if err := v.VerifyBatch(items, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIssue measures one coin's issuance per op: the mint's Begin and
// Finish, and the client's NewWithdrawal, Challenges and Finish.
func BenchmarkIssue(b *testing.B) {
	f := newFixture(b)
	signer, _ := f.sec.Signer(8)
	const n = 256
	ws := make([]*Withdrawal, n)
	cs := make([][2][32]byte, n)
	rows := make([]Row, n)
	rs := make([][2][32]byte, n)
	for i := range ws {
		ws[i], _ = NewWithdrawal(&f.seed, uint64(i), f.ks, 8, [32]byte{})
		rs[i][0], rs[i][1] = signer.Begin(ws[i].Nonce())
		cs[i][0], cs[i][1], _ = ws[i].Challenges(rs[i][0], rs[i][1])
		rows[i], _ = signer.Finish(t0.Add(time.Hour), ws[i].Nonce(), cs[i][0], cs[i][1])
	}
	b.Run("mint", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w := ws[i%n]
			signer.Begin(w.Nonce())
			if _, err := signer.Finish(t0.Add(time.Hour), w.Nonce(), cs[i%n][0], cs[i%n][1]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w, _ := NewWithdrawal(&f.seed, uint64(i%n), f.ks, 8, [32]byte{})
			if _, _, err := w.Challenges(rs[i%n][0], rs[i%n][1]); err != nil {
				b.Fatal(err)
			}
			if _, err := w.Finish(rows[i%n].Answer()); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
