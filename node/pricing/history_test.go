package pricing

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/history-v1.hex")

// pid returns the peer ID of the Ed25519 key whose seed is i, big-endian:
// a real peer ID, as a history keeps only those.
func pid(i int) peer.ID {
	seed := make([]byte, ed25519.SeedSize)
	binary.BigEndian.PutUint64(seed[len(seed)-8:], uint64(i))
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		panic(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return id
}

// observePid makes server pid(first+i) announce a storage rate of
// prices[i].
func observePid(t *testing.T, m *Market, first int, prices ...uint64) {
	t.Helper()
	for i, p := range prices {
		require.NoError(t, m.Observe(protocol.Schedule{Server: pid(first + i), Unit: "msat", Rates: protocol.Rates{PerCall: 1, StorePerGiBMonth: p}}))
	}
}

// save returns the encoding of what m remembers now.
func save(t *testing.T, m *Market) []byte {
	t.Helper()
	b, err := m.History().MarshalBinary()
	require.NoError(t, err)
	return b
}

// load returns a market, on the clock c, that restored the history b.
func load(t *testing.T, b []byte, c *fakeClock, opts ...MarketOption) *Market {
	t.Helper()
	h, err := ParseHistory(b)
	require.NoError(t, err)
	m := newMarket(t, c, opts...)
	require.NoError(t, m.Restore(h))
	return m
}

// restart saves m and loads it again at once.
func restart(t *testing.T, m *Market, c *fakeClock) *Market {
	t.Helper()
	return load(t, save(t, m), c)
}

// TestHistoryCeilingAcrossRestart: a market restored from its history
// lets the ceiling rise at 10 % a day since it was last computed, however
// much the servers ask after the restart; a fresh market would take their
// prices as they are.
func TestHistoryCeilingAcrossRestart(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	_, ok := m.CeilingSince()
	require.False(t, ok)
	observePid(t, m, 0, 1000, 1000, 1000, 1000)
	require.Equal(t, uint64(1000), ceilingStore(t, m))
	since, ok := m.CeilingSince()
	require.True(t, ok)
	require.Equal(t, epoch, since)

	b := save(t, m) // the client stops
	c.Advance(day)  // and starts again a day later
	m2 := load(t, b, c)
	since, ok = m2.CeilingSince()
	require.True(t, ok)
	require.Equal(t, epoch, since, "the ceiling is as old as it was")
	observePid(t, m2, 0, 5000, 5000, 5000, 5000) // everyone asks 5×
	require.Equal(t, uint64(1100), ceilingStore(t, m2), "10 % in the day since")
	fresh := newMarket(t, c)
	observePid(t, fresh, 0, 5000, 5000, 5000, 5000)
	require.Equal(t, uint64(5000), ceilingStore(t, fresh), "without history, the prices asked are the market")

	// Growth keeps compounding from the last computation, across more
	// restarts.
	b = save(t, m2)
	c.Advance(day)
	m3 := load(t, b, c)
	observePid(t, m3, 0, 5000, 5000, 5000, 5000)
	require.Equal(t, uint64(1210), ceilingStore(t, m3))

	// Falls at once.
	m4 := restart(t, m3, c)
	observePid(t, m4, 0, 700, 700, 700, 700)
	require.Equal(t, uint64(700), ceilingStore(t, m4))

	// An upload after the restart finds no server within the ceiling.
	m5 := restart(t, m3, c)
	observePid(t, m5, 0, 5000, 5000, 5000, 5000)
	_, err := m5.Select([]peer.ID{pid(0), pid(1), pid(2), pid(3)}, oneGiBMonth, 2, 4)
	var se *SelectError
	require.ErrorAs(t, err, &se)
	require.Equal(t, uint64(1210+1), se.Ceiling, "the quote adds the per-call rate")
	require.Equal(t, 4, se.AboveCeiling)

	// The bound of a download: the ceiling's quote plus the premium.
	bound, err := m5.Bound()
	require.NoError(t, err)
	ceil, limit := bound.Limit(oneGiBMonth)
	require.Equal(t, uint64(1211), ceil)
	require.Equal(t, uint64(1211+121), limit)
	ceil, limit = bound.Limit(protocol.Usage{})
	require.Equal(t, uint64(1), ceil)
	require.Equal(t, uint64(1), limit)
	_, err = newMarket(t, c).Bound()
	require.ErrorIs(t, err, ErrNoPrices)
}

// TestHistoryServed: the weight of servers that served survives a
// restart, so cheap announcements still cannot drag the ceiling down.
func TestHistoryServed(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	observePid(t, m, 0, 100, 100)
	serve(m, pid(0), 15)
	serve(m, pid(1), 15)
	serve(m, pid(50), 2) // served, never priced
	m2 := restart(t, m, c)
	observePid(t, m2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1) // a dozen cheap strangers
	require.Equal(t, uint64(100), ceilingStore(t, m2))
	h := m2.History()
	require.Len(t, h.Servers, 15)
}

// TestHistoryScores: scores survive a restart and keep decaying from
// their time.
func TestHistoryScores(t *testing.T) {
	c := newFakeClock()
	m := newMarket(t, c)
	observePid(t, m, 0, 10, 20, 30, 40)
	m.Scores().Report(pid(0), EventCorruptShare) // 8
	m.Scores().Report(pid(1), EventTimeout)      // 1
	m.Scores().Report(pid(2), EventMintEvidence) // 32
	m.Scores().Report(sid(3), EventMintEvidence) // not a peer ID: not kept
	m2 := restart(t, m, c)
	require.True(t, m2.Scores().Penalised(pid(0)))
	require.Equal(t, 1.0, m2.Scores().Score(pid(1)))
	require.Zero(t, m2.Scores().Score(sid(3)))
	require.Equal(t, epoch.Add(day), m2.Scores().PenalisedUntil(pid(0)))
	require.Equal(t, uint64(40), ceilingStore(t, m2), "penalised servers stay out of the ceiling")
	sel, err := m2.Select([]peer.ID{pid(0), pid(1), pid(2), pid(3)}, oneGiBMonth, 2, 4)
	require.NoError(t, err)
	require.Equal(t, []peer.ID{pid(1), pid(3)}, sel.Servers, "penalised servers are skipped")

	b := save(t, m2)
	c.Advance(day)
	m3 := load(t, b, c)
	require.Equal(t, 4.0, m3.Scores().Score(pid(0)), "halved in the day")
	require.True(t, m3.Scores().Penalised(pid(0)))
	c.Advance(time.Hour)
	require.False(t, m3.Scores().Penalised(pid(0)))
	require.True(t, m3.Scores().Penalised(pid(2)))

	// Scores decayed to almost nothing are dropped: after ten days, the
	// timeout's 1/1024 point but not the corrupt share's 8/1024.
	c.Advance(9 * day)
	h := m3.History()
	require.Len(t, h.Scores, 2)
	for _, s := range h.Scores {
		require.NotEqual(t, pid(1), s.ID)
	}
}

// TestHistoryRestoreRules: old sightings are forgotten, times ahead of
// the clock count as now, what the market learnt itself wins, and a
// history of another unit changes nothing.
func TestHistoryRestoreRules(t *testing.T) {
	c := newFakeClock()
	h := &History{
		Unit:    "msat",
		Ceiling: &CeilingHistory{Rates: [4]float64{1, 500, 0, 0}, Since: epoch.Add(-10 * day), At: epoch.Add(3 * day)},
		Servers: []ServerHistory{
			{ID: pid(0), Priced: true, Rates: protocol.Rates{StorePerGiBMonth: 400}, At: epoch.Add(-8 * day)},
			{ID: pid(1), Priced: true, Rates: protocol.Rates{StorePerGiBMonth: 600}, At: epoch.Add(5 * day)},
			{ID: pid(2), Priced: true, Rates: protocol.Rates{StorePerGiBMonth: 700}, At: epoch.Add(-day)},
		},
		Scores: []ScoreHistory{{ID: pid(3), Score: 8, At: epoch.Add(day)}},
	}
	h.Servers = sortServers(h.Servers)

	m := newMarket(t, c)
	require.NoError(t, m.Observe(protocol.Schedule{Server: pid(2), Unit: "msat", Rates: protocol.Rates{StorePerGiBMonth: 650}}))
	require.NoError(t, m.Restore(h))
	got := m.History()
	require.Len(t, got.Servers, 2, "the sighting older than a week is forgotten")
	for _, s := range got.Servers {
		require.False(t, s.At.After(epoch), "no time after now")
		if s.ID == pid(2) {
			require.Equal(t, uint64(650), s.Rates.StorePerGiBMonth, "its own sighting wins")
		}
	}
	require.Equal(t, epoch, got.Ceiling.At)
	require.Equal(t, epoch.Add(-10*day), got.Ceiling.Since)
	require.Equal(t, uint64(500), ceilingStore(t, m), "the target, 650, is above: the ceiling waits")
	require.Equal(t, epoch.Add(day), m.Scores().PenalisedUntil(pid(3)), "decays from now, not from the future")

	other := newMarket(t, c)
	h.Unit = "sat"
	require.ErrorIs(t, other.Restore(h), ErrBadHistory)
	_, err := other.Ceiling()
	require.ErrorIs(t, err, ErrNoPrices)
	require.ErrorIs(t, other.Restore(nil), ErrBadHistory)
	require.ErrorIs(t, other.Restore(&History{Unit: "msat", Servers: []ServerHistory{{ID: sid(0), At: epoch}}}), ErrBadHistory)
}

func sortServers(s []ServerHistory) []ServerHistory {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j].ID < s[i].ID {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestHistoryBounded: a history keeps the servers seen most recently and
// the highest scores, within the limits, and its encoding fits
// MaxHistorySize.
func TestHistoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("makes thousands of keys")
	}
	c := newFakeClock()
	m := newMarket(t, c)
	const n = MaxHistoryServers + 100
	ids := make([]peer.ID, n)
	for i := range n {
		ids[i] = pid(i)
		require.NoError(t, m.Observe(protocol.Schedule{Server: ids[i], Unit: "msat", Rates: protocol.Rates{PerCall: math.MaxUint64, StorePerGiBMonth: uint64(i)}}))
		m.Scores().Report(ids[i], EventCorruptShare)
		if i >= 100 {
			m.Scores().Report(ids[i], EventCorruptShare)
		}
		c.Advance(time.Second)
	}
	h := m.History()
	require.Len(t, h.Servers, MaxHistoryServers)
	require.Len(t, h.Scores, MaxHistoryScores)
	kept := make(map[peer.ID]bool)
	for _, s := range h.Servers {
		kept[s.ID] = true
	}
	for i := range 100 {
		require.False(t, kept[ids[i]], "the oldest are dropped")
	}
	kept = make(map[peer.ID]bool)
	for _, s := range h.Scores {
		kept[s.ID] = true
	}
	for i := range 100 {
		require.False(t, kept[ids[i]], "the lowest are dropped")
	}
	b, err := h.MarshalBinary()
	require.NoError(t, err)
	require.LessOrEqual(t, len(b), MaxHistorySize)
	h2, err := ParseHistory(b)
	require.NoError(t, err)
	require.Equal(t, h, h2)

	h.Servers = append(h.Servers, ServerHistory{ID: pid(n + 1), At: epoch})
	_, err = h.MarshalBinary()
	require.ErrorIs(t, err, ErrBadHistory)
}

