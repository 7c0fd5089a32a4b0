package pricing

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// newAgent returns a deterministic agent; jitter 0 unless opts say.
func newAgent(t *testing.T, opts ...AgentOption) *TargetAgent {
	t.Helper()
	a, err := NewTargetAgent(append([]AgentOption{WithJitter(0), WithRand(rand.NewPCG(1, 2))}, opts...)...)
	require.NoError(t, err)
	return a
}

// hourly is a State for a disk of capacity c with used bytes u, selling
// perDay bytes a day, sampled in hourly periods over the last day.
func hourly(now time.Time, c, u, perDay uint64) State {
	sold := make([]uint64, 24)
	for i := range sold {
		sold[i] = perDay / 24
	}
	return State{Now: now, Capacity: c, Used: u, Period: time.Hour, Sold: sold}
}

func price(t *testing.T, a Agent, s State) protocol.Rates {
	t.Helper()
	d, err := a.Price(context.Background(), s)
	require.NoError(t, err)
	return d.Rates
}

func TestTargetFirstCallIsBaseTimesScarcity(t *testing.T) {
	for _, tc := range []struct {
		name       string
		c, u       uint64
		store, wr  uint64
		call, read uint64
	}{
		{"empty", tib, 0, 50_000, 1_000, 10, 1_000},
		{"at target", tib, tib * 8 / 10, 50_000, 1_000, 10, 1_000},
		{"90 %", tib, tib * 9 / 10, 100_000, 2_000, 10, 1_000},
		{"95 %", tib, tib * 95 / 100, 200_000, 4_000, 10, 1_000},
		{"full", tib, tib, 400_000, 8_000, 10, 1_000},
		{"overfull", tib, 2 * tib, 400_000, 8_000, 10, 1_000},
		{"no capacity", 0, 0, 400_000, 8_000, 10, 1_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := price(t, newAgent(t), State{Now: epoch, Capacity: tc.c, Used: tc.u})
			require.InDelta(t, tc.store, r.StorePerGiBMonth, 1)
			require.InDelta(t, tc.wr, r.WritePerGiB, 1)
			require.Equal(t, tc.call, r.PerCall, "per call stays at base")
			require.Equal(t, tc.read, r.ReadPerGiB, "read stays at base")
		})
	}
}

func TestTargetDecaysWhenIdle(t *testing.T) {
	a := newAgent(t)
	s := State{Now: epoch, Capacity: tib, Used: tib * 3 / 10, Period: time.Hour, Sold: make([]uint64, 24)}
	prev := price(t, a, s).StorePerGiBMonth
	require.Equal(t, uint64(50_000), prev)
	for h := 1; h <= 14*24; h++ {
		s.Now = epoch.Add(time.Duration(h) * time.Hour)
		r := price(t, a, s)
		require.LessOrEqual(t, r.StorePerGiBMonth, prev, "hour %d", h)
		prev = r.StorePerGiBMonth
		switch h {
		case 7 * 24:
			require.InDelta(t, 25_000, r.StorePerGiBMonth, 1, "halves in a week")
		case 14 * 24:
			require.InDelta(t, 12_500, r.StorePerGiBMonth, 1, "and again")
		}
	}
	// It bottoms out at 2^-6 of the base.
	s.Now = s.Now.Add(365 * day)
	require.InDelta(t, 50_000.0/64, price(t, a, s).StorePerGiBMonth, 1)
}

func TestTargetRisesWhenSalesOutpaceRoom(t *testing.T) {
	a := newAgent(t)
	// Half full, selling 3 % of the disk a day: 90 % in the 30-day
	// horizon against 30 % of room, so ρ > 2 and the level doubles in a
	// week.
	const c = tib
	perDay := uint64(c * 3 / 100)
	prev := price(t, a, hourly(epoch, c, c/2, perDay)).StorePerGiBMonth
	for h := 1; h <= 7*24; h++ {
		r := price(t, a, hourly(epoch.Add(time.Duration(h)*time.Hour), c, c/2, perDay))
		require.GreaterOrEqual(t, r.StorePerGiBMonth, prev)
		prev = r.StorePerGiBMonth
	}
	require.InDelta(t, 100_000, prev, 1)
	require.InDelta(t, 2, a.Level(), 1e-9)
}

