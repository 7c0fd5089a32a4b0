package node

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/mintstore"
	"github.com/scripnet/scrip/protocol"
)

// Files in a mint's directory.
const (
	// MintStoreFile is the mint's bbolt file (package mintstore).
	MintStoreFile = "mint.db"
	// MintAdminFile holds the URL and token of the mint's admin endpoint
	// (see [AdminInfo]), mode 0600, rewritten at each start.
	MintAdminFile = "admin.json"
)

// Defaults of [MintConfig].
const (
	// DefaultUnit is the unit of a mint's keysets unless configured: a
	// millisatoshi-sized unit, the one pricing.DefaultBase is meant for.
	DefaultUnit = "msat"
	// DefaultAdminAddr is the admin endpoint's address in the scrip
	// command's defaults.
	DefaultAdminAddr = "127.0.0.1:7390"
	// DefaultMaintainInterval bounds the time between two maintenance
	// runs of a mint (keyset rotation, pruning, pending payouts).
	DefaultMaintainInterval = time.Hour
)

// MintConfig configures [NewMint]. Only Dir is required.
type MintConfig struct {
	// Dir is the mint's directory: its identity key ([IdentityFile]),
	// its store ([MintStoreFile]) and its admin file ([MintAdminFile]).
	// It is created (mode 0700) if needed.
	Dir string
	// ListenAddrs are the libp2p addresses to listen on; nil means
	// [DefaultListenAddrs].
	ListenAddrs []string
	// HostOptions are extra libp2p options (see [HostConfig]).
	HostOptions []libp2p.Option
	// AdminAddr is the host:port of the admin HTTP endpoint (vouchers,
	// keysets, audit, metrics). Empty: no admin endpoint. Port 0 picks a
	// free port ([Mint.AdminURL] tells which).
	AdminAddr string
	// AllowRemoteAdmin lets AdminAddr be an address other than loopback.
	// Without it such an address is refused with [ErrNotLoopback]: the
	// admin endpoint creates money.
	AllowRemoteAdmin bool
	// Unit is the unit of the keysets; default [DefaultUnit]. Ignored if
	// KeyPolicy is set.
	Unit string
	// KeyPolicy says how keysets are made and rotated; nil means
	// mintstore.DefaultKeyPolicy(Unit).
	KeyPolicy *mintstore.KeyPolicy
	// MaintainInterval is the time between maintenance runs: keyset
	// rotation (mintstore.Keys.Rotate), pruning and pending payouts.
	// Default: [DefaultMaintainInterval], or a quarter of the key
	// policy's overlap if that is shorter.
	MaintainInterval time.Duration
	// Clock is the time keyset windows, rotation and pruning run on;
	// default time.Now.
	Clock func() time.Time
	// Logger receives the mint's log; default slog.Default().
	Logger *slog.Logger
	// GuardFile is the path of the store's restore guard file (see
	// mintstore.WithGuardFile); default: the store's path + ".guard", in
	// Dir. Keep it outside what backups of Dir copy to also catch a
	// restore of a copy of the whole directory.
	GuardFile string
}

