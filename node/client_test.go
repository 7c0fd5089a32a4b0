package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

func cgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func cgRandom(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// cgRing returns the servers of a grid in the ring order of an upload.
func cgRing(t *testing.T, g *cgGrid, rep *PutReport) []peer.ID {
	si, err := hex.DecodeString(rep.StorageIndex)
	require.NoError(t, err)
	var ids []peer.ID
	for _, s := range g.servers {
		ids = append(ids, s.host.ID())
	}
	return protocol.Ring(si, ids)
}

// TestClientPutGet is the client's main flow on a mint and ten servers:
// fund, upload, download; download again with three share holders gone;
// and again with a corrupt share, which is reported and fetched elsewhere.
func TestClientPutGet(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	c := g.client("", nil)

	res, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	require.Equal(t, uint64(1_000_000), res.Withdrawn)
	require.Equal(t, uint64(1_000_000), res.Balance)
	require.False(t, res.Short)

	data := cgRandom(t, 300<<10)
	capText, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	require.Len(t, rep.Shares, 10)
	require.Equal(t, 10, rep.Servers, "ten shares on ten distinct servers")
	require.Empty(t, rep.Unplaced)
	require.NotZero(t, rep.Total)
	var allocs uint64
	for _, call := range rep.Calls {
		require.Empty(t, call.Error)
		if call.Op == "allocate" {
			require.NotZero(t, call.Cost)
			allocs += call.Cost
		}
	}
	require.Equal(t, rep.Total, allocs, "an upload pays for its allocations only")
	capab, err := files.ParseCapability(capText)
	require.NoError(t, err)
	si := capab.StorageIndex()
	require.Equal(t, hex.EncodeToString(si[:]), rep.StorageIndex)

	// Shares sit where the report says, first N of the ring.
	ring := cgRing(t, g, rep)
	for _, sh := range rep.Shares {
		require.Equal(t, ring[sh.Share].String(), sh.Server)
		list, err := g.server(sh.Server).backend.List(ctx, si)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, uint32(sh.Share), list[0].Number)
	}

	var out bytes.Buffer
	grep, err := c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
	require.Len(t, grep.Shares, 3)
	require.Empty(t, grep.Corrupt)

	// The first three share holders of the ring go away.
	for _, id := range ring[:3] {
		g.server(id.String()).close()
	}
	require.Eventually(t, func() bool {
		for _, id := range ring[:3] {
			if c.host.Network().Connectedness(id) == network.Connected {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the client notices the servers are gone")
	out.Reset()
	grep, err = c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
	require.Len(t, grep.Silent, 3)
	for _, id := range ring[:3] {
		require.Positive(t, c.scores.Score(id), "a silent server scores a timeout")
	}

	// Four of the seven holders left send corrupt shares: those read are
	// reported, and the file comes from the three good ones.
	corrupt := make(map[string]bool)
	for _, id := range ring[3:7] {
		g.server(id.String()).backend.corrupt.Store(true)
		corrupt[id.String()] = true
	}
	out.Reset()
	grep, err = c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
	require.NotEmpty(t, grep.Corrupt)
	for _, sh := range grep.Shares {
		require.False(t, corrupt[sh.Server], "a share from a corrupting server was used")
	}
	for _, id := range grep.Corrupt {
		require.True(t, corrupt[id])
		advice := g.server(id).backend.Advice()
		require.Len(t, advice, 1)
		require.Equal(t, si, advice[0].StorageIndex)
		require.Equal(t, uint32(slices.Index(ring, g.server(id).host.ID())), advice[0].Share)
		require.True(t, c.scores.Penalised(g.server(id).host.ID()), "a corrupt share penalises its server")
	}

	// An upload now finds too few servers, and says why.
	_, _, err = c.Put(ctx, bytes.NewReader([]byte("late")))
	require.ErrorIs(t, err, pricing.ErrTooFewServers)
	require.Contains(t, err.Error(), "need 7 servers, found ")
	require.Contains(t, err.Error(), "penalised")
	require.Contains(t, err.Error(), "; 3 more servers unreachable")

	// Every payment settled: nothing reserved, and the wallet's spend is
	// what the reports add up to.
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Zero(t, b.Reserved)
	require.Zero(t, b.Pending)
	require.Equal(t, c.market.Spent(), 1_000_000-b.Unspent-b.Bound)
}

// TestClientErrors checks the one clear error of each mistake a user can
// make.
func TestClientErrors(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	c := g.client("", nil)

	// No funds yet.
	_, _, err := c.Put(ctx, bytes.NewReader([]byte("hello")))
	require.ErrorIs(t, err, ErrNoFunds)
	require.Contains(t, err.Error(), "scrip wallet fund")

	// Vouchers: not a code, unknown, spent.
	_, err = c.Fund(ctx, "not a voucher", 0)
	require.ErrorIs(t, err, ErrVoucherUnknown)
	_, err = c.Fund(ctx, "abcdefghijklmnopqrstuvwxyz234567", 0)
	require.ErrorIs(t, err, ErrVoucherUnknown)
	v := g.voucher(5000)
	res, err := c.Fund(ctx, v, 0)
	require.NoError(t, err)
	require.Equal(t, uint64(5000), res.Withdrawn)
	_, err = c.Fund(ctx, v, 0)
	require.ErrorIs(t, err, ErrVoucherSpent)
	_, err = c.Fund(ctx, v, 100)
	require.ErrorIs(t, err, ErrVoucherSpent)
	// A voucher worth less than asked is drawn down to what it holds.
	res, err = c.Fund(ctx, g.voucher(300), 1000)
	require.NoError(t, err)
	require.Equal(t, uint64(300), res.Withdrawn)
	require.True(t, res.Short)
	// No mint was asked to charge twice: nothing pending.
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(5300), b.Unspent)
	require.Zero(t, b.Pending)

	// Capabilities: not one, and one of a file nobody holds.
	_, err = c.Get(ctx, "scrip:chk:nonsense", &bytes.Buffer{})
	require.ErrorIs(t, err, ErrBadCapability)
	capab, _, err := files.EncodeBytes([]byte("never uploaded"), 3, 10)
	require.NoError(t, err)
	_, err = c.Get(ctx, capab.String(), &bytes.Buffer{})
	require.ErrorIs(t, err, ErrFileNotFound)

	// An upload within budget works; one over it says why, in the
	// market's words.
	_, _, err = c.Put(ctx, bytes.NewReader([]byte("hello")))
	require.NoError(t, err)
	tight := g.client("", func(cfg *ClientConfig) { cfg.Budget = pricing.Budget{Upload: 10} })
	_, err = tight.Fund(ctx, g.voucher(1000), 0)
	require.NoError(t, err)
	_, _, err = tight.Put(ctx, bytes.NewReader([]byte("hello")))
	var se *pricing.SelectError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, pricing.ErrTooFewServers)
	require.Contains(t, err.Error(), "need 7 servers")
	require.Contains(t, err.Error(), "budget of 10 msat")

	// The mint goes away.
	g.mintHost.Close()
	_, err = c.Fund(ctx, g.voucher(100), 0)
	require.ErrorIs(t, err, ErrMintUnreachable)
}

// TestClientAboveCeiling places shares past servers priced above the
// market's ceiling, and explains when too few servers are left.
func TestClientAboveCeiling(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{rates: func(i int) protocol.Rates {
		r := cgRates
		if i < 2 {
			r.StorePerGiBMonth *= 1000 // two greedy servers
		}
		return r
	}})
	c := g.client("", func(cfg *ClientConfig) { cfg.Happy = 7 })
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	_, rep, err := c.Put(ctx, bytes.NewReader(cgRandom(t, 100<<10)))
	require.NoError(t, err)
	require.Equal(t, 8, rep.Servers, "shares go to the eight servers within the ceiling")
	for _, sh := range rep.Shares {
		require.NotEqual(t, g.servers[0].host.ID().String(), sh.Server)
		require.NotEqual(t, g.servers[1].host.ID().String(), sh.Server)
	}

	picky := g.client("", func(cfg *ClientConfig) { cfg.Happy = 9 })
	_, err = picky.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	_, _, err = picky.Put(ctx, bytes.NewReader([]byte("x")))
	require.ErrorIs(t, err, pricing.ErrTooFewServers)
	require.Contains(t, err.Error(), "found 8 of 10")
	require.Contains(t, err.Error(), "2 above the ceiling")
}

// TestClientChange pays exact prices from one large coin: every payment
// swaps for change at the mint first.
func TestClientChange(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	c := g.client("", nil)
	res, err := c.Fund(ctx, g.voucher(1<<16), 1<<16)
	require.NoError(t, err)
	require.Equal(t, 1, res.Coins)
	data := cgRandom(t, 50<<10)
	capText, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	var out bytes.Buffer
	grep, err := c.Get(ctx, capText, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1<<16)-rep.Total-grep.Total, b.Unspent+b.Bound, "swaps keep the value")
	require.Zero(t, b.Reserved)
	js, err := c.readJournals()
	require.NoError(t, err)
	require.Empty(t, js, "no swap left in flight")
}

