package pricing

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// A market's memory across sessions.
//
// A client that forgot what it saw would take the first prices of each
// session as the market: servers that raised their prices just before it
// started would be paid them. So a client saves its market's [History]
// (the ceiling with its time, the servers' prices and service, their
// scores) and restores it when it starts again: the ceiling then rises at
// most at the growth rate since it was last computed, across the restart,
// and a server penalised before is still penalised after, its score
// decaying meanwhile as it would have in memory.
//
// The encoding, version 1 (integers big-endian, times in unix
// milliseconds as two's complement int64, floats as IEEE 754 binary64
// bits):
//
//	magic   "scrip-market-history\x00" (21 bytes)
//	version u8 = 1
//	unit    u8 length (1–32) || the unit (the keyset unit rule)
//	ceiling u8 = 0 (none), or 1 followed by
//	        since i64 || at i64 || 4 × f64 rates (per call, storage,
//	        read, write; finite, 0 to 2^64; since ≤ at)
//	servers u32 count (at most MaxHistoryServers), then each:
//	        u8 length (1–MaxHistoryIDSize) || peer ID bytes ||
//	        u8 priced (0 or 1) || if priced, 4 × u64 rates ||
//	        at i64 || served u64
//	scores  u32 count (at most MaxHistoryScores), then each:
//	        u8 length || peer ID bytes || score f64 (finite, > 0) || at i64
//	sum     SHA-256 of everything before it (32 bytes)
//
// Peer IDs are valid multihashes, in strictly ascending byte order in
// each list. The whole is at most MaxHistorySize bytes, and the encoding
// is canonical: [ParseHistory] accepts exactly what
// [History.MarshalBinary] writes.

// Limits of a [History] and its encoding.
const (
	// HistoryVersion is the version of the encoding written.
	HistoryVersion = 1
	// MaxHistoryServers bounds the servers a history keeps: the ones seen
	// most recently.
	MaxHistoryServers = 4096
	// MaxHistoryScores bounds the scores a history keeps: the highest.
	MaxHistoryScores = 4096
	// MaxHistoryIDSize bounds a peer ID in a history, in bytes. Peer IDs
	// of libp2p keys are at most 46 bytes (an inlined key of 42 bytes).
	MaxHistoryIDSize = 64
	// MaxHistorySize bounds an encoded history, in bytes; every history
	// within the limits above fits.
	MaxHistorySize = 1 << 20
)

const historyMagic = "scrip-market-history\x00"

// Sizes of the encoding's parts.
const (
	historyHeader     = len(historyMagic) + 1
	historyCeiling    = 8 + 8 + 4*8
	historyMinServer  = 1 + 1 + 1 + 8 + 8 // smallest ID, not priced
	historyMaxServer  = 1 + MaxHistoryIDSize + 1 + 4*8 + 8 + 8
	historyMinScore   = 1 + 1 + 8 + 8
	historyMaxScore   = 1 + MaxHistoryIDSize + 8 + 8
	historySumSize    = sha256.Size
	historyMaxEncoded = historyHeader + 1 + coin.MaxUnitLen + 1 + historyCeiling +
		4 + MaxHistoryServers*historyMaxServer + 4 + MaxHistoryScores*historyMaxScore + historySumSize
)

// The limits hold every history within them.
var _ = [MaxHistorySize - historyMaxEncoded]struct{}{}

// History is what a client's market remembers, to be saved between
// sessions ([Market.History]) and restored ([Market.Restore]). Its
// encoding ([History.MarshalBinary], [ParseHistory]) is bounded and
// checked, so a damaged file is refused whole, never half read.
type History struct {
	// Unit is the market's unit.
	Unit string
	// Ceiling is the ceiling, or nil if none was ever set.
	Ceiling *CeilingHistory
	// Servers are the servers seen, at most [MaxHistoryServers], in
	// ascending order of their peer ID bytes.
	Servers []ServerHistory
	// Scores are the servers' scores, at most [MaxHistoryScores], in
	// ascending order of their peer ID bytes.
	Scores []ScoreHistory
}

