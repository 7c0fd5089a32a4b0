package vectorgen

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// The request digests are computed here from the definition in
// SPEC.md §8 (request digest), independently of
// protocol.RequestDigest; the conformance test runs protocol.RequestDigest.

// tagRequest is the domain tag of request digests.
const tagRequest = "scrip/v1/request\x00"

type requestDigestGroup struct {
	Tests []requestDigestTest `json:"tests"`
}

type requestDigestTest struct {
	testCase
	ProtocolID string   `json:"protocolId" desc:"the protocol ID as negotiated, ASCII"`
	Body       hexBytes `json:"body" desc:"Request.body exactly as sent"`
	Digest     hexBytes `json:"digest" hex:"32" desc:"SHA-256(\"scrip/v1/request\\x00\" || u16(len(protocolId)) || protocolId || body)"`
}

func requestDigest(protocolID string, body []byte) []byte {
	if len(protocolID) > 0xffff {
		panic("vectorgen: protocol ID too long")
	}
	d := sha256.Sum256(cat([]byte(tagRequest), binary.BigEndian.AppendUint16(nil, uint16(len(protocolID))), []byte(protocolID), body))
	return d[:]
}

func requestDigestFile() (*file, error) {
	const storage, mint = "/scrip/storage/1.0.0", "/scrip/mint/1.0.0"
	g := newRNG("request_digest")
	b := &builder{}
	grp := requestDigestGroup{}
	add := func(c testCase, id string, body []byte) {
		grp.Tests = append(grp.Tests, requestDigestTest{testCase: c, ProtocolID: id, Body: body, Digest: requestDigest(id, body)})
	}

	// The table of SPEC.md §8.
	for _, v := range []struct {
		id, body, digest string
	}{
		{storage, "hello", "e9f3c30bbfc930148ce10e10ad858ecdc9984af6a78c243e270b910d2afd8457"},
		{mint, "", "39a184391b77fdd6a3e7fbda28c0cbedab5b5fc0fc019af30a05777cf7085c0f"},
	} {
		if got := hex.EncodeToString(requestDigest(v.id, []byte(v.body))); got != v.digest {
			return nil, fmt.Errorf("request digest: the specification's vector for %s comes to %s", v.id, got)
		}
	}
	add(b.valid("storage protocol, body \"hello\"", "SpecExample"), storage, []byte("hello"))
	add(b.valid("mint protocol, empty body", "SpecExample", "EmptyBody"), mint, nil)

	add(b.valid("storage protocol, empty body", "EmptyBody"), storage, nil)
	add(b.valid("mint protocol, body \"hello\": another protocol, another digest", "OtherProtocol"), mint, []byte("hello"))
	for _, n := range []string{"1 byte", "32 bytes", "200 bytes"} {
		size := atoi(strings.Fields(n)[0])
		add(b.valid("storage protocol, a random body of "+n, "RandomBody"), storage, g.bytes(size))
		add(b.valid("mint protocol, a random body of "+n, "RandomBody"), mint, g.bytes(size))
	}
	add(b.valid("empty protocol ID, body \"/scrip/storage/1.0.0\"", "EmptyProtocolID", "LengthPrefix"), "", []byte(storage))
	add(b.valid("protocol ID \"/scrip/storage/1.0\", body \".0\": the same bytes after the length as the storage protocol with an empty body", "LengthPrefix"), "/scrip/storage/1.0", []byte(".0"))
	long := "/" + strings.Repeat("x", 299)
	add(b.valid("protocol ID of 300 bytes: both length bytes non-zero", "LongProtocolID"), long, []byte("hello"))
	add(b.valid("protocol ID of 255 bytes", "LongProtocolID"), long[:255], nil)
	add(b.valid("protocol ID of 256 bytes: length 01 00", "LongProtocolID"), long[:256], nil)

	return &file{
		name:      "request_digest",
		algorithm: "scrip/v1 request digest",
		header: []string{
			"Digests of protocol.RequestDigest(protocolId, body): the request digest every spend of a request signs.",
			"digest = SHA-256(\"scrip/v1/request\\x00\" || u16(len(protocolId)) || protocolId || body), the length in bytes, big-endian.",
			"Specification: SPEC.md §8, request digest.",
		},
		groups: []requestDigestGroup{grp},
		b:      b,
	}, nil
}