// Mint is a running mint: a libp2p host serving the mint protocol
// (protocol.MintService) from a mintstore.Store, with prepaid-voucher
// funding (protocol.VoucherFunding), keysets rotated and pruned in the
// background, and an optional admin HTTP endpoint. Close stops it.
type Mint struct {
	cfg      MintConfig
	policy   mintstore.KeyPolicy
	log      *slog.Logger
	host     host.Host
	store    *mintstore.Store
	keys     *mintstore.Keys
	funding  *protocol.VoucherFunding
	service  *protocol.MintService
	registry *prometheus.Registry
	admin    *httpEndpoint
	token    string
	identity ed25519.PublicKey

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewMint starts a mint as c says. It opens (or creates) the mint's store
// (retiring its keysets if it was restored from a copy: see
// mintstore.Open), loads its keysets and makes the first one if none
// issues, starts the libp2p host with the mint's identity key, which also
// signs the keysets, serves the mint protocol on it, settles payouts left
// pending, and starts the admin endpoint if c.AdminAddr is set.
//
// The payout key of voucher funding is derived from the identity key, so
// a payout retried after a restart opens the same voucher.
//
// ctx bounds the start only; the mint runs until [Mint.Close].
func NewMint(ctx context.Context, c MintConfig) (_ *Mint, err error) {
	if c.Dir == "" {
		return nil, errors.New("node: mint: no directory given")
	}
	if c.AdminAddr != "" && !c.AllowRemoteAdmin {
		if err := checkLoopback(c.AdminAddr); err != nil {
			return nil, fmt.Errorf("node: mint admin endpoint: %w (the admin endpoint creates money: keep it on 127.0.0.1)", err)
		}
	}
	if c.Unit == "" {
		c.Unit = DefaultUnit
	}
	policy := mintstore.DefaultKeyPolicy(c.Unit)
	if c.KeyPolicy != nil {
		policy = *c.KeyPolicy
	}
	if c.MaintainInterval <= 0 {
		c.MaintainInterval = DefaultMaintainInterval
		if q := policy.Overlap / 4; q > 0 && q < c.MaintainInterval {
			c.MaintainInterval = max(q, time.Second)
		}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: mint directory: %w", err)
	}
	m := &Mint{cfg: c, policy: policy, log: c.Logger.With("role", "mint")}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			m.Close()
		}
	}()

	key, err := LoadIdentity(filepath.Join(c.Dir, IdentityFile))
	if err != nil {
		return nil, err
	}
	identity, err := ed25519Identity(key)
	if err != nil {
		return nil, err
	}
	if m.store, err = mintstore.Open(filepath.Join(c.Dir, MintStoreFile), c.storeOptions()...); err != nil {
		return nil, dirInUse(c.Dir, err)
	}
	m.storeOpened()
	if m.keys, err = mintstore.OpenKeys(ctx, m.store, identity, mintstore.WithClock(c.Clock)); err != nil {
		return nil, fmt.Errorf("node: mint keysets: %w", err)
	}
	if ks, err := m.keys.Rotate(ctx, policy); err != nil {
		return nil, fmt.Errorf("node: mint keysets: %w", err)
	} else if ks != nil {
		m.log.Info("new keyset", "id", keysetIDString(ks.ID()), "unit", ks.Unit)
	}
	m.identity = identity.Public().(ed25519.PublicKey)
	m.funding = protocol.NewVoucherFunding(m.store, payoutKey(identity))

	m.host, err = NewHost(ctx, HostConfig{KeyFile: filepath.Join(c.Dir, IdentityFile), ListenAddrs: c.ListenAddrs, Options: c.HostOptions})
	if err != nil {
		return nil, err
	}
	m.service = protocol.NewMintService(m.host.ID(), m.keys.Keyring(), m.store, m.funding, protocol.WithMintClock(c.Clock))
	m.registry = newRegistry()
	metrics := newMintMetrics(m)
	handler := metrics.calls.wrap(m.service.Handle, mintOpNames, metrics.observe)
	m.host.SetStreamHandler(libp2pprotocol.ID(protocol.MintID),
		protocol.NewStreamHandler(protocol.MintID, handler, protocol.WithBaseContext(m.ctx)))

	if err := m.service.ResumePayouts(ctx); err != nil {
		m.log.Warn("pending payouts not settled yet", "err", err)
	}
	if c.AdminAddr != "" {
		if err := m.startAdmin(); err != nil {
			return nil, err
		}
	}
	m.wg.Add(1)
	go m.maintain()
	m.log.Info("mint started", "peer", m.host.ID().String(), "addrs", m.host.Addrs(), "admin", m.AdminURL())
	return m, nil
}

// ed25519Identity returns key as an ed25519 private key: the mint signs
// its keysets with its libp2p key, so clients and servers find the key
// that signs keysets in the mint's peer ID.
func ed25519Identity(key crypto.PrivKey) (ed25519.PrivateKey, error) {
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: a mint needs an Ed25519 key", ErrIdentity)
	}
	raw, err := key.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrIdentity, len(raw))
	}
	return ed25519.PrivateKey(raw), nil
}

// tagPayoutKey is the domain tag of the payout key's derivation.
const tagPayoutKey = "scrip/v1/mint-payout-key\x00"

// payoutKey derives voucher funding's payout key from the identity key.
func payoutKey(identity ed25519.PrivateKey) [32]byte {
	mac := hmac.New(sha256.New, identity.Seed())
	mac.Write([]byte(tagPayoutKey))
	return [32]byte(mac.Sum(nil))
}

// MintIdentity returns the key that signs the keysets of the mint with
// the given announcement: the Ed25519 key of its peer ID.
func MintIdentity(a Announcement) (ed25519.PublicKey, error) {
	info, err := a.AddrInfo()
	if err != nil {
		return nil, err
	}
	pub, err := info.ID.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("node: mint %s: no key in its peer ID: %w", a.ID, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("node: mint %s: key type %v, want Ed25519", a.ID, pub.Type())
	}
	raw, err := pub.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("node: mint %s: bad Ed25519 key", a.ID)
	}
	return ed25519.PublicKey(raw), nil
}

