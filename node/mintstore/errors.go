package mintstore

import (
	"errors"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Errors of the package. The store's methods also return the errors that
// [protocol.MintStore] documents ([protocol.ErrNonceReused],
// [protocol.ErrUnknownFunding], ...), as [protocol.MemMintStore] does.
// Those that are a *[protocol.Error] answer a mint call with their code.
// Compare with [errors.Is].
var (
	// ErrCorrupt reports a stored record that does not decode, or
	// counters and indexes that disagree with the records ([Store.Check]).
	ErrCorrupt = errors.New("mintstore: corrupt store")

	// ErrIssueClosed (EXPIRED_KEYSET) refuses a row of a keyset whose
	// rows [Store.Prune] has begun to delete: a nonce answered before
	// must never be answered afresh.
	ErrIssueClosed = &protocol.Error{Code: pb.Code_EXPIRED_KEYSET, Message: "keyset's issue window is over"}

	// ErrKeysetRetired (EXPIRED_KEYSET) refuses a new row of a keyset
	// retired because the store was restored from a copy ([Open]): the
	// keyset may have answered, after the copy was taken, nonces whose
	// rows the copy lacks, so it answers no nonce afresh. Rows it has
	// stored are still answered, and its coins stay good.
	ErrKeysetRetired = protocol.ErrKeysetRetired

	// ErrDepositClosed (EXPIRED_KEYSET) refuses to spend a coin of a
	// keyset whose spent-set entries [Store.Prune] has begun to delete: a
	// coin spent before could not be told from a fresh one.
	ErrDepositClosed = &protocol.Error{Code: pb.Code_EXPIRED_KEYSET, Message: "keyset's deposit window is over"}

	// ErrNotRevoked (BAD_REQUEST) refuses to recoup a coin of a keyset that
	// is not revoked: such coins are swapped, not recouped.
	ErrNotRevoked = &protocol.Error{Code: pb.Code_BAD_REQUEST, Message: "keyset is not revoked"}

	// ErrBadPolicy reports a [KeyPolicy] whose windows cannot make a
	// keyset.
	ErrBadPolicy = errors.New("mintstore: bad key policy")
)
