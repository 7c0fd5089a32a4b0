package pricing

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/protocol"
)

// Defaults of [NewMarket].
const (
	// DefaultPercentile is the weighted percentile of the prices seen that
	// sets the ceiling.
	DefaultPercentile = 0.75
	// DefaultCeilingGrowth is the most the ceiling rises in a day: 10 %.
	DefaultCeilingGrowth = 0.10
	// DefaultPremium is the premium, in percent of the ceiling, that
	// servers in the first ring positions may be paid.
	DefaultPremium = 10
	// DefaultMaxWeight bounds the weight of one server in the ceiling, in
	// units of the weight of a server that has not served.
	DefaultMaxWeight = 16
	// DefaultUnprovenShare bounds the share of the weight held by servers
	// that have not served, once some server has.
	DefaultUnprovenShare = 0.20
	// DefaultMaxAge is how long a price seen counts.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// Op names a kind of operation with a budget of its own.
type Op int

// Operations.
const (
	// OpUpload is placing a file's shares: allocations and writes.
	OpUpload Op = iota + 1
	// OpDownload is fetching a file's shares: reads.
	OpDownload
)

// String returns "upload" or "download".
func (op Op) String() string {
	switch op {
	case OpUpload:
		return "upload"
	case OpDownload:
		return "download"
	}
	return "op " + strconv.Itoa(int(op))
}

// Budget bounds what a client pays, in the market's unit. A zero field
// sets no bound; the zero value bounds nothing.
type Budget struct {
	// Upload is the most one upload may cost, all shares together.
	Upload uint64
	// Download is the most one download may cost.
	Download uint64
	// Total is the most all payments together may cost: the funds the
	// client supplied.
	Total uint64
}

// Market is a client's market policy: it learns the prices servers
// publish, keeps a ceiling on what the client pays, picks the servers an
// upload places its shares on, and keeps the budgets.
//
// The ceiling is kept per rate (per call, storage, read, write), so that
// it prices any operation: the ceiling of an operation is the quote of
// its usage under the ceiling's rates, and a server qualifies for it when
// its own quote is no higher. For each rate, the target is the weighted
// percentile (default 75th) of that rate over the servers whose prices
// were seen within the maximum age (default 7 days) and that are not
// penalised by the market's [Scores]. A server's weight is 1 plus the
// calls it served ([Market.Served]), at most the maximum weight (default
// 16); once some server has served, the servers that have not hold at
// most the unproven share (default 20 %) of all the weight, their weights
// scaled down together if need be. So announcements from servers that
// never deliver, however many, move the 75th percentile only to the 69th
// of the servers that do. The weighted percentile is the smallest price
// at which the weight of the prices at or below it reaches the percentile
// of the total weight.
//
// The ceiling follows its target down at once and up by at most the
// growth rate (default 10 % a day, compounded over the time since the
// ceiling was last computed; a rate at 0 may first rise to 1 unit). So a
// server may raise its prices only slowly and stay eligible, as the
// clients' people get time to notice and react.
//
// A Market is safe for concurrent use; the zero value is not usable.
type Market struct {
	unit   string
	o      marketOptions
	scores *Scores

	mu      sync.Mutex
	servers map[peer.ID]*sighting
	ceil    [4]float64
	ceilAt  time.Time
	ceilSet bool
	since   time.Time // when the ceiling was first set, if ceilSet
	spent   uint64
}

// sighting is what the market knows of one server.
type sighting struct {
	rates  protocol.Rates
	priced bool      // rates were seen
	at     time.Time // when, or when first served
	served uint64
}

// MarketOption configures [NewMarket].
type MarketOption func(*marketOptions) error

type marketOptions struct {
	now       func() time.Time
	q         float64
	growth    float64
	premium   uint64
	positions int
	maxWeight float64
	unproven  float64
	maxAge    time.Duration
	budget    Budget
	scores    *Scores
}

// WithMarketClock sets the market's clock. Default: time.Now.
func WithMarketClock(now func() time.Time) MarketOption {
	return func(o *marketOptions) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrArgument)
		}
		o.now = now
		return nil
	}
}