// maintain rotates keysets, prunes the store and settles pending payouts
// every MaintainInterval until Close.
func (m *Mint) maintain() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.MaintainInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.maintainOnce(m.ctx)
		}
	}
}

// maintainOnce is one maintenance run; failures are logged and retried at
// the next run.
func (m *Mint) maintainOnce(ctx context.Context) {
	if ks, err := m.keys.Rotate(ctx, m.policy); err != nil {
		m.log.Error("rotating keysets", "err", err)
	} else if ks != nil {
		m.log.Info("new keyset", "id", keysetIDString(ks.ID()), "unit", ks.Unit)
	}
	if st, err := m.keys.Prune(ctx); err != nil {
		m.log.Error("pruning", "err", err)
	} else if st.Rows+st.Spent > 0 || len(st.Keysets) > 0 {
		m.log.Info("pruned", "rows", st.Rows, "spent", st.Spent, "keysets", len(st.Keysets))
	}
	if err := m.service.ResumePayouts(ctx); err != nil {
		m.log.Warn("pending payouts not settled yet", "err", err)
	}
}

// Host returns the mint's libp2p host.
func (m *Mint) Host() host.Host { return m.host }

// Announcement returns the mint's announcement: its peer ID and listen
// addresses, for an announcements file.
func (m *Mint) Announcement() Announcement { return HostAnnouncement(RoleMint, m.host) }

// Identity returns the public key that signs the mint's keysets.
func (m *Mint) Identity() ed25519.PublicKey { return m.identity }

// Store returns the mint's store.
func (m *Mint) Store() *mintstore.Store { return m.store }

// Keys returns the mint's keysets manager.
func (m *Mint) Keys() *mintstore.Keys { return m.keys }

// Funding returns the mint's voucher funding.
func (m *Mint) Funding() *protocol.VoucherFunding { return m.funding }

// Unit returns the unit of the mint's keysets.
func (m *Mint) Unit() string { return m.policy.Unit }

// Registry returns the Prometheus registry of the mint's metrics, which
// the admin endpoint serves at /metrics.
func (m *Mint) Registry() *prometheus.Registry { return m.registry }

// CreateVoucher creates a voucher worth amount of unit (the mint's unit if
// empty) and returns its code: the admin call behind POST /vouchers.
func (m *Mint) CreateVoucher(ctx context.Context, unit string, amount uint64) (string, error) {
	if unit == "" {
		unit = m.policy.Unit
	}
	code, err := m.funding.CreateVoucher(ctx, rand.Reader, unit, amount)
	if err != nil {
		return "", err
	}
	m.log.Info("voucher created", "unit", unit, "amount", amount)
	return code, nil
}

// RotateKeyset makes a new keyset of the mint's policy that starts issuing
// now, whether or not one is due, and returns it: the admin call behind
// POST /keysets/rotate. The keysets issuing before keep issuing until
// their windows end.
func (m *Mint) RotateKeyset(ctx context.Context) (*coin.Keyset, error) {
	ks, err := m.keys.Generate(ctx, m.policy, m.cfg.Clock())
	if err != nil {
		return nil, err
	}
	m.log.Info("new keyset", "id", keysetIDString(ks.ID()), "unit", ks.Unit, "forced", true)
	return ks, nil
}

// RevokeKeyset revokes keyset id, durably, and makes a new keyset at once
// if the revoked one was the one issuing: the admin call behind
// POST /keysets/{id}/revoke. Servers refuse its coins once they refresh
// the mint's keysets.
func (m *Mint) RevokeKeyset(ctx context.Context, id [32]byte) error {
	if err := m.keys.Revoke(ctx, id); err != nil {
		return err
	}
	m.log.Warn("keyset revoked", "id", keysetIDString(id))
	if ks, err := m.keys.Rotate(ctx, m.policy); err != nil {
		return fmt.Errorf("node: keyset revoked, but no new keyset: %w", err)
	} else if ks != nil {
		m.log.Info("new keyset", "id", keysetIDString(ks.ID()), "unit", ks.Unit)
	}
	return nil
}

// Close stops the mint: the maintenance goroutine, the admin endpoint, the
// exchanges in progress and the host, and then closes the store. It is
// safe to call more than once.
func (m *Mint) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		var errs []error
		if m.admin != nil {
			errs = append(errs, m.admin.Close())
		}
		if m.host != nil {
			m.host.RemoveStreamHandler(libp2pprotocol.ID(protocol.MintID))
			errs = append(errs, m.host.Close())
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

var _ io.Closer = (*Mint)(nil)
