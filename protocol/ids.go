package protocol

import (
	"crypto/sha256"
	"time"

	"github.com/scripnet/scrip/coin"
)

// Protocol IDs. They are untyped so that they serve both as libp2p
// protocol.ID values and as the string hashed into a [RequestDigest].
const (
	// StorageID is the storage service: a pb.StorageRequest in the body of
	// a pb.Request, a pb.StorageResponse in the body of a pb.Response.
	StorageID = "/scrip/storage/1.0.0"
	// MintID is the mint service: a pb.MintRequest in the body of a
	// pb.Request, a pb.MintResponse in the body of a pb.Response.
	MintID = "/scrip/mint/1.0.0"
)

// Field sizes.
const (
	// RequestIDSize is the length of a request ID.
	RequestIDSize = 16
	// StorageIndexSize is the length of a storage index.
	StorageIndexSize = 16
	// ScheduleIDSize is the length of a schedule ID.
	ScheduleIDSize = sha256.Size
	// DigestSize is the length of a request digest.
	DigestSize = sha256.Size
)

// Limits on one call. Message caps are derived from them with room for the
// envelope and the other fields.
const (
	// MaxSpends bounds the spends in one Request. Sixty-four coins of
	// distinct power-of-two denominations pay any uint64 amount.
	MaxSpends = 64
	// MaxWriteSize bounds the data of one Write.
	MaxWriteSize = 1 << 20
	// MaxReadSize bounds the length of one Read.
	MaxReadSize = 1 << 20
	// MaxDepositCoins bounds the coins of one Deposit.
	MaxDepositCoins = 1024
	// MaxIssueCoins bounds the coins of one WithdrawBegin, WithdrawFinish,
	// Swap or Restore.
	MaxIssueCoins = 256
	// MaxScheduleSize bounds an encoded SignedSchedule.
	MaxScheduleSize = 1024
	// MaxErrorMessage bounds the message of an error answer, in bytes;
	// longer messages are cut.
	MaxErrorMessage = 256

	// envelopeRoom is room for everything in a message but its bulk data.
	envelopeRoom = 64 << 10
)

// Message caps, enforced on the length prefix of every frame before the
// message is read or memory is reserved for it.
const (
	// MaxStorageRequestSize bounds a Request on [StorageID]: a full Write
	// plus MaxSpends spends and the rest of the message.
	MaxStorageRequestSize = MaxWriteSize + MaxSpends*(coin.SpendSize+3) + envelopeRoom
	// MaxStorageResponseSize bounds a Response on [StorageID]: a full Read
	// plus the rest of the message.
	MaxStorageResponseSize = MaxReadSize + envelopeRoom
	// MaxMintRequestSize bounds a Request on [MintID]: a full Deposit, each
	// coin a spend and a digest.
	MaxMintRequestSize = MaxDepositCoins*(coin.SpendSize+DigestSize+8) + envelopeRoom
	// MaxMintResponseSize bounds a Response on [MintID]: a Deposit answered
	// with evidence for every coin, or the published keysets.
	MaxMintResponseSize = 1 << 20
)

// Default deadlines.
const (
	// DefaultCallTimeout bounds a whole call at the caller when its context
	// has no deadline.
	DefaultCallTimeout = 30 * time.Second
	// DefaultReadTimeout bounds the time a server waits for the whole
	// request; a peer that sends half a request and stalls is reset then.
	DefaultReadTimeout = 10 * time.Second
	// DefaultHandleTimeout bounds a server's whole exchange on a stream:
	// reading the request, handling it and writing the response.
	DefaultHandleTimeout = 30 * time.Second
)

// Caps are the message caps of one protocol, in bytes.
type Caps struct {
	Request  int // largest Request frame body
	Response int // largest Response frame body
}

// CapsFor returns the caps of a scrip protocol ID, and false for any other
// ID.
func CapsFor(id string) (Caps, bool) {
	switch id {
	case StorageID:
		return Caps{MaxStorageRequestSize, MaxStorageResponseSize}, true
	case MintID:
		return Caps{MaxMintRequestSize, MaxMintResponseSize}, true
	}
	return Caps{}, false
}
