package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// tagRequest is the domain tag of request digests.
const tagRequest = "scrip/v1/request\x00"

// RequestDigest returns the digest a spend signs to pay for one request:
//
//	SHA-256("scrip/v1/request\x00" || u16(len(protocolID)) || protocolID || body)
//
// with the length big-endian, protocolID as negotiated on the stream
// ([StorageID] or [MintID]) and body the exact bytes sent in the Request's
// body field. It panics if protocolID is longer than 65,535 bytes.
func RequestDigest(protocolID string, body []byte) [DigestSize]byte {
	if len(protocolID) > math.MaxUint16 {
		panic("protocol: protocol ID too long")
	}
	h := sha256.New()
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(protocolID)))
	h.Write([]byte(tagRequest))
	h.Write(n[:])
	h.Write([]byte(protocolID))
	h.Write(body)
	return [DigestSize]byte(h.Sum(nil))
}
