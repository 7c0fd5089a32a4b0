package pricing

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// oneGiBMonth is a share whose quote is the storage rate.
var oneGiBMonth = protocol.Usage{StoreBytes: protocol.GiB, StoreSeconds: protocol.Month}

func newMarket(t *testing.T, c *fakeClock, opts ...MarketOption) *Market {
	t.Helper()
	m, err := NewMarket("msat", append([]MarketOption{WithMarketClock(c.Now)}, opts...)...)
	require.NoError(t, err)
	return m
}

func sid(i int) peer.ID { return peer.ID(fmt.Sprintf("server-%02d", i)) }

// observeStore makes server sid(first+i) announce a storage rate of
// prices[i].
func observeStore(t *testing.T, m *Market, first int, prices ...uint64) {
	t.Helper()
	for i, p := range prices {
		require.NoError(t, m.Observe(protocol.Schedule{Server: sid(first + i), Unit: "msat", Rates: protocol.Rates{StorePerGiBMonth: p}}))
	}
}

func serve(m *Market, id peer.ID, n int) {
	for range n {
		m.Served(id)
	}
}

func ceilingStore(t *testing.T, m *Market) uint64 {
	t.Helper()
	r, err := m.Ceiling()
	require.NoError(t, err)
	return r.StorePerGiBMonth
}

func TestCeilingPercentile(t *testing.T) {
	for _, tc := range []struct {
		prices []uint64
		want   uint64
	}{
		{[]uint64{100}, 100},
		{[]uint64{10, 20, 30, 40}, 30},
		{[]uint64{40, 10, 30, 20}, 30},
		{[]uint64{10, 20, 30, 40, 50, 60, 70, 80}, 60},
		{[]uint64{10, 20, 30, 40, 50, 60, 70, 80, 90}, 70},
		{[]uint64{5, 5, 5, 100}, 5},
		{[]uint64{5, 100, 100, 100}, 100},
		{[]uint64{0, 0, 0, 7}, 0},
		{[]uint64{math.MaxUint64, 1, 2, math.MaxUint64}, math.MaxUint64},
	} {
		m := newMarket(t, newFakeClock())
		observeStore(t, m, 0, tc.prices...)
		require.Equal(t, tc.want, ceilingStore(t, m), "%v", tc.prices)
	}
}

func TestCeilingPerRate(t *testing.T) {
	m := newMarket(t, newFakeClock())
	for i, r := range []protocol.Rates{
		{PerCall: 1, StorePerGiBMonth: 400, ReadPerGiB: 10, WritePerGiB: 7},
		{PerCall: 2, StorePerGiBMonth: 300, ReadPerGiB: 40, WritePerGiB: 7},
		{PerCall: 3, StorePerGiBMonth: 200, ReadPerGiB: 30, WritePerGiB: 7},
		{PerCall: 4, StorePerGiBMonth: 100, ReadPerGiB: 20, WritePerGiB: 7},
	} {
		require.NoError(t, m.Observe(protocol.Schedule{Server: sid(i), Unit: "msat", Rates: r}))
	}
	c, err := m.Ceiling()
	require.NoError(t, err)
	require.Equal(t, protocol.Rates{PerCall: 3, StorePerGiBMonth: 300, ReadPerGiB: 30, WritePerGiB: 7}, c)
}

func TestCeilingWeightedTowardServers(t *testing.T) {
	// 20 servers that serve, at 100, 110, ... 290, and 1,000 that
	// announce 1 and never serve.
	honest := make([]uint64, 20)
	for i := range honest {
		honest[i] = 100 + 10*uint64(i)
	}
	sybils := make([]uint64, 1000)
	for i := range sybils {
		sybils[i] = 1
	}
	setup := func(opts ...MarketOption) *Market {
		m := newMarket(t, newFakeClock(), opts...)
		observeStore(t, m, 0, honest...)
		for i := range honest {
			serve(m, sid(i), 20)
		}
		observeStore(t, m, 100, sybils...)
		return m
	}
	// The honest servers alone: 240. With the sybils held to a fifth of
	// the weight: the honest servers' 68.75th percentile, 230.
	alone := newMarket(t, newFakeClock())
	observeStore(t, alone, 0, honest...)
	require.Equal(t, uint64(240), ceilingStore(t, alone))
	require.Equal(t, uint64(230), ceilingStore(t, setup()))
	// Without the bound on their share, they would set the ceiling.
	require.Equal(t, uint64(1), ceilingStore(t, setup(WithUnprovenShare(0.99))))
	// With none, they do not count at all.
	require.Equal(t, uint64(240), ceilingStore(t, setup(WithUnprovenShare(0))))

	// Before any server has served, every announcement weighs the same.
	m := newMarket(t, newFakeClock())
	observeStore(t, m, 0, 10, 20, 30, 40)
	require.Equal(t, uint64(30), ceilingStore(t, m))
}

