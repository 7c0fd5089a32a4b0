package spentset

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

func TestMain(m *testing.M) {
	if crashChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

func TestRecordLookupAnswer(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	sp := spends(3, 4, false)
	id, d := reqID(1), digestOf("one")

	r, err := s.Record(ctx, id, d, sp, 48)
	require.NoError(t, err)
	assert.False(t, r.Replay)
	assert.False(t, r.Answered)
	assert.Equal(t, [][32]byte{sp[0].Pub, sp[1].Pub, sp[2].Pub}, r.Coins)
	assert.Equal(t, uint64(48), r.Value)

	require.NoError(t, s.Answer(ctx, id, d, []byte("answer")))
	require.NoError(t, s.Answer(ctx, id, d, []byte("second answer ignored")))
	got, err := s.Lookup(ctx, id)
	require.NoError(t, err)
	assert.True(t, got.Answered)
	assert.Equal(t, []byte("answer"), got.Answer)
	assert.Equal(t, d, got.Digest)

	// Survives a reopen.
	require.NoError(t, s.Close())
	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	got, err = s.Lookup(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, []byte("answer"), got.Answer)
	info, err := s.Coins(ctx, [][32]byte{sp[1].Pub, {9}})
	require.NoError(t, err)
	assert.Equal(t, CoinPending, info[0].State)
	assert.Equal(t, id, info[0].RequestID)
	assert.Equal(t, CoinUnknown, info[1].State)
	assert.Equal(t, Stats{Coins: 3, Requests: 1, Pending: 3, PendingValue: 48, PendingBearer: 48}, stats(t, s))
	mustCheck(t, s)
}

func TestRecordErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, WithMaxAnswerSize(8))
	first := spends(2, 1, false)
	_, err := s.Record(ctx, reqID(1), digestOf("a"), first, 4)
	require.NoError(t, err)
	before := stats(t, s)
	dup := newSpend(counter.Add(1), 0, false)

	tests := []struct {
		name   string
		id     [16]byte
		digest [32]byte
		spends []*coin.Spend
		want   error
		code   error // protocol sentinel it maps to, if any
	}{
		{"same ID other body", reqID(1), digestOf("b"), spends(1, 0, false), ErrRequestConflict, protocol.ErrBadRequest},
		{"double spend", reqID(2), digestOf("c"), append(spends(1, 0, false), first[1]), ErrDoubleSpend, protocol.ErrDoubleSpend},
		{"coin twice", reqID(3), digestOf("d"), []*coin.Spend{dup, dup}, ErrDuplicateCoin, protocol.ErrBadRequest},
		{"too many", reqID(4), digestOf("e"), spends(protocol.MaxSpends+1, 0, false), ErrTooManySpends, protocol.ErrBadRequest},
		{"no spends", reqID(5), digestOf("f"), nil, nil, nil},
		{"nil spend", reqID(6), digestOf("g"), []*coin.Spend{nil}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Record(ctx, tt.id, tt.digest, tt.spends, 1)
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			if tt.code != nil {
				assert.ErrorIs(t, err, tt.code)
			}
			assert.Equal(t, before, stats(t, s), "nothing written")
		})
	}

	err = s.Answer(ctx, reqID(1), digestOf("a"), []byte("too long!"))
	assert.ErrorIs(t, err, ErrAnswerTooLarge)
	assert.ErrorIs(t, s.Answer(ctx, reqID(99), digestOf("a"), nil), ErrNotFound)
	assert.ErrorIs(t, s.Answer(ctx, reqID(1), digestOf("x"), nil), ErrRequestConflict)
	_, err = s.Lookup(ctx, reqID(99))
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, err, protocol.ErrNotFound)
	mustCheck(t, s)
}

func TestDoubleSpendAcrossRequests(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a := spends(2, 3, false)
	_, err := s.Record(ctx, reqID(10), digestOf("first"), a, 16)
	require.NoError(t, err)

	fresh := newSpend(counter.Add(1), 3, false)
	_, err = s.Record(ctx, reqID(11), digestOf("second"), []*coin.Spend{fresh, a[1]}, 16)
	var ds *DoubleSpendError
	require.ErrorAs(t, err, &ds)
	assert.Equal(t, a[1].Pub, ds.CoinPub)
	assert.Equal(t, reqID(10), ds.RequestID)
	assert.Equal(t, "DOUBLE_SPEND", protocol.CodeOf(err).String())
	var pds *protocol.DoubleSpendError
	require.ErrorAs(t, err, &pds)
	assert.Equal(t, a[1].Pub, pds.Coin)
	assert.ErrorIs(t, err, ErrDoubleSpend)
	assert.ErrorIs(t, err, protocol.ErrDoubleSpend)

	// Nothing of the refused request was written: not the fresh coin, not
	// the request.
	info, err := s.Coins(ctx, [][32]byte{fresh.Pub})
	require.NoError(t, err)
	assert.Equal(t, CoinUnknown, info[0].State)
	_, err = s.Lookup(ctx, reqID(11))
	assert.ErrorIs(t, err, ErrNotFound)
	// The fresh coin is still good for another request.
	_, err = s.Record(ctx, reqID(12), digestOf("third"), []*coin.Spend{fresh}, 8)
	require.NoError(t, err)
	mustCheck(t, s)
}

