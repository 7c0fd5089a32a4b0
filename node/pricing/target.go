package pricing

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/scripnet/scrip/protocol"
)

// Defaults of [NewTargetAgent].
const (
	// DefaultTarget is the utilisation of the offered space the agent
	// prices toward.
	DefaultTarget = 0.80
	// DefaultHorizon is the time in which sales may fill the room left
	// below the target without raising the price.
	DefaultHorizon = 30 * 24 * time.Hour
	// DefaultRiseTime is the time in which the level doubles under full
	// pressure: at most about 10 % a day.
	DefaultRiseTime = 7 * 24 * time.Hour
	// DefaultDecayTime is the time in which the level halves when nothing
	// sells.
	DefaultDecayTime = 7 * 24 * time.Hour
	// DefaultJitter is the largest relative change that jitter makes to a
	// published rate: ±2 %.
	DefaultJitter = 0.02
)

// Constants of the control law of [TargetAgent].
const (
	// PressureSlack, as a fraction of the capacity, is added to both sides
	// of the pressure ratio, so that a nearly empty room or a trickle of
	// sales does not swing it.
	PressureSlack = 0.01
	// MaxScarcity bounds the scarcity factor, reached when the disk is
	// full.
	MaxScarcity = 8
	// DecayOctaves is how many halvings of the pressure ratio below 1
	// take the pressure to −1: the level decays at full speed only when
	// sales run at 1/16 of the pace that would fill the room in the
	// horizon, or less, and more slowly when they merely lag.
	DecayOctaves = 4
	// MaxLevelLog2 bounds the level: it stays within 2^−6 and 2^6 of the
	// base rates.
	MaxLevelLog2 = 6
)

// DefaultBase are the rates [NewTargetAgent] starts from unless
// [WithBase] sets others: the figures of SPEC.md §8's example,
// meant for a unit worth about a millionth of a US dollar (a
// millisatoshi, say). Operators of other units set their own.
var DefaultBase = protocol.Rates{PerCall: 10, StorePerGiBMonth: 50_000, ReadPerGiB: 1_000, WritePerGiB: 1_000}

// TargetAgent is the default [Agent]. It prices the space it offers
// toward a target utilisation, as a controller that keeps one number, the
// level L = 2^x, from one call of Price to the next.
//
// The control law. With capacity C, used bytes U, the sales of the state
// averaged into a rate v (bytes a second: the sum of Sold over
// len(Sold)·Period), target u*, horizon H, and Δ the time since the
// previous call:
//
//	u = U / C                               utilisation (1 when C = 0)
//	R = max(u*·C − U, 0)                    room left below the target
//	ρ = (v·H + s) / (R + s)                 s = PressureSlack·C + 1 byte
//	e = min(log2 ρ, 1)                      pressure, if ρ ≥ 1
//	e = max(log2 ρ / DecayOctaves, −1)      pressure, if ρ < 1
//	x ← x + e·Δ / RiseTime                  if e > 0: the level rises…
//	x ← x + e·Δ / DecayTime                 if e < 0: …or decays
//	x ← clamp(x, −MaxLevelLog2, MaxLevelLog2)
//	m = min((1 − u*)/(1 − u), MaxScarcity)  scarcity, if u > u* (else 1)
//
// Pressure compares the sales expected over the horizon with the room
// left: when sales would fill the room in exactly H, ρ = 1 and the level
// holds; when they would fill it in H/2 or less, the level doubles every
// RiseTime; when sales stop (v = 0) with at least 15 % of the disk left
// below the target, the level halves every DecayTime. Sales that merely
// lag the pace lower it more slowly (at a quarter of the pace, half as
// fast): clients place shares by ring position, not by price, so a server
// under their ceiling sells little more by being cheaper, while one that
// sells nothing is likely above it. As the disk fills, R shrinks and the
// same sales press harder. At or above the target with no sales ρ = 1:
// the level holds rather than invite sales to fill the disk further.
// The scarcity factor m raises prices at once as the disk fills beyond
// the target: ×2 at 90 %, ×4 at 95 %, ×8 (MaxScarcity) from 97.5 %.
//
// The space rates, StorePerGiBMonth and WritePerGiB, are the base rates
// times L·m; PerCall and ReadPerGiB, which pay for work rather than space,
// stay at the base rates. Each rate is then bounded by the operator's
// floor and cap, multiplied by its own 1 + j with j drawn uniformly from
// [−Jitter, +Jitter], rounded to an integer up or down at random in
// proportion to the fraction (so that small rates move too), and bounded
// again. A rate that sits at its cap or floor thus still varies below or
// above it, and published prices never lock onto one quantised value.
// With jitter 0, rates are rounded to the nearest integer and the agent
// is deterministic.
//
// The level is kept where the storage rate (the write rate, if the base
// storage rate is zero) lies between its floor and cap, so that a level
// pinned at a bound does not wind up beyond it and lag when the pressure
// turns. The first call starts the level from State.Current when it has
// a storage rate, so a restarted server resumes its prices; otherwise
// from L = 1.
//
// A TargetAgent is safe for concurrent use. Its message is always empty.
type TargetAgent struct {
	o agentOptions

	mu      sync.Mutex
	rnd     *rand.Rand
	x       float64 // log2 of the level
	last    time.Time
	started bool
}