// vectorHistory is the history of the test vector.
func vectorHistory() *History {
	return &History{
		Unit:    "msat",
		Ceiling: &CeilingHistory{Rates: [4]float64{3, 1048576.5, 65536, 0}, Since: epoch, At: epoch.Add(90 * time.Minute)},
		Servers: sortServers([]ServerHistory{
			{ID: pid(1), Priced: true, Rates: protocol.Rates{PerCall: 3, StorePerGiBMonth: 1 << 20, ReadPerGiB: 1 << 16, WritePerGiB: 1 << 16}, At: epoch.Add(time.Hour), Served: 7},
			{ID: pid(2), At: epoch.Add(2 * time.Hour), Served: 1},
		}),
		Scores: []ScoreHistory{{ID: pid(3), Score: 8, At: epoch.Add(3 * time.Hour)}},
	}
}

// TestHistoryVector pins the encoding: testdata/history-v1.hex is what
// version 1 writes for vectorHistory.
func TestHistoryVector(t *testing.T) {
	b, err := vectorHistory().MarshalBinary()
	require.NoError(t, err)
	path := filepath.Join("testdata", "history-v1.hex")
	if *updateVectors {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(want)), hex.EncodeToString(b))
	h, err := ParseHistory(b)
	require.NoError(t, err)
	require.Equal(t, vectorHistory(), h)
}