func TestIdempotentRetry(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	sp := spends(2, 0, true)
	id, d := reqID(20), digestOf("body")
	_, err := s.Record(ctx, id, d, sp, 2)
	require.NoError(t, err)
	before := stats(t, s)

	// The same request again, even with other coins: nothing new.
	r, err := s.Record(ctx, id, d, spends(1, 5, false), 32)
	require.NoError(t, err)
	assert.True(t, r.Replay)
	assert.Equal(t, uint64(2), r.Value)
	assert.Equal(t, [][32]byte{sp[0].Pub, sp[1].Pub}, r.Coins)
	assert.False(t, r.Answered)
	assert.Equal(t, before, stats(t, s))

	require.NoError(t, s.Answer(ctx, id, d, []byte{}))
	r, err = s.Record(ctx, id, d, sp, 2)
	require.NoError(t, err)
	assert.True(t, r.Replay)
	assert.True(t, r.Answered, "an empty answer is an answer")

	// Same ID, other body.
	_, err = s.Record(ctx, id, digestOf("other body"), sp, 2)
	assert.ErrorIs(t, err, ErrRequestConflict)
	mustCheck(t, s)
}

// Sixty-four goroutines spend the same coin for different requests at
// once: exactly one wins, whichever batches they land in.
func TestConcurrentSameCoin(t *testing.T) {
	for _, group := range []bool{true, false} {
		t.Run(map[bool]string{true: "group", false: "fsync-each"}[group], func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTemp(t, WithGroupCommit(group))
			shared := newSpend(counter.Add(1), 2, false)
			const n = 64
			var wg sync.WaitGroup
			errs := make([]error, n)
			others := make([]*coin.Spend, n)
			start := make(chan struct{})
			for i := range n {
				others[i] = newSpend(counter.Add(1), 0, false)
				wg.Go(func() {
					<-start
					_, errs[i] = s.Record(ctx, reqID(uint64(1000+i)), digestOf("r"),
						[]*coin.Spend{others[i], shared}, 5)
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, winner, "two winners")
					winner = i
					continue
				}
				var ds *DoubleSpendError
				require.ErrorAs(t, err, &ds)
				assert.Equal(t, shared.Pub, ds.CoinPub)
			}
			require.NotEqual(t, -1, winner, "no winner")
			assert.Equal(t, reqID(uint64(1000+winner)), errs[(winner+1)%n].(*DoubleSpendError).RequestID)
			st := stats(t, s)
			assert.Equal(t, uint64(2), st.Coins)
			assert.Equal(t, uint64(1), st.Requests)
			assert.Equal(t, uint64(5), st.PendingValue)
			mustCheck(t, s)
		})
	}
}

// Many concurrent writers of distinct coins share few transactions, and
// every one of them is recorded.
func TestGroupCommitBatches(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	const n = 128
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.Record(ctx, reqID(uint64(5000+i)), digestOf("x"), spends(1, 0, false), 1)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	cs := s.CommitStats()
	assert.Equal(t, uint64(n), cs.Ops)
	assert.Less(t, cs.Commits, uint64(n), "no write shared a transaction")
	assert.Equal(t, uint64(n), stats(t, s).Requests)
	t.Logf("%d writes in %d commits", cs.Ops, cs.Commits)
	mustCheck(t, s)
}

func TestBearerCap(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, WithBearerCap(10))
	_, err := s.Record(ctx, reqID(1), digestOf("a"), spends(1, 3, false), 8) // bearer 8
	require.NoError(t, err)
	_, err = s.Record(ctx, reqID(2), digestOf("b"), spends(1, 2, false), 4) // 12 > 10
	assert.ErrorIs(t, err, ErrBearerCap)
	_, err = s.Record(ctx, reqID(3), digestOf("c"), spends(1, 6, true), 64) // designated: free
	require.NoError(t, err)
	_, err = s.Record(ctx, reqID(4), digestOf("d"), spends(1, 1, false), 2) // 10 ≤ 10
	require.NoError(t, err)
	st := stats(t, s)
	assert.Equal(t, uint64(10), st.PendingBearer)
	assert.Equal(t, uint64(74), st.PendingValue)

	// Depositing frees room under the cap.
	deps, err := s.PendingDeposits(ctx, 10)
	require.NoError(t, err)
	require.Len(t, deps, 3)
	_, err = s.Acknowledge(ctx, []Outcome{{deps[0].Spend.Pub, CoinCredited}})
	require.NoError(t, err)
	_, err = s.Record(ctx, reqID(2), digestOf("b"), spends(1, 2, false), 4)
	require.NoError(t, err)
	mustCheck(t, s)
}

