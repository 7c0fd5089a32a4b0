package mintstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// TestDifferential runs random sequences of calls, over small sets of
// keys, nonces, coins, accounts and servers so that they collide often,
// against protocol.MemMintStore and Store side by side, and requires the
// same answer from both to every call. The Store is closed and reopened
// now and then, and checked at the end.
func TestDifferential(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			differential(t, seed, 250)
		})
	}
}

func differential(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0x6d696e74))
	mem := protocol.NewMemMintStore()
	bolt, path := openTemp(t)

	pick := func(n int) byte { return byte(1 + rng.IntN(n)) }
	amount := func() uint64 {
		if rng.IntN(40) == 0 {
			return 1 << 63
		}
		return []uint64{0, 1, 2, 4, 8}[rng.IntN(5)]
	}
	unit := func() string { return []string{"msat", "msat", "sat"}[rng.IntN(3)] }
	server := func() peer.ID { return peer.ID([]string{"a", "b", "c"}[rng.IntN(3)]) }
	rows := func(n int) []protocol.IssueRow {
		out := make([]protocol.IssueRow, n)
		for i := range out {
			out[i] = row(pick(2), pick(6), pick(3), amount())
			out[i].KeysetID = [32]byte{pick(2)}
		}
		return out
	}
	records := func(n int, srv peer.ID) []protocol.SpendRecord {
		out := make([]protocol.SpendRecord, n)
		for i := range out {
			out[i] = spend(pick(8), srv, pick(2), amount())
			out[i].Unit = unit()
			out[i].KeysetID = [32]byte{pick(2)}
		}
		return out
	}

	for step := range steps {
		var op string
		var a, b any
		var ea, eb error
		switch rng.IntN(10) {
		case 0:
			id, u, v := [32]byte{pick(3)}, unit(), []uint64{0, 5, 20, 1 << 64 / 2}[rng.IntN(4)]
			op = fmt.Sprintf("OpenFunding(%x, %s, %d)", id[0], u, v)
			ea, eb = mem.OpenFunding(ctx, id, u, v), bolt.OpenFunding(ctx, id, u, v)
		case 1:
			id := [32]byte{pick(4)}
			op = "FundingAccount"
			a, ea = mem.FundingAccount(ctx, id)
			b, eb = bolt.FundingAccount(ctx, id)
		case 2, 3:
			id, u, rs := [32]byte{pick(3)}, unit(), rows(1+rng.IntN(3))
			op = fmt.Sprintf("CommitIssue(%d rows)", len(rs))
			a, ea = mem.CommitIssue(ctx, id, u, rs)
			b, eb = bolt.CommitIssue(ctx, id, u, rs)
		case 4:
			var nonces [][32]byte
			for range rng.IntN(4) {
				nonces = append(nonces, [32]byte{pick(6)})
			}
			limit := rng.IntN(6)
			op = "Rows"
			a, ea = mem.Rows(ctx, nonces, limit)
			b, eb = bolt.Rows(ctx, nonces, limit)
		case 5:
			c := protocol.SwapCommit{RequestID: [16]byte{pick(3)}, Digest: [32]byte{pick(2)},
				Inputs: records(1+rng.IntN(3), "mint"), Outputs: rows(1 + rng.IntN(3))}
			op = "CommitSwap"
			a, ea = mem.CommitSwap(ctx, c)
			b, eb = bolt.CommitSwap(ctx, c)
		case 6:
			srv := server()
			rs := records(1+rng.IntN(4), srv)
			if rng.IntN(20) == 0 {
				rs[0].Server = "someone else"
			}
			op = "CreditDeposits"
			a, ea = mem.CreditDeposits(ctx, srv, rs)
			b, eb = bolt.CreditDeposits(ctx, srv, rs)
		case 7:
			srv := server()
			op = "Balance"
			a, ea = mem.Balance(ctx, srv)
			b, eb = bolt.Balance(ctx, srv)
		case 8:
			o := protocol.PayoutOrder{Server: server(), RequestID: [16]byte{pick(3)}, Digest: [32]byte{pick(2)},
				Unit: unit(), Amount: []uint64{0, 1, 5, 50}[rng.IntN(4)], Destination: []byte{pick(2)}}
			op = "BeginPayout"
			a, ea = mem.BeginPayout(ctx, o)
			b, eb = bolt.BeginPayout(ctx, o)
		case 9:
			if rng.IntN(3) == 0 {
				op = "PendingPayouts"
				pa, e1 := mem.PendingPayouts(ctx)
				pb, e2 := bolt.PendingPayouts(ctx)
				a, b, ea, eb = sortPayouts(pa), sortPayouts(pb), e1, e2
				break
			}
			srv, id, refused := server(), [16]byte{pick(3)}, rng.IntN(2) == 0
			receipt := []byte{'r', pick(3)}
			op = "FinishPayout"
			a, ea = mem.FinishPayout(ctx, srv, id, receipt, refused)
			b, eb = bolt.FinishPayout(ctx, srv, id, receipt, refused)
		}
		require.Equal(t, errClass(ea), errClass(eb), "step %d: %s: errors %v and %v", step, op, ea, eb)
		if ea == nil {
			require.Equal(t, a, b, "step %d: %s", step, op)
		}
		if rng.IntN(50) == 0 {
			bolt = reopen(t, bolt, path)
		}
	}
	require.NoError(t, bolt.Check(ctx))
}

// errClass names the error a store returned: the *protocol.Error value
// for the mint's sentinels, the sentinel's text for protocol's plain
// ones, and "other" for any other error, which both stores word in their
// own package's name.
func errClass(err error) string {
	if err == nil {
		return "nil"
	}
	for _, s := range []*protocol.Error{protocol.ErrNonceReused, protocol.ErrMintRequestReused, protocol.ErrUnknownFunding,
		protocol.ErrFundingSpent, protocol.ErrInsufficientFunding, protocol.ErrFundingUnit, protocol.ErrInsufficientBalance} {
		if errors.Is(err, s) {
			return s.Message
		}
	}
	for _, s := range []error{protocol.ErrBadRequest, protocol.ErrNotFound} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "other"
}

func sortPayouts(p []protocol.PayoutRecord) []protocol.PayoutRecord {
	slices.SortFunc(p, func(a, b protocol.PayoutRecord) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), slices.Compare(a.RequestID[:], b.RequestID[:]))
	})
	return p
}
