package spentset

// Attacks on the durable spent set, by an outside reviewer. Every test
// states a defence and asserts that it holds.

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// sameCoin returns a spend of coin pub in another encoding (other
// signature bytes): what a spender can send, since the store is keyed by
// the coin key, never by the spend bytes.
func sameCoin(pub [32]byte, exp uint8) *coin.Spend {
	s := newSpend(counter.Add(1), exp, false)
	s.Pub = pub
	return s
}

// TestAttackConcurrentSameCoin: one coin in 32 concurrent requests (each
// with a coin of its own besides, and its own encoding of the shared
// coin), committed in shared group-commit transactions, is recorded for
// exactly one; the others record nothing at all, not even their own coin.
//
// HOLDS.
func TestAttackConcurrentSameCoin(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	shared := newSpend(counter.Add(1), 3, false)
	const n = 32
	own := spends(n, 1, true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			sp := []*coin.Spend{own[i], sameCoin(shared.Pub, 3)}
			_, errs[i] = s.Record(ctx, reqID(uint64(1000+i)), digestOf(string(rune('a'+i))), sp, 10)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "two requests recorded the same coin")
			winner = i
		}
	}
	require.NotEqual(t, -1, winner)
	for i, err := range errs {
		if i == winner {
			continue
		}
		var ds *DoubleSpendError
		require.ErrorAs(t, err, &ds)
		require.ErrorIs(t, err, protocol.ErrDoubleSpend)
		require.Equal(t, shared.Pub, ds.CoinPub)
		require.Equal(t, reqID(uint64(1000+winner)), ds.RequestID, "names another request than the winner")
	}
	pubs := make([][32]byte, n)
	for i := range own {
		pubs[i] = own[i].Pub
	}
	info, err := s.Coins(ctx, pubs)
	require.NoError(t, err)
	for i, in := range info {
		if i == winner {
			assert.Equal(t, CoinPending, in.State)
		} else {
			assert.Equal(t, CoinUnknown, in.State, "request %d refused but its own coin recorded", i)
		}
	}
	assert.Equal(t, Stats{Coins: 2, Requests: 1, Pending: 2, PendingValue: 8 + 2, PendingBearer: 8}, stats(t, s))
	mustCheck(t, s)
}

// TestAttackConcurrentSameRequestID: 16 bodies racing under one request
// ID: exactly one is recorded, the others are conflicts (bad requests)
// that record nothing; the winner's retry is a replay that writes nothing.
//
// HOLDS.
func TestAttackConcurrentSameRequestID(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	id := reqID(7)
	const n = 16
	sps := make([][]*coin.Spend, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sps[i] = spends(2, 2, false)
		wg.Go(func() { _, errs[i] = s.Record(ctx, id, digestOf(string(rune('A'+i))), sps[i], 8) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner)
			winner = i
			continue
		}
		require.ErrorIs(t, err, ErrRequestConflict)
		require.ErrorIs(t, err, protocol.ErrBadRequest)
	}
	require.NotEqual(t, -1, winner)
	before := stats(t, s)
	r, err := s.Record(ctx, id, digestOf(string(rune('A'+winner))), spends(2, 2, false), 8)
	require.NoError(t, err)
	require.True(t, r.Replay)
	require.Equal(t, []([32]byte){sps[winner][0].Pub, sps[winner][1].Pub}, r.Coins, "the replay names the winner's coins")
	require.Equal(t, before, stats(t, s))
	require.Equal(t, uint64(2), before.Coins)
	mustCheck(t, s)
}

// TestAttackBearerCapRace: 40 concurrent requests of one bearer unit
// each, under a cap of 10, in shared transactions: exactly 10 are
// recorded; designated coins pass the cap.
//
// HOLDS.
func TestAttackBearerCapRace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, WithBearerCap(10))
	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Record(ctx, reqID(uint64(2000+i)), digestOf("b"), spends(1, 0, false), 1)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, ErrBearerCap)
		}
	}
	require.Equal(t, 10, ok)
	require.Equal(t, uint64(10), stats(t, s).PendingBearer)
	_, err := s.Record(ctx, reqID(3000), digestOf("d"), spends(1, 5, true), 32)
	require.NoError(t, err, "a designated coin over the bearer cap")
	mustCheck(t, s)
}

// TestAttackAnswerHijack: an answer cannot be stored for a request under
// another digest, for an unknown request, or over the size limit; the
// first answer stays.
//
// HOLDS.
func TestAttackAnswerHijack(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, WithMaxAnswerSize(16))
	id, d := reqID(9), digestOf("victim")
	_, err := s.Record(ctx, id, d, spends(1, 0, true), 1)
	require.NoError(t, err)
	require.ErrorIs(t, s.Answer(ctx, id, digestOf("attacker"), []byte("poison")), ErrRequestConflict)
	require.ErrorIs(t, s.Answer(ctx, reqID(10), d, []byte("x")), ErrNotFound)
	require.ErrorIs(t, s.Answer(ctx, id, d, make([]byte, 17)), ErrAnswerTooLarge)
	got, err := s.Lookup(ctx, id)
	require.NoError(t, err)
	require.False(t, got.Answered)
	require.NoError(t, s.Answer(ctx, id, d, []byte("real")))
	require.NoError(t, s.Answer(ctx, id, d, []byte("later")))
	got, err = s.Lookup(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []byte("real"), got.Answer)
}

// TestAttackCancelledRecordRetry: a Record whose context ends while it
// waits may or may not have committed. The caller's retry of the same
// request (same ID, digest and spends) must then succeed, as a replay or
// as the first record, and never be refused as a double spend of its own
// coins; no request is recorded twice.
//
// HOLDS.
func TestAttackCancelledRecordRetry(t *testing.T) {
	s, _ := openTemp(t, WithMaxBatch(4))
	const n = 64
	sps := make([][]*coin.Spend, n)
	var wg sync.WaitGroup
	for i := range n {
		sps[i] = spends(2, 1, i%2 == 0)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(400))*time.Microsecond)
			defer cancel()
			id, d := reqID(uint64(5000+i)), digestOf(string(rune(i)))
			if _, err := s.Record(ctx, id, d, sps[i], 4); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("record %d: %v", i, err)
			}
			if _, err := s.Record(context.Background(), id, d, sps[i], 4); err != nil {
				t.Errorf("retry %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	st := stats(t, s)
	require.Equal(t, uint64(n), st.Requests)
	require.Equal(t, uint64(2*n), st.Coins)
	mustCheck(t, s)
}

// TestAttackDuplicateCoinInOneRecord: one coin twice in one request (in
// two encodings), or too many spends, records nothing.
//
// HOLDS.
func TestAttackDuplicateCoinInOneRecord(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a := newSpend(counter.Add(1), 2, false)
	_, err := s.Record(ctx, reqID(1), digestOf("x"), []*coin.Spend{a, sameCoin(a.Pub, 2)}, 8)
	require.ErrorIs(t, err, ErrDuplicateCoin)
	require.ErrorIs(t, err, protocol.ErrBadRequest)
	_, err = s.Record(ctx, reqID(2), digestOf("y"), spends(protocol.MaxSpends+1, 0, true), 65)
	require.ErrorIs(t, err, ErrTooManySpends)
	require.Equal(t, Stats{}, stats(t, s))
}
