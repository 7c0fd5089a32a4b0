package shares

import (
	"errors"
	"fmt"

	"github.com/scripnet/scrip/protocol"
)

// Sentinel errors. Those a client can cause wrap the protocol sentinel of
// the code that answers them (NO_SPACE, NOT_FOUND, BAD_REQUEST), so that
// the storage server maps them without help.
var (
	// ErrNoSpace reports an allocation that does not fit in the capacity
	// left, or shares larger than the largest share size. It wraps
	// protocol.ErrNoSpace.
	ErrNoSpace = fmt.Errorf("shares: no space: %w", protocol.ErrNoSpace)
	// ErrNotFound reports a share that is not held: never closed, lease
	// ended, or collected. It wraps protocol.ErrNotFound.
	ErrNotFound = fmt.Errorf("shares: no such share: %w", protocol.ErrNotFound)
	// ErrNotOpen reports a Write or Close of a share that is not open for
	// this writer: never allocated, allocated by another peer, already
	// closed, abandoned or past its lease. It wraps protocol.ErrNotFound.
	ErrNotOpen = fmt.Errorf("shares: no open share of this writer: %w", protocol.ErrNotFound)
	// ErrOutOfBounds reports a write outside the allocated size or a read
	// offset past the end of a share. It wraps protocol.ErrBadRequest.
	ErrOutOfBounds = fmt.Errorf("shares: outside the share: %w", protocol.ErrBadRequest)
	// ErrWriteBudget reports a write past an open share's write budget:
	// the allocation paid for writing the share, not for rewriting it
	// without end. It wraps protocol.ErrBadRequest.
	ErrWriteBudget = fmt.Errorf("shares: writes past the share's write budget: %w", protocol.ErrBadRequest)
	// ErrInvalid reports an argument out of range: no or too many share
	// numbers, a share number twice or too large, a zero size, a lease out
	// of range, a write or read too large, a reason too long. It wraps
	// protocol.ErrBadRequest.
	ErrInvalid = fmt.Errorf("shares: invalid argument: %w", protocol.ErrBadRequest)
	// ErrCorrupt reports metadata that does not decode.
	ErrCorrupt = errors.New("shares: metadata is corrupt")
	// ErrClosed reports a call on a closed [Store].
	ErrClosed = errors.New("shares: store closed")
)
