package mintstore

// The conformance suite: the behaviour of protocol.MemMintStore, the
// reference, checked case by case against it and against Store, so that
// both are held to the same behaviour. It covers the cases of protocol's
// mint_store_test.go and more.

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// storeKind makes an empty store of one implementation.
type storeKind struct {
	name string
	open func(t testing.TB) protocol.MintStore
	// sequential is set for stores that do not take concurrent calls.
	sequential bool
}

var storeKinds = []storeKind{
	{name: "mem", open: func(testing.TB) protocol.MintStore { return protocol.NewMemMintStore() }},
	{name: "bolt", open: func(t testing.TB) protocol.MintStore { s, _ := openTemp(t); return s }},
	{name: "bolt-reopened", sequential: true, open: func(t testing.TB) protocol.MintStore {
		s, path := openTemp(t)
		return &reopening{t: t, path: path, s: s}
	}},
}

// forEachStore runs f against every kind of store.
func forEachStore(t *testing.T, f func(t *testing.T, s protocol.MintStore)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.open(t)
			f(t, s)
			if r, ok := s.(*reopening); ok {
				check(t, r.s)
			} else {
				check(t, s)
			}
		})
	}
}

// reopening is a Store that closes and reopens its file after every call,
// so that each answer comes from what was committed to the file.
type reopening struct {
	t    testing.TB
	path string
	s    *Store
}

var _ protocol.MintStore = (*reopening)(nil)

func (r *reopening) cycle() { r.s = reopen(r.t, r.s, r.path) }

func (r *reopening) OpenFunding(ctx context.Context, id [32]byte, unit string, value uint64) error {
	defer r.cycle()
	return r.s.OpenFunding(ctx, id, unit, value)
}

func (r *reopening) FundingAccount(ctx context.Context, id [32]byte) (protocol.FundingAccount, error) {
	defer r.cycle()
	return r.s.FundingAccount(ctx, id)
}

func (r *reopening) CommitIssue(ctx context.Context, funding [32]byte, unit string, rows []protocol.IssueRow) ([]coin.Row, error) {
	defer r.cycle()
	return r.s.CommitIssue(ctx, funding, unit, rows)
}

func (r *reopening) Rows(ctx context.Context, nonces [][32]byte, limit int) ([]protocol.IssueRow, error) {
	defer r.cycle()
	return r.s.Rows(ctx, nonces, limit)
}

func (r *reopening) CommitSwap(ctx context.Context, c protocol.SwapCommit) (protocol.SwapOutcome, error) {
	defer r.cycle()
	return r.s.CommitSwap(ctx, c)
}

func (r *reopening) CreditDeposits(ctx context.Context, server peer.ID, records []protocol.SpendRecord) ([]protocol.DepositOutcome, error) {
	defer r.cycle()
	return r.s.CreditDeposits(ctx, server, records)
}

func (r *reopening) Balance(ctx context.Context, server peer.ID) ([]protocol.UnitAmount, error) {
	defer r.cycle()
	return r.s.Balance(ctx, server)
}

func (r *reopening) BeginPayout(ctx context.Context, o protocol.PayoutOrder) (protocol.PayoutRecord, error) {
	defer r.cycle()
	return r.s.BeginPayout(ctx, o)
}

func (r *reopening) FinishPayout(ctx context.Context, server peer.ID, id [protocol.RequestIDSize]byte, receipt []byte, refused bool) (protocol.PayoutRecord, error) {
	defer r.cycle()
	return r.s.FinishPayout(ctx, server, id, receipt, refused)
}

func (r *reopening) PendingPayouts(ctx context.Context) ([]protocol.PayoutRecord, error) {
	defer r.cycle()
	return r.s.PendingPayouts(ctx)
}

// TestConformCommitIssueConcurrent races 64 commits of one (key, nonce)
// with different challenges: exactly one wins, and the funding is charged
// once. The winner's retry is answered from its row and charged nothing.
func TestConformCommitIssueConcurrent(t *testing.T) {
	for _, k := range storeKinds {
		if k.sequential {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			s := k.open(t)
			winner := raceCommits(t, s, 64)
			ctx := context.Background()
			rows, err := s.Rows(ctx, [][32]byte{{1}}, 100)
			require.NoError(t, err)
			require.Len(t, rows, 1, "exactly one row stored")
			assert.Equal(t, [32]byte{byte(winner)}, rows[0].ChallengeHash)
			check(t, s)
		})
	}
}

