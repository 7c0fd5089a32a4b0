package testvectors

import (
	"bytes"
	"crypto/sha256"
	"math"
	"math/big"
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/scripnet/scrip/protocol"
)

// The vectors of package protocol: price quotes, permuted rings and request
// digests, each run through the package's own functions.

// decimal is a uint64 written as a decimal string.
type decimal uint64

func (d *decimal) UnmarshalText(text []byte) error {
	v, err := strconv.ParseUint(string(text), 10, 64)
	if err != nil {
		return err
	}
	if strconv.FormatUint(v, 10) != string(text) {
		return strconv.ErrSyntax // leading zeros or a sign
	}
	*d = decimal(v)
	return nil
}

// bigDecimal is a non-negative integer of any size written as a decimal
// string.
type bigDecimal struct{ v *big.Int }

func (d *bigDecimal) UnmarshalText(text []byte) error {
	v, ok := new(big.Int).SetString(string(text), 10)
	if !ok || v.Sign() < 0 || v.String() != string(text) {
		return strconv.ErrSyntax
	}
	d.v = v
	return nil
}

// price_test.json

type priceGroup struct {
	Tests []priceTest `json:"tests"`
}

type priceTest struct {
	testCase
	Rates struct {
		PerCall          decimal `json:"perCall"`
		StorePerGiBMonth decimal `json:"storePerGiBMonth"`
		ReadPerGiB       decimal `json:"readPerGiB"`
		WritePerGiB      decimal `json:"writePerGiB"`
	} `json:"rates"`
	Usage struct {
		StoreBytes   decimal `json:"storeBytes"`
		StoreSeconds decimal `json:"storeSeconds"`
		ReadBytes    decimal `json:"readBytes"`
		WriteBytes   decimal `json:"writeBytes"`
	} `json:"usage"`
	StorageTerm bigDecimal `json:"storageTerm"`
	ReadTerm    bigDecimal `json:"readTerm"`
	WriteTerm   bigDecimal `json:"writeTerm"`
	Quote       *decimal   `json:"quote"`
}

func runPrice(t *testing.T, data []byte) {
	f := decode(t, data, func(g *priceGroup) []caser { return casers(g.Tests) })
	maxU64 := new(big.Int).SetUint64(math.MaxUint64)
	for _, g := range f.TestGroups {
		for i := range g.Tests {
			tc := &g.Tests[i]
			c := &tc.testCase
			r := protocol.Rates{
				PerCall:          uint64(tc.Rates.PerCall),
				StorePerGiBMonth: uint64(tc.Rates.StorePerGiBMonth),
				ReadPerGiB:       uint64(tc.Rates.ReadPerGiB),
				WritePerGiB:      uint64(tc.Rates.WritePerGiB),
			}
			u := protocol.Usage{
				StoreBytes:   uint64(tc.Usage.StoreBytes),
				StoreSeconds: uint64(tc.Usage.StoreSeconds),
				ReadBytes:    uint64(tc.Usage.ReadBytes),
				WriteBytes:   uint64(tc.Usage.WriteBytes),
			}
			q, err := protocol.Quote(r, u)
			check(t, c, err)
			if (tc.Quote != nil) != (c.Result == "valid") {
				t.Errorf("tcId %d: quote given for an invalid case or missing for a valid one", c.TcID)
			}
			if err == nil && tc.Quote != nil && q != uint64(*tc.Quote) {
				t.Errorf("tcId %d (%s): Quote = %d, vector has %d", c.TcID, c.Comment, q, *tc.Quote)
			}

			// Each term alone, through Quote with only its rate set.
			for _, term := range []struct {
				name string
				r    protocol.Rates
				want bigDecimal
			}{
				{"storageTerm", protocol.Rates{StorePerGiBMonth: r.StorePerGiBMonth}, tc.StorageTerm},
				{"readTerm", protocol.Rates{ReadPerGiB: r.ReadPerGiB}, tc.ReadTerm},
				{"writeTerm", protocol.Rates{WritePerGiB: r.WritePerGiB}, tc.WriteTerm},
			} {
				v, err := protocol.Quote(term.r, u)
				switch fits := term.want.v != nil && term.want.v.Cmp(maxU64) <= 0; {
				case term.want.v == nil:
					t.Errorf("tcId %d: no %s", c.TcID, term.name)
				case fits && (err != nil || v != term.want.v.Uint64()):
					t.Errorf("tcId %d: %s alone: Quote = %d, %v; vector has %v", c.TcID, term.name, v, err, term.want.v)
				case !fits && err == nil:
					t.Errorf("tcId %d: %s alone: Quote = %d; vector has %v, which overflows", c.TcID, term.name, v, term.want.v)
				}
			}
			// The quote is the sum of per_call and the terms; the case is
			// invalid exactly when that exceeds 2^64 - 1.
			if tc.StorageTerm.v == nil || tc.ReadTerm.v == nil || tc.WriteTerm.v == nil {
				continue
			}
			sum := new(big.Int).SetUint64(r.PerCall)
			sum.Add(sum, tc.StorageTerm.v).Add(sum, tc.ReadTerm.v).Add(sum, tc.WriteTerm.v)
			if over := sum.Cmp(maxU64) > 0; over != (c.Result == "invalid") {
				t.Errorf("tcId %d: perCall + terms = %v, result %s", c.TcID, sum, c.Result)
			} else if !over && tc.Quote != nil && sum.Uint64() != uint64(*tc.Quote) {
				t.Errorf("tcId %d: perCall + terms = %v, quote %d", c.TcID, sum, *tc.Quote)
			}
		}
	}
}