// WithPercentile sets the weighted percentile that sets the ceiling, as a
// fraction in (0, 1]. Default: [DefaultPercentile].
func WithPercentile(q float64) MarketOption {
	return func(o *marketOptions) error {
		if !(q > 0 && q <= 1) {
			return fmt.Errorf("%w: percentile %v", ErrArgument, q)
		}
		o.q = q
		return nil
	}
}

// WithCeilingGrowth sets the most the ceiling rises in a day, as a
// fraction (0.10 is 10 %). Default: [DefaultCeilingGrowth].
func WithCeilingGrowth(perDay float64) MarketOption {
	return func(o *marketOptions) error {
		if !(perDay >= 0) || math.IsInf(perDay, 1) {
			return fmt.Errorf("%w: ceiling growth %v", ErrArgument, perDay)
		}
		o.growth = perDay
		return nil
	}
}

// WithPremium lets servers in the first positions of the ring (0: as many
// as the shares of the upload, N) be paid up to percent over the ceiling.
// Default: [DefaultPremium] %, over the first N positions.
func WithPremium(percent uint64, positions int) MarketOption {
	return func(o *marketOptions) error {
		if positions < 0 || percent > 1000 {
			return fmt.Errorf("%w: premium %d%% over %d positions", ErrArgument, percent, positions)
		}
		o.premium, o.positions = percent, positions
		return nil
	}
}

// WithMaxWeight bounds the weight of one server in the ceiling, w ≥ 1.
// Default: [DefaultMaxWeight].
func WithMaxWeight(w float64) MarketOption {
	return func(o *marketOptions) error {
		if !(w >= 1) || math.IsInf(w, 1) {
			return fmt.Errorf("%w: max weight %v", ErrArgument, w)
		}
		o.maxWeight = w
		return nil
	}
}

// WithUnprovenShare bounds the share of the ceiling's weight held by
// servers that have not served, once some server has, 0 ≤ f < 1.
// Default: [DefaultUnprovenShare].
func WithUnprovenShare(f float64) MarketOption {
	return func(o *marketOptions) error {
		if !(f >= 0 && f < 1) {
			return fmt.Errorf("%w: unproven share %v", ErrArgument, f)
		}
		o.unproven = f
		return nil
	}
}

// WithMaxAge sets how long a price seen counts; a server not seen for
// longer is forgotten, with the calls it served. Default:
// [DefaultMaxAge].
func WithMaxAge(d time.Duration) MarketOption {
	return func(o *marketOptions) error {
		if d <= 0 {
			return fmt.Errorf("%w: max age %v", ErrArgument, d)
		}
		o.maxAge = d
		return nil
	}
}

// WithBudget sets the budgets. Default: none.
func WithBudget(b Budget) MarketOption {
	return func(o *marketOptions) error { o.budget = b; return nil }
}

// WithScores sets the score table whose penalised servers the market
// skips for uploads and leaves out of the ceiling. Default: a table of
// its own, [NewScores] with the market's clock.
func WithScores(s *Scores) MarketOption {
	return func(o *marketOptions) error {
		if s == nil {
			return fmt.Errorf("%w: nil scores", ErrArgument)
		}
		o.scores = s
		return nil
	}
}