// raceCommits runs n concurrent commits of row (1, 1) with challenge
// hashes 0 to n-1 from a fresh account holding 1000, checks that exactly
// one committed and was charged once, and returns its index.
func raceCommits(t *testing.T, s protocol.MintStore, n int) int {
	t.Helper()
	ctx := context.Background()
	acct := openFunding(t, s, 1, 1000)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	stored := make([][]coin.Row, n)
	for i := range n {
		wg.Go(func() {
			<-start
			stored[i], errs[i] = s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, byte(i), 8)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("calls %d and %d both committed", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, protocol.ErrNonceReused):
			t.Fatalf("call %d: %v", i, err)
		}
	}
	require.GreaterOrEqual(t, winner, 0, "no call committed")
	require.Equal(t, row(1, 1, byte(winner), 8).Row, stored[winner][0], "the winner got another row")
	require.Equal(t, uint64(1000-8), remaining(t, s, acct), "charged once")
	again, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, byte(winner), 8)})
	require.NoError(t, err)
	require.Equal(t, stored[winner][0], again[0])
	require.Equal(t, uint64(1000-8), remaining(t, s, acct), "retry charged")
	return winner
}

// TestConformCommitIssueAtomic checks that a refused commit changes
// nothing, whatever refused it.
func TestConformCommitIssueAtomic(t *testing.T) {
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		acct := openFunding(t, s, 1, 10)
		_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 2)})
		require.NoError(t, err)
		for _, tt := range []struct {
			name string
			acct [32]byte
			unit string
			rows []protocol.IssueRow
			want error
		}{
			{"reused nonce", acct, "msat", []protocol.IssueRow{row(1, 2, 1, 1), row(1, 1, 9, 1)}, protocol.ErrNonceReused},
			{"repeated in one call", acct, "msat", []protocol.IssueRow{row(1, 3, 1, 1), row(1, 3, 2, 1)}, protocol.ErrNonceReused},
			{"repeated in one call, same challenges", acct, "msat", []protocol.IssueRow{row(1, 3, 1, 1), row(1, 3, 1, 1)}, protocol.ErrNonceReused},
			{"insufficient", acct, "msat", []protocol.IssueRow{row(1, 4, 1, 8), row(1, 5, 1, 1)}, protocol.ErrInsufficientFunding},
			{"total overflows", acct, "msat", []protocol.IssueRow{row(1, 4, 1, 1<<63), row(1, 5, 1, 1<<63)}, protocol.ErrInsufficientFunding},
			{"unknown funding", [32]byte{9}, "msat", []protocol.IssueRow{row(1, 6, 1, 1)}, protocol.ErrUnknownFunding},
			{"other unit", acct, "sat", []protocol.IssueRow{row(1, 7, 1, 1)}, protocol.ErrFundingUnit},
		} {
			_, err := s.CommitIssue(ctx, tt.acct, tt.unit, tt.rows)
			assert.ErrorIs(t, err, tt.want, tt.name)
		}
		rows, err := s.Rows(ctx, [][32]byte{{1}, {2}, {3}, {4}, {5}, {6}, {7}}, 100)
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.Equal(t, uint64(8), remaining(t, s, acct))

		// A call mixing a stored row (answered from it) and a new one
		// (charged), then spending all, then nothing is left.
		out, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 2), row(1, 8, 1, 8)})
		require.NoError(t, err)
		require.Equal(t, []coin.Row{row(1, 1, 1, 2).Row, row(1, 8, 1, 8).Row}, out)
		require.Equal(t, uint64(0), remaining(t, s, acct))
		_, err = s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 9, 1, 1)})
		require.ErrorIs(t, err, protocol.ErrFundingSpent)
		// A retry charges nothing, so it succeeds on a spent account.
		_, err = s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 8, 1, 8)})
		require.NoError(t, err)
		// ... but not on another unit or account.
		_, err = s.CommitIssue(ctx, acct, "sat", []protocol.IssueRow{row(1, 8, 1, 8)})
		require.ErrorIs(t, err, protocol.ErrFundingUnit)
	})
}

