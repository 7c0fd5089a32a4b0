package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
)

// The client node: a long-running process that holds the wallet, the
// connections to the mint and the servers, the market's view of their
// prices, and serves a local HTTP API (client_api.go) that the CLI talks
// to. Uploads are in client_put.go, downloads in client_get.go, payments,
// withdrawals and swaps in client_payer.go.

// Errors of the client node. Each says in one line what went wrong for a
// person; test with [errors.Is].
var (
	// ErrNoFunds reports a payment the wallet cannot make: its usable
	// coins sum to less than the price.
	ErrNoFunds = errors.New("no funds")
	// ErrMintUnreachable reports a mint that could not be reached or did
	// not answer.
	ErrMintUnreachable = errors.New("mint unreachable")
	// ErrVoucherUnknown reports a voucher code the mint does not know, or
	// text that is not a voucher code.
	ErrVoucherUnknown = errors.New("unknown voucher")
	// ErrVoucherSpent reports a voucher whose value has been withdrawn.
	ErrVoucherSpent = errors.New("voucher already spent")
	// ErrBadCapability reports text that is not a file capability.
	ErrBadCapability = errors.New("not a file capability")
	// ErrFileNotFound reports a download that found fewer than k good
	// shares on the whole ring.
	ErrFileNotFound = errors.New("file not found")
	// ErrUploadFailed reports an upload that could not place its shares on
	// enough distinct servers.
	ErrUploadFailed = errors.New("upload failed")
	// ErrNoServers reports an operation that has no servers to work
	// with: none announced, none reachable, or none whose prices are
	// known.
	ErrNoServers = errors.New("no servers")
	// ErrClientClosed reports a call on a closed client.
	ErrClientClosed = errors.New("client node closed")
)

// Defaults of [ClientConfig].
const (
	// DefaultClientAPI is the address of the local HTTP API: loopback,
	// any free port.
	DefaultClientAPI = "127.0.0.1:0"
	// DefaultHappy is the number of distinct servers an upload must reach.
	DefaultHappy = 7
	// DefaultLease is how long uploaded shares are kept: 30 days.
	DefaultLease = 30 * 24 * time.Hour
	// DefaultDownloadParallelism bounds the servers a download asks at
	// once.
	DefaultDownloadParallelism = 4
	// DefaultUploadParallelism bounds the servers an upload writes to at
	// once.
	DefaultUploadParallelism = 10
	// DefaultPoolServers is the number of servers that get a pool of
	// designated coins.
	DefaultPoolServers = 3
	// DefaultRefreshAfter is how long coins stay reserved at a server that
	// never answered before their bearer coins are swapped at the mint.
	DefaultRefreshAfter = 10 * time.Minute
	// DefaultTick is the period of the client's housekeeping: reconnecting
	// servers, refreshing prices and reserved coins, topping up pools.
	DefaultTick = time.Minute
	// DefaultConnectTimeout bounds one attempt to connect to a peer.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultCallRetries bounds how often a call whose outcome is unknown
	// is sent again to its server, unchanged; DefaultRetryBackoff is the
	// wait before the first retry, doubling for each next one. A server
	// that dies in a paid call, holding the coins as credit, has about
	// 7.75 s to come back and serve the retry.
	DefaultCallRetries  = 5
	DefaultRetryBackoff = 250 * time.Millisecond
)

// Files in the client directory.
const (
	// ClientWalletFile is the wallet's bbolt file.
	ClientWalletFile = "wallet.db"
	// ClientAPIFile holds the URL of the running node's HTTP API, one
	// line; it is removed when the node stops.
	ClientAPIFile = "api"
	// ClientTokenFile holds the bearer token that the HTTP API requires
	// (mode 0600); only the user who runs the node can read it.
	ClientTokenFile = "api.token"
	// ClientMintFile holds the mint's announcement, so that offline wallet
	// commands know which mint the wallet belongs to.
	ClientMintFile = "mint.json"
	// ClientRestoreFile marks a wallet restored from its phrase whose
	// coins have not yet been recovered from the mint.
	ClientRestoreFile = "restore-pending"
	// clientSwapDir holds the journal of swaps in flight.
	clientSwapDir = "swaps"
)

// [ClientMarketFile], the market's history, is in client_history.go.

