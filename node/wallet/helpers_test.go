package wallet

import (
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
)

// t0 is the test clock's start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testMint is an in-process mint: one keyset of denominations 1..128.
type testMint struct {
	priv ed25519.PrivateKey
	ks   *coin.Keyset
	sec  *coin.KeysetSecret
	peer []byte
}

func newTestMint(t testing.TB, seed byte) *testMint {
	t.Helper()
	rnd := rand.NewChaCha8([32]byte{seed})
	_, priv, err := ed25519.GenerateKey(rnd)
	require.NoError(t, err)
	ks, sec, err := coin.GenerateKeyset(rnd, priv, coin.KeysetParams{
		Unit:         "msat",
		Exponents:    []uint8{0, 1, 2, 3, 4, 5, 6, 7},
		NotBefore:    t0.Add(-time.Hour),
		IssueUntil:   t0.Add(24 * time.Hour),
		SpendUntil:   t0.Add(48 * time.Hour),
		DepositUntil: t0.Add(72 * time.Hour),
	})
	require.NoError(t, err)
	return &testMint{priv: priv, ks: ks, sec: sec, peer: []byte("mint-peer")}
}

func (m *testMint) info() Mint {
	return Mint{Key: m.priv.Public().(ed25519.PublicKey), Peer: m.peer}
}

// answer runs the mint's two rounds for wd through the wallet.
func (m *testMint) answer(t testing.TB, w *Wallet, wd *Withdrawal) coin.Answer {
	t.Helper()
	signer, err := m.sec.Signer(wd.Amount)
	require.NoError(t, err)
	r0, r1 := signer.Begin(wd.Nonce())
	c0, c1, err := w.Challenges(context.Background(), wd, r0, r1)
	require.NoError(t, err)
	row, err := signer.Finish(t0, wd.Nonce(), c0, c1)
	require.NoError(t, err)
	return row.Answer()
}

// withdraw withdraws one coin per amount with the given designation.
func (m *testMint) withdraw(t testing.TB, w *Wallet, designated [32]byte, amounts ...uint64) []*coin.Coin {
	t.Helper()
	ctx := context.Background()
	wds, err := w.NextWithdrawals(ctx, m.ks, amounts, designated)
	require.NoError(t, err)
	out := make([]*coin.Coin, len(wds))
	for i, wd := range wds {
		out[i], err = w.FinishWithdrawal(ctx, wd, m.answer(t, w, wd))
		require.NoError(t, err)
	}
	return out
}

// verifier returns a verifier as server would run it.
func (m *testMint) verifier(server []byte) *coin.Verifier {
	return &coin.Verifier{Keysets: coin.KeysetMap{m.ks.ID(): m.ks}, Server: server, Window: coin.WindowSpend}
}

func openTest(t testing.TB, m *testMint, path string, c *clock) *Wallet {
	t.Helper()
	w, err := Open(path, m.info(), WithClock(c.now))
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return w
}

func newTest(t testing.TB) (*Wallet, *testMint, *clock) {
	t.Helper()
	m := newTestMint(t, 1)
	c := &clock{t: t0}
	return openTest(t, m, filepath.Join(t.TempDir(), "wallet.db"), c), m, c
}