// NewMarket returns a market for prices in unit, the unit of the client's
// coins; schedules in other units are refused.
//
// Options and their defaults: [WithMarketClock] (time.Now),
// [WithPercentile] (0.75), [WithCeilingGrowth] (0.10 a day),
// [WithPremium] (10 % over the first N positions), [WithMaxWeight] (16),
// [WithUnprovenShare] (0.20), [WithMaxAge] (7 days), [WithBudget] (none),
// [WithScores] (a table of its own on the market's clock).
func NewMarket(unit string, opts ...MarketOption) (*Market, error) {
	if unit == "" {
		return nil, fmt.Errorf("%w: no unit", ErrArgument)
	}
	o := marketOptions{
		now:       time.Now,
		q:         DefaultPercentile,
		growth:    DefaultCeilingGrowth,
		premium:   DefaultPremium,
		maxWeight: DefaultMaxWeight,
		unproven:  DefaultUnprovenShare,
		maxAge:    DefaultMaxAge,
	}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	sc := o.scores
	if sc == nil {
		var err error
		if sc, err = NewScores(WithScoreClock(o.now)); err != nil {
			return nil, err
		}
	}
	return &Market{unit: unit, o: o, scores: sc, servers: make(map[peer.ID]*sighting)}, nil
}

// Scores returns the market's score table, to report events to.
func (m *Market) Scores() *Scores { return m.scores }

// Observe records the rates of a schedule, which the caller has verified
// as signed by s.Server (protocol.VerifySchedule). They replace what was
// seen of that server before. A schedule in another unit is refused with
// [ErrUnit].
func (m *Market) Observe(s protocol.Schedule) error {
	if s.Unit != m.unit {
		return fmt.Errorf("%w: %q, not %q", ErrUnit, s.Unit, m.unit)
	}
	now := m.o.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	sg := m.sighting(s.Server, now)
	sg.rates, sg.priced, sg.at = s.Rates, true, now
	return nil
}

// Served records that server id served a paid call as it should: the
// call was answered and, for a read, the data checked out.
func (m *Market) Served(id peer.ID) {
	now := m.o.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if sg := m.sighting(id, now); sg.served < math.MaxUint64 {
		sg.served++
	}
}

func (m *Market) sighting(id peer.ID, now time.Time) *sighting {
	sg := m.servers[id]
	if sg == nil {
		sg = &sighting{at: now}
		m.servers[id] = sg
	}
	return sg
}

// Ceiling returns the ceiling's rates now, or [ErrNoPrices] if no price
// seen counts.
func (m *Market) Ceiling() (protocol.Rates, error) {
	now := m.o.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ceiling(now)
}

// CeilingSince returns when the ceiling was first set, by this market or
// by an earlier one whose [History] it restored, and false if it never
// was. A ceiling set long ago, or in an earlier session, is history: it
// can rise only at the growth rate since, whatever the servers ask now; a
// ceiling just set is no more than the prices asked now.
func (m *Market) CeilingSince() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.since, m.ceilSet
}

// Bound is the market's ceiling fixed at one moment, to bound the calls of
// an operation that cannot choose its servers as an upload does: a
// download must ask the servers that hold the file's shares, wherever they
// stand on the ring.
type Bound struct {
	// Rates are the ceiling's rates.
	Rates protocol.Rates
	// Premium is the most, in percent of the ceiling's quote, that a call
	// may be paid over it: the market's premium.
	Premium uint64
}

// Bound returns the ceiling now, with the premium, or [ErrNoPrices] if no
// price seen counts.
func (m *Market) Bound() (Bound, error) {
	r, err := m.Ceiling()
	if err != nil {
		return Bound{}, err
	}
	return Bound{Rates: r, Premium: m.o.premium}, nil
}

// Limit returns the quote of usage u under the ceiling's rates, and the
// most a call of usage u may be paid: that quote plus the premium. A usage
// the ceiling cannot price (the quote overflows) is not bounded: both are
// 2^64 − 1.
func (b Bound) Limit(u protocol.Usage) (ceiling, limit uint64) {
	q, err := protocol.Quote(b.Rates, u)
	if err != nil {
		return math.MaxUint64, math.MaxUint64
	}
	return q, addPercent(q, b.Premium)
}

