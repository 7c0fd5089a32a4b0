package spentset

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestBearerCapIsRateLimited: a request over the bearer cap is refused
// as RATE_LIMITED (the paywall answers so, promising the client that
// nothing was recorded), and nothing is.
func TestBearerCapIsRateLimited(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, WithBearerCap(1))
	before := stats(t, s)
	_, err := s.Record(ctx, reqID(4000), digestOf("over"), spends(1, 1, false), 2)
	require.ErrorIs(t, err, ErrBearerCap)
	require.ErrorIs(t, err, protocol.ErrRateLimited)
	require.Equal(t, pb.Code_RATE_LIMITED, protocol.CodeOf(err))
	require.Equal(t, before, stats(t, s), "nothing recorded")
	mustCheck(t, s)
}
