package mintstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// The layout of the file: one bucket per kind of record. The package
// documentation describes each; the encodings are below. Integers are
// big-endian; variable-length fields carry a length prefix (u8 for units,
// u16 for the rest).
var (
	bucketMeta      = []byte("meta")            // "version" → layoutVersion; "guard", "backup" (guard.go)
	bucketRows      = []byte("rows")            // key ‖ nonce → rowValue
	bucketNonces    = []byte("nonces")          // nonce ‖ u64 seq → key
	bucketFunding   = []byte("funding")         // account ID → fundingValue
	bucketSpent     = []byte("spent")           // coin_pub → spentValue
	bucketSpentByKS = []byte("spent-keyset")    // keyset ID ‖ coin_pub → empty
	bucketBalances  = []byte("balances")        // len16(server) ‖ unit → u64
	bucketSwaps     = []byte("swaps")           // request ID → swapValue
	bucketPayouts   = []byte("payouts")         // len16(server) ‖ request ID → payoutValue
	bucketPending   = []byte("payouts-pending") // payout key → empty
	bucketTally     = []byte("tally")           // keyset ID ‖ u64 amount → tallyValue
	bucketKeysets   = []byte("keysets")         // keyset ID → keysetValue
	bucketRevoked   = []byte("revoked")         // keyset ID → u64 Unix seconds
	bucketClosed    = []byte("closed")          // keyset ID → u8 closed flags
	bucketRecouped  = []byte("recouped")        // key ‖ nonce → coin_pub

	allBuckets = [][]byte{bucketMeta, bucketRows, bucketNonces, bucketFunding, bucketSpent, bucketSpentByKS,
		bucketBalances, bucketSwaps, bucketPayouts, bucketPending, bucketTally, bucketKeysets, bucketRevoked,
		bucketClosed, bucketRecouped}

	keyVersion = []byte("version")
	keyGuard   = []byte("guard")  // instance (16) ‖ u64 epoch: see guard.go
	keyBackup  = []byte("backup") // in a backup copy only: backupMarker
)

// layoutVersion is the version of this layout, stored under keyVersion.
const layoutVersion = byte(1)

var (
	errShort          = fmt.Errorf("%w: record too short", ErrCorrupt)
	errTrailing       = fmt.Errorf("%w: trailing bytes in record", ErrCorrupt)
	errFieldTooLong   = errors.New("mintstore: field too long to store")
	errBalanceOverrun = errors.New("mintstore: balance overflows")
)

// Flags of bucketClosed: what Prune has started to delete for a keyset.
// Once a flag is set, the store refuses to add what it would delete.
//
// closedRetired is not Prune's: the keyset was held by a database that
// was restored from a copy (guard.go), so it may have answered nonces
// whose rows the copy lacks. No new row of it is inserted; stored rows are
// still answered, and its coins are spent as usual.
const (
	closedIssue   byte = 1 << 0 // rows: no row of the keyset is inserted
	closedDeposit byte = 1 << 1 // spent set: no coin of the keyset is spent
	closedRetired byte = 1 << 2 // rows: no new row of the keyset is inserted
)

// rowKey is key ‖ nonce, the unique key of an issuance row.
func rowKey(key, nonce [32]byte) []byte {
	k := make([]byte, 64)
	copy(k, key[:])
	copy(k[32:], nonce[:])
	return k
}

// rowValue: keyset ID (32) ‖ amount (8) ‖ challenge hash (32) ‖ b (1) ‖
// s (32) ‖ seq (8), where seq is the row's entry in bucketNonces.
const rowValueSize = 32 + 8 + 32 + 1 + 32 + 8

func encodeRow(r *protocol.IssueRow, seq uint64) []byte {
	v := make([]byte, 0, rowValueSize)
	v = append(v, r.KeysetID[:]...)
	v = binary.BigEndian.AppendUint64(v, r.Amount)
	v = append(v, r.ChallengeHash[:]...)
	v = append(v, r.B)
	v = append(v, r.S[:]...)
	return binary.BigEndian.AppendUint64(v, seq)
}