// CeilingHistory is a market's ceiling.
type CeilingHistory struct {
	// Rates are the ceiling's rates, unrounded: per call, storage, read,
	// write. Each is finite, from 0 to 2^64.
	Rates [4]float64
	// At is when the ceiling was last computed: it may rise at the growth
	// rate from then on. Since is when it was first set; Since ≤ At.
	At, Since time.Time
}

// ServerHistory is what a market knows of one server.
type ServerHistory struct {
	ID peer.ID
	// Priced says whether the server's rates were seen; Rates are them,
	// zero if not.
	Priced bool
	Rates  protocol.Rates
	// At is when the rates were seen, or, if not, when the server first
	// served.
	At time.Time
	// Served counts the paid calls the server served as it should.
	Served uint64
}

// ScoreHistory is one server's score.
type ScoreHistory struct {
	ID peer.ID
	// Score is the score at At, before any decay since: finite and
	// positive.
	Score float64
	At    time.Time
}

// History returns what the market remembers now, for [Market.Restore] in
// a later session: the ceiling, first brought up to date (old sightings
// forgotten, the ceiling moved toward its target), the servers seen most
// recently (at most [MaxHistoryServers]) and the highest scores of its
// [Scores] (at most [MaxHistoryScores]; scores decayed to almost nothing
// are left out). Servers whose peer IDs are not valid are left out.
// Times are kept to the millisecond.
func (m *Market) History() *History {
	now := m.o.now()
	h := &History{Unit: m.unit}
	m.mu.Lock()
	m.ceiling(now) // ErrNoPrices leaves the ceiling as it was
	if m.ceilSet {
		h.Ceiling = &CeilingHistory{Rates: m.ceil, At: toMilli(m.ceilAt), Since: toMilli(m.since)}
	}
	for id, sg := range m.servers {
		if !historyID(id) {
			continue
		}
		sh := ServerHistory{ID: id, Priced: sg.priced, At: toMilli(sg.at), Served: sg.served}
		if sg.priced {
			sh.Rates = sg.rates
		}
		h.Servers = append(h.Servers, sh)
	}
	m.mu.Unlock()
	if len(h.Servers) > MaxHistoryServers {
		// The most recent first; among equals, by ID, so that the choice
		// does not depend on the map's order.
		slices.SortFunc(h.Servers, func(a, b ServerHistory) int {
			if c := b.At.Compare(a.At); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		h.Servers = h.Servers[:MaxHistoryServers]
	}
	slices.SortFunc(h.Servers, func(a, b ServerHistory) int { return cmp.Compare(a.ID, b.ID) })
	h.Scores = m.scores.history(MaxHistoryScores)
	return h
}

// Restore merges h, a history of an earlier session, into the market and
// its [Scores]; it is meant for a market just made, before it observes
// anything. What the market has learnt itself wins: a server it has seen
// keeps its sighting, a server it has scored its score, and a ceiling it
// has set stays. Times after now count as now; servers seen longer than
// the maximum age ago are forgotten, and scores decay from their time, as
// they would have in memory. Restore fails, changing nothing, with an
// error wrapping [ErrBadHistory] if h breaks the rules of its encoding or
// is in another unit.
func (m *Market) Restore(h *History) error {
	if err := h.check(); err != nil {
		return err
	}
	if h.Unit != m.unit {
		return fmt.Errorf("%w: prices in %q, not %q", ErrBadHistory, h.Unit, m.unit)
	}
	now := m.o.now()
	m.mu.Lock()
	for _, s := range h.Servers {
		at := minTime(s.At, now)
		if now.Sub(at) > m.o.maxAge {
			continue
		}
		if _, ok := m.servers[s.ID]; ok {
			continue
		}
		m.servers[s.ID] = &sighting{rates: s.Rates, priced: s.Priced, at: at, served: s.Served}
	}
	if c := h.Ceiling; c != nil && !m.ceilSet {
		m.ceil, m.ceilSet = c.Rates, true
		m.ceilAt = minTime(c.At, now)
		m.since = minTime(c.Since, m.ceilAt)
	}
	m.mu.Unlock()
	m.scores.restore(h.Scores)
	return nil
}

// history returns the highest scores, at most limit, in ascending order
// of peer ID; scores decayed below the pruning level are left out.
func (s *Scores) history(limit int) []ScoreHistory {
	now := s.o.now()
	type ranked struct {
		ScoreHistory
		now float64
	}
	var rs []ranked
	s.mu.Lock()
	for id, sc := range s.m {
		v := s.decayed(sc, now)
		if v < pruneBelow*s.o.threshold || !historyID(id) || !(sc.v > 0) || math.IsInf(sc.v, 0) {
			continue
		}
		rs = append(rs, ranked{ScoreHistory{ID: id, Score: sc.v, At: toMilli(sc.at)}, v})
	}
	s.mu.Unlock()
	if len(rs) > limit {
		slices.SortFunc(rs, func(a, b ranked) int {
			if c := cmp.Compare(b.now, a.now); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		rs = rs[:limit]
	}
	out := make([]ScoreHistory, len(rs))
	for i, r := range rs {
		out[i] = r.ScoreHistory
	}
	slices.SortFunc(out, func(a, b ScoreHistory) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// restore adds the scores of servers the table does not know.
func (s *Scores) restore(hs []ScoreHistory) {
	now := s.o.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		if _, ok := s.m[h.ID]; ok {
			continue
		}
		sc := score{v: h.Score, at: minTime(h.At, now)}
		if s.decayed(sc, now) < pruneBelow*s.o.threshold {
			continue
		}
		s.m[h.ID] = sc
	}
}

func minTime(a, b time.Time) time.Time {
	if a.After(b) {
		return b
	}
	return a
}

// toMilli truncates t to the millisecond, as the encoding keeps it.
func toMilli(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// historyID reports whether id may appear in a history: a valid peer ID
// of at most MaxHistoryIDSize bytes.
func historyID(id peer.ID) bool {
	if len(id) == 0 || len(id) > MaxHistoryIDSize {
		return false
	}
	p, err := peer.IDFromBytes([]byte(id))
	return err == nil && p == id
}

// maxCeilingRate bounds a ceiling rate: 2^64.
const maxCeilingRate = 1 << 64

// check applies the rules of the encoding.
func (h *History) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadHistory}, a...)...)
	}
	if h == nil {
		return bad("none")
	}
	if err := coin.CheckUnit(h.Unit); err != nil {
		return bad("unit: %v", err)
	}
	if c := h.Ceiling; c != nil {
		for _, r := range c.Rates {
			if !(r >= 0 && r <= maxCeilingRate) {
				return bad("ceiling rate %v", r)
			}
		}
		if c.Since.UnixMilli() > c.At.UnixMilli() {
			return bad("ceiling set after it was last computed")
		}
	}
	if len(h.Servers) > MaxHistoryServers {
		return bad("%d servers, over %d", len(h.Servers), MaxHistoryServers)
	}
	for i, s := range h.Servers {
		if !historyID(s.ID) {
			return bad("server %d: not a peer ID", i)
		}
		if i > 0 && h.Servers[i-1].ID >= s.ID {
			return bad("server %d: out of order", i)
		}
		if !s.Priced && s.Rates != (protocol.Rates{}) {
			return bad("server %d: rates but no price seen", i)
		}
	}
	if len(h.Scores) > MaxHistoryScores {
		return bad("%d scores, over %d", len(h.Scores), MaxHistoryScores)
	}
	for i, s := range h.Scores {
		if !historyID(s.ID) {
			return bad("score %d: not a peer ID", i)
		}
		if i > 0 && h.Scores[i-1].ID >= s.ID {
			return bad("score %d: out of order", i)
		}
		if !(s.Score > 0) || math.IsInf(s.Score, 1) {
			return bad("score %d: %v", i, s.Score)
		}
	}
	return nil
}

// MarshalBinary encodes h (version 1, see [ParseHistory]). It fails with
// an error wrapping [ErrBadHistory] if h breaks the encoding's rules.
func (h *History) MarshalBinary() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 128+len(h.Servers)*historyMaxServer/2+len(h.Scores)*historyMaxScore/2)
	b = append(b, historyMagic...)
	b = append(b, HistoryVersion, byte(len(h.Unit)))
	b = append(b, h.Unit...)
	if c := h.Ceiling; c == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(c.Since.UnixMilli()))
		b = binary.BigEndian.AppendUint64(b, uint64(c.At.UnixMilli()))
		for _, r := range c.Rates {
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(r))
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.Servers)))
	for _, s := range h.Servers {
		b = append(b, byte(len(s.ID)))
		b = append(b, s.ID...)
		if s.Priced {
			b = append(b, 1)
			for _, r := range rateArray(s.Rates) {
				b = binary.BigEndian.AppendUint64(b, r)
			}
		} else {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixMilli()))
		b = binary.BigEndian.AppendUint64(b, s.Served)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.Scores)))
	for _, s := range h.Scores {
		b = append(b, byte(len(s.ID)))
		b = append(b, s.ID...)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(s.Score))
		b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixMilli()))
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// ParseHistory decodes a history written by [History.MarshalBinary]. It
// treats b as untrusted: it reads at most [MaxHistorySize] bytes, checks
// the checksum before anything else, allocates only for counts that the
// bytes left can hold, and refuses anything the encoding's rules do not
// allow (an unknown version, a bad unit, peer ID or number, lists out of
// order, bytes left over), with an error wrapping [ErrBadHistory].
func ParseHistory(b []byte) (*History, error) {
	bad := func(format string, a ...any) (*History, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrBadHistory}, a...)...)
	}
	if len(b) > MaxHistorySize {
		return bad("%d bytes, over %d", len(b), MaxHistorySize)
	}
	if len(b) < historyHeader+historySumSize || !bytes.HasPrefix(b, []byte(historyMagic)) {
		return bad("not a market history")
	}
	if v := b[len(historyMagic)]; v != HistoryVersion {
		return bad("version %d, not %d", v, HistoryVersion)
	}
	body, sum := b[:len(b)-historySumSize], b[len(b)-historySumSize:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return bad("checksum does not match: damaged")
	}
	r := historyReader{b: body[historyHeader:]}
	h := &History{Unit: r.str(int(r.u8()))}
	switch r.u8() {
	case 0:
	case 1:
		c := &CeilingHistory{Since: r.time(), At: r.time()}
		for i := range c.Rates {
			c.Rates[i] = r.f64()
		}
		h.Ceiling = c
	default:
		return bad("bad ceiling flag")
	}
	n := r.count(MaxHistoryServers, historyMinServer)
	if r.err == nil && n > 0 {
		h.Servers = make([]ServerHistory, n)
	}
	for i := range h.Servers {
		s := &h.Servers[i]
		s.ID = peer.ID(r.str(int(r.u8())))
		switch r.u8() {
		case 0:
		case 1:
			s.Priced = true
			var a [4]uint64
			for j := range a {
				a[j] = r.u64()
			}
			s.Rates = ratesFrom(a)
		default:
			return bad("server %d: bad price flag", i)
		}
		s.At = r.time()
		s.Served = r.u64()
	}
	n = r.count(MaxHistoryScores, historyMinScore)
	if r.err == nil && n > 0 {
		h.Scores = make([]ScoreHistory, n)
	}
	for i := range h.Scores {
		s := &h.Scores[i]
		s.ID = peer.ID(r.str(int(r.u8())))
		s.Score = r.f64()
		s.At = r.time()
	}
	if r.err != nil {
		return bad("%v", r.err)
	}
	if len(r.b) != 0 {
		return bad("%d bytes left over", len(r.b))
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	return h, nil
}

// historyReader reads the fields of an encoded history; after the first
// failure every read returns zero and err says what failed.
type historyReader struct {
	b   []byte
	err error
}

func (r *historyReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("ends early")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *historyReader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *historyReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *historyReader) f64() float64 { return math.Float64frombits(r.u64()) }

func (r *historyReader) time() time.Time { return time.UnixMilli(int64(r.u64())).UTC() }

// str returns the next n bytes as a string (a copy).
func (r *historyReader) str(n int) string { return string(r.take(n)) }

// count reads a list's length, which must be at most max and leave room
// for that many entries of at least min bytes each.
func (r *historyReader) count(max, min int) int {
	var n uint32
	if b := r.take(4); b != nil {
		n = binary.BigEndian.Uint32(b)
	}
	if r.err != nil {
		return 0
	}
	if n > uint32(max) || int(n)*min > len(r.b) {
		r.err = fmt.Errorf("a list of %d entries, over %d or longer than the bytes left", n, max)
		return 0
	}
	return int(n)
}