// ceiling forgets old sightings, moves the ceiling toward its target and
// returns it.
func (m *Market) ceiling(now time.Time) (protocol.Rates, error) {
	type entry struct {
		r      [4]uint64
		w      float64
		proven bool
	}
	var es []entry
	var provenW, unprovenW float64
	for id, sg := range m.servers {
		if now.Sub(sg.at) > m.o.maxAge {
			delete(m.servers, id)
			continue
		}
		if !sg.priced || m.scores.Penalised(id) {
			continue
		}
		e := entry{r: rateArray(sg.rates), w: 1, proven: sg.served > 0}
		if e.proven {
			e.w = min(1+float64(sg.served), m.o.maxWeight)
			provenW += e.w
		} else {
			unprovenW += e.w
		}
		es = append(es, e)
	}
	if len(es) == 0 {
		return protocol.Rates{}, ErrNoPrices
	}
	if provenW > 0 && unprovenW > 0 {
		if limit := m.o.unproven / (1 - m.o.unproven) * provenW; unprovenW > limit {
			scale := limit / unprovenW
			for i := range es {
				if !es[i].proven {
					es[i].w *= scale
				}
			}
		}
	}
	var target [4]uint64
	vals := make([]weighted, len(es))
	for d := range target {
		for i, e := range es {
			vals[i] = weighted{v: e.r[d], w: e.w}
		}
		target[d] = percentile(vals, m.o.q)
	}
	var out [4]uint64
	if !m.ceilSet {
		m.ceilSet, m.ceilAt, m.since = true, now, now
		for d, t := range target {
			m.ceil[d] = float64(t)
		}
		return ratesFrom(target), nil
	}
	growth := 1.0
	if dt := now.Sub(m.ceilAt); dt > 0 {
		growth = math.Pow(1+m.o.growth, dt.Hours()/24)
		m.ceilAt = now
	}
	for d, t := range target {
		ft := float64(t)
		c := m.ceil[d]
		if ft > c {
			c = min(ft, max(c, 1)*growth)
		} else {
			c = ft
		}
		m.ceil[d] = c
		if c >= ft {
			out[d] = t
		} else {
			out[d] = toUint(math.Floor(c * (1 + 1e-12))) // forgive rounding in the compounding
		}
	}
	return ratesFrom(out), nil
}

// weighted is one price with its weight.
type weighted struct {
	v uint64
	w float64
}

