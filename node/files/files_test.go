package files

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// testData returns n deterministic pseudo-random bytes.
func testData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func testKey(seed uint64) [KeySize]byte {
	return [KeySize]byte(testData(seed+1000, KeySize))
}

func encodeT(t testing.TB, data []byte, k, n int) (*Capability, [][]byte) {
	t.Helper()
	c, shares, err := EncodeBytes(data, k, n)
	require.NoError(t, err)
	require.Len(t, shares, n)
	for j, s := range shares {
		require.EqualValues(t, c.ShareSize(), len(s), "share %d", j)
	}
	return c, shares
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 2, 15, 16, 17, SegmentSize - 1, SegmentSize, SegmentSize + 1,
		2*SegmentSize - tagSize, 2 * SegmentSize, 3<<20 + 7}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := testData(uint64(size), size)
			c, shares := encodeT(t, data, DefaultK, DefaultN)
			require.EqualValues(t, size, c.Size)
			got, bad, err := Decode(c, shares)
			require.NoError(t, err)
			require.Empty(t, bad)
			require.True(t, bytes.Equal(data, got), "plaintext differs")
			// From parity shares only: reconstruction.
			got, _, err = Decode(c, shares[DefaultN-DefaultK:])
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "plaintext from parity differs")
		})
	}
}

func TestParams(t *testing.T) {
	data := testData(7, SegmentSize+100)
	for _, p := range [][2]int{{1, 1}, {1, 3}, {3, 3}, {2, 5}, {5, 7}, {10, 20}, {2, 255}} {
		t.Run(fmt.Sprintf("%d-of-%d", p[0], p[1]), func(t *testing.T) {
			c, shares := encodeT(t, data, p[0], p[1])
			got, _, err := Decode(c, shares[p[1]-p[0]:])
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got))
		})
	}
	for _, p := range [][2]int{{0, 1}, {-1, 3}, {4, 3}, {3, 256}, {0, 0}} {
		_, _, err := EncodeBytes(data, p[0], p[1])
		require.ErrorIs(t, err, ErrParams, "k=%d n=%d", p[0], p[1])
	}
}

// TestAnyKShares decodes from every one of the 120 sets of 3 of 10 shares.
func TestAnyKShares(t *testing.T) {
	data := testData(1, 2*SegmentSize+100)
	c, shares := encodeT(t, data, 3, 10)
	count := 0
	for a := 0; a < 10; a++ {
		for b := a + 1; b < 10; b++ {
			for d := b + 1; d < 10; d++ {
				// Order should not matter either.
				got, bad, err := Decode(c, [][]byte{shares[d], shares[a], shares[b]})
				require.NoError(t, err, "shares %d %d %d", a, b, d)
				require.Empty(t, bad)
				require.True(t, bytes.Equal(data, got), "shares %d %d %d", a, b, d)
				count++
			}
		}
	}
	require.Equal(t, 120, count)
}

func TestStreamingReaders(t *testing.T) {
	data := testData(2, 2*SegmentSize+3)
	for name, r := range map[string]func() []byte{
		"one byte": func() []byte { return data },
		"half":     func() []byte { return data },
	} {
		t.Run(name, func(t *testing.T) {
			src := bytes.NewReader(r())
			var rd = iotest.OneByteReader(src)
			if name == "half" {
				rd = iotest.HalfReader(src)
			}
			c, shares, err := Encode(rd, 3, 10)
			require.NoError(t, err)
			got, _, err := Decode(c, shares)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got))
		})
	}
	boom := errors.New("boom")
	_, _, err := Encode(iotest.ErrReader(boom), 3, 10)
	require.ErrorIs(t, err, boom)
	_, _, err = Encode(iotest.DataErrReader(iotest.TimeoutReader(bytes.NewReader(data))), 3, 10)
	require.ErrorIs(t, err, iotest.ErrTimeout)
}

