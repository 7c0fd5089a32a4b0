package shares

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Metadata lives in one bbolt file, meta.db, beside the share files:
//
//	shares: si (16) || share (u32) → share record
//	expiry: lease end (i64 Unix ns) || si || share → empty, for every share
//	advice: si || share || u64 sequence → i64 Unix ns || reason
//	meta:   "version" → layout version
//
// Share files: shares/<si hex[:2]>/<si hex>/<share> once closed,
// incoming/<si hex[:2]>/<si hex>/<share> while open.
var (
	bucketShares = []byte("shares")
	bucketExpiry = []byte("expiry")
	bucketAdvice = []byte("advice")
	bucketMeta   = []byte("meta")
	allBuckets   = [][]byte{bucketShares, bucketExpiry, bucketAdvice, bucketMeta}
	keyVersion   = []byte("version")
)

const layoutVersion = 1

// key names one share.
type key struct {
	si [16]byte
	n  uint32
}

func (k key) bytes() []byte {
	b := make([]byte, 0, 20)
	b = append(b, k.si[:]...)
	return binary.BigEndian.AppendUint32(b, k.n)
}

func keyFrom(b []byte) (key, error) {
	if len(b) != 20 {
		return key{}, fmt.Errorf("%w: share key of %d bytes", ErrCorrupt, len(b))
	}
	return key{si: [16]byte(b), n: binary.BigEndian.Uint32(b[16:])}, nil
}

func (k key) String() string {
	return hex.EncodeToString(k.si[:]) + "/" + strconv.FormatUint(uint64(k.n), 10)
}

// share states in records.
const (
	stateOpen   = 1
	stateClosed = 2
)

// record is the metadata of one share:
//
//	u8 version || u8 state || u64 size || i64 lease end (Unix ns) ||
//	u8 len(writer) || writer (binary peer ID; open shares only)
type record struct {
	state   byte
	size    uint64
	expires int64
	writer  peer.ID
}

func (r *record) encode() []byte {
	b := make([]byte, 0, 1+1+8+8+1+len(r.writer))
	b = append(b, layoutVersion, r.state)
	b = binary.BigEndian.AppendUint64(b, r.size)
	b = binary.BigEndian.AppendUint64(b, uint64(r.expires))
	b = append(b, byte(len(r.writer)))
	return append(b, r.writer...)
}

func decodeRecord(b []byte) (*record, error) {
	const head = 1 + 1 + 8 + 8 + 1
	if len(b) < head || b[0] != layoutVersion || len(b) != head+int(b[head-1]) {
		return nil, fmt.Errorf("%w: share record of %d bytes", ErrCorrupt, len(b))
	}
	r := &record{
		state:   b[1],
		size:    binary.BigEndian.Uint64(b[2:10]),
		expires: int64(binary.BigEndian.Uint64(b[10:18])),
		writer:  peer.ID(b[head:]),
	}
	if r.state != stateOpen && r.state != stateClosed {
		return nil, fmt.Errorf("%w: share state %d", ErrCorrupt, r.state)
	}
	return r, nil
}

func (r *record) leaseEnd() time.Time { return time.Unix(0, r.expires) }

// live reports whether the lease has not ended at now.
func (r *record) live(now time.Time) bool { return now.UnixNano() < r.expires }

func expiryKey(expires int64, k key) []byte {
	b := make([]byte, 0, 8+20)
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	return append(b, k.bytes()...)
}

// relPath is the path of share k below shares/ or incoming/.
func (k key) relPath() string {
	h := hex.EncodeToString(k.si[:])
	return filepath.Join(h[:2], h, strconv.FormatUint(uint64(k.n), 10))
}

// parseRelPath is the inverse of relPath; it accepts only the paths
// relPath makes.
func parseRelPath(prefix, siHex, name string) (key, bool) {
	si, err := hex.DecodeString(siHex)
	if err != nil || len(si) != 16 || hex.EncodeToString(si) != siHex || siHex[:2] != prefix {
		return key{}, false
	}
	n, err := strconv.ParseUint(name, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != name {
		return key{}, false
	}
	return key{si: [16]byte(si), n: uint32(n)}, true
}

// expiresAt returns the lease end of a lease starting at from, in Unix ns.
func expiresAt(from time.Time, lease time.Duration) int64 {
	return from.Add(lease).UnixNano()
}
