package coin_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/testvectors"
)

// The decoders' fuzz tests: whatever decodes must re-encode to the same
// bytes, and whatever fails must wrap exactly one sentinel error. They are
// seeded with every encoding in the test vectors, valid or not.

// vectorSeeds holds the encodings found in the test vectors.
type vectorSeeds struct {
	keysets [][2][]byte // keyset, mint key
	secrets [][2][]byte // keyset secret, mint key
	coins   [][]byte
	spends  [][3][]byte // spend, server, digest
	known   coin.KeysetMap
	now     time.Time // a time inside the spend window of the known keysets
}

func loadSeeds(f *testing.F) *vectorSeeds {
	f.Helper()
	s := &vectorSeeds{known: coin.KeysetMap{}}
	names, err := fs.Glob(testvectors.Vectors, "*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		data, err := fs.ReadFile(testvectors.Vectors, name)
		if err != nil {
			f.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		s.walk(f, v, nil)
	}
	return s
}

// walk collects the encodings of v; mintKey is the nearest enclosing one.
func (s *vectorSeeds) walk(f *testing.F, v any, mintKey []byte) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			s.walk(f, e, mintKey)
		}
	case map[string]any:
		field := func(k string) []byte {
			str, ok := v[k].(string)
			if !ok {
				return nil
			}
			b, err := hex.DecodeString(str)
			if err != nil {
				f.Fatalf("%s: %v", k, err)
			}
			return b
		}
		if mk := field("mintKey"); mk != nil {
			mintKey = mk
		}
		if ks := field("keyset"); ks != nil {
			s.keysets = append(s.keysets, [2][]byte{ks, mintKey})
			if k, err := coin.ParseKeyset(ks, mintKey); err == nil {
				s.known.Add(k)
			}
		}
		if sec := field("keysetSecret"); sec != nil {
			s.secrets = append(s.secrets, [2][]byte{sec, mintKey})
		}
		if c := field("coin"); c != nil {
			s.coins = append(s.coins, c)
		}
		if sp := field("spend"); sp != nil {
			s.spends = append(s.spends, [3][]byte{sp, field("server"), field("digest")})
		}
		if t, ok := v["time"].(json.Number); ok && v["window"] == "spend" && s.now.IsZero() {
			sec, err := t.Int64()
			if err != nil {
				f.Fatal(err)
			}
			s.now = time.Unix(sec, 0)
		}
		for k, e := range v {
			if k != "notes" && k != "header" {
				s.walk(f, e, mintKey)
			}
		}
	}
}

var sentinels = []error{
	coin.ErrMalformed, coin.ErrBadKey, coin.ErrUnknownKeyset, coin.ErrOutsideWindow,
	coin.ErrBadSignature, coin.ErrDesignated, coin.ErrAmount, coin.ErrNoExactChange,
}

// class returns the one sentinel err wraps (nil for nil), failing t if it
// wraps none or several.
func class(t *testing.T, err error) error {
	t.Helper()
	if err == nil {
		return nil
	}
	var found []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("error %q wraps %d sentinel errors, want 1", err, len(found))
	}
	return found[0]
}

func FuzzParseKeyset(f *testing.F) {
	s := loadSeeds(f)
	if len(s.keysets) == 0 {
		f.Fatal("no keyset seeds in the test vectors")
	}
	for _, k := range s.keysets {
		f.Add(k[0], k[1])
	}
	f.Fuzz(func(t *testing.T, b, mintKey []byte) {
		ks, err := coin.ParseKeyset(b, mintKey)
		if class(t, err) != nil {
			return
		}
		if !bytes.Equal(ks.Bytes(), b) {
			t.Fatalf("ParseKeyset(%x).Bytes() = %x", b, ks.Bytes())
		}
	})
}

func FuzzParseKeysetSecret(f *testing.F) {
	s := loadSeeds(f)
	if len(s.secrets) == 0 {
		f.Fatal("no keyset secret seeds in the test vectors")
	}
	for _, k := range s.secrets {
		f.Add(k[0], k[1])
	}
	f.Fuzz(func(t *testing.T, b, mintKey []byte) {
		sec, err := coin.ParseKeysetSecret(b, mintKey)
		if class(t, err) != nil {
			return
		}
		if !bytes.Equal(sec.Bytes(), b) {
			t.Fatalf("ParseKeysetSecret(%x).Bytes() = %x", b, sec.Bytes())
		}
	})
}

func FuzzParseCoin(f *testing.F) {
	s := loadSeeds(f)
	if len(s.coins) == 0 || len(s.known) == 0 || s.now.IsZero() {
		f.Fatal("no coin seeds, keysets or time in the test vectors")
	}
	for _, c := range s.coins {
		f.Add(c)
	}
	v := &coin.Verifier{Keysets: s.known, Server: []byte("fuzz-server"), Window: coin.WindowSpend}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := coin.ParseCoin(b)
		if class(t, err) != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Fatalf("ParseCoin(%x).Bytes() = %x", b, c.Bytes())
		}
		class(t, v.VerifyCoin(c, s.now))
	})
}

// FuzzParseSpend also checks that a batch of one spend gets the same answer
// as VerifySpend.
func FuzzParseSpend(f *testing.F) {
	s := loadSeeds(f)
	if len(s.spends) == 0 || len(s.known) == 0 || s.now.IsZero() {
		f.Fatal("no spend seeds, keysets or time in the test vectors")
	}
	for _, sp := range s.spends {
		f.Add(sp[0], sp[1], sp[2])
	}
	f.Fuzz(func(t *testing.T, b, server, digest []byte) {
		sp, err := coin.ParseSpend(b)
		if class(t, err) != nil {
			return
		}
		if !bytes.Equal(sp.Bytes(), b) {
			t.Fatalf("ParseSpend(%x).Bytes() = %x", b, sp.Bytes())
		}
		var d [32]byte
		copy(d[:], digest)
		v := &coin.Verifier{Keysets: s.known, Server: server, Window: coin.WindowSpend}
		single := class(t, v.VerifySpend(sp, d, s.now))
		var batch error
		if err := v.VerifyBatch([]coin.Item{{Spend: sp, Digest: d}}, s.now); err != nil {
			var be *coin.BatchError
			if !errors.As(err, &be) || len(be.Errs) != 1 {
				t.Fatalf("VerifyBatch: %v", err)
			}
			batch = class(t, be.Errs[0])
		}
		if single != batch {
			t.Fatalf("spend %x at server %x, digest %x: VerifySpend %v, VerifyBatch %v", b, server, d, single, batch)
		}
	})
}
