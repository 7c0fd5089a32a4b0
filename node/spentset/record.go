package spentset

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Bucket names.
var (
	bucketCoins    = []byte("coins")    // coin_pub → coinRecord
	bucketRequests = []byte("requests") // request ID → requestRecord
	bucketAnswers  = []byte("answers")  // request ID → answer body
	bucketPending  = []byte("pending")  // u64 sequence → coin_pub
	bucketExpiry   = []byte("expiry")   // u64 deposit_until || request ID → empty
	bucketMeta     = []byte("meta")     // counter name → u64
	allBuckets     = [][]byte{bucketCoins, bucketRequests, bucketAnswers, bucketPending, bucketExpiry, bucketMeta}
)

// keyVersion holds the layout version in the meta bucket.
var keyVersion = []byte("version")

const layoutVersion = 1

// never is the deposit deadline of coins whose keyset lookup is not set:
// they are never pruned and not indexed.
const never = math.MaxInt64

// CoinState is what the store knows of one coin. The zero value,
// [CoinUnknown], is a coin the store has not recorded (or has pruned).
type CoinState uint8

// Coin states. [CoinPending] is a coin recorded for a request and not yet
// acknowledged by the mint; the others from [CoinCredited] on are the
// mint's final verdicts on a deposit, which [Store.Acknowledge] records.
const (
	CoinUnknown CoinState = iota
	CoinPending
	CoinCredited
	CoinAlreadyCredited
	CoinDoubleSpent
	CoinInvalid
	CoinExpired
	CoinRevoked
	maxCoinState = CoinRevoked
)

var coinStateNames = [...]string{"unknown", "pending", "credited", "already credited",
	"double spent", "invalid", "expired", "revoked"}

// String names the state.
func (s CoinState) String() string {
	if s <= maxCoinState {
		return coinStateNames[s]
	}
	return fmt.Sprintf("CoinState(%d)", uint8(s))
}

// Final reports whether s is a verdict of the mint.
func (s CoinState) Final() bool { return s >= CoinCredited && s <= maxCoinState }

// DepositState returns the final state that the mint's verdict status
// stands for, and false for DEPOSIT_STATUS_UNSPECIFIED or a status this
// version does not know (the coin stays pending).
func DepositState(status pb.DepositStatus) (CoinState, bool) {
	switch status {
	case pb.DepositStatus_DEPOSIT_CREDITED:
		return CoinCredited, true
	case pb.DepositStatus_DEPOSIT_ALREADY_CREDITED:
		return CoinAlreadyCredited, true
	case pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:
		return CoinDoubleSpent, true
	case pb.DepositStatus_DEPOSIT_INVALID:
		return CoinInvalid, true
	case pb.DepositStatus_DEPOSIT_EXPIRED:
		return CoinExpired, true
	case pb.DepositStatus_DEPOSIT_REVOKED:
		return CoinRevoked, true
	}
	return CoinUnknown, false
}

// wire returns the state as the CoinStatus call answers it.
func (s CoinState) wire() pb.CoinState {
	switch {
	case s == CoinPending:
		return pb.CoinState_COIN_RECORDED
	case s.Final():
		return pb.CoinState_COIN_DEPOSITED
	}
	return pb.CoinState_COIN_UNKNOWN
}

// credited reports whether the mint's verdict s credits the server.
func (s CoinState) credited() bool { return s == CoinCredited || s == CoinAlreadyCredited }

// coinRecord is the value under a coin_pub:
//
//	u8 version || u8 state || 16 request ID || 32 digest ||
//	i64 deposit_until || u64 pending sequence || spend (coin.SpendSize)
type coinRecord struct {
	state        CoinState
	requestID    [16]byte
	digest       [32]byte
	depositUntil int64
	seq          uint64 // key in the pending bucket while pending
	spend        []byte
}

const coinRecordSize = 1 + 1 + 16 + 32 + 8 + 8 + coin.SpendSize

func (r *coinRecord) encode() []byte {
	b := make([]byte, 0, coinRecordSize)
	b = append(b, layoutVersion, byte(r.state))
	b = append(b, r.requestID[:]...)
	b = append(b, r.digest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.depositUntil))
	b = binary.BigEndian.AppendUint64(b, r.seq)
	return append(b, r.spend...)
}

func decodeCoinRecord(b []byte) (*coinRecord, error) {
	if len(b) != coinRecordSize || b[0] != layoutVersion {
		return nil, fmt.Errorf("%w: coin record of %d bytes", ErrCorrupt, len(b))
	}
	r := &coinRecord{state: CoinState(b[1])}
	if r.state == CoinUnknown || r.state > maxCoinState {
		return nil, fmt.Errorf("%w: coin state %d", ErrCorrupt, b[1])
	}
	b = b[2:]
	copy(r.requestID[:], b[:16])
	copy(r.digest[:], b[16:48])
	r.depositUntil = int64(binary.BigEndian.Uint64(b[48:56]))
	r.seq = binary.BigEndian.Uint64(b[56:64])
	r.spend = append([]byte(nil), b[64:]...)
	return r, nil
}

// amount returns the spend's amount and whether it is a bearer coin.
func (r *coinRecord) amount() (amount uint64, bearer bool) {
	return spendAmount(r.spend)
}

// spendAmount reads the amount and designation of an encoded spend.
func spendAmount(spend []byte) (amount uint64, bearer bool) {
	amount = binary.BigEndian.Uint64(spend[32:40])
	var zero [32]byte
	return amount, [32]byte(spend[72:104]) == zero
}

// requestRecord is the value under a request ID:
//
//	u8 version || 32 digest || u64 value || i64 deposit_until (latest of
//	its coins) || u8 n || n × 32 coin_pub
type requestRecord struct {
	digest       [32]byte
	value        uint64
	depositUntil int64
	coins        [][32]byte
}

func (r *requestRecord) encode() []byte {
	b := make([]byte, 0, 1+32+8+8+1+32*len(r.coins))
	b = append(b, layoutVersion)
	b = append(b, r.digest[:]...)
	b = binary.BigEndian.AppendUint64(b, r.value)
	b = binary.BigEndian.AppendUint64(b, uint64(r.depositUntil))
	b = append(b, byte(len(r.coins)))
	for _, c := range r.coins {
		b = append(b, c[:]...)
	}
	return b
}

func decodeRequestRecord(b []byte) (*requestRecord, error) {
	const head = 1 + 32 + 8 + 8 + 1
	if len(b) < head || b[0] != layoutVersion {
		return nil, fmt.Errorf("%w: request record of %d bytes", ErrCorrupt, len(b))
	}
	n := int(b[head-1])
	if n > protocol.MaxSpends || len(b) != head+32*n {
		return nil, fmt.Errorf("%w: request record of %d bytes", ErrCorrupt, len(b))
	}
	r := &requestRecord{
		digest:       [32]byte(b[1:33]),
		value:        binary.BigEndian.Uint64(b[33:41]),
		depositUntil: int64(binary.BigEndian.Uint64(b[41:49])),
		coins:        make([][32]byte, n),
	}
	for i := range r.coins {
		r.coins[i] = [32]byte(b[head+32*i:])
	}
	return r, nil
}

func expiryKey(until int64, id [16]byte) []byte {
	k := make([]byte, 0, 8+16)
	k = binary.BigEndian.AppendUint64(k, uint64(until))
	return append(k, id[:]...)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
