package wallet

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
)

// TestRecoup: the wallet lists unspent and bound coins of a keyset, its
// proofs match the mint's rows, its spends are for the mint, designated
// coins included, and coins that reached a server are not recouped. The
// recoup code depends on the seed alone.
func TestRecoup(t *testing.T) {
	ctx := context.Background()
	w, m, _ := newTest(t)
	server := []byte("server-peer")
	bearer := m.withdraw(t, w, [32]byte{}, 1, 2, 4)
	designated := m.withdraw(t, w, coin.Designation(server), 8)
	spent := m.withdraw(t, w, [32]byte{}, 16)

	// 16 pays a server that kept it; 4 was refused by a server (bound).
	d := sha256.Sum256([]byte("paid"))
	_, err := w.Reserve(ctx, server, []byte("req-1"), d, 16)
	require.NoError(t, err)
	require.NoError(t, w.Settle(ctx, []byte("req-1"), true))
	_, err = w.Reserve(ctx, []byte("other-server"), []byte("req-2"), d, 4)
	require.NoError(t, err)
	require.NoError(t, w.Settle(ctx, []byte("req-2"), false))

	rc, err := w.Recoupable(ctx, m.ks.ID())
	require.NoError(t, err)
	got := map[[32]byte]bool{}
	for _, c := range rc {
		got[c.Coin.Pub] = true
	}
	for _, c := range append(bearer, designated...) {
		require.True(t, got[c.Pub], "coin of %d recoupable", c.Amount)
	}
	require.False(t, got[spent[0].Pub], "a coin a server kept is not recoupable")
	require.Len(t, rc, 4)

	// Each proof matches the row the mint stored.
	pubs := make([][32]byte, len(rc))
	for i, c := range rc {
		pubs[i] = c.Coin.Pub
		signer, err := m.sec.Signer(c.Coin.Amount)
		require.NoError(t, err)
		r0, r1 := signer.Begin(c.Nonce)
		p, h, err := w.RecoupProof(&c.Coin, c.Nonce, r0, r1)
		require.NoError(t, err)
		mh, err := signer.RecoupHash(&c.Coin, &p)
		require.NoError(t, err)
		require.Equal(t, h, mh)
	}

	digest := sha256.Sum256([]byte("recoup"))
	spends, err := w.ReserveRecoup(ctx, []byte("recoup-1"), digest, pubs)
	require.NoError(t, err)
	v := &coin.Verifier{Keysets: coin.KeysetMap{m.ks.ID(): m.ks}, Server: m.peer, Window: coin.WindowDeposit, AnyDesignation: true}
	for _, s := range spends {
		require.NoError(t, v.VerifySpend(s, digest, t0))
	}
	again, err := w.ReserveRecoup(ctx, []byte("recoup-1"), digest, pubs)
	require.NoError(t, err, "a retry gets the same spends")
	require.Equal(t, len(spends), len(again))
	_, err = w.ReserveRecoup(ctx, []byte("recoup-2"), digest, pubs)
	require.ErrorIs(t, err, ErrUnavailable, "coins in a recoup are not recouped twice")
	_, err = w.ReserveRecoup(ctx, []byte("recoup-3"), digest, [][32]byte{spent[0].Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	require.NoError(t, w.Settle(ctx, []byte("recoup-1"), true))
	rc, err = w.Recoupable(ctx, m.ks.ID())
	require.NoError(t, err)
	require.Empty(t, rc)

	// The code is the seed's: a wallet restored from the phrase has it.
	w2, err := Restore(filepath.Join(t.TempDir(), "w2.db"), w.Export(), m.info())
	require.NoError(t, err)
	defer w2.Close()
	require.Equal(t, w.RecoupCode(), w2.RecoupCode())
	require.Len(t, w.RecoupCode(), 32)
	w3, _, _ := newTest(t)
	require.NotEqual(t, w.RecoupCode(), w3.RecoupCode())
}