// ClientConfig configures [NewClient]. Dir and Announce are required; every
// other field has a default, used when the field is zero.
type ClientConfig struct {
	// Dir holds the wallet (wallet.db), the API address and token files,
	// the journal of swaps in flight and the market's history
	// ([ClientMarketFile]). It is created (mode 0700) if missing.
	Dir string
	// Announce is the announcements file naming the mint (exactly one) and
	// the servers. It is read again on every tick, so servers can be
	// added while the node runs.
	Announce string
	// API is the listen address of the local HTTP API. Default:
	// [DefaultClientAPI]. Set NoAPI to run without one.
	API   string
	NoAPI bool
	// ListenAddrs are libp2p addresses to listen on. Default: none (the
	// client only dials out).
	ListenAddrs []string
	// K, Happy and N are the upload parameters: shares needed, distinct
	// servers required, shares made. Defaults: files.DefaultK (3),
	// [DefaultHappy] (7), files.DefaultN (10).
	K, Happy, N int
	// Lease is how long uploaded shares are paid for. Default:
	// [DefaultLease].
	Lease time.Duration
	// UploadParallelism and DownloadParallelism bound the servers an
	// operation talks to at once. Defaults: [DefaultUploadParallelism],
	// [DefaultDownloadParallelism].
	UploadParallelism, DownloadParallelism int
	// Budget bounds what uploads, downloads and all payments together may
	// cost. Default: no bounds, except that without a download budget a
	// download pays each server at most the market's ceiling for the call
	// (with the premium) once the market has history (an earlier session,
	// or a day of this one; see [ClientMarketFile]), and before that may
	// spend at most 1/[DefaultDownloadShare] of the wallet's unspent
	// value.
	Budget pricing.Budget
	// PoolServers is how many of the most used servers get a pool of
	// designated coins; a negative value disables pools. Default:
	// [DefaultPoolServers].
	PoolServers int
	// PoolValue is the value each pool is topped up to. Default: 1/64 of
	// the wallet's unspent bearer value when the pool is topped up.
	PoolValue uint64
	// RefreshAfter is how long a payment may stay unanswered before its
	// bearer coins are swapped at the mint. Default: [DefaultRefreshAfter].
	RefreshAfter time.Duration
	// Tick is the period of housekeeping. Default: [DefaultTick].
	Tick time.Duration
	// ConnectTimeout bounds one connection attempt. Default:
	// [DefaultConnectTimeout].
	ConnectTimeout time.Duration
	// Retries bounds how often a call whose outcome is unknown (no
	// answer, or INTERNAL to a paid call: the server may hold the coins
	// as credit for it) is sent again, unchanged, to the same server
	// before the client gives up on it (its coins then stay reserved for
	// that server and request); a negative value sends nothing again.
	// RetryBackoff is the wait before the first retry; each next one
	// waits twice as long. Defaults: [DefaultCallRetries],
	// [DefaultRetryBackoff].
	Retries      int
	RetryBackoff time.Duration
	// MintKey is the mint's identity key, which signs its keysets.
	// Default: the Ed25519 key of the mint's peer ID ([MintIdentity]).
	MintKey ed25519.PublicKey
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives the node's log. Default: a logger that discards.
	// Nothing logged contains a capability, a seed or a voucher code.
	Logger *slog.Logger
}

// Client is a running client node. Its methods are safe for concurrent
// use. Close stops it.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	now     func() time.Time
	host    host.Host
	wallet  *wallet.Wallet
	mint    *protocol.MintClient
	mintAI  peer.AddrInfo
	unit    string
	paid    *protocol.PaidClient
	storage *protocol.StorageClient
	market  *pricing.Market
	scores  *pricing.Scores
	metrics *clientMetrics
	api     *clientAPI
	history clientHistory

	// mintMu serialises the choice of coins: payments, and the work with
	// the mint that changes the wallet (withdrawals, swaps, recovery), so
	// that change made for one payment is not taken by another.
	mintMu sync.Mutex

	mu      sync.Mutex
	servers map[peer.ID]*clientServer
	order   []peer.ID // as announced
	revoked map[[32]byte]bool
	// refusedAt is when a server's REVOKED_KEYSET last made the client
	// read the mint's keysets, and refusing is closed when that reading
	// ends (recoupAfterRefusal).
	refusedAt time.Time
	refusing  chan struct{}
	mintAddrs []ma.Multiaddr // as last announced
	changed   chan struct{}  // closed and replaced when a server's state changes
	closed    bool
	stop      context.CancelFunc
	done      chan struct{}
	bgWG      sync.WaitGroup
	closeErr  error
}

// clientServer is what the client knows of one server.
type clientServer struct {
	info     peer.AddrInfo
	sched    *protocol.SignedSchedule
	lastErr  string
	lastTry  time.Time
	calls    uint64
	upToDate bool // listed in the last announcements read
}