func TestCeilingMaxWeight(t *testing.T) {
	setup := func(opts ...MarketOption) *Market {
		m := newMarket(t, newFakeClock(), opts...)
		observeStore(t, m, 0, 10, 20, 30, 40)
		serve(m, sid(0), 1000)
		for i := 1; i < 4; i++ {
			serve(m, sid(i), 1)
		}
		return m
	}
	// Weights 16, 2, 2, 2: 75 % of 22 is reached at 20.
	require.Equal(t, uint64(20), ceilingStore(t, setup()))
	// Uncapped, the busy server alone sets it.
	require.Equal(t, uint64(10), ceilingStore(t, setup(WithMaxWeight(1e9))))
}

func TestCeilingRisesSlowlyFallsAtOnce(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	observeStore(t, m, 0, 1000, 1000, 1000, 1000)
	require.Equal(t, uint64(1000), ceilingStore(t, m))

	// Everyone doubles: the ceiling follows at 10 % a day, whether asked
	// every hour or once a day.
	observeStore(t, m, 0, 2000, 2000, 2000, 2000)
	require.Equal(t, uint64(1000), ceilingStore(t, m), "not at once")
	for range 24 {
		c.Advance(time.Hour)
		ceilingStore(t, m)
	}
	require.Equal(t, uint64(1100), ceilingStore(t, m))
	c.Advance(day)
	require.Equal(t, uint64(1210), ceilingStore(t, m))
	c.Advance(12 * time.Hour)
	require.Equal(t, uint64(1269), ceilingStore(t, m)) // 1000 · 1.1^2.5
	for range 2 {
		c.Advance(6 * day) // prices are seen again within a week
		observeStore(t, m, 0, 2000, 2000, 2000, 2000)
	}
	require.Equal(t, uint64(2000), ceilingStore(t, m), "reaches the target, no further")
	c.Advance(6 * day)
	observeStore(t, m, 0, 2000, 2000, 2000, 2000)
	require.Equal(t, uint64(2000), ceilingStore(t, m))

	// Prices fall: so does the ceiling, at once.
	observeStore(t, m, 0, 500, 500, 500, 500)
	require.Equal(t, uint64(500), ceilingStore(t, m))

	// From nothing, a rate may first rise to one unit.
	m = newMarket(t, c, WithMaxAge(30*day))
	observeStore(t, m, 0, 0, 0, 0, 0)
	require.Equal(t, uint64(0), ceilingStore(t, m))
	observeStore(t, m, 0, 100, 100, 100, 100)
	require.Equal(t, uint64(1), ceilingStore(t, m))
	c.Advance(7 * day)
	require.Equal(t, uint64(1), ceilingStore(t, m)) // 1.1^7 = 1.95
	c.Advance(day)
	require.Equal(t, uint64(2), ceilingStore(t, m))

	// Another growth rate.
	m = newMarket(t, c, WithCeilingGrowth(1))
	observeStore(t, m, 0, 100)
	require.Equal(t, uint64(100), ceilingStore(t, m))
	observeStore(t, m, 0, 1000)
	c.Advance(day)
	require.Equal(t, uint64(200), ceilingStore(t, m))
}

func TestCeilingForgetsOldPrices(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c, WithMaxAge(day))
	_, err := m.Ceiling()
	require.ErrorIs(t, err, ErrNoPrices)
	_, err = m.Select([]peer.ID{sid(0)}, oneGiBMonth, 1, 1)
	require.ErrorIs(t, err, ErrNoPrices)

	observeStore(t, m, 0, 100, 200, 300, 400)
	serve(m, sid(5), 3) // served, never priced: no weight
	require.Equal(t, uint64(300), ceilingStore(t, m))
	c.Advance(day / 2)
	observeStore(t, m, 2, 30, 40)
	require.Equal(t, uint64(100), ceilingStore(t, m))
	c.Advance(day/2 + time.Second)
	require.Equal(t, uint64(40), ceilingStore(t, m), "only the fresh two count")
	c.Advance(day)
	_, err = m.Ceiling()
	require.ErrorIs(t, err, ErrNoPrices)

	err = m.Observe(protocol.Schedule{Server: sid(0), Unit: "sat", Rates: protocol.Rates{StorePerGiBMonth: 1}})
	require.ErrorIs(t, err, ErrUnit)
}

func TestCeilingIgnoresPenalised(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	observeStore(t, m, 0, 10, 20, 30, 40)
	m.Scores().Report(sid(0), EventCoinsTaken)
	m.Scores().Report(sid(1), EventCoinsTaken)
	require.Equal(t, uint64(40), ceilingStore(t, m), "the cheap cheats do not count")
	c.Advance(day + time.Minute)
	require.Equal(t, uint64(30), ceilingStore(t, m), "until they recover")
}

