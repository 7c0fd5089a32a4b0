package shares

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/protocol"
)

// Backend is a [Store] as a protocol.StorageBackend: the same methods, with
// Close closing a share ([Store.CloseShare]) rather than the store.
type Backend struct{ *Store }

var _ protocol.StorageBackend = Backend{}

// Backend returns s as a protocol.StorageBackend.
func (s *Store) Backend() Backend { return Backend{s} }

// Close closes an open share of writer's; see [Store.CloseShare].
func (b Backend) Close(ctx context.Context, writer peer.ID, si [protocol.StorageIndexSize]byte, share uint32) error {
	return b.CloseShare(ctx, writer, si, share)
}
