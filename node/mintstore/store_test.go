package mintstore

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

func TestFileMode(t *testing.T) {
	s, path := openTemp(t)
	require.NoError(t, s.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "new file")

	require.NoError(t, os.Chmod(path, 0o644))
	s, err = Open(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "existing file narrowed")
}

func TestLockTimeout(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, WithLockTimeout(50*time.Millisecond))
	require.Error(t, err, "a second open of a locked file")
	require.Less(t, time.Since(start), 5*time.Second)
}

// TestConcurrentCommitReopen races 64 commits of one (key, nonce) with
// different challenges, then reopens the file: the stored row wins, its
// retry is answered from it and charged nothing, and every other
// challenge is refused.
func TestConcurrentCommitReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	winner := raceCommits(t, s, 64)
	s = reopen(t, s, path)
	acct := [32]byte{1}
	out, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, byte(winner), 8)})
	require.NoError(t, err)
	require.Equal(t, row(1, 1, byte(winner), 8).Row, out[0])
	for i := range 64 {
		if i == winner {
			continue
		}
		_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, byte(i), 8)})
		require.ErrorIs(t, err, protocol.ErrNonceReused, "challenge %d", i)
	}
	require.Equal(t, uint64(1000-8), remaining(t, s, acct))
	rows, err := s.Rows(ctx, [][32]byte{{1}}, 10)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.NoError(t, s.Check(ctx))
}

// TestReopenKeepsEverything writes one of each record, reopens the file
// and reads them all back.
func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	srv, mint := peer.ID("server"), peer.ID("mint")
	acct := openFunding(t, s, 1, 100)
	_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 4), row(2, 2, 2, 8)})
	require.NoError(t, err)
	swap := protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
		Inputs: []protocol.SpendRecord{spend(1, mint, 1, 4)}, Outputs: []protocol.IssueRow{row(1, 3, 3, 4)}}
	_, err = s.CommitSwap(ctx, swap)
	require.NoError(t, err)
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(2, srv, 1, 50)})
	require.NoError(t, err)
	order := protocol.PayoutOrder{Server: srv, RequestID: [16]byte{1}, Digest: [32]byte{1}, Unit: "msat", Amount: 20, Destination: []byte("d")}
	_, err = s.BeginPayout(ctx, order)
	require.NoError(t, err)

	s = reopen(t, s, path)
	require.Equal(t, uint64(88), remaining(t, s, acct))
	rows, err := s.Rows(ctx, [][32]byte{{1}, {2}, {3}}, 10)
	require.NoError(t, err)
	require.Equal(t, []protocol.IssueRow{row(1, 1, 1, 4), row(2, 2, 2, 8), row(1, 3, 3, 4)}, rows)
	out, err := s.CommitSwap(ctx, swap)
	require.NoError(t, err)
	require.Equal(t, []coin.Row{row(1, 3, 3, 4).Row}, out.Rows, "swap retry after reopening")
	res, err := s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(2, srv, 1, 50), spend(1, srv, 1, 4)})
	require.NoError(t, err)
	require.Equal(t, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED, res[0].Status)
	require.Equal(t, pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, res[1].Status)
	require.Equal(t, spend(1, mint, 1, 4), *res[1].Conflict)
	bal, err := s.Balance(ctx, srv)
	require.NoError(t, err)
	require.Equal(t, []protocol.UnitAmount{{Unit: "msat", Amount: 30}}, bal)
	pending, err := s.PendingPayouts(ctx)
	require.NoError(t, err)
	require.Equal(t, []protocol.PayoutRecord{{PayoutOrder: order, State: protocol.PayoutPending}}, pending)
	require.NoError(t, s.Check(ctx))
}

// TestContextEnded checks that a call whose context has ended does
// nothing.
func TestContextEnded(t *testing.T) {
	s, _ := openTemp(t)
	acct := openFunding(t, s, 1, 100)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 4)})
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Rows(ctx, [][32]byte{{1}}, 1)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, uint64(100), remaining(t, s, acct))
}

