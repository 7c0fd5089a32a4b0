package shares

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, protocol.ErrNoSpace):
		return "no space"
	case errors.Is(err, protocol.ErrNotFound):
		return "not found"
	case errors.Is(err, protocol.ErrBadRequest):
		return "bad request"
	}
	return "other: " + err.Error()
}

// The disk store answers a random sequence of calls as the protocol
// package's reference MemBackend does, given that it collects expired
// shares whenever the clock moves (the reference forgets them lazily) and
// never abandons an open share (the reference does not).
func TestConformsToMemBackend(t *testing.T) {
	e := open(t, 6000, WithMaxShareSize(1000), WithAbandonAfter(1000*time.Hour))
	ref := protocol.NewMemBackend(6000, 1000, e.clock.Now)
	var got protocol.StorageBackend = e.Backend()
	rng := rand.New(rand.NewPCG(3, 4))
	writers := []peer.ID{alice, bob}
	sizes := map[[16]byte]uint64{si(0): 300, si(1): 700, si(2): 1000} // one size per index
	idxs := [][16]byte{si(0), si(1), si(2)}

	for step := range 1500 {
		w := writers[rng.IntN(2)]
		idx := idxs[rng.IntN(len(idxs))]
		n := uint32(rng.IntN(4))
		size := sizes[idx]
		what := rng.IntN(8)
		switch what {
		case 0:
			shares := []uint32{n}
			if m := uint32(rng.IntN(4)); m != n {
				shares = append(shares, m)
			}
			lease := time.Duration(1+rng.IntN(3)) * time.Hour
			if rng.IntN(4) == 0 {
				size /= 2 // a held share may be larger than the allocation
			}
			a := newAlloc(w, idx, size, lease, shares...)
			require.Equal(t, class(ref.CheckAllocate(ctx, a)), class(got.CheckAllocate(ctx, a)), "step %d: CheckAllocate", step)
			want, werr := ref.Allocate(ctx, a)
			have, herr := got.Allocate(ctx, a)
			require.Equal(t, class(werr), class(herr), "step %d: Allocate", step)
			if werr == nil {
				require.Equal(t, want, have, "step %d: Allocate", step)
			}
		case 1, 2:
			off := uint64(rng.IntN(int(size) + 10))
			data := pattern(step, rng.IntN(100))
			require.Equal(t, class(ref.Write(ctx, w, idx, n, off, data)), class(got.Write(ctx, w, idx, n, off, data)), "step %d: Write", step)
		case 3:
			require.Equal(t, class(ref.Close(ctx, w, idx, n)), class(got.Close(ctx, w, idx, n)), "step %d: Close", step)
		case 4:
			off, length := uint64(rng.IntN(int(size)+10)), uint64(1+rng.IntN(400))
			want, werr := ref.Read(ctx, idx, n, off, length)
			have, herr := got.Read(ctx, idx, n, off, length)
			require.Equal(t, class(werr), class(herr), "step %d: Read", step)
			require.True(t, bytes.Equal(want, have), "step %d: Read: %x, want %x", step, have, want)
		case 5:
			want, werr := ref.List(ctx, idx)
			have, herr := got.List(ctx, idx)
			require.Equal(t, class(werr), class(herr), "step %d: List", step)
			require.Equal(t, want, have, "step %d: List", step)
		case 6:
			lease := time.Duration(1+rng.IntN(3)) * time.Hour
			// The shares priced: what List says, sometimes only some of
			// them, or with a size that is not the share's.
			priced, err := ref.List(ctx, idx)
			require.NoError(t, err)
			switch rng.IntN(4) {
			case 0:
				priced = priced[:rng.IntN(len(priced)+1)]
			case 1:
				if len(priced) > 0 {
					priced[rng.IntN(len(priced))].Size++
				}
			}
			want, werr := ref.AddLease(ctx, idx, priced, lease)
			have, herr := got.AddLease(ctx, idx, priced, lease)
			require.Equal(t, class(werr), class(herr), "step %d: AddLease", step)
			require.Equal(t, want, have, "step %d: AddLease", step)
		case 7:
			e.clock.Advance(time.Duration(rng.IntN(40)) * time.Minute)
			_, err := e.Collect(ctx)
			require.NoError(t, err)
			want, _ := ref.Space(ctx)
			have, err := got.Space(ctx)
			require.NoError(t, err)
			require.Equal(t, want, have, "step %d: Space", step)
		}
	}
}
