package node

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/protocol"
)

// Attacks on the streaming Put and Get and on the market's memory, by
// hostile storage servers: each test failed before its fix.

// TestAttackGetDuplicateList: a server lists one share many times (a List
// answer is the server's word), and sends it corrupt each time it is
// read. Every entry used to be opened as a share of its own, each with a
// paid Read (and, with market history, nothing but the per-call ceiling
// bounds a download): the client paid once per duplicate. A server's
// shares are now taken once each, however often it lists them.
func TestAttackGetDuplicateList(t *testing.T) {
	ctx := cgCtx(t)
	g, hooks := newDiskGrid(t, 10)
	c := g.client("", func(cfg *ClientConfig) { cfg.DownloadParallelism = 1 })
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 100_000)
	capText, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)

	// The holder of share 0 is first on the ring, so the download asks it
	// first (one server at a time).
	h := holder(t, g, rep, 0)
	require.Equal(t, cgRing(t, g, rep)[0], g.servers[h].host.ID())
	const dups = 200
	hooks[h].onList(func(in []protocol.ShareInfo) []protocol.ShareInfo {
		var out []protocol.ShareInfo
		for range dups {
			out = append(out, in[0])
		}
		return out
	})
	var reads atomic.Int64
	hooks[h].onRead(func(share uint32, off uint64, data []byte) ([]byte, error) {
		reads.Add(1)
		data = bytes.Clone(data)
		data[len(data)-1] ^= 1
		return data, nil
	})
	before, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	grep := getOK(t, c, capText, data)
	after, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	t.Logf("reads of the listed share: %d; paid %d", reads.Load(), before.Unspent-after.Unspent)
	require.LessOrEqual(t, reads.Load(), int64(1), "each share a server lists is read once")
	require.Len(t, grep.Corrupt, 1)
	require.Equal(t, []uint32{0}, hooks[h].advised())
}

// switchPrices is a server's price book that forgets its old schedules:
// a call paid under one it published before is asked to pay under the
// current one.
type switchPrices struct {
	mu  sync.Mutex
	cur *protocol.SignedSchedule
}

func (p *switchPrices) Current(time.Time) (*protocol.SignedSchedule, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, "", nil
}

func (p *switchPrices) Lookup(id [protocol.ScheduleIDSize]byte) (*protocol.SignedSchedule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur.ID() == id {
		return p.cur, true
	}
	return nil, false
}

func (p *switchPrices) set(t *testing.T, s *cgServer, r protocol.Rates) {
	now := time.Now()
	sched, err := protocol.SignSchedule(s.host.Peerstore().PrivKey(s.host.ID()), protocol.Schedule{
		Server: s.host.ID(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Unit: "msat", Rates: r,
	})
	require.NoError(t, err)
	p.mu.Lock()
	p.cur = sched
	p.mu.Unlock()
}

// newSwitchGrid starts a mint and n servers whose prices a test sets
// (switchPrices), starting at r.
func newSwitchGrid(t *testing.T, n int, r protocol.Rates) (*cgGrid, []*switchPrices) {
	t.Helper()
	g := newCGGrid(t, 0, cgGridOption{})
	keysets, err := protocol.NewKeysetList(g.ks)
	require.NoError(t, err)
	var books []*switchPrices
	for range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		require.NoError(t, err)
		s := &cgServer{host: h, backend: &cgBackend{MemBackend: protocol.NewMemBackend(1<<30, 1<<26, nil)}, spent: protocol.NewMemSpentStore()}
		t.Cleanup(s.close)
		p := &switchPrices{}
		p.set(t, s, r)
		require.NoError(t, protocol.NewStorageServer(s.backend, protocol.NewPaywall(h.ID(), p, keysets, s.spent)).Register(h))
		g.servers = append(g.servers, s)
		books = append(books, p)
		require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleServer, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})))
	}
	return g, books
}

// TestAttackPutZeroCeiling: servers that announce free storage make the
// market's ceiling 0 (free announcements are what Sybils make), are
// picked for an upload, and then ask any price when they are called. An
// upload's limit of 0 used to mean "no limit": the client paid what they
// asked. A ceiling of 0 now pays 0.
func TestAttackPutZeroCeiling(t *testing.T) {
	ctx := cgCtx(t)
	g, books := newSwitchGrid(t, 8, protocol.Rates{})
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	ceil, err := c.market.Ceiling()
	require.NoError(t, err)
	require.Equal(t, protocol.Rates{}, ceil, "free announcements: a ceiling of 0")

	// Now they charge.
	for i, s := range g.servers {
		books[i].set(t, s, protocol.Rates{PerCall: 50_000})
	}
	before, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	_, _, err = c.Put(ctx, bytes.NewReader(cgRandom(t, 1000)))
	after, err2 := c.wallet.Balance(ctx)
	require.NoError(t, err2)
	t.Logf("put: %v; paid %d", err, before.Unspent-after.Unspent)
	require.ErrorIs(t, err, ErrUploadFailed)
	require.Contains(t, err.Error(), "above the most this call may cost")
	require.Equal(t, before.Unspent, after.Unspent, "nothing paid above a ceiling of 0")
}