func TestCorruptShares(t *testing.T) {
	data := testData(3, SegmentSize+5)
	c, shares := encodeT(t, data, 3, 10)
	clone := func(j int) []byte { return bytes.Clone(shares[j]) }
	hs := headerSize(10)

	body := clone(0)
	body[hs+10] ^= 1 // a bit of the body
	list := clone(1)
	list[HeaderFixedSize+32*4] ^= 0x80 // another share's hash in the list
	own := clone(2)
	own[HeaderFixedSize+32*2] ^= 1 // its own hash
	kField := clone(3)
	kField[5] = 2 // k
	short := clone(4)[:len(shares[4])-1]
	long := append(clone(5), 0)
	magic := clone(6)
	magic[0] = 'x'
	number := clone(7)
	number[7] = 8 // claims to be share 8
	lastByte := clone(9)
	lastByte[len(lastByte)-1] ^= 0xff

	in := [][]byte{body, list, own, kField, short, long, magic, number, lastByte, shares[8], nil, shares[9], shares[8]}
	_, bad, err := Decode(c, in)
	require.ErrorIs(t, err, ErrNotEnoughShares, "only shares 8 and 9 are good")
	require.Len(t, bad, 10)

	in = append(in, shares[3])
	got, bad, err := Decode(c, in)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
	var idx []int
	for _, b := range bad {
		idx = append(idx, b.Index)
		require.True(t, errors.Is(b.Err, ErrMalformedShare) || errors.Is(b.Err, ErrShareMismatch), "%v", b.Err)
	}
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 10}, idx)
	require.ErrorIs(t, bad[0].Err, ErrShareMismatch) // corrupt body
	require.ErrorIs(t, bad[1].Err, ErrShareMismatch) // hash list vs root
	require.ErrorIs(t, bad[6].Err, ErrMalformedShare)

	// Every single-byte corruption of one share is caught by CheckShare.
	s := shares[5]
	for i := 0; i < len(s); i += 97 {
		b := bytes.Clone(s)
		b[i] ^= 0x40
		_, err := c.CheckShare(b)
		require.Error(t, err, "byte %d", i)
	}
	n, err := c.CheckShare(s)
	require.NoError(t, err)
	require.Equal(t, 5, n)
}

func TestNotEnoughShares(t *testing.T) {
	data := testData(4, 1000)
	c, shares := encodeT(t, data, 3, 10)
	_, bad, err := Decode(c, shares[:2])
	require.ErrorIs(t, err, ErrNotEnoughShares)
	require.Empty(t, bad)
	// Duplicates do not count twice.
	_, _, err = Decode(c, [][]byte{shares[1], shares[1], shares[1], shares[4]})
	require.ErrorIs(t, err, ErrNotEnoughShares)
	_, _, err = Decode(c, nil)
	require.ErrorIs(t, err, ErrNotEnoughShares)
}

func TestWrongCapability(t *testing.T) {
	data := testData(5, 3000)
	c, shares := encodeT(t, data, 3, 10)
	other, _ := encodeT(t, data, 3, 10) // same plaintext, another key

	_, bad, err := Decode(other, shares)
	require.ErrorIs(t, err, ErrNotEnoughShares)
	require.Len(t, bad, 10)
	for _, b := range bad {
		require.ErrorIs(t, b.Err, ErrShareMismatch)
	}

	for name, mutate := range map[string]func(c *Capability){
		"size":      func(c *Capability) { c.Size-- },
		"k":         func(c *Capability) { c.K = 2 },
		"root":      func(c *Capability) { c.Root[0] ^= 1 },
		"key":       func(c *Capability) { c.Key[0] ^= 1 },
		"more size": func(c *Capability) { c.Size += SegmentSize },
	} {
		t.Run(name, func(t *testing.T) {
			w := *c
			mutate(&w)
			_, _, err := Decode(&w, shares)
			require.ErrorIs(t, err, ErrNotEnoughShares)
		})
	}

	// Another key with a root recomputed to match: the shares pass their
	// checks, but no segment opens.
	s, err := ParseShare(shares[0])
	require.NoError(t, err)
	forged := *c
	forged.Key[0] ^= 1
	forged.Root = rootHash(forged.StorageIndex(), 3, 10, SegmentSize, c.Size, s.Hashes)
	_, _, err = Decode(&forged, shares)
	require.ErrorIs(t, err, ErrDecrypt)
}