func decodeRow(k, v []byte) (protocol.IssueRow, uint64, error) {
	if len(k) != 64 || len(v) != rowValueSize {
		return protocol.IssueRow{}, 0, fmt.Errorf("%w: issuance row", ErrCorrupt)
	}
	var r protocol.IssueRow
	r.Key = [32]byte(k[:32])
	r.Nonce = [32]byte(k[32:])
	r.KeysetID = [32]byte(v[:32])
	r.Amount = binary.BigEndian.Uint64(v[32:40])
	r.ChallengeHash = [32]byte(v[40:72])
	r.B = v[72]
	r.S = [32]byte(v[73:105])
	return r, binary.BigEndian.Uint64(v[105:]), nil
}

// nonceKey is nonce ‖ seq: the nonce index lists a nonce's rows in the
// order they were inserted.
func nonceKey(nonce [32]byte, seq uint64) []byte {
	k := make([]byte, 0, 40)
	k = append(k, nonce[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// fundingValue: value (8) ‖ remaining (8) ‖ unit.
func encodeFunding(a protocol.FundingAccount) ([]byte, error) {
	if len(a.Unit) > 255 {
		return nil, errFieldTooLong
	}
	v := make([]byte, 0, 16+len(a.Unit))
	v = binary.BigEndian.AppendUint64(v, a.Value)
	v = binary.BigEndian.AppendUint64(v, a.Remaining)
	return append(v, a.Unit...), nil
}

func decodeFunding(v []byte) (protocol.FundingAccount, error) {
	if len(v) < 16 {
		return protocol.FundingAccount{}, fmt.Errorf("%w: funding account", ErrCorrupt)
	}
	return protocol.FundingAccount{
		Value:     binary.BigEndian.Uint64(v),
		Remaining: binary.BigEndian.Uint64(v[8:]),
		Unit:      string(v[16:]),
	}, nil
}

// spentValue: keyset ID (32) ‖ amount (8) ‖ digest (32) ‖ len8(unit) ‖
// len16(server) ‖ len16(spend).
func encodeSpent(r *protocol.SpendRecord) ([]byte, error) {
	if len(r.Unit) > 255 || len(r.Server) > 0xffff || len(r.Spend) > 0xffff {
		return nil, errFieldTooLong
	}
	v := make([]byte, 0, 32+8+32+1+len(r.Unit)+2+len(r.Server)+2+len(r.Spend))
	v = append(v, r.KeysetID[:]...)
	v = binary.BigEndian.AppendUint64(v, r.Amount)
	v = append(v, r.Digest[:]...)
	v = append(v, byte(len(r.Unit)))
	v = append(v, r.Unit...)
	v = appendLen16(v, []byte(r.Server))
	return appendLen16(v, r.Spend), nil
}

func decodeSpent(pub, v []byte) (protocol.SpendRecord, error) {
	if len(pub) != 32 {
		return protocol.SpendRecord{}, fmt.Errorf("%w: spent-set key", ErrCorrupt)
	}
	d := decoder{b: v}
	r := protocol.SpendRecord{Pub: [32]byte(pub)}
	r.KeysetID = [32]byte(d.bytes(32))
	r.Amount = d.u64()
	r.Digest = [protocol.DigestSize]byte(d.bytes(protocol.DigestSize))
	r.Unit = string(d.bytes(int(d.u8())))
	r.Server = peer.ID(d.len16())
	r.Spend = cloneOrNil(d.len16())
	return r, d.done()
}

// balanceKey is len16(server) ‖ unit; serverPrefix is its first part, so
// a server's balances are one range, sorted by unit.
func serverPrefix(server peer.ID) []byte {
	return appendLen16(make([]byte, 0, 2+len(server)), []byte(server))
}

func balanceKey(server peer.ID, unit string) []byte {
	return append(serverPrefix(server), unit...)
}

func payoutKey(server peer.ID, id [protocol.RequestIDSize]byte) []byte {
	return append(serverPrefix(server), id[:]...)
}

// swapValue: digest (32) ‖ u16 n ‖ n × coin_pub ‖ u16 m ‖ m × (key ‖ nonce).
type swapRecord struct {
	digest  [protocol.DigestSize]byte
	inputs  map[[32]byte]bool
	outputs [][]byte // row keys
}

func encodeSwap(c *protocol.SwapCommit) ([]byte, error) {
	if len(c.Inputs) > 0xffff || len(c.Outputs) > 0xffff {
		return nil, errFieldTooLong
	}
	v := make([]byte, 0, 32+2+32*len(c.Inputs)+2+64*len(c.Outputs))
	v = append(v, c.Digest[:]...)
	v = binary.BigEndian.AppendUint16(v, uint16(len(c.Inputs)))
	for i := range c.Inputs {
		v = append(v, c.Inputs[i].Pub[:]...)
	}
	v = binary.BigEndian.AppendUint16(v, uint16(len(c.Outputs)))
	for i := range c.Outputs {
		v = append(v, c.Outputs[i].Key[:]...)
		v = append(v, c.Outputs[i].Nonce[:]...)
	}
	return v, nil
}

func decodeSwap(v []byte) (swapRecord, error) {
	d := decoder{b: v}
	var s swapRecord
	s.digest = [protocol.DigestSize]byte(d.bytes(protocol.DigestSize))
	n := int(d.u16())
	s.inputs = make(map[[32]byte]bool, n)
	for range n {
		s.inputs[[32]byte(d.bytes(32))] = true
	}
	m := int(d.u16())
	for range m {
		s.outputs = append(s.outputs, bytes.Clone(d.bytes(64)))
	}
	return s, d.done()
}

// payoutValue: state (1) ‖ digest (32) ‖ amount (8) ‖ len8(unit) ‖
// len16(destination) ‖ len16(receipt). Server and request ID are the key.
func encodePayout(r *protocol.PayoutRecord) ([]byte, error) {
	if len(r.Unit) > 255 || len(r.Destination) > 0xffff || len(r.Receipt) > 0xffff {
		return nil, errFieldTooLong
	}
	v := make([]byte, 0, 1+32+8+1+len(r.Unit)+2+len(r.Destination)+2+len(r.Receipt))
	v = append(v, byte(r.State))
	v = append(v, r.Digest[:]...)
	v = binary.BigEndian.AppendUint64(v, r.Amount)
	v = append(v, byte(len(r.Unit)))
	v = append(v, r.Unit...)
	v = appendLen16(v, r.Destination)
	return appendLen16(v, r.Receipt), nil
}

func decodePayout(k, v []byte) (protocol.PayoutRecord, error) {
	kd := decoder{b: k}
	var r protocol.PayoutRecord
	r.Server = peer.ID(kd.len16())
	r.RequestID = [protocol.RequestIDSize]byte(kd.bytes(protocol.RequestIDSize))
	if err := kd.done(); err != nil {
		return r, err
	}
	d := decoder{b: v}
	r.State = protocol.PayoutState(d.u8())
	r.Digest = [protocol.DigestSize]byte(d.bytes(protocol.DigestSize))
	r.Amount = d.u64()
	r.Unit = string(d.bytes(int(d.u8())))
	r.Destination = cloneOrNil(d.len16())
	r.Receipt = cloneOrNil(d.len16())
	if r.State < protocol.PayoutPending || r.State > protocol.PayoutRefused {
		return r, fmt.Errorf("%w: payout state %d", ErrCorrupt, r.State)
	}
	return r, d.done()
}

// cloneOrNil copies b, giving nil for an empty field: the store does not
// tell an empty destination or receipt from none.
func cloneOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// tallyKey is keyset ID ‖ amount: a denomination key, named by its
// keyset and amount (a keyset has one key per amount).
func tallyKey(keyset [32]byte, amount uint64) []byte {
	k := make([]byte, 0, 40)
	k = append(k, keyset[:]...)
	return binary.BigEndian.AppendUint64(k, amount)
}

// tally counts, per denomination key, the coins issued and spent over the
// life of the store; pruning never lowers them, and counts what it
// deleted.
type tally struct {
	Withdrawn   uint64 // rows inserted by CommitIssue
	SwapOut     uint64 // rows inserted by CommitSwap
	Deposited   uint64 // spent-set entries added by CreditDeposits
	SwapIn      uint64 // spent-set entries added by CommitSwap
	Recouped    uint64 // spent-set entries added by Recoup
	PrunedRows  uint64 // rows deleted by Prune
	PrunedSpent uint64 // spent-set entries deleted by Prune
}

const tallyValueSize = 7 * 8

func (t *tally) fields() []*uint64 {
	return []*uint64{&t.Withdrawn, &t.SwapOut, &t.Deposited, &t.SwapIn, &t.Recouped, &t.PrunedRows, &t.PrunedSpent}
}

func encodeTally(t tally) []byte {
	v := make([]byte, 0, tallyValueSize)
	for _, f := range t.fields() {
		v = binary.BigEndian.AppendUint64(v, *f)
	}
	return v
}

func decodeTally(v []byte) (tally, error) {
	var t tally
	if v == nil {
		return t, nil
	}
	if len(v) != tallyValueSize {
		return t, fmt.Errorf("%w: tally", ErrCorrupt)
	}
	for i, f := range t.fields() {
		*f = binary.BigEndian.Uint64(v[8*i:])
	}
	return t, nil
}

// add adds d to t, field by field.
func (t *tally) add(d tally) error {
	df := d.fields()
	for i, f := range t.fields() {
		var carry uint64
		if *f, carry = bits.Add64(*f, *df[i], 0); carry != 0 {
			return fmt.Errorf("mintstore: tally overflows")
		}
	}
	return nil
}

// keysetValue: not_before, issue_until, spend_until, deposit_until (4 ×
// u64 Unix seconds) ‖ u8 n ‖ n × (amount (8) ‖ key (32)) ‖ the keyset
// secret ([coin.KeysetSecret.Bytes]). The windows and keys are repeated
// before the secret so that the store can prune without the mint's
// identity key.
type keysetRecord struct {
	id                                              [32]byte
	notBefore, issueUntil, spendUntil, depositUntil int64
	keys                                            map[uint64][32]byte
	secret                                          []byte
}

func encodeKeyset(sec *coin.KeysetSecret) []byte {
	ks := sec.Keyset()
	secret := sec.Bytes()
	v := make([]byte, 0, 32+1+40*len(ks.Denominations)+len(secret))
	for _, t := range []int64{ks.NotBefore, ks.IssueUntil, ks.SpendUntil, ks.DepositUntil} {
		v = binary.BigEndian.AppendUint64(v, uint64(t))
	}
	v = append(v, byte(len(ks.Denominations)))
	for _, d := range ks.Denominations {
		v = binary.BigEndian.AppendUint64(v, d.Amount())
		v = append(v, d.Key[:]...)
	}
	return append(v, secret...)
}

func decodeKeyset(k, v []byte) (keysetRecord, error) {
	if len(k) != 32 {
		return keysetRecord{}, fmt.Errorf("%w: keyset key", ErrCorrupt)
	}
	d := decoder{b: v}
	r := keysetRecord{id: [32]byte(k)}
	r.notBefore = int64(d.u64())
	r.issueUntil = int64(d.u64())
	r.spendUntil = int64(d.u64())
	r.depositUntil = int64(d.u64())
	n := int(d.u8())
	r.keys = make(map[uint64][32]byte, n)
	for range n {
		a := d.u64()
		r.keys[a] = [32]byte(d.bytes(32))
	}
	if d.short {
		return r, errShort
	}
	r.secret = bytes.Clone(d.b)
	return r, nil
}

func appendLen16(b, field []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(field)))
	return append(b, field...)
}

// decoder is a bounds-checked cursor over a stored value. After a short
// read every read returns zeros and done reports the record corrupt.
type decoder struct {
	b     []byte
	short bool
}

func (d *decoder) bytes(n int) []byte {
	if d.short || len(d.b) < n {
		d.short = true
		d.b = nil
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() uint8     { return d.bytes(1)[0] }
func (d *decoder) u16() uint16   { return binary.BigEndian.Uint16(d.bytes(2)) }
func (d *decoder) u64() uint64   { return binary.BigEndian.Uint64(d.bytes(8)) }
func (d *decoder) len16() []byte { return d.bytes(int(d.u16())) }

func (d *decoder) done() error {
	switch {
	case d.short:
		return errShort
	case len(d.b) != 0:
		return errTrailing
	}
	return nil
}