// TestAttackListIsNotService: servers that announce low prices and hold
// nothing answer the paid Lists of downloads (every download asks the
// ring's servers). A List answered used to count as a call served, so
// they became "proven" servers with full weight in the ceiling, which
// then fell to their prices: the servers that do store were above it,
// for uploads and, with history, for downloads; and the history kept it
// across restarts. Only calls that deliver checked data count now.
func TestAttackListIsNotService(t *testing.T) {
	ctx := cgCtx(t)
	const honest, sybils = 3, 12
	cheap := protocol.Rates{PerCall: 1, StorePerGiBMonth: 1 << 10, ReadPerGiB: 1 << 10, WritePerGiB: 1 << 10}
	g := newCGGrid(t, honest, cgGridOption{})
	dir := t.TempDir()
	cfg := func(cfg *ClientConfig) {
		cfg.K, cfg.Happy, cfg.N = 2, 3, 3
		cfg.DownloadParallelism = honest + sybils
	}
	c := g.client(dir, cfg)
	_, err := c.Fund(ctx, g.voucher(2_000_000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 5000)
	capText, _, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	ceil0, err := c.market.Ceiling()
	require.NoError(t, err)
	require.NoError(t, c.Close())

	// Cheap servers that store nothing join; the client starts again
	// with its history: the honest servers have served, the others have
	// not, and hold at most a fifth of the weight.
	for i := range sybils {
		s, err := g.newServer(ctx, honest+i, cgGridOption{rates: func(int) protocol.Rates { return cheap }})
		require.NoError(t, err)
		require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleServer, peer.AddrInfo{ID: s.host.ID(), Addrs: s.host.Addrs()})))
		g.servers = append(g.servers, s)
	}
	c = g.client(dir, cfg)
	ceil, err := c.market.Ceiling()
	require.NoError(t, err)
	require.Equal(t, ceil0, ceil)

	for range 16 {
		getOK(t, c, capText, data)
	}
	holds := make(map[peer.ID]bool)
	for _, s := range g.servers[:honest] {
		holds[s.host.ID()] = true
	}
	for _, s := range c.market.History().Servers {
		if !holds[s.ID] {
			require.Zero(t, s.Served, "server %s holds nothing and served nothing", s.ID)
		}
	}
	ceil, err = c.market.Ceiling()
	require.NoError(t, err)
	t.Logf("ceiling before %+v, after %+v", ceil0, ceil)
	require.Equal(t, ceil0, ceil, "servers that only answer Lists do not move the ceiling")
	_, _, err = c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
}

// claimAllGrid is a file on ten servers, and six servers that joined
// after its upload (so they stand anywhere on the file's ring) and are
// hostile: each lists every share number and answers each with a real
// header (one share's, its number byte set to the one asked: a header is
// authenticated, its number only with its whole body) and a garbage
// body. The ring over all sixteen starts with one of them.
type claimAllGrid struct {
	g        *cgGrid
	hooks    []*hookBackend
	capText  string
	data     []byte
	read     atomic.Int64 // bytes the servers sent
	clean    int64        // bytes a download sent before the six turned
	uploader *Client
}