var _ Agent = (*TargetAgent)(nil)

// AgentOption configures [NewTargetAgent].
type AgentOption func(*agentOptions) error

type agentOptions struct {
	base    protocol.Rates
	target  float64
	horizon time.Duration
	rise    time.Duration
	decay   time.Duration
	jitter  float64
	src     rand.Source
	limits  Limits
}

// WithBase sets the rates at level 1. Default: [DefaultBase].
func WithBase(r protocol.Rates) AgentOption {
	return func(o *agentOptions) error { o.base = r; return nil }
}

// WithTarget sets the target utilisation, 0 < u < 1. Default:
// [DefaultTarget].
func WithTarget(u float64) AgentOption {
	return func(o *agentOptions) error {
		if !(u > 0 && u < 1) {
			return fmt.Errorf("pricing: target utilisation %v not in (0, 1)", u)
		}
		o.target = u
		return nil
	}
}

// WithHorizon sets the horizon H of the pressure. Default:
// [DefaultHorizon].
func WithHorizon(d time.Duration) AgentOption {
	return func(o *agentOptions) error {
		if d <= 0 {
			return fmt.Errorf("pricing: horizon %v not positive", d)
		}
		o.horizon = d
		return nil
	}
}

// WithRiseTime sets the time in which the level doubles under full
// pressure. Default: [DefaultRiseTime].
func WithRiseTime(d time.Duration) AgentOption {
	return func(o *agentOptions) error {
		if d <= 0 {
			return fmt.Errorf("pricing: rise time %v not positive", d)
		}
		o.rise = d
		return nil
	}
}

// WithDecayTime sets the time in which the level halves when nothing
// sells. Default: [DefaultDecayTime].
func WithDecayTime(d time.Duration) AgentOption {
	return func(o *agentOptions) error {
		if d <= 0 {
			return fmt.Errorf("pricing: decay time %v not positive", d)
		}
		o.decay = d
		return nil
	}
}

// WithJitter sets the largest relative change jitter makes to a rate,
// 0 ≤ j < 0.5; 0 turns jitter off. Default: [DefaultJitter].
func WithJitter(j float64) AgentOption {
	return func(o *agentOptions) error {
		if !(j >= 0 && j < 0.5) {
			return fmt.Errorf("pricing: jitter %v not in [0, 0.5)", j)
		}
		o.jitter = j
		return nil
	}
}

// WithRand sets the source of the jitter. The agent serialises its use.
// Default: a ChaCha8 generator seeded from crypto/rand.
func WithRand(src rand.Source) AgentOption {
	return func(o *agentOptions) error {
		if src == nil {
			return fmt.Errorf("pricing: nil random source")
		}
		o.src = src
		return nil
	}
}

// WithLimits sets the operator's floor and cap on each rate. Default:
// none.
func WithLimits(l Limits) AgentOption {
	return func(o *agentOptions) error { o.limits = l; return nil }
}

// NewTargetAgent returns the default agent, whose control law
// [TargetAgent] describes.
//
// Options and their defaults: [WithBase] ([DefaultBase]), [WithTarget]
// (0.80), [WithHorizon] (30 days), [WithRiseTime] (7 days),
// [WithDecayTime] (7 days), [WithJitter] (0.02), [WithRand] (ChaCha8
// seeded from crypto/rand), [WithLimits] (none).
func NewTargetAgent(opts ...AgentOption) (*TargetAgent, error) {
	o := agentOptions{
		base:    DefaultBase,
		target:  DefaultTarget,
		horizon: DefaultHorizon,
		rise:    DefaultRiseTime,
		decay:   DefaultDecayTime,
		jitter:  DefaultJitter,
	}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	if o.src == nil {
		var seed [32]byte
		crand.Read(seed[:])
		o.src = rand.NewChaCha8(seed)
	}
	return &TargetAgent{o: o, rnd: rand.New(o.src)}, nil
}

