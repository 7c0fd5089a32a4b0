package protocol

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// ProtocolLimits are the libp2p resource-manager limits of one scrip
// protocol at a server: how many streams of it may be open at once, from
// all peers and from one peer, and how much memory their frames may hold.
// A stream over a limit is reset by the host as soon as its protocol is
// negotiated, before the handler sees it.
type ProtocolLimits struct {
	// Streams bounds the protocol's inbound streams from all peers.
	Streams int
	// PeerStreams bounds the protocol's inbound streams from one peer.
	PeerStreams int
	// Memory bounds the bytes of frames buffered for the protocol, and
	// PeerMemory those for one peer.
	Memory     int64
	PeerMemory int64
}

// DefaultLimits returns the default limits of a scrip protocol: for
// storage 1,024 streams in all, 128 per peer, 512 MiB of frames in all and
// 32 MiB per peer (about 28 full Writes); for the mint 1,024 streams in
// all, 16 per peer, 256 MiB and 8 MiB. It panics for another protocol.
func DefaultLimits(id string) ProtocolLimits {
	switch id {
	case StorageID:
		return ProtocolLimits{Streams: 1024, PeerStreams: 128, Memory: 512 << 20, PeerMemory: 32 << 20}
	case MintID:
		return ProtocolLimits{Streams: 1024, PeerStreams: 16, Memory: 256 << 20, PeerMemory: 8 << 20}
	}
	panic(fmt.Sprintf("protocol: DefaultLimits: %q is not a scrip protocol ID", id))
}

// AddLimits sets l as the protocol and protocol-peer limits of protocol id
// in cfg, a go-libp2p resource-manager configuration (start from
// rcmgr.DefaultLimits). The limits are fixed: they do not grow with the
// machine's memory.
func AddLimits(cfg *rcmgr.ScalingLimitConfig, id string, l ProtocolLimits) {
	out := max(4*l.Streams, 64)
	cfg.AddProtocolLimit(libp2pprotocol.ID(id),
		rcmgr.BaseLimit{StreamsInbound: l.Streams, StreamsOutbound: out, Streams: l.Streams + out, Memory: l.Memory},
		rcmgr.BaseLimitIncrease{})
	peerOut := max(4*l.PeerStreams, 64)
	cfg.AddProtocolPeerLimit(libp2pprotocol.ID(id),
		rcmgr.BaseLimit{StreamsInbound: l.PeerStreams, StreamsOutbound: peerOut, Streams: l.PeerStreams + peerOut, Memory: l.PeerMemory},
		rcmgr.BaseLimitIncrease{})
}

// NewResourceManager returns a libp2p resource manager (pass it to
// libp2p.New with libp2p.ResourceManager) with go-libp2p's default limits
// scaled to this machine (those libp2p.New uses by default), for each
// scrip protocol the limits in limits or else [DefaultLimits], and the
// resource-manager options given. (In this package's benchmarks,
// go-libp2p's metrics, which rcmgr.WithMetricsDisabled turns off, took
// about a tenth of the CPU: they format a timestamp for every
// reservation.)
func NewResourceManager(limits map[string]ProtocolLimits, opts ...rcmgr.Option) (network.ResourceManager, error) {
	cfg := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&cfg)
	for _, id := range []string{StorageID, MintID} {
		l, ok := limits[id]
		if !ok {
			l = DefaultLimits(id)
		}
		AddLimits(&cfg, id, l)
	}
	for id := range limits {
		if _, ok := CapsFor(id); !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownProtocol, id)
		}
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(cfg.AutoScale()), opts...)
	if err != nil {
		return nil, fmt.Errorf("protocol: resource manager: %w", err)
	}
	return rm, nil
}
