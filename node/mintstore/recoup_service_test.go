package mintstore

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestServiceRecoup: over real hosts, the holder of coins of a revoked
// keyset proves them issued (coin.RecoupProof, with the commitments from
// Restore), gets their value on a voucher code of its own, and withdraws
// fresh coins with it. A retry is credited once; a coin deposited before
// is a double spend with evidence; a proof from another seed, a coin of a
// keyset that is not revoked, and a spend made for another peer are
// refused; and the mint's restart changes none of it.
func TestServiceRecoup(t *testing.T) {
	for _, tr := range []struct{ name, addr string }{
		{"tcp", "/ip4/127.0.0.1/tcp/0"},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testServiceRecoup(t, tr.addr)
		})
	}
}

func testServiceRecoup(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := startMint(t, addr)
	mc, _ := m.client(t)
	ks := m.active()
	w := &wallet{seed: [32]byte{'r', 'e', 'c', 'o', 'u', 'p'}}
	srvClient, srvHost := m.client(t)

	// Five coins: three bearer, one designated to the server, one the
	// server is paid with and deposits before the revocation.
	des := coin.Designation([]byte(srvHost.ID()))
	ws := append(w.withdrawals(t, ks, [32]byte{}, 8, 4, 2), w.withdrawals(t, ks, des, 16)...)
	ws = append(ws, w.withdrawals(t, ks, [32]byte{}, 32)...)
	code := m.voucher(62)
	answers, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), challenges(ctx, t, mc, ks, ws))
	require.NoError(t, err)
	coins := finish(t, ws, answers)
	paid := [32]byte{'p', 'a', 'i', 'd'}
	res, err := srvClient.Deposit(ctx, []coin.Item{{Spend: spendFor(t, coins[4], ws[4], srvHost.ID(), paid), Digest: paid}})
	require.NoError(t, err)
	require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, res[0].Status)

	// Before the revocation a recoup is refused coin by coin.
	proofs := func(seed [32]byte, idx ...int) []coin.RecoupProof {
		nonces := make([][32]byte, len(idx))
		for i, j := range idx {
			nonces[i] = ws[j].Nonce()
		}
		rows, err := mc.Restore(ctx, nonces)
		require.NoError(t, err)
		require.Len(t, rows, len(idx))
		out := make([]coin.RecoupProof, len(idx))
		for i, j := range idx {
			p, h, err := coin.NewRecoupProof(&seed, ks, coins[j], rows[i].Nonce, rows[i].Commitments.R0, rows[i].Commitments.R1)
			require.NoError(t, err)
			if seed == w.seed {
				require.Equal(t, rows[i].ChallengeHash, h, "the wallet's proof matches the stored row")
			}
			out[i] = p
		}
		return out
	}
	mintID := m.host.ID()
	recoup := func(id byte, funding string, ps []coin.RecoupProof, signFor peer.ID, idx ...int) []protocol.DepositResult {
		t.Helper()
		body, err := protocol.RecoupBody([protocol.RequestIDSize]byte{id}, []byte(funding), ps)
		require.NoError(t, err)
		digest := protocol.RequestDigest(protocol.MintID, body)
		spends := make([]*coin.Spend, len(idx))
		for i, j := range idx {
			spends[i] = spendFor(t, coins[j], ws[j], signFor, digest)
		}
		out, err := mc.Recoup(ctx, body, spends)
		require.NoError(t, err)
		return out
	}
	statuses := func(rs []protocol.DepositResult) []pb.DepositStatus {
		var out []pb.DepositStatus
		for _, r := range rs {
			out = append(out, r.Status)
		}
		return out
	}
	const (
		credited = pb.DepositStatus_DEPOSIT_CREDITED
		already  = pb.DepositStatus_DEPOSIT_ALREADY_CREDITED
		double   = pb.DepositStatus_DEPOSIT_DOUBLE_SPENT
		invalid  = pb.DepositStatus_DEPOSIT_INVALID
	)
	mine := "recouped-coins-of-a-test-wallet"
	require.Equal(t, []pb.DepositStatus{invalid}, statuses(recoup(1, mine, proofs(w.seed, 0), mintID, 0)),
		"a keyset that is not revoked is not recouped")

	require.NoError(t, m.keys.Revoke(ctx, ks.ID()))
	_, err = m.keys.Rotate(ctx, testPolicy)
	require.NoError(t, err)

	// A proof made from another seed, and a spend signed for another
	// peer, are refused; nothing is credited.
	other := w.seed
	other[0] ^= 1
	require.Equal(t, []pb.DepositStatus{invalid}, statuses(recoup(2, mine, proofs(other, 0), mintID, 0)))
	require.Equal(t, []pb.DepositStatus{invalid}, statuses(recoup(3, mine, proofs(w.seed, 0), srvHost.ID(), 0)))
	_, err = m.funding.Voucher(ctx, mine)
	require.ErrorIs(t, err, protocol.ErrUnknownFunding)

	// The unspent coins, bearer and designated, are credited; the
	// deposited one is a double spend with the server's spend as evidence.
	all := []int{0, 1, 2, 3, 4}
	ps := proofs(w.seed, all...)
	got := recoup(4, mine, ps, mintID, all...)
	require.Equal(t, []pb.DepositStatus{credited, credited, credited, credited, double}, statuses(got))
	require.Equal(t, srvHost.ID(), got[4].Conflict.Server)
	require.Equal(t, paid, got[4].Conflict.Digest)
	require.Equal(t, uint64(30), m.remaining(mine))

	// A retry, also after a restart, is credited once.
	m.restart()
	mc, _ = m.client(t)
	got = recoup(4, mine, ps, mintID, all...)
	require.Equal(t, []pb.DepositStatus{already, already, already, already, double}, statuses(got))
	require.Equal(t, uint64(30), m.remaining(mine))
	// The same coins in another request: spent, to the mint.
	got = recoup(5, mine, ps[:1], mintID, 0)
	require.Equal(t, []pb.DepositStatus{double}, statuses(got))
	require.Equal(t, mintID, got[0].Conflict.Server)

	// The voucher pays for fresh coins of the new keyset.
	ks2 := m.active()
	require.NotEqual(t, ks.ID(), ks2.ID())
	ws2 := w.withdrawals(t, ks2, [32]byte{}, 16, 8, 4, 2)
	answers, err = mc.WithdrawFinish(ctx, ks2.ID(), []byte(mine), challenges(ctx, t, mc, ks2, ws2))
	require.NoError(t, err)
	finish(t, ws2, answers)
	require.Zero(t, m.remaining(mine))

	// A coin of the new keyset is not recoupable.
	code2 := m.voucher(1)
	ws3 := w.withdrawals(t, ks2, [32]byte{}, 1)
	answers, err = mc.WithdrawFinish(ctx, ks2.ID(), []byte(code2), challenges(ctx, t, mc, ks2, ws3))
	require.NoError(t, err)
	c3 := finish(t, ws3, answers)[0]
	rows, err := mc.Restore(ctx, [][32]byte{ws3[0].Nonce()})
	require.NoError(t, err)
	p3, _, err := coin.NewRecoupProof(&w.seed, ks2, c3, rows[0].Nonce, rows[0].Commitments.R0, rows[0].Commitments.R1)
	require.NoError(t, err)
	body, err := protocol.RecoupBody([protocol.RequestIDSize]byte{6}, []byte(mine), []coin.RecoupProof{p3})
	require.NoError(t, err)
	d := protocol.RequestDigest(protocol.MintID, body)
	out, err := mc.Recoup(ctx, body, []*coin.Spend{spendFor(t, c3, ws3[0], mintID, d)})
	require.NoError(t, err)
	require.Equal(t, invalid, out[0].Status)

	// Malformed calls are refused whole.
	body, err = protocol.RecoupBody([protocol.RequestIDSize]byte{7}, []byte(mine), ps[:2])
	require.NoError(t, err)
	d = protocol.RequestDigest(protocol.MintID, body)
	_, err = mc.Recoup(ctx, body, []*coin.Spend{spendFor(t, coins[0], ws[0], mintID, d)})
	require.Error(t, err, "two proofs, one spend")
	var junk [16]byte
	rand.Read(junk[:])
	body, err = protocol.RecoupBody([protocol.RequestIDSize]byte{8}, junk[:3], ps[:1])
	require.NoError(t, err)
	d = protocol.RequestDigest(protocol.MintID, body)
	_, err = mc.Recoup(ctx, body, []*coin.Spend{spendFor(t, coins[0], ws[0], mintID, d)})
	require.ErrorIs(t, err, protocol.ErrBadRequest, "a funding proof that is not a voucher code")
	require.NoError(t, m.store.Check(ctx))
}