// reseal replaces b's checksum with the right one, so that a test reaches
// the checks behind it.
func reseal(b []byte) []byte {
	b = append([]byte(nil), b[:len(b)-sha256.Size]...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// TestParseHistoryRefuses: damaged, oversized or non-canonical bytes are
// refused whole.
func TestParseHistoryRefuses(t *testing.T) {
	good, err := vectorHistory().MarshalBinary()
	require.NoError(t, err)
	_, err = ParseHistory(good)
	require.NoError(t, err)
	body := good[:len(good)-sha256.Size]
	unitAt := len(historyMagic) + 1
	ceilAt := unitAt + 1 + 4
	serversAt := ceilAt + 1 + historyCeiling
	firstID := serversAt + 4 + 1
	set := func(off int, v ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], v)
		return reseal(b)
	}
	f64 := func(v float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(v)) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	cases := map[string][]byte{
		"empty":            nil,
		"magic":            set(0, 'S'),
		"version":          set(len(historyMagic), 2),
		"checksum":         append(append([]byte(nil), body...), make([]byte, sha256.Size)...),
		"one bit":          func() []byte { b := append([]byte(nil), good...); b[len(b)/2] ^= 1; return b }(),
		"truncated":        reseal(good[:len(good)-40]),
		"left over":        reseal(append(append(append([]byte(nil), body...), 0), make([]byte, sha256.Size)...)),
		"no unit":          set(unitAt, 0),
		"bad unit":         set(unitAt+1, '/'),
		"ceiling flag":     set(ceilAt, 2),
		"since after at":   set(ceilAt+1, 0x7f),
		"NaN ceiling":      set(ceilAt+1+16, f64(math.NaN())...),
		"negative ceiling": set(ceilAt+1+16, f64(-1)...),
		"huge ceiling":     set(ceilAt+1+16, f64(1<<65)...),
		"infinite ceiling": set(ceilAt+1+16, f64(math.Inf(1))...),
		"servers count":    set(serversAt, u32(MaxHistoryServers+1)...),
		"count past end":   set(serversAt, u32(1000)...),
		"id length":        set(firstID-1, 0),
		"long id":          set(firstID-1, MaxHistoryIDSize+1),
		"not a peer ID":    set(firstID, 0xff),
		"price flag":       set(firstID+len(pid(1)), 2),
		"scores count":     set(len(body)-(4+1+len(pid(3))+16), u32(MaxHistoryScores+1)...),
		"zero score":       set(len(body)-16, f64(0)...),
		"negative score":   set(len(body)-16, f64(-8)...),
		"infinite score":   set(len(body)-16, f64(math.Inf(1))...),
		"oversized":        make([]byte, MaxHistorySize+1),
	}
	// Two servers swapped: out of order.
	h := vectorHistory()
	h.Servers[0], h.Servers[1] = h.Servers[1], h.Servers[0]
	swapped := encodeUnchecked(h)
	cases["out of order"] = swapped
	h = vectorHistory()
	h.Servers[1].ID = h.Servers[0].ID
	cases["twice"] = encodeUnchecked(h)
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseHistory(b)
			require.ErrorIs(t, err, ErrBadHistory)
			t.Log(err)
		})
	}
}