// TestClientRateLimited pays a server that refuses bearer coins with coins
// designated to it, swapped at the mint.
func TestClientRateLimited(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{paywall: func(i int) []protocol.PaywallOption {
		if i == 0 {
			return []protocol.PaywallOption{protocol.WithDepositPolicy(protocol.NewBearerCap(0, nil))}
		}
		return nil
	}})
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	_, rep, err := c.Put(ctx, bytes.NewReader(cgRandom(t, 20<<10)))
	require.NoError(t, err)
	require.Equal(t, 7, rep.Servers)
	strict := g.servers[0]
	d := coin.Designation([]byte(strict.host.ID()))
	spends := strict.spent.Spends()
	require.NotEmpty(t, spends)
	for _, s := range spends {
		require.Equal(t, d, s.Spend.Designated, "the strict server took designated coins only")
	}
}

// TestClientRefreshReserved swaps the coins of a call that got no answer.
func TestClientRefreshReserved(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 1, cgGridOption{})
	c := g.client("", func(cfg *ClientConfig) { cfg.RefreshAfter = time.Nanosecond })
	_, err := c.Fund(ctx, g.voucher(10_000), 0)
	require.NoError(t, err)
	s := g.servers[0]
	s.backend.hang.Store(true)
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	b := &callBill{op: &opBill{op: pricing.OpDownload}}
	err = c.paidCall(cctx, s.host.ID(), "list", protocol.Usage{}, b, func(ctx context.Context) error {
		_, err := c.storage.List(ctx, s.host.ID(), &pb.List{StorageIndex: make([]byte, 16)})
		return err
	})
	cancel()
	require.Error(t, err)
	_, unknown := b.cost()
	require.Equal(t, cgRates.PerCall, unknown)
	bal, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, cgRates.PerCall, bal.Reserved)

	require.NoError(t, c.refreshReserved(ctx))
	bal, err = c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Zero(t, bal.Reserved)
	require.Equal(t, uint64(10_000), bal.Unspent, "the silent server's coins came back by a swap")
}

