package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/shares"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/protocol"
)

// Files in a storage server's directory.
const (
	// ServerSpentFile is the server's spent set (package spentset).
	ServerSpentFile = "spent.db"
	// ServerSharesDir is the directory of the server's share store
	// (package shares).
	ServerSharesDir = "storage"
)

// Defaults of [ServerConfig].
const (
	// DefaultSchedulePeriod is the time between two schedules a server
	// publishes.
	DefaultSchedulePeriod = 10 * time.Minute
	// DefaultKeysetRefresh is the time between two fetches of the mint's
	// keysets.
	DefaultKeysetRefresh = 10 * time.Minute
	// DefaultDepositInterval is the time between two deposit rounds.
	DefaultDepositInterval = 30 * time.Second
	// DefaultSalesWindow is how far back a server's pricing agent sees
	// its sales (pricing.State.Sold).
	DefaultSalesWindow = 24 * time.Hour
	// DefaultSpentPruneInterval is the time between two prunings of the
	// spent set.
	DefaultSpentPruneInterval = time.Hour
)

// Errors of a storage server's start.
var (
	// ErrNoMint reports a server configured without a mint.
	ErrNoMint = errors.New("node: no mint announcement")
	// ErrDirInUse reports a role's directory whose stores another
	// process holds: the same role running already.
	ErrDirInUse = errors.New("node: directory in use by another process")
	// ErrNoUnit reports a mint whose keysets do not give one unit for
	// the server's schedules: none open for spending, or several (then
	// ServerConfig.Unit must choose).
	ErrNoUnit = errors.New("node: cannot choose the unit of the prices")
)

// ServerConfig configures [NewServer]. Dir, Capacity and Mint are
// required; every other field has a default.
type ServerConfig struct {
	// Dir is the server's directory: its identity key ([IdentityFile]),
	// spent set ([ServerSpentFile]), share store ([ServerSharesDir]) and
	// published schedules ([ServerSchedulesFile]). It is created (mode
	// 0700) if needed.
	Dir string
	// Capacity is the space offered for shares, in bytes.
	Capacity uint64
	// MaxShareSize is the largest share accepted; default
	// shares.DefaultMaxShareSize.
	MaxShareSize uint64
	// Mint is the announcement of the mint whose coins the server takes.
	// Its keysets must be signed by the key of its peer ID.
	Mint Announcement
	// AnnouncementsFile, if set, is the announcements file Mint was read
	// from. When the mint cannot be reached, the server reads the file
	// again for the mint's current addresses (a mint restarted on other
	// ports rewrites its entry).
	AnnouncementsFile string
	// ListenAddrs are the libp2p addresses to listen on; nil means
	// [DefaultListenAddrs].
	ListenAddrs []string
	// HostOptions are extra libp2p options (see [HostConfig]).
	HostOptions []libp2p.Option
	// MetricsAddr, if set, is the host:port of an HTTP endpoint serving
	// the server's metrics at /metrics.
	MetricsAddr string
	// Unit is the unit of the server's prices, which must be the unit of
	// the mint's keysets. Default: the one unit of the keysets the mint
	// publishes ([ErrNoUnit] if there are several).
	Unit string

	// Agent decides the prices. Default: AgentProgram if set, otherwise
	// pricing.NewTargetAgent with its defaults. An agent given here is
	// the caller's to close.
	Agent pricing.Agent
	// AgentProgram, if Agent is nil, is an external pricing program and
	// its arguments (pricing.NewExternal), with a default TargetAgent as
	// its fallback. The server stops it on Close.
	AgentProgram []string
	// AgentStderr receives the external program's standard error;
	// default: discarded.
	AgentStderr io.Writer
	// SchedulePeriod is the time between two schedules; default
	// [DefaultSchedulePeriod].
	SchedulePeriod time.Duration
	// ScheduleValidity is how long each schedule is valid (and honoured);
	// default three SchedulePeriods. It must be longer than
	// SchedulePeriod.
	ScheduleValidity time.Duration
	// SalesWindow is how far back the agent sees the sales; default
	// [DefaultSalesWindow].
	SalesWindow time.Duration

	// KeysetRefresh is the time between two fetches of the mint's
	// keysets; default [DefaultKeysetRefresh].
	KeysetRefresh time.Duration
	// DepositInterval is the time between two deposit rounds; default
	// [DefaultDepositInterval]. A round also starts when the bearer cap
	// is reached.
	DepositInterval time.Duration
	// BearerCap is the undeposited value of bearer (undesignated) coins
	// the server holds at most; default protocol.DefaultBearerCap.
	BearerCap uint64
	// RefuseOverCap makes the server refuse bearer coins over the cap
	// (RATE_LIMITED: the client pays with designated coins) rather than
	// deposit them at the mint before serving the call (the default).
	RefuseOverCap bool
	// SpentPruneInterval is the time between two prunings of the spent
	// set; default [DefaultSpentPruneInterval].
	SpentPruneInterval time.Duration

	// Clock is the time schedules, keyset windows and leases run on;
	// default time.Now. Periods are timed on the real clock.
	Clock func() time.Time
	// Logger receives the server's log; default slog.Default().
	Logger *slog.Logger
}