// TestCheckFindsCorruption damages the file in ways Check must notice.
func TestCheckFindsCorruption(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(tx *bolt.Tx) error
	}{
		{"row without index", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketNonces).Cursor()
			k, _ := c.First()
			return tx.Bucket(bucketNonces).Delete(k)
		}},
		{"charge without row", func(tx *bolt.Tx) error {
			rb := tx.Bucket(bucketRows)
			k, _ := rb.Cursor().First()
			r, seq, _ := decodeRow(k, rb.Get(k))
			if err := tx.Bucket(bucketNonces).Delete(nonceKey(r.Nonce, seq)); err != nil {
				return err
			}
			return rb.Delete(k)
		}},
		{"funding charged twice", func(tx *bolt.Tx) error {
			fb := tx.Bucket(bucketFunding)
			a, _ := decodeFunding(fb.Get([]byte{1, 31: 0}))
			a.Remaining--
			v, _ := encodeFunding(a)
			return fb.Put([]byte{1, 31: 0}, v)
		}},
		{"spent coin without index", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketSpentByKS).Cursor()
			k, _ := c.First()
			return tx.Bucket(bucketSpentByKS).Delete(k)
		}},
		{"pending payout without index", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketPending).Cursor()
			k, _ := c.First()
			return tx.Bucket(bucketPending).Delete(k)
		}},
		{"record cut short", func(tx *bolt.Tx) error {
			sb := tx.Bucket(bucketSpent)
			k, v := sb.Cursor().First()
			return sb.Put(k, v[:len(v)-1])
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTemp(t)
			acct := openFunding(t, s, 1, 100)
			_, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 4)})
			require.NoError(t, err)
			_, err = s.CreditDeposits(ctx, "srv", []protocol.SpendRecord{spend(1, "srv", 1, 4)})
			require.NoError(t, err)
			_, err = s.BeginPayout(ctx, protocol.PayoutOrder{Server: "srv", Unit: "msat", Amount: 1})
			require.NoError(t, err)
			require.NoError(t, s.Check(ctx))
			require.NoError(t, s.db.Update(tt.damage))
			require.ErrorIs(t, s.Check(ctx), ErrCorrupt)
		})
	}
}

func TestLayoutVersion(t *testing.T) {
	s, path := openTemp(t)
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte{99})
	}))
	require.NoError(t, s.Close())
	_, err := Open(path)
	require.ErrorIs(t, err, ErrCorrupt)
}

// TestFieldLimits checks that fields too long for the layout are refused,
// not cut.
func TestFieldLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	require.Error(t, s.OpenFunding(ctx, [32]byte{1}, strings.Repeat("u", 256), 1))
	r := spend(1, "srv", 1, 1)
	r.Spend = make([]byte, 1<<16)
	_, err := s.CreditDeposits(ctx, "srv", []protocol.SpendRecord{r})
	require.Error(t, err)
	require.NoError(t, s.Check(ctx))
}

// TestRetriesDoNotCommit checks that calls answered without a change
// commit no transaction (and so cost no sync), and answer the same.
func TestRetriesDoNotCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	txid := func() int {
		var id int
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }))
		return id
	}
	acct := openFunding(t, s, 1, 100)
	issue := []protocol.IssueRow{row(1, 1, 1, 4)}
	first, err := s.CommitIssue(ctx, acct, "msat", issue)
	require.NoError(t, err)
	deposit := []protocol.SpendRecord{spend(1, "srv", 1, 50)}
	_, err = s.CreditDeposits(ctx, "srv", deposit)
	require.NoError(t, err)
	order := protocol.PayoutOrder{Server: "srv", Unit: "msat", Amount: 1}
	_, err = s.BeginPayout(ctx, order)
	require.NoError(t, err)
	swap := protocol.SwapCommit{RequestID: [16]byte{1}, Inputs: []protocol.SpendRecord{spend(2, "mint", 0, 4)}, Outputs: []protocol.IssueRow{row(1, 2, 1, 4)}}
	_, err = s.CommitSwap(ctx, swap)
	require.NoError(t, err)

	before := txid()
	require.NoError(t, s.OpenFunding(ctx, acct, "msat", 100))
	again, err := s.CommitIssue(ctx, acct, "msat", issue)
	require.NoError(t, err)
	require.Equal(t, first, again)
	rs, err := s.CreditDeposits(ctx, "srv", deposit)
	require.NoError(t, err)
	require.Equal(t, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED, rs[0].Status)
	_, err = s.BeginPayout(ctx, order)
	require.NoError(t, err)
	out, err := s.CommitSwap(ctx, swap)
	require.NoError(t, err)
	require.Len(t, out.Rows, 1)
	require.Equal(t, before, txid(), "a retry committed")

	_, err = s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row(1, 1, 1, 4), row(1, 3, 1, 4)})
	require.NoError(t, err)
	require.Equal(t, before+1, txid(), "a new row is committed")
	require.Equal(t, uint64(92), remaining(t, s, acct))
}