func TestTargetRisesAsTheDiskFills(t *testing.T) {
	// Steady sales of 1 % of the disk a day fill it from 10 % to 80 %.
	// At first there is room for more than the horizon's sales and the
	// price drifts down; as the room shrinks below 30 days of sales the
	// price turns and rises, and keeps rising.
	a := newAgent(t)
	const c = tib
	perDay := uint64(c / 100)
	var store []uint64
	for d := 0; d <= 70; d++ {
		used := c/10 + uint64(d)*perDay
		store = append(store, price(t, a, hourly(epoch.Add(time.Duration(d)*day), c, used, perDay)).StorePerGiBMonth)
	}
	turn := 0
	for i := 1; i < len(store); i++ {
		if store[i] > store[i-1] {
			turn = i
			break
		}
	}
	require.Greater(t, turn, 0, "the price rises at some point: %v", store)
	for i := turn; i < len(store); i++ {
		require.GreaterOrEqual(t, store[i], store[i-1], "day %d: %v", i, store)
	}
	require.Greater(t, store[70], store[turn-1]*3/2, "and rises well: %v", store)
}

func TestTargetHoldsAboveTargetWithoutSales(t *testing.T) {
	a := newAgent(t)
	s := State{Now: epoch, Capacity: tib, Used: tib * 85 / 100}
	first := price(t, a, s)
	s.Now = epoch.Add(30 * day)
	require.Equal(t, first, price(t, a, s))
}

func TestTargetMonotone(t *testing.T) {
	// From the same start, three days of a constant state: more use, or
	// more sales, never gives a lower price. With jitter the order holds
	// up to the jitter.
	run := func(a Agent, used, perDay uint64) uint64 {
		var r protocol.Rates
		for h := 0; h <= 72; h++ {
			r = price(t, a, hourly(epoch.Add(time.Duration(h)*time.Hour), tib, used, perDay))
		}
		return r.StorePerGiBMonth
	}
	fractions := []uint64{0, 10, 30, 50, 70, 79, 80, 85, 90, 95, 99, 100}
	sales := []uint64{0, tib / 1000, tib / 200, tib / 100, tib / 50, tib / 10}
	for _, jitter := range []float64{0, DefaultJitter} {
		tol := 1 + 2*jitter
		for _, perDay := range sales {
			prev := uint64(0)
			for _, f := range fractions {
				p := run(newAgent(t, WithJitter(jitter)), tib*f/100, perDay)
				require.GreaterOrEqual(t, float64(p)*tol+1, float64(prev), "jitter %v, sales %d/day, %d%% used", jitter, perDay, f)
				prev = p
			}
		}
		for _, f := range fractions {
			prev := uint64(0)
			for _, perDay := range sales {
				p := run(newAgent(t, WithJitter(jitter)), tib*f/100, perDay)
				require.GreaterOrEqual(t, float64(p)*tol+1, float64(prev), "jitter %v, %d%% used, sales %d/day", jitter, f, perDay)
				prev = p
			}
		}
	}
}

func TestTargetLimits(t *testing.T) {
	l := Limits{
		Floor: protocol.Rates{StorePerGiBMonth: 40_000, PerCall: 20},
		Cap:   protocol.Rates{StorePerGiBMonth: 60_000, WritePerGiB: 1_100, ReadPerGiB: 500},
	}
	a := newAgent(t, WithLimits(l), WithJitter(DefaultJitter))
	check := func(r protocol.Rates) {
		t.Helper()
		require.Equal(t, r, l.Apply(r), "within the limits")
		require.GreaterOrEqual(t, r.PerCall, uint64(20))
		require.LessOrEqual(t, r.ReadPerGiB, uint64(500))
	}
	now := epoch
	step := func(used, perDay uint64) protocol.Rates {
		now = now.Add(time.Hour)
		r := price(t, a, hourly(now, tib, used, perDay))
		check(r)
		return r
	}
	// Idle for two months: the storage rate sits at its floor (jitter
	// only above it) while the level does not wind down below it.
	var r protocol.Rates
	for range 60 * 24 {
		r = step(tib/10, 0)
	}
	require.InDelta(t, 40_000, r.StorePerGiBMonth, 40_000*DefaultJitter+1)
	// Sales outpace the room: the price leaves the floor within a day,
	// not after the weeks a wound-down level would need.
	for range 24 {
		r = step(tib/2, tib/50)
	}
	require.Greater(t, r.StorePerGiBMonth, uint64(42_000))
	// Then it reaches the cap and stays at it, jittering below it.
	seen := map[uint64]bool{}
	for range 30 * 24 {
		r = step(tib/2, tib/50)
		seen[r.StorePerGiBMonth] = true
	}
	require.InDelta(t, 60_000, r.StorePerGiBMonth, 60_000*DefaultJitter+1)
	require.Greater(t, len(seen), 10, "not locked at the cap")
	// Sales stop: it leaves the cap within a day.
	for range 24 {
		r = step(tib/2, 0)
	}
	require.Less(t, r.StorePerGiBMonth, uint64(57_000))
}

