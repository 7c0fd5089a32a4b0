package spentset

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// outcome classifies an error as the paywall reads it.
func outcome(err error) string {
	var ds *protocol.DoubleSpendError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ds):
		return "double spend " + string(ds.Coin[:4])
	case errors.Is(err, protocol.ErrBadRequest):
		return "bad request"
	case errors.Is(err, protocol.ErrNotFound):
		return "not found"
	}
	return "other: " + err.Error()
}

// The durable store answers a random sequence of calls exactly as the
// protocol package's reference MemSpentStore does.
func TestConformsToMemSpentStore(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	var ref protocol.SpentStore = protocol.NewMemSpentStore()
	var got protocol.SpentStore = s
	rng := rand.New(rand.NewPCG(1, 2))

	pool := spends(40, 2, false) // few coins: collisions are frequent
	ids := make([][16]byte, 12)
	for i := range ids {
		ids[i] = reqID(uint64(900 + i))
	}
	digests := [][32]byte{digestOf("a"), digestOf("b")}
	pick := func() []*coin.Spend {
		n := 1 + rng.IntN(3)
		out := make([]*coin.Spend, 0, n)
		seen := map[int]bool{}
		for len(out) < n {
			if i := rng.IntN(len(pool)); !seen[i] {
				seen[i] = true
				out = append(out, pool[i])
			}
		}
		return out
	}

	for step := range 600 {
		id, d := ids[rng.IntN(len(ids))], digests[rng.IntN(2)]
		switch rng.IntN(4) {
		case 0, 1:
			sp := pick()
			var value uint64
			for _, x := range sp {
				value += x.Amount
			}
			want, werr := ref.Record(ctx, id, d, sp, value)
			have, herr := got.Record(ctx, id, d, sp, value)
			require.Equal(t, outcome(werr), outcome(herr), "step %d: Record", step)
			if werr == nil {
				require.Equal(t, want, have, "step %d: Record", step)
			}
		case 2:
			body := []byte{byte(step)}
			require.Equal(t, outcome(ref.Answer(ctx, id, d, body)), outcome(got.Answer(ctx, id, d, body)), "step %d: Answer", step)
		case 3:
			want, werr := ref.Lookup(ctx, id)
			have, herr := got.Lookup(ctx, id)
			require.Equal(t, outcome(werr), outcome(herr), "step %d: Lookup", step)
			require.Equal(t, want, have, "step %d: Lookup", step)
		}
	}
	pubs := make([][32]byte, len(pool)+1)
	for i, p := range pool {
		pubs[i] = p.Pub
	}
	want, err := ref.CoinStatus(ctx, pubs)
	require.NoError(t, err)
	have, err := got.CoinStatus(ctx, pubs)
	require.NoError(t, err)
	assert.Equal(t, want, have)
	mustCheck(t, s)
}