// percentile returns the smallest value at which the weight of the values
// at or below it reaches q of the total weight. It sorts vals.
func percentile(vals []weighted, q float64) uint64 {
	slices.SortFunc(vals, func(a, b weighted) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	var total float64
	for _, x := range vals {
		total += x.w
	}
	need := q * total * (1 - 1e-12) // forgive rounding in the sums
	var cum float64
	for _, x := range vals {
		if cum += x.w; cum >= need && x.w > 0 {
			return x.v
		}
	}
	return vals[len(vals)-1].v
}

func rateArray(r protocol.Rates) [4]uint64 {
	return [4]uint64{r.PerCall, r.StorePerGiBMonth, r.ReadPerGiB, r.WritePerGiB}
}

func ratesFrom(a [4]uint64) protocol.Rates {
	return protocol.Rates{PerCall: a[0], StorePerGiBMonth: a[1], ReadPerGiB: a[2], WritePerGiB: a[3]}
}

// Selection is where an upload places its shares.
type Selection struct {
	// Servers are the servers chosen, in ring order, at most N.
	Servers []peer.ID
	// Quotes are the price of one share at each server, from its rates as
	// seen; Limits are the most to pay each for one share (the ceiling,
	// or the ceiling with the premium), which a payment policy compares
	// with what the server asks when it is paid.
	Quotes []uint64
	Limits []uint64
	// Total is the sum of Quotes.
	Total uint64
	// Ceiling is the ceiling of one share, before any premium.
	Ceiling uint64
}

// Select picks the servers an upload places its shares on: it walks ring
// (the servers in ring order, as protocol.Ring gives them) and takes, in
// order and each once, the first n servers that are not penalised, whose
// quote for share (the usage of one share's allocation) is within the
// ceiling — or the ceiling plus the premium in the first premium
// positions — and that fit the budget: the upload budget and what is
// left of the total, for all the servers taken together. A server that
// would break the budget is passed over for later, cheaper ones.
//
// If fewer than happy servers qualify (1 ≤ happy ≤ n), Select returns a
// *[SelectError], wrapping [ErrTooFewServers], that says how many were
// found, at what prices, against which ceiling and budget. If N shares go
// to fewer than N servers, some servers hold several and the upload costs
// more than Total; check each payment with [Market.Allow].
func (m *Market) Select(ring []peer.ID, share protocol.Usage, happy, n int) (*Selection, error) {
	if happy < 1 || n < happy {
		return nil, fmt.Errorf("%w: happy %d, n %d", ErrArgument, happy, n)
	}
	now := m.o.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ceil, err := m.ceiling(now)
	if err != nil {
		return nil, err
	}
	cq, err := protocol.Quote(ceil, share)
	if err != nil {
		return nil, fmt.Errorf("pricing: the ceiling cannot price the share: %w", err)
	}
	pq := addPercent(cq, m.o.premium)
	positions := m.o.positions
	if positions == 0 {
		positions = n
	}
	budget, budgeted := m.uploadBudget()

	sel := &Selection{Ceiling: cq}
	se := &SelectError{Need: happy, Unit: m.unit, Ceiling: cq, Budget: budget, Budgeted: budgeted}
	done := make(map[peer.ID]bool, len(ring))
	for pos, id := range ring {
		if len(sel.Servers) == n {
			break
		}
		if done[id] {
			continue
		}
		done[id] = true
		se.Servers++
		sg := m.servers[id]
		if sg == nil || !sg.priced {
			se.NoPrice++
			continue
		}
		q, err := protocol.Quote(sg.rates, share)
		if err != nil {
			se.AboveCeiling++ // a price too large to compute
			continue
		}
		se.Prices = append(se.Prices, q)
		if m.scores.Penalised(id) {
			se.Penalised++
			continue
		}
		limit := cq
		if pos < positions {
			limit = pq
		}
		if q > limit {
			se.AboveCeiling++
			continue
		}
		sum, carry := bits.Add64(sel.Total, q, 0)
		if budgeted && (carry != 0 || sum > budget) {
			se.OverBudget++
			continue
		}
		sel.Servers = append(sel.Servers, id)
		sel.Quotes = append(sel.Quotes, q)
		sel.Limits = append(sel.Limits, limit)
		sel.Total = sum
	}
	if len(sel.Servers) < happy {
		se.Found = len(sel.Servers)
		slices.Sort(se.Prices)
		return nil, se
	}
	return sel, nil
}

// uploadBudget returns the most one upload may cost now, and whether any
// budget applies.
func (m *Market) uploadBudget() (uint64, bool) {
	b := m.o.budget
	limit, ok := b.Upload, b.Upload != 0
	if b.Total != 0 {
		left := b.Total - min(m.spent, b.Total)
		if !ok || left < limit {
			limit = left
		}
		ok = true
	}
	return limit, ok
}

// addPercent returns q + q·p/100, rounded down, saturating.
func addPercent(q, p uint64) uint64 {
	hi, lo := bits.Mul64(q, p)
	if hi >= 100 {
		return math.MaxUint64
	}
	extra, _ := bits.Div64(hi, lo, 100)
	sum, carry := bits.Add64(q, extra, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return sum
}

// Allow reports whether paying amount more for one operation of kind op,
// which has paid spentInOp so far, stays within op's budget and the
// total budget; if not, it returns an error wrapping [ErrOverBudget].
// It does not record the payment: see [Market.Charge].
func (m *Market) Allow(op Op, spentInOp, amount uint64) error {
	var limit uint64
	switch op {
	case OpUpload:
		limit = m.o.budget.Upload
	case OpDownload:
		limit = m.o.budget.Download
	default:
		return fmt.Errorf("%w: %v", ErrArgument, op)
	}
	if sum, carry := bits.Add64(spentInOp, amount, 0); limit != 0 && (carry != 0 || sum > limit) {
		return fmt.Errorf("%w: the %v would cost at least %d %s, over its budget of %d", ErrOverBudget, op, satAdd(spentInOp, amount), m.unit, limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.o.budget.Total; t != 0 {
		if sum, carry := bits.Add64(m.spent, amount, 0); carry != 0 || sum > t {
			return fmt.Errorf("%w: %d %s more would bring the total to %d, over the budget of %d", ErrOverBudget, amount, m.unit, satAdd(m.spent, amount), t)
		}
	}
	return nil
}

// Charge records amount as paid, whatever the budget: coins that left the
// wallet are spent.
func (m *Market) Charge(amount uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spent = satAdd(m.spent, amount)
}

// Spent returns the total recorded by [Market.Charge].
func (m *Market) Spent() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spent
}

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// SelectError explains why [Market.Select] found too few servers. It
// wraps [ErrTooFewServers].
type SelectError struct {
	// Need is happy; Found is how many servers qualified.
	Need, Found int
	// Servers is how many distinct servers the ring holds.
	Servers int
	// Unit is the market's unit.
	Unit string
	// Ceiling is the ceiling of one share, before any premium.
	Ceiling uint64
	// Budget is the most the servers found could cost together, if
	// Budgeted.
	Budget   uint64
	Budgeted bool
	// Prices are the quotes of one share at the servers of the ring whose
	// prices are known, ascending.
	Prices []uint64
	// AboveCeiling, Penalised, NoPrice and OverBudget count the servers
	// passed over for each reason: a quote above the ceiling (with the
	// premium where it applies), a penalising score, no price seen, and a
	// quote that would break the budget.
	AboveCeiling, Penalised, NoPrice, OverBudget int
}

// maxPricesShown bounds the prices an error message lists.
const maxPricesShown = 8

// Error returns one line, such as "pricing: need 7 servers, found 4 of 9
// within the ceiling of 120 msat a share (prices seen: 80, 95, 110, 150,
// 300; 3 above the ceiling, 2 penalised)".
func (e *SelectError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pricing: need %d servers, found %d of %d within the ceiling of %d %s a share", e.Need, e.Found, e.Servers, e.Ceiling, e.Unit)
	if e.Budgeted {
		fmt.Fprintf(&b, " and the budget of %d %s", e.Budget, e.Unit)
	}
	var groups []string
	if len(e.Prices) > 0 {
		ps := make([]string, 0, maxPricesShown)
		for _, p := range e.Prices[:min(len(e.Prices), maxPricesShown)] {
			ps = append(ps, strconv.FormatUint(p, 10))
		}
		s := "prices seen: " + strings.Join(ps, ", ")
		if len(e.Prices) > maxPricesShown {
			s += fmt.Sprintf(", … up to %d", e.Prices[len(e.Prices)-1])
		}
		groups = append(groups, s)
	}
	var skipped []string
	for _, c := range []struct {
		n    int
		what string
	}{
		{e.AboveCeiling, "above the ceiling"},
		{e.Penalised, "penalised"},
		{e.OverBudget, "over the budget"},
		{e.NoPrice, "with no price seen"},
	} {
		if c.n > 0 {
			skipped = append(skipped, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if len(skipped) > 0 {
		groups = append(groups, strings.Join(skipped, ", "))
	}
	if len(groups) > 0 {
		b.WriteString(" (" + strings.Join(groups, "; ") + ")")
	}
	return b.String()
}

// Unwrap returns [ErrTooFewServers].
func (e *SelectError) Unwrap() error { return ErrTooFewServers }