// TestSegmentBinding shows that each sealed segment opens only at its own
// position and with its own last-segment flag, so reordering, truncation
// and extension fail.
func TestSegmentBinding(t *testing.T) {
	key := testKey(1)
	cd, err := newCoder(&key, 3, 10)
	require.NoError(t, err)
	aad := []byte(tagSegment)
	var sealed [3][]byte
	for i := range 3 {
		sealed[i] = cd.aead.Seal(nil, segmentNonce(uint64(i), i == 2), []byte{byte(i)}, aad)
	}
	for i := range 3 {
		for j := range 3 {
			for _, last := range []bool{false, true} {
				_, err := cd.aead.Open(nil, segmentNonce(uint64(j), last), sealed[i], aad)
				require.Equal(t, i == j && last == (i == 2), err == nil, "segment %d at %d last=%v", i, j, last)
			}
		}
	}
}

func TestCapabilityText(t *testing.T) {
	c, _ := encodeT(t, testData(6, 10), 3, 10)
	s := c.String()
	require.True(t, strings.HasPrefix(s, "scrip:chk:"))
	p, err := ParseCapability(s)
	require.NoError(t, err)
	require.Equal(t, *c, *p)

	// Redacted when formatted.
	for _, f := range []string{"%v", "%+v", "%s", "%#v", "%x"} {
		out := fmt.Sprintf(f, c) + fmt.Sprintf(f, *c)
		require.NotContains(t, out, b32.EncodeToString(c.Key[:]), f)
		require.NotContains(t, out, fmt.Sprintf("%x", c.Root[:]), f)
		require.NotContains(t, out, fmt.Sprintf("%x", c.Key[:]), f)
	}

	si := c.StorageIndex()
	require.NotEqual(t, c.Key[:StorageIndexSize], si[:])
	require.Equal(t, si, c.StorageIndex())
}

func TestParseCapabilityErrors(t *testing.T) {
	key := b32.EncodeToString(make([]byte, 32))
	root := strings.Repeat("ab", 32)
	good := "scrip:chk:" + key + ":" + root + ":3:10:12345"
	_, err := ParseCapability(good)
	require.NoError(t, err)
	bad := map[string]string{
		"empty":             "",
		"prefix":            "scrip:chx:" + key + ":" + root + ":3:10:1",
		"uppercase key":     "scrip:chk:" + strings.ToUpper(key) + ":" + root + ":3:10:1",
		"short key":         "scrip:chk:" + key[1:] + ":" + root + ":3:10:1",
		"padded key":        "scrip:chk:" + key + "====" + ":" + root + ":3:10:1",
		"non-canonical key": "scrip:chk:" + key[:51] + "b" + ":" + root + ":3:10:1",
		"uppercase root":    "scrip:chk:" + key + ":" + strings.ToUpper(root) + ":3:10:1",
		"short root":        "scrip:chk:" + key + ":" + root[2:] + ":3:10:1",
		"k zero":            "scrip:chk:" + key + ":" + root + ":0:10:1",
		"k above n":         "scrip:chk:" + key + ":" + root + ":4:3:1",
		"n too big":         "scrip:chk:" + key + ":" + root + ":3:256:1",
		"leading zero":      "scrip:chk:" + key + ":" + root + ":03:10:1",
		"plus sign":         "scrip:chk:" + key + ":" + root + ":+3:10:1",
		"negative":          "scrip:chk:" + key + ":" + root + ":3:10:-1",
		"size too big":      "scrip:chk:" + key + ":" + root + ":3:10:1099511627777",
		"size overflow":     "scrip:chk:" + key + ":" + root + ":3:10:99999999999999999999999",
		"missing field":     "scrip:chk:" + key + ":" + root + ":3:10",
		"extra field":       "scrip:chk:" + key + ":" + root + ":3:10:1:2",
		"empty size":        "scrip:chk:" + key + ":" + root + ":3:10:",
		"space":             "scrip:chk:" + key + ":" + root + ":3:10:1 ",
		"too long":          good + strings.Repeat("0", MaxCapabilityLen),
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCapability(s)
			require.ErrorIs(t, err, ErrCapability)
			require.NotContains(t, err.Error(), key)
		})
	}
	_, err = ParseCapability("scrip:chk:" + key + ":" + root + ":3:10:1099511627776")
	require.NoError(t, err, "MaxFileSize itself is allowed")
}