// TestClientRestore restores a wallet from its phrase into a new
// directory: the next start recovers its coins from the mint, and coins
// already swapped are told apart.
func TestClientRestore(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(1<<16), 1<<16) // one coin: payments swap for change
	require.NoError(t, err)
	_, _, err = c.Put(ctx, bytes.NewReader([]byte("restore me")))
	require.NoError(t, err)
	before, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	phrase := c.wallet.Export()
	next, err := c.wallet.NextCounter(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Close())

	dir2 := t.TempDir()
	mintKey, err := MintIdentity(Announce(RoleMint, peer.AddrInfo{ID: g.mintHost.ID()}))
	require.NoError(t, err)
	w, err := wallet.Restore(dir2+"/"+ClientWalletFile, phrase, wallet.Mint{Key: mintKey, Peer: []byte(g.mintHost.ID())})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, writeFileAtomic(dir2+"/"+ClientRestoreFile, []byte("x"), 0o600))
	c2 := g.client(dir2, nil)
	after, err := c2.wallet.Balance(ctx)
	require.NoError(t, err)
	// The coins swapped for change are spent at the mint and stay
	// spent; coins paid to servers that have not deposited them (these
	// test servers never do) are swapped back: all the value returns.
	require.Greater(t, after.Unspent, before.Unspent)
	require.Equal(t, uint64(1<<16), after.Unspent)
	require.NoFileExists(t, dir2+"/"+ClientRestoreFile)
	got, err := c2.wallet.NextCounter(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, got, next, "the counter moves past the used ones")
	// The restored wallet pays.
	_, _, err = c2.Put(ctx, bytes.NewReader([]byte("again")))
	require.NoError(t, err)
}