// encodeUnchecked encodes h as MarshalBinary does, without its checks.
func encodeUnchecked(h *History) []byte {
	ids := make([]peer.ID, len(h.Servers))
	for i, s := range h.Servers {
		ids[i] = s.ID
	}
	ok := *h
	ok.Servers = nil
	for i := range h.Servers {
		s := h.Servers[i]
		s.ID = pid(1000 + i) // placeholders of the same length, in order
		ok.Servers = append(ok.Servers, s)
	}
	ok.Servers = sortServers(ok.Servers)
	b, err := ok.MarshalBinary()
	if err != nil {
		panic(err)
	}
	// Put the real IDs back in place of the placeholders, in h's order.
	for i, s := range ok.Servers {
		b = []byte(strings.Replace(string(b), string(s.ID), string(ids[i]), 1))
	}
	return reseal(b)
}

// FuzzParseHistory: whatever the bytes, ParseHistory returns without
// panicking, within its bounds; what it accepts encodes back to the same
// bytes and restores into a market that works. Each input is tried as it
// is and with a good checksum appended, so that mutations reach the
// checks behind the checksum.
func FuzzParseHistory(f *testing.F) {
	good, err := vectorHistory().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	empty, err := (&History{Unit: "msat"}).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range [][]byte{good, empty} {
		f.Add(b)
		f.Add(b[:len(b)-sha256.Size]) // sealed by the target
		f.Add(b[:len(b)/2])
	}
	f.Add(reseal(good[:len(good)-40]))
	f.Add([]byte(historyMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
		sum := sha256.Sum256(b)
		checkParse(t, append(b[:len(b):len(b)], sum[:]...))
	})
}

func checkParse(t *testing.T, b []byte) {
	h, err := ParseHistory(b)
	if err != nil {
		if h != nil {
			t.Fatal("a history with an error")
		}
		if !errors.Is(err, ErrBadHistory) {
			t.Fatalf("error %v does not wrap ErrBadHistory", err)
		}
		return
	}
	out, err := h.MarshalBinary()
	if err != nil {
		t.Fatalf("accepted history does not encode: %v", err)
	}
	if string(out) != string(b) {
		t.Fatal("not canonical")
	}
	c := newFakeClock()
	m, err := NewMarket(h.Unit, WithMarketClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(h); err != nil {
		t.Fatal(err)
	}
	m.Ceiling()
	for _, s := range h.Servers {
		m.Select([]peer.ID{s.ID}, oneGiBMonth, 1, 1)
	}
	c.Advance(day)
	m.Ceiling()
	if _, err := m.History().MarshalBinary(); err != nil {
		t.Fatalf("restored market's history does not encode: %v", err)
	}
}
