package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// Fixtures of the client tests: a mint and storage servers assembled from
// package protocol's pieces (MintService on a MemMintStore with voucher
// funding; StorageServer behind a Paywall on a MemBackend and a
// MemSpentStore), each on a real libp2p host on 127.0.0.1, named in an
// announcements file; and client nodes with real bbolt wallets.

// cgRates are the prices of the test servers: small, so that a voucher
// pays for many calls, and with every term used.
var cgRates = protocol.Rates{PerCall: 3, StorePerGiBMonth: 1 << 20, ReadPerGiB: 1 << 16, WritePerGiB: 1 << 16}

// cgGrid is a mint and its servers.
type cgGrid struct {
	t        *testing.T
	dir      string
	announce string
	mintHost host.Host
	funding  *protocol.VoucherFunding
	ks       *coin.Keyset
	servers  []*cgServer
}

// cgServer is one storage server of a grid.
type cgServer struct {
	host    host.Host
	backend *cgBackend
	spent   *protocol.MemSpentStore
	prices  *protocol.PriceBook
	closed  atomic.Bool
}

// cgBackend is a MemBackend whose reads can be corrupted, or made to hang.
type cgBackend struct {
	*protocol.MemBackend
	corrupt atomic.Bool
	hang    atomic.Bool
}

func (b *cgBackend) Read(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32, offset, length uint64) ([]byte, error) {
	data, err := b.MemBackend.Read(ctx, si, share, offset, length)
	if err == nil && b.corrupt.Load() && len(data) > 0 {
		data = append([]byte(nil), data...)
		data[len(data)-1] ^= 0x40
	}
	return data, err
}

func (b *cgBackend) List(ctx context.Context, si [protocol.StorageIndexSize]byte) ([]protocol.ShareInfo, error) {
	if b.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.MemBackend.List(ctx, si)
}

// cgGridOption changes a server of a grid as it is made.
type cgGridOption struct {
	rates    func(i int) protocol.Rates
	paywall  func(i int) []protocol.PaywallOption
	exponent uint8 // largest coin exponent; default 20
}

// newCGGrid starts a mint and n servers and writes the announcements file.
func newCGGrid(t *testing.T, n int, opt cgGridOption) *cgGrid {
	t.Helper()
	ctx := context.Background()
	g := &cgGrid{t: t, dir: t.TempDir()}
	g.announce = filepath.Join(g.dir, "announce.json")

	_, identity, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := crypto.UnmarshalEd25519PrivateKey(identity)
	require.NoError(t, err)
	g.mintHost, err = libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	require.NoError(t, err)
	t.Cleanup(func() { g.mintHost.Close() })
	top := opt.exponent
	if top == 0 {
		top = 20
	}
	var exps []uint8
	for e := uint8(0); e <= top; e++ {
		exps = append(exps, e)
	}
	now := time.Now()
	ks, secret, err := coin.GenerateKeyset(rand.Reader, identity, coin.KeysetParams{
		Unit: "msat", Exponents: exps, NotBefore: now.Add(-time.Minute),
		IssueUntil: now.Add(24 * time.Hour), SpendUntil: now.Add(48 * time.Hour), DepositUntil: now.Add(72 * time.Hour),
	})
	require.NoError(t, err)
	g.ks = ks
	keys := protocol.NewMintKeyring(identity.Public().(ed25519.PublicKey))
	require.NoError(t, keys.Add(secret))
	store := protocol.NewMemMintStore()
	var payoutKey [32]byte
	rand.Read(payoutKey[:])
	g.funding = protocol.NewVoucherFunding(store, payoutKey)
	require.NoError(t, protocol.NewMintService(g.mintHost.ID(), keys, store, g.funding).Register(g.mintHost))
	require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleMint, peer.AddrInfo{ID: g.mintHost.ID(), Addrs: g.mintHost.Addrs()})))

	g.servers = make([]*cgServer, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.servers[i], errs[i] = g.newServer(ctx, i, opt)
		}()
	}
	wg.Wait()
	for i, s := range g.servers {
		require.NoError(t, errs[i])
		require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleServer, peer.AddrInfo{ID: s.host.ID(), Addrs: s.host.Addrs()})))
	}
	return g
}

func (g *cgGrid) newServer(ctx context.Context, i int, opt cgGridOption) (*cgServer, error) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return nil, err
	}
	s := &cgServer{
		host:    h,
		backend: &cgBackend{MemBackend: protocol.NewMemBackend(1<<30, 1<<26, nil)},
		spent:   protocol.NewMemSpentStore(),
		prices:  protocol.NewPriceBook(),
	}
	g.t.Cleanup(func() { s.close() })
	rates := cgRates
	if opt.rates != nil {
		rates = opt.rates(i)
	}
	now := time.Now()
	sched, err := protocol.SignSchedule(h.Peerstore().PrivKey(h.ID()), protocol.Schedule{
		Server: h.ID(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Unit: "msat", Rates: rates,
	})
	if err != nil {
		return nil, err
	}
	s.prices.Publish(sched, "")
	keysets, err := protocol.NewKeysetList(g.ks)
	if err != nil {
		return nil, err
	}
	var popts []protocol.PaywallOption
	if opt.paywall != nil {
		popts = opt.paywall(i)
	}
	pw := protocol.NewPaywall(h.ID(), s.prices, keysets, s.spent, popts...)
	return s, protocol.NewStorageServer(s.backend, pw).Register(h)
}

func (s *cgServer) close() {
	if s.closed.CompareAndSwap(false, true) {
		s.host.Close()
	}
}

// voucher makes a voucher worth value msat.
func (g *cgGrid) voucher(value uint64) string {
	g.t.Helper()
	v, err := g.funding.CreateVoucher(context.Background(), rand.Reader, "msat", value)
	require.NoError(g.t, err)
	return v
}

// server returns the grid's server with peer ID id.
func (g *cgGrid) server(id string) *cgServer {
	for _, s := range g.servers {
		if s.host.ID().String() == id {
			return s
		}
	}
	g.t.Fatalf("no server %s", id)
	return nil
}

// client starts a client node of the grid in a fresh directory (or dir,
// if not empty).
func (g *cgGrid) client(dir string, edit func(*ClientConfig)) *Client {
	g.t.Helper()
	if dir == "" {
		dir = g.t.TempDir()
	}
	cfg := ClientConfig{
		Dir:            dir,
		Announce:       g.announce,
		Tick:           time.Hour, // housekeeping only when a test calls it
		ConnectTimeout: 3 * time.Second,
		PoolServers:    -1,
		Logger:         cgLog(g.t),
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cfg)
	require.NoError(g.t, err)
	g.t.Cleanup(func() { c.Close() })
	n, err := c.WaitConnected(ctx, len(g.servers))
	require.NoError(g.t, err, "%d servers connected", n)
	return c
}

// cgLog returns a logger into the test's log, at debug level with -v.
func cgLog(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(cgTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type cgTestWriter struct{ t *testing.T }

func (w cgTestWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
