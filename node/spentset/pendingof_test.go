package spentset

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPendingOf: PendingOf returns the pending coins among those asked
// for, in the order asked, as PendingDeposits would, and leaves out
// coins with a verdict and coins not recorded.
func TestPendingOf(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a, b := spends(2, 3, false), spends(1, 2, true)
	_, err := s.Record(ctx, reqID(1), digestOf("one"), a, 16)
	require.NoError(t, err)
	_, err = s.Record(ctx, reqID(2), digestOf("two"), b, 4)
	require.NoError(t, err)
	_, err = s.Acknowledge(ctx, []Outcome{{CoinPub: a[0].Pub, State: CoinCredited}})
	require.NoError(t, err)
	unknown := newSpend(1<<40, 0, false)

	got, err := s.PendingOf(ctx, [][32]byte{b[0].Pub, a[0].Pub, unknown.Pub, a[1].Pub})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, b[0].Bytes(), got[0].Spend.Bytes())
	require.Equal(t, digestOf("two"), got[0].Digest)
	require.Equal(t, reqID(2), got[0].RequestID)
	require.Equal(t, a[1].Bytes(), got[1].Spend.Bytes())
	require.Equal(t, reqID(1), got[1].RequestID)

	none, err := s.PendingOf(ctx, [][32]byte{a[0].Pub, unknown.Pub})
	require.NoError(t, err)
	require.Empty(t, none)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.PendingOf(cctx, [][32]byte{a[1].Pub})
	require.ErrorIs(t, err, context.Canceled)
}
