package wallet

import (
	"encoding/binary"
	"fmt"

	"github.com/scripnet/scrip/coin"
)

// Buckets and meta keys of the database.
var (
	bucketMeta     = []byte("meta")
	bucketKeysets  = []byte("keysets")  // keyset ID → signed keyset
	bucketPending  = []byte("pending")  // u64 counter → pendingRecord
	bucketCoins    = []byte("coins")    // coin public key → coinRecord
	bucketRequests = []byte("requests") // request ID → requestRecord

	metaVersion = []byte("version")
	metaSeed    = []byte("seed")
	metaCounter = []byte("counter") // u64: the next unused counter
	metaMintKey = []byte("mint-key")
)

const (
	dbVersion     = 1
	recordVersion = 1
)

// State is where a coin stands.
type State uint8

// The coin states. The zero State is not used.
const (
	// Unspent: no spend of the coin has left the wallet.
	Unspent State = 1 + iota
	// Reserved: spends were signed for one server and one request whose
	// outcome is not known yet.
	Reserved
	// Bound: a spend left for one server, which refused it without
	// recording it. The coin may go only to that server or, if it is a
	// bearer coin, to the mint.
	Bound
	// Spent: the server (or the mint) kept the coin.
	Spent
)

// String returns the state's name: "unspent", "reserved", "bound" or
// "spent".
func (s State) String() string {
	switch s {
	case Unspent:
		return "unspent"
	case Reserved:
		return "reserved"
	case Bound:
		return "bound"
	case Spent:
		return "spent"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// reqState is where a reservation stands.
type reqState uint8

const (
	reqInFlight reqState = 1 + iota
	reqPaid
	reqRefused
	reqMoved // every coin was taken into a swap
)

type coinRecord struct {
	state   State
	counter uint64
	coin    coin.Coin
	created int64 // Unix nanoseconds
	since   int64
	server  []byte
	request []byte
}

type pendingRecord struct {
	keysetID   [32]byte
	amount     uint64
	designated [32]byte
	created    int64
	hasR       bool
	r0, r1     [32]byte
}

type requestRecord struct {
	state   reqState
	server  []byte
	digest  [32]byte
	price   uint64
	at      int64
	settled int64
	coins   [][32]byte
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (r *coinRecord) bytes() []byte {
	b := make([]byte, 0, 2+8+coin.CoinSize+16+2+len(r.server)+1+len(r.request))
	b = append(b, recordVersion, byte(r.state))
	b = binary.BigEndian.AppendUint64(b, r.counter)
	b = append(b, r.coin.Bytes()...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.created))
	b = binary.BigEndian.AppendUint64(b, uint64(r.since))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.server)))
	b = append(b, r.server...)
	b = append(b, byte(len(r.request)))
	return append(b, r.request...)
}

func parseCoinRecord(b []byte) (*coinRecord, error) {
	d := decoder{b: b}
	r := new(coinRecord)
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: coin record version", ErrCorrupt)
	}
	r.state = State(d.byte())
	r.counter = d.u64()
	c, err := coin.ParseCoin(d.bytes(coin.CoinSize))
	if err != nil && !d.short {
		return nil, fmt.Errorf("%w: coin record: %w", ErrCorrupt, err)
	}
	if c != nil {
		r.coin = *c
	}
	r.created = int64(d.u64())
	r.since = int64(d.u64())
	r.server = d.clone(int(d.u16()))
	r.request = d.clone(int(d.byte()))
	if err := d.done(); err != nil || r.state < Unspent || r.state > Spent {
		return nil, fmt.Errorf("%w: coin record", ErrCorrupt)
	}
	return r, nil
}

func (r *pendingRecord) bytes() []byte {
	b := make([]byte, 0, 1+32+8+32+8+1+64)
	b = append(b, recordVersion)
	b = append(b, r.keysetID[:]...)
	b = binary.BigEndian.AppendUint64(b, r.amount)
	b = append(b, r.designated[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.created))
	if !r.hasR {
		return append(b, 0)
	}
	b = append(b, 1)
	b = append(b, r.r0[:]...)
	return append(b, r.r1[:]...)
}

func parsePendingRecord(b []byte) (*pendingRecord, error) {
	d := decoder{b: b}
	r := new(pendingRecord)
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: pending record version", ErrCorrupt)
	}
	copy(r.keysetID[:], d.bytes(32))
	r.amount = d.u64()
	copy(r.designated[:], d.bytes(32))
	r.created = int64(d.u64())
	switch d.byte() {
	case 0:
	case 1:
		r.hasR = true
		copy(r.r0[:], d.bytes(32))
		copy(r.r1[:], d.bytes(32))
	default:
		return nil, fmt.Errorf("%w: pending record", ErrCorrupt)
	}
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("%w: pending record", ErrCorrupt)
	}
	return r, nil
}

func (r *requestRecord) bytes() []byte {
	b := make([]byte, 0, 2+2+len(r.server)+32+24+2+32*len(r.coins))
	b = append(b, recordVersion, byte(r.state))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.server)))
	b = append(b, r.server...)
	b = append(b, r.digest[:]...)
	b = binary.BigEndian.AppendUint64(b, r.price)
	b = binary.BigEndian.AppendUint64(b, uint64(r.at))
	b = binary.BigEndian.AppendUint64(b, uint64(r.settled))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.coins)))
	for i := range r.coins {
		b = append(b, r.coins[i][:]...)
	}
	return b
}

func parseRequestRecord(b []byte) (*requestRecord, error) {
	d := decoder{b: b}
	r := new(requestRecord)
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: request record version", ErrCorrupt)
	}
	r.state = reqState(d.byte())
	r.server = d.clone(int(d.u16()))
	copy(r.digest[:], d.bytes(32))
	r.price = d.u64()
	r.at = int64(d.u64())
	r.settled = int64(d.u64())
	n := int(d.u16())
	for i := 0; i < n && !d.short; i++ {
		r.coins = append(r.coins, [32]byte(d.bytes(32)))
	}
	if err := d.done(); err != nil || r.state < reqInFlight || r.state > reqMoved {
		return nil, fmt.Errorf("%w: request record", ErrCorrupt)
	}
	return r, nil
}

// decoder is a bounds-checked cursor: after a short read, short is set and
// every further read returns zeros.
type decoder struct {
	b     []byte
	short bool
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.short = true
		d.b = nil
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) clone(n int) []byte { return append([]byte(nil), d.bytes(n)...) }
func (d *decoder) byte() byte         { return d.bytes(1)[0] }
func (d *decoder) u16() uint16        { return binary.BigEndian.Uint16(d.bytes(2)) }
func (d *decoder) u64() uint64        { return binary.BigEndian.Uint64(d.bytes(8)) }

func (d *decoder) done() error {
	if d.short || len(d.b) != 0 {
		return ErrCorrupt
	}
	return nil
}