func TestLimitsApply(t *testing.T) {
	l := Limits{Floor: protocol.Rates{PerCall: 5, ReadPerGiB: 100}, Cap: protocol.Rates{PerCall: 10, ReadPerGiB: 50}}
	require.Equal(t, protocol.Rates{PerCall: 5, ReadPerGiB: 50, StorePerGiBMonth: 7}, l.Apply(protocol.Rates{PerCall: 1, ReadPerGiB: 70, StorePerGiBMonth: 7}), "the cap wins")
	require.Equal(t, protocol.Rates{PerCall: 10, ReadPerGiB: 50}, l.Apply(protocol.Rates{PerCall: 11, ReadPerGiB: math.MaxUint64}))
	var none Limits
	r := protocol.Rates{PerCall: 1, StorePerGiBMonth: 2, ReadPerGiB: 3, WritePerGiB: math.MaxUint64}
	require.Equal(t, r, none.Apply(r))
}

func TestTargetJitter(t *testing.T) {
	a, err := NewTargetAgent(WithRand(rand.NewPCG(7, 7)))
	require.NoError(t, err)
	s := State{Now: epoch, Capacity: tib}
	const n = 2000
	base := DefaultBase
	var sum [4]float64
	distinct := [4]map[uint64]bool{{}, {}, {}, {}}
	var prev protocol.Rates
	same := 0
	for i := range n {
		r := price(t, a, s) // same Now: the level does not move
		for d, v := range rateArray(r) {
			b := float64(rateArray(base)[d])
			require.GreaterOrEqual(t, float64(v), math.Floor(b*(1-DefaultJitter)), "dimension %d", d)
			require.LessOrEqual(t, float64(v), math.Ceil(b*(1+DefaultJitter)), "dimension %d", d)
			sum[d] += float64(v)
			distinct[d][v] = true
		}
		if i > 0 && r == prev {
			same++
		}
		prev = r
	}
	for d := range sum {
		b := float64(rateArray(base)[d])
		require.InDelta(t, b, sum[d]/n, b*0.002+0.05, "unbiased, dimension %d", d)
		require.Greater(t, len(distinct[d]), 2, "never one value, dimension %d", d)
	}
	require.Less(t, same, n/100, "successive schedules differ")
}

func TestTargetDeterministic(t *testing.T) {
	seq := func() []protocol.Rates {
		a, err := NewTargetAgent(WithRand(rand.NewPCG(42, 1)))
		require.NoError(t, err)
		var out []protocol.Rates
		for h := range 200 {
			out = append(out, price(t, a, hourly(epoch.Add(time.Duration(h)*time.Hour), tib, tib/3, tib/40)))
		}
		return out
	}
	require.Equal(t, seq(), seq())
}

func TestTargetResumesFromCurrent(t *testing.T) {
	a := newAgent(t)
	r := price(t, a, State{Now: epoch, Capacity: tib, Current: protocol.Rates{StorePerGiBMonth: 80_000}})
	require.InDelta(t, 80_000, r.StorePerGiBMonth, 1)
	require.InDelta(t, 1_600, r.WritePerGiB, 1)
	require.InDelta(t, 1.6, a.Level(), 1e-9)

	// Only the storage rate counts; with no base storage rate, the write
	// rate does.
	a = newAgent(t, WithBase(protocol.Rates{WritePerGiB: 1_000}))
	r = price(t, a, State{Now: epoch, Capacity: tib, Current: protocol.Rates{WritePerGiB: 3_000, StorePerGiBMonth: 1}})
	require.Equal(t, protocol.Rates{WritePerGiB: 3_000}, r)
}