func TestSelect(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	// Ceiling: the 75th percentile of 100 × 6, 105, 110, 120, 200 is 110,
	// so 121 with the premium.
	observeStore(t, m, 0, 100, 100, 100, 100, 100, 100, 105, 110, 120, 200)
	ring := []peer.ID{sid(9), sid(8), sid(0), sid(0), sid(1), sid(2), sid(3), sid(7), sid(4), sid(5), sid(6), sid(99)}

	sel, err := m.Select(ring, oneGiBMonth, 3, 4)
	require.NoError(t, err)
	// sid(9) at 200 is over even the premium; sid(8) at 120 is within it
	// in the first 4 positions; sid(0) is listed twice.
	require.Equal(t, []peer.ID{sid(8), sid(0), sid(1), sid(2)}, sel.Servers)
	require.Equal(t, []uint64{120, 100, 100, 100}, sel.Quotes)
	require.Equal(t, []uint64{121, 121, 110, 110}, sel.Limits, "positions 0 to 3 of the ring, the duplicate counted")
	require.Equal(t, uint64(420), sel.Total)
	require.Equal(t, uint64(110), sel.Ceiling)

	// Premium over 2 positions only: sid(8) stays in (position 1).
	m2 := newMarket(t, c, WithPremium(10, 2))
	observeStore(t, m2, 0, 100, 100, 100, 100, 100, 100, 105, 110, 120, 200)
	sel, err = m2.Select([]peer.ID{sid(0), sid(1), sid(8), sid(2)}, oneGiBMonth, 2, 4)
	require.NoError(t, err)
	require.Equal(t, []peer.ID{sid(0), sid(1), sid(2)}, sel.Servers, "sid(8) at position 2 gets no premium")

	// Up to n servers, fewer is fine down to happy.
	sel, err = m.Select(ring, oneGiBMonth, 7, 10)
	require.NoError(t, err)
	require.Equal(t, []peer.ID{sid(8), sid(0), sid(1), sid(2), sid(3), sid(7), sid(4), sid(5), sid(6)}, sel.Servers)

	for _, hn := range [][2]int{{0, 1}, {3, 2}, {-1, 5}} {
		_, err = m.Select(ring, oneGiBMonth, hn[0], hn[1])
		require.ErrorIs(t, err, ErrArgument)
	}
}

func TestSelectSkipsPenalisedUntilRecovered(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	observeStore(t, m, 0, 100, 100, 100, 100)
	ring := []peer.ID{sid(0), sid(1), sid(2), sid(3)}
	m.Scores().Report(sid(1), EventCorruptShare)
	sel, err := m.Select(ring, oneGiBMonth, 2, 2)
	require.NoError(t, err)
	require.Equal(t, []peer.ID{sid(0), sid(2)}, sel.Servers)
	c.Advance(day + time.Minute)
	sel, err = m.Select(ring, oneGiBMonth, 2, 2)
	require.NoError(t, err)
	require.Equal(t, []peer.ID{sid(0), sid(1)}, sel.Servers)
}

func TestSelectError(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c, WithPremium(0, 0))
	observeStore(t, m, 0, 80, 95, 110, 120, 150, 300, 110, 110, 120)
	m.Scores().Report(sid(2), EventMintEvidence)
	ring := []peer.ID{sid(0), sid(1), sid(2), sid(3), sid(4), sid(5), sid(6), sid(7), sid(8), sid(20)}
	_, err := m.Select(ring, oneGiBMonth, 7, 10)
	require.ErrorIs(t, err, ErrTooFewServers)
	var se *SelectError
	require.True(t, errors.As(err, &se))
	require.Equal(t, SelectError{
		Need: 7, Found: 6, Servers: 10, Unit: "msat", Ceiling: 120,
		Prices:       []uint64{80, 95, 110, 110, 110, 120, 120, 150, 300},
		AboveCeiling: 2, Penalised: 1, NoPrice: 1,
	}, *se)
	require.Equal(t, "pricing: need 7 servers, found 6 of 10 within the ceiling of 120 msat a share "+
		"(prices seen: 80, 95, 110, 110, 110, 120, 120, 150, … up to 300; 2 above the ceiling, 1 penalised, 1 with no price seen)", err.Error())

	// With a budget.
	m = newMarket(t, c, WithBudget(Budget{Upload: 250}))
	observeStore(t, m, 0, 80, 95, 110, 120)
	_, err = m.Select([]peer.ID{sid(0), sid(1), sid(2), sid(3)}, oneGiBMonth, 3, 4)
	require.ErrorIs(t, err, ErrTooFewServers)
	require.Equal(t, "pricing: need 3 servers, found 2 of 4 within the ceiling of 110 msat a share and the budget of 250 msat "+
		"(prices seen: 80, 95, 110, 120; 2 over the budget)", err.Error())
}