// TestConformRows checks Rows: a nonce's rows in insertion order, under
// every key, nonces in the order asked, at most limit.
func TestConformRows(t *testing.T) {
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		acct := openFunding(t, s, 1, 100)
		for _, r := range []protocol.IssueRow{row(3, 1, 1, 1), row(1, 2, 1, 1), row(2, 1, 2, 2), row(1, 1, 3, 4)} {
			_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{r})
			require.NoError(t, err)
		}
		got, err := s.Rows(ctx, [][32]byte{{2}, {9}, {1}}, 10)
		require.NoError(t, err)
		want := []protocol.IssueRow{row(1, 2, 1, 1), row(3, 1, 1, 1), row(2, 1, 2, 2), row(1, 1, 3, 4)}
		require.Equal(t, want, got)
		got, err = s.Rows(ctx, [][32]byte{{2}, {9}, {1}}, 2)
		require.NoError(t, err)
		require.Equal(t, want[:2], got)
		got, err = s.Rows(ctx, [][32]byte{{1}}, 0)
		require.NoError(t, err)
		require.Empty(t, got)
		got, err = s.Rows(ctx, nil, 10)
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

// TestConformFunding checks funding accounts.
func TestConformFunding(t *testing.T) {
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		_, err := s.FundingAccount(ctx, [32]byte{1})
		require.ErrorIs(t, err, protocol.ErrUnknownFunding)
		require.NoError(t, s.OpenFunding(ctx, [32]byte{1}, "msat", 5))
		require.NoError(t, s.OpenFunding(ctx, [32]byte{1}, "msat", 5), "idempotent")
		require.ErrorIs(t, s.OpenFunding(ctx, [32]byte{1}, "msat", 6), protocol.ErrMintRequestReused)
		require.ErrorIs(t, s.OpenFunding(ctx, [32]byte{1}, "sat", 5), protocol.ErrMintRequestReused)
		a, err := s.FundingAccount(ctx, [32]byte{1})
		require.NoError(t, err)
		require.Equal(t, protocol.FundingAccount{Unit: "msat", Value: 5, Remaining: 5}, a)
		_, err = s.CommitIssue(ctx, [32]byte{1}, "msat", []protocol.IssueRow{row(1, 1, 1, 2)})
		require.NoError(t, err)
		require.NoError(t, s.OpenFunding(ctx, [32]byte{1}, "msat", 5), "reopening a used account changes nothing")
		a, err = s.FundingAccount(ctx, [32]byte{1})
		require.NoError(t, err)
		require.Equal(t, protocol.FundingAccount{Unit: "msat", Value: 5, Remaining: 3}, a)
		// An account of no value is spent from the start.
		require.NoError(t, s.OpenFunding(ctx, [32]byte{2}, "msat", 0))
		_, err = s.CommitIssue(ctx, [32]byte{2}, "msat", []protocol.IssueRow{row(1, 2, 1, 1)})
		require.ErrorIs(t, err, protocol.ErrFundingSpent)
	})
}