func TestDeposits(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	a, b := spends(2, 0, false), spends(1, 4, true)
	_, err := s.Record(ctx, reqID(1), digestOf("a"), a, 2)
	require.NoError(t, err)
	_, err = s.Record(ctx, reqID(2), digestOf("b"), b, 16)
	require.NoError(t, err)

	deps, err := s.PendingDeposits(ctx, 2)
	require.NoError(t, err)
	require.Len(t, deps, 2, "limit")
	deps, err = s.PendingDeposits(ctx, 100)
	require.NoError(t, err)
	require.Len(t, deps, 3)
	for i, want := range []*coin.Spend{a[0], a[1], b[0]} {
		assert.Equal(t, *want, *deps[i].Spend, "oldest first")
		assert.True(t, deps[i].DepositUntil.IsZero())
	}
	assert.Equal(t, digestOf("a"), deps[0].Digest)
	assert.Equal(t, reqID(2), deps[2].RequestID)

	_, err = s.Acknowledge(ctx, []Outcome{{a[0].Pub, CoinPending}})
	assert.ErrorIs(t, err, ErrBadStatus)

	n, err := s.Acknowledge(ctx, []Outcome{
		{a[0].Pub, CoinCredited},
		{b[0].Pub, CoinDoubleSpent},
		{[32]byte{1}, CoinCredited}, // unknown: skipped
		{a[0].Pub, CoinInvalid},     // repeated: first verdict stays
	})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = s.Acknowledge(ctx, []Outcome{{a[0].Pub, CoinAlreadyCredited}})
	require.NoError(t, err)
	assert.Equal(t, 0, n, "acknowledged before")

	assert.Equal(t, Stats{Coins: 3, Requests: 2, Pending: 1, PendingValue: 1, PendingBearer: 1,
		CreditedValue: 1, LostValue: 16}, stats(t, s))
	info, err := s.Coins(ctx, [][32]byte{a[0].Pub, b[0].Pub, a[1].Pub})
	require.NoError(t, err)
	assert.Equal(t, []CoinState{CoinCredited, CoinDoubleSpent, CoinPending},
		[]CoinState{info[0].State, info[1].State, info[2].State})

	wire, err := s.CoinStatus(ctx, [][32]byte{a[0].Pub, b[0].Pub, a[1].Pub, {7}})
	require.NoError(t, err)
	assert.Equal(t, []pb.CoinState{pb.CoinState_COIN_DEPOSITED, pb.CoinState_COIN_DEPOSITED,
		pb.CoinState_COIN_RECORDED, pb.CoinState_COIN_UNKNOWN},
		[]pb.CoinState{wire[0].State, wire[1].State, wire[2].State, wire[3].State})
	assert.Equal(t, reqID(2), wire[1].RequestID)

	// A credited coin is still spent: it cannot pay again.
	_, err = s.Record(ctx, reqID(3), digestOf("c"), []*coin.Spend{a[0]}, 1)
	assert.ErrorIs(t, err, ErrDoubleSpend)

	require.NoError(t, s.Close())
	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	deps, err = s.PendingDeposits(ctx, 100)
	require.NoError(t, err)
	require.Len(t, deps, 1)
	assert.Equal(t, a[1].Pub, deps[0].Spend.Pub)
	mustCheck(t, s)
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	keysetB := [32]byte{0xbb}
	lookup := func(id [32]byte) (time.Time, bool) {
		switch id {
		case keysetA:
			return t0.Add(time.Hour), true
		case keysetB:
			return t0.Add(48 * time.Hour), true
		}
		return time.Time{}, false
	}
	s, _ := openTemp(t, WithKeysets(lookup))

	early := spends(2, 0, false) // keyset A
	_, err := s.Record(ctx, reqID(1), digestOf("a"), early, 2)
	require.NoError(t, err)
	late := newSpend(counter.Add(1), 3, false)
	late.KeysetID = keysetB
	mixed := append(spends(1, 1, false), late) // A and B: lives until B's deadline
	_, err = s.Record(ctx, reqID(2), digestOf("b"), mixed, 10)
	require.NoError(t, err)
	unknown := newSpend(counter.Add(1), 0, false)
	unknown.KeysetID = [32]byte{0xcc}
	_, err = s.Record(ctx, reqID(3), digestOf("c"), []*coin.Spend{unknown}, 1)
	assert.ErrorIs(t, err, ErrUnknownKeyset)

	deps, err := s.PendingDeposits(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(time.Hour), deps[0].DepositUntil)
	_, err = s.Acknowledge(ctx, []Outcome{{early[0].Pub, CoinCredited}})
	require.NoError(t, err)

	n, err := s.Prune(ctx, t0.Add(time.Hour-time.Second), 100)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "deposit window still open")
	n, err = s.Prune(ctx, t0.Add(time.Hour), 100)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = s.Lookup(ctx, reqID(1))
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Lookup(ctx, reqID(2))
	require.NoError(t, err)
	// early[1] was pruned while pending: lost.
	assert.Equal(t, Stats{Coins: 2, Requests: 1, Pending: 2, PendingValue: 10, PendingBearer: 10,
		CreditedValue: 1, LostValue: 1}, stats(t, s))
	mustCheck(t, s)

	n, err = s.Prune(ctx, t0.Add(49*time.Hour), 100)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, Stats{CreditedValue: 1, LostValue: 11}, stats(t, s))
	mustCheck(t, s)
}