func newClaimAllGrid(t *testing.T) *claimAllGrid {
	ctx := cgCtx(t)
	const holders, sybils = 10, 6
	a := &claimAllGrid{}
	g, hooks := newDiskGrid(t, holders+sybils)
	a.g, a.hooks = g, hooks
	everyone, servers := g.announce, g.servers
	// The uploader knows only the first ten servers.
	g.announce = filepath.Join(t.TempDir(), "announce.json")
	require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleMint, peer.AddrInfo{ID: g.mintHost.ID(), Addrs: g.mintHost.Addrs()})))
	for _, s := range servers[:holders] {
		require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleServer, peer.AddrInfo{ID: s.host.ID(), Addrs: s.host.Addrs()})))
	}
	g.servers = servers[:holders]
	a.uploader = g.client("", nil)
	_, err := a.uploader.Fund(ctx, g.voucher(4_000_000), 0)
	require.NoError(t, err)
	// An upload whose ring over all the servers starts with a newcomer.
	a.data = cgRandom(t, 96*files.SegmentSize)
	var rep *PutReport
	for range 30 {
		a.capText, rep, err = a.uploader.Put(ctx, bytes.NewReader(a.data))
		require.NoError(t, err)
		g.servers = servers
		first := cgRing(t, g, rep)[0]
		g.servers = servers[:holders]
		if !slices.ContainsFunc(g.servers, func(s *cgServer) bool { return s.host.ID() == first }) {
			break
		}
	}
	capab, err := files.ParseCapability(a.capText)
	require.NoError(t, err)
	hs := uint64(capab.HeaderSize())

	count := func(share uint32, off uint64, b []byte) ([]byte, error) {
		a.read.Add(int64(len(b)))
		return b, nil
	}
	for _, h := range hooks[:holders] {
		h.onRead(count)
	}
	getOK(t, a.uploader, a.capText, a.data)
	a.clean = a.read.Load()

	h0 := hooks[holder(t, g, rep, 0)]
	for _, h := range hooks[holders:] {
		h.alias.Store(&shareAlias{from: h0.StorageBackend, share: 0})
		h.onList(func([]protocol.ShareInfo) []protocol.ShareInfo {
			var out []protocol.ShareInfo
			for n := range uint32(capab.N) {
				out = append(out, protocol.ShareInfo{Number: n, Size: uint64(capab.ShareSize()), LeaseExpires: time.Now().Add(time.Hour)})
			}
			return out
		})
		h.onRead(func(share uint32, off uint64, b []byte) ([]byte, error) {
			a.read.Add(int64(len(b)))
			b = bytes.Clone(b)
			for x := range b {
				switch at := off + uint64(x); {
				case at == 7:
					b[x] = byte(share)
				case at >= hs:
					b[x] ^= 0x5a
				}
			}
			return b, nil
		})
	}
	g.announce, g.servers = everyone, servers
	a.read.Store(0)
	return a
}

// TestAttackGetClaimsEveryShare: one hostile server first on the ring
// lists every share number with garbage behind a real header. The
// download took its "shares" first, found the segment would not open,
// and looked for spares of other numbers to tell the corrupt blocks: the
// hostile server held every number, so there were none, and the download
// failed with ten honest servers at hand. Spares of numbers already at
// hand are now other candidates for those shares.
func TestAttackGetClaimsEveryShare(t *testing.T) {
	a := newClaimAllGrid(t)
	c := a.g.client("", func(cfg *ClientConfig) { cfg.DownloadParallelism = 1 })
	_, err := c.Fund(cgCtx(t), a.g.voucher(2_000_000), 0)
	require.NoError(t, err)
	grep := getOK(t, c, a.capText, a.data)
	require.NotEmpty(t, grep.Corrupt)
	for _, s := range a.g.servers[:10] {
		require.NotContains(t, grep.Corrupt, s.host.ID().String(), "no honest server is blamed")
		require.False(t, c.scores.Penalised(s.host.ID()))
	}
	for _, s := range grep.Shares {
		require.False(t, slices.ContainsFunc(a.g.servers[10:], func(h *cgServer) bool { return h.host.ID().String() == s.Server }))
	}
}

// TestAttackGetSpareWindows: each hostile "share" opened as a spare
// (claimAllGrid) took a whole window (1 MiB), paid for, before its first
// block showed it corrupt: a download paid several times the file's
// size, more with each such server. A spare's first window is now one
// block, growing as the share is read.
func TestAttackGetSpareWindows(t *testing.T) {
	a := newClaimAllGrid(t)
	c := a.g.client("", nil)
	_, err := c.Fund(cgCtx(t), a.g.voucher(2_000_000), 0)
	require.NoError(t, err)
	grep := getOK(t, c, a.capText, a.data)
	t.Logf("a clean download read %d bytes; with the hostile servers %d, %d corrupt", a.clean, a.read.Load(), len(grep.Corrupt))
	require.Less(t, a.read.Load(), 2*a.clean, "hostile spares cost a block each, not windows")
}