// ring_test.json

type ringGroup struct {
	Peers []struct {
		ID     string   `json:"id"`
		Binary hexBytes `json:"binary"`
	} `json:"peers"`
	Tests []ringTest `json:"tests"`
}

type ringTest struct {
	testCase
	StorageIndex hexBytes `json:"storageIndex"`
	PeerCount    int      `json:"peerCount"`
	Ring         []struct {
		ID      string   `json:"id"`
		RingKey hexBytes `json:"ringKey"`
	} `json:"ring"`
	RingDigest hexBytes  `json:"ringDigest"`
	M          *int      `json:"m"`
	FirstM     *[]string `json:"firstM"`
}

func runRing(t *testing.T, data []byte) {
	f := decode(t, data, func(g *ringGroup) []caser { return casers(g.Tests) })
	for _, g := range f.TestGroups {
		peers := make([]peer.ID, len(g.Peers))
		for i, p := range g.Peers {
			id, err := peer.Decode(p.ID)
			if err != nil {
				t.Fatalf("peer %q: %v", p.ID, err)
			}
			if !bytes.Equal([]byte(id), p.Binary) {
				t.Fatalf("peer %s is %x in binary, vector has %x", p.ID, []byte(id), p.Binary)
			}
			peers[i] = id
		}
		for i := range g.Tests {
			tc := &g.Tests[i]
			c := &tc.testCase
			check(t, c, nil)
			if tc.PeerCount < 1 || tc.PeerCount > len(peers) || len(tc.StorageIndex) != protocol.StorageIndexSize {
				t.Errorf("tcId %d: peerCount %d of %d peers, storage index of %d bytes", c.TcID, tc.PeerCount, len(peers), len(tc.StorageIndex))
				continue
			}
			in := slices.Clone(peers[:tc.PeerCount])
			ring := protocol.Ring(tc.StorageIndex, in)
			if !slices.Equal(in, peers[:tc.PeerCount]) {
				t.Errorf("tcId %d: Ring modified its input", c.TcID)
			}
			want := min(len(ring), 20)
			if len(ring) <= 100 {
				want = len(ring)
			}
			if len(tc.Ring) != want {
				t.Errorf("tcId %d: ring lists %d servers, want %d", c.TcID, len(tc.Ring), want)
			}
			for k, e := range tc.Ring[:min(len(tc.Ring), len(ring))] {
				if ring[k].String() != e.ID {
					t.Errorf("tcId %d: ring[%d] = %s, vector has %s", c.TcID, k, ring[k], e.ID)
					break
				}
				key := protocol.RingKey(tc.StorageIndex, ring[k])
				eq(t, c, "ring key", key[:], e.RingKey)
			}
			h := sha256.New()
			for _, id := range ring {
				h.Write([]byte(id))
			}
			eq(t, c, "ringDigest", h.Sum(nil), tc.RingDigest)

			if (tc.M != nil) != (tc.FirstM != nil) || (tc.M != nil) != slices.Contains(c.Flags, "FirstM") {
				t.Errorf("tcId %d: m, firstM and the flag FirstM disagree", c.TcID)
				continue
			}
			if tc.M == nil {
				continue
			}
			first := protocol.FirstM(tc.StorageIndex, in, *tc.M)
			got := make([]string, len(first))
			for k, id := range first {
				got[k] = id.String()
			}
			if !slices.Equal(got, *tc.FirstM) {
				t.Errorf("tcId %d: FirstM(%d) = %v, vector has %v", c.TcID, *tc.M, got, *tc.FirstM)
			}
			if !slices.Equal(first, ring[:min(*tc.M, len(ring))]) {
				t.Errorf("tcId %d: FirstM(%d) is not the start of Ring", c.TcID, *tc.M)
			}
		}
	}
}

// request_digest_test.json

type requestDigestGroup struct {
	Tests []struct {
		testCase
		ProtocolID string   `json:"protocolId"`
		Body       hexBytes `json:"body"`
		Digest     hexBytes `json:"digest"`
	} `json:"tests"`
}

func runRequestDigest(t *testing.T, data []byte) {
	f := decode(t, data, func(g *requestDigestGroup) []caser {
		out := make([]caser, len(g.Tests))
		for i := range g.Tests {
			out[i] = &g.Tests[i].testCase
		}
		return out
	})
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			check(t, &tc.testCase, nil)
			d := protocol.RequestDigest(tc.ProtocolID, tc.Body)
			eq(t, &tc.testCase, "digest", d[:], tc.Digest)
		}
	}
}