// TestConformCommitSwapAtomic checks that a swap refused for one input
// spends none and issues nothing, and that a retry replays.
func TestConformCommitSwapAtomic(t *testing.T) {
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		mint, server := peer.ID("mint"), peer.ID("server")
		_, err := s.CreditDeposits(ctx, server, []protocol.SpendRecord{spend(2, server, 1, 4)})
		require.NoError(t, err)
		refused := protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
			Inputs:  []protocol.SpendRecord{spend(1, mint, 1, 4), spend(2, mint, 1, 4)},
			Outputs: []protocol.IssueRow{row(1, 1, 1, 8)}}
		out, err := s.CommitSwap(ctx, refused)
		require.NoError(t, err)
		require.Nil(t, out.Rows)
		require.Len(t, out.Conflicts, 2)
		require.Nil(t, out.Conflicts[0])
		require.Equal(t, spend(2, server, 1, 4), *out.Conflicts[1])
		rows, err := s.Rows(ctx, [][32]byte{{1}}, 10)
		require.NoError(t, err)
		require.Empty(t, rows, "a refused swap stored a row")

		ok := protocol.SwapCommit{RequestID: [16]byte{2}, Digest: [32]byte{2},
			Inputs:  []protocol.SpendRecord{spend(1, mint, 2, 4), spend(3, mint, 2, 4)},
			Outputs: []protocol.IssueRow{row(1, 1, 1, 8)}}
		out, err = s.CommitSwap(ctx, ok)
		require.NoError(t, err)
		require.Equal(t, []coin.Row{ok.Outputs[0].Row}, out.Rows)
		require.Equal(t, []*protocol.SpendRecord{nil, nil}, out.Conflicts)
		// A retry, even with the inputs in another order.
		retry := ok
		retry.Inputs = []protocol.SpendRecord{ok.Inputs[1], ok.Inputs[0]}
		out, err = s.CommitSwap(ctx, retry)
		require.NoError(t, err)
		require.Equal(t, []coin.Row{ok.Outputs[0].Row}, out.Rows)
		require.Equal(t, []*protocol.SpendRecord{nil, nil}, out.Conflicts)

		for _, tt := range []struct {
			name   string
			change func(c *protocol.SwapCommit)
		}{
			{"other inputs", func(c *protocol.SwapCommit) {
				c.Inputs = []protocol.SpendRecord{spend(1, mint, 2, 4), spend(4, mint, 2, 4)}
			}},
			{"fewer inputs", func(c *protocol.SwapCommit) { c.Inputs = c.Inputs[:1] }},
			{"another digest", func(c *protocol.SwapCommit) { c.Digest = [32]byte{9} }},
		} {
			c := ok
			tt.change(&c)
			_, err := s.CommitSwap(ctx, c)
			assert.ErrorIs(t, err, protocol.ErrMintRequestReused, tt.name)
		}
		reused := protocol.SwapCommit{RequestID: [16]byte{3}, Digest: [32]byte{3},
			Inputs: []protocol.SpendRecord{spend(5, mint, 3, 8)}, Outputs: []protocol.IssueRow{row(1, 1, 1, 8)}}
		_, err = s.CommitSwap(ctx, reused)
		require.ErrorIs(t, err, protocol.ErrNonceReused)
		twice := protocol.SwapCommit{RequestID: [16]byte{4}, Digest: [32]byte{4},
			Inputs: []protocol.SpendRecord{spend(5, mint, 4, 8)}, Outputs: []protocol.IssueRow{row(1, 6, 1, 4), row(1, 6, 2, 4)}}
		_, err = s.CommitSwap(ctx, twice)
		require.ErrorIs(t, err, protocol.ErrNonceReused)
		dup := protocol.SwapCommit{RequestID: [16]byte{5}, Digest: [32]byte{5},
			Inputs: []protocol.SpendRecord{spend(5, mint, 5, 8), spend(5, mint, 5, 8)}, Outputs: []protocol.IssueRow{row(1, 7, 1, 16)}}
		_, err = s.CommitSwap(ctx, dup)
		require.ErrorIs(t, err, protocol.ErrBadRequest)

		// Coin 5 was never spent, and no output row of a refused swap
		// was stored.
		rs, err := s.CreditDeposits(ctx, server, []protocol.SpendRecord{spend(5, server, 1, 8)})
		require.NoError(t, err)
		require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, rs[0].Status)
		rows, err = s.Rows(ctx, [][32]byte{{6}, {7}}, 10)
		require.NoError(t, err)
		require.Empty(t, rows)
		// A swapped coin deposited is double spent, with the swap as
		// evidence.
		rs, err = s.CreditDeposits(ctx, server, []protocol.SpendRecord{spend(3, server, 1, 4)})
		require.NoError(t, err)
		require.Equal(t, pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, rs[0].Status)
		require.Equal(t, spend(3, mint, 2, 4), *rs[0].Conflict)
	})
}