// TestClientNoMint refuses to start without a mint to learn keysets from.
func TestClientNoMint(t *testing.T) {
	g := newCGGrid(t, 1, cgGridOption{})
	g.mintHost.Close()
	_, err := NewClient(context.Background(), ClientConfig{Dir: t.TempDir(), Announce: g.announce, ConnectTimeout: time.Second, NoAPI: true})
	require.ErrorIs(t, err, ErrMintUnreachable)
	require.True(t, errors.Is(err, ErrMintUnreachable))
}

// TestClientPools keeps pools of designated coins for the first servers
// after funding, and pays them from their pools.
func TestClientPools(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 7, cgGridOption{})
	c := g.client("", func(cfg *ClientConfig) { cfg.PoolServers, cfg.PoolValue = 2, 1000 })
	_, err := c.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	wi, err := c.WalletInfo(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{
		g.servers[0].host.ID().String(): 1000,
		g.servers[1].host.ID().String(): 1000,
	}, wi.Designated)
	require.Equal(t, uint64(100_000), wi.Balance.Unspent, "designating keeps the value")

	_, _, err = c.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	for _, s := range g.servers[:2] {
		d := coin.Designation([]byte(s.host.ID()))
		used := 0
		for _, sp := range s.spent.Spends() {
			if sp.Spend.Designated == d {
				used++
			}
		}
		require.Positive(t, used, "a pooled server is paid from its pool")
	}
	// Housekeeping tops up the pools of the servers used most since, and
	// leaves pools above half their target alone.
	require.NoError(t, c.topUpPools(ctx))
	wi2, err := c.WalletInfo(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(wi2.Designated), 2)
	for id, v := range wi2.Designated {
		require.LessOrEqual(t, v, uint64(1000), id)
		require.GreaterOrEqual(t, v, uint64(500), id)
	}
}

// TestClientEvidence scores down a server that the mint's evidence shows
// depositing a coin it had refused.
func TestClientEvidence(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 2, cgGridOption{})
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(64), 64)
	require.NoError(t, err)
	liar, honest := g.servers[0].host.ID(), g.servers[1].host.ID()
	id, digest := cgRandom(t, 16), [32]byte{1}
	spends, err := c.wallet.Reserve(ctx, []byte(liar), id, digest, 64)
	require.NoError(t, err)
	require.NoError(t, c.wallet.Settle(ctx, id, false)) // the server refused it
	pub := spends[0].Pub
	bound := c.boundServers(ctx, [][32]byte{pub})
	require.Equal(t, liar, bound[pub])

	// Evidence of another server, or that does not verify, changes nothing.
	c.checkEvidence(pub, &protocol.DoubleSpendEvidence{Server: honest, Spend: spends[0], Digest: digest}, bound)
	c.checkEvidence(pub, &protocol.DoubleSpendEvidence{Server: liar, Spend: spends[0], Digest: [32]byte{2}}, bound)
	require.False(t, c.scores.Penalised(liar))
	require.Zero(t, c.scores.Score(honest))
	c.checkEvidence(pub, &protocol.DoubleSpendEvidence{Server: liar, Spend: spends[0], Digest: digest}, bound)
	require.True(t, c.scores.Penalised(liar))
}