func TestParseShareErrors(t *testing.T) {
	_, shares := encodeT(t, testData(8, 100), 3, 10)
	s := shares[0]
	for name, mutate := range map[string]func([]byte) []byte{
		"empty":        func(b []byte) []byte { return nil },
		"header only":  func(b []byte) []byte { return b[:HeaderFixedSize] },
		"magic":        func(b []byte) []byte { b[1] = 'X'; return b },
		"version":      func(b []byte) []byte { b[4] = 2; return b },
		"k zero":       func(b []byte) []byte { b[5] = 0; return b },
		"k above n":    func(b []byte) []byte { b[5] = 11; return b },
		"number":       func(b []byte) []byte { b[7] = 10; return b },
		"segment size": func(b []byte) []byte { b[9] = 2; return b },
		"size":         func(b []byte) []byte { b[12] = 1; return b },
		"trailing":     func(b []byte) []byte { return append(b, 0) },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseShare(mutate(bytes.Clone(s)))
			require.ErrorIs(t, err, ErrMalformedShare)
		})
	}
	p, err := ParseShare(s)
	require.NoError(t, err)
	require.Equal(t, s, p.Bytes())
}

// fuzzShares returns real share encodings of small files with fixed keys.
func fuzzShares(t testing.TB) ([]*Capability, [][]byte) {
	var caps []*Capability
	var out [][]byte
	for i, p := range []struct{ size, k, n int }{{0, 3, 10}, {1, 1, 1}, {100, 3, 10}, {17, 2, 4}, {3, 3, 3}} {
		c, shares, err := encode(bytes.NewReader(testData(uint64(i), p.size)), p.k, p.n, testKey(uint64(i)))
		require.NoError(t, err)
		caps = append(caps, c)
		out = append(out, shares[0], shares[len(shares)-1])
	}
	return caps, out
}

func FuzzParseCapability(f *testing.F) {
	caps, _ := fuzzShares(f)
	seeds := 0
	for _, c := range caps {
		f.Add(c.String())
		seeds++
	}
	if seeds == 0 {
		f.Fatal("no seeds")
	}
	f.Add("scrip:chk:")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCapability(s)
		if err != nil {
			if !errors.Is(err, ErrCapability) {
				t.Fatalf("error does not wrap ErrCapability: %v", err)
			}
			return
		}
		if got := c.String(); got != s {
			t.Fatalf("re-encoding differs")
		}
		_ = c.ShareSize()
	})
}

func FuzzParseShare(f *testing.F) {
	caps, shares := fuzzShares(f)
	for _, s := range shares {
		f.Add(s)
	}
	if len(shares) == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShare(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedShare) {
				t.Fatalf("error does not wrap ErrMalformedShare: %v", err)
			}
		} else if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("re-encoding differs")
		}
		for _, c := range caps {
			if _, err := c.CheckShare(b); err != nil && !errors.Is(err, ErrMalformedShare) && !errors.Is(err, ErrShareMismatch) {
				t.Fatalf("CheckShare: unexpected error %v", err)
			}
		}
	})
}

func benchData(b *testing.B) []byte {
	return testData(9, 16<<20)
}

func BenchmarkEncode16MiB(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := EncodeBytes(data, DefaultK, DefaultN); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode16MiB(b *testing.B) {
	data := benchData(b)
	c, shares, err := EncodeBytes(data, DefaultK, DefaultN)
	if err != nil {
		b.Fatal(err)
	}
	for name, set := range map[string][][]byte{
		"data":   shares[:DefaultK],
		"parity": shares[DefaultN-DefaultK:],
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(c, set); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestVector pins the format: a fixed key and plaintext give a fixed
// capability and shares (SPEC.md §10 gives the same values).
func TestVector(t *testing.T) {
	var key [KeySize]byte
	for i := range key {
		key[i] = byte(i)
	}
	c, shares, err := encode(strings.NewReader("hello, grid"), 3, 10, key)
	require.NoError(t, err)
	require.Equal(t, "scrip:chk:aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq:"+
		"519f363bd1c6256a12217bad8a9e6c87fe6946aaf6a56a62966785d94aa1e54c:3:10:11", c.String())
	si := c.StorageIndex()
	require.Equal(t, "18d7b7eaafe4fddaeb0d338ea7a18794", hex.EncodeToString(si[:]))
	h := sha256.Sum256(shares[0])
	require.Equal(t, "e03522f2f5683224642ecb9c6c8f3c139055def54dc6d3106f44479fdf1c5c47", hex.EncodeToString(h[:]))
	require.EqualValues(t, 20+32*10+9, c.ShareSize())
}