func TestSelectBudget(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c, WithBudget(Budget{Upload: 300, Total: 1000}))
	observeStore(t, m, 0, 100, 100, 150, 50, 100, 200, 200, 200) // ceiling 200
	ring := []peer.ID{sid(0), sid(2), sid(1), sid(3), sid(4)}
	sel, err := m.Select(ring, oneGiBMonth, 3, 4)
	require.NoError(t, err)
	// 100 + 150 fit; 100 more would not; 50 does; then nothing fits.
	require.Equal(t, []peer.ID{sid(0), sid(2), sid(3)}, sel.Servers)
	require.Equal(t, uint64(300), sel.Total)

	// What is left of the total binds once it is below the upload budget.
	m.Charge(800)
	_, err = m.Select(ring, oneGiBMonth, 3, 4)
	require.ErrorIs(t, err, ErrTooFewServers)
	require.Contains(t, err.Error(), "the budget of 200 msat")
	m.Charge(math.MaxUint64)
	require.Equal(t, uint64(math.MaxUint64), m.Spent(), "saturates")
	_, err = m.Select(ring, oneGiBMonth, 1, 4)
	require.Contains(t, err.Error(), "the budget of 0 msat")
}

func TestAllow(t *testing.T) {
	m := newMarket(t, newFakeClock(), WithBudget(Budget{Upload: 100, Download: 50, Total: 120}))
	require.NoError(t, m.Allow(OpUpload, 0, 100))
	require.NoError(t, m.Allow(OpUpload, 60, 40))
	require.ErrorIs(t, m.Allow(OpUpload, 60, 41), ErrOverBudget)
	require.ErrorIs(t, m.Allow(OpUpload, math.MaxUint64, 1), ErrOverBudget)
	require.NoError(t, m.Allow(OpDownload, 0, 50))
	err := m.Allow(OpDownload, 10, 41)
	require.ErrorIs(t, err, ErrOverBudget)
	require.Equal(t, "pricing: over budget: the download would cost at least 51 msat, over its budget of 50", err.Error())
	m.Charge(100)
	require.NoError(t, m.Allow(OpDownload, 0, 20))
	err = m.Allow(OpDownload, 0, 21)
	require.ErrorIs(t, err, ErrOverBudget)
	require.Equal(t, "pricing: over budget: 21 msat more would bring the total to 121, over the budget of 120", err.Error())
	require.ErrorIs(t, m.Allow(Op(9), 0, 0), ErrArgument)

	unbounded := newMarket(t, newFakeClock())
	unbounded.Charge(math.MaxUint64)
	require.NoError(t, unbounded.Allow(OpUpload, math.MaxUint64, math.MaxUint64))
	require.Equal(t, "upload", OpUpload.String())
	require.Equal(t, "op 9", Op(9).String())
}

func TestMarketOptions(t *testing.T) {
	_, err := NewMarket("")
	require.ErrorIs(t, err, ErrArgument)
	for _, o := range []MarketOption{
		WithMarketClock(nil), WithPercentile(0), WithPercentile(1.5), WithPercentile(math.NaN()),
		WithCeilingGrowth(-0.1), WithCeilingGrowth(math.Inf(1)), WithPremium(10, -1), WithPremium(1001, 0),
		WithMaxWeight(0.5), WithUnprovenShare(1), WithUnprovenShare(-0.1), WithMaxAge(0), WithScores(nil),
	} {
		_, err := NewMarket("msat", o)
		require.ErrorIs(t, err, ErrArgument)
	}
	s, err := NewScores()
	require.NoError(t, err)
	m, err := NewMarket("msat", WithScores(s), WithPercentile(1))
	require.NoError(t, err)
	require.Same(t, s, m.Scores())
	observeStore(t, m, 0, 10, 20, 30, 40)
	require.Equal(t, uint64(40), ceilingStore(t, m))
}

func TestAddPercent(t *testing.T) {
	for _, tc := range [][3]uint64{
		{100, 10, 110}, {0, 10, 0}, {9, 10, 9}, {10, 10, 11}, {110, 0, 110},
		{math.MaxUint64, 1, math.MaxUint64}, {math.MaxUint64 / 2, 100, math.MaxUint64 - 1},
		{math.MaxUint64 / 2, 1000, math.MaxUint64}, {1 << 62, 1000, math.MaxUint64},
	} {
		require.Equal(t, tc[2], addPercent(tc[0], tc[1]), "%d + %d %%", tc[0], tc[1])
	}
}