func TestTargetClockBackwards(t *testing.T) {
	a := newAgent(t)
	s := hourly(epoch, tib, tib/2, tib/10)
	price(t, a, s)
	s.Now = epoch.Add(-day)
	price(t, a, s)
	require.Equal(t, 1.0, a.Level(), "no move backwards")
	s.Now = epoch.Add(7 * day)
	price(t, a, s)
	require.InDelta(t, 2, a.Level(), 1e-9, "a week from the last time seen")
}

func TestTargetZeroBaseStaysFree(t *testing.T) {
	a := newAgent(t, WithBase(protocol.Rates{}), WithJitter(DefaultJitter))
	for h := range 50 {
		require.Equal(t, protocol.Rates{}, price(t, a, hourly(epoch.Add(time.Duration(h)*time.Hour), tib, tib/2, tib/10)))
	}
}

func TestTargetHugeRatesSaturate(t *testing.T) {
	a := newAgent(t, WithBase(protocol.Rates{StorePerGiBMonth: math.MaxUint64 / 2}))
	r := price(t, a, State{Now: epoch, Capacity: tib, Used: tib})
	require.Equal(t, uint64(math.MaxUint64), r.StorePerGiBMonth)
}

func TestTargetOptions(t *testing.T) {
	for _, o := range []AgentOption{
		WithTarget(0), WithTarget(1), WithTarget(math.NaN()),
		WithHorizon(0), WithRiseTime(-1), WithDecayTime(0),
		WithJitter(-0.1), WithJitter(0.5), WithJitter(math.NaN()), WithRand(nil),
	} {
		_, err := NewTargetAgent(o)
		require.Error(t, err)
	}
	a, err := NewTargetAgent(WithTarget(0.5), WithHorizon(day), WithRiseTime(day), WithDecayTime(2*day), WithJitter(0))
	require.NoError(t, err)
	// 40 % used, selling 30 % a day: ρ = (0.3 + 0.01)/(0.1 + 0.01) > 2.
	price(t, a, hourly(epoch, tib, tib*4/10, tib*3/10))
	price(t, a, hourly(epoch.Add(day), tib, tib*4/10, tib*3/10))
	require.InDelta(t, 2, a.Level(), 1e-9)
	price(t, a, hourly(epoch.Add(3*day), tib, tib/10, 0)) // idle, 40 % of room
	require.InDelta(t, 1, a.Level(), 1e-9)
}

func TestTargetCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newAgent(t).Price(ctx, State{Now: epoch})
	require.ErrorIs(t, err, context.Canceled)
}

func TestTargetConcurrent(t *testing.T) {
	a, err := NewTargetAgent()
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for h := range 100 {
				price(t, a, hourly(epoch.Add(time.Duration(g*100+h)*time.Minute), tib, tib/2, tib/100))
			}
		})
	}
	wg.Wait()
}

func TestPressure(t *testing.T) {
	a := newAgent(t)
	// 30 % used: 50 % of the disk is room below the target; the horizon
	// is 30 days, so a pace of C/60 a day fills the room in the horizon.
	pace := uint64(tib / 60)
	for _, tc := range []struct {
		name   string
		used   uint64
		perDay uint64
		e      float64
	}{
		{"no sales", tib * 3 / 10, 0, -1},
		{"1/16 pace", tib * 3 / 10, pace / 16, -0.91}, // the slack counts
		{"quarter pace", tib * 3 / 10, pace / 4, -0.48},
		{"half pace", tib * 3 / 10, pace / 2, -0.24},
		{"on pace", tib * 3 / 10, pace, 0},
		{"1.5 × pace", tib * 3 / 10, pace * 3 / 2, 0.57},
		{"double pace", tib * 3 / 10, 2 * pace, 0.99},
		{"triple pace", tib * 3 / 10, 3 * pace, 1},
		{"at target, no sales", tib * 8 / 10, 0, 0},
		{"above target, no sales", tib * 9 / 10, 0, 0},
		{"at target, selling", tib * 8 / 10, tib / 1000, 1},
		{"no capacity, selling", 0, 1 << 20, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := hourly(epoch, tib, tc.used, tc.perDay)
			if tc.name == "no capacity, selling" {
				s.Capacity = 0
			}
			require.InDelta(t, tc.e, a.pressure(s), 0.01)
		})
	}
	// A state with no periods, or periods of no length, has no sales.
	require.Equal(t, -1.0, a.pressure(State{Capacity: tib, Sold: []uint64{tib}}))
	require.Equal(t, -1.0, a.pressure(State{Capacity: tib, Period: time.Hour}))
}
