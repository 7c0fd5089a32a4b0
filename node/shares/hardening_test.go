package shares

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// TestWriteBudget: the writes to an open share count against twice its
// size (at least protocol.MinWriteBudget), each at least
// protocol.MinWriteCharge: rewriting it is not free for as long as its
// lease lasts.
func TestWriteBudget(t *testing.T) {
	e := open(t, 1<<30)
	const size = 256 << 10
	_, err := e.Allocate(ctx, newAlloc(alice, si(1), size, time.Hour, 0, 1))
	require.NoError(t, err)
	data := pattern(1, size)
	require.NoError(t, e.Write(ctx, alice, si(1), 0, 0, data))
	require.NoError(t, e.Write(ctx, alice, si(1), 0, 0, data), "a second time: a retry")
	err = e.Write(ctx, alice, si(1), 0, 0, data[:1])
	assert.ErrorIs(t, err, ErrWriteBudget)
	assert.ErrorIs(t, err, protocol.ErrBadRequest)
	require.NoError(t, e.CloseShare(ctx, alice, si(1), 0), "the share written stays closable")

	// Tiny writes count at least MinWriteCharge each.
	n := protocol.WriteBudget(size) / protocol.MinWriteCharge
	for i := range n {
		require.NoError(t, e.Write(ctx, alice, si(1), 1, i, []byte{1}), "write %d", i)
	}
	assert.ErrorIs(t, e.Write(ctx, alice, si(1), 1, 0, nil), ErrWriteBudget)

	// A small share may take MinWriteBudget.
	_, err = e.Allocate(ctx, newAlloc(alice, si(2), 10, time.Hour, 0))
	require.NoError(t, err)
	for i := range protocol.MinWriteBudget / protocol.MinWriteCharge {
		require.NoError(t, e.Write(ctx, alice, si(2), 0, 0, pattern(i, 10)))
	}
	assert.ErrorIs(t, e.Write(ctx, alice, si(2), 0, 0, pattern(0, 10)), ErrWriteBudget)
}

// TestAllocateHeldLarger: an allocation pays for its allocated size per
// share, so a held share larger than that is listed and not renewed; one
// at most that size is renewed. An open share of the writer's is renewed
// only for the same size.
func TestAllocateHeldLarger(t *testing.T) {
	e := open(t, 1<<30)
	t0 := e.clock.Now()
	e.upload(t, alice, si(1), time.Hour, map[uint32][]byte{0: pattern(0, 1000), 1: pattern(1, 10)})
	got, err := e.Allocate(ctx, newAlloc(bob, si(1), 10, 100*time.Hour, 0, 1))
	require.NoError(t, err)
	assert.Equal(t, []uint32{0, 1}, got.AlreadyHave)
	assert.Empty(t, got.Allocated)
	list, err := e.List(ctx, si(1))
	require.NoError(t, err)
	assert.Equal(t, []protocol.ShareInfo{
		{Number: 0, Size: 1000, LeaseExpires: t0.Add(time.Hour)},
		{Number: 1, Size: 10, LeaseExpires: t0.Add(101 * time.Hour)},
	}, list)
	assert.Equal(t, t0.Add(101*time.Hour), got.LeaseExpires)

	_, err = e.Allocate(ctx, newAlloc(alice, si(2), 1000, time.Hour, 0))
	require.NoError(t, err)
	got, err = e.Allocate(ctx, newAlloc(alice, si(2), 1, 100*time.Hour, 0))
	require.NoError(t, err)
	assert.Empty(t, got.Allocated)
	assert.Empty(t, got.AlreadyHave)
	require.NoError(t, e.CloseShare(ctx, alice, si(2), 0))
	list, err = e.List(ctx, si(2))
	require.NoError(t, err)
	assert.Equal(t, t0.Add(time.Hour), list[0].LeaseExpires)
}

// TestAddLeasePriced: AddLease extends the shares it was priced on, as
// they were: not a share closed since, nor one of another size.
func TestAddLeasePriced(t *testing.T) {
	e := open(t, 1<<30)
	t0 := e.clock.Now()
	e.upload(t, alice, si(1), time.Hour, map[uint32][]byte{0: pattern(0, 100)})
	priced, err := e.List(ctx, si(1))
	require.NoError(t, err)
	e.upload(t, alice, si(1), time.Hour, map[uint32][]byte{1: pattern(1, 100)})
	until, err := e.AddLease(ctx, si(1), priced, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(2*time.Hour), until)
	list, err := e.List(ctx, si(1))
	require.NoError(t, err)
	assert.Equal(t, t0.Add(2*time.Hour), list[0].LeaseExpires)
	assert.Equal(t, t0.Add(time.Hour), list[1].LeaseExpires, "closed after pricing: not extended")

	priced[0].Size = 99
	_, err = e.AddLease(ctx, si(1), priced, time.Hour)
	assert.ErrorIs(t, err, ErrNotFound, "a share of another size is not the one priced")
}