func TestPruneLimit(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := openTemp(t, WithKeysets(func([32]byte) (time.Time, bool) { return t0, true }))
	for i := range 5 {
		_, err := s.Record(ctx, reqID(uint64(i)), digestOf("p"), spends(2, 0, false), 2)
		require.NoError(t, err)
	}
	total := 0
	for {
		n, err := s.Prune(ctx, t0, 2)
		require.NoError(t, err)
		mustCheck(t, s)
		total += n
		if n < 2 {
			break
		}
	}
	assert.Equal(t, 5, total)
	assert.Equal(t, Stats{LostValue: 10}, stats(t, s))
}

func TestContextAndClose(t *testing.T) {
	s, path := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Record(ctx, reqID(1), digestOf("a"), spends(1, 0, false), 1)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.Lookup(context.Background(), reqID(1))
	assert.ErrorIs(t, err, ErrNotFound, "a write cancelled before it was queued never runs")

	// A second Open of the same file waits for the lock and gives up.
	_, err = Open(path, WithOpenTimeout(50*time.Millisecond))
	assert.Error(t, err)

	require.NoError(t, s.Close())
	_, err = s.Record(context.Background(), reqID(2), digestOf("b"), spends(1, 0, false), 1)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Lookup(context.Background(), reqID(2))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Acknowledge(context.Background(), nil)
	assert.ErrorIs(t, err, ErrClosed)
}

// Close while writers are queued: each gets its result or ErrClosed, and
// every write that returned nil is in the file.
func TestCloseUnderLoad(t *testing.T) {
	s, path := openTemp(t, WithMaxBatch(4))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok [][16]byte
	for i := range 64 {
		wg.Go(func() {
			id := reqID(uint64(i))
			_, err := s.Record(context.Background(), id, digestOf("z"), spends(1, 0, false), 1)
			if err == nil {
				mu.Lock()
				ok = append(ok, id)
				mu.Unlock()
				return
			}
			assert.ErrorIs(t, err, ErrClosed)
		})
	}
	time.Sleep(time.Millisecond)
	require.NoError(t, s.Close())
	wg.Wait()
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	for _, id := range ok {
		_, err := s.Lookup(context.Background(), id)
		assert.NoError(t, err)
	}
	assert.Equal(t, uint64(len(ok)), stats(t, s).Requests)
	t.Logf("%d of 64 written before Close", len(ok))
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Option{WithMaxBatch(0), WithMaxQueue(0), WithMaxAnswerSize(-1)} {
		_, err := Open(t.TempDir()+"/x.db", o)
		assert.Error(t, err)
	}
}

func TestDepositState(t *testing.T) {
	for status, want := range map[pb.DepositStatus]CoinState{
		pb.DepositStatus_DEPOSIT_CREDITED:         CoinCredited,
		pb.DepositStatus_DEPOSIT_ALREADY_CREDITED: CoinAlreadyCredited,
		pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:     CoinDoubleSpent,
		pb.DepositStatus_DEPOSIT_INVALID:          CoinInvalid,
		pb.DepositStatus_DEPOSIT_EXPIRED:          CoinExpired,
		pb.DepositStatus_DEPOSIT_REVOKED:          CoinRevoked,
	} {
		got, ok := DepositState(status)
		assert.True(t, ok)
		assert.Equal(t, want, got)
		assert.True(t, got.Final())
	}
	for _, status := range []pb.DepositStatus{pb.DepositStatus_DEPOSIT_STATUS_UNSPECIFIED, 99} {
		_, ok := DepositState(status)
		assert.False(t, ok)
	}
}

func TestCoinStateString(t *testing.T) {
	assert.Equal(t, "double spent", CoinDoubleSpent.String())
	assert.Equal(t, "CoinState(99)", CoinState(99).String())
	assert.True(t, CoinRevoked.Final())
	assert.False(t, CoinPending.Final())
	assert.True(t, errors.Is(&DoubleSpendError{}, protocol.ErrDoubleSpend))
}
