package node

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
)

// Tests of the market's history across restarts (client_history.go), on
// real libp2p hosts on 127.0.0.1.

// setRates makes every server of the grid publish a schedule of rates r
// now, valid for an hour, as a server whose agent raised its prices would.
func (g *cgGrid) setRates(r protocol.Rates) { g.setRatesFor(r, time.Hour) }

// setRatesFor is setRates with a schedule valid for d.
func (g *cgGrid) setRatesFor(r protocol.Rates, d time.Duration) {
	g.t.Helper()
	for _, s := range g.servers {
		now := time.Now()
		sched, err := protocol.SignSchedule(s.host.Peerstore().PrivKey(s.host.ID()), protocol.Schedule{
			Server: s.host.ID(), NotBefore: now.Add(-time.Second), NotAfter: now.Add(d), Unit: "msat", Rates: r,
		})
		require.NoError(g.t, err)
		s.prices.Publish(sched, "")
	}
}

// times multiplies every rate of r by n.
func times(r protocol.Rates, n uint64) protocol.Rates {
	return protocol.Rates{PerCall: r.PerCall * n, StorePerGiBMonth: r.StorePerGiBMonth * n, ReadPerGiB: r.ReadPerGiB * n, WritePerGiB: r.WritePerGiB * n}
}

// readHistory parses the market history of a client directory.
func readHistory(t *testing.T, dir string) *pricing.History {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ClientMarketFile))
	require.NoError(t, err)
	h, err := pricing.ParseHistory(b)
	require.NoError(t, err)
	return h
}