// Price returns the rates to publish in s; see [TargetAgent] for how.
func (a *TargetAgent) Price(ctx context.Context, s State) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	u := utilisation(s)
	m := a.scarcity(u)
	if !a.started {
		a.started = true
		a.last = s.Now
		a.x = a.resume(s.Current, m)
	}
	if dt := s.Now.Sub(a.last); dt > 0 {
		e := a.pressure(s)
		if e > 0 {
			a.x += e * float64(dt) / float64(a.o.rise)
		} else {
			a.x += e * float64(dt) / float64(a.o.decay)
		}
		a.last = s.Now
	}
	a.x = a.clampLevel(a.x, m)
	mul := math.Exp2(a.x) * m
	b := a.o.base
	r := protocol.Rates{
		PerCall:          a.publish(float64(b.PerCall), a.o.limits.Floor.PerCall, a.o.limits.Cap.PerCall),
		StorePerGiBMonth: a.publish(float64(b.StorePerGiBMonth)*mul, a.o.limits.Floor.StorePerGiBMonth, a.o.limits.Cap.StorePerGiBMonth),
		ReadPerGiB:       a.publish(float64(b.ReadPerGiB), a.o.limits.Floor.ReadPerGiB, a.o.limits.Cap.ReadPerGiB),
		WritePerGiB:      a.publish(float64(b.WritePerGiB)*mul, a.o.limits.Floor.WritePerGiB, a.o.limits.Cap.WritePerGiB),
	}
	return Decision{Rates: r}, nil
}

// Level returns the level L = 2^x, the multiplier of the space rates
// before scarcity, jitter and limits; 1 before the first call.
func (a *TargetAgent) Level() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return math.Exp2(a.x)
}

func utilisation(s State) float64 {
	if s.Capacity == 0 {
		return 1
	}
	return float64(s.Used) / float64(s.Capacity)
}

// scarcity returns the factor m of utilisation u.
func (a *TargetAgent) scarcity(u float64) float64 {
	t := a.o.target
	if u <= t {
		return 1
	}
	if u >= 1 {
		return MaxScarcity
	}
	return min((1-t)/(1-u), MaxScarcity)
}

// pressure returns e.
func (a *TargetAgent) pressure(s State) float64 {
	c := float64(s.Capacity)
	var sold float64
	for _, b := range s.Sold {
		sold += float64(b)
	}
	var v float64 // bytes a second
	if span := float64(len(s.Sold)) * s.Period.Seconds(); span > 0 {
		v = sold / span
	}
	room := max(a.o.target*c-float64(s.Used), 0)
	slack := PressureSlack*c + 1
	rho := (v*a.o.horizon.Seconds() + slack) / (room + slack)
	if e := math.Log2(rho); e >= 0 {
		return min(e, 1)
	} else {
		return max(e/DecayOctaves, -1)
	}
}

// primary returns the base, floor and cap of the space rate that bounds
// the level.
func (a *TargetAgent) primary() (base, lo, hi uint64) {
	b, l := a.o.base, a.o.limits
	if b.StorePerGiBMonth == 0 {
		return b.WritePerGiB, l.Floor.WritePerGiB, l.Cap.WritePerGiB
	}
	return b.StorePerGiBMonth, l.Floor.StorePerGiBMonth, l.Cap.StorePerGiBMonth
}

// clampLevel bounds x by MaxLevelLog2 and keeps the primary space rate
// between its floor and cap (the cap winning).
func (a *TargetAgent) clampLevel(x, m float64) float64 {
	x = max(-MaxLevelLog2, min(MaxLevelLog2, x))
	base, lo, hi := a.primary()
	if base == 0 {
		return x
	}
	if lo != 0 {
		x = max(x, math.Log2(float64(lo)/(float64(base)*m)))
	}
	if hi != 0 {
		x = min(x, math.Log2(float64(hi)/(float64(base)*m)))
	}
	return x
}

// resume returns the level at which the primary rate of the scarcity m is
// cur's, or 0.
func (a *TargetAgent) resume(cur protocol.Rates, m float64) float64 {
	base, _, _ := a.primary()
	c := cur.StorePerGiBMonth
	if a.o.base.StorePerGiBMonth == 0 {
		c = cur.WritePerGiB
	}
	if base == 0 || c == 0 {
		return 0
	}
	return math.Log2(float64(c) / (float64(base) * m))
}

// publish bounds v, jitters it, rounds it and bounds it again.
func (a *TargetAgent) publish(v float64, lo, hi uint64) uint64 {
	if lo != 0 {
		v = max(v, float64(lo))
	}
	if hi != 0 {
		v = min(v, float64(hi))
	}
	if v <= 0 {
		return bound(0, lo, hi)
	}
	var out uint64
	if j := a.o.jitter; j > 0 {
		v *= 1 + j*(2*a.rnd.Float64()-1)
		f := math.Floor(v)
		if a.rnd.Float64() < v-f {
			f++
		}
		out = toUint(f)
	} else {
		out = toUint(math.Round(v))
	}
	return bound(out, lo, hi)
}

// toUint converts a non-negative integral float, saturating at 2^64 − 1.
func toUint(f float64) uint64 {
	if f >= 1<<64 {
		return math.MaxUint64
	}
	if f <= 0 {
		return 0
	}
	return uint64(f)
}
