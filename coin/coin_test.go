package coin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

// testRand returns a deterministic reader for reproducible tests.
func testRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

type fixture struct {
	mint    ed25519.PrivateKey
	ks      *Keyset
	sec     *KeysetSecret
	keysets KeysetMap
	seed    [32]byte
	server  []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := testRand(1)
	_, mint, err := ed25519.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	ks, sec, err := GenerateKeyset(r, mint, KeysetParams{
		Unit:         "msat",
		Exponents:    []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		NotBefore:    t0,
		IssueUntil:   t0.Add(30 * 24 * time.Hour),
		SpendUntil:   t0.Add(60 * 24 * time.Hour),
		DepositUntil: t0.Add(90 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{mint: mint, ks: ks, sec: sec, keysets: KeysetMap{}, server: []byte("server-A-peer-id")}
	f.keysets.Add(ks)
	io.ReadFull(r, f.seed[:])
	return f
}

// withdraw runs both rounds for one coin.
func (f *fixture) withdraw(t testing.TB, i uint64, amount uint64, designated [32]byte) (*Coin, ed25519.PrivateKey) {
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
	return c, w.CoinKey()
}

func (f *fixture) verifier() *Verifier {
	return &Verifier{Keysets: f.keysets, Server: f.server, Window: WindowSpend}
}

func TestWithdrawSpendVerify(t *testing.T) {
	f := newFixture(t)
	c, key := f.withdraw(t, 0, 8, [32]byte{})
	if k8, _ := f.ks.Key(8); !ed25519.Verify(k8[:], c.Message(), c.Sig[:]) {
		t.Fatal("stdlib rejects coin")
	}
	digest := sha256.Sum256([]byte("request"))
	s, err := NewSpend(c, key, f.server, digest)
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifier()
	if err := v.VerifySpend(s, digest, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyBatch([]Item{{s, digest}}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("other request"))
	if err := v.VerifySpend(s, other, t0.Add(time.Hour)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other request: %v", err)
	}
	err = v.VerifyBatch([]Item{{s, digest}, {s, other}}, t0.Add(time.Hour))
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed()) != 1 || be.Failed()[0] != 1 || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("batch: %v", err)
	}
}

// TestSelectExact checks the greedy selector against exhaustive search on
// every small multiset of power-of-two coins.
func TestSelectExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := r.IntN(8)
		amounts := make([]uint64, n)
		for i := range amounts {
			amounts[i] = 1 << r.IntN(5)
		}
		price := uint64(r.IntN(40))
		possible := false
		for mask := 0; mask < 1<<n; mask++ {
			var sum uint64
			for i := range n {
				if mask&(1<<i) != 0 {
					sum += amounts[i]
				}
			}
			possible = possible || sum == price
		}
		idx, err := Select(amounts, price)
		if !possible {
			if !errors.Is(err, ErrNoExactChange) {
				t.Fatalf("%v price %d: got %v, want ErrNoExactChange", amounts, price, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v price %d: %v", amounts, price, err)
		}
		var sum uint64
		seen := map[int]bool{}
		for _, i := range idx {
			if seen[i] {
				t.Fatalf("index %d twice", i)
			}
			seen[i] = true
			sum += amounts[i]
		}
		if sum != price {
			t.Fatalf("%v price %d: picked %v summing to %d", amounts, price, idx, sum)
		}
	}
	if _, err := Select([]uint64{3}, 3); !errors.Is(err, ErrMalformed) {
		t.Fatalf("amount 3: %v", err)
	}
}