// TestClientHistoryUpload: a client sees the market's prices, restarts,
// and the servers raise their prices fivefold. The restarted client's
// ceiling has risen at most 10 % a day since, so the upload is refused,
// naming the ceiling; a fresh client, without history, takes the new
// prices as the market.
func TestClientHistoryUpload(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	_, rep, err := c.Put(ctx, bytes.NewReader(cgRandom(t, 20<<10)))
	require.NoError(t, err)
	require.False(t, c.hasMarketHistory(), "a first session's ceiling is no history")

	// Housekeeping saves the history; so does Close.
	c.housekeeping(ctx)
	h := readHistory(t, dir)
	require.NotNil(t, h.Ceiling)
	require.Len(t, h.Servers, 10)
	require.NoError(t, c.Close())
	h = readHistory(t, dir)
	require.Equal(t, "msat", h.Unit)
	fi, err := os.Stat(filepath.Join(dir, ClientMarketFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	g.setRates(times(cgRates, 5))
	c2 := g.client(dir, nil)
	require.True(t, c2.hasMarketHistory())
	_, _, err = c2.Put(ctx, bytes.NewReader(cgRandom(t, 20<<10)))
	require.ErrorIs(t, err, pricing.ErrTooFewServers)
	var se *pricing.SelectError
	require.ErrorAs(t, err, &se)
	t.Log(err)
	require.LessOrEqual(t, se.Ceiling, rep.Ceiling+rep.Ceiling/100, "the ceiling barely moved")
	require.Contains(t, err.Error(), fmt.Sprintf("need 7 servers, found 0 of 10 within the ceiling of %d msat a share", se.Ceiling))
	require.Contains(t, err.Error(), "10 above the ceiling")
	status, kind := APIErrorKind(err)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "too_few_servers", kind)
	require.Zero(t, c2.market.Spent(), "nothing paid")

	fresh := g.client("", nil)
	_, err = fresh.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	_, _, err = fresh.Put(ctx, bytes.NewReader(cgRandom(t, 20<<10)))
	require.NoError(t, err, "without history, the prices asked now are the market")
}

// TestClientHistoryDownload: the same for a download. With history, each
// server is paid at most the ceiling for the call plus the premium;
// servers that ask more are passed over, and the download fails saying
// why, unless a download budget allows more. With history, the share of
// the wallet (DefaultDownloadShare) no longer bounds a download.
func TestClientHistoryDownload(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(1000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 10<<10)
	capText, _, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	// The first session has no history: a download may spend 1/100 of
	// the wallet, too little for this one.
	_, err = c.Get(ctx, capText, new(bytes.Buffer))
	require.ErrorIs(t, err, pricing.ErrOverBudget)
	require.Contains(t, err.Error(), "set a budget")
	require.NoError(t, c.Close())

	// After a restart, the ceiling bounds each call instead.
	c = g.client(dir, nil)
	var out bytes.Buffer
	rep, err := c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
	require.Empty(t, rep.AboveCeiling)
	require.NoError(t, c.Close())

	// The servers ask five times as much.
	g.setRates(times(cgRates, 5))
	c = g.client(dir, nil)
	out.Reset()
	rep, err = c.Get(ctx, capText, &out)
	t.Log(err)
	require.ErrorIs(t, err, pricing.ErrAboveCeiling)
	require.ErrorIs(t, err, pricing.ErrOverBudget)
	require.Contains(t, err.Error(), "download refused: 0 of the 3 shares needed found on 10 servers; 10 servers ask more than the market's ceiling allows")
	require.Contains(t, err.Error(), "asks 15 msat, above the most this call may cost under the market's ceiling, 3")
	require.Contains(t, err.Error(), "set a download budget")
	require.Len(t, rep.AboveCeiling, 10)
	require.Empty(t, rep.Silent, "servers passed over for their price are not silent")
	require.Zero(t, out.Len())
	require.Zero(t, c.market.Spent())
	status, kind := APIErrorKind(err)
	require.Equal(t, http.StatusPaymentRequired, status)
	require.Equal(t, "over_budget", kind)
	for _, s := range g.servers {
		require.False(t, c.scores.Penalised(s.host.ID()), "asking much is no fault")
		require.Zero(t, c.scores.Score(s.host.ID()))
	}
	require.NoError(t, c.Close())

	// A download budget pays them.
	c = g.client(dir, func(cfg *ClientConfig) { cfg.Budget.Download = 500 })
	out.Reset()
	_, err = c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
}

// TestClientHistoryDownloadOfferedPrice: servers raise their prices after
// the client fetched their schedules, which then end: a call sent unpaid
// is answered PAYMENT_REQUIRED with the new schedule, and the payment
// policy refuses to pay above the ceiling too.
func TestClientHistoryDownloadOfferedPrice(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	capText, _, err := c.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	require.NoError(t, c.Close())

	g.setRatesFor(cgRates, 2*time.Second)
	c = g.client(dir, nil) // fetches the schedules that end soon
	g.setRates(times(cgRates, 1000))
	time.Sleep(3500 * time.Millisecond)
	rep, err := c.Get(ctx, capText, new(bytes.Buffer))
	t.Log(err)
	require.ErrorIs(t, err, pricing.ErrAboveCeiling)
	require.Len(t, rep.AboveCeiling, 7)
	require.Zero(t, c.market.Spent())
}

// TestAttackDownloadOverchargeAfterRestart is TestAttackDownloadOvercharge
// for a client that restarts rather than a fresh one: with its history,
// the greedy servers are not paid at all.
func TestAttackDownloadOverchargeAfterRestart(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	dir := t.TempDir()
	up := g.client(dir, nil)
	_, err := up.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	capText, _, err := up.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	require.NoError(t, up.Close())

	const greedy = 100_000
	r := cgRates
	r.PerCall = greedy
	g.setRates(r)

	down := g.client(dir, nil)
	var out bytes.Buffer
	rep, err := down.Get(ctx, capText, &out)
	paid := down.market.Spent()
	t.Logf("download report: %+v; session paid %d msat; %v", rep, paid, err)
	require.Zero(t, paid)
	require.ErrorIs(t, err, pricing.ErrAboveCeiling)
	require.Contains(t, err.Error(), fmt.Sprintf("asks %d msat", greedy))
}

// syncBuffer is a buffer safe for concurrent writes, for a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClientHistoryCorrupt: a history file that cannot be used (damaged,
// too large, not a file, another unit) is logged and ignored: the client
// starts without history, works, and the next save replaces it.
func TestClientHistoryCorrupt(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	otherUnit, err := (&pricing.History{Unit: "sat"}).MarshalBinary()
	require.NoError(t, err)
	good := func() []byte {
		dir := t.TempDir()
		c := g.client(dir, nil)
		require.NoError(t, c.Close())
		b, err := os.ReadFile(filepath.Join(dir, ClientMarketFile))
		require.NoError(t, err)
		return b
	}()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	cases := []struct {
		name, want string
		make       func(path string)
		replaced   bool
	}{
		{"garbage", "not a market history", func(p string) { os.WriteFile(p, []byte("{\"ceiling\": 1}"), 0o600) }, true},
		{"empty", "not a market history", func(p string) { os.WriteFile(p, nil, 0o600) }, true},
		{"damaged", "checksum does not match", func(p string) { os.WriteFile(p, flipped, 0o600) }, true},
		{"truncated", "checksum does not match", func(p string) { os.WriteFile(p, good[:len(good)-1], 0o600) }, true},
		{"oversized", "bytes, over", func(p string) { os.WriteFile(p, make([]byte, pricing.MaxHistorySize+1), 0o600) }, true},
		{"other unit", `prices in`, func(p string) { os.WriteFile(p, otherUnit, 0o600) }, true},
		{"directory", "not a regular file", func(p string) { os.Mkdir(p, 0o700) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, ClientMarketFile)
			tc.make(path)
			var logs syncBuffer
			c := g.client(dir, func(cfg *ClientConfig) {
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			})
			require.Contains(t, logs.String(), "level=WARN msg=\"ignoring the market history: starting without it\"")
			require.Contains(t, logs.String(), tc.want)
			_, ok := c.market.CeilingSince()
			require.False(t, ok, "no ceiling restored")
			require.False(t, c.hasMarketHistory())
			_, err := c.Fund(ctx, g.voucher(100_000), 0)
			require.NoError(t, err)
			_, _, err = c.Put(ctx, bytes.NewReader(cgRandom(t, 4<<10)))
			require.NoError(t, err)
			require.NoError(t, c.Close(), "a history that cannot be saved does not fail Close")
			if tc.replaced {
				h := readHistory(t, dir)
				require.NotNil(t, h.Ceiling)
			} else {
				require.Contains(t, logs.String(), "saving the market history")
			}
		})
	}
}