// TestConformDeposits checks CreditDeposits, one case at a time on one
// store.
func TestConformDeposits(t *testing.T) {
	const (
		credited = pb.DepositStatus_DEPOSIT_CREDITED
		already  = pb.DepositStatus_DEPOSIT_ALREADY_CREDITED
		double   = pb.DepositStatus_DEPOSIT_DOUBLE_SPENT
	)
	a, b := peer.ID("server a"), peer.ID("server b")
	sat := spend(9, a, 1, 7)
	sat.Unit = "sat"
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		for _, tt := range []struct {
			name      string
			server    peer.ID
			records   []protocol.SpendRecord
			want      []pb.DepositStatus
			conflicts []*protocol.SpendRecord
			balance   []protocol.UnitAmount
		}{
			{"credited", a, []protocol.SpendRecord{spend(1, a, 1, 1), spend(2, a, 1, 2)},
				[]pb.DepositStatus{credited, credited}, nil, []protocol.UnitAmount{{Unit: "msat", Amount: 3}}},
			{"retry", a, []protocol.SpendRecord{spend(2, a, 1, 2), spend(1, a, 1, 1)},
				[]pb.DepositStatus{already, already}, nil, []protocol.UnitAmount{{Unit: "msat", Amount: 3}}},
			{"twice in a batch", a, []protocol.SpendRecord{spend(3, a, 1, 4), spend(3, a, 1, 4)},
				[]pb.DepositStatus{credited, already}, nil, []protocol.UnitAmount{{Unit: "msat", Amount: 7}}},
			{"twice in a batch, other digests", a, []protocol.SpendRecord{spend(4, a, 1, 8), spend(4, a, 2, 8)},
				[]pb.DepositStatus{credited, double}, []*protocol.SpendRecord{nil, ptr(spend(4, a, 1, 8))}, []protocol.UnitAmount{{Unit: "msat", Amount: 15}}},
			{"same server, other request", a, []protocol.SpendRecord{spend(1, a, 2, 1)},
				[]pb.DepositStatus{double}, []*protocol.SpendRecord{ptr(spend(1, a, 1, 1))}, []protocol.UnitAmount{{Unit: "msat", Amount: 15}}},
			{"another server", b, []protocol.SpendRecord{spend(2, b, 1, 2), spend(5, b, 1, 16)},
				[]pb.DepositStatus{double, credited}, []*protocol.SpendRecord{ptr(spend(2, a, 1, 2)), nil}, []protocol.UnitAmount{{Unit: "msat", Amount: 16}}},
			{"another unit", a, []protocol.SpendRecord{sat},
				[]pb.DepositStatus{credited}, nil, []protocol.UnitAmount{{Unit: "msat", Amount: 15}, {Unit: "sat", Amount: 7}}},
			{"zero amount", b, []protocol.SpendRecord{func() protocol.SpendRecord { r := spend(6, b, 1, 0); r.Unit = "a-unit"; return r }()},
				[]pb.DepositStatus{credited}, nil, []protocol.UnitAmount{{Unit: "a-unit", Amount: 0}, {Unit: "msat", Amount: 16}}},
		} {
			out, err := s.CreditDeposits(ctx, tt.server, tt.records)
			require.NoError(t, err, tt.name)
			require.Len(t, out, len(tt.want), tt.name)
			for i := range out {
				assert.Equal(t, tt.want[i], out[i].Status, "%s: record %d", tt.name, i)
				var want *protocol.SpendRecord
				if tt.conflicts != nil {
					want = tt.conflicts[i]
				}
				assert.Equal(t, want, out[i].Conflict, "%s: record %d", tt.name, i)
			}
			bal, err := s.Balance(ctx, tt.server)
			require.NoError(t, err)
			assert.Equal(t, tt.balance, bal, tt.name)
		}
		// A record for another server refuses the call and changes
		// nothing.
		_, err := s.CreditDeposits(ctx, a, []protocol.SpendRecord{spend(7, a, 1, 1), spend(8, b, 1, 1)})
		require.Error(t, err)
		// Balances that would overflow refuse the call.
		_, err = s.CreditDeposits(ctx, b, []protocol.SpendRecord{spend(10, b, 1, 1<<63), spend(11, b, 1, 1<<63)})
		require.Error(t, err)
		out, err := s.CreditDeposits(ctx, a, []protocol.SpendRecord{spend(7, a, 1, 1)})
		require.NoError(t, err)
		require.Equal(t, credited, out[0].Status)
		bal, err := s.Balance(ctx, peer.ID("nobody"))
		require.NoError(t, err)
		require.Empty(t, bal)
	})
}

