package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/scripnet/scrip/protocol"
)

// IdentityFile is the name of the file, in a role's directory, that holds
// the role's libp2p identity key.
const IdentityFile = "identity.key"

// DefaultListenAddrs are the addresses a host listens on when its
// [HostConfig] names none: loopback only, a port picked by the system, on
// TCP and on QUIC.
var DefaultListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// DialTimeout bounds [Connect] when its context has no deadline.
const DialTimeout = 10 * time.Second

// Errors of hosts and connections.
var (
	// ErrIdentity reports an identity key file that cannot be read or
	// is not an Ed25519 libp2p private key.
	ErrIdentity = errors.New("node: bad identity key file")
	// ErrUnreachable reports a peer of an announcement that could not be
	// connected to.
	ErrUnreachable = errors.New("node: peer unreachable")
)

// HostConfig configures [NewHost]. The zero value, but for KeyFile, is a
// host on [DefaultListenAddrs] with scrip's default resource limits.
type HostConfig struct {
	// KeyFile is the path of the identity key, a libp2p Ed25519 private
	// key in libp2p's protobuf encoding. If the file does not exist, a
	// new key is made and written there with mode 0600. Required.
	KeyFile string
	// ListenAddrs are multiaddrs to listen on; nil means
	// [DefaultListenAddrs].
	ListenAddrs []string
	// Limits overrides the resource-manager limits of scrip protocols
	// (see protocol.NewResourceManager); nil means protocol.DefaultLimits.
	Limits map[string]protocol.ProtocolLimits
	// Options are added to the host's libp2p options, after this
	// package's.
	Options []libp2p.Option
}

// NewHost returns a libp2p host for a scrip role: the identity key from
// c.KeyFile (made on first run), listening on TCP and QUIC at
// c.ListenAddrs, with a resource manager that bounds scrip's protocols
// (protocol.NewResourceManager) and libp2p's metrics off. The caller
// closes it; closing the host closes its resource manager.
func NewHost(ctx context.Context, c HostConfig) (host.Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.KeyFile == "" {
		return nil, fmt.Errorf("%w: no key file given", ErrIdentity)
	}
	key, err := LoadIdentity(c.KeyFile)
	if err != nil {
		return nil, err
	}
	listen := c.ListenAddrs
	if len(listen) == 0 {
		listen = DefaultListenAddrs
	}
	rm, err := protocol.NewResourceManager(c.Limits, rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.ResourceManager(rm),
		libp2p.DisableMetrics(),
		libp2p.DisableRelay(),
	}
	h, err := libp2p.New(append(opts, c.Options...)...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("node: starting libp2p host: %w", err)
	}
	return h, nil
}

// LoadIdentity returns the libp2p identity key in the file at path,
// making an Ed25519 key and writing it there (mode 0600, atomically) if
// the file does not exist. A file whose mode lets others read it is
// narrowed to 0600. Any key but Ed25519 is refused with [ErrIdentity]:
// a mint signs its keysets with this key, and a server's schedules need a
// key embedded in its peer ID.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return createIdentity(path)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("%w: narrowing the mode of %s: %w", ErrIdentity, path, err)
		}
	}
	key, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIdentity, path, err)
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: %s holds a %v key, want Ed25519", ErrIdentity, path, key.Type())
	}
	return key, nil
}

// createIdentity makes a key and writes it to path, unless another
// process wrote one first (then that one is used).
func createIdentity(path string) (crypto.PrivKey, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: generating identity key: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("node: encoding identity key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	tmp, err := os.CreateTemp(dir, ".identity-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	// A hard link fails if the file exists: the first writer wins.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadIdentity(path)
		}
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if err := fsyncDir(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	return key, nil
}

// fsyncDir makes a directory's entries durable.
func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// HostAnnouncement returns the announcement of h in role (RoleMint or
// RoleServer): its peer ID and listen addresses.
func HostAnnouncement(role string, h host.Host) Announcement {
	return Announce(role, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
}

// Connect connects h to the peer of announcement a, keeps its addresses
// in h's peerstore for good (so that a dropped connection is dialled
// again by the next call) and protects the connection from the
// connection manager under tag. It returns the peer's ID. A peer that
// cannot be reached within the context's deadline, or
// [DialTimeout] if it has none, is an error wrapping
// [ErrUnreachable].
func Connect(ctx context.Context, h host.Host, a Announcement, tag string) (peer.ID, error) {
	info, err := a.AddrInfo()
	if err != nil {
		return "", err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DialTimeout)
		defer cancel()
	}
	h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.PermanentAddrTTL)
	if err := h.Connect(ctx, info); err != nil {
		return "", fmt.Errorf("%w: %s %s at %v: %w", ErrUnreachable, a.Role, a.ID, a.Addrs, err)
	}
	if tag != "" {
		h.ConnManager().Protect(info.ID, tag)
	}
	return info.ID, nil
}