// NewClient starts a client node: it opens the wallet, restores the
// market's history of earlier sessions ([ClientMarketFile]; a file it
// cannot use is logged and ignored), makes a fresh libp2p identity
// (never stored: each session is a new peer), connects to
// the mint and fetches its keysets (checked against the mint's key),
// recovers any withdrawal or swap a crash interrupted (and the coins of a
// wallet restored from its phrase, see [ClientRestoreFile]), starts
// connecting to the servers and learning their prices (waiting at most
// two seconds for them; [Client.WaitConnected] waits for more), and
// serves the local HTTP API. It fails with [ErrMintUnreachable] if the
// mint cannot be reached and the wallet knows no keyset of it yet. The
// defaults of cfg are listed with [ClientConfig].
func NewClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Dir == "" || cfg.Announce == "" {
		return nil, errors.New("client: the directory and the announcements file are required")
	}
	cfg = cfg.withDefaults()
	started := cfg.Now()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	anns, err := ReadAnnouncements(cfg.Announce)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	mintAnn, err := findMint(anns)
	if err != nil {
		return nil, err
	}
	mintAI, err := mintAnn.AddrInfo()
	if err != nil {
		return nil, err
	}
	mintKey := cfg.MintKey
	if mintKey == nil {
		if mintKey, err = MintIdentity(mintAnn); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, ClientMintFile), clientJSON(mintAnn), 0o600); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	w, err := wallet.Open(filepath.Join(cfg.Dir, ClientWalletFile), wallet.Mint{Key: mintKey, Peer: []byte(mintAI.ID)},
		wallet.WithClock(cfg.Now))
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("client: another client node is using %s", cfg.Dir)
		}
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		wallet:    w,
		mintAI:    mintAI,
		mintAddrs: mintAI.Addrs,
		servers:   make(map[peer.ID]*clientServer),
		revoked:   make(map[[32]byte]bool),
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
		history:   clientHistory{started: started},
	}
	ok := false
	defer func() {
		if !ok {
			c.shutdown()
		}
	}()
	opts := []libp2p.Option{
		libp2p.UserAgent("scrip-client"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}
	if len(cfg.ListenAddrs) > 0 {
		opts = append(opts, libp2p.ListenAddrStrings(cfg.ListenAddrs...))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	// No libp2p.Identity option: a fresh key for every session.
	if c.host, err = libp2p.New(opts...); err != nil {
		return nil, fmt.Errorf("client: libp2p host: %w", err)
	}
	c.host.Peerstore().AddAddrs(mintAI.ID, mintAI.Addrs, peerstore.PermanentAddrTTL)
	c.mint = protocol.NewMintClient(c.host, mintAI.ID, mintKey)
	c.metrics = newClientMetrics()

	if err := c.loadKeysets(ctx); err != nil {
		if len(c.wallet.Keysets()) == 0 {
			return nil, err
		}
		c.log.Warn("mint unreachable at start; using the keysets stored in the wallet", "err", err)
	}
	ks := c.wallet.Keysets()
	if len(ks) == 0 {
		return nil, fmt.Errorf("%w: the mint publishes no keyset", ErrMintUnreachable)
	}
	c.unit = ks[len(ks)-1].Unit

	if c.scores, err = pricing.NewScores(pricing.WithScoreClock(cfg.Now)); err != nil {
		return nil, err
	}
	if c.market, err = pricing.NewMarket(c.unit, pricing.WithMarketClock(cfg.Now), pricing.WithBudget(cfg.Budget),
		pricing.WithScores(c.scores)); err != nil {
		return nil, err
	}
	c.loadMarketHistory()
	c.paid = protocol.NewPaidClient(c.host, (*clientPayer)(c), protocol.WithClientClock(cfg.Now),
		protocol.WithPaymentPolicy(c.policy), protocol.WithRetries(cfg.Retries), protocol.WithRetryBackoff(cfg.RetryBackoff))
	c.storage = protocol.NewStorageClient(c.paid)

	c.updateServers(anns)
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	// Connect to the servers in the background: one that does not answer
	// takes up to ConnectTimeout. Wait a little for the others, so that a
	// command right after the start finds them.
	first := make(chan struct{})
	c.bgWG.Add(1)
	go c.loop(bg, first)
	c.recover(ctx)
	select {
	case <-first:
	case <-time.After(clientStartWait):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !cfg.NoAPI {
		if c.api, err = startClientAPI(c, cfg.API); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

func (cfg ClientConfig) withDefaults() ClientConfig {
	if cfg.API == "" {
		cfg.API = DefaultClientAPI
	}
	if cfg.K == 0 {
		cfg.K = files.DefaultK
	}
	if cfg.N == 0 {
		cfg.N = files.DefaultN
	}
	if cfg.Happy == 0 {
		cfg.Happy = min(DefaultHappy, cfg.N)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.UploadParallelism <= 0 {
		cfg.UploadParallelism = DefaultUploadParallelism
	}
	if cfg.DownloadParallelism <= 0 {
		cfg.DownloadParallelism = DefaultDownloadParallelism
	}
	if cfg.PoolServers == 0 {
		cfg.PoolServers = DefaultPoolServers
	}
	if cfg.RefreshAfter == 0 {
		cfg.RefreshAfter = DefaultRefreshAfter
	}
	if cfg.Tick == 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultCallRetries
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg
}

// findMint returns the one mint of an announcements list.
func findMint(anns []Announcement) (Announcement, error) {
	var mints []Announcement
	for _, a := range anns {
		if a.Role == RoleMint {
			mints = append(mints, a)
		}
	}
	switch len(mints) {
	case 0:
		return Announcement{}, errors.New("client: the announcements file names no mint")
	case 1:
		return mints[0], nil
	}
	return Announcement{}, fmt.Errorf("client: the announcements file names %d mints; a client uses one", len(mints))
}

// Host returns the node's libp2p host (a fresh identity each session).
func (c *Client) Host() host.Host { return c.host }

// Wallet returns the node's wallet.
func (c *Client) Wallet() *wallet.Wallet { return c.wallet }

// Market returns the node's market policy, which also holds the servers'
// scores.
func (c *Client) Market() *pricing.Market { return c.market }

// Unit returns the unit of the mint's coins, in which every amount is
// counted.
func (c *Client) Unit() string { return c.unit }

// APIURL returns the URL of the local HTTP API, or "" if it has none.
func (c *Client) APIURL() string {
	if c.api == nil {
		return ""
	}
	return c.api.url
}

// Close stops the node: the HTTP API (and removes its address file), the
// housekeeping, the libp2p host and the wallet, saving the market's
// history ([ClientMarketFile]). Payments in flight end
// with their outcome unknown and are resumed by the next session.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return c.closeErr
	}
	c.closed = true
	c.mu.Unlock()
	c.closeErr = c.shutdown()
	return c.closeErr
}

func (c *Client) shutdown() error {
	defer close(c.done)
	var errs []error
	if c.api != nil {
		errs = append(errs, c.api.close())
	}
	if c.stop != nil {
		c.stop()
	}
	c.bgWG.Wait()
	if c.market != nil {
		if err := c.saveMarketHistory(); err != nil {
			c.log.Warn("saving the market history", "err", err)
		}
	}
	if c.host != nil {
		errs = append(errs, c.host.Close())
	}
	c.mintMu.Lock() // wait for a withdrawal or swap to let go of the wallet
	defer c.mintMu.Unlock()
	errs = append(errs, c.wallet.Close())
	return errors.Join(errs...)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// loadKeysets fetches the mint's keysets, checks each against the mint's
// key and stores the ones not revoked in the wallet.
func (c *Client) loadKeysets(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	dctx := ctx
	if c.host.Network().Connectedness(c.mintAI.ID) != network.Connected {
		// A mint that restarted is dialled again now, not after the
		// swarm's backoff for its failed dials (as protocol.PaidClient
		// retries do). Only when not connected: a forced dial opens a
		// new connection.
		dctx = network.WithForceDirectDial(ctx, "scrip: reading the mint's keysets")
	}
	if err := c.host.Connect(dctx, peer.AddrInfo{ID: c.mintAI.ID}); err != nil {
		return c.mintErr(err)
	}
	pub, err := c.mint.Keysets(ctx)
	if err != nil {
		return c.mintErr(err)
	}
	c.mu.Lock()
	for _, p := range pub {
		c.revoked[p.Keyset.ID()] = p.Revoked
	}
	c.mu.Unlock()
	for _, p := range pub {
		if p.Revoked {
			continue
		}
		if _, err := c.wallet.AddKeyset(ctx, p.Keyset.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// mintErr wraps a failure to exchange with the mint as ErrMintUnreachable;
// the mint's answers pass through.
func (c *Client) mintErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*protocol.Error](err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrMintUnreachable, c.mintAI.ID, err)
}

// issueKeyset returns the newest keyset of the mint's unit that issues
// coins now and is not revoked.
func (c *Client) issueKeyset() (*coin.Keyset, error) {
	now := c.now()
	sets := c.wallet.Keysets()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(sets) - 1; i >= 0; i-- {
		ks := sets[i]
		if ks.Unit == c.unit && ks.Open(coin.WindowIssue, now) && !c.revoked[ks.ID()] {
			return ks, nil
		}
	}
	return nil, fmt.Errorf("%w: no keyset of the mint issues coins now", ErrMintUnreachable)
}

// updateServers merges the servers of an announcements list.
func (c *Client) updateServers(anns []Announcement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.servers {
		s.upToDate = false
	}
	ps := c.host.Peerstore()
	for _, a := range anns {
		ai, err := a.AddrInfo()
		if err != nil {
			continue
		}
		if a.Role == RoleMint || ai.ID == c.mintAI.ID {
			if ai.ID == c.mintAI.ID && !slices.EqualFunc(ai.Addrs, c.mintAddrs, ma.Multiaddr.Equal) {
				// The mint moved.
				c.mintAddrs = ai.Addrs
				ps.ClearAddrs(ai.ID)
				ps.AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
			}
			continue
		}
		s := c.servers[ai.ID]
		if s == nil {
			s = &clientServer{}
			c.servers[ai.ID] = s
			c.order = append(c.order, ai.ID)
		}
		if !slices.EqualFunc(ai.Addrs, s.info.Addrs, ma.Multiaddr.Equal) {
			ps.ClearAddrs(ai.ID)
			ps.AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		}
		s.info, s.upToDate = ai, true
	}
}

// serverIDs returns the servers known, in the order announced.
func (c *Client) serverIDs() []peer.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.order)
}

// connectServers connects to the servers not connected that it did not
// try within gap, and fetches the prices of those whose schedule is
// missing or ends within two ticks.
func (c *Client) connectServers(ctx context.Context, gap time.Duration) {
	now := c.now()
	type job struct {
		id peer.ID
		ai peer.AddrInfo
	}
	var jobs []job
	c.mu.Lock()
	for _, id := range c.order {
		s := c.servers[id]
		connected := c.host.Network().Connectedness(id) == network.Connected
		fresh := s.sched != nil && s.sched.NotAfter.After(now.Add(2*c.cfg.Tick))
		if connected && fresh {
			continue
		}
		if !connected && now.Sub(s.lastTry) < gap {
			continue
		}
		s.lastTry = now
		jobs = append(jobs, job{id, s.info})
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
			defer cancel()
			err := c.host.Connect(cctx, j.ai)
			var sched *protocol.SignedSchedule
			if err == nil {
				sched, err = c.storage.Prices(cctx, j.id)
			}
			if err == nil {
				err = c.market.Observe(sched.Schedule)
			}
			c.mu.Lock()
			s := c.servers[j.id]
			if err != nil {
				s.lastErr = err.Error()
				c.log.Info("server unavailable", "server", j.id, "err", err)
			} else {
				s.sched, s.lastErr = sched, ""
				c.metrics.observeSchedule(j.id, sched)
			}
			c.notifyLocked()
			c.mu.Unlock()
		}()
	}
	wg.Wait()
}

// notifyLocked wakes the waiters of [Client.WaitConnected]. c.mu must be
// held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// setSchedule records a schedule of a server learnt from an offer.
func (c *Client) setSchedule(id peer.ID, s *protocol.SignedSchedule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sv := c.servers[id]; sv != nil {
		sv.sched = s
	}
	c.metrics.observeSchedule(id, s)
}

// noteCall counts a call to a server, for choosing the servers that get
// coin pools, and remembers whether the server could be reached.
func (c *Client) noteCall(id peer.ID, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.servers[id]
	if s == nil {
		return
	}
	s.calls++
	if _, answered := errors.AsType[*protocol.Error](err); err == nil || answered {
		s.lastErr = ""
	} else if !errors.Is(err, context.Canceled) {
		s.lastErr = err.Error()
	}
}

// liveServers returns the servers known and connected now, in the order
// announced, and the number of the others. The client connects to every
// server at start and reconnects them on every tick, so a server not
// connected is one that did not answer.
func (c *Client) liveServers() (live []peer.ID, down int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live = make([]peer.ID, 0, len(c.order))
	for _, id := range c.order {
		if !c.servers[id].upToDate {
			continue // no longer announced
		}
		if c.host.Network().Connectedness(id) != network.Connected {
			down++
			continue
		}
		live = append(live, id)
	}
	return live, down
}

// isDown reports whether server id is not connected and failed when last
// called or connected to.
func (c *Client) isDown(id peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.servers[id]
	return s != nil && s.lastErr != "" && c.host.Network().Connectedness(id) != network.Connected
}

// connectedServers counts the servers connected now with a schedule valid
// now.
func (c *Client) connectedServers() (n int, changed <-chan struct{}) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.order {
		s := c.servers[id]
		if s.sched != nil && s.sched.Check(now) == nil && c.host.Network().Connectedness(id) == network.Connected {
			n++
		}
	}
	return n, c.changed
}

// waitRetry is how often WaitConnected tries a server again.
const waitRetry = 2 * time.Second

// rereadAnnouncements reads the announcements file again: servers may
// have joined or moved.
func (c *Client) rereadAnnouncements() {
	if anns, err := ReadAnnouncements(c.cfg.Announce); err == nil {
		c.updateServers(anns)
	} else {
		c.log.Warn("reading announcements", "err", err)
	}
}

// WaitConnected waits until at least min servers are connected with a
// valid price schedule, and returns how many are. It gives up when ctx
// ends, returning the count and ctx's error.
func (c *Client) WaitConnected(ctx context.Context, min int) (int, error) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		n, changed := c.connectedServers()
		if n >= min {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-changed:
		case <-t.C:
			c.rereadAnnouncements()
			c.connectServers(ctx, waitRetry)
		}
	}
}

