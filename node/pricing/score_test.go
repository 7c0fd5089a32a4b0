package pricing

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
)

func newScores(t *testing.T, c *fakeClock, opts ...ScoreOption) *Scores {
	t.Helper()
	s, err := NewScores(append([]ScoreOption{WithScoreClock(c.Now)}, opts...)...)
	require.NoError(t, err)
	return s
}

func TestScoresPenaliseAndRecover(t *testing.T) {
	for _, tc := range []struct {
		events []Event
		for_   time.Duration // how long the server stays penalised; 0: not at all
	}{
		{[]Event{EventTimeout}, 0},
		{[]Event{EventTimeout, EventTimeout, EventTimeout}, 0},
		{[]Event{EventTimeout, EventTimeout, EventTimeout, EventTimeout}, time.Nanosecond},
		{[]Event{EventMissingShare}, 0},
		{[]Event{EventMissingShare, EventMissingShare, EventTimeout, EventTimeout, EventTimeout, EventTimeout}, day},
		{[]Event{EventCorruptShare}, day},
		{[]Event{EventCoinsTaken}, day},
		{[]Event{EventCoinsTaken, EventCorruptShare}, 2 * day},
		{[]Event{EventMintEvidence}, 3 * day},
	} {
		t.Run(fmt.Sprint(tc.events), func(t *testing.T) {
			c := newFakeClock()
			s := newScores(t, c)
			const id = peer.ID("server")
			for _, e := range tc.events {
				s.Report(id, e)
			}
			if tc.for_ == 0 {
				require.False(t, s.Penalised(id))
				require.True(t, s.PenalisedUntil(id).IsZero())
				return
			}
			require.True(t, s.Penalised(id))
			require.WithinDuration(t, epoch.Add(tc.for_), s.PenalisedUntil(id), time.Millisecond)
			c.Advance(tc.for_ - time.Minute)
			require.True(t, s.Penalised(id) || tc.for_ < time.Minute)
			c.Advance(2 * time.Minute)
			require.False(t, s.Penalised(id), "recovered")
			require.True(t, s.PenalisedUntil(id).IsZero())
		})
	}
}

func TestScoresHalfLife(t *testing.T) {
	c := newFakeClock()
	s := newScores(t, c, WithHalfLife(time.Hour))
	const id = peer.ID("a")
	require.Zero(t, s.Score(id))
	s.Report(id, EventCorruptShare)
	require.Equal(t, 8.0, s.Score(id))
	c.Advance(time.Hour)
	require.InDelta(t, 4, s.Score(id), 1e-9)
	s.Report(id, EventTimeout)
	require.InDelta(t, 5, s.Score(id), 1e-9)
	c.Advance(2 * time.Hour)
	require.InDelta(t, 1.25, s.Score(id), 1e-9)
	require.Zero(t, s.Score(peer.ID("b")), "others untouched")

	// A clock back before the last report reads the score as it was
	// then, never more.
	c.Advance(-10 * time.Hour)
	require.InDelta(t, 5, s.Score(id), 1e-9)
}

func TestScoresOptions(t *testing.T) {
	c := newFakeClock()
	s := newScores(t, c, WithThreshold(1), WithEventWeight(EventTimeout, 0), WithEventWeight(EventMissingShare, 1))
	s.Report("a", EventTimeout)
	require.Zero(t, s.Score("a"))
	s.Report("a", EventMissingShare)
	require.True(t, s.Penalised("a"))
	s.Report("b", Event(99))
	require.Zero(t, s.Score("b"), "an event without a weight")

	for _, o := range []ScoreOption{
		WithScoreClock(nil), WithHalfLife(0), WithThreshold(0), WithThreshold(-1),
		WithEventWeight(EventTimeout, -1),
	} {
		_, err := NewScores(o)
		require.ErrorIs(t, err, ErrArgument)
	}
	require.Equal(t, "corrupt share", EventCorruptShare.String())
	require.Equal(t, "event 99", Event(99).String())
}

func TestScoresForgetOld(t *testing.T) {
	c := newFakeClock()
	s := newScores(t, c)
	for i := range pruneEvery - 1 {
		s.Report(peer.ID(fmt.Sprint(i)), EventTimeout)
	}
	c.Advance(30 * day) // 2^-30: forgotten at the next sweep
	s.Report("new", EventTimeout)
	s.mu.Lock()
	n := len(s.m)
	s.mu.Unlock()
	require.Equal(t, 1, n)
}
