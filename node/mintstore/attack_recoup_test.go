package mintstore

// Attacks on Store.Recoup by a second reviewer. Each test states the
// defence and asserts that it holds.

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestAttackRecoupDepositSwapRace: the holder of a coin of a revoked
// keyset recoups it, swaps it and pays a server with it, all at once (the
// server's deposit and the swap verified just before the revocation),
// many times over. The coin is taken once: one recoup, one swap or one
// deposit, and the value credited anywhere is the coin's value.
//
// HOLDS: every path checks and adds the coin_pub to the spent set in one
// bbolt write transaction.
func TestAttackRecoupDepositSwapRace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	sec := secretOf(t, s, ks.ID())
	is := newIssuer(t, s)
	x := is.withdraw(sec, t0, 8, false)
	ks2, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	sec2 := secretOf(t, s, ks2.ID())
	require.NoError(t, k.Revoke(ctx, ks.ID()))
	mint := peer.ID("mint")

	const n = 6
	var wg sync.WaitGroup
	start := make(chan struct{})
	recoups := make([][]protocol.DepositOutcome, n)
	deposits := make([][]protocol.DepositOutcome, n)
	swaps := make([]protocol.SwapOutcome, n)
	errs := make([]error, 3*n)
	for i := range n {
		claim := x.recoup(t, mint, sha256.Sum256([]byte{'r', byte(i)}))
		srv := peer.ID([]byte{'s', byte(i)})
		dep := x.record(t, srv, sha256.Sum256([]byte{'d', byte(i)}))
		sd := sha256.Sum256([]byte{'w', byte(i)})
		in := x.record(t, mint, sd)
		sg, err := sec2.Signer(8)
		require.NoError(t, err)
		nonce := sha256.Sum256([]byte{'n', byte(i)})
		row, err := sg.Finish(t0, nonce, scalar("a"), scalar("b"))
		require.NoError(t, err)
		sc := protocol.SwapCommit{RequestID: [16]byte{byte(i)}, Digest: sd, Inputs: []protocol.SpendRecord{in},
			Outputs: []protocol.IssueRow{{Row: row, KeysetID: ks2.ID(), Amount: 8}}}
		wg.Go(func() {
			<-start
			recoups[i], errs[3*i] = s.Recoup(ctx, []RecoupCoin{claim}, [32]byte{'a', byte(i)})
		})
		wg.Go(func() {
			<-start
			deposits[i], errs[3*i+1] = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{dep})
		})
		wg.Go(func() {
			<-start
			swaps[i], errs[3*i+2] = s.CommitSwap(ctx, sc)
		})
	}
	close(start)
	wg.Wait()
	taken := 0
	var value uint64
	for i := range n {
		for j := range 3 {
			require.NoError(t, errs[3*i+j])
		}
		if recoups[i][0].Status == pb.DepositStatus_DEPOSIT_CREDITED {
			taken++
		}
		if a, err := s.FundingAccount(ctx, [32]byte{'a', byte(i)}); err == nil {
			value += a.Value
		}
		if deposits[i][0].Status == pb.DepositStatus_DEPOSIT_CREDITED {
			taken++
		}
		b, err := s.Balance(ctx, peer.ID([]byte{'s', byte(i)}))
		require.NoError(t, err)
		for _, ua := range b {
			value += ua.Amount
		}
		if swaps[i].Rows != nil {
			taken++
			value += 8
		}
	}
	require.Equal(t, 1, taken, "the coin is taken once")
	require.Equal(t, uint64(8), value, "and its value credited once")
	require.NoError(t, s.Check(ctx))
}

// TestAttackRecoupOtherUnit: coins of a revoked keyset of one unit are
// recouped onto an account of another, or coins of two units onto one
// new account, to change units at the mint.
//
// HOLDS: the whole call fails with protocol.ErrFundingUnit, nothing
// credited.
func TestAttackRecoupOtherUnit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ksA, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	pB := testPolicy
	pB.Unit = "sat"
	ksB, err := k.Generate(ctx, pB, t0)
	require.NoError(t, err)
	is := newIssuer(t, s)
	a := is.withdraw(secretOf(t, s, ksA.ID()), t0, 8, false)
	isB := &issuer{t: t, s: s, acct: [32]byte{'B'}, seed: [32]byte{'v'}}
	require.NoError(t, s.OpenFunding(ctx, isB.acct, "sat", 1<<20))
	b := isB.withdraw(secretOf(t, s, ksB.ID()), t0, 8, false)
	require.NoError(t, k.Revoke(ctx, ksA.ID()))
	require.NoError(t, k.Revoke(ctx, ksB.ID()))
	mint := peer.ID("mint")
	satAcct := [32]byte{'s', 'a', 't'}
	require.NoError(t, s.OpenFunding(ctx, satAcct, "sat", 1))

	_, err = s.Recoup(ctx, []RecoupCoin{a.recoup(t, mint, [32]byte{1})}, satAcct)
	require.ErrorIs(t, err, protocol.ErrFundingUnit, "a coin in msat onto an account in sat")
	fresh := [32]byte{'n', 'e', 'w'}
	cb := b.recoup(t, mint, [32]byte{2})
	cb.Spend.Unit = "sat" // as the service sets it, from the keyset
	_, err = s.Recoup(ctx, []RecoupCoin{a.recoup(t, mint, [32]byte{2}), cb}, fresh)
	require.ErrorIs(t, err, protocol.ErrFundingUnit, "coins of two units onto a new account")
	_, err = s.FundingAccount(ctx, fresh)
	require.Error(t, err, "no account opened")
	acct, err := s.FundingAccount(ctx, satAcct)
	require.NoError(t, err)
	require.Equal(t, uint64(1), acct.Value, "nothing credited")
	for _, x := range []issued{a, b} {
		e := auditOf(t, s, x.c.KeysetID, 8)
		require.Zero(t, e.Recouped)
	}
}