// Server is a running storage server: a libp2p host serving the storage
// protocol (protocol.StorageServer) from a share store on disk behind a
// paywall, with a durable spent set, prices published by a pricing agent,
// coins deposited at the mint in the background, and optional metrics.
// Close stops it.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	host    host.Host
	mintID  peer.ID
	mint    *protocol.MintClient
	keysets *serverKeysets

	missMu     sync.Mutex
	missLast   time.Time
	missFlight chan struct{}
	unit       string
	shares     *shares.Store
	spent      *spentset.Store
	book       *protocol.PriceBook
	agent      pricing.Agent
	ownAgent   io.Closer
	sales      *salesCounter
	policy     *bearerPolicy
	paywall    *protocol.Paywall
	registry   *prometheus.Registry
	metrics    *serverMetrics
	endpoint   *httpEndpoint

	pricesMu  sync.Mutex
	published []*protocol.SignedSchedule // guarded by pricesMu
	// depositing holds a token while coins are deposited and their
	// verdicts recorded (DepositNow, settleBearer): one at a time.
	depositing chan struct{}
	kick       chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewServer starts a storage server as c says. It opens the share store
// and the spent set (an error wrapping [ErrDirInUse] if another process
// holds them), starts the host, connects to the mint and fetches its
// keysets (an error wrapping [ErrUnreachable] if the mint cannot be
// reached), publishes a first schedule, serves the storage protocol, and
// starts the loops that publish prices, refresh keysets and deposit
// coins.
//
// ctx bounds the start only; the server runs until [Server.Close].
func NewServer(ctx context.Context, c ServerConfig) (_ *Server, err error) {
	if c.Dir == "" {
		return nil, errors.New("node: server: no directory given")
	}
	if c.Mint.ID == "" {
		return nil, ErrNoMint
	}
	c.SchedulePeriod = orDefault(c.SchedulePeriod, DefaultSchedulePeriod)
	c.ScheduleValidity = orDefault(c.ScheduleValidity, 3*c.SchedulePeriod)
	if c.ScheduleValidity <= c.SchedulePeriod {
		return nil, fmt.Errorf("node: server: schedule validity %v must be longer than the period %v", c.ScheduleValidity, c.SchedulePeriod)
	}
	c.SalesWindow = orDefault(c.SalesWindow, DefaultSalesWindow)
	c.KeysetRefresh = orDefault(c.KeysetRefresh, DefaultKeysetRefresh)
	c.DepositInterval = orDefault(c.DepositInterval, DefaultDepositInterval)
	c.SpentPruneInterval = orDefault(c.SpentPruneInterval, DefaultSpentPruneInterval)
	if c.BearerCap == 0 {
		c.BearerCap = protocol.DefaultBearerCap
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	identity, err := MintIdentity(c.Mint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: server directory: %w", err)
	}

	s := &Server{
		cfg:     c,
		log:     c.Logger.With("role", "server"),
		keysets: newServerKeysets(),
		book:    protocol.NewPriceBook(),
		kick:    make(chan struct{}, 1),

		depositing: make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	keep := int(c.SalesWindow / c.SchedulePeriod)
	s.sales = &salesCounter{keep: min(max(keep, 1), 1024)}

	// The stores first: a directory in use by another server fails here,
	// before anything listens.
	shareOpts := []shares.Option{shares.WithClock(c.Clock)}
	if c.MaxShareSize != 0 {
		shareOpts = append(shareOpts, shares.WithMaxShareSize(c.MaxShareSize))
	}
	if s.shares, err = shares.Open(filepath.Join(c.Dir, ServerSharesDir), c.Capacity, shareOpts...); err != nil {
		return nil, dirInUse(c.Dir, err)
	}
	if s.spent, err = spentset.Open(filepath.Join(c.Dir, ServerSpentFile), spentset.WithKeysets(s.keysets.depositUntil)); err != nil {
		return nil, dirInUse(c.Dir, err)
	}

	s.host, err = NewHost(ctx, HostConfig{KeyFile: filepath.Join(c.Dir, IdentityFile), ListenAddrs: c.ListenAddrs, Options: c.HostOptions})
	if err != nil {
		return nil, err
	}
	if s.mintID, err = Connect(ctx, s.host, c.Mint, "scrip-mint"); err != nil {
		return nil, err
	}
	s.mint = protocol.NewMintClient(s.host, s.mintID, identity)
	if err := s.RefreshKeysets(ctx); err != nil {
		return nil, err
	}
	units := s.keysets.units(c.Clock())
	switch s.unit = c.Unit; {
	case s.unit != "" && !slices.Contains(units, s.unit):
		return nil, fmt.Errorf("%w: the mint has no keyset open for spending in %s (units: %s)", ErrNoUnit, s.unit, strings.Join(units, ", "))
	case s.unit == "" && len(units) != 1:
		return nil, fmt.Errorf("%w: the mint's keysets open for spending are in %d units (%s)", ErrNoUnit, len(units), strings.Join(units, ", "))
	case s.unit == "":
		s.unit = units[0]
	}

	st, err := s.spent.Stats(ctx)
	if err != nil {
		return nil, err
	}
	s.policy = &bearerPolicy{limit: c.BearerCap, refuse: c.RefuseOverCap, deposit: s.depositFirst, credit: s.admitCredit,
		kick: s.kickDeposits, held: st.PendingBearer}

	if err := s.startAgent(); err != nil {
		return nil, err
	}
	if err := s.loadSchedules(c.Clock()); err != nil {
		return nil, fmt.Errorf("node: reading schedules: %w", err)
	}
	if err := s.PublishPrices(ctx); err != nil {
		return nil, err
	}

	s.registry = newRegistry()
	s.metrics = newServerMetrics(s, s.registry)
	spent := revenueStore{Store: s.spent, revenue: s.metrics.revenue.WithLabelValues(s.unit)}
	s.paywall = protocol.NewPaywall(s.host.ID(), s.book, s.keysets.list, spent,
		protocol.WithPaywallClock(c.Clock), protocol.WithDepositPolicy(s.policy), protocol.WithKeysetMiss(s.keysetMiss))
	storage := protocol.NewStorageServer(salesBackend{Backend: s.shares.Backend(), sales: s.sales}, s.paywall)
	handler := s.metrics.calls.wrap(storage.Handler(), storageOpNames, s.metrics.observe)
	s.host.SetStreamHandler(libp2pprotocol.ID(protocol.StorageID),
		protocol.NewStreamHandler(protocol.StorageID, handler, protocol.WithBaseContext(s.ctx)))

	if c.MetricsAddr != "" {
		if s.endpoint, err = startHTTP(c.MetricsAddr, metricsHandler(s.registry)); err != nil {
			return nil, fmt.Errorf("node: server metrics: %w", err)
		}
	}
	s.wg.Add(3)
	go s.priceLoop()
	go s.keysetLoop()
	go s.depositLoop()
	if st.Pending > 0 {
		s.kickDeposits()
	}
	s.log.Info("server started", "peer", s.host.ID().String(), "addrs", s.host.Addrs(), "capacity", c.Capacity, "unit", s.unit)
	return s, nil
}

// dirInUse marks a store's lock timeout as [ErrDirInUse].
func dirInUse(dir string, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w: %s (is it running already?): %w", ErrDirInUse, dir, err)
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// startAgent sets the pricing agent: the configured one, an external
// program, or a TargetAgent.
func (s *Server) startAgent() error {
	if s.cfg.Agent != nil {
		s.agent = s.cfg.Agent
		return nil
	}
	target, err := pricing.NewTargetAgent()
	if err != nil {
		return err
	}
	if len(s.cfg.AgentProgram) == 0 {
		s.agent = target
		return nil
	}
	opts := []pricing.ExternalOption{
		pricing.WithFallback(target),
		pricing.WithFailureFunc(func(err error) { s.log.Warn("pricing agent failed; the default agent answers", "err", err) }),
	}
	if s.cfg.AgentStderr != nil {
		opts = append(opts, pricing.WithAgentStderr(s.cfg.AgentStderr))
	}
	ext, err := pricing.NewExternal(s.cfg.AgentProgram, opts...)
	if err != nil {
		return err
	}
	s.agent, s.ownAgent = ext, ext
	return nil
}

// refreshMintAddrs reads the announcements file again, when the server
// has no connection to the mint, and if the file gives the mint other
// addresses, dials those from now on. It is called before every call to
// the mint, so that a mint restarted on other ports is found at the next
// call.
func (s *Server) refreshMintAddrs() {
	if s.cfg.AnnouncementsFile == "" || s.host.Network().Connectedness(s.mintID) == network.Connected {
		return
	}
	anns, err := ReadAnnouncements(s.cfg.AnnouncementsFile)
	if err != nil {
		s.log.Warn("reading the announcements file for the mint's addresses", "err", err)
		return
	}
	for _, a := range anns {
		if a.Role != RoleMint || a.ID != s.mintID.String() {
			continue
		}
		info, err := a.AddrInfo()
		if err != nil || len(info.Addrs) == 0 {
			return
		}
		ps := s.host.Peerstore()
		old := ps.Addrs(s.mintID)
		if len(old) == len(info.Addrs) && slices.EqualFunc(old, info.Addrs, func(x, y ma.Multiaddr) bool { return x.Equal(y) }) {
			return
		}
		ps.ClearAddrs(s.mintID)
		ps.AddAddrs(s.mintID, info.Addrs, peerstore.PermanentAddrTTL)
		s.log.Info("the mint's addresses changed", "addrs", info.Addrs)
		return
	}
}

// Host returns the server's libp2p host.
func (s *Server) Host() host.Host { return s.host }

// Announcement returns the server's announcement: its peer ID and listen
// addresses, for an announcements file.
func (s *Server) Announcement() Announcement { return HostAnnouncement(RoleServer, s.host) }

// Unit returns the unit of the server's prices.
func (s *Server) Unit() string { return s.unit }

// Prices returns the server's published schedules.
func (s *Server) Prices() *protocol.PriceBook { return s.book }

// Shares returns the server's share store.
func (s *Server) Shares() *shares.Store { return s.shares }

// Spent returns the server's spent set.
func (s *Server) Spent() *spentset.Store { return s.spent }

// Registry returns the Prometheus registry of the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// MetricsURL returns the URL of the metrics endpoint's base, or "" if it
// has none.
func (s *Server) MetricsURL() string {
	if s.endpoint == nil {
		return ""
	}
	return s.endpoint.URL()
}

// Balance returns the server's balances at the mint: the value credited
// for its deposits and not paid out, one entry per unit.
func (s *Server) Balance(ctx context.Context) ([]protocol.UnitAmount, error) {
	return s.Mint().Balance(ctx)
}

// Mint returns the client of the server's mint, calling from the
// server's host: for Balance and Payout. If the server has no connection
// to the mint, it first reads the mint's addresses again from
// AnnouncementsFile.
func (s *Server) Mint() *protocol.MintClient {
	s.refreshMintAddrs()
	return s.mint
}

// Close stops the server: its loops, the metrics endpoint, the exchanges
// in progress and the host, the pricing program it started, and then its
// stores. Coins not yet deposited stay pending in the spent set for the
// next start. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		var errs []error
		if s.endpoint != nil {
			errs = append(errs, s.endpoint.Close())
		}
		if s.host != nil {
			s.host.RemoveStreamHandler(libp2pprotocol.ID(protocol.StorageID))
			errs = append(errs, s.host.Close())
		}
		if s.ownAgent != nil {
			errs = append(errs, s.ownAgent.Close())
		}
		if s.spent != nil {
			errs = append(errs, s.spent.Close())
		}
		if s.shares != nil {
			errs = append(errs, s.shares.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

var _ io.Closer = (*Server)(nil)