func ptr[T any](v T) *T { return &v }

// TestConformPayouts checks BeginPayout, FinishPayout and
// PendingPayouts.
func TestConformPayouts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s protocol.MintStore) {
		ctx := context.Background()
		srv := peer.ID("server")
		_, err := s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(1, srv, 1, 100)})
		require.NoError(t, err)
		order := func(id byte, amount uint64, digest byte) protocol.PayoutOrder {
			return protocol.PayoutOrder{Server: srv, RequestID: [16]byte{id}, Digest: [32]byte{digest},
				Unit: "msat", Amount: amount, Destination: []byte("dest")}
		}
		balance := func() uint64 {
			b, err := s.Balance(ctx, srv)
			require.NoError(t, err)
			require.Len(t, b, 1)
			return b[0].Amount
		}
		rec, err := s.BeginPayout(ctx, order(1, 30, 1))
		require.NoError(t, err)
		require.Equal(t, protocol.PayoutRecord{PayoutOrder: order(1, 30, 1), State: protocol.PayoutPending}, rec)
		require.Equal(t, uint64(70), balance())
		again, err := s.BeginPayout(ctx, order(1, 30, 1))
		require.NoError(t, err)
		require.Equal(t, rec, again, "retry")
		_, err = s.BeginPayout(ctx, order(1, 30, 2))
		require.ErrorIs(t, err, protocol.ErrMintRequestReused)
		_, err = s.BeginPayout(ctx, order(2, 71, 1))
		require.ErrorIs(t, err, protocol.ErrInsufficientBalance)
		_, err = s.BeginPayout(ctx, protocol.PayoutOrder{Server: srv, RequestID: [16]byte{2}, Unit: "sat", Amount: 1})
		require.ErrorIs(t, err, protocol.ErrInsufficientBalance)
		_, err = s.BeginPayout(ctx, order(3, 20, 1))
		require.NoError(t, err)
		require.Equal(t, uint64(50), balance())

		pending, err := s.PendingPayouts(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []protocol.PayoutRecord{
			{PayoutOrder: order(1, 30, 1), State: protocol.PayoutPending},
			{PayoutOrder: order(3, 20, 1), State: protocol.PayoutPending},
		}, pending)

		paid, err := s.FinishPayout(ctx, srv, [16]byte{1}, []byte("receipt"), false)
		require.NoError(t, err)
		require.Equal(t, protocol.PayoutPaid, paid.State)
		require.Equal(t, []byte("receipt"), paid.Receipt)
		refused, err := s.FinishPayout(ctx, srv, [16]byte{3}, nil, true)
		require.NoError(t, err)
		require.Equal(t, protocol.PayoutRefused, refused.State)
		require.Equal(t, uint64(70), balance(), "refused payout credited back")
		// Settled payouts stay as they are.
		again, err = s.FinishPayout(ctx, srv, [16]byte{1}, []byte("other"), true)
		require.NoError(t, err)
		require.Equal(t, paid, again)
		again, err = s.FinishPayout(ctx, srv, [16]byte{3}, []byte("other"), false)
		require.NoError(t, err)
		require.Equal(t, refused, again)
		require.Equal(t, uint64(70), balance())
		again, err = s.BeginPayout(ctx, order(1, 30, 1))
		require.NoError(t, err)
		require.Equal(t, paid, again)
		_, err = s.FinishPayout(ctx, srv, [16]byte{9}, nil, false)
		require.ErrorIs(t, err, protocol.ErrNotFound)
		pending, err = s.PendingPayouts(ctx)
		require.NoError(t, err)
		require.Empty(t, pending)
		// A payout of everything leaves a zero balance, still listed.
		_, err = s.BeginPayout(ctx, order(4, 70, 1))
		require.NoError(t, err)
		require.Equal(t, uint64(0), balance())
		// A payout of zero from no balance at all is allowed and makes
		// no balance.
		_, err = s.BeginPayout(ctx, protocol.PayoutOrder{Server: "other", RequestID: [16]byte{1}, Unit: "msat"})
		require.NoError(t, err)
		b, err := s.Balance(ctx, "other")
		require.NoError(t, err)
		require.Empty(t, b)
	})
}