// TestAttackPutAlreadyHave: servers answer a paid Allocate that they
// hold every share asked already, closed, and store nothing. Put counted
// those shares as placed, unwritten, and reported success; the file
// could not be read. Every upload has a fresh key, so no server can hold
// a share of it before it is written, nor have another writer on it:
// such shares, and shares an Allocate leaves out of both its lists
// (paid, not allocated), are now placed elsewhere, and the server is
// scored for coins taken without service.
func TestAttackPutAlreadyHave(t *testing.T) {
	for _, lie := range []string{"already have", "allocate none"} {
		t.Run(lie, func(t *testing.T) {
			ctx := cgCtx(t)
			g, hooks := newDiskGrid(t, 14)
			c := g.client("", nil)
			_, err := c.Fund(ctx, g.voucher(2_000_000), 0)
			require.NoError(t, err)
			data := cgRandom(t, 3*files.SegmentSize)
			set := func(h *hookBackend) {
				if lie == "already have" {
					h.haveAll.Store(true)
				} else {
					h.allocNone.Store(true)
				}
			}

			// Half the servers lie.
			for _, h := range hooks[:7] {
				set(h)
			}
			capText, rep, err := c.Put(ctx, bytes.NewReader(data))
			require.NoError(t, err)
			require.Len(t, rep.Shares, 10)
			for _, sh := range rep.Shares {
				for _, s := range g.servers[:7] {
					require.NotEqual(t, s.host.ID().String(), sh.Server, "share %d is on a server that stores nothing", sh.Share)
				}
			}
			getOK(t, c, capText, data)
			asked := 0
			for _, s := range g.servers[:7] {
				if slices.ContainsFunc(rep.Calls, func(cr CallReport) bool { return cr.Op == "allocate" && cr.Server == s.host.ID().String() }) {
					asked++
					require.True(t, c.scores.Penalised(s.host.ID()), "a server that lied is penalised")
				}
			}
			require.Positive(t, asked)

			// All of them lie: no share is stored, so the upload fails.
			for _, h := range hooks {
				set(h)
			}
			_, _, err = c.Put(ctx, bytes.NewReader(data))
			require.ErrorIs(t, err, ErrUploadFailed)
		})
	}
}

// TestAttackGetStopWaits: the holder of share 1 sends a corrupt block of
// segment 2 and then never answers the Read of its next window. The
// search found share 1 corrupt and stopped it, and stopping waited for
// that Read: the download stood still until the call timed out (its
// retries included, minutes by default). A stream stopped mid-file is
// now left to end on its own; only the end of the download waits.
func TestAttackGetStopWaits(t *testing.T) {
	smallWindows(t)
	ctx := cgCtx(t)
	g, hooks := newDiskGrid(t, 10)
	// One server asked at a time: the ring's first three holders (shares
	// 0, 1, 2, placed in ring order) are the ones read, share 1 among
	// them, whatever the load.
	c := g.client("", func(cfg *ClientConfig) { cfg.Retries, cfg.DownloadParallelism = 0, 1 })
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 12*files.SegmentSize)
	capText, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	capab, err := files.ParseCapability(capText)
	require.NoError(t, err)

	off2, bl := capab.BlockRange(2)
	end2 := uint64(off2) + uint64(bl)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := holder(t, g, rep, 1)
	hooks[h].onRead(func(share uint32, off uint64, b []byte) ([]byte, error) {
		if share != 1 {
			return b, nil
		}
		if off >= end2 {
			select { // the Read after block 2: no answer
			case <-release:
			case <-time.After(20 * time.Second):
			}
			return b, nil
		}
		b = bytes.Clone(b)
		if at := uint64(off2) + 7; off <= at && at < off+uint64(len(b)) {
			b[at-off] ^= 1
		}
		return b, nil
	})
	start := time.Now()
	grep := getOK(t, c, capText, data)
	took := time.Since(start)
	t.Logf("the download took %v", took)
	require.Equal(t, []string{g.servers[h].host.ID().String()}, grep.Corrupt)
	require.Less(t, took, 10*time.Second, "a stopped share's Read does not hold the download up")
}

// TestAttackPutWritesRefused: servers take the paid Allocate and then
// refuse every Write. Their shares went elsewhere, but a refused Write
// scored its server as a timeout at most (one point, under the penalty),
// so every upload that reached them paid them again. A paid allocation
// whose shares are not written is now coins taken without service: the
// server is penalised and the next uploads pass it over.
func TestAttackPutWritesRefused(t *testing.T) {
	ctx := cgCtx(t)
	g, hooks := newDiskGrid(t, 14)
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(2_000_000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 3*files.SegmentSize)
	for _, h := range hooks[:4] {
		h.onWrite(func(uint32, uint64, int) error { return errors.New("no") })
	}
	refuser := func(id string) bool {
		return slices.ContainsFunc(g.servers[:4], func(s *cgServer) bool { return s.host.ID().String() == id })
	}
	paid := 0
	for range 3 {
		capText, rep, err := c.Put(ctx, bytes.NewReader(data))
		require.NoError(t, err)
		getOK(t, c, capText, data)
		for _, cr := range rep.Calls {
			if cr.Op == "allocate" && refuser(cr.Server) && cr.Error == "" {
				paid++
			}
		}
	}
	t.Logf("allocations paid to servers that refuse writes, in three uploads: %d", paid)
	require.LessOrEqual(t, paid, 4, "each is paid once at most")
}