// TestClientHistoryScores: scores survive a restart, decaying from the
// same time: servers penalised before it (a corrupt share, coins taken
// without service) are still skipped for uploads after it.
func TestClientHistoryScores(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	_, _, err = c.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	corrupt, taker, slow := g.servers[0].host.ID(), g.servers[1].host.ID(), g.servers[2].host.ID()
	c.scores.Report(corrupt, pricing.EventCorruptShare)
	c.scores.Report(taker, pricing.EventCoinsTaken)
	c.scores.Report(slow, pricing.EventTimeout)
	until := c.scores.PenalisedUntil(corrupt)
	require.False(t, until.IsZero())
	require.NoError(t, c.Close())

	c = g.client(dir, nil)
	for _, id := range []peer.ID{corrupt, taker} {
		require.True(t, c.scores.Penalised(id), "still penalised after the restart")
	}
	require.WithinDuration(t, until, c.scores.PenalisedUntil(corrupt), time.Millisecond, "decaying from the same time")
	require.False(t, c.scores.Penalised(slow))
	require.InDelta(t, 1, c.scores.Score(slow), 0.01, "a score below the threshold is kept too")
	_, rep, err := c.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	require.Equal(t, 8, rep.Servers)
	for _, sh := range rep.Shares {
		require.NotEqual(t, corrupt.String(), sh.Server, "the penalised server is skipped")
		require.NotEqual(t, taker.String(), sh.Server, "the penalised server is skipped")
	}
}