// flakyFunding is voucher funding whose payouts fail while down, and are
// refused for the destination "refuse".
type flakyFunding struct {
	*protocol.VoucherFunding
	mu    sync.Mutex
	down  bool
	calls int
}

func (f *flakyFunding) Pay(ctx context.Context, o protocol.PayoutOrder) ([]byte, error) {
	f.mu.Lock()
	f.calls++
	down := f.down
	f.mu.Unlock()
	if string(o.Destination) == "refuse" {
		return nil, protocol.ErrPayoutRefused
	}
	if down {
		return nil, errors.New("rail down")
	}
	return f.VoucherFunding.Pay(ctx, o)
}

// TestConformPayoutSettles runs payouts through the mint service with a
// funding plugin that fails: a refused payout is credited back, a failed
// one stays pending until ResumePayouts or a retry settles it, and each
// is paid once.
func TestConformPayoutSettles(t *testing.T) {
	forEachStore(t, func(t *testing.T, store protocol.MintStore) {
		ctx := context.Background()
		funding := &flakyFunding{VoucherFunding: protocol.NewVoucherFunding(store, [32]byte{1})}
		mintID, server := peer.ID("the mint"), peer.ID("a server")
		svc := protocol.NewMintService(mintID, protocol.NewMintKeyring(make([]byte, 32)), store, funding)
		_, err := store.CreditDeposits(ctx, server, []protocol.SpendRecord{spend(1, server, 1, 100)})
		require.NoError(t, err)
		payout := func(id byte, amount uint64, dest string) (*pb.PayoutResponse, error) {
			resp, err := svc.Handle(ctx, server, mintRequest(t, &pb.MintRequest{RequestId: bytes.Repeat([]byte{id}, 16),
				Op: &pb.MintRequest_Payout{Payout: &pb.Payout{Amount: &pb.UnitAmount{Unit: "msat", Amount: amount}, Destination: []byte(dest)}}}))
			if err != nil {
				return nil, err
			}
			return mintResponse(t, resp).GetPayout(), nil
		}
		balance := func() uint64 {
			b, err := store.Balance(ctx, server)
			require.NoError(t, err)
			return b[0].Amount
		}

		_, err = payout(1, 30, "refuse")
		require.ErrorIs(t, err, protocol.ErrPayoutRefused)
		require.Equal(t, uint64(100), balance(), "refused payout not credited back")
		_, err = payout(1, 30, "refuse")
		require.ErrorIs(t, err, protocol.ErrPayoutRefused)

		funding.down = true
		_, err = payout(2, 40, "")
		require.Error(t, err, "paid while the rail is down")
		require.Equal(t, uint64(60), balance(), "pending payout not debited")
		p, err := store.PendingPayouts(ctx)
		require.NoError(t, err)
		require.Len(t, p, 1)
		require.Error(t, svc.ResumePayouts(ctx), "resumed while the rail is down")
		funding.down = false
		require.NoError(t, svc.ResumePayouts(ctx))
		p, err = store.PendingPayouts(ctx)
		require.NoError(t, err)
		require.Empty(t, p)
		calls := funding.calls
		got, err := payout(2, 40, "")
		require.NoError(t, err)
		require.Equal(t, calls, funding.calls, "settled payout paid again")
		require.Equal(t, uint64(60), got.Remaining)
		a, err := funding.Voucher(ctx, string(got.Receipt))
		require.NoError(t, err)
		require.Equal(t, uint64(40), a.Value)
	})
}