// clientStartWait bounds how long NewClient waits for the first round of
// connections to the servers.
const clientStartWait = 2 * time.Second

// loop connects to the servers, closes first, and then runs the
// housekeeping every tick until ctx ends.
func (c *Client) loop(ctx context.Context, first chan<- struct{}) {
	defer c.bgWG.Done()
	c.connectServers(ctx, 0)
	close(first)
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.housekeeping(ctx)
	}
}

// housekeeping reads the announcements again, reconnects servers and
// refreshes prices, resumes swaps and withdrawals the mint did not
// answer, refreshes coins reserved at silent servers, tops up the pools,
// reads the mint's keysets again, recouping the coins of a keyset the
// mint revoked, and saves the market's history.
func (c *Client) housekeeping(ctx context.Context) {
	c.rereadAnnouncements()
	c.connectServers(ctx, c.cfg.Tick/2)
	if err := c.resumeSwaps(ctx); err != nil {
		c.log.Info("resuming swaps", "err", err)
	}
	if err := c.recoverWithdrawals(ctx, c.cfg.RefreshAfter); err != nil {
		c.log.Info("recovering withdrawals", "err", err)
	}
	if err := c.refreshReserved(ctx); err != nil {
		c.log.Info("refreshing reserved coins", "err", err)
	}
	if err := c.topUpPools(ctx); err != nil {
		c.log.Info("topping up coin pools", "err", err)
	}
	if err := c.loadKeysets(ctx); err != nil {
		c.log.Info("refreshing the mint's keysets", "err", err)
	} else if err := c.recoupIfRevoked(ctx); err != nil {
		c.log.Warn("recouping coins of a revoked keyset", "err", err)
	}
	c.metrics.observeWallet(ctx, c)
	if err := c.saveMarketHistory(); err != nil {
		c.log.Warn("saving the market history", "err", err)
	}
}

// recover finishes what a crash interrupted: swaps in the journal,
// withdrawals left pending, and the recovery of a restored wallet's coins.
// Failures are logged; housekeeping tries the swaps again.
func (c *Client) recover(ctx context.Context) {
	if err := c.resumeSwaps(ctx); err != nil {
		c.log.Warn("resuming swaps", "err", err)
	}
	if err := c.recoverWithdrawals(ctx, 0); err != nil {
		c.log.Warn("recovering withdrawals", "err", err)
	}
	if err := c.recoupIfRevoked(ctx); err != nil {
		c.log.Warn("recouping coins of a revoked keyset", "err", err)
	}
	marker := filepath.Join(c.cfg.Dir, ClientRestoreFile)
	if _, err := os.Stat(marker); err == nil {
		n, err := c.RecoverCoins(ctx)
		if err != nil {
			c.log.Warn("recovering a restored wallet's coins", "err", err)
		} else {
			c.log.Info("recovered coins of a restored wallet", "coins", n)
			os.Remove(marker)
		}
	}
	c.metrics.observeWallet(ctx, c)
}