// TestClientClose leaves no goroutine of the client behind.
func TestClientClose(t *testing.T) {
	g := newCGGrid(t, 3, cgGridOption{})
	ignore := goleak.IgnoreCurrent()
	c := g.client("", func(cfg *ClientConfig) { cfg.Tick = 10 * time.Millisecond })
	ctx := cgCtx(t)
	_, err := c.Fund(ctx, g.voucher(1000), 0)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // a few rounds of housekeeping
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "closing twice is fine")
	for _, s := range g.servers {
		s.close()
	}
	g.mintHost.Close()
	goleak.VerifyNone(t, ignore)
}

// TestClientRecoverWithdrawals finishes a withdrawal whose answer was lost
// from the mint's stored rows, and forgets one the mint never answered.
func TestClientRecoverWithdrawals(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 1, cgGridOption{})
	c := g.client("", nil)
	ks, err := c.issueKeyset()
	require.NoError(t, err)
	wds, err := c.wallet.NextWithdrawals(ctx, ks, []uint64{64, 8}, [32]byte{})
	require.NoError(t, err)
	chs, err := c.challenges(ctx, ks, wds)
	require.NoError(t, err)
	// The mint answers the first coin; the answer is lost.
	_, err = c.mint.WithdrawFinish(ctx, ks.ID(), []byte(g.voucher(64)), chs[:1])
	require.NoError(t, err)
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(72), b.Pending)

	require.NoError(t, c.recoverWithdrawals(ctx, time.Hour), "too recent: left alone")
	b, err = c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(72), b.Pending)

	require.NoError(t, c.recoverWithdrawals(ctx, 0))
	b, err = c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Zero(t, b.Pending)
	require.Equal(t, uint64(64), b.Unspent)
}

// TestClientResumeSwap sends again a swap whose answer was lost, from the
// journal, and finishes its coins.
func TestClientResumeSwap(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 1, cgGridOption{})
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(64), 64)
	require.NoError(t, err)
	coins, err := c.wallet.Coins(ctx)
	require.NoError(t, err)
	require.Len(t, coins, 1)

	// What swap does, up to the lost answer.
	ks, err := c.issueKeyset()
	require.NoError(t, err)
	wds, err := c.wallet.NextWithdrawals(ctx, ks, []uint64{32, 16, 16}, [32]byte{})
	require.NoError(t, err)
	chs, err := c.challenges(ctx, ks, wds)
	require.NoError(t, err)
	var rid [16]byte
	copy(rid[:], cgRandom(t, 16))
	body, err := protocol.NewSwapBody(rid, ks.ID(), chs)
	require.NoError(t, err)
	pub := coins[0].Coin.Pub
	j := &swapJournal{RequestID: rid[:], Body: body, Inputs: []string{hex.EncodeToString(pub[:])}}
	for _, wd := range wds {
		j.Counters = append(j.Counters, wd.Counter)
	}
	require.NoError(t, c.writeJournal(j))
	spends, err := c.wallet.ReserveSwap(ctx, rid[:], protocol.RequestDigest(protocol.MintID, body), [][32]byte{pub})
	require.NoError(t, err)
	_, err = c.mint.Swap(ctx, body, spends)
	require.NoError(t, err)

	require.NoError(t, c.resumeSwaps(ctx))
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, wallet.Balance{Unspent: 64}, b)
	js, err := c.readJournals()
	require.NoError(t, err)
	require.Empty(t, js)
	all, err := c.wallet.Coins(ctx)
	require.NoError(t, err)
	require.Len(t, all, 4) // the old coin, spent, and three new ones
}
